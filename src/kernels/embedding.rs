//! A learned class embedding (embedding.wgsl; conditional GANs): a (C, K) table whose rows a
//! batch's labels pick, and its gradient as a per-class sum in batch order (no atomics, so runs
//! stay bit-reproducible). Labels travel as an f32 buffer of class indices ([`class_index`] says
//! how one becomes a row). Formulas, bindings and layouts in the WGSL header.

use super::{Entry, Family, Slot};
use crate::ir::kernel::groups_1d;
use crate::ir::{BufId, Host, Kernel, Res, Span, UniformLayout};

crate::uniform! {
    /// `EmbeddingParams` in embedding.wgsl: B rows, K values per embedding, C classes; the table
    /// (or its gradient) at `table_off`; the activation side's rows of `act_stride` values (0
    /// reads as `dim`) from `act_off`, the embedding at columns [act_col, act_col + K).
    pub struct EmbeddingParams {
        pub rows: u32,
        pub dim: u32,
        pub classes: u32,
        pub labels_off: u32,
        pub table_off: u32,
        pub act_off: u32,
        pub act_stride: u32,
        pub act_col: u32,
        /// embedding_backward: dtable += v instead of = v.
        pub accumulate: u32,
        pub _pad0: u32,
        pub _pad1: u32,
        pub _pad2: u32,
    }
}

impl EmbeddingParams {
    /// Values per activation row.
    pub fn stride(&self) -> usize {
        if self.act_stride == 0 {
            self.dim as usize
        } else {
            self.act_stride as usize
        }
    }

    /// Where value k of row b's embedding lives on the activation side (`act_at` in the WGSL).
    pub fn act_at(&self, b: usize, k: usize) -> usize {
        self.act_off as usize + b * self.stride() + self.act_col as usize + k
    }

    /// The activation side's span: from row 0's first embedding value to row B - 1's last.
    fn act_span(&self, buf: BufId, write: bool) -> Span {
        let (rows, dim) = (self.rows as usize, self.dim as usize);
        let len = if rows == 0 || dim == 0 { 0 } else { (rows - 1) * self.stride() + dim };
        let at = self.act_off + self.act_col;
        if write {
            Span::write(buf, at, len)
        } else {
            Span::read(buf, at, len)
        }
    }
}

/// The class a label names in a table of max(classes, 1) rows (`class_index` in common.wgsl):
/// truncated toward zero and clamped to [0, classes - 1]; NaN and negative labels (sign bit set)
/// give 0.
pub fn class_index(label: f32, classes: u32) -> usize {
    let last = classes.max(1) - 1;
    if label.is_nan() || label.is_sign_negative() {
        return 0;
    }
    ((label.min(last as f32) as u32).min(last)) as usize
}

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

pub const FAMILY: Family = Family {
    name: "embedding",
    wgsl: include_str!("../../shaders/embedding.wgsl"),
    f16: false,
    unchecked: false,
    entries: &[
        Entry { name: "embedding_forward", slots: &[U(0), R(1), R(2), RW(3)] },
        Entry { name: "embedding_backward", slots: &[U(0), R(1), R(2), RW(3)] },
    ],
    uniforms: &[EmbeddingParams::INFO],
};

fn bytes(p: &EmbeddingParams) -> Option<Vec<u8>> {
    Some(bytemuck::bytes_of(p).to_vec())
}

/// The table's rows for the batch's labels, into the activations (`embedding_forward`).
#[derive(Clone, Debug)]
pub struct EmbeddingForward {
    pub p: EmbeddingParams,
    pub labels: BufId,
    /// The table, at `p.table_off` (the network's parameters).
    pub table: BufId,
    /// The activations: rows of `p.act_stride` values from `p.act_off`.
    pub out: BufId,
}

impl Kernel for EmbeddingForward {
    fn entry(&self) -> &'static str {
        "embedding_forward"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.labels)), (2, Res::Buf(self.table)), (3, Res::Buf(self.out))]
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.rows as usize * self.p.dim as usize)
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        vec![
            Span::read(self.labels, p.labels_off, p.rows as usize),
            Span::read(self.table, p.table_off, p.classes.max(1) as usize * p.dim as usize),
            p.act_span(self.out, true),
        ]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, labels, table) = (&self.p, self.labels, self.table);
        host.with_out(self.out, |b, out| embedding_forward(p, &b[labels], &b[table], out))
    }
}

/// `embedding_forward`: out[act_at(b, k)] = table[table_off + y_b K + k].
pub fn embedding_forward(p: &EmbeddingParams, labels: &[f32], table: &[f32], out: &mut [f32]) {
    let dim = p.dim as usize;
    for b in 0..p.rows as usize {
        let row = p.table_off as usize + class_index(labels[p.labels_off as usize + b], p.classes) * dim;
        for k in 0..dim {
            out[p.act_at(b, k)] = table[row + k];
        }
    }
}

/// The table's gradient (`embedding_backward`): per class, the sum of its rows of dout in batch
/// order, stored (or added when `p.accumulate`) at `p.table_off` of the gradient buffer.
#[derive(Clone, Debug)]
pub struct EmbeddingBackward {
    pub p: EmbeddingParams,
    pub labels: BufId,
    /// The gradient of the activations: rows of `p.act_stride` values from `p.act_off`.
    pub dout: BufId,
    /// The network's gradient buffer.
    pub grads: BufId,
}

impl Kernel for EmbeddingBackward {
    fn entry(&self) -> &'static str {
        "embedding_backward"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.labels)), (2, Res::Buf(self.dout)), (3, Res::Buf(self.grads))]
    }
    /// Each (c, k) scans the B labels and adds its class's values.
    fn flops(&self) -> f64 {
        let p = &self.p;
        (p.classes as f64 * p.rows as f64).max(p.rows as f64 * p.dim as f64)
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.classes as usize * self.p.dim as usize)
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        vec![
            Span::read(self.labels, p.labels_off, p.rows as usize),
            p.act_span(self.dout, false),
            Span::write(self.grads, p.table_off, p.classes as usize * p.dim as usize),
        ]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, labels, dout) = (&self.p, self.labels, self.dout);
        host.with_out(self.grads, |b, grads| embedding_backward(p, &b[labels], &b[dout], grads))
    }
}

/// `embedding_backward`: dtable[table_off + c K + k] (+)= sum over b ascending with y_b = c of
/// dout[act_at(b, k)], each sum from 0 in batch order.
pub fn embedding_backward(p: &EmbeddingParams, labels: &[f32], dout: &[f32], dtable: &mut [f32]) {
    let (dim, classes) = (p.dim as usize, p.classes as usize);
    let class_of = |b: usize| class_index(labels[p.labels_off as usize + b], p.classes);
    for c in 0..classes {
        for k in 0..dim {
            let mut acc = 0f32;
            for b in (0..p.rows as usize).filter(|&b| class_of(b) == c) {
                acc += dout[p.act_at(b, k)];
            }
            let at = p.table_off as usize + c * dim + k;
            dtable[at] = if p.accumulate != 0 { dtable[at] + acc } else { acc };
        }
    }
}
