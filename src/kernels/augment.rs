//! DiffAugment (augment.wgsl, `--augment`): colour, translation and cutout on the images D sees,
//! differentiable so that G's gradient flows back through them. The draws are counter-based
//! (Philox keyed by seed, step, pass and image), so both backends augment alike and the backward
//! pass redraws what its forward pass drew.

use super::{Entry, Family, Slot};
use crate::ir::{BufId, Host, Kernel, Res, Span, UniformLayout};
use crate::rng;

crate::uniform! {
    /// `AugmentParams` in augment.wgsl.
    pub struct AugmentParams {
        pub images: u32,
        pub channels: u32,
        pub height: u32,
        pub width: u32,
        /// Which augmentations run: [`COLOR`], [`TRANSLATION`], [`CUTOUT`] (0: a copy).
        pub flags: u32,
        /// Which pass through D this is (keys the draws with the step).
        pub pass_id: u32,
        pub seed_lo: u32,
        pub seed_hi: u32,
        pub x_off: u32,
        pub out_off: u32,
        /// Translation's largest shift: int(H / 8 + 1/2), int(W / 8 + 1/2).
        pub shift_h: u32,
        pub shift_w: u32,
        /// Cutout's square: int(H / 2 + 1/2) x int(W / 2 + 1/2).
        pub cut_h: u32,
        pub cut_w: u32,
        /// 1 / channels and 1 / (channels H W): means as products, the same on both sides.
        pub inv_c: f32,
        pub inv_n: f32,
    }
}

pub const COLOR: u32 = 1;
pub const TRANSLATION: u32 = 2;
pub const CUTOUT: u32 = 4;

impl AugmentParams {
    /// The call for `images` images of `channels` x `height` x `width` with the policy `flags`,
    /// DiffAugment's ratios (translation 1/8, cutout 1/2).
    pub fn new(images: usize, channels: usize, height: usize, width: usize, flags: u32, pass: u32, seed: u64) -> Self {
        let ratio = |size: usize, r: f32| (size as f32 * r + 0.5) as u32;
        AugmentParams {
            images: images as u32,
            channels: channels as u32,
            height: height as u32,
            width: width as u32,
            flags,
            pass_id: pass,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            x_off: 0,
            out_off: 0,
            shift_h: ratio(height, 0.125),
            shift_w: ratio(width, 0.125),
            cut_h: ratio(height, 0.5),
            cut_w: ratio(width, 0.5),
            inv_c: 1.0 / channels as f32,
            inv_n: 1.0 / (channels * height * width) as f32,
        }
    }

    fn image_len(&self) -> usize {
        (self.channels * self.height * self.width) as usize
    }

    fn len(&self) -> usize {
        self.images as usize * self.image_len()
    }
}

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

pub const FAMILY: Family = Family {
    name: "augment",
    wgsl: include_str!("../../shaders/augment.wgsl"),
    f16: false,
    unchecked: false,
    entries: &[
        Entry { name: "augment_forward", slots: &[U(0), U(1), R(2), RW(3)] },
        Entry { name: "augment_backward", slots: &[U(0), U(1), R(2), RW(3)] },
    ],
    uniforms: &[AugmentParams::INFO],
};

fn workgroups(images: u32) -> [u32; 3] {
    let g = images.max(1);
    if g <= 65_535 {
        [g, 1, 1]
    } else {
        [65_535, g.div_ceil(65_535), 1]
    }
}

/// out = aug(x) (`augment_forward`).
#[derive(Clone, Debug)]
pub struct AugmentForward {
    pub p: AugmentParams,
    pub x: BufId,
    pub out: BufId,
}

/// dx = aug^T(dy) (`augment_backward`): `x` is dy, `out` dx.
#[derive(Clone, Debug)]
pub struct AugmentBackward {
    pub p: AugmentParams,
    pub x: BufId,
    pub out: BufId,
}

macro_rules! augment_kernel {
    ($ty:ident, $entry:literal, $twin:ident) => {
        impl Kernel for $ty {
            fn entry(&self) -> &'static str {
                $entry
            }
            fn uniform(&self) -> Option<Vec<u8>> {
                Some(bytemuck::bytes_of(&self.p).to_vec())
            }
            fn bindings(&self) -> Vec<(u32, Res)> {
                vec![(1, Res::State), (2, Res::Buf(self.x)), (3, Res::Buf(self.out))]
            }
            fn workgroups(&self) -> [u32; 3] {
                workgroups(self.p.images)
            }
            fn spans(&self) -> Vec<Span> {
                let (p, n) = (&self.p, self.p.len());
                vec![Span::read(self.x, p.x_off, n), Span::write(self.out, p.out_off, n)]
            }
            fn run_cpu(&self, host: &mut Host) {
                let (p, x, step) = (&self.p, self.x, host.state.step);
                host.with_out(self.out, |b, out| $twin(p, step, &b[x], out))
            }
        }
    };
}

augment_kernel!(AugmentForward, "augment_forward", augment_forward);
augment_kernel!(AugmentBackward, "augment_backward", augment_backward);

/// One image's draws (see augment.wgsl).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draws {
    pub bright: f32,
    pub sat: f32,
    pub contrast: f32,
    pub tx: i32,
    pub ty: i32,
    /// The cutout square's first row and column (may lie before the image).
    pub cut_i: i32,
    pub cut_j: i32,
}

