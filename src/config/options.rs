//! The flags of `train` that choose the model, the optimizer and the run's length and cadences,
//! with their defaults, defined once: the CLI flattens these structs, `Default` is what parsing
//! no flags gives, and a resumed run knows which flags the user really gave ([`Given`]).
//! Defaults that depend on the data are `None` here and filled in by `TrainOptions::resolve`
//! from the constants beside it (config/train.rs).

use std::collections::BTreeSet;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Parser};

use super::model::{Arch, AugmentPolicy, DNorm};
use super::train::Precision;
use crate::kernels::activation::Activation;

/// The model and optimizer choices a user makes; `resolve` completes them from the data.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// The networks: mlp (fully connected; --g-hidden, --d-hidden) or dcgan (convolutional,
    /// PyTorch's DCGAN example for 28x28, 32x32 and 64x64 images; --g-channels, --d-channels)
    /// [default: dcgan for 32x32 and 64x64 images (measured far ahead of the MLP there: docs/colour.md),
    /// mlp otherwise].
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// --arch dcgan: G's width, ngf of PyTorch's example (its last hidden layer's channels).
    #[arg(long, default_value_t = 64)]
    pub g_channels: usize,
    /// --arch dcgan: D's width, ndf (its first layer's channels).
    #[arg(long, default_value_t = 64)]
    pub d_channels: usize,
    /// D's normalisation: batch (batch norm after D's hidden convolutions, PyTorch's example;
    /// --arch dcgan only), none (a bias on each hidden convolution instead), or spectral
    /// (spectral normalisation of every D weight, one power iteration per D update, biases, no
    /// batch norm; both architectures) [default: batch for --arch dcgan, none for mlp].
    #[arg(long, value_enum)]
    pub d_norm: Option<DNorm>,
    /// D's and G's losses: bce (binary cross-entropy on D's logits, G's non-saturating loss) or
    /// hinge (D: relu(1 - D(x)) + relu(1 + D(G(z))), G: -D(G(z))) [default: bce].
    #[arg(long, value_enum)]
    pub loss: Option<crate::config::train::Loss>,
    /// DiffAugment on every image D judges, real and fake, in both steps: any of color,
    /// translation, cutout (comma-separated, applied in that order), or none. Images only
    /// [default: none].
    #[arg(long)]
    pub augment: Option<AugmentPolicy>,
    /// --arch dcgan, 28x28 images: a hidden fully connected layer of this many features (batch
    /// norm, ReLU) between z and G's first layer, as InfoGAN's MNIST model has; 0: none, as
    /// PyTorch's recipe [default: 16 x --g-channels at 28x28 (1024), else 0].
    #[arg(long)]
    pub g_fc_hidden: Option<usize>,
    /// --arch dcgan, 28x28 images: the same between D's last convolution and its logit (batch
    /// norm, leaky ReLU) [default: 16 x --d-channels at 28x28 (1024), else 0].
    #[arg(long)]
    pub d_fc_hidden: Option<usize>,
    /// Size of G's noise input [default: 64; 2 for --toy].
    #[arg(long)]
    pub latent_dim: Option<usize>,
    /// Hidden layer sizes of G, comma-separated [default: 512,512 for data in [0, 1], 128,128 for
    /// --toy, 256,256 otherwise].
    #[arg(long, value_delimiter = ',')]
    pub g_hidden: Vec<usize>,
    /// Hidden layer sizes of D, comma-separated [default: as --g-hidden].
    #[arg(long, value_delimiter = ',')]
    pub d_hidden: Vec<usize>,
    /// Hidden activation of G [default: leaky-relu for data in [0, 1], relu otherwise].
    #[arg(long, value_enum)]
    pub g_activation: Option<Activation>,
    /// Hidden activation of D [default: leaky-relu for data in [0, 1], relu otherwise].
    #[arg(long, value_enum)]
    pub d_activation: Option<Activation>,
    /// G's output activation [default: tanh for data in [0, 1], which then trains on [-1, 1];
    /// identity otherwise].
    #[arg(long, value_enum)]
    pub g_output: Option<Activation>,
    /// Samples per batch [default: 64; 256 for --toy].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Decides the initial weights, the noise and the batch order, on both backends.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Adam's learning rate [default: 4e-4 for data in [0, 1] (8e-4 with --arch dcgan at 28x28, 1.6e-3 at 32x32 and 64x64), 2e-4
    /// otherwise].
    #[arg(long)]
    pub lr: Option<f32>,
    /// D's own learning rate (the two time-scale rule, TTUR); G keeps --lr [default: --lr].
    #[arg(long)]
    pub d_lr: Option<f32>,
    #[arg(long, default_value_t = 0.5)]
    pub beta1: f32,
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f32,
    /// One-sided label smoothing: D's label for real samples (e.g. 0.9); fakes stay 0.
    #[arg(long = "label-smoothing", default_value_t = 1.0)]
    pub real_label: f32,
    /// PacGAN: D judges this many samples at once (real with real, fake with fake; stacked as
    /// channels for --arch dcgan) [default: 1; 2 for --toy and --arch dcgan].
    #[arg(long)]
    pub pack: Option<usize>,
    /// Dropout rate on D's hidden layers (seeded; the same masks on both backends) [default: 0.3
    /// for data in [0, 1] with a ReLU or leaky ReLU D and --arch mlp, 0 otherwise].
    #[arg(long)]
    pub d_dropout: Option<f32>,
    /// D updates per training step (each on its own batch), then one G update.
    #[arg(long, default_value_t = 1)]
    pub d_steps: usize,
    /// Storage of activations and matmul operands: f16 keeps them in half precision (f32 sums,
    /// f32 master weights, gradients and Adam state); on the GPU it needs shader-f16.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
    /// Keep an exponential moving average of G's weights with this decay (e.g. 0.999) and sample
    /// and evaluate with it; 0: off [default: 0.999 for data in [0, 1] with --arch mlp and for
    /// --toy, 0.99 for the DCGAN at 32x32 and 64x64, 0 otherwise].
    #[arg(long)]
    pub g_ema: Option<f32>,
    /// A class-conditional GAN: G is asked for a class (a learned class embedding joined to z,
    /// and in the DCGAN conditional batch norm too: per-class gamma and beta), D judges image
    /// and class together (a projection discriminator). Needs labels: an image folder's class
    /// subfolders, --labels FILE.npy beside a .npy, or the built-in digits'. Fake batches draw
    /// their classes uniformly. f32, --pack 1 (docs/conditional.md).
    #[arg(long)]
    pub conditional: bool,
    /// Decay the learning rate linearly to 0 over this last fraction of the run (0: constant;
    /// 0.5: full rate for the first half, then down to 0 at the last step). Off by default:
    /// measured on MNIST, decay over the last half raised the Fréchet distance from 10.9 to 16.7.
    #[arg(long)]
    pub lr_decay: Option<f32>,
}

