//! Every knob of a training run, resolved once (from flags and the data set) and serialisable,
//! so it can be written beside the outputs and stored in checkpoints.

use serde::{Deserialize, Serialize};

use super::model::{Arch, DNorm, ModelConfig};
use super::options::TrainOptions;
use crate::data::toy::Toy;
use crate::data::{Dataset, ImageShape, Layout};
use crate::error::{Error, Result};
use crate::kernels::activation::Activation;

fn one() -> usize {
    1
}

/// The storage precision of activations and matmul operands (`--precision`). Master weights,
/// gradients and Adam state are f32 either way; see programs/gan.rs for the exact split.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// f16 storage, f32 arithmetic; the GPU needs the shader-f16 feature.
    F16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

/// D's and G's losses (`--loss`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Binary cross-entropy on D's logits; G's non-saturating loss (Goodfellow et al. 2014).
    #[default]
    Bce,
    /// The hinge loss (SNGAN, BigGAN): D minimises relu(1 - D(x)) + relu(1 + D(G(z))), G
    /// minimises -D(G(z)).
    Hinge,
}

impl Loss {
    pub fn name(self) -> &'static str {
        match self {
            Loss::Bce => "bce",
            Loss::Hinge => "hinge",
        }
    }
}

/// What the trainers need: the model, the optimizer, the seed and how data values are scaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: ModelConfig,
    pub batch_size: usize,
    /// Decides the initial weights, every step's noise and the batch order, on both backends.
    pub seed: u64,
    /// G's learning rate, and D's unless `d_lr` is set.
    pub lr: f32,
    /// D's own learning rate (`--d-lr`); None in runs that used one rate for both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_lr: Option<f32>,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Label of real samples in D's loss (1 unless one-sided label smoothing is on).
    pub real_label: f32,
    /// A stored value v enters training as v * data_scale + data_shift (u8: 1/255, 0).
    pub data_scale: f32,
    pub data_shift: f32,
    /// Dropout rate on D's hidden layers (0: none), in training mode in both steps.
    #[serde(default)]
    pub d_dropout: f32,
    /// D updates per training step (each on its own batch), then one G update.
    #[serde(default = "one")]
    pub d_steps: usize,
    /// G's weight average for sampling and evaluation: ema = beta ema + (1 - beta) w after each G
    /// update, starting from G's initial weights (0: off).
    #[serde(default)]
    pub g_ema: f32,
    /// The data was uint8 (images): generated samples are written back as uint8.
    #[serde(default)]
    pub data_u8: bool,
    /// Storage precision of activations and matmul operands; configs written before the flag
    /// existed are f32.
    #[serde(default)]
    pub precision: Precision,
    /// Linear learning-rate decay: over the last `lr_decay` of the run's `lr_decay_end` steps
    /// the rate falls linearly to 0 (0: constant). Fixed when the run starts, so a resumed run
    /// follows the same schedule.
    #[serde(default)]
    pub lr_decay: f32,
    #[serde(default)]
    pub lr_decay_end: u32,
    /// The training data's image geometry (samples are channel planes, NCHW; see
    /// `data::ImageShape`), None for data that is not images and in configurations written before
    /// it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageShape>,
    /// Where the data's source had its channel axis (NHWC for image folders), so `generate`
    /// writes samples in that layout; None when it had none ((N, D), (N, H, W)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
    /// D's and G's losses; configs written before `--loss` trained with BCE.
    #[serde(default)]
    pub loss: Loss,
    /// `--conditional`: the name of each class, class index order (an image folder's
    /// subfolders, sorted; "0", "1", ... for a label file); as many as `model.classes`. Empty for
    /// an unconditional run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
}

