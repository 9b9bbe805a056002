//! A cast between f32 and f16 storage at a network's boundary (`--precision f16`): G's f32 noise
//! into its f16 input, D's f16 logits back to the f32 the loss reads. Gradients stay f32, so the
//! backward pass passes them through untouched.

use super::layer::{Ctx, Grads, Io, Layer, Mode, Output};
use crate::kernels::activation::{Cast as CastOp, EwParams};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cast {
    pub features: usize,
    pub to_f16: bool,
}

impl Layer for Cast {
    fn kind(&self) -> &'static str {
        "cast"
    }

    fn in_features(&self) -> usize {
        self.features
    }

    fn out_features(&self) -> usize {
        self.features
    }

    fn output(&self) -> Output {
        if self.to_f16 {
            Output::Act
        } else {
            Output::F32
        }
    }

    fn grad_in_place(&self) -> bool {
        true
    }

    fn forward(&self, cx: &mut Ctx, io: Io, _mode: Mode) {
        let p = EwParams {
            len: (io.rows * self.features) as u32,
            in_off: io.x.off as u32,
            out_off: io.y.off as u32,
            ..Default::default()
        };
        cx.ops.push(CastOp { p, x: io.x.buf, out: io.y.buf, to_f16: self.to_f16 }.into());
    }

    fn backward(&self, _cx: &mut Ctx, _io: Io, _g: Grads, _mode: Mode) {}
}
