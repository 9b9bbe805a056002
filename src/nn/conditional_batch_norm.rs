//! Conditional batch norm (SNGAN's and BigGAN's G; de Vries et al. 2017): batch norm without an
//! affine of its own (`torch.nn.BatchNorm2d(c, affine=False)`, with its running statistics),
//! then a scale and shift looked up by each sample's class, then the activation:
//! y = act(x_hat gamma[y_b] + beta[y_b]). The tables are (classes, c) each, named `gamma.weight`
//! and `beta.weight` under the layer (`G.bn1.gamma.weight`), beside the batch norm's
//! `G.bn1.running_mean` and `running_var`: the names of a PyTorch `BatchNorm2d(c,
//! affine=False)` subclass holding `self.gamma = nn.Embedding(C, c)` and `self.beta =
//! nn.Embedding(C, c)` (scripts/torch_generator.py builds it). gamma starts N(1, 0.02) and beta
//! 0, the unconditional DCGAN's batch-norm recipe, the same values for every class.
//!
//! Kernels, two each way: `batch_norm_forward` (or `_eval`) with `no_affine` into a scratch
//! x_hat, then `class_affine_forward` with the activation fused, into y; backward
//! `class_affine_backward` (dgamma, dbeta and dx_hat, act' applied to dy as it is loaded, at y
//! recomputed from x_hat, unless the next layer already did), then `batch_norm_backward` (dx
//! only: there is no affine to train).

use super::layer::{Ctx, Grads, InitKey, Io, Layer, Mode, TensorSpec, MAX_GROUPS};
use crate::kernels::activation::Activation;
use crate::kernels::class_affine::{ClassAffineBackward, ClassAffineForward, ClassAffineParams};
use crate::kernels::norm::{BatchNormBackward, BatchNormEval, BatchNormForward, NormParams};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConditionalBatchNorm {
    pub channels: usize,
    /// Values per channel in a row (h w; 1 after a linear layer).
    pub spatial: usize,
    pub classes: usize,
    /// gamma ~ N(1, init_std), one draw per channel shared by every class.
    pub init_std: f32,
    /// The activation after the class affine, fused into its kernels.
    pub act: Activation,
}

/// The layer's scratch buffers, in [`Layer::scratch`]'s order.
const SAVED: usize = 0;
const X_HAT: usize = 1;
const DX_HAT: usize = 2;

impl ConditionalBatchNorm {
    fn len(&self, rows: usize) -> usize {
        rows * self.channels * self.spatial
    }

    fn table_len(&self) -> usize {
        self.classes * self.channels
    }

    /// The batch norm without an affine, from x to the scratch x_hat (identity activation).
    fn norm_params(&self, cx: &Ctx, io: &Io) -> NormParams {
        NormParams {
            x_off: io.x.off as u32,
            mean_off: cx.state_off as u32,
            var_off: (cx.state_off + self.channels) as u32,
            groups: io.groups as u32,
            no_affine: 1,
            ..NormParams::new(io.group_rows() as u32, self.channels as u32, self.spatial as u32)
        }
    }

    fn affine_params(&self, cx: &Ctx, io: &Io) -> ClassAffineParams {
        let labels = cx.labels.expect("a conditional pass has labels");
        ClassAffineParams {
            n: io.rows as u32,
            c: self.channels as u32,
            s: self.spatial as u32,
            classes: self.classes as u32,
            labels_off: labels.off as u32,
            gamma_off: cx.off as u32,
            beta_off: (cx.off + self.table_len()) as u32,
            ..Default::default()
        }
    }
}

