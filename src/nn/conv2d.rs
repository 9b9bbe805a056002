//! A 2-D convolution, torch.nn.Conv2d(c_in, c_out, k, stride, pad): weight (c_out, c_in, k, k),
//! then bias (c_out) unless the layer has none; on rows of (c_in, h, w) NCHW values. With
//! `spectral`, the weight is spectrally normalised as a (c_out, c_in k k) matrix (`nn::spectral`).

use super::layer::{Ctx, Grads, Init, InitKey, Io, Layer, Mode, TensorSpec};
use super::spectral;
use super::Linear;
use crate::ir::{At, Op};
use crate::kernels::activation::{Activation, ActivationBackward, EwParams};
use crate::kernels::conv::{conv2d_out_size, Conv2dShape};
use crate::kernels::head::{HeadLoss, HeadTwin, LogitHead};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2d {
    pub c_in: usize,
    pub c_out: usize,
    /// Input height and width.
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub bias: bool,
    pub init: Init,
    pub spectral: bool,
    /// The activation after it, fused into its kernels' epilogue (the identity for none).
    pub activation: Activation,
}

impl Conv2d {
    /// (h_out, w_out), or None where the kernel does not fit.
    pub fn out_hw(&self) -> Option<(usize, usize)> {
        let size = |x: usize| conv2d_out_size(x as u32, self.k as u32, self.stride as u32, self.pad as u32);
        Some((size(self.h)? as usize, size(self.w)? as usize))
    }

    fn shape(&self, rows: usize) -> Conv2dShape {
        let u = |x: usize| x as u32;
        Conv2dShape {
            n: u(rows),
            c_in: u(self.c_in),
            h_in: u(self.h),
            w_in: u(self.w),
            c_out: u(self.c_out),
            kh: u(self.k),
            kw: u(self.k),
            stride: u(self.stride),
            pad: u(self.pad),
        }
    }

    fn weights(&self) -> usize {
        self.c_out * self.c_in * self.k * self.k
    }
}

impl Layer for Conv2d {
    fn kind(&self) -> &'static str {
        "conv2d"
    }

    fn in_features(&self) -> usize {
        self.c_in * self.h * self.w
    }

    fn out_features(&self) -> usize {
        let (h, w) = self.out_hw().expect("a convolution that fits (checked when the network is built)");
        self.c_out * h * w
    }

    fn params(&self) -> Vec<TensorSpec> {
        let mut t =
            vec![TensorSpec::new(spectral::weight_name(self.spectral), &[self.c_out, self.c_in, self.k, self.k])];
        if self.bias {
            t.push(TensorSpec::new("bias", &[self.c_out]));
        }
        t
    }

    fn init(&self, key: InitKey, params: &mut [f32]) {
        key.weights_and_bias(self.init, self.c_in * self.k * self.k, self.weights(), params);
    }

    fn state(&self) -> Vec<TensorSpec> {
        match self.spectral() {
            Some((m, n)) => spectral::state_specs(m, n),
            None => vec![],
        }
    }

    fn init_state(&self, key: InitKey, params: &[f32], state: &mut [f32]) {
        if let Some((m, n)) = self.spectral() {
            spectral::init_state(key, params, m, n, state);
        }
    }

    fn spectral(&self) -> Option<(usize, usize)> {
        self.spectral.then_some((self.c_out, self.c_in * self.k * self.k))
    }

    fn forward(&self, cx: &mut Ctx, io: Io, _mode: Mode) {
        let op = self.forward_op(cx, io);
        cx.ops.push(op);
    }

    fn output_activation(&self) -> Activation {
        self.activation
    }

    fn folds_input_activation(&self) -> bool {
        true
    }

    /// dz, when the layer's activation must be undone here (no next layer folded it).
    fn scratch(&self, rows: usize, _half: bool) -> Vec<(&'static str, usize)> {
        if self.activation == Activation::Identity {
            vec![]
        } else {
            vec![("preact.grad", rows * self.out_features())]
        }
    }

    fn backward(&self, cx: &mut Ctx, io: Io, g: Grads, _mode: Mode) {
        let dy = self.dz(cx, io, g);
        let ops = self.backward_ops(cx, io, g, dy);
        cx.ops.extend(ops);
    }

    /// A convolution that covers its whole input with one output channel and no activation
    /// (the 4x4 head of the 32x32 and 64x64 DCGANs' D) is a one-logit linear layer over the
    /// c_in k k features (NCHW rows and the (1, c_in, k, k) weight list them in the same order):
    /// `logit_head` on the GPU. Its CPU twin runs this layer's own convolution calls and the
    /// loss in order, so the CPU's bits are the unfused program's.
    fn fused_head(&self, cx: &Ctx, io: Io, g: Grads, loss: HeadLoss) -> Option<Op> {
        let whole = self.out_hw() == Some((1, 1)) && self.pad == 0 && self.k == self.h && self.k == self.w;
        if self.c_out != 1 || !whole || self.activation != Activation::Identity {
            return None;
        }
        let dense = Linear {
            fan_in: self.in_features(),
            fan_out: 1,
            activation: Activation::Identity,
            bias: self.bias,
            init: self.init,
            spectral: self.spectral,
        };
        let head = dense.logit_head(cx, io, g, loss)?;
        let twin = HeadTwin { forward: self.forward_op(cx, io), backward: self.backward_ops(cx, io, g, g.dy) };
        Some(LogitHead { twin: Some(twin), ..head }.into())
    }
}