/// Hidden layer sizes of both networks, unless the data is images.
pub const HIDDEN: [usize; 2] = [256, 256];
/// Defaults for data in [0, 1] (images), measured on MNIST (docs/results.md, "Measured on MNIST"): from
/// the plain settings (256-wide, dropout 0.3, 2e-4; class-KL 0.035, Fréchet distance 34.1),
/// sampling from G's weight average, 512-wide layers and twice the learning rate bring the class
/// histogram to MNIST's (class-KL 0.0025) and the Fréchet distance to 4.3.
pub const IMAGE_HIDDEN: [usize; 2] = [512, 512];
pub const IMAGE_D_DROPOUT: f32 = 0.3;
/// Adam's learning rate, unless the data is images (the DCGAN rate).
pub const LR: f32 = 2e-4;
/// Twice the DCGAN rate: on MNIST it brought the Fréchet distance from 10.9 to 4.3 in 30 epochs.
pub const IMAGE_LR: f32 = 4e-4;
pub const IMAGE_G_EMA: f32 = 0.999;
/// `--arch dcgan`, measured on MNIST at 5 epochs (docs/models.md, "The convolutional model, measured"):
/// from the recipe (Adam 2e-4, Fréchet distance 45.3), 4e-4 (33.7) and 8e-4 (27.6 with PacGAN
/// packing 2; 1.6e-3: 31.0); packing 2 over 1 (class-KL 0.032 -> 0.017 at 4e-4). G's weight
/// average did not help the convolutional G in 5 epochs (4e-4: 33.7 without, 37.0 with 0.999), so
/// it is off.
pub const DCGAN_LR: f32 = 8e-4;
pub const DCGAN_PACK: usize = 2;
pub const DCGAN_G_EMA: f32 = 0.0;
/// `--arch dcgan` at 32x32 and 64x64 (colour folders): twice the 28x28 rate, and sampling from
/// G's weight average. On 3,793 emoji at 32x32, 20 epochs (1,180 steps), seed 0, the sliced
/// Wasserstein distance went from 72.0 (8e-4, no average) to 62.9 (8e-4, 0.99) and 43.0 (1.6e-3,
/// 0.99); PyTorch's recipe: 104 over 3 seeds (docs/colour.md). 0.99 averages the last ~100
/// steps: the average starts from G's initial weights, which 0.999 would still carry at 1,180.
pub const DCGAN_COLOUR_LR: f32 = 1.6e-3;
pub const DCGAN_COLOUR_G_EMA: f32 = 0.99;
/// `--arch dcgan` at 28x28: the hidden linear layers' features per unit of width (ngf for G,
/// ndf for D): 16 x 64 = 1024, InfoGAN's MNIST model. Measured on MNIST at 5 epochs, seed 0:
/// Fréchet distance 27.6 without them, 12.25 with 1024 in both (docs/models.md).
pub const DCGAN_FC_HIDDEN_PER_WIDTH: usize = 16;
/// Defaults for any data: the noise size, the batch, PacGAN's pack.
pub const LATENT_DIM: usize = 64;
pub const BATCH_SIZE: usize = 64;
pub const PACK: usize = 1;
/// Defaults for `--toy` data: the best settings measured on ring8 and grid25 over 10 seeds
/// (docs/results.md, "Toy benchmarks": all 8 and all 25 modes in 10 of 10 seeds, 95.2% and 94.7% high
/// quality, reverse KL 0.002 and 0.006), with Adam at [`LR`]. The default run was 0-1 of 8 modes.
pub const TOY_LATENT_DIM: usize = 2;
pub const TOY_BATCH_SIZE: usize = 256;
pub const TOY_HIDDEN: [usize; 2] = [128, 128];
pub const TOY_PACK: usize = 2;
pub const TOY_G_EMA: f32 = 0.999;

/// The default length of a `--toy` run: grid25 needs more steps (50,000: 90.3% high quality,
/// 80,000: 94.7%).
pub fn toy_steps(toy: Toy) -> u32 {
    match toy {
        Toy::Ring8 => 30_000,
        Toy::Grid25 => 80_000,
    }
}