impl Layer for ConditionalBatchNorm {
    fn kind(&self) -> &'static str {
        "conditional_batch_norm"
    }

    fn in_features(&self) -> usize {
        self.channels * self.spatial
    }

    fn out_features(&self) -> usize {
        self.channels * self.spatial
    }

    fn params(&self) -> Vec<TensorSpec> {
        let shape = [self.classes, self.channels];
        vec![TensorSpec::new("gamma.weight", &shape), TensorSpec::new("beta.weight", &shape)]
    }

    fn state(&self) -> Vec<TensorSpec> {
        vec![TensorSpec::new("running_mean", &[self.channels]), TensorSpec::new("running_var", &[self.channels])]
    }

    fn init(&self, key: InitKey, params: &mut [f32]) {
        let (gamma, beta) = params.split_at_mut(self.table_len());
        let (first, rest) = gamma.split_at_mut(self.channels);
        key.normal(1.0, self.init_std, first);
        rest.chunks_mut(self.channels).for_each(|row| row.copy_from_slice(first));
        beta.iter_mut().for_each(|v| *v = 0.0);
    }

    fn init_state(&self, _key: InitKey, _params: &[f32], state: &mut [f32]) {
        let (mean, var) = state.split_at_mut(self.channels);
        mean.iter_mut().for_each(|v| *v = 0.0);
        var.iter_mut().for_each(|v| *v = 1.0);
    }

    /// The saved statistics of each group, x_hat and its gradient.
    fn scratch(&self, rows: usize, _half: bool) -> Vec<(&'static str, usize)> {
        let len = self.len(rows);
        vec![("saved", 3 * self.channels * MAX_GROUPS), ("x_hat", len), ("x_hat.grad", len)]
    }

    fn output_activation(&self) -> Activation {
        self.act
    }

    fn forward(&self, cx: &mut Ctx, io: Io, mode: Mode) {
        let p = self.norm_params(cx, &io);
        let state = cx.state.expect("a network with batch norm has a state buffer");
        let (a, c, x_hat) = (io.x.buf, cx.weights, cx.scratch[X_HAT]);
        cx.ops.push(match mode {
            Mode::Train { .. } => BatchNormForward { p, a, c, out: x_hat, state, saved: cx.scratch[SAVED] }.into(),
            Mode::Eval => BatchNormEval { p, a, c, out: x_hat, state }.into(),
        });
        let (act, slope) = (self.act.code(), self.act.slope());
        let p = ClassAffineParams { y_off: io.y.off as u32, act, slope, ..self.affine_params(cx, &io) };
        let labels = cx.labels.expect("a conditional pass has labels").buf;
        cx.ops.push(ClassAffineForward { p, labels, x: x_hat, params: cx.weights, out: io.y.buf }.into());
    }

    /// The class affine's backward pass (dgamma, dbeta, dx_hat; act' applied to dy unless the
    /// next layer did), then the batch norm's (dx).
    fn backward(&self, cx: &mut Ctx, io: Io, g: Grads, _mode: Mode) {
        let grads = cx.grads.filter(|_| g.weights);
        if grads.is_none() && g.dx.is_none() {
            return;
        }
        let act = if g.dz_given { Activation::Identity } else { self.act };
        let labels = cx.labels.expect("a conditional pass has labels").buf;
        let dx_hat = g.dx.map(|_| cx.scratch[DX_HAT]);
        let p = ClassAffineParams {
            dy_off: g.dy.off as u32,
            accumulate: g.accumulate as u32,
            act: act.code(),
            slope: act.slope(),
            ..self.affine_params(cx, &io)
        };
        let (x, params) = (cx.scratch[X_HAT], cx.weights);
        cx.ops.push(ClassAffineBackward { p, labels, x, params, dy: g.dy.buf, grads, dx: dx_hat }.into());
        let (Some(dx), Some(dx_hat)) = (g.dx, dx_hat) else { return };
        let p = NormParams {
            dy_off: 0,
            dx_off: dx.off as u32,
            accumulate: 0,
            act: Activation::Identity.code(),
            ..self.norm_params(cx, &io)
        };
        let (a, saved) = (io.x.buf, cx.scratch[SAVED]);
        cx.ops.push(BatchNormBackward { p, a, dy: dx_hat, y: dx_hat, saved, grads: None, dx: Some(dx.buf) }.into());
    }
}
