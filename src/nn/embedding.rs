//! A conditional G's class embedding, its first layer: a learned table (classes, dim) as
//! `torch.nn.Embedding(classes, dim)` holds it (`weight`), whose row for each sample's class is
//! written into the first `dim` columns of G's input rows, in place: the rows are `dim + latent`
//! wide, z already in the last `latent` columns (the noise kernel leaves room), so G's first
//! linear layer reads concat(embed(y), z), as PyTorch-GAN's cgan.py builds it, with no copy.
//! Kernels: `embedding_forward`, `embedding_backward` (embedding.wgsl). Initialised as
//! `nn.Embedding`'s default, N(0, 1), the scale of z beside it.

use super::layer::{Ctx, Grads, InitKey, Io, Layer, Mode, Output, TensorSpec};
use crate::kernels::embedding::{EmbeddingBackward, EmbeddingForward, EmbeddingParams};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Embedding {
    pub classes: usize,
    pub dim: usize,
    /// Values per row of the layer's input and output: `dim` for the embedding, then z's.
    pub row: usize,
}

impl Embedding {
    fn params(&self, cx: &Ctx, io: &Io) -> EmbeddingParams {
        let labels = cx.labels.expect("a conditional pass has labels");
        EmbeddingParams {
            rows: io.rows as u32,
            dim: self.dim as u32,
            classes: self.classes as u32,
            labels_off: labels.off as u32,
            table_off: cx.off as u32,
            act_stride: self.row as u32,
            act_col: 0,
            ..Default::default()
        }
    }
}

impl Layer for Embedding {
    fn kind(&self) -> &'static str {
        "embedding"
    }

    fn in_features(&self) -> usize {
        self.row
    }

    fn out_features(&self) -> usize {
        self.row
    }

    fn params(&self) -> Vec<TensorSpec> {
        vec![TensorSpec::new("weight", &[self.classes, self.dim])]
    }

    fn output(&self) -> Output {
        Output::InPlace
    }

    fn init(&self, key: InitKey, params: &mut [f32]) {
        key.normal(0.0, 1.0, params);
    }

    fn forward(&self, cx: &mut Ctx, io: Io, _mode: Mode) {
        let labels = cx.labels.expect("a conditional pass has labels").buf;
        let p = EmbeddingParams { act_off: io.y.off as u32, ..self.params(cx, &io) };
        cx.ops.push(EmbeddingForward { p, labels, table: cx.weights, out: io.y.buf }.into());
    }

    /// The table's gradient from the gradient of its columns of the output (G's input needs no
    /// gradient of its own: z is noise).
    fn backward(&self, cx: &mut Ctx, io: Io, g: Grads, _mode: Mode) {
        let Some(grads) = cx.grads.filter(|_| g.weights) else { return };
        let labels = cx.labels.expect("a conditional pass has labels").buf;
        let p = EmbeddingParams { act_off: g.dy.off as u32, accumulate: g.accumulate as u32, ..self.params(cx, &io) };
        cx.ops.push(EmbeddingBackward { p, labels, dout: g.dy.buf, grads }.into());
    }
}
