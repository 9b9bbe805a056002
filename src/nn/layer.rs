//! What every layer kind provides (see [`Layer`]) and what a network hands it.

use std::fmt;

use crate::ir::{At, BufId, Op};
use crate::kernels::activation::Activation;
use crate::kernels::head::HeadLoss;
use crate::kernels::random::DropMask;
use crate::rng;

/// Training (dropout masks keyed by `pass`, so that the backward pass recomputes the forward's)
/// or evaluation (no dropout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `pass` tells one forward pass of a step from another: 0 is D in the D step, 1 D in the G
    /// step, 1 + j the j-th extra D step.
    Train {
        pass: u32,
    },
    Eval,
}

impl Mode {
    /// The mode of group `g` of a pass ([`Io::groups`]): its random draws (dropout,
    /// augmentation) are those of a pass of its own, numbered 128 g on.
    pub fn for_group(self, g: usize) -> Mode {
        match self {
            Mode::Train { pass } => Mode::Train { pass: pass + 128 * g as u32 },
            Mode::Eval => Mode::Eval,
        }
    }
}

/// A tensor of a layer: its name within the layer ("weight") and its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: &'static str,
    pub shape: Vec<usize>,
    /// The module it is named under when not the layer's own: a projection head's class
    /// embedding is `embed.weight` beside the head's `fc3.weight`, as a PyTorch module holding an
    /// `nn.Embedding` named `embed` names it.
    pub module: Option<&'static str>,
}

impl TensorSpec {
    pub fn new(name: &'static str, shape: &[usize]) -> Self {
        TensorSpec { name, shape: shape.to_vec(), module: None }
    }

    /// A tensor named under `module` rather than its layer's name.
    pub fn in_module(module: &'static str, name: &'static str, shape: &[usize]) -> Self {
        TensorSpec { module: Some(module), ..TensorSpec::new(name, shape) }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a layer's output lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// A buffer of its own in the activations' storage (f16 at `--precision f16`).
    Act,
    /// A buffer of its own in f32 whatever the precision (a cast back to f32).
    F32,
    /// Its input's buffer: the layer works in place (dropout).
    InPlace,
}

/// Keys a layer's seeded initialisation: Philox counters (i / 4, index, net, PURPOSE_INIT).
#[derive(Clone, Copy, Debug)]
pub struct InitKey {
    pub seed: u64,
    /// Which network (D 0, G 1, the classifier 2).
    pub net: u32,
    /// The layer's place among the network's layers that have parameters.
    pub index: u32,
}

/// How a layer's weights start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// PyTorch's `nn.Linear` / `nn.Conv2d` default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the bias
    /// too.
    Default,
    /// N(0, std) weights and zero bias (the DCGAN recipe: std 0.02).
    Normal(f32),
}

impl InitKey {
    /// The key of the `k`-th further block of a layer's parameters (k from 1: a projection
    /// head's class embedding after its weight and bias), so its draws are its own: index +
    /// 65536 k (a network has far fewer layers).
    pub fn part(&self, k: u32) -> InitKey {
        InitKey { index: self.index + (k << 16), ..*self }
    }

    /// Fills `out` with N(mean, std), four values per Philox block (Box-Muller).
    pub fn normal(&self, mean: f32, std: f32, out: &mut [f32]) {
        rng::normals(rng::seed_words(self.seed), self.index, self.net, rng::PURPOSE_INIT, out);
        out.iter_mut().for_each(|v| *v = mean + std * *v);
    }

    /// A weight span (the first `weights` values) and a bias span (the rest) as `init` says.
    pub fn weights_and_bias(&self, init: Init, fan_in: usize, weights: usize, params: &mut [f32]) {
        match init {
            Init::Default => self.uniform(1.0 / (fan_in as f32).sqrt(), params),
            Init::Normal(std) => {
                let (w, b) = params.split_at_mut(weights);
                self.normal(0.0, std, w);
                b.iter_mut().for_each(|v| *v = 0.0);
            }
        }
    }

