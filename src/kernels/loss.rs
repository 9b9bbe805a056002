//! D's and G's losses on logits, loss and gradient fused (loss.wgsl): binary cross-entropy (D's
//! loss on real and fake rows, G's non-saturating loss) and the hinge loss (`--loss hinge`).

use super::activation::sigmoid;
use super::{Entry, Family, Slot};
use crate::ir::{BufId, Host, Kernel, Res, Span, UniformLayout};

/// "Do not write this statistic" (`NO_SLOT` in loss.wgsl and xent.wgsl).
pub const NO_SLOT: u32 = u32::MAX;

crate::uniform! {
    /// `LossParams` in loss.wgsl.
    pub struct LossParams {
        pub rows: u32,
        pub n_first: u32,
        pub label_first: f32,
        pub label_second: f32,
        pub scale_first: f32,
        pub scale_second: f32,
        pub z_off: u32,
        pub dz_off: u32,
        pub slot_loss: u32,
        pub slot_prob_first: u32,
        pub slot_prob_second: u32,
        /// hinge_logits: 1 for D's max(0, 1 - y z), 0 for G's -y z.
        pub hinge_margin: u32,
    }
}

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

pub const FAMILY: Family = Family {
    name: "loss",
    wgsl: include_str!("../../shaders/loss.wgsl"),
    f16: false,
    unchecked: false,
    entries: &[
        Entry { name: "bce_logits", slots: &[U(0), R(1), RW(2), RW(3)] },
        Entry { name: "hinge_logits", slots: &[U(0), R(1), RW(2), RW(3)] },
    ],
    uniforms: &[LossParams::INFO],
};

/// Loss and gradient of logits `z`; statistics into slots of `stats`.
#[derive(Clone, Debug)]
pub struct BceLogits {
    pub p: LossParams,
    pub z: BufId,
    pub dz: BufId,
    pub stats: BufId,
}

/// The hinge loss's twin of [`BceLogits`] (the same buffers; the labels are signs).
#[derive(Clone, Debug)]
pub struct HingeLogits {
    pub p: LossParams,
    pub z: BufId,
    pub dz: BufId,
    pub stats: BufId,
}

macro_rules! loss_kernel {
    ($ty:ident, $entry:literal, $twin:ident) => {
        impl Kernel for $ty {
            fn entry(&self) -> &'static str {
                $entry
            }
            fn uniform(&self) -> Option<Vec<u8>> {
                Some(bytemuck::bytes_of(&self.p).to_vec())
            }
            fn bindings(&self) -> Vec<(u32, Res)> {
                vec![(1, Res::Buf(self.z)), (2, Res::Buf(self.dz)), (3, Res::Buf(self.stats))]
            }
            fn workgroups(&self) -> [u32; 3] {
                [1, 1, 1]
            }
            fn spans(&self) -> Vec<Span> {
                loss_spans(&self.p, self.z, self.dz, self.stats)
            }
            fn run_cpu(&self, host: &mut Host) {
                let (p, z) = (&self.p, self.z);
                host.with_outs(self.dz, self.stats, |b, dz, stats| $twin(p, &b[z], dz, stats))
            }
        }
    };
}

loss_kernel!(BceLogits, "bce_logits", bce_logits);
loss_kernel!(HingeLogits, "hinge_logits", hinge_logits);

fn loss_spans(p: &LossParams, z: BufId, dz: BufId, stats: BufId) -> Vec<Span> {
    let rows = p.rows as usize;
    let slots = [p.slot_loss, p.slot_prob_first, p.slot_prob_second];
    let mut s = vec![Span::read(z, p.z_off, rows), Span::write(dz, p.dz_off, rows)];
    s.extend(slots.iter().filter(|&&x| x != NO_SLOT).map(|&x| Span::write(stats, x, 1)));
    s
}

/// log(1 + x) for x in [0, 1] (`log1p_small` in common.wgsl).
pub fn log1p_small(x: f32) -> f32 {
    if x < 1e-4 {
        x - 0.5 * x * x
    } else {
        (1.0 + x).ln()
    }
}

/// Binary cross-entropy on logits, loss and gradient fused (see loss.wgsl). The sums are taken
/// in the kernel's order (256 strided partial sums, then a tree) so that both sides round alike.
pub fn bce_logits(p: &LossParams, z: &[f32], dz: &mut [f32], stats: &mut [f32]) {
    loss_rows(p, z, dz, stats, |zi, y, scale| {
        let loss = zi.max(0.0) - zi * y + log1p_small((-zi.abs()).exp());
        (loss, (sigmoid(zi) - y) * scale)
    })
}

/// The hinge loss (see loss.wgsl): labels are signs; `hinge_margin` 1 gives D's max(0, 1 - y z),
/// 0 gives G's -y z.
pub fn hinge_logits(p: &LossParams, z: &[f32], dz: &mut [f32], stats: &mut [f32]) {
    let margin = p.hinge_margin != 0;
    loss_rows(p, z, dz, stats, |zi, y, scale| {
        let g = -y * scale;
        if !margin {
            return (-y * zi, g);
        }
        let m = 1.0 - y * zi;
        (m.max(0.0), if m > 0.0 { g } else { 0.0 })
    })
}

/// The loop and the fixed-order reduction both losses share: `row(z, y, scale)` gives a row's
/// loss and gradient; the statistics are the scaled loss sums and the means of sigmoid(z).
fn loss_rows(p: &LossParams, z: &[f32], dz: &mut [f32], stats: &mut [f32], row: impl Fn(f32, f32, f32) -> (f32, f32)) {
    const LANES: usize = 256;
    let mut partial = [[0f32; 4]; LANES];
    for (lane, acc) in partial.iter_mut().enumerate() {
        let mut i = lane;
        while i < p.rows as usize {
            let zi = z[p.z_off as usize + i];
            let first = (i as u32) < p.n_first;
            let (y, scale) = if first { (p.label_first, p.scale_first) } else { (p.label_second, p.scale_second) };
            let s = sigmoid(zi);
            let (loss, g) = row(zi, y, scale);
            dz[p.dz_off as usize + i] = g;
            if first {
                acc[0] += loss;
                acc[2] += s;
            } else {
                acc[1] += loss;
                acc[3] += s;
            }
            i += LANES;
        }
    }
    let mut stride = LANES / 2;
    while stride > 0 {
        for lane in 0..stride {
            let upper = partial[lane + stride];
            for (acc, v) in partial[lane].iter_mut().zip(upper) {
                *acc += v;
            }
        }
        stride /= 2;
    }
    let t = partial[0];
    let n_second = p.rows - p.n_first.min(p.rows);
    let mut put = |slot: u32, v: f32| {
        if slot != NO_SLOT {
            stats[slot as usize] = v;
        }
    };
    put(p.slot_loss, p.scale_first * t[0] + p.scale_second * t[1]);
    put(p.slot_prob_first, t[2] / p.n_first.max(1) as f32);
    put(p.slot_prob_second, t[3] / n_second.max(1) as f32);
}