impl TrainOptions {
    /// The batch size given, or the default for this kind of data.
    pub fn batch_size_for(&self, toy: Option<Toy>) -> usize {
        self.batch_size.unwrap_or(if toy.is_some() { TOY_BATCH_SIZE } else { BATCH_SIZE })
    }

    /// The architecture given, or the one measured best for this data: the DCGAN for 32x32 and
    /// 64x64 images (on colour emoji at 20 epochs its sliced Wasserstein distance is a fraction
    /// of the MLP's, docs/models.md), the MLP otherwise (on MNIST's 28x28 digits it is ahead at the
    /// default length).
    pub fn arch_for(&self, data: &Dataset, toy: Option<Toy>) -> Arch {
        if let Some(a) = self.arch {
            return a;
        }
        let dcgan_size = data.image().is_some_and(|i| i.height == i.width && matches!(i.height, 32 | 64));
        if toy.is_none() && data.is_unit_range() && dcgan_size {
            Arch::Dcgan
        } else {
            Arch::Mlp
        }
    }

    /// The configuration for `data` (not a toy data set; see [`TrainOptions::resolve_for`]).
    pub fn resolve(&self, data: &Dataset) -> Result<TrainConfig> {
        self.resolve_for(data, None)
    }

    /// The configuration for `data`, with the defaults of its kind: images (data in [0, 1]), a
    /// `--toy` data set, or other data; flags given win. `--conditional` needs the classes:
    /// see [`TrainOptions::resolve_with_classes`].
    pub fn resolve_for(&self, data: &Dataset, toy: Option<Toy>) -> Result<TrainConfig> {
        self.resolve_with_classes(data, toy, None)
    }

    /// [`TrainOptions::resolve_for`] for data whose samples have classes of these names (their
    /// labels, `data::labels`), which `--conditional` needs and conditions on.
    pub fn resolve_with_classes(
        &self,
        data: &Dataset,
        toy: Option<Toy>,
        classes: Option<&[String]>,
    ) -> Result<TrainConfig> {
        let mut cfg = self.resolve_unconditional(data, toy)?;
        if self.conditional {
            let Some(names) = classes else {
                return Err(Error::input(
                    "--conditional needs labelled data: an image folder with class subfolders, a .npy with \
                     --labels FILE.npy, or the built-in digits",
                ));
            };
            cfg.model.classes = names.len();
            cfg.class_names = names.to_vec();
        }
        cfg.validate(data.n)?;
        Ok(cfg)
    }

    fn resolve_unconditional(&self, data: &Dataset, toy: Option<Toy>) -> Result<TrainConfig> {
        let arch = self.arch_for(data, toy);
        if arch == Arch::Mlp && self.d_norm == Some(DNorm::Batch) {
            return Err(Error::input(
                "--d-norm batch is for --arch dcgan (the MLP's D has no batch norm); the MLP takes none or spectral",
            ));
        }
        Ok(match arch {
            Arch::Mlp => self.resolve_mlp(data, toy),
            Arch::Dcgan => self.resolve_dcgan(data, toy)?,
        })
    }