impl Conv2d {
    /// The forward call (into `io.y`, the layer's activation fused).
    fn forward_op(&self, cx: &Ctx, io: Io) -> Op {
        let bias = self.bias.then_some((cx.off + self.weights()) as u32);
        let call = self.shape(io.rows).forward(io.x.off as u32, cx.off as u32, bias, io.y.off as u32);
        call.activated(self.activation).op(io.x.buf, cx.weights, io.y.buf)
    }

    /// The backward calls from dz at `dy`: dw (and db) when `g.weights`, dx when `g.dx`.
    fn backward_ops(&self, cx: &Ctx, io: Io, g: Grads, dy: At) -> Vec<Op> {
        let (shape, x, mut ops) = (self.shape(io.rows), io.x, vec![]);
        if let (true, Some(grads)) = (g.weights, cx.grads) {
            let call = shape.backward_weight(dy.off as u32, x.off as u32, cx.off as u32, g.accumulate);
            ops.push(call.in_groups(io.groups).op(dy.buf, x.buf, grads));
            if self.bias {
                let call = shape.backward_bias(dy.off as u32, (cx.off + self.weights()) as u32, g.accumulate);
                ops.push(call.in_groups(io.groups).op(dy.buf, dy.buf, grads));
            }
        }
        if let Some(dx) = g.dx {
            let call = shape.backward_input(dy.off as u32, cx.off as u32, dx.off as u32, false);
            let call = call.scaled_by_grad(g.dx_act, x.buf, x.off as u32);
            ops.push(call.op(dy.buf, cx.weights, dx.buf));
        }
        ops
    }

    /// The gradient before the activation: `g.dy` itself when there is none or the next layer
    /// made it (`g.dz_given`), else the activation's backward pass into scratch (one dispatch).
    fn dz(&self, cx: &mut Ctx, io: Io, g: Grads) -> At {
        if self.activation == Activation::Identity || g.dz_given {
            return g.dy;
        }
        let (act, out) = (self.activation, cx.scratch[0]);
        let p = EwParams {
            len: (io.rows * self.out_features()) as u32,
            slope: act.slope(),
            in_off: io.y.off as u32,
            dy_off: g.dy.off as u32,
            ..Default::default()
        };
        cx.ops.push(ActivationBackward { act, p, y: io.y.buf, dy: g.dy.buf, out }.into());
        At::start(out)
    }
}
