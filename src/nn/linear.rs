//! A linear layer with its bias and activation fused into one kernel: y = act(x w^T + b), w
//! (out, in) like torch.nn.Linear, then b (out) unless the layer has none (before batch norm).
//! With `spectral`, w is spectrally normalised (`nn::spectral`): the kernels read w / sigma(w)
//! from the network's normalised copy, and w is named as PyTorch's parametrization names it.

use super::layer::{Ctx, Grads, Init, InitKey, Io, Layer, Mode, TensorSpec};
use super::spectral;
use crate::ir::{At, Op};
use crate::kernels::activation::{Activation, ActivationBackward, EwParams};
use crate::kernels::head::{HeadLoss, HeadParams, LogitHead};
use crate::kernels::matmul::{
    BiasBackward, MatmulBackward, MatmulBackwardInput, MatmulBackwardWeight, MatmulForward, MatmulParams,
};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Linear {
    pub fan_in: usize,
    pub fan_out: usize,
    pub activation: Activation,
    pub bias: bool,
    pub init: Init,
    pub spectral: bool,
}

impl Linear {
    /// With a bias, initialised as nn.Linear's default.
    pub fn new(fan_in: usize, fan_out: usize, activation: Activation) -> Self {
        Linear { fan_in, fan_out, activation, bias: true, init: Init::Default, spectral: false }
    }

    /// Where the bias starts, from the layer's first parameter.
    pub fn bias_off(&self) -> usize {
        self.fan_in * self.fan_out
    }

    /// `matmul_forward` on `rows` rows with the layer's first parameter at `off`.
    pub fn forward_params(&self, rows: usize, off: usize) -> MatmulParams {
        let p = MatmulParams::linear(rows, self.fan_in, self.fan_out, self.activation, off, off + self.bias_off());
        MatmulParams { no_bias: !self.bias as u32, ..p }
    }
}

impl Layer for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn in_features(&self) -> usize {
        self.fan_in
    }

    fn out_features(&self) -> usize {
        self.fan_out
    }

    fn params(&self) -> Vec<TensorSpec> {
        let mut t = vec![TensorSpec::new(spectral::weight_name(self.spectral), &[self.fan_out, self.fan_in])];
        if self.bias {
            t.push(TensorSpec::new("bias", &[self.fan_out]));
        }
        t
    }

    /// PyTorch's default draws weight and bias as one span: U(-1/sqrt(in), 1/sqrt(in)).
    fn init(&self, key: InitKey, params: &mut [f32]) {
        key.weights_and_bias(self.init, self.fan_in, self.bias_off(), params);
    }

    fn state(&self) -> Vec<TensorSpec> {
        if self.spectral {
            spectral::state_specs(self.fan_out, self.fan_in)
        } else {
            vec![]
        }
    }

    fn init_state(&self, key: InitKey, params: &[f32], state: &mut [f32]) {
        if self.spectral {
            spectral::init_state(key, params, self.fan_out, self.fan_in, state);
        }
    }

    fn spectral(&self) -> Option<(usize, usize)> {
        self.spectral.then_some((self.fan_out, self.fan_in))
    }

    /// At f16 only: dz, the activation's backward pass, between its kernel and the matmuls (at
    /// f32 `matmul_backward` computes dz as it loads dy).
    fn scratch(&self, rows: usize, half: bool) -> Vec<(&'static str, usize)> {
        if self.activation == Activation::Identity || !half {
            vec![]
        } else {
            vec![("preact.grad", rows * self.fan_out)]
        }
    }

    fn forward(&self, cx: &mut Ctx, io: Io, _mode: Mode) {
        let (a_off, out_off, drop) = (io.x.off as u32, io.y.off as u32, cx.out_mask);
        let p = MatmulParams { a_off, out_off, drop, ..self.forward_params(io.rows, cx.off) };
        cx.ops.push(MatmulForward { p, a: io.x.buf, c: cx.weights, out: io.y.buf }.into());
    }

    fn output_activation(&self) -> Activation {
        self.activation
    }

    fn folds_input_activation(&self) -> bool {
        true
    }

    /// At f32: matmul_forward masks y, matmul_backward and logit_head mask dx.
    fn fuses_dropout(&self) -> bool {
        true
    }

    /// A one-output head without activation at f32: `logit_head` (its logit, the loss and the
    /// backward pass `matmul_backward` would make, one dispatch).
    fn fused_head(&self, cx: &Ctx, io: Io, g: Grads, loss: HeadLoss) -> Option<Op> {
        self.logit_head(cx, io, g, loss).map(Into::into)
    }

    /// At f32 one dispatch (`matmul_backward`: dz = dy act'(y) as dy is loaded unless the next
    /// layer made dz, dw and db, dx scaled by the layer before's activation derivative); at f16
    /// the activation's backward pass into scratch, then the f16 matmuls.
    fn backward(&self, cx: &mut Ctx, io: Io, g: Grads, mode: Mode) {
        if cx.half {
            return self.backward_f16(cx, io, g, mode);
        }
        let grads = if g.weights { cx.grads } else { None };
        if grads.is_none() && g.dx.is_none() {
            return;
        }
        let act = if g.dz_given { Activation::Identity } else { self.activation };
        let p = MatmulParams {
            m: io.rows as u32,
            n: self.fan_out as u32,
            k: self.fan_in as u32,
            act: act.code(),
            slope: act.slope(),
            act_in: g.dx_act.code(),
            slope_in: g.dx_act.slope(),
            a_off: g.dy.off as u32,
            y_off: io.y.off as u32,
            c_off: cx.off as u32,
            x_off: io.x.off as u32,
            out_off: cx.off as u32,
            bias_off: (cx.off + self.bias_off()) as u32,
            no_bias: !self.bias as u32,
            accumulate: g.accumulate as u32,
            dx_off: g.dx.map_or(0, |d| d.off as u32),
            groups: io.groups as u32,
            drop: g.dx_mask,
            ..Default::default()
        };
        let (dy, y, w, x, dx) = (g.dy.buf, io.y.buf, cx.weights, io.x.buf, g.dx.map(|d| d.buf));
        cx.ops.push(MatmulBackward { p, dy, y, w, x, grads, dx }.into());
    }
}