    /// `--arch dcgan`: the recipe's activations (ReLU in G, leaky ReLU in D, tanh out) on images
    /// scaled to [-1, 1], and its Adam rate; MLP-only flags are refused.
    fn resolve_dcgan(&self, data: &Dataset, toy: Option<Toy>) -> Result<TrainConfig> {
        // The architecture first: its errors say more than a batch size would.
        let Some(image) = data.image().filter(|_| data.is_unit_range() && toy.is_none()) else {
            return Err(Error::input(
                "--arch dcgan trains on images (uint8, or floats in [0, 1], of shape (N, H, W), \
                 (N, C, H, W) or (N, H, W, C), or a folder of images)",
            ));
        };
        let mlp_only = [
            ("--g-hidden", !self.g_hidden.is_empty()),
            ("--d-hidden", !self.d_hidden.is_empty()),
            ("--precision f16", self.precision == Precision::F16),
        ];
        if let Some((flag, _)) = mlp_only.iter().find(|(_, given)| *given) {
            return Err(Error::input(format!(
                "{flag} is for --arch mlp; --arch dcgan sets its widths with --g-channels and --d-channels \
                 and trains in f32"
            )));
        }
        let mut cfg = self.resolve_mlp(data, toy);
        let m = &mut cfg.model;
        m.arch = Arch::Dcgan;
        m.image = Some(image);
        m.g_channels = self.g_channels;
        m.d_channels = self.d_channels;
        m.d_norm = self.d_norm.unwrap_or(DNorm::Batch);
        // The hidden linear layers exist at 28x28 only (where G starts and D ends linear).
        let per_width = if image.height == 28 { DCGAN_FC_HIDDEN_PER_WIDTH } else { 0 };
        m.g_fc_hidden = self.g_fc_hidden.unwrap_or(per_width * self.g_channels);
        m.d_fc_hidden = self.d_fc_hidden.unwrap_or(per_width * self.d_channels);
        (m.g_hidden, m.d_hidden) = (vec![], vec![]);
        m.g_activation = self.g_activation.unwrap_or(Activation::Relu);
        m.d_activation = self.d_activation.unwrap_or(Activation::LeakyRelu);
        let colour = image.height != 28;
        cfg.lr = self.lr.unwrap_or(if colour { DCGAN_COLOUR_LR } else { DCGAN_LR });
        // A conditional D judges one class per row: no packing (refused when asked for).
        cfg.model.pack = self.pack.unwrap_or(if self.conditional { 1 } else { DCGAN_PACK });
        cfg.d_dropout = self.d_dropout.unwrap_or(0.0);
        cfg.g_ema = self.g_ema.unwrap_or(if colour { DCGAN_COLOUR_G_EMA } else { DCGAN_G_EMA });
        cfg.model.validate()?;
        Ok(cfg)
    }

    fn resolve_mlp(&self, data: &Dataset, toy: Option<Toy>) -> TrainConfig {
        let mut cfg = self.resolve_mlp_plain(data, toy);
        if !cfg.model.augment.is_none() && cfg.model.arch == Arch::Mlp {
            // DiffAugment moves pixels, so the MLP's D needs to know the image's geometry.
            cfg.model.image = data.image().filter(|_| toy.is_none());
        }
        cfg
    }

