//! The DCGAN kernel families: 2-D convolution (`shaders/conv.wgsl`; 2-D transposed convolution by
//! role swaps) and batch normalisation (`shaders/norm.wgsl`). Here: their uniform structs, mirrored
//! field for field; the registry rows and bindings of their entry points; the workgroup counts a
//! launcher dispatches; the output-size helpers and the param builders of conv2d and
//! conv_transpose2d layers; and the CPU twin of every entry point.
//!
//! The twins are plain loops with the entry points' names, taking the same param structs and the
//! same flat buffers at the same element offsets (argument order = binding order). Every sum runs
//! in the kernel's order (see each shader's header), so the two backends differ only where the GPU
//! rounds differently (fused multiply-adds, `inverseSqrt`); see [`TOLERANCES`].

use bytemuck::{Pod, Zeroable};

/// `conv.wgsl`: conv2d forward, backward input / weight / bias. Compile with `common.wgsl` first.
pub const CONV_WGSL: &str = include_str!("../shaders/conv.wgsl");
/// `norm.wgsl`: batch norm forward (training), backward, eval. Compile with `common.wgsl` first.
pub const NORM_WGSL: &str = include_str!("../shaders/norm.wgsl");

/// (entry point, family) of every kernel in the two families.
pub const ENTRIES: &[(&str, &str)] = &[
    ("conv2d_forward", "conv"),
    ("conv2d_backward_input", "conv"),
    ("conv2d_backward_weight", "conv"),
    ("conv2d_backward_bias", "conv"),
    ("batch_norm_forward", "norm"),
    ("batch_norm_backward_params", "norm"),
    ("batch_norm_backward_input", "norm"),
    ("batch_norm_eval", "norm"),
];

/// How an entry point uses a binding slot (`shaders::Slot` in the registry: Uniform, Read,
/// ReadWrite). Storage slots are classed by their declared access, as the registry test does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Uniform,
    Read,
    ReadWrite,
}

use Access::{Read as R, ReadWrite as RW, Uniform as U};

const CONV_SLOTS: &[(u32, Access)] = &[(0, U), (1, R), (2, R), (3, RW)];
const CONV_BIAS_SLOTS: &[(u32, Access)] = &[(0, U), (1, R), (3, RW)];
const NORM_SLOTS: &[(u32, Access)] = &[(0, U), (1, R), (2, R), (3, RW), (4, RW)];

/// (entry point, the binding slots it uses). At most four storage slots each: the device is
/// opened with wgpu's downlevel limits (four storage buffers per shader stage).
pub const BINDINGS: &[(&str, &[(u32, Access)])] = &[
    ("conv2d_forward", CONV_SLOTS),
    ("conv2d_backward_input", CONV_SLOTS),
    ("conv2d_backward_weight", CONV_SLOTS),
    ("conv2d_backward_bias", CONV_BIAS_SLOTS),
    ("batch_norm_forward", NORM_SLOTS),
    ("batch_norm_backward_params", NORM_SLOTS),
    ("batch_norm_backward_input", NORM_SLOTS),
    ("batch_norm_eval", NORM_SLOTS),
];

/// Tolerances for the GPU parity tests of these kernels (|gpu - cpu| <= abs + rel |cpu|), as
/// (kernel name prefix, rel, abs), to be merged into `check::TOLERANCES` (not edited from here).
pub const TOLERANCES: &[(&str, f32, f32)] = &[
    // Sums of up to c_in kh kw (forward, backward input) or n h_out w_out (weight) products in
    // the twins' order; the GPU may fuse each product into its sum (one rounding fewer): as matmul.
    ("conv2d", 1e-4, 1e-5),
    // Additions only, in the same order on both sides: exact in IEEE arithmetic; the slack is
    // for GPUs that flush subnormal partial sums to zero.
    ("conv2d_backward_bias", 1e-6, 1e-7),
    // inverseSqrt is not correctly rounded (Vulkan: 2 ulp) and the GPU may fuse the squared
    // deviations into their sum; inv_std's error passes into y, dx and dgamma. Values of x_hat
    // near a cancellation make the absolute part matter.
    ("batch_norm", 1e-4, 1e-5),
];

/// Lanes per workgroup in both families (and in the fixed-order sums).
pub const LANES: usize = 256;

/// Most workgroups in one dispatch dimension (wgpu's limit).
const MAX_GROUPS_PER_DIM: usize = 65_535;

