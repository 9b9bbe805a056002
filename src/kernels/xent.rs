//! Softmax cross-entropy on logits, loss and gradient fused (xent.wgsl): the classifier's loss.

use super::loss::NO_SLOT;
use super::{Entry, Family, Slot};
use crate::ir::{BufId, Host, Kernel, Res, Span, UniformLayout};

crate::uniform! {
    /// `XentParams` in xent.wgsl.
    pub struct XentParams {
        pub rows: u32,
        pub classes: u32,
        pub z_off: u32,
        pub label_off: u32,
        pub dz_off: u32,
        /// 1 / rows for the mean loss.
        pub scale: f32,
        pub slot_loss: u32,
        pub slot_acc: u32,
    }
}

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

pub const FAMILY: Family = Family {
    name: "xent",
    wgsl: include_str!("../../shaders/xent.wgsl"),
    f16: false,
    unchecked: false,
    entries: &[Entry { name: "softmax_xent", slots: &[U(0), R(1), R(2), RW(3), RW(4)] }],
    uniforms: &[XentParams::INFO],
};

/// Logits `z` (rows, classes), labels (rows) as f32 class indices.
#[derive(Clone, Debug)]
pub struct SoftmaxXent {
    pub p: XentParams,
    pub z: BufId,
    pub labels: BufId,
    pub dz: BufId,
    pub stats: BufId,
}

impl Kernel for SoftmaxXent {
    fn entry(&self) -> &'static str {
        "softmax_xent"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        Some(bytemuck::bytes_of(&self.p).to_vec())
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.z)), (2, Res::Buf(self.labels)), (3, Res::Buf(self.dz)), (4, Res::Buf(self.stats))]
    }
    fn workgroups(&self) -> [u32; 3] {
        [1, 1, 1]
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        let n = p.rows as usize * p.classes as usize;
        let mut s = vec![
            Span::read(self.z, p.z_off, n),
            Span::read(self.labels, p.label_off, p.rows as usize),
            Span::write(self.dz, p.dz_off, n),
        ];
        s.extend([p.slot_loss, p.slot_acc].iter().filter(|&&x| x != NO_SLOT).map(|&x| Span::write(self.stats, x, 1)));
        s
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, z, labels) = (&self.p, self.z, self.labels);
        host.with_outs(self.dz, self.stats, |b, dz, stats| softmax_xent(p, &b[z], &b[labels], dz, stats))
    }
}

/// Softmax cross-entropy on logits, loss and gradient fused (see xent.wgsl); the sums in the
/// kernel's order (256 strided partial sums, then a tree).
pub fn softmax_xent(p: &XentParams, z: &[f32], labels: &[f32], dz: &mut [f32], stats: &mut [f32]) {
    const LANES: usize = 256;
    let classes = p.classes as usize;
    let mut partial = [[0f32; 2]; LANES];
    for (lane, acc) in partial.iter_mut().enumerate() {
        let mut r = lane;
        while r < p.rows as usize {
            let row = &z[p.z_off as usize + r * classes..][..classes];
            let y = labels[p.label_off as usize + r] as usize;
            let (mut m, mut arg) = (row[0], 0);
            for (j, &v) in row.iter().enumerate().skip(1) {
                if v > m {
                    (m, arg) = (v, j);
                }
            }
            let sum: f32 = row.iter().map(|&v| (v - m).exp()).sum();
            let lse = m + sum.ln();
            let out = &mut dz[p.dz_off as usize + r * classes..][..classes];
            for (j, (d, &v)) in out.iter_mut().zip(row).enumerate() {
                *d = ((v - lse).exp() - if j == y { 1.0 } else { 0.0 }) * p.scale;
            }
            acc[0] += lse - row[y];
            acc[1] += if arg == y { 1.0 } else { 0.0 };
            r += LANES;
        }
    }
    let mut stride = LANES / 2;
    while stride > 0 {
        for lane in 0..stride {
            let upper = partial[lane + stride];
            partial[lane][0] += upper[0];
            partial[lane][1] += upper[1];
        }
        stride /= 2;
    }
    if p.slot_loss != NO_SLOT {
        stats[p.slot_loss as usize] = p.scale * partial[0][0];
    }
    if p.slot_acc != NO_SLOT {
        stats[p.slot_acc as usize] = partial[0][1] / p.rows.max(1) as f32;
    }
}