    fn resolve_mlp_plain(&self, data: &Dataset, toy: Option<Toy>) -> TrainConfig {
        // Defaults measured on MNIST: the plain benchmark model (ReLU, sigmoid output on [0, 1])
        // collapses to one blob; leaky ReLU with a tanh output on [-1, 1] draws varied digits.
        let image = data.is_unit_range();
        let hidden = if image { Activation::LeakyRelu } else { Activation::Relu };
        let g_output = self.g_output.unwrap_or(if image { Activation::Tanh } else { Activation::Identity });
        let data_u8 = matches!(data.values, crate::data::DataValues::U8(_));
        // Data in [0, 1] trains in [-1, 1] under a tanh output (tanh's range), else as it is.
        let to_pm1 = g_output == Activation::Tanh && data.is_unit_range();
        let (data_scale, data_shift) = match (data_u8, to_pm1) {
            (true, false) => (1.0 / 255.0, 0.0),
            (true, true) => (2.0 / 255.0, -1.0),
            (false, true) => (2.0, -1.0),
            (false, false) => (1.0, 0.0),
        };
        let is_toy = toy.is_some();
        let sizes = |given: &Vec<usize>| match (given.is_empty(), image, is_toy) {
            (false, _, _) => given.clone(),
            (true, _, true) => TOY_HIDDEN.to_vec(),
            (true, true, false) => IMAGE_HIDDEN.to_vec(),
            (true, false, false) => HIDDEN.to_vec(),
        };
        let pick = |v: Option<usize>, plain: usize, for_toy: usize| v.unwrap_or(if is_toy { for_toy } else { plain });
        let d_activation = self.d_activation.unwrap_or(hidden);
        // Dropout's backward pass needs an activation whose derivative depends on the sign alone.
        let sign_only = matches!(d_activation, Activation::Relu | Activation::LeakyRelu);
        TrainConfig {
            model: ModelConfig {
                arch: Arch::Mlp,
                image: None,
                g_channels: self.g_channels,
                d_channels: self.d_channels,
                data_dim: data.dim,
                latent_dim: pick(self.latent_dim, LATENT_DIM, TOY_LATENT_DIM),
                g_hidden: sizes(&self.g_hidden),
                d_hidden: sizes(&self.d_hidden),
                g_activation: self.g_activation.unwrap_or(hidden),
                d_activation,
                g_output,
                pack: pick(self.pack, PACK, TOY_PACK),
                // The MLP's D has no batch norm: "batch" (what configs have always said) reads as
                // none; spectral normalisation is the one choice it takes.
                d_norm: if self.d_norm == Some(DNorm::Spectral) { DNorm::Spectral } else { DNorm::Batch },
                g_fc_hidden: 0,
                d_fc_hidden: 0,
                augment: self.augment.unwrap_or_default(),
                // Set by `resolve_with_classes` from the data's labels.
                classes: 0,
            },
            batch_size: self.batch_size_for(toy),
            seed: self.seed,
            lr: self.lr.unwrap_or(if image { IMAGE_LR } else { LR }),
            d_lr: self.d_lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: 1e-8,
            real_label: self.real_label,
            d_dropout: self.d_dropout.unwrap_or(if image && sign_only { IMAGE_D_DROPOUT } else { 0.0 }),
            d_steps: self.d_steps,
            g_ema: self.g_ema.unwrap_or(match (image, is_toy) {
                (_, true) => TOY_G_EMA,
                (true, false) => IMAGE_G_EMA,
                (false, false) => 0.0,
            }),
            data_scale,
            data_shift,
            data_u8,
            precision: self.precision,
            lr_decay: self.lr_decay.unwrap_or(0.0),
            // Set by `with_run_length` once the run's length is known.
            lr_decay_end: 0,
            image: data.image(),
            layout: data.layout,
            loss: self.loss.unwrap_or_default(),
            class_names: vec![],
        }
    }
}

impl TrainConfig {
    /// Fixes the learning-rate schedule to a run that ends at step `total`.
    pub fn with_run_length(mut self, total: u32) -> Self {
        self.lr_decay_end = if self.lr_decay > 0.0 { total } else { 0 };
        self
    }

    /// D's learning rate: `--d-lr`, else `--lr`.
    pub fn d_lr(&self) -> f32 {
        self.d_lr.unwrap_or(self.lr)
    }

    /// Steps over which the learning rate decays (0: constant).
    pub fn lr_decay_steps(&self) -> u32 {
        if self.lr_decay > 0.0 && self.lr_decay_end > 0 {
            ((self.lr_decay as f64 * self.lr_decay_end as f64).ceil() as u32).clamp(1, self.lr_decay_end)
        } else {
            0
        }
    }

