//! 2-D convolution (conv.wgsl, conv_gemm.wgsl), and 2-D transposed convolution by role swaps: one
//! uniform, four entry points (`conv2d_forward`, `conv2d_backward_input`,
//! `conv2d_backward_weight`, `conv2d_backward_bias`) and tiled implicit-GEMM variants of the
//! first three (`*_tiled`, launchers in `tiled.rs`), the builders that fill the params of a conv2d
//! or conv_transpose2d layer's calls (so the role swaps cannot go wrong), the rule that picks a
//! variant per call, the CPU twins (`twin.rs`) and the CPU backend's fast paths (`fast.rs`:
//! im2col and sgemm). Layout NCHW like PyTorch; the WGSL headers have the formulas.
//!
//! # Direct or tiled
//!
//! The direct kernels (conv.wgsl) run one invocation per output element; the tiled ones
//! (conv_gemm.wgsl) treat each pass as a GEMM whose im2col operand is computed as it is loaded,
//! each invocation owning a 4x4 block of outputs (a tile of 64x64 per workgroup from 64
//! channels up; the input gradient as one GEMM per output parity class, whose taps are the
//! same for every position in it; the weight gradient with its long inner dimension n h_out
//! w_out in four fixed slices). Both compute the same sums; the forward and the input gradient
//! even in the same order, the weight gradient in four chunks (tolerance.rs). On the CPU both
//! run the same twins or fast paths.
//!
//! [`ConvCall::op`] picks the variant by [`mode`]: `SHADERGAN_CONV=direct`, `=tiled`, or `=auto`
//! (the default: [`auto_variant`]), or [`with_mode`] on one thread (tests force a path with it).
//! The rule, in terms of the call's GEMM (outputs = rows x columns, the inner dimension each
//! output sums over):
//!
//! | pass | rows | columns | inner |
//! |---|---|---|---|
//! | forward | c_out | n h_out w_out | c_in kh kw |
//! | backward_input | c_in | n h_in w_in | c_out ceil(kh / s) ceil(kw / s) |
//! | backward_weight | c_out | c_in kh kw | n h_out w_out |
//!
//! is: tiled when the output has at least [`AUTO_MIN_OUTPUTS`] (1,024) elements and the inner
//! dimension at least [`AUTO_MIN_INNER`] (16), direct otherwise; the bias gradient is always
//! direct. Both thresholds are where lavapipe's measurements (below) cross over: the direct
//! kernel wins only at D's last layer, whose forward has 64 outputs (16 tiled invocations
//! against 64 direct ones, each over 8,192 taps), and at batch 8 its weight gradient (8,192
//! outputs over an inner dimension of 8: the tiled slices' reduction costs more than the sums).
//!
//! Measured with `cargo test --release --test ops -- --ignored --nocapture conv_timings`
//! (timestamp queries around each dispatch, the least of 2 runs, batch 64, every tiled result
//! checked against the direct one) on lavapipe (Mesa 25.0, LLVM 15, 256-bit) on 2 shared cores
//! of an AMD EPYC under a load of about 5: lavapipe is a CPU emulation, so these figures only
//! indicate. There the tiled kernels are 2-12x faster at every DCGAN layer but D's last; the
//! direct input gradient is slowest, its tap loops diverging lane by lane. Times in ms, per
//! conv2d view (a ConvT layer runs as the conv2d whose adjoint it is: its forward is that
//! view's backward_input, its input gradient the view's forward; 28x28 and 64x64 at g = d = 64):
//!
//! | layer view | forward direct / tiled | backward_input | backward_weight |
//! |---|---|---|---|
//! | 28: D.conv1 / G.deconv2, Conv(1, 64) 28 -> 14 | 74.3 / 19.5 | 182.9 / 63.2 | 23.6 / 13.4 |
//! | 28: D.conv2 / G.deconv1, Conv(64, 128) 14 -> 7 | 1,490.9 / 415.0 | 5,059.3 / 477.8 | 1,256.9 / 470.6 |
//! | 64: D.conv1 / G.deconv5, Conv(3, 64) 64 -> 32 | 1,000.2 / 198.6 | 1,878.1 / 159.0 | 291.5 / 136.2 |
//! | 64: D.conv2 / G.deconv4, Conv(64, 128) 32 -> 16 | 6,656.5 / 1,995.7 | 27,419.6 / 2,835.7 | 3,987.6 / 1,110.6 |
//! | 64: D.conv3 / G.deconv3, Conv(128, 256) 16 -> 8 | 4,059.2 / 946.7 | 14,088.4 / 2,217.4 | 6,185.3 / 1,880.6 |
//! | 64: D.conv4 / G.deconv2, Conv(256, 512) 8 -> 4 | 5,437.6 / 1,519.6 | 14,770.4 / 2,472.4 | 7,395.6 / 2,076.7 |
//! | 64: D.conv5, Conv(512, 1) 4 -> 1, s1 p0 | **1.08** / 3.70 | 42.3 / 5.3 | 3.46 / 2.76 |
//! | 64: G.deconv1, ConvT(100, 512) 1 -> 4, s1 p0 | 161.7 / 65.6 | 1,834.0 / 81.4 | 299.3 / 69.6 |
//!
//! Tried and dropped: the forward with workgroup-memory tiles (64x64, K in chunks of 16, two
//! barriers per chunk) ran 2-3x slower than the register-only tiled kernel on lavapipe (batch
//! 8: 114.9 against 32.9 ms at 28x28's Conv(64, 128), 507.7 against 185.3 at 64x64's
//! Conv(64, 128)), as matmul.wgsl found before.
//!
//! On a real GPU nothing has been measured (no such adapter here). The rule is what the
//! arithmetic there rewards too, more so: a tiled invocation reads 8 values per 16 products
//! where a direct one reads 2 per product, and the parity split removes the direct input
//! gradient's divergent tap loops. But a GPU needs many more invocations in flight than
//! lavapipe's 2 cores, so there the crossover likely lies at more outputs than 1,024 (the
//! tiled kernels launch 16x fewer invocations); the thresholds are constants to revisit with the
//! timing test on one. The weight gradient of the smallest layers (few outputs, a long inner
//! dimension: 28x28's Conv(1, 64), 1,024 outputs over 12,544 products) is where a GPU would
//! want a split across workgroups, which needs a scratch buffer from the layer (src/nn) and a
//! fixed-order reduction kernel: not done.