/// How long a run trains and how often it logs, samples, checkpoints and evaluates.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// Total training steps (one step = one D update + one G update) [default: 30 epochs for
    /// images, 30000 for --toy ring8, 80000 for --toy grid25, 2000 otherwise; a resumed run: the
    /// length it was started with].
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<u32>,
    /// Train this many passes over the data set instead of --steps.
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Log a line (and a metrics.csv row) every this many steps (a resumed run keeps its own).
    #[arg(long, default_value_t = 100)]
    pub log_every: u32,
    /// Write a sample grid every this many steps, 0: only at the end.
    #[arg(long, default_value_t = 500)]
    pub sample_every: u32,
    /// Write a checkpoint every this many steps, 0: only at the end.
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_every: u32,
    /// Evaluate G every this many steps into metrics.csv (toy metrics for --toy runs; for images
    /// of 16x16 or more the sliced Wasserstein distance (swd, per level swd_64, ...), plus class
    /// coverage, class-KL, classifier score and Fréchet distance where a classifier fits), 0: only
    /// at the end (eval.json).
    #[arg(long, default_value_t = 0)]
    pub eval_every: u32,
    /// Step checkpoints to keep, the newest (0: all). Each holds the weights and Adam's state, what
    /// an exact resume needs; latest.safetensors is a link to the newest (no extra space).
    #[arg(long, default_value_t = 5)]
    pub keep_checkpoints: usize,
}

/// What parsing no flags gives: the defaults the flags declare.
pub fn defaults<T: Args>() -> T {
    #[derive(Parser)]
    struct Only<T: Args> {
        #[command(flatten)]
        inner: T,
    }
    Only::<T>::parse_from(["shadergan"]).inner
}

impl Default for TrainOptions {
    fn default() -> Self {
        defaults()
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        defaults()
    }
}

/// The flags the user gave on the command line (clap's argument ids: `latent_dim`, ...), so
/// that a resumed run tells a flag set to its default from one left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Given(BTreeSet<String>);

impl Given {
    pub fn from_matches(m: &ArgMatches) -> Self {
        let ids = m.ids().filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine));
        Given(ids.map(|id| id.to_string()).collect())
    }

    /// Flags given by their ids (library callers and tests).
    pub fn of(ids: &[&str]) -> Self {
        Given(ids.iter().map(|s| s.to_string()).collect())
    }

    pub fn has(&self, id: &str) -> bool {
        self.0.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_flags_defaults() {
        let o = TrainOptions::default();
        assert_eq!((o.latent_dim, o.batch_size, o.seed, o.pack, o.d_steps), (None, None, 0, None, 1));
        assert_eq!((o.beta1, o.beta2, o.real_label, o.precision), (0.5, 0.999, 1.0, Precision::F32));
        assert!(o.g_hidden.is_empty() && o.lr.is_none() && o.g_ema.is_none());
        let r = RunOptions::default();
        assert_eq!((r.log_every, r.sample_every, r.checkpoint_every, r.eval_every), (100, 500, 1000, 0));
    }

    #[test]
    fn given_names_only_the_flags_on_the_command_line() {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            o: TrainOptions,
            #[command(flatten)]
            r: RunOptions,
        }
        let m = <Cli as clap::CommandFactory>::command().get_matches_from(["x", "--seed", "0", "--log-every", "7"]);
        let g = Given::from_matches(&m);
        assert!(g.has("seed") && g.has("log_every"));
        assert!(!g.has("batch_size") && !g.has("latent_dim") && !g.has("lr"));
    }
}
