//! Dropout in training mode, in place on its input: keep with probability 1 - rate, scaled by
//! 1 / (1 - rate). The mask is keyed by (seed, step, pass, salt), so the backward pass recomputes
//! it (the same call on the gradient) instead of storing it. Nothing in eval mode.

use super::layer::{Ctx, Grads, Io, Layer, Mode, Output};
use crate::ir::At;
use crate::kernels::random::RandomParams;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub features: usize,
    pub rate: f32,
    /// Tells this layer's masks from other dropout layers' in the same pass (the index of the
    /// linear layer it follows).
    pub salt: u32,
}

impl Dropout {
    fn op(&self, cx: &mut Ctx, at: At, rows: usize, pass: u32) {
        let p = RandomParams {
            len: (rows * self.features) as u32,
            stream: pass * 256 + self.salt,
            seed_lo: cx.seed as u32,
            seed_hi: (cx.seed >> 32) as u32,
            out_off: at.off as u32,
            scale: 1.0 / (1.0 - self.rate),
            shift: self.rate,
            ..Default::default()
        };
        cx.ops.push(crate::kernels::random::Dropout { p, out: at.buf }.into());
    }
}

impl Dropout {
    /// The masks of each group of rows, as passes of their own (`Mode::for_group`).
    fn each_group(&self, cx: &mut Ctx, io: Io, at: At, mode: Mode) {
        let rows = io.group_rows();
        for g in 0..io.groups.max(1) {
            if let Mode::Train { pass } = mode.for_group(g) {
                self.op(cx, at.plus(g * rows * self.features), rows, pass);
            }
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

    fn forward(&self, cx: &mut Ctx, io: Io, mode: Mode) {
        self.each_group(cx, io, io.y, mode);
    }

    fn backward(&self, cx: &mut Ctx, io: Io, g: Grads, mode: Mode) {
        self.each_group(cx, io, g.dy, mode);
    }
}