pub mod fast;
pub mod tiled;
pub mod twin;

pub use tiled::{Conv2dBackwardInputTiled, Conv2dBackwardWeightTiled, Conv2dForwardTiled};

use std::cell::Cell;
use std::sync::OnceLock;

use super::activation::{activate_in_place, scale_by_grad, Activation};
use super::{Entry, Family, Slot};
use crate::ir::kernel::groups_1d;
use crate::ir::{BufId, Host, Kernel, Op, Res, Span, UniformLayout};

/// Lanes of the bias gradient's workgroup (and of its fixed-order sum).
pub const LANES: usize = 256;

crate::uniform! {
    /// `ConvParams` in conv.wgsl: one conv2d call. Offsets are named by shape: `x_off` the
    /// (n, c_in, h_in, w_in) tensor (x or dx), `y_off` the (n, c_out, h_out, w_out) one (y or dy),
    /// `w_off` the (c_out, c_in, kh, kw) one (w or dw), `bias_off` b or db; each in the binding the
    /// entry point uses for it (conv.wgsl's header). Build them with [`Conv2dShape`] and
    /// [`ConvTranspose2dShape`], which also pick the entry point.
    pub struct ConvParams {
        pub n: u32,
        pub c_in: u32,
        pub h_in: u32,
        pub w_in: u32,
        pub c_out: u32,
        pub h_out: u32,
        pub w_out: u32,
        pub kh: u32,
        pub kw: u32,
        pub stride: u32,
        pub pad: u32,
        pub x_off: u32,
        pub w_off: u32,
        pub y_off: u32,
        pub bias_off: u32,
        /// forward (per c_out) and backward_input (per c_in): add the bias at `bias_off`.
        pub has_bias: u32,
        /// out += v instead of out = v.
        pub accumulate: u32,
        /// backward_bias: [`BIAS_SIDE_OUTPUT`] or [`BIAS_SIDE_INPUT`].
        pub bias_side: u32,
        /// forward, backward_input: the activation (code) applied to the output (a layer's own,
        /// fused; not with `accumulate`) and its slope.
        pub act: u32,
        pub slope: f32,
        /// forward, backward_input: the activation (code) whose derivative at aux (the layer's
        /// input, in the output's layout, at `aux_off` of binding 4) scales the output: an input
        /// gradient that the layer before takes as its dz.
        pub grad_act: u32,
        pub grad_slope: f32,
        pub aux_off: u32,
        /// backward_weight, backward_bias on the CPU: the sums run per group of n / groups
        /// images, each added to the ones before (the order of separate calls; 0 or 1: one).
        pub groups: u32,
    }
}

