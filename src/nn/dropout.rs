//! Dropout in training mode, in place on its input: keep with probability 1 - rate, scaled by
//! 1 / (1 - rate). The mask is keyed by (seed, step, pass, salt), so the backward pass recomputes
//! it (the same call on the gradient) instead of storing it. Nothing in eval mode.
//!
//! Next to a linear layer at f32 the layer makes no calls of its own: the linear layer below
//! applies its mask to its output as it stores it, and the linear layer above to the gradient
//! it hands down (`Layer::fuses_dropout`, decided by `nn::Net`), the same mask and the same bits.

use super::layer::{Ctx, Grads, Io, Layer, Mode, Output};
use crate::ir::At;
use crate::kernels::random::DropMask;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub features: usize,
    pub rate: f32,
    /// Tells this layer's masks from other dropout layers' in the same pass (the index of the
    /// linear layer it follows).
    pub salt: u32,
}

impl Dropout {
    /// The stream of a pass's draw: pass x 256 + salt.
    fn stream(&self, mode: Mode) -> Option<u32> {
        match mode {
            Mode::Train { pass } => Some(pass * 256 + self.salt),
            Mode::Eval => None,
        }
    }

    /// One call per group of rows, each as a pass of its own (`Mode::for_group`).
    fn each_group(&self, cx: &mut Ctx, io: Io, at: At, mode: Mode) {
        let Some(mask) = self.dropout_mask(io.rows, io.groups, mode, cx.seed) else { return };
        for g in 0..io.groups.max(1) as u32 {
            let p = mask.group_params(g, self.features, at.off);
            cx.ops.push(crate::kernels::random::Dropout { p, out: at.buf }.into());
        }
    }
}

impl Layer for Dropout {
    fn kind(&self) -> &'static str {
        "dropout"
    }

    fn in_features(&self) -> usize {
        self.features
    }

    fn out_features(&self) -> usize {
        self.features
    }

    fn output(&self) -> Output {
        Output::InPlace
    }

    fn grad_in_place(&self) -> bool {
        true
    }

    fn dropout_mask(&self, rows: usize, groups: usize, mode: Mode, seed: u64) -> Option<DropMask> {
        let first = self.stream(mode)?;
        let stride = self.stream(mode.for_group(1))? - first;
        Some(DropMask::new(self.rate, seed, first, stride, rows / groups.max(1)))
    }

    fn forward(&self, cx: &mut Ctx, io: Io, mode: Mode) {
        self.each_group(cx, io, io.y, mode);
    }

    fn backward(&self, cx: &mut Ctx, io: Io, g: Grads, mode: Mode) {
        self.each_group(cx, io, g.dy, mode);
    }
}
