//! Binary cross-entropy on logits, loss and gradient fused (loss.wgsl): D's loss on real and
//! fake rows, and G's non-saturating loss.

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
        pub _pad0: u32,
    }
}

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

pub const FAMILY: Family = Family {
    name: "loss",
    wgsl: include_str!("../../shaders/loss.wgsl"),
    f16: false,
    unchecked: false,
    entries: &[Entry { name: "bce_logits", slots: &[U(0), R(1), RW(2), RW(3)] }],
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

impl Kernel for BceLogits {
    fn entry(&self) -> &'static str {
        "bce_logits"
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
        let (p, rows) = (&self.p, self.p.rows as usize);
        let slots = [p.slot_loss, p.slot_prob_first, p.slot_prob_second];
        let mut s = vec![Span::read(self.z, p.z_off, rows), Span::write(self.dz, p.dz_off, rows)];
        s.extend(slots.iter().filter(|&&x| x != NO_SLOT).map(|&x| Span::write(self.stats, x, 1)));
        s
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, z) = (&self.p, self.z);
        host.with_outs(self.dz, self.stats, |b, dz, stats| bce_logits(p, &b[z], dz, stats))
    }
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
    const LANES: usize = 256;
    let mut partial = [[0f32; 4]; LANES];
    for (lane, acc) in partial.iter_mut().enumerate() {
        let mut i = lane;
        while i < p.rows as usize {
            let zi = z[p.z_off as usize + i];
            let first = (i as u32) < p.n_first;
            let (y, scale) = if first { (p.label_first, p.scale_first) } else { (p.label_second, p.scale_second) };
            let s = sigmoid(zi);
            let loss = zi.max(0.0) - zi * y + log1p_small((-zi.abs()).exp());
            dz[p.dz_off as usize + i] = (s - y) * scale;
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
