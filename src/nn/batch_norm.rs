//! Batch normalisation, torch.nn.BatchNorm2d(c) (and BatchNorm1d: s = 1) on rows of (c, s) NCHW
//! values: in training mode from the batch's statistics (biased variance, eps 1e-5), folding
//! them into the running statistics (momentum 0.1, unbiased variance); in eval mode from the
//! running statistics. Parameters weight (gamma) and bias (beta), c each; state running_mean and
//! running_var, c each (checkpoint names as PyTorch's); each pass saves its statistics in its
//! own scratch buffer for its backward pass.

use super::layer::{Ctx, Grads, InitKey, Io, Layer, Mode, TensorSpec};
use crate::kernels::activation::Activation;
use crate::kernels::norm::{BatchNormBackward, BatchNormEval, BatchNormForward, NormParams};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm {
    pub channels: usize,
    /// Values per channel in a row (h w; 1 after a linear layer).
    pub spatial: usize,
    /// gamma ~ N(1, init_std) (the DCGAN recipe: 0.02; 0 gives PyTorch's default of 1).
    pub init_std: f32,
    /// The activation after it, fused into its kernels (y = act(batch norm)): one dispatch
    /// each way instead of two.
    pub act: Activation,
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
            act: self.act.code(),
            slope: self.act.slope(),
            groups: io.groups as u32,
            ..NormParams::new((io.rows / io.groups.max(1)) as u32, c, self.spatial as u32)
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

    fn init_state(&self, _key: InitKey, _params: &[f32], state: &mut [f32]) {
        let (mean, var) = state.split_at_mut(self.channels);
        mean.iter_mut().for_each(|v| *v = 0.0);
        var.iter_mut().for_each(|v| *v = 1.0);
    }

    /// The saved statistics of each group: D's reals and fakes pass through in one call.
    fn scratch(&self, _rows: usize, _half: bool) -> Vec<(&'static str, usize)> {
        vec![("saved", 3 * self.channels * super::layer::MAX_GROUPS)]
    }

    fn output_activation(&self) -> Activation {
        self.act
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

    /// One dispatch: dgamma and dbeta (when the weights' gradients are wanted) and dx, from dy
    /// with the activation's derivative applied as it is loaded (unless the next layer did).
    fn backward(&self, cx: &mut Ctx, io: Io, g: Grads, _mode: Mode) {
        let grads = if g.weights { cx.grads } else { None };
        if grads.is_none() && g.dx.is_none() {
            return;
        }
        let act = if g.dz_given { Activation::Identity } else { self.act };
        let p = NormParams {
            dy_off: g.dy.off as u32,
            dx_off: g.dx.map_or(0, |d| d.off as u32),
            dgamma_off: cx.off as u32,
            dbeta_off: (cx.off + self.channels) as u32,
            accumulate: g.accumulate as u32,
            act: act.code(),
            slope: act.slope(),
            ..self.params_for(cx, &io)
        };
        let (a, dy, y, saved, dx) = (io.x.buf, g.dy.buf, io.y.buf, cx.scratch[0], g.dx.map(|d| d.buf));
        cx.ops.push(BatchNormBackward { p, a, dy, y, saved, grads, dx }.into());
    }
}