    /// Checks everything a trainer relies on, against a data set of `n` samples.
    pub fn validate(&self, n: usize) -> Result<()> {
        self.model.validate()?;
        if self.batch_size == 0 {
            return Err(Error::input("--batch-size must be at least 1"));
        }
        if !self.batch_size.is_multiple_of(self.model.pack.max(1)) {
            return Err(Error::input(format!(
                "--batch-size {} must be a multiple of --pack {} (PacGAN's pack, 2 by default for \
                 --arch dcgan and --toy)",
                self.batch_size, self.model.pack
            )));
        }
        if self.batch_size > n {
            return Err(Error::input(format!(
                "--batch-size {} is larger than the data set ({n} samples); a batch holds distinct \
                 samples, so pass --batch-size {n} or less",
                self.batch_size
            )));
        }
        if n > u32::MAX as usize / 2 || self.batch_size > 65_535 {
            return Err(Error::input(format!(
                "at most {} samples and a batch of at most 65535 are supported",
                u32::MAX / 2
            )));
        }
        let finite_pos = |v: f32| v.is_finite() && v > 0.0;
        if !finite_pos(self.lr) {
            return Err(Error::input(format!("--lr must be a positive number, not {}", self.lr)));
        }
        if let Some(d_lr) = self.d_lr.filter(|&v| !finite_pos(v)) {
            return Err(Error::input(format!("--d-lr must be a positive number, not {d_lr}")));
        }
        if !(self.real_label > 0.0 && self.real_label <= 1.0) {
            return Err(Error::input(format!("--label-smoothing must be in (0, 1], not {}", self.real_label)));
        }
        if self.d_steps == 0 || self.d_steps > 64 {
            return Err(Error::input(format!("--d-steps must be from 1 to 64, not {}", self.d_steps)));
        }
        if !(0.0..1.0).contains(&self.d_dropout) {
            return Err(Error::input(format!("--d-dropout must be in [0, 1), not {}", self.d_dropout)));
        }
        let act = self.model.d_activation;
        if self.d_dropout > 0.0 && !matches!(act, Activation::Relu | Activation::LeakyRelu) {
            // Its backward pass reads the derivative from the dropped-out output, which is right
            // only for activations whose derivative depends on the sign alone.
            return Err(Error::input(format!("--d-dropout needs --d-activation relu or leaky-relu, not {act:?}")));
        }
        if self.loss == Loss::Hinge && self.real_label != 1.0 {
            return Err(Error::input(
                "--label-smoothing is for --loss bce (it is a label of the cross-entropy); the hinge loss has none",
            ));
        }
        if self.precision == Precision::F16 {
            let f32_only = [
                ("--augment", !self.model.augment.is_none()),
                ("--d-norm spectral", self.model.d_norm == DNorm::Spectral),
            ];
            if let Some((flag, _)) = f32_only.iter().find(|(_, on)| *on) {
                return Err(Error::input(format!("{flag} trains in f32; leave out --precision f16")));
            }
        }
        if !(0.0..1.0).contains(&self.g_ema) {
            return Err(Error::input(format!("--g-ema must be in [0, 1), not {}", self.g_ema)));
        }
        if !(0.0..=1.0).contains(&self.lr_decay) {
            return Err(Error::input(format!("--lr-decay must be in [0, 1], not {}", self.lr_decay)));
        }
        for (name, b) in [("--beta1", self.beta1), ("--beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::input(format!("{name} must be in [0, 1), not {b}")));
            }
        }
        self.validate_conditional()
    }