/// conv2d_backward_bias sums a y-shaped tensor (c_out channels of h_out x w_out) at `y_off`.
pub const BIAS_SIDE_OUTPUT: u32 = 0;
/// conv2d_backward_bias sums an x-shaped tensor (c_in channels of h_in x w_in) at `x_off`.
pub const BIAS_SIDE_INPUT: u32 = 1;

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

const ABC: &[Slot] = &[U(0), R(1), R(2), RW(3)];
/// The forward and the input gradient: their epilogue's aux at 4.
const ABC_AUX: &[Slot] = &[U(0), R(1), R(2), RW(3), R(4)];

pub const FAMILY: Family = Family {
    name: "conv",
    wgsl: include_str!("../../../shaders/conv.wgsl"),
    f16: false,
    // Every index is guarded by the kernel itself (the WGSL header says how) and every span
    // is checked on the host before a call is recorded: compiled without naga's runtime checks.
    unchecked: true,
    entries: &[
        Entry { name: "conv2d_forward", slots: ABC_AUX },
        Entry { name: "conv2d_backward_input", slots: ABC_AUX },
        Entry { name: "conv2d_backward_weight", slots: ABC },
        Entry { name: "conv2d_backward_bias", slots: &[U(0), R(1), RW(3)] },
    ],
    uniforms: &[ConvParams::INFO],
};

/// The tiled implicit-GEMM variants of the forward and both GEMM-shaped gradients
/// (conv_gemm.wgsl), on conv.wgsl's params and bindings.
pub const FAMILY_GEMM: Family = Family {
    name: "conv_gemm",
    wgsl: include_str!("../../../shaders/conv_gemm.wgsl"),
    f16: false,
    // Every read is clamped or replaced by the tensor's first element where it would leave the
    // tensor, every write guarded (conv_gemm.wgsl's header proves it index by index), and the
    // executor checks every op's spans against its buffers before recording it.
    unchecked: true,
    entries: &[
        Entry { name: "conv2d_forward_tiled", slots: ABC_AUX },
        Entry { name: "conv2d_backward_input_tiled", slots: ABC_AUX },
        Entry { name: "conv2d_backward_weight_tiled", slots: ABC },
    ],
    uniforms: &[ConvParams::INFO],
};

impl ConvParams {
    /// Elements of the x-shaped (n, c_in, h_in, w_in), y-shaped and w-shaped tensors.
    pub fn x_len(&self) -> usize {
        (self.n * self.c_in * self.h_in * self.w_in) as usize
    }

    pub fn y_len(&self) -> usize {
        (self.n * self.c_out * self.h_out * self.w_out) as usize
    }

    pub fn w_len(&self) -> usize {
        (self.c_out * self.c_in * self.kh * self.kw) as usize
    }

    /// backward_bias: (channels, elements per channel and image, offset of g) of the side summed.
    pub(crate) fn bias_side_shape(&self) -> (usize, usize, usize) {
        if self.bias_side == BIAS_SIDE_INPUT {
            (self.c_in as usize, (self.h_in * self.w_in) as usize, self.x_off as usize)
        } else {
            (self.c_out as usize, (self.h_out * self.w_out) as usize, self.y_off as usize)
        }
    }

    pub(crate) fn bias_channels(&self) -> usize {
        self.bias_side_shape().0
    }
}

/// conv2d's output size along one axis: (input + 2 pad - k) / stride + 1 (floor, as PyTorch);
/// None when the padded input is shorter than the kernel, or stride or k is 0.
pub fn conv2d_out_size(input: u32, k: u32, stride: u32, pad: u32) -> Option<u32> {
    if stride == 0 || k == 0 || input == 0 || input + 2 * pad < k {
        return None;
    }
    Some((input + 2 * pad - k) / stride + 1)
}

/// conv_transpose2d's output size along one axis: (input - 1) stride - 2 pad + k (no
/// output_padding, dilation 1); None when that is below 1, or stride or k is 0.
pub fn conv_transpose2d_out_size(input: u32, k: u32, stride: u32, pad: u32) -> Option<u32> {
    if stride == 0 || k == 0 || input == 0 {
        return None;
    }
    let full = (input - 1) * stride + k;
    (full > 2 * pad).then(|| full - 2 * pad)
}

/// Which conv.wgsl entry point a call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvEntry {
    Forward,
    BackwardInput,
    BackwardWeight,
    BackwardBias,
}

/// A kernel call: the entry point and its params, before its buffers are chosen (but the
/// epilogue's aux, when it has one).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvCall {
    pub entry: ConvEntry,
    pub p: ConvParams,
    /// The buffer of the epilogue's aux ([`ConvCall::scaled_by_grad`]).
    pub aux: Option<BufId>,
}

