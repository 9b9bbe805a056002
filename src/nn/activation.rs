//! An activation on its own (after batch norm): y = f(x) element-wise, and its backward pass from
//! y. Linear layers fuse theirs instead.

use super::layer::{Ctx, Grads, Io, Layer, Mode};
use crate::kernels::activation::{Activation as Act, ActivationBackward, ActivationForward, EwParams};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activation {
    pub features: usize,
    pub act: Act,
}

impl Layer for Activation {
    fn kind(&self) -> &'static str {
        "activation"
    }

    fn in_features(&self) -> usize {
        self.features
    }

    fn out_features(&self) -> usize {
        self.features
    }

    fn forward(&self, cx: &mut Ctx, io: Io, _mode: Mode) {
        let p = EwParams {
            len: (io.rows * self.features) as u32,
            slope: self.act.slope(),
            in_off: io.x.off as u32,
            out_off: io.y.off as u32,
            ..Default::default()
        };
        cx.ops.push(ActivationForward { act: self.act, p, x: io.x.buf, out: io.y.buf }.into());
    }

    fn backward(&self, cx: &mut Ctx, io: Io, g: Grads, _mode: Mode) {
        let Some(dx) = g.dx else { return };
        let p = EwParams {
            len: (io.rows * self.features) as u32,
            slope: self.act.slope(),
            in_off: io.y.off as u32,
            dy_off: g.dy.off as u32,
            out_off: dx.off as u32,
            ..Default::default()
        };
        cx.ops.push(ActivationBackward { act: self.act, p, y: io.y.buf, dy: g.dy.buf, out: dx.buf }.into());
    }
}