/// The draws of image `img` at training step `step`.
pub fn draws(p: &AugmentParams, step: u32, img: u32) -> Draws {
    let key = [p.seed_lo, p.seed_hi];
    let a = rng::philox4x32([2 * img, p.pass_id, step, rng::PURPOSE_AUGMENT], key);
    let b = rng::philox4x32([2 * img + 1, p.pass_id, step, rng::PURPOSE_AUGMENT], key);
    let (tx, ty) = if p.flags & TRANSLATION != 0 {
        ((a[3] % (2 * p.shift_h + 1)) as i32 - p.shift_h as i32, (b[0] % (2 * p.shift_w + 1)) as i32 - p.shift_w as i32)
    } else {
        (0, 0)
    };
    Draws {
        bright: rng::unit_f32(a[0]) - 0.5,
        sat: rng::unit_f32(a[1]) * 2.0,
        contrast: rng::unit_f32(a[2]) + 0.5,
        tx,
        ty,
        cut_i: (b[1] % (p.height + 1 - p.cut_h % 2)) as i32 - (p.cut_h / 2) as i32,
        cut_j: (b[2] % (p.width + 1 - p.cut_w % 2)) as i32 - (p.cut_w / 2) as i32,
    }
}

/// Whether output pixel (i, j) is kept: not cut out, and its source inside the image.
fn kept(p: &AugmentParams, d: &Draws, i: i32, j: i32) -> bool {
    if p.flags & CUTOUT != 0 {
        let in_i = i >= d.cut_i && i < d.cut_i + p.cut_h as i32;
        let in_j = j >= d.cut_j && j < d.cut_j + p.cut_w as i32;
        if in_i && in_j {
            return false;
        }
    }
    let (si, sj) = (i + d.tx, j + d.ty);
    si >= 0 && si < p.height as i32 && sj >= 0 && sj < p.width as i32
}

/// The WGSL's `tree_sum` over one image: `term(q)` for pixels q strided over 256 lanes.
fn lane_sum(hw: usize, term: impl Fn(usize) -> f32) -> f32 {
    const LANES: usize = 256;
    let mut partial = [0f32; LANES];
    for (lane, acc) in partial.iter_mut().enumerate() {
        let mut q = lane;
        while q < hw {
            *acc += term(q);
            q += LANES;
        }
    }
    let mut stride = LANES / 2;
    while stride > 0 {
        for lane in 0..stride {
            partial[lane] += partial[lane + stride];
        }
        stride /= 2;
    }
    partial[0]
}

/// `augment_forward` (see augment.wgsl): the same arithmetic in the same order.
pub fn augment_forward(p: &AugmentParams, step: u32, x: &[f32], out: &mut [f32]) {
    let (c_n, w) = (p.channels as usize, p.width as usize);
    let hw = (p.height * p.width) as usize;
    let color = p.flags & COLOR != 0;
    for img in 0..p.images as usize {
        let base = p.x_off as usize + img * c_n * hw;
        let obase = p.out_off as usize + img * c_n * hw;
        let d = draws(p, step, img as u32);
        let pixel_mean = |q: usize| {
            let mut t = 0f32;
            for c in 0..c_n {
                t += x[base + c * hw + q] + d.bright;
            }
            t * p.inv_c
        };
        let total = if color {
            lane_sum(hw, |q| {
                let m = pixel_mean(q);
                let mut t = 0f32;
                for c in 0..c_n {
                    t += (x[base + c * hw + q] + d.bright - m) * d.sat + m;
                }
                t
            })
        } else {
            0.0
        };
        let big_m = total * p.inv_n;
        for q in 0..hw {
            let (i, j) = ((q / w) as i32, (q % w) as i32);
            if !kept(p, &d, i, j) {
                for c in 0..c_n {
                    out[obase + c * hw + q] = 0.0;
                }
                continue;
            }
            let src = (i + d.tx) as usize * w + (j + d.ty) as usize;
            let m = if color { pixel_mean(src) } else { 0.0 };
            for c in 0..c_n {
                let mut v = x[base + c * hw + src];
                if color {
                    let s = (v + d.bright - m) * d.sat + m;
                    v = (s - big_m) * d.contrast + big_m;
                }
                out[obase + c * hw + q] = v;
            }
        }
    }
}

/// `augment_backward` (see augment.wgsl): `x` holds dy, `out` receives dx.
pub fn augment_backward(p: &AugmentParams, step: u32, x: &[f32], out: &mut [f32]) {
    let (c_n, h, w) = (p.channels as usize, p.height as i32, p.width as usize);
    let hw = (p.height * p.width) as usize;
    let color = p.flags & COLOR != 0;
    for img in 0..p.images as usize {
        let base = p.x_off as usize + img * c_n * hw;
        let obase = p.out_off as usize + img * c_n * hw;
        let d = draws(p, step, img as u32);
        let moved_back = |c: usize, q: usize| {
            let (i, j) = ((q / w) as i32 - d.tx, (q % w) as i32 - d.ty);
            if i < 0 || i >= h || j < 0 || j >= w as i32 || !kept(p, &d, i, j) {
                return 0.0;
            }
            x[base + c * hw + i as usize * w + j as usize]
        };
        let total = if color {
            lane_sum(hw, |q| {
                let mut t = 0f32;
                for c in 0..c_n {
                    t += moved_back(c, q);
                }
                t
            })
        } else {
            0.0
        };
        let big_g = total * p.inv_n;
        for q in 0..hw {
            if !color {
                for c in 0..c_n {
                    out[obase + c * hw + q] = moved_back(c, q);
                }
                continue;
            }
            let g2 = |c: usize| moved_back(c, q) * d.contrast + (1.0 - d.contrast) * big_g;
            let mut t = 0f32;
            for c in 0..c_n {
                t += g2(c);
            }
            let g2_mean = t * p.inv_c;
            for c in 0..c_n {
                out[obase + c * hw + q] = g2(c) * d.sat + (1.0 - d.sat) * g2_mean;
            }
        }
    }
}