impl ConvCall {
    /// The forward or input-gradient call ending in `act` (a layer's own activation, fused).
    pub fn activated(mut self, act: Activation) -> Self {
        debug_assert!(matches!(self.entry, ConvEntry::Forward | ConvEntry::BackwardInput) && self.p.accumulate == 0);
        (self.p.act, self.p.slope) = (act.code(), act.slope());
        self
    }

    /// The forward or input-gradient call with its output scaled by `act`'s derivative at
    /// `aux_off` of `aux` (the layer before's output, in the output's layout): the input
    /// gradient made the layer before's dz. Nothing for the identity.
    pub fn scaled_by_grad(mut self, act: Activation, aux: BufId, aux_off: u32) -> Self {
        if act != Activation::Identity {
            (self.p.grad_act, self.p.grad_slope, self.p.aux_off, self.aux) =
                (act.code(), act.slope(), aux_off, Some(aux));
        }
        self
    }

    /// The weight or bias gradient summed per group of n / groups images, as separate calls would
    /// (on the CPU; the GPU sums them together, in its own order).
    pub fn in_groups(mut self, groups: usize) -> Self {
        self.p.groups = groups as u32;
        self
    }

    /// The call on these buffers (bindings 1, 2, 3; `c` is unused by the bias gradient), on the
    /// kernel [`ConvCall::variant`] selects.
    pub fn op(self, a: BufId, c: BufId, out: BufId) -> Op {
        self.op_as(self.variant(), a, c, out)
    }

    /// The variant this call runs as: the mode in force ([`mode`]) applied to its shape.
    pub fn variant(&self) -> Variant {
        select(mode(), self.entry, &self.p)
    }

    /// The call on the direct or the tiled kernel, whatever the rule says (the bias gradient
    /// has only the direct one).
    pub fn op_as(self, variant: Variant, a: BufId, c: BufId, out: BufId) -> Op {
        let (p, aux) = (self.p, self.aux.unwrap_or(a));
        match (self.entry, variant) {
            (ConvEntry::Forward, Variant::Direct) => Conv2dForward { p, a, c, out, aux }.into(),
            (ConvEntry::Forward, Variant::Tiled) => Conv2dForwardTiled { p, a, c, out, aux }.into(),
            (ConvEntry::BackwardInput, Variant::Direct) => Conv2dBackwardInput { p, a, c, out, aux }.into(),
            (ConvEntry::BackwardInput, Variant::Tiled) => Conv2dBackwardInputTiled { p, a, c, out, aux }.into(),
            (ConvEntry::BackwardWeight, Variant::Direct) => Conv2dBackwardWeight { p, a, c, out }.into(),
            (ConvEntry::BackwardWeight, Variant::Tiled) => Conv2dBackwardWeightTiled { p, a, c, out }.into(),
            (ConvEntry::BackwardBias, _) => Conv2dBackwardBias { p, a, out }.into(),
        }
    }
}

/// Which kernel runs a conv call on the GPU. The CPU runs the same twins (or fast paths) for
/// both, so the choice changes nothing there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// conv.wgsl: one invocation per output element.
    Direct,
    /// conv_gemm.wgsl: tiled implicit GEMMs, 4x4 outputs per invocation.
    Tiled,
}

/// How calls choose their [`Variant`]: `SHADERGAN_CONV=direct|tiled|auto` for the process
/// (default auto, read once), or [`with_mode`] for the calls built inside it on one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Direct,
    Tiled,
    /// [`auto_variant`]: the rule in this module's header.
    Auto,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "direct" => Some(Mode::Direct),
            "tiled" => Some(Mode::Tiled),
            "auto" | "" => Some(Mode::Auto),
            _ => None,
        }
    }
}

thread_local! {
    static FORCED: Cell<Option<Mode>> = const { Cell::new(None) };
}

/// Runs `f` with every conv call built on this thread (a program, a test's op) in `mode`,
/// whatever SHADERGAN_CONV says; the previous mode comes back afterwards, even on a panic.
pub fn with_mode<R>(mode: Mode, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Mode>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(FORCED.with(|c| c.replace(Some(mode))));
    f()
}

/// The mode in force on this thread: [`with_mode`]'s, else SHADERGAN_CONV's, else auto. An
/// unknown SHADERGAN_CONV value is reported once on stderr and read as auto.
pub fn mode() -> Mode {
    static ENV: OnceLock<Mode> = OnceLock::new();
    FORCED.with(|c| c.get()).unwrap_or_else(|| {
        *ENV.get_or_init(|| match std::env::var("SHADERGAN_CONV") {
            Err(_) => Mode::Auto,
            Ok(v) => Mode::parse(&v).unwrap_or_else(|| {
                eprintln!("warning: SHADERGAN_CONV={v} is not direct, tiled or auto; using auto");
                Mode::Auto
            }),
        })
    })
}