/// `ConvParams` in conv.wgsl: one conv2d call. Offsets are named by shape: `x_off` the
/// (n, c_in, h_in, w_in) tensor (x or dx), `y_off` the (n, c_out, h_out, w_out) one (y or dy),
/// `w_off` the (c_out, c_in, kh, kw) one (w or dw), `bias_off` b or db; each in the binding the
/// entry point uses for it (conv.wgsl's header). Build them with [`Conv2dShape`] and
/// [`ConvTranspose2dShape`], which also pick the entry point.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
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
    pub _pad0: u32,
    pub _pad1: u32,
}

/// conv2d_backward_bias sums a y-shaped tensor (c_out channels of h_out x w_out) at `y_off`.
pub const BIAS_SIDE_OUTPUT: u32 = 0;
/// conv2d_backward_bias sums an x-shaped tensor (c_in channels of h_in x w_in) at `x_off`.
pub const BIAS_SIDE_INPUT: u32 = 1;

/// `NormParams` in norm.wgsl: one batch-norm call over an (n, c, s) tensor, s = h w (1 for a
/// linear layer). Build it with [`NormParams::new`], which fills `inv_m` and `unbias`, then set
/// the offsets (norm.wgsl's header says which binding each lives in).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct NormParams {
    pub n: u32,
    pub c: u32,
    pub s: u32,
    pub x_off: u32,
    pub y_off: u32,
    pub dy_off: u32,
    pub dx_off: u32,
    pub gamma_off: u32,
    pub beta_off: u32,
    /// running_mean, in the state binding.
    pub mean_off: u32,
    /// running_var, in the state binding.
    pub var_off: u32,
    /// The saved statistics, 3c values in the state binding: mean, inv_std, gamma per channel.
    pub save_off: u32,
    pub dgamma_off: u32,
    pub dbeta_off: u32,
    pub eps: f32,
    pub momentum: f32,
    /// 1 / (n s).
    pub inv_m: f32,
    /// (n s) / (n s - 1), the unbiased variance's factor; 1 when n s = 1 (where PyTorch errors).
    pub unbias: f32,
    /// forward: update running_mean and running_var (a GAN's G step may run D without it).
    pub update_running: u32,
    /// backward_*: out += v instead of out = v.
    pub accumulate: u32,
}

impl NormParams {
    /// A call over (n, c, s) with PyTorch's defaults (eps 1e-5, momentum 0.1), updating the
    /// running statistics, every offset 0. Panics when a channel has no elements.
    pub fn new(n: u32, c: u32, s: u32) -> Self {
        let m = n * s;
        assert!(m >= 1 && c >= 1, "batch norm over (n {n}, c {c}, s {s}): no elements");
        // Computed here, once, so that both backends multiply by the same correctly rounded value.
        let inv_m = 1.0 / m as f32;
        let unbias = if m > 1 { m as f32 / (m - 1) as f32 } else { 1.0 };
        NormParams { n, c, s, eps: 1e-5, momentum: 0.1, inv_m, unbias, update_running: 1, ..Default::default() }
    }

    /// Elements per channel.
    pub fn m(&self) -> usize {
        (self.n * self.s) as usize
    }

    /// The workgroups `entry` (a norm.wgsl entry point) needs for these params.
    pub fn workgroups(&self, entry: &str) -> [u32; 3] {
        match entry {
            "batch_norm_forward" | "batch_norm_backward_params" | "batch_norm_backward_input" => {
                groups_1d(self.c as usize * LANES)
            }
            "batch_norm_eval" => groups_1d((self.n * self.c * self.s) as usize),
            _ => panic!("{entry} is not a norm.wgsl entry point"),
        }
    }
}

/// Workgroups for `n` invocations of a 256-wide 1-D kernel, split so no dimension passes
/// 65,535 (as the GPU executor splits 1-D kernels; `linear_index` in common.wgsl undoes it).
pub fn groups_1d(n: usize) -> [u32; 3] {
    let g = n.div_ceil(LANES).max(1);
    if g <= MAX_GROUPS_PER_DIM {
        [g as u32, 1, 1]
    } else {
        [MAX_GROUPS_PER_DIM as u32, g.div_ceil(MAX_GROUPS_PER_DIM) as u32, 1]
    }
}

