//! The two MLPs: layer shapes, where each tensor lives in a network's flat parameter buffer, and
//! the seeded initialisation both backends start from.
//!
//! A network's parameters are one flat f32 buffer: for each layer `fcI` (I from 1) its weight
//! (out, in) row-major, then its bias (out). Gradients and Adam's m and v use the same layout.
//! Checkpoint tensor names follow it: `G.fc1.weight`, `G.fc1.bias`, ...

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng;

/// Activation after a linear layer. The numeric codes are shared with the WGSL (`common.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    Identity,
    Relu,
    LeakyRelu,
    Sigmoid,
    Tanh,
}

impl Activation {
    pub fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
            Activation::LeakyRelu => 2,
            Activation::Sigmoid => 3,
            Activation::Tanh => 4,
        }
    }

    /// Name of the WGSL entry points for this activation (`{name}_forward`, `{name}_backward`).
    pub fn kernel_name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }
}

/// Slope of leaky ReLU for negative inputs.
pub const LEAKY_SLOPE: f32 = 0.2;

/// Which network: the discriminator or the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    D,
    G,
    /// The digit classifier that scores image runs (`classifier`).
    C,
}

impl Net {
    pub fn name(self) -> &'static str {
        match self {
            Net::D => "D",
            Net::G => "G",
            Net::C => "C",
        }
    }
}

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
        for layout in [self.layout(Net::G), self.layout(Net::D)] {
            if layout.len > u32::MAX as usize / 2 {
                return Err(Error::input(format!(
                    "{} has {} parameters; at most {} are supported",
                    layout.net.name(),
                    layout.len,
                    u32::MAX / 2
                )));
            }
        }
        Ok(())
    }

    /// The layout of G or D. (A GAN has no classifier: asking for `Net::C` gets D's shape, so
    /// callers only ask for G and D; `classifier::ClassifierSpec::layout` makes C's.)
    pub fn layout(&self, net: Net) -> NetLayout {
        match net {
            Net::G => {
                NetLayout::new(net, self.latent_dim, &self.g_hidden, self.data_dim, self.g_activation, self.g_output)
            }
            Net::D | Net::C => NetLayout::new(
                net,
                self.data_dim * self.pack,
                &self.d_hidden,
                1,
                self.d_activation,
                Activation::Identity,
            ),
        }
    }
}

/// One linear layer: y = act(x w^T + b), w (out, in) at `w_off`, b (out) at `b_off`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layer {
    pub fan_in: usize,
    pub fan_out: usize,
    pub activation: Activation,
    pub w_off: usize,
    pub b_off: usize,
}

/// The layers of one network and their places in its flat parameter buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct NetLayout {
    pub net: Net,
    pub layers: Vec<Layer>,
    /// Total number of parameters.
    pub len: usize,
}

impl NetLayout {
    pub fn new(
        net: Net,
        input: usize,
        hidden: &[usize],
        output: usize,
        hidden_act: Activation,
        out_act: Activation,
    ) -> Self {
        let mut sizes = vec![input];
        sizes.extend_from_slice(hidden);
        sizes.push(output);
        let mut layers = Vec::new();
        let mut off = 0;
        for (i, pair) in sizes.windows(2).enumerate() {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let activation = if i + 2 == sizes.len() { out_act } else { hidden_act };
            let w_off = off;
            let b_off = w_off + fan_in * fan_out;
            off = b_off + fan_out;
            layers.push(Layer { fan_in, fan_out, activation, w_off, b_off });
        }
        NetLayout { net, layers, len: off }
    }

    pub fn input_dim(&self) -> usize {
        self.layers[0].fan_in
    }

    pub fn output_dim(&self) -> usize {
        self.layers.last().map_or(0, |l| l.fan_out)
    }

    /// Widest layer output: the size of the scratch activations.
    pub fn max_width(&self) -> usize {
        self.layers.iter().map(|l| l.fan_out.max(l.fan_in)).max().unwrap_or(0)
    }

    /// (name, offset, shape) of every tensor, in buffer order: `fc1.weight`, `fc1.bias`, ...
    pub fn tensors(&self) -> Vec<(String, usize, Vec<usize>)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            out.push((format!("fc{}.weight", i + 1), l.w_off, vec![l.fan_out, l.fan_in]));
            out.push((format!("fc{}.bias", i + 1), l.b_off, vec![l.fan_out]));
        }
        out
    }

    /// PyTorch's `nn.Linear` default initialisation: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)),
    /// drawn from Philox with counter (i / 4, layer, net, PURPOSE_INIT), so the same seed gives
    /// bit-identical weights on both backends.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let key = rng::seed_words(seed);
        let net_id = match self.net {
            Net::D => 0,
            Net::G => 1,
            Net::C => 2,
        };
        let mut params = vec![0f32; self.len];
        for (li, l) in self.layers.iter().enumerate() {
            let bound = 1.0 / (l.fan_in as f32).sqrt();
            let span = &mut params[l.w_off..l.b_off + l.fan_out];
            for (q, chunk) in span.chunks_mut(4).enumerate() {
                let w = rng::philox4x32([q as u32, li as u32, net_id, rng::PURPOSE_INIT], key);
                for (v, word) in chunk.iter_mut().zip(w) {
                    *v = (2.0 * rng::unit_f32(word) - 1.0) * bound;
                }
            }
        }
        params
    }
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
        let g = c.layout(Net::G);
        let d = c.layout(Net::D);
        assert_eq!(g.len, 64 * 256 + 256 + 256 * 256 + 256 + 256 * 784 + 784);
        assert_eq!(d.len, 784 * 256 + 256 + 256 * 256 + 256 + 256 + 1);
        assert_eq!(g.layers[2].activation, Activation::Sigmoid);
        assert_eq!(d.layers[2].activation, Activation::Identity);
        assert_eq!(d.output_dim(), 1);
    }

    #[test]
    fn init_is_seeded_and_bounded() {
        let g = config().layout(Net::G);
        let a = g.init(1);
        assert_eq!(a, g.init(1));
        assert_ne!(a, g.init(2));
        let l = g.layers[1];
        let bound = 1.0 / (l.fan_in as f32).sqrt();
        assert!(a[l.w_off..l.b_off + l.fan_out].iter().all(|v| v.abs() <= bound));
    }
}