/// The variant of a call with these params in `mode` (the bias gradient is always direct).
pub fn select(mode: Mode, entry: ConvEntry, p: &ConvParams) -> Variant {
    match (entry, mode) {
        (ConvEntry::BackwardBias, _) | (_, Mode::Direct) => Variant::Direct,
        (_, Mode::Tiled) => Variant::Tiled,
        (_, Mode::Auto) => auto_variant(entry, p),
    }
}

/// The call's GEMM as (outputs, inner dimension): the table in the module header.
pub fn gemm_size(entry: ConvEntry, p: &ConvParams) -> (usize, usize) {
    let u = |v: u32| v as usize;
    let k = u(p.c_in * p.kh * p.kw);
    match entry {
        ConvEntry::Forward => (p.y_len(), k),
        ConvEntry::BackwardInput => {
            let s = p.stride.max(1);
            (p.x_len(), u(p.c_out) * u(p.kh.div_ceil(s)) * u(p.kw.div_ceil(s)))
        }
        ConvEntry::BackwardWeight => (p.w_len(), u(p.n * p.h_out * p.w_out)),
        ConvEntry::BackwardBias => (u(p.c_out), u(p.n * p.h_out * p.w_out)),
    }
}

/// The default rule (module header): tiled where the call's GEMM has at least
/// [`AUTO_MIN_OUTPUTS`] outputs and an inner dimension of at least [`AUTO_MIN_INNER`].
pub fn auto_variant(entry: ConvEntry, p: &ConvParams) -> Variant {
    let (outputs, inner) = gemm_size(entry, p);
    if entry != ConvEntry::BackwardBias && outputs >= AUTO_MIN_OUTPUTS && inner >= AUTO_MIN_INNER {
        Variant::Tiled
    } else {
        Variant::Direct
    }
}

/// Fewer outputs than this run direct: below it the tiled grid has fewer than 64 block owners
/// (measured: D's last layer, 64 outputs, direct 1.08 ms against 3.70 on lavapipe).
pub const AUTO_MIN_OUTPUTS: usize = 1024;
/// A shorter inner dimension runs direct (measured: an 8-long weight gradient sum lost to the
/// direct kernel; 16-long forward sums, at 28x28's first layer, won by 3.8x).
pub const AUTO_MIN_INNER: usize = 16;

/// A torch.nn.Conv2d(c_in, c_out, (kh, kw), stride, pad) layer on an (n, c_in, h_in, w_in) batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub n: u32,
    pub c_in: u32,
    pub h_in: u32,
    pub w_in: u32,
    pub c_out: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride: u32,
    pub pad: u32,
}

impl Conv2dShape {
    /// (h_out, w_out); panics where the kernel does not fit (see [`conv2d_out_size`]).
    pub fn out_hw(&self) -> (u32, u32) {
        let size = |input, k| {
            conv2d_out_size(input, k, self.stride, self.pad)
                .unwrap_or_else(|| panic!("conv2d {self:?}: kernel does not fit the padded input"))
        };
        (size(self.h_in, self.kh), size(self.w_in, self.kw))
    }

    /// The geometry as ConvParams, every offset 0, no bias, no accumulation.
    pub fn params(&self) -> ConvParams {
        let (h_out, w_out) = self.out_hw();
        assert!(self.n >= 1 && self.c_in >= 1 && self.c_out >= 1, "conv2d {self:?}: empty tensor");
        ConvParams {
            n: self.n,
            c_in: self.c_in,
            h_in: self.h_in,
            w_in: self.w_in,
            c_out: self.c_out,
            h_out,
            w_out,
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
            pad: self.pad,
            ..Default::default()
        }
    }

    /// y = conv(x, w) + b. Bindings: 1 x (x_off), 2 w and b (w_off, bias_off), 3 y (y_off).
    pub fn forward(&self, x_off: u32, w_off: u32, bias_off: Option<u32>, y_off: u32) -> ConvCall {
        let (has_bias, bias_off) = bias_fields(bias_off);
        let p = ConvParams { x_off, w_off, y_off, bias_off, has_bias, ..self.params() };
        ConvCall { entry: ConvEntry::Forward, p, aux: None }
    }