impl ConvParams {
    /// The workgroups `entry` (a conv.wgsl entry point) needs for these params.
    pub fn workgroups(&self, entry: &str) -> [u32; 3] {
        let p = self;
        match entry {
            "conv2d_forward" => groups_1d((p.n * p.c_out * p.h_out * p.w_out) as usize),
            "conv2d_backward_input" => groups_1d((p.n * p.c_in * p.h_in * p.w_in) as usize),
            "conv2d_backward_weight" => groups_1d((p.c_out * p.c_in * p.kh * p.kw) as usize),
            "conv2d_backward_bias" => groups_1d(self.bias_channels() * LANES),
            _ => panic!("{entry} is not a conv.wgsl entry point"),
        }
    }

    /// backward_bias: (channels, elements per channel and image, offset of g) of the side summed.
    fn bias_side_shape(&self) -> (usize, usize, usize) {
        if self.bias_side == BIAS_SIDE_INPUT {
            (self.c_in as usize, (self.h_in * self.w_in) as usize, self.x_off as usize)
        } else {
            (self.c_out as usize, (self.h_out * self.w_out) as usize, self.y_off as usize)
        }
    }

    fn bias_channels(&self) -> usize {
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

/// A kernel call: the entry point and its params. Bindings 1-3 are documented on the builder.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvCall {
    pub entry: &'static str,
    pub p: ConvParams,
}

impl ConvCall {
    pub fn workgroups(&self) -> [u32; 3] {
        self.p.workgroups(self.entry)
    }
}

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
        ConvCall { entry: "conv2d_forward", p }
    }

    /// dx (+)= conv^T(dy, w). Bindings: 1 dy (y_off), 2 w (w_off), 3 dx (x_off).
    pub fn backward_input(&self, dy_off: u32, w_off: u32, dx_off: u32, accumulate: bool) -> ConvCall {
        let p = ConvParams { y_off: dy_off, w_off, x_off: dx_off, accumulate: accumulate as u32, ..self.params() };
        ConvCall { entry: "conv2d_backward_input", p }
    }

    /// dw (+)= sum dy x-taps. Bindings: 1 dy (y_off), 2 x (x_off), 3 dw (w_off).
    pub fn backward_weight(&self, dy_off: u32, x_off: u32, dw_off: u32, accumulate: bool) -> ConvCall {
        let p = ConvParams { y_off: dy_off, x_off, w_off: dw_off, accumulate: accumulate as u32, ..self.params() };
        ConvCall { entry: "conv2d_backward_weight", p }
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
        ConvCall { entry: "conv2d_backward_bias", p }
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
        ConvCall { entry: "conv2d_backward_bias", p }
    }
}

fn bias_fields(bias_off: Option<u32>) -> (u32, u32) {
    match bias_off {
        Some(off) => (1, off),
        None => (0, 0),
    }
}

// ---- CPU twins of conv.wgsl ----

/// out[idx] = v, or += v when accumulating (`store` in both shaders).
fn store(out: &mut [f32], idx: usize, v: f32, accumulate: u32) {
    out[idx] = if accumulate != 0 { out[idx] + v } else { v };
}

/// The input index that padded coordinate `padded` (= output position * stride + tap) reads, or
/// None where it falls in the padding.
fn unpad(padded: u32, pad: u32, size: u32) -> Option<u32> {
    (padded >= pad && padded < size + pad).then(|| padded - pad)
}

/// y = conv(x, w) + b (`conv2d_forward`): a = x, c = w and b, out = y. Sums ci, i, j in order.
pub fn conv2d_forward(p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (h_in, w_in, kh, kw) = (p.h_in as usize, p.w_in as usize, p.kh as usize, p.kw as usize);
    let mut o = p.y_off as usize;
    for b in 0..p.n {
        for co in 0..p.c_out {
            for oh in 0..p.h_out {
                for ow in 0..p.w_out {
                    let mut acc = 0f32;
                    for ci in 0..p.c_in {
                        let x_plane = p.x_off as usize + ((b * p.c_in + ci) as usize) * h_in * w_in;
                        let w_base = p.w_off as usize + ((co * p.c_in + ci) as usize) * kh * kw;
                        for i in 0..p.kh {
                            let Some(ih) = unpad(oh * p.stride + i, p.pad, p.h_in) else { continue };
                            for j in 0..p.kw {
                                let Some(iw) = unpad(ow * p.stride + j, p.pad, p.w_in) else { continue };
                                acc += a[x_plane + ih as usize * w_in + iw as usize]
                                    * c[w_base + i as usize * kw + j as usize];
                            }
                        }
                    }
                    if p.has_bias != 0 {
                        acc += c[p.bias_off as usize + co as usize];
                    }
                    store(out, o, acc, p.accumulate);
                    o += 1;
                }
            }
        }
    }
}

