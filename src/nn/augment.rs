//! DiffAugment as D's first layer (`--augment`): every image D judges, real or fake, is
//! augmented in training mode with draws keyed by the step and the pass, and the backward pass
//! (in G's step) carries G's gradient back through the same augmentation. With `--pack P` a row
//! holds P images, each augmented on its own. Nothing in eval mode (a copy).

use super::layer::{Ctx, Grads, Io, Layer, Mode};
use crate::data::ImageShape;
use crate::kernels::augment::{AugmentBackward, AugmentForward, AugmentParams};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Augment {
    pub image: ImageShape,
    /// Images per row (PacGAN's pack).
    pub pack: usize,
    /// `kernels::augment::{COLOR, TRANSLATION, CUTOUT}`.
    pub flags: u32,
}

impl Augment {
    fn params(&self, cx: &Ctx, rows: usize, mode: Mode) -> AugmentParams {
        let (flags, pass) = match mode {
            Mode::Train { pass } => (self.flags, pass),
            Mode::Eval => (0, 0),
        };
        let img = self.image;
        AugmentParams::new(rows * self.pack, img.channels, img.height, img.width, flags, pass, cx.seed)
    }
}

impl Layer for Augment {
    fn kind(&self) -> &'static str {
        "augment"
    }

    fn in_features(&self) -> usize {
        self.pack * self.image.channels * self.image.height * self.image.width
    }

    fn out_features(&self) -> usize {
        self.in_features()
    }

    /// One call per group of rows, each drawing as a pass of its own (`Mode::for_group`).
    fn forward(&self, cx: &mut Ctx, io: Io, mode: Mode) {
        let (rows, len) = (io.group_rows(), io.group_rows() * self.in_features());
        for g in 0..io.groups.max(1) {
            let (x, y) = (io.x.plus(g * len), io.y.plus(g * len));
            let p = AugmentParams {
                x_off: x.off as u32,
                out_off: y.off as u32,
                ..self.params(cx, rows, mode.for_group(g))
            };
            cx.ops.push(AugmentForward { p, x: x.buf, out: y.buf }.into());
        }
    }

    fn backward(&self, cx: &mut Ctx, io: Io, g: Grads, mode: Mode) {
        let Some(dx) = g.dx else { return };
        let (rows, len) = (io.group_rows(), io.group_rows() * self.in_features());
        for k in 0..io.groups.max(1) {
            let (dy, dx) = (g.dy.plus(k * len), dx.plus(k * len));
            let p = AugmentParams {
                x_off: dy.off as u32,
                out_off: dx.off as u32,
                ..self.params(cx, rows, mode.for_group(k))
            };
            cx.ops.push(AugmentBackward { p, x: dy.buf, out: dx.buf }.into());
        }
    }
}
