//! augment.wgsl (DiffAugment) against its CPU twins: every policy, gray and colour images,
//! awkward sizes, many images (draws per image, step and pass), NaN-filled outputs; the twins
//! against an f64 oracle written here from DiffAugment_pytorch.py's formulas, and the backward
//! pass against f64 finite differences of sum(G * aug(x)).

use crate::common::harness::Case;
use crate::common::uniform;
use shadergan::ir::TrainState;
use shadergan::kernels::augment::*;

fn policies() -> Vec<u32> {
    (0..8).collect()
}

#[test]
fn augment_matches_cpu_for_every_policy() {
    // (images, channels, height, width): one pixel, gray, colour, odd and wide sizes.
    let shapes =
        [(1usize, 1usize, 1usize, 1usize), (3, 1, 7, 9), (5, 3, 8, 8), (2, 3, 17, 33), (65, 3, 16, 16), (4, 2, 28, 28)];
    for &(images, ch, h, w) in &shapes {
        for flags in policies() {
            for backward in [false, true] {
                let n = images * ch * h * w;
                let mut c = Case::new();
                let x = c.input("x", uniform(n + 3, (n + flags as usize) as u32, -1.5, 1.5));
                let out = c.output("out", n + 2);
                let mut p = AugmentParams::new(images, ch, h, w, flags, 3, 0x1234_5678_9abc);
                (p.x_off, p.out_off) = (3, 2);
                c.state = TrainState::at(17, 3, 3, 0.5, 0.999);
                let what = format!("{images}x{ch}x{h}x{w}, flags {flags}, backward {backward}");
                if backward {
                    c.check_from(AugmentBackward { p, x, out }, &[out], 2, &what);
                } else {
                    c.check_from(AugmentForward { p, x, out }, &[out], 2, &what);
                }
            }
        }
    }
}

/// DiffAugment's formulas in f64, straight from DiffAugment_pytorch.py, on one image with the
/// twin's draws: the oracle.
fn oracle(p: &AugmentParams, d: &Draws, x: &[f64]) -> Vec<f64> {
    let (c_n, h, w) = (p.channels as usize, p.height as i64, p.width as i64);
    let hw = (h * w) as usize;
    let mut y = x.to_vec();
    if p.flags & COLOR != 0 {
        y.iter_mut().for_each(|v| *v += d.bright as f64);
        for q in 0..hw {
            let m = (0..c_n).map(|c| y[c * hw + q]).sum::<f64>() / c_n as f64;
            for c in 0..c_n {
                y[c * hw + q] = (y[c * hw + q] - m) * d.sat as f64 + m;
            }
        }
        let m = y.iter().sum::<f64>() / y.len() as f64;
        y.iter_mut().for_each(|v| *v = (*v - m) * d.contrast as f64 + m);
    }
    let mut out = vec![0.0; y.len()];
    for c in 0..c_n {
        for i in 0..h {
            for j in 0..w {
                let (si, sj) = (i + d.tx as i64, j + d.ty as i64);
                let inside = si >= 0 && si < h && sj >= 0 && sj < w;
                let cut = p.flags & CUTOUT != 0
                    && (d.cut_i as i64..d.cut_i as i64 + p.cut_h as i64).contains(&i)
                    && (d.cut_j as i64..d.cut_j as i64 + p.cut_w as i64).contains(&j);
                if inside && !cut {
                    out[c * hw + (i * w + j) as usize] = y[c * hw + (si * w + sj) as usize];
                }
            }
        }
    }
    out
}

#[test]
fn augment_twins_match_the_f64_oracle_and_its_finite_differences() {
    for &(ch, h, w) in &[(3usize, 8usize, 8usize), (1, 7, 5), (3, 16, 16)] {
        for flags in policies() {
            for img in 0..4u32 {
                let n = ch * h * w;
                let p = AugmentParams::new(4, ch, h, w, flags, 1, 99);
                let step = 5;
                let d = draws(&p, step, img);
                let xs = uniform(4 * n, img + 7, -1.0, 1.0);
                let x = &xs[img as usize * n..(img as usize + 1) * n];
                let mut y = vec![f32::NAN; 4 * n];
                augment_forward(&p, step, &xs, &mut y);
                let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let want = oracle(&p, &d, &x64);
                let got = &y[img as usize * n..(img as usize + 1) * n];
                for (k, (&g, &o)) in got.iter().zip(&want).enumerate() {
                    assert!((g as f64 - o).abs() < 1e-5, "forward, flags {flags}, image {img}, [{k}]: {g} vs {o}");
                }
                // Backward: dx = aug^T(G) against d/dx sum(G * aug(x)); aug is linear in x, so
                // central differences are exact up to rounding.
                let gs = uniform(4 * n, img + 100, -1.0, 1.0);
                let mut dx = vec![f32::NAN; 4 * n];
                augment_backward(&p, step, &gs, &mut dx);
                let gy = &gs[img as usize * n..(img as usize + 1) * n];
                let loss = |x: &[f64]| oracle(&p, &d, x).iter().zip(gy).map(|(a, &b)| a * b as f64).sum::<f64>();
                let mut xp = x64.clone();
                let h_step = 1e-4;
                for k in 0..n {
                    let orig = xp[k];
                    xp[k] = orig + h_step;
                    let hi = loss(&xp);
                    xp[k] = orig - h_step;
                    let lo = loss(&xp);
                    xp[k] = orig;
                    let numeric = (hi - lo) / (2.0 * h_step);
                    let a = dx[img as usize * n + k] as f64;
                    assert!(
                        (a - numeric).abs() < 1e-5 + 1e-4 * numeric.abs(),
                        "backward, flags {flags}, image {img}, [{k}]: {a} vs {numeric}"
                    );
                }
            }
        }
    }
}

/// The draws follow DiffAugment's ranges, change with the step, the pass and the image, and
/// cover the translation's and the cutout's whole ranges.
#[test]
fn draws_cover_diffaugments_ranges() {
    let p = AugmentParams::new(1, 3, 32, 32, COLOR | TRANSLATION | CUTOUT, 0, 7);
    assert_eq!((p.shift_h, p.cut_h), (4, 16));
    let (mut tx, mut cut) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for step in 0..2000 {
        let d = draws(&p, step, 0);
        assert!((-0.5..0.5).contains(&d.bright) && (0.0..2.0).contains(&d.sat) && (0.5..1.5).contains(&d.contrast));
        tx.insert(d.tx);
        cut.insert(d.cut_i);
    }
    assert_eq!(tx, (-4..=4).collect());
    // oi in [0, 32 + 1 - 0) minus 8: -8 ..= 24.
    assert_eq!(cut, (-8..=24).collect());
    assert_ne!(draws(&p, 1, 0), draws(&p, 2, 0));
    assert_ne!(draws(&p, 1, 0), draws(&p, 1, 1));
    let other_pass = AugmentParams { pass_id: 1, ..p };
    assert_ne!(draws(&p, 1, 0), draws(&other_pass, 1, 0));
}