impl Linear {
    /// [`Layer::fused_head`]'s call as a [`LogitHead`] (a convolution head that is a dense
    /// layer builds its own from it: `nn::Conv2d`).
    pub fn logit_head(&self, cx: &Ctx, io: Io, g: Grads, loss: HeadLoss) -> Option<LogitHead> {
        // The kernel keeps the logits and their gradient in one binding (head.wgsl).
        let one_buffer = g.dy.buf == io.y.buf;
        if cx.half
            || self.fan_out != 1
            || self.activation != Activation::Identity
            || !one_buffer
            || loss.p.rows as usize != io.rows
        {
            return None;
        }
        let (off, b_off) = (cx.off as u32, (cx.off + self.bias_off()) as u32);
        let p = HeadParams {
            m: io.rows as u32,
            k: self.fan_in as u32,
            x_off: io.x.off as u32,
            w_off: off,
            b_off,
            no_bias: !self.bias as u32,
            z_off: io.y.off as u32,
            dz_off: g.dy.off as u32,
            dw_off: off,
            db_off: b_off,
            dx_off: g.dx.map_or(0, |d| d.off as u32),
            accumulate: g.accumulate as u32,
            act_in: g.dx_act.code(),
            slope_in: g.dx_act.slope(),
            groups: io.groups as u32,
            drop: g.dx_mask,
            ..Default::default()
        };
        let grads = if g.weights { cx.grads } else { None };
        let (x, w, logits, dx, stats) = (io.x.buf, cx.weights, io.y.buf, g.dx.map(|d| d.buf), loss.stats);
        Some(LogitHead { p: LogitHead::with_loss(p, loss), x, w, grads, logits, dx, stats, twin: None })
    }
}

impl Linear {
    fn backward_f16(&self, cx: &mut Ctx, io: Io, g: Grads, _mode: Mode) {
        let (rows, act) = (io.rows, self.activation);
        // The gradient of the pre-activation, from the activation's output y.
        let dz = if act == Activation::Identity {
            g.dy
        } else {
            let p = EwParams {
                len: (rows * self.fan_out) as u32,
                slope: act.slope(),
                in_off: io.y.off as u32,
                dy_off: g.dy.off as u32,
                out_off: 0,
                ..Default::default()
            };
            cx.ops.push(ActivationBackward { act, p, y: io.y.buf, dy: g.dy.buf, out: cx.scratch[0] }.into());
            At::start(cx.scratch[0])
        };
        let base = MatmulParams {
            m: rows as u32,
            n: self.fan_out as u32,
            k: self.fan_in as u32,
            a_off: dz.off as u32,
            accumulate: g.accumulate as u32,
            ..Default::default()
        };
        if let (true, Some(grads)) = (g.weights, cx.grads) {
            let p = MatmulParams { c_off: io.x.off as u32, out_off: cx.off as u32, ..base };
            cx.ops.push(MatmulBackwardWeight { p, a: dz.buf, c: io.x.buf, out: grads }.into());
            if self.bias {
                let p = MatmulParams { bias_off: (cx.off + self.bias_off()) as u32, ..base };
                cx.ops.push(BiasBackward { p, a: dz.buf, out: grads }.into());
            }
        }
        if let Some(dx) = g.dx {
            let p = MatmulParams { c_off: cx.off as u32, out_off: dx.off as u32, accumulate: 0, ..base };
            cx.ops.push(MatmulBackwardInput { p, a: dz.buf, c: cx.weights, out: dx.buf }.into());
        }
    }
}