    /// dx (+)= conv^T(dy, w). Bindings: 1 dy (y_off), 2 w (w_off), 3 dx (x_off).
    pub fn backward_input(&self, dy_off: u32, w_off: u32, dx_off: u32, accumulate: bool) -> ConvCall {
        let p = ConvParams { y_off: dy_off, w_off, x_off: dx_off, accumulate: accumulate as u32, ..self.params() };
        ConvCall { entry: ConvEntry::BackwardInput, p, aux: None }
    }

    /// dw (+)= sum dy x-taps. Bindings: 1 dy (y_off), 2 x (x_off), 3 dw (w_off).
    pub fn backward_weight(&self, dy_off: u32, x_off: u32, dw_off: u32, accumulate: bool) -> ConvCall {
        let p = ConvParams { y_off: dy_off, x_off, w_off: dw_off, accumulate: accumulate as u32, ..self.params() };
        ConvCall { entry: ConvEntry::BackwardWeight, p, aux: None }
    }

    /// db (+)= sum of dy per output channel. Bindings: 1 dy (y_off), 3 db (bias_off).
    pub fn backward_bias(&self, dy_off: u32, db_off: u32, accumulate: bool) -> ConvCall {
        let p = ConvParams {
            y_off: dy_off,
            bias_off: db_off,
            bias_side: BIAS_SIDE_OUTPUT,
            accumulate: accumulate as u32,
            ..self.params()
        };
        ConvCall { entry: ConvEntry::BackwardBias, p, aux: None }
    }
}

/// A torch.nn.ConvTranspose2d(c_in, c_out, (kh, kw), stride, pad) layer (no output_padding, no
/// dilation) on an (n, c_in, h_in, w_in) batch, in the transpose's own (PyTorch's) terms; its
/// weight is (c_in, c_out, kh, kw). The builders run it on conv.wgsl's kernels with the roles
/// swapped (conv.wgsl's header): it is the adjoint of a conv2d with the channel counts and sizes
/// exchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dShape {
    pub n: u32,
    pub c_in: u32,
    pub h_in: u32,
    pub w_in: u32,
    pub c_out: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride: u32,
    pub pad: u32,
}

impl ConvTranspose2dShape {
    /// (h_out, w_out) of the transpose; panics where it would be empty.
    pub fn out_hw(&self) -> (u32, u32) {
        let size = |input, k| {
            conv_transpose2d_out_size(input, k, self.stride, self.pad)
                .unwrap_or_else(|| panic!("conv_transpose2d {self:?}: empty output"))
        };
        (size(self.h_in, self.kh), size(self.w_in, self.kw))
    }

    /// The conv2d whose adjoint this is: its input is the transpose's output and its output the
    /// transpose's input (c_in <-> c_out, sizes likewise). Its (c_out, c_in, kh, kw) weight is the
    /// transpose's (c_in, c_out, kh, kw) weight, element for element.
    pub fn as_conv2d(&self) -> Conv2dShape {
        let (h_out, w_out) = self.out_hw();
        let conv = Conv2dShape {
            n: self.n,
            c_in: self.c_out,
            h_in: h_out,
            w_in: w_out,
            c_out: self.c_in,
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
            pad: self.pad,
        };
        // The sizes round-trip exactly: (out + 2 pad - k) / stride + 1 = in, with no remainder.
        debug_assert_eq!(conv.out_hw(), (self.h_in, self.w_in));
        conv
    }

    /// Y = ConvTranspose2d(X) (+ bias per c_out), on conv2d_backward_input.
    /// Bindings: 1 X (at y_off), 2 weight and bias (w_off, bias_off), 3 Y (at x_off).
    pub fn forward(&self, input_off: u32, weight_off: u32, bias_off: Option<u32>, output_off: u32) -> ConvCall {
        let mut call = self.as_conv2d().backward_input(input_off, weight_off, output_off, false);
        (call.p.has_bias, call.p.bias_off) = bias_fields(bias_off);
        call
    }

    /// dX (+)= the transpose's input gradient, on conv2d_forward without bias.
    /// Bindings: 1 dY (at x_off), 2 weight (w_off), 3 dX (at y_off).
    pub fn backward_input(&self, d_output_off: u32, weight_off: u32, d_input_off: u32, accumulate: bool) -> ConvCall {
        let mut call = self.as_conv2d().forward(d_output_off, weight_off, None, d_input_off);
        call.p.accumulate = accumulate as u32;
        call
    }