    /// Fills `out` with U(-bound, bound), four values per Philox block.
    pub fn uniform(&self, bound: f32, out: &mut [f32]) {
        let key = rng::seed_words(self.seed);
        for (q, chunk) in out.chunks_mut(4).enumerate() {
            let w = rng::philox4x32([q as u32, self.index, self.net, rng::PURPOSE_INIT], key);
            for (v, word) in chunk.iter_mut().zip(w) {
                *v = (2.0 * rng::unit_f32(word) - 1.0) * bound;
            }
        }
    }
}

/// Where a layer's call reads and writes: input `x` and output `y` of `rows` rows, in `groups`
/// batches of rows / groups rows one after the other that batch statistics keep apart (D's
/// reals, then its fakes; 1 otherwise).
#[derive(Clone, Copy, Debug)]
pub struct Io {
    pub x: At,
    pub y: At,
    pub rows: usize,
    pub groups: usize,
}

/// The most groups a pass has ([`Io::groups`]): D's reals and fakes.
pub const MAX_GROUPS: usize = 2;

impl Io {
    /// Rows per group.
    pub fn group_rows(&self) -> usize {
        self.rows / self.groups.max(1)
    }
}

/// The backward pass's places: the gradient of the output, of the input (None: not wanted),
/// whether to compute the layer's parameter gradients, and whether to add them to those already
/// there (a second pass of the same step, e.g. D on fakes after D on reals). Where a layer ends
/// in an activation and the next layer can scale its input gradient by that activation's
/// derivative as it stores it ([`Layer::folds_input_activation`]), the network has it do so:
/// the next layer's `dx_act` is the activation, and this layer's `dz_given` says its `dy`
/// already is the gradient before its activation.
#[derive(Clone, Copy, Debug)]
pub struct Grads {
    pub dy: At,
    pub dx: Option<At>,
    pub weights: bool,
    pub accumulate: bool,
    /// `dy` is already multiplied by the derivative of this layer's output activation.
    pub dz_given: bool,
    /// Scale `dx` by this activation's derivative at x (the layer before's output activation).
    pub dx_act: Activation,
    /// Then mask `dx` as the dropout right below the layer would mask it in its backward call
    /// (off when there is none, or it makes its own call; [`Layer::fuses_dropout`]).
    pub dx_mask: DropMask,
}

/// What the network hands a layer when it emits kernel calls.
pub struct Ctx<'a> {
    pub ops: &'a mut Vec<Op>,
    /// The parameters the kernels read (the f16 copy at `--precision f16`) and the layer's first
    /// parameter in it.
    pub weights: BufId,
    pub off: usize,
    /// The network's gradient buffer (the parameters' layout), when there is a backward pass.
    pub grads: Option<BufId>,
    /// The network's non-trainable state and the layer's place in it.
    pub state: Option<BufId>,
    pub state_off: usize,
    /// The layer's scratch buffers, in the order [`Layer::scratch`] lists them.
    pub scratch: &'a [BufId],
    /// The program's seed (dropout masks).
    pub seed: u64,
    /// The activations are f16 (`--precision f16`): the fused f32-only kernels do not apply.
    pub half: bool,
    /// A conditional model's class labels of the pass's rows (f32 class indices), for the
    /// layers that read them (`Embedding`, `ProjectionHead`).
    pub labels: Option<At>,
    /// The mask of the dropout right after the layer, for its forward call to apply to its
    /// output (off when there is none, or it makes its own call; [`Layer::fuses_dropout`]).
    pub out_mask: DropMask,
}

/// A weight of a layer that spectral normalisation divides by its largest singular value
/// (`nn::spectral`): where it and its u, v sit from the layer's first parameter and first state
/// value, read as a rows x cols matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpectralWeight {
    pub param_off: usize,
    pub state_off: usize,
    pub rows: usize,
    pub cols: usize,
}