    /// What `--conditional` takes so far, each refusal one line.
    fn validate_conditional(&self) -> Result<()> {
        let m = &self.model;
        if m.classes == 0 {
            return Ok(());
        }
        if self.class_names.len() != m.classes {
            return Err(Error::input(format!(
                "{} class names for {} classes; the configuration is inconsistent",
                self.class_names.len(),
                m.classes
            )));
        }
        if !(2..=crate::data::MAX_CLASSES).contains(&m.classes) {
            return Err(Error::input(format!(
                "--conditional needs 2 to {} classes, not {}",
                crate::data::MAX_CLASSES,
                m.classes
            )));
        }
        if self.precision == Precision::F16 {
            return Err(Error::input("--conditional trains in f32; leave out --precision f16"));
        }
        if m.pack > 1 {
            return Err(Error::input(format!(
                "--conditional takes --pack 1, not {}: a packed group of real samples would mix classes, \
                 and D's projection judges one class per row",
                m.pack
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::activation::Activation;

    /// The defaults measured on MNIST apply to data in [0, 1]; other data gets the plain ones;
    /// flags win over both.
    #[test]
    fn defaults_follow_the_data() {
        let images = Dataset::from_u8(4, 4, [0, 255, 7, 9].repeat(4)).unwrap();
        let small = TrainOptions { batch_size: Some(2), ..Default::default() };
        let c = small.resolve(&images).unwrap();
        assert_eq!((c.model.g_hidden.clone(), c.model.d_hidden.clone()), (vec![512, 512], vec![512, 512]));
        assert_eq!((c.model.g_activation, c.model.d_activation), (Activation::LeakyRelu, Activation::LeakyRelu));
        assert_eq!(c.model.g_output, Activation::Tanh);
        assert_eq!((c.data_scale, c.data_shift), (2.0 / 255.0, -1.0));
        assert_eq!((c.lr, c.d_dropout, c.g_ema, c.lr_decay), (IMAGE_LR, IMAGE_D_DROPOUT, IMAGE_G_EMA, 0.0));

        let points = Dataset::from_f32(4, 2, vec![-3.0, 2.0, 0.5, 1.0, 4.0, -1.0, 0.0, 0.0]).unwrap();
        let c = small.resolve(&points).unwrap();
        assert_eq!((c.model.g_hidden.clone(), c.model.g_activation), (HIDDEN.to_vec(), Activation::Relu));
        assert_eq!(c.model.g_output, Activation::Identity);
        assert_eq!((c.lr, c.d_dropout, c.g_ema, c.lr_decay), (LR, 0.0, 0.0, 0.0));

        let given = TrainOptions {
            lr: Some(1e-3),
            g_ema: Some(0.0),
            d_dropout: Some(0.1),
            lr_decay: Some(0.5),
            ..small.clone()
        };
        let c = given.resolve(&images).unwrap();
        assert_eq!((c.lr, c.d_dropout, c.g_ema, c.lr_decay), (1e-3, 0.1, 0.0, 0.5));
        // D trains at --lr unless --d-lr gives it a rate of its own; a bad rate is refused.
        assert_eq!((c.d_lr, c.d_lr()), (None, 1e-3));
        let ttur = TrainOptions { d_lr: Some(4e-3), ..given.clone() }.resolve(&images).unwrap();
        assert_eq!((ttur.lr, ttur.d_lr()), (1e-3, 4e-3));
        for bad in [0.0, -1e-3, f32::NAN] {
            let e = TrainOptions { d_lr: Some(bad), ..given.clone() }.resolve(&images).unwrap_err();
            assert!(e.to_string().contains("--d-lr must be a positive number"), "{e}");
        }
        // The decay is fixed to a run's length when it starts.
        let c = c.with_run_length(1000);
        assert_eq!((c.lr_decay_end, c.lr_decay_steps()), (1000, 500));
    }

    /// `--arch dcgan` has measured defaults of its own (Adam 8e-4, packing 2, no weight average,
    /// no dropout); flags win.
    #[test]
    fn dcgan_defaults_are_its_own() {
        let mut digits = Dataset::from_u8(8, 784, vec![9; 8 * 784]).unwrap();
        digits.sample_shape = vec![28, 28];
        let dcgan = TrainOptions { arch: Some(Arch::Dcgan), batch_size: Some(4), ..Default::default() };
        let c = dcgan.resolve(&digits).unwrap();
        assert_eq!((c.lr, c.model.pack, c.g_ema, c.d_dropout), (DCGAN_LR, DCGAN_PACK, DCGAN_G_EMA, 0.0));
        assert_eq!((DCGAN_LR, DCGAN_PACK, DCGAN_G_EMA), (8e-4, 2, 0.0));
        let given =
            TrainOptions { lr: Some(2e-4), pack: Some(1), g_ema: Some(0.999), d_dropout: Some(0.2), ..dcgan.clone() };
        let c = given.resolve(&digits).unwrap();
        assert_eq!((c.lr, c.model.pack, c.g_ema, c.d_dropout), (2e-4, 1, 0.999, 0.2));
        let odd = TrainOptions { batch_size: Some(3), ..dcgan.clone() };
        assert!(odd.resolve(&digits).unwrap_err().to_string().contains("multiple of --pack 2"));
        // 32x32 and 64x64 (colour folders): twice the rate and G's weight average, measured there.
        for size in [32, 64] {
            let shape = crate::data::ImageShape { channels: 3, height: size, width: size };
            let colour = Dataset::from_u8_images(8, shape, vec![9; 8 * 3 * size * size]).unwrap();
            let c = TrainOptions { batch_size: Some(4), ..Default::default() }.resolve(&colour).unwrap();
            let want = (Arch::Dcgan, DCGAN_COLOUR_G_EMA, DCGAN_COLOUR_LR, DCGAN_PACK);
            assert_eq!((c.model.arch, c.g_ema, c.lr, c.model.pack), want);
        }
        assert_eq!((DCGAN_COLOUR_LR, DCGAN_COLOUR_G_EMA), (1.6e-3, 0.99));
    }

    /// Without --arch: the DCGAN for 32x32 and 64x64 images, the MLP for everything else; a
    /// given --arch wins.
    #[test]
    fn the_architecture_follows_the_image_size() {
        let images = |c: usize, s: usize| {
            let shape = ImageShape { channels: c, height: s, width: s };
            Dataset::from_u8_images(4, shape, vec![7; 4 * c * s * s]).unwrap()
        };
        let auto = TrainOptions::default();
        for (c, s, want) in [
            (3, 32, Arch::Dcgan),
            (3, 64, Arch::Dcgan),
            (1, 32, Arch::Dcgan),
            (1, 28, Arch::Mlp),
            (3, 28, Arch::Mlp),
            (3, 48, Arch::Mlp),
        ] {
            assert_eq!(auto.arch_for(&images(c, s), None), want, "{c}x{s}x{s}");
        }
        let given = TrainOptions { arch: Some(Arch::Mlp), ..Default::default() };
        assert_eq!(given.arch_for(&images(3, 32), None), Arch::Mlp);
        let points = Dataset::from_f32(4, 2, vec![-3.0, 2.0, 0.5, 1.0, 4.0, -1.0, 0.0, 0.0]).unwrap();
        assert_eq!(auto.arch_for(&points, None), Arch::Mlp);
        let c = TrainOptions { batch_size: Some(2), ..Default::default() }.resolve(&images(3, 32)).unwrap();
        assert_eq!(c.model.arch, Arch::Dcgan);
    }

    /// A `--toy` run with no flags gets the best settings measured (docs/results.md, "Toy benchmarks");
    /// flags given still win.
    #[test]
    fn toy_defaults_are_the_measured_best_settings() {
        for t in [Toy::Ring8, Toy::Grid25] {
            let data = t.dataset(0, 1000).unwrap();
            let c = TrainOptions::default().resolve_for(&data, Some(t)).unwrap();
            assert_eq!((c.batch_size, c.lr, c.model.latent_dim, c.model.pack, c.g_ema), (256, 2e-4, 2, 2, 0.999));
            assert_eq!((c.model.g_hidden.clone(), c.model.d_hidden.clone()), (vec![128, 128], vec![128, 128]));
            assert_eq!((c.d_dropout, c.model.g_output), (0.0, Activation::Identity));
            let given = TrainOptions { batch_size: Some(64), pack: Some(1), g_ema: Some(0.0), ..Default::default() };
            let c = given.resolve_for(&data, Some(t)).unwrap();
            assert_eq!((c.batch_size, c.model.pack, c.g_ema, c.model.latent_dim), (64, 1, 0.0, 2));
        }
        assert_eq!((toy_steps(Toy::Ring8), toy_steps(Toy::Grid25)), (30_000, 80_000));
        // The same 2-D points without --toy keep the plain defaults.
        let c = TrainOptions::default().resolve(&Toy::Ring8.dataset(0, 1000).unwrap()).unwrap();
        assert_eq!((c.batch_size, c.model.latent_dim, c.model.pack, c.g_ema), (64, 64, 1, 0.0));
    }
}