    /// dW (+)= the weight gradient, on conv2d_backward_weight with dy := X and x := dY.
    /// Bindings: 1 X (at y_off), 2 dY (at x_off), 3 dW (w_off).
    pub fn backward_weight(&self, input_off: u32, d_output_off: u32, d_weight_off: u32, accumulate: bool) -> ConvCall {
        self.as_conv2d().backward_weight(input_off, d_output_off, d_weight_off, accumulate)
    }

    /// db (+)= sum of dY per output channel, on conv2d_backward_bias's input side.
    /// Bindings: 1 dY (at x_off), 3 db (bias_off).
    pub fn backward_bias(&self, d_output_off: u32, d_bias_off: u32, accumulate: bool) -> ConvCall {
        let p = ConvParams {
            x_off: d_output_off,
            bias_off: d_bias_off,
            bias_side: BIAS_SIDE_INPUT,
            accumulate: accumulate as u32,
            ..self.as_conv2d().params()
        };
        ConvCall { entry: ConvEntry::BackwardBias, p, aux: None }
    }
}

impl ConvParams {
    /// 2 x the outputs x the inner dimension of the call's GEMM: its multiply-adds, padding taps
    /// included (the cost model's count).
    pub fn gemm_flops(&self, entry: ConvEntry) -> f64 {
        let (outputs, inner) = gemm_size(entry, self);
        2.0 * outputs as f64 * inner as f64
    }

    /// Groups of images whose sums the CPU keeps apart: at least 1.
    pub fn group_count(&self) -> usize {
        self.groups.max(1) as usize
    }

    /// The call on group `g` of the images alone: n / groups images, x- and y-shaped offsets
    /// moved to them, added to the groups' before it.
    pub fn group(&self, g: usize) -> ConvParams {
        let n = self.n / self.group_count() as u32;
        let g = g as u32;
        ConvParams {
            n,
            x_off: self.x_off + g * n * self.c_in * self.h_in * self.w_in,
            y_off: self.y_off + g * n * self.c_out * self.h_out * self.w_out,
            accumulate: (self.accumulate != 0 || g > 0) as u32,
            groups: 1,
            ..*self
        }
    }

    /// The forward's and the input gradient's pipeline constants: ACT and GRAD_ACT.
    fn epilogue_constants(&self) -> Vec<(&'static str, f64)> {
        vec![("ACT", self.act as f64), ("GRAD_ACT", self.grad_act as f64)]
    }

    /// The aux span the epilogue reads (`len` values), when it reads one.
    fn aux_span(&self, aux: BufId, len: usize) -> Option<Span> {
        (self.grad_act != Activation::Identity.code()).then(|| Span::read(aux, self.aux_off, len))
    }

    /// The epilogue on the CPU, on the output's `len` values at `off`: `act`, then the product
    /// with grad_act'(aux): the activation kernels' arithmetic.
    fn epilogue(&self, aux: &[f32], out: &mut [f32], off: u32, len: usize) {
        let o = &mut out[off as usize..][..len];
        activate_in_place(self.act, self.slope, o);
        if self.grad_act != Activation::Identity.code() {
            scale_by_grad(self.grad_act, self.grad_slope, &aux[self.aux_off as usize..][..len], o);
        }
    }
}

fn bias_fields(bias_off: Option<u32>) -> (u32, u32) {
    match bias_off {
        Some(off) => (1, off),
        None => (0, 0),
    }
}

fn bytes(p: &ConvParams) -> Option<Vec<u8>> {
    Some(bytemuck::bytes_of(p).to_vec())
}

/// An output span, read too when accumulating.
fn out_span(buf: BufId, off: u32, len: usize) -> Span {
    Span::write(buf, off, len)
}

/// y = act(conv(x, w) (+ b)), or scaled by grad_act'(aux): a = x, c = w and b, out = y, aux the
/// epilogue's (a again when it has none).
#[derive(Clone, Debug)]
pub struct Conv2dForward {
    pub p: ConvParams,
    pub a: BufId,
    pub c: BufId,
    pub out: BufId,
    pub aux: BufId,
}

impl Kernel for Conv2dForward {
    fn entry(&self) -> &'static str {
        "conv2d_forward"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn constants(&self) -> Vec<(&'static str, f64)> {
        self.p.epilogue_constants()
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.a)), (2, Res::Buf(self.c)), (3, Res::Buf(self.out)), (4, Res::Buf(self.aux))]
    }
    fn flops(&self) -> f64 {
        self.p.gemm_flops(ConvEntry::Forward)
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.y_len())
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        let mut s = vec![Span::read(self.a, p.x_off, p.x_len()), Span::read(self.c, p.w_off, p.w_len())];
        if p.has_bias != 0 {
            s.push(Span::read(self.c, p.bias_off, p.c_out as usize));
        }
        s.push(out_span(self.out, p.y_off, p.y_len()));
        s.extend(p.aux_span(self.aux, p.y_len()));
        s
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, a, c, aux, fast, pool) = (&self.p, self.a, self.c, self.aux, host.fast, host.pool);
        host.with_out(self.out, |b, o| {
            if fast {
                fast::conv2d_forward(pool, p, &b[a], &b[c], o)
            } else {
                twin::conv2d_forward(p, &b[a], &b[c], o)
            }
            p.epilogue(&b[aux], o, p.y_off, p.y_len());
        })
    }
}