/// One layer kind: its tensors, its storage needs and its kernel calls. Its parameters sit
/// contiguously in the network's flat buffer, in the order [`Layer::params`] lists them.
pub trait Layer: fmt::Debug + Send + Sync {
    /// "linear", "dropout", ...
    fn kind(&self) -> &'static str;
    /// Values per row of its input and output.
    fn in_features(&self) -> usize;
    fn out_features(&self) -> usize;
    /// Trainable tensors (checkpoint names `NET.LAYER.NAME`).
    fn params(&self) -> Vec<TensorSpec> {
        vec![]
    }
    /// Non-trainable state kept in checkpoints (running statistics).
    fn state(&self) -> Vec<TensorSpec> {
        vec![]
    }
    fn output(&self) -> Output {
        Output::Act
    }
    /// The gradient passes through unchanged, so the input's gradient is the output's buffer.
    fn grad_in_place(&self) -> bool {
        false
    }
    /// The activation this layer ends in (its output is act(z)), whose derivative the next layer
    /// may apply for it ([`Grads`]); the identity when none or when the layer cannot take its dz.
    fn output_activation(&self) -> Activation {
        Activation::Identity
    }
    /// Its forward call applies [`Ctx::out_mask`] to its output and its backward call
    /// [`Grads::dx_mask`] to dx, as they store them, so that the dropout layers next to it make
    /// no calls of their own (f32 only; `nn::Net` decides).
    fn fuses_dropout(&self) -> bool {
        false
    }
    /// A dropout layer's mask for a pass of `rows` rows in `groups` groups (None: not a dropout
    /// layer, or eval mode, where it does nothing).
    fn dropout_mask(&self, _rows: usize, _groups: usize, _mode: Mode, _seed: u64) -> Option<DropMask> {
        None
    }
    /// Its backward pass scales dx by [`Grads::dx_act`]'s derivative at x as it stores dx.
    fn folds_input_activation(&self) -> bool {
        false
    }
    /// Seeded initial parameters (the layer's span of the flat buffer).
    fn init(&self, _key: InitKey, _params: &mut [f32]) {}
    /// Initial state, from the layer's initial parameters (`params`, its span) where it depends
    /// on them (spectral normalisation's u and v).
    fn init_state(&self, _key: InitKey, _params: &[f32], _state: &mut [f32]) {}
    /// With spectral normalisation: its weight, at its first parameter, read as an (m, n)
    /// matrix; u (m) at its first state value, then v (n). See `nn::spectral`.
    fn spectral(&self) -> Option<(usize, usize)> {
        None
    }
    /// Every spectrally normalised weight of the layer: by default the one [`Layer::spectral`]
    /// names; a layer with several overrides it.
    fn spectral_weights(&self) -> Vec<SpectralWeight> {
        let one = self.spectral().map(|(rows, cols)| SpectralWeight { param_off: 0, state_off: 0, rows, cols });
        one.into_iter().collect()
    }
    /// f32 scratch buffers for `rows` rows, with activations in f16 when `half`: (name, length).
    fn scratch(&self, _rows: usize, _half: bool) -> Vec<(&'static str, usize)> {
        vec![]
    }
    fn forward(&self, cx: &mut Ctx, io: Io, mode: Mode);
    /// Its forward call, `loss` on its output (the gradient into `g.dy`) and its backward call
    /// as `g` says, in one kernel call, where the layer is a head that can fuse them (a
    /// one-logit linear layer at f32: `kernels::head`); None otherwise.
    fn fused_head(&self, _cx: &Ctx, _io: Io, _g: Grads, _loss: HeadLoss) -> Option<Op> {
        None
    }
    /// `g.dy` is the gradient of `io.y`; writes `g.dx` and, with `g.weights`, the parameters'
    /// gradients.
    fn backward(&self, cx: &mut Ctx, io: Io, g: Grads, mode: Mode);
}
