//! 2-D convolution (conv.wgsl), and 2-D transposed convolution by role swaps: one uniform, four
//! entry points (`conv2d_forward`, `conv2d_backward_input`, `conv2d_backward_weight`,
//! `conv2d_backward_bias`), the builders that fill the params of a conv2d or conv_transpose2d
//! layer's calls (so the role swaps cannot go wrong), the CPU twins (`twin.rs`) and the CPU
//! backend's fast paths (`fast.rs`: im2col and sgemm). Layout NCHW like PyTorch; the WGSL header
//! has the formulas.

pub mod fast;
pub mod twin;

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
        pub _pad0: u32,
        pub _pad1: u32,
    }
}

/// conv2d_backward_bias sums a y-shaped tensor (c_out channels of h_out x w_out) at `y_off`.
pub const BIAS_SIDE_OUTPUT: u32 = 0;
/// conv2d_backward_bias sums an x-shaped tensor (c_in channels of h_in x w_in) at `x_off`.
pub const BIAS_SIDE_INPUT: u32 = 1;

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

const ABC: &[Slot] = &[U(0), R(1), R(2), RW(3)];

pub const FAMILY: Family = Family {
    name: "conv",
    wgsl: include_str!("../../../shaders/conv.wgsl"),
    f16: false,
    unchecked: false,
    entries: &[
        Entry { name: "conv2d_forward", slots: ABC },
        Entry { name: "conv2d_backward_input", slots: ABC },
        Entry { name: "conv2d_backward_weight", slots: ABC },
        Entry { name: "conv2d_backward_bias", slots: &[U(0), R(1), RW(3)] },
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

/// A kernel call: the entry point and its params, before its buffers are chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvCall {
    pub entry: ConvEntry,
    pub p: ConvParams,
}

impl ConvCall {
    /// The call on these buffers (bindings 1, 2, 3; `c` is unused by the bias gradient).
    pub fn op(self, a: BufId, c: BufId, out: BufId) -> Op {
        let p = self.p;
        match self.entry {
            ConvEntry::Forward => Conv2dForward { p, a, c, out }.into(),
            ConvEntry::BackwardInput => Conv2dBackwardInput { p, a, c, out }.into(),
            ConvEntry::BackwardWeight => Conv2dBackwardWeight { p, a, c, out }.into(),
            ConvEntry::BackwardBias => Conv2dBackwardBias { p, a, out }.into(),
        }
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
        ConvCall { entry: ConvEntry::Forward, p }
    }

    /// dx (+)= conv^T(dy, w). Bindings: 1 dy (y_off), 2 w (w_off), 3 dx (x_off).
    pub fn backward_input(&self, dy_off: u32, w_off: u32, dx_off: u32, accumulate: bool) -> ConvCall {
        let p = ConvParams { y_off: dy_off, w_off, x_off: dx_off, accumulate: accumulate as u32, ..self.params() };
        ConvCall { entry: ConvEntry::BackwardInput, p }
    }

    /// dw (+)= sum dy x-taps. Bindings: 1 dy (y_off), 2 x (x_off), 3 dw (w_off).
    pub fn backward_weight(&self, dy_off: u32, x_off: u32, dw_off: u32, accumulate: bool) -> ConvCall {
        let p = ConvParams { y_off: dy_off, x_off, w_off: dw_off, accumulate: accumulate as u32, ..self.params() };
        ConvCall { entry: ConvEntry::BackwardWeight, p }
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
        ConvCall { entry: ConvEntry::BackwardBias, p }
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
        ConvCall { entry: ConvEntry::BackwardBias, p }
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

/// y = conv(x, w) (+ b): a = x, c = w and b, out = y.
#[derive(Clone, Debug)]
pub struct Conv2dForward {
    pub p: ConvParams,
    pub a: BufId,
    pub c: BufId,
    pub out: BufId,
}

impl Kernel for Conv2dForward {
    fn entry(&self) -> &'static str {
        "conv2d_forward"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.a)), (2, Res::Buf(self.c)), (3, Res::Buf(self.out))]
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
        s
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, a, c, fast, pool) = (&self.p, self.a, self.c, host.fast, host.pool);
        host.with_out(self.out, |b, o| {
            if fast {
                fast::conv2d_forward(pool, p, &b[a], &b[c], o)
            } else {
                twin::conv2d_forward(p, &b[a], &b[c], o)
            }
        })
    }
}

/// dx = conv^T(dy, w) (+ b per c_in): a = dy, c = w and b, out = dx.
#[derive(Clone, Debug)]
pub struct Conv2dBackwardInput {
    pub p: ConvParams,
    pub a: BufId,
    pub c: BufId,
    pub out: BufId,
}

impl Kernel for Conv2dBackwardInput {
    fn entry(&self) -> &'static str {
        "conv2d_backward_input"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.a)), (2, Res::Buf(self.c)), (3, Res::Buf(self.out))]
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
        s
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, a, c, fast, pool) = (&self.p, self.a, self.c, host.fast, host.pool);
        host.with_out(self.out, |b, o| {
            if fast {
                fast::conv2d_backward_input(pool, p, &b[a], &b[c], o)
            } else {
                twin::conv2d_backward_input(p, &b[a], &b[c], o)
            }
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
            if fast {
                fast::conv2d_backward_weight(pool, p, &b[a], &b[c], o)
            } else {
                twin::conv2d_backward_weight(p, &b[a], &b[c], o)
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
        host.with_out(self.out, |b, o| twin::conv2d_backward_bias(p, &b[a], o))
    }
}