/// The (tap, output position) pairs that reach input position `pos` (unpadded) along one axis:
/// tap k with pos + pad - k = out * stride, 0 <= out < out_size; taps ascending.
fn taps_reaching(pos: u32, pad: u32, stride: u32, k: u32, out_size: u32) -> impl Iterator<Item = (u32, u32)> {
    let padded = pos + pad;
    (padded % stride..k.min(padded + 1))
        .step_by(stride as usize)
        .map(move |tap| (tap, (padded - tap) / stride))
        .filter(move |&(_, out)| out < out_size)
}

/// dx = conv^T(dy, w) (+ b per c_in) (`conv2d_backward_input`): a = dy, c = w and b, out = dx.
/// Sums co, i, j in order. Also conv_transpose2d's forward.
pub fn conv2d_backward_input(p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (h_out, w_out, kh, kw) = (p.h_out as usize, p.w_out as usize, p.kh as usize, p.kw as usize);
    let mut o = p.x_off as usize;
    for b in 0..p.n {
        for ci in 0..p.c_in {
            for ih in 0..p.h_in {
                for iw in 0..p.w_in {
                    let mut acc = 0f32;
                    for co in 0..p.c_out {
                        let dy_plane = p.y_off as usize + ((b * p.c_out + co) as usize) * h_out * w_out;
                        let w_base = p.w_off as usize + ((co * p.c_in + ci) as usize) * kh * kw;
                        for (i, oh) in taps_reaching(ih, p.pad, p.stride, p.kh, p.h_out) {
                            for (j, ow) in taps_reaching(iw, p.pad, p.stride, p.kw, p.w_out) {
                                acc += a[dy_plane + oh as usize * w_out + ow as usize]
                                    * c[w_base + i as usize * kw + j as usize];
                            }
                        }
                    }
                    if p.has_bias != 0 {
                        acc += c[p.bias_off as usize + ci as usize];
                    }
                    store(out, o, acc, p.accumulate);
                    o += 1;
                }
            }
        }
    }
}

/// dw (+)= sum_{b,oh,ow} dy x-tap (`conv2d_backward_weight`): a = dy, c = x, out = dw.
/// Sums b, oh, ow in order. Also conv_transpose2d's weight gradient (dy := X, x := dY).
pub fn conv2d_backward_weight(p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (h_in, w_in, h_out, w_out) = (p.h_in as usize, p.w_in as usize, p.h_out as usize, p.w_out as usize);
    let mut o = p.w_off as usize;
    for co in 0..p.c_out {
        for ci in 0..p.c_in {
            for i in 0..p.kh {
                for j in 0..p.kw {
                    let mut acc = 0f32;
                    for b in 0..p.n {
                        let dy_plane = p.y_off as usize + ((b * p.c_out + co) as usize) * h_out * w_out;
                        let x_plane = p.x_off as usize + ((b * p.c_in + ci) as usize) * h_in * w_in;
                        for oh in 0..p.h_out {
                            let Some(ih) = unpad(oh * p.stride + i, p.pad, p.h_in) else { continue };
                            for ow in 0..p.w_out {
                                let Some(iw) = unpad(ow * p.stride + j, p.pad, p.w_in) else { continue };
                                acc += a[dy_plane + oh as usize * w_out + ow as usize]
                                    * c[x_plane + ih as usize * w_in + iw as usize];
                            }
                        }
                    }
                    store(out, o, acc, p.accumulate);
                    o += 1;
                }
            }
        }
    }
}

/// db[ch] (+)= sum of g over batch and space (`conv2d_backward_bias`): a = g, out = db.
/// `bias_side` picks g's shape; the sum in the kernel's lane/tree order.
pub fn conv2d_backward_bias(p: &ConvParams, a: &[f32], out: &mut [f32]) {
    let (channels, plane, g_off) = p.bias_side_shape();
    for ch in 0..channels {
        let base = g_off + ch * plane;
        let [sum, _] =
            lane_tree_sum(p.n as usize * plane, |e| [a[base + (e / plane) * channels * plane + e % plane], 0.0]);
        store(out, p.bias_off as usize + ch, sum, p.accumulate);
    }
}

