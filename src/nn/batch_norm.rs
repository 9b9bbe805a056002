//! Batch normalisation, torch.nn.BatchNorm2d(c) (and BatchNorm1d: s = 1) on rows of (c, s) NCHW
//! values: in training mode from the batch's statistics (biased variance, eps 1e-5), folding
//! them into the running statistics (momentum 0.1, unbiased variance); in eval mode from the
//! running statistics. Parameters weight (gamma) and bias (beta), c each; state running_mean and
//! running_var, c each (checkpoint names as PyTorch's); each pass saves its statistics in its
//! own scratch buffer for its backward pass.

use super::layer::{Ctx, Grads, InitKey, Io, Layer, Mode, TensorSpec};
use crate::kernels::norm::{
    BatchNormBackwardInput, BatchNormBackwardParams, BatchNormEval, BatchNormForward, NormParams,
};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm {
    pub channels: usize,
    /// Values per channel in a row (h w; 1 after a linear layer).
    pub spatial: usize,
    /// gamma ~ N(1, init_std) (the DCGAN recipe: 0.02; 0 gives PyTorch's default of 1).
    pub init_std: f32,
}

impl BatchNorm {
    fn params_for(&self, cx: &Ctx, io: &Io) -> NormParams {
        let c = self.channels as u32;
        NormParams {
            x_off: io.x.off as u32,
            y_off: io.y.off as u32,
            gamma_off: cx.off as u32,
            beta_off: (cx.off + self.channels) as u32,
            mean_off: cx.state_off as u32,
            var_off: (cx.state_off + self.channels) as u32,
            save_off: 0,
            ..NormParams::new(io.rows as u32, c, self.spatial as u32)
        }
    }
}

impl Layer for BatchNorm {
    fn kind(&self) -> &'static str {
        "batch_norm"
    }

    fn in_features(&self) -> usize {
        self.channels * self.spatial
    }

    fn out_features(&self) -> usize {
        self.channels * self.spatial
    }

    fn params(&self) -> Vec<TensorSpec> {
        vec![TensorSpec::new("weight", &[self.channels]), TensorSpec::new("bias", &[self.channels])]
    }

    fn state(&self) -> Vec<TensorSpec> {
        vec![TensorSpec::new("running_mean", &[self.channels]), TensorSpec::new("running_var", &[self.channels])]
    }

    fn init(&self, key: InitKey, params: &mut [f32]) {
        let (gamma, beta) = params.split_at_mut(self.channels);
        key.normal(1.0, self.init_std, gamma);
        beta.iter_mut().for_each(|v| *v = 0.0);
    }

    fn init_state(&self, state: &mut [f32]) {
        let (mean, var) = state.split_at_mut(self.channels);
        mean.iter_mut().for_each(|v| *v = 0.0);
        var.iter_mut().for_each(|v| *v = 1.0);
    }

    fn scratch(&self, _rows: usize, _half: bool) -> Vec<(&'static str, usize)> {
        vec![("saved", 3 * self.channels)]
    }

    fn forward(&self, cx: &mut Ctx, io: Io, mode: Mode) {
        let p = self.params_for(cx, &io);
        let state = cx.state.expect("a network with batch norm has a state buffer");
        let (a, c, out) = (io.x.buf, cx.weights, io.y.buf);
        cx.ops.push(match mode {
            Mode::Train { .. } => BatchNormForward { p, a, c, out, state, saved: cx.scratch[0] }.into(),
            Mode::Eval => BatchNormEval { p, a, c, out, state }.into(),
        });
    }

    fn backward(&self, cx: &mut Ctx, io: Io, g: Grads, _mode: Mode) {
        let base = self.params_for(cx, &io);
        let p = NormParams {
            dy_off: g.dy.off as u32,
            dgamma_off: cx.off as u32,
            dbeta_off: (cx.off + self.channels) as u32,
            accumulate: g.accumulate as u32,
            ..base
        };
        let saved = cx.scratch[0];
        if let (true, Some(grads)) = (g.weights, cx.grads) {
            cx.ops.push(BatchNormBackwardParams { p, a: io.x.buf, c: g.dy.buf, out: grads, saved }.into());
        }
        if let Some(dx) = g.dx {
            let p = NormParams { dx_off: dx.off as u32, accumulate: 0, ..p };
            cx.ops.push(BatchNormBackwardInput { p, a: io.x.buf, c: g.dy.buf, out: dx.buf, saved }.into());
        }
    }
}