/// dx = conv^T(dy, w) (+ b per c_in), then act or scaled by grad_act'(aux): a = dy, c = w and b,
/// out = dx, aux the epilogue's (a again when it has none).
#[derive(Clone, Debug)]
pub struct Conv2dBackwardInput {
    pub p: ConvParams,
    pub a: BufId,
    pub c: BufId,
    pub out: BufId,
    pub aux: BufId,
}

impl Kernel for Conv2dBackwardInput {
    fn entry(&self) -> &'static str {
        "conv2d_backward_input"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn constants(&self) -> Vec<(&'static str, f64)> {
        self.p.epilogue_constants()
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.a)), (2, Res::Buf(self.c)), (3, Res::Buf(self.out)), (4, Res::Buf(self.aux))]
    }
    fn flops(&self) -> f64 {
        self.p.gemm_flops(ConvEntry::BackwardInput)
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.x_len())
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        let mut s = vec![Span::read(self.a, p.y_off, p.y_len()), Span::read(self.c, p.w_off, p.w_len())];
        if p.has_bias != 0 {
            s.push(Span::read(self.c, p.bias_off, p.c_in as usize));
        }
        s.push(out_span(self.out, p.x_off, p.x_len()));
        s.extend(p.aux_span(self.aux, p.x_len()));
        s
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, a, c, aux, fast, pool) = (&self.p, self.a, self.c, self.aux, host.fast, host.pool);
        host.with_out(self.out, |b, o| {
            if fast {
                fast::conv2d_backward_input(pool, p, &b[a], &b[c], o)
            } else {
                twin::conv2d_backward_input(p, &b[a], &b[c], o)
            }
            p.epilogue(&b[aux], o, p.x_off, p.x_len());
        })
    }
}

/// dw (+)= sum over the batch of dy x-taps: a = dy, c = x, out = dw (at `w_off`).
#[derive(Clone, Debug)]
pub struct Conv2dBackwardWeight {
    pub p: ConvParams,
    pub a: BufId,
    pub c: BufId,
    pub out: BufId,
}

impl Kernel for Conv2dBackwardWeight {
    fn entry(&self) -> &'static str {
        "conv2d_backward_weight"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.a)), (2, Res::Buf(self.c)), (3, Res::Buf(self.out))]
    }
    fn flops(&self) -> f64 {
        self.p.gemm_flops(ConvEntry::BackwardWeight)
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.w_len())
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        vec![
            Span::read(self.a, p.y_off, p.y_len()),
            Span::read(self.c, p.x_off, p.x_len()),
            out_span(self.out, p.w_off, p.w_len()),
        ]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, a, c, fast, pool) = (&self.p, self.a, self.c, host.fast, host.pool);
        host.with_out(self.out, |b, o| {
            for g in 0..p.group_count() {
                let q = p.group(g);
                if fast {
                    fast::conv2d_backward_weight(pool, &q, &b[a], &b[c], o)
                } else {
                    twin::conv2d_backward_weight(&q, &b[a], &b[c], o)
                }
            }
        })
    }
}

/// db (+)= per-channel sums of g (dy, or a dx-shaped gradient by `bias_side`): a = g, out = db.
#[derive(Clone, Debug)]
pub struct Conv2dBackwardBias {
    pub p: ConvParams,
    pub a: BufId,
    pub out: BufId,
}

impl Kernel for Conv2dBackwardBias {
    fn entry(&self) -> &'static str {
        "conv2d_backward_bias"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.a)), (3, Res::Buf(self.out))]
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.bias_channels() * LANES)
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        let (channels, plane, g_off) = p.bias_side_shape();
        vec![
            Span::read(self.a, g_off as u32, p.n as usize * channels * plane),
            out_span(self.out, p.bias_off, channels),
        ]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, a) = (&self.p, self.a);
        host.with_out(self.out, |b, o| {
            for g in 0..p.group_count() {
                twin::conv2d_backward_bias(&p.group(g), &b[a], o)
            }
        })
    }
}
