//! The model: sizes and activations of both networks, and the networks built from them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels::activation::Activation;
use crate::nn::{self, Cast, Layer, Net};

/// Which network keys the seeded initialisation (the Philox counter's net word).
pub const NET_D: u32 = 0;
pub const NET_G: u32 = 1;
pub const NET_CLASSIFIER: u32 = 2;

/// Sizes and activations of both networks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub data_dim: usize,
    pub latent_dim: usize,
    pub g_hidden: Vec<usize>,
    pub d_hidden: Vec<usize>,
    pub g_activation: Activation,
    pub d_activation: Activation,
    pub g_output: Activation,
    /// PacGAN packing: D judges `pack` samples at once, concatenated (real with real, fake with
    /// fake), so its input is pack x data_dim wide. 1 = a plain GAN.
    #[serde(default = "one")]
    pub pack: usize,
}

fn one() -> usize {
    1
}

/// Most parameters one network may have (offsets are u32 on the GPU, with room for Adam's v).
pub const MAX_PARAMS: usize = u32::MAX as usize / 2;

impl ModelConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::input(format!("{what} must be at least 1")));
        if self.data_dim == 0 {
            return bad("the data dimension");
        }
        if self.pack == 0 {
            return bad("--pack");
        }
        if self.latent_dim == 0 {
            return bad("--latent-dim");
        }
        if self.g_hidden.contains(&0) {
            return bad("every --g-hidden size");
        }
        if self.d_hidden.contains(&0) {
            return bad("every --d-hidden size");
        }
        let d_input = self.data_dim.checked_mul(self.pack);
        for (name, input, hidden, output) in
            [("G", Some(self.latent_dim), &self.g_hidden, Some(self.data_dim)), ("D", d_input, &self.d_hidden, Some(1))]
        {
            let count = input.zip(output).and_then(|(i, o)| mlp_param_count(i, hidden, o));
            match count {
                Some(n) if n <= MAX_PARAMS => {}
                Some(n) => {
                    return Err(Error::input(format!("{name} has {n} parameters; at most {MAX_PARAMS} are supported")))
                }
                None => return Err(Error::input(format!("{name} is too large to exist"))),
            }
        }
        Ok(())
    }

    /// G: latent -> hidden... -> data, `g_activation` then `g_output`. At f16 its first layer
    /// casts the f32 noise to f16.
    pub fn generator(&self, half: bool) -> Net {
        let mut layers: Vec<(String, Box<dyn Layer>)> = vec![];
        if half {
            layers.push(("cast".into(), Box::new(Cast { features: self.latent_dim, to_f16: true })));
        }
        layers.extend(nn::mlp(self.latent_dim, &self.g_hidden, self.data_dim, self.g_activation, self.g_output, 0.0));
        Net::new("G", NET_G, layers)
    }

    /// D: pack x data -> hidden... -> 1 logit, `d_activation` on the hidden layers, then
    /// `dropout` after each of them. At f16 its last layer casts the logits back to f32.
    pub fn discriminator(&self, dropout: f32, half: bool) -> Net {
        let input = self.data_dim * self.pack;
        let mut layers = nn::mlp(input, &self.d_hidden, 1, self.d_activation, Activation::Identity, dropout);
        if half {
            layers.push(("logits".into(), Box::new(Cast { features: 1, to_f16: false })));
        }
        Net::new("D", NET_D, layers)
    }
}

/// Parameters of an MLP, or None if the count overflows.
pub fn mlp_param_count(input: usize, hidden: &[usize], output: usize) -> Option<usize> {
    let sizes: Vec<usize> = [input].iter().chain(hidden).chain([output].iter()).copied().collect();
    sizes.windows(2).try_fold(0usize, |acc, w| acc.checked_add(w[0].checked_mul(w[1])?.checked_add(w[1])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ModelConfig {
        ModelConfig {
            data_dim: 784,
            latent_dim: 64,
            g_hidden: vec![256, 256],
            d_hidden: vec![256, 256],
            g_activation: Activation::Relu,
            d_activation: Activation::Relu,
            g_output: Activation::Sigmoid,
            pack: 1,
        }
    }

    #[test]
    fn benchmark_model_sizes() {
        let c = config();
        let (g, d) = (c.generator(false), c.discriminator(0.0, false));
        assert_eq!(g.params_len, 64 * 256 + 256 + 256 * 256 + 256 + 256 * 784 + 784);
        assert_eq!(d.params_len, 784 * 256 + 256 + 256 * 256 + 256 + 256 + 1);
        assert_eq!(d.output_features(), 1);
        let names: Vec<String> = g.tensors().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]);
        // Casts and dropout add no tensors and move none.
        assert_eq!(c.generator(true).tensors(), g.tensors());
        assert_eq!(c.discriminator(0.3, true).tensors(), d.tensors());
    }

    #[test]
    fn init_is_seeded_and_bounded() {
        let g = config().generator(false);
        let a = g.init(1);
        assert_eq!(a, g.init(1));
        assert_ne!(a, g.init(2));
        let t = &g.tensors()[2];
        let bound = 1.0 / (t.shape[1] as f32).sqrt();
        assert!(a[t.off..t.off + t.shape.iter().product::<usize>()].iter().all(|v| v.abs() <= bound));
    }
}