/// A workgroup's fixed-order sum of `terms` terms (two sums at once): lane l adds terms l,
/// l + 256, ... in order from 0, then a tree halves the 256 partials (stride 128, 64, ..., 1).
pub fn lane_tree_sum(terms: usize, term: impl Fn(usize) -> [f32; 2]) -> [f32; 2] {
    let mut partial = [[0f32; 2]; LANES];
    for (lane, acc) in partial.iter_mut().enumerate() {
        for e in (lane..terms).step_by(LANES) {
            let t = term(e);
            acc[0] += t[0];
            acc[1] += t[1];
        }
    }
    let mut stride = LANES / 2;
    while stride > 0 {
        for lane in 0..stride {
            let upper = partial[lane + stride];
            partial[lane][0] += upper[0];
            partial[lane][1] += upper[1];
        }
        stride /= 2;
    }
    partial[0]
}

// ---- CPU twins of norm.wgsl ----

/// Element e = b s + sp of channel ch in a tensor at `off` (`element` in norm.wgsl).
fn element(p: &NormParams, off: u32, ch: usize, e: usize) -> usize {
    let (c, s) = (p.c as usize, p.s as usize);
    off as usize + ((e / s) * c + ch) * s + e % s
}

/// 1 / sqrt(var + eps) in f32 (the GPU: inverseSqrt, within a few ulp of this).
fn inv_std_of(var: f32, eps: f32) -> f32 {
    1.0 / (var + eps).sqrt()
}

/// (mean, biased variance) of channel ch, in the kernel's order.
fn batch_stats(p: &NormParams, x: &[f32], ch: usize) -> (f32, f32) {
    let m = p.m();
    let mean = lane_tree_sum(m, |e| [x[element(p, p.x_off, ch, e)], 0.0])[0] * p.inv_m;
    let sq = lane_tree_sum(m, |e| {
        let d = x[element(p, p.x_off, ch, e)] - mean;
        [d * d, 0.0]
    });
    (mean, sq[0] * p.inv_m)
}

/// Training-mode batch norm (`batch_norm_forward`): a = x, c = parameters (gamma, beta),
/// out = y, state = running statistics (updated if `update_running`) and saved statistics.
pub fn batch_norm_forward(p: &NormParams, x: &[f32], params: &[f32], y: &mut [f32], state: &mut [f32]) {
    let c = p.c as usize;
    for ch in 0..c {
        let (mean, var) = batch_stats(p, x, ch);
        let inv_std = inv_std_of(var, p.eps);
        let gamma = params[p.gamma_off as usize + ch];
        let beta = params[p.beta_off as usize + ch];
        for e in 0..p.m() {
            let x_hat = (x[element(p, p.x_off, ch, e)] - mean) * inv_std;
            y[element(p, p.y_off, ch, e)] = gamma * x_hat + beta;
        }
        let save = p.save_off as usize;
        state[save + ch] = mean;
        state[save + c + ch] = inv_std;
        state[save + 2 * c + ch] = gamma;
        if p.update_running != 0 {
            let keep = 1.0 - p.momentum;
            let (rm, rv) = (p.mean_off as usize + ch, p.var_off as usize + ch);
            state[rm] = keep * state[rm] + p.momentum * mean;
            state[rv] = keep * state[rv] + p.momentum * (var * p.unbias);
        }
    }
}

/// The saved (mean, inv_std, gamma) of channel ch.
fn saved(p: &NormParams, state: &[f32], ch: usize) -> (f32, f32, f32) {
    let (save, c) = (p.save_off as usize, p.c as usize);
    (state[save + ch], state[save + c + ch], state[save + 2 * c + ch])
}

/// (sum(dy), sum(dy x_hat)) of channel ch, in the kernel's order.
fn backward_sums(p: &NormParams, x: &[f32], dy: &[f32], ch: usize, mean: f32, inv_std: f32) -> [f32; 2] {
    lane_tree_sum(p.m(), |e| {
        let g = dy[element(p, p.dy_off, ch, e)];
        let x_hat = (x[element(p, p.x_off, ch, e)] - mean) * inv_std;
        [g, g * x_hat]
    })
}

/// dgamma (+)= sum(dy x_hat), dbeta (+)= sum(dy) (`batch_norm_backward_params`): a = x, c = dy,
/// out = the flat gradient buffer, state = the saved statistics.
pub fn batch_norm_backward_params(p: &NormParams, x: &[f32], dy: &[f32], grads: &mut [f32], state: &[f32]) {
    for ch in 0..p.c as usize {
        let (mean, inv_std, _) = saved(p, state, ch);
        let [sum_dy, sum_dy_xhat] = backward_sums(p, x, dy, ch, mean, inv_std);
        store(grads, p.dgamma_off as usize + ch, sum_dy_xhat, p.accumulate);
        store(grads, p.dbeta_off as usize + ch, sum_dy, p.accumulate);
    }
}

/// dx (+)= gamma inv_std (dy - mean(dy) - x_hat mean(dy x_hat)) (`batch_norm_backward_input`):
/// a = x, c = dy, out = dx, state = the saved statistics (gamma included).
pub fn batch_norm_backward_input(p: &NormParams, x: &[f32], dy: &[f32], dx: &mut [f32], state: &[f32]) {
    for ch in 0..p.c as usize {
        let (mean, inv_std, gamma) = saved(p, state, ch);
        let scale = gamma * inv_std;
        let [sum_dy, sum_dy_xhat] = backward_sums(p, x, dy, ch, mean, inv_std);
        let (mean_dy, mean_dy_xhat) = (sum_dy * p.inv_m, sum_dy_xhat * p.inv_m);
        for e in 0..p.m() {
            let g = dy[element(p, p.dy_off, ch, e)];
            let x_hat = (x[element(p, p.x_off, ch, e)] - mean) * inv_std;
            store(dx, element(p, p.dx_off, ch, e), scale * ((g - mean_dy) - x_hat * mean_dy_xhat), p.accumulate);
        }
    }
}

/// Eval-mode batch norm (`batch_norm_eval`): a = x, c = parameters (gamma, beta), out = y,
/// state = the running statistics (read only).
pub fn batch_norm_eval(p: &NormParams, x: &[f32], params: &[f32], y: &mut [f32], state: &[f32]) {
    let (c, s) = (p.c as usize, p.s as usize);
    for o in 0..p.n as usize * c * s {
        let ch = (o / s) % c;
        let inv_std = inv_std_of(state[p.var_off as usize + ch], p.eps);
        let x_hat = (x[p.x_off as usize + o] - state[p.mean_off as usize + ch]) * inv_std;
        y[p.y_off as usize + o] = params[p.gamma_off as usize + ch] * x_hat + params[p.beta_off as usize + ch];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_structs_are_16_byte_multiples() {
        assert_eq!(std::mem::size_of::<ConvParams>(), 80);
        assert_eq!(std::mem::size_of::<NormParams>(), 80);
    }

    #[test]
    fn output_sizes_match_pytorch() {
        // DCGAN's down (4, 2, 1) halves, up doubles; the first G layer (4, 1, 0) maps 1 -> 4.
        assert_eq!(conv2d_out_size(64, 4, 2, 1), Some(32));
        assert_eq!(conv2d_out_size(4, 4, 1, 0), Some(1));
        assert_eq!(conv_transpose2d_out_size(32, 4, 2, 1), Some(64));
        assert_eq!(conv_transpose2d_out_size(1, 4, 1, 0), Some(4));
        assert_eq!(conv2d_out_size(7, 3, 3, 0), Some(2));
        assert_eq!(conv2d_out_size(2, 7, 1, 2), None);
        assert_eq!(conv2d_out_size(5, 3, 0, 0), None);
        assert_eq!(conv_transpose2d_out_size(1, 1, 1, 1), None);
        for (input, k, s, pad) in [(1, 1, 1, 0), (5, 3, 2, 1), (9, 5, 3, 2), (4, 4, 2, 1), (3, 2, 3, 0)] {
            let out = conv_transpose2d_out_size(input, k, s, pad).unwrap();
            assert_eq!(conv2d_out_size(out, k, s, pad), Some(input), "round trip {input} {k} {s} {pad}");
        }
    }

    #[test]
    fn workgroups_cover_the_outputs_within_the_dispatch_limit() {
        assert_eq!(groups_1d(0), [1, 1, 1]);
        assert_eq!(groups_1d(256), [1, 1, 1]);
        assert_eq!(groups_1d(257), [2, 1, 1]);
        assert_eq!(groups_1d(65_536 * 256), [65_535, 2, 1]);
        let p = NormParams::new(64, 70_000, 1);
        assert_eq!(p.workgroups("batch_norm_forward"), [65_535, 2, 1]);
    }

    #[test]
    fn norm_params_m_of_one_has_no_unbiased_correction() {
        let p = NormParams::new(1, 3, 1);
        assert_eq!((p.inv_m, p.unbias), (1.0, 1.0));
        let q = NormParams::new(4, 3, 5);
        assert_eq!((q.inv_m, q.unbias), (0.05, 20.0 / 19.0));
    }
}
