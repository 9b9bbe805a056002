//! loss.wgsl (BCE on logits, loss and gradient fused) against its CPU twin.

use crate::common::harness::{ew_inputs, Both, Case};
use shadergan::kernels::loss::*;
use shadergan::kernels::tolerance::{compare, tolerance};

/// Slots the GAN step uses.
const SLOT_D_LOSS: u32 = 0;
const SLOT_D_REAL: u32 = 2;
const SLOT_D_FAKE: u32 = 3;

#[test]
fn bce_logits_matches_cpu() {
    for &rows in &[1usize, 63, 64, 65, 130, 7 * 33 * 65] {
        for (n_first, label_first) in [(rows / 2, 1.0f32), (rows, 1.0), (rows / 2, 0.9)] {
            let mut c = Case::new();
            let z = c.input("z", ew_inputs(rows + 1, rows as u32));
            let dz = c.output("dz", rows);
            let stats = c.output("stats", 4);
            let n_second = rows - n_first;
            let p = LossParams {
                rows: rows as u32,
                n_first: n_first as u32,
                label_first,
                label_second: 0.0,
                scale_first: 1.0 / n_first.max(1) as f32,
                scale_second: if n_second > 0 { 1.0 / n_second as f32 } else { 0.0 },
                z_off: 1,
                dz_off: 0,
                slot_loss: SLOT_D_LOSS,
                slot_prob_first: SLOT_D_REAL,
                slot_prob_second: if n_second > 0 { SLOT_D_FAKE } else { NO_SLOT },
                ..Default::default()
            };
            let what = format!("rows {rows}, first {n_first}, label {label_first}");
            let op = BceLogits { p, z, dz, stats };
            let Some(Both { gpu: g, cpu, .. }) = c.run(op, &[dz, stats]) else { return };
            let t = tolerance("bce_logits");
            compare("bce_logits dz", &g[0], &cpu[0], t).unwrap_or_else(|e| panic!("{what}: {e}"));
            let written: Vec<usize> = if n_second > 0 { vec![0, 2, 3] } else { vec![0, 2] };
            for i in written {
                let (gv, cv) = (g[1][i], cpu[1][i]);
                assert!(cv.is_finite(), "{what}: stat {i} = {cv}");
                compare("bce_logits stats", &[gv], &[cv], t).unwrap_or_else(|e| panic!("{what}: stat {i}: {e}"));
            }
            // Unwritten slots stay NaN: the kernel writes only what it is asked to.
            assert!(g[1][1].is_nan(), "{what}: slot 1 was written");
        }
    }
}

#[test]
fn bce_logits_is_exact_at_extremes() {
    // loss(z, y) = max(z,0) - z y + log(1 + e^-|z|): finite at +-300, where log(sigmoid) is not.
    let mut z = vec![300.0f32, -300.0, 30.0, -30.0];
    let mut dz = vec![0.0; 4];
    let mut stats = vec![0.0; 4];
    let p = LossParams {
        rows: 4,
        n_first: 4,
        label_first: 1.0,
        scale_first: 1.0,
        slot_loss: 0,
        slot_prob_first: NO_SLOT,
        slot_prob_second: NO_SLOT,
        ..Default::default()
    };
    shadergan::kernels::loss::bce_logits(&p, &z, &mut dz, &mut stats);
    // Per row: 0, 300, ~9.4e-14, ~30; sigmoid(30) rounds to 1 in f32, so its gradient is 0.
    assert!((stats[0] - 330.0).abs() < 1e-3, "{}", stats[0]);
    assert_eq!(dz, vec![0.0, -1.0, 0.0, -1.0]);
    // The tiny loss of a confident right answer is kept, not rounded to zero.
    z.truncate(3);
    z[0] = 30.0;
    let p1 = LossParams { rows: 1, n_first: 1, ..p };
    shadergan::kernels::loss::bce_logits(&p1, &z, &mut dz, &mut stats);
    assert!((stats[0] - 9.357623e-14).abs() < 1e-19, "{}", stats[0]);
}

#[test]
fn hinge_logits_matches_cpu() {
    for &rows in &[1usize, 63, 64, 65, 130, 7 * 33 * 65] {
        // D's loss (reals +1, fakes -1, margin 1) and G's (-z on fakes).
        for (n_first, margin) in [(rows / 2, 1u32), (rows, 0)] {
            let mut c = Case::new();
            let mut zv = ew_inputs(rows + 1, rows as u32 + 5);
            // Logits right at the hinge's corners, where the gradient switches.
            for (slot, e) in zv.iter_mut().skip(11).zip([1.0, -1.0, 0.999_999, -1.000_001]) {
                *slot = e;
            }
            let z = c.input("z", zv);
            let dz = c.output("dz", rows);
            let stats = c.output("stats", 4);
            let n_second = rows - n_first;
            let p = LossParams {
                rows: rows as u32,
                n_first: n_first as u32,
                label_first: 1.0,
                label_second: -1.0,
                scale_first: 1.0 / n_first.max(1) as f32,
                scale_second: if n_second > 0 { 1.0 / n_second as f32 } else { 0.0 },
                z_off: 1,
                slot_loss: SLOT_D_LOSS,
                slot_prob_first: SLOT_D_REAL,
                slot_prob_second: if n_second > 0 { SLOT_D_FAKE } else { NO_SLOT },
                hinge_margin: margin,
                ..Default::default()
            };
            let what = format!("rows {rows}, first {n_first}, margin {margin}");
            let Some(Both { gpu: g, cpu, .. }) = c.run(HingeLogits { p, z, dz, stats }, &[dz, stats]) else { return };
            let t = tolerance("hinge_logits");
            compare("hinge_logits dz", &g[0], &cpu[0], t).unwrap_or_else(|e| panic!("{what}: {e}"));
            let written: Vec<usize> = if n_second > 0 { vec![0, 2, 3] } else { vec![0, 2] };
            for i in written {
                assert!(cpu[1][i].is_finite(), "{what}: stat {i}");
                compare("hinge_logits stats", &[g[1][i]], &[cpu[1][i]], t).unwrap_or_else(|e| panic!("{what}: {e}"));
            }
            assert!(g[1][1].is_nan(), "{what}: slot 1 was written");
        }
    }
}

#[test]
fn hinge_logits_follows_its_definition_at_extremes() {
    // D: reals (+1) then fakes (-1), mean over each half; relu'(0) = 0 at the corner.
    let z = vec![300.0f32, 0.5, 1.0, -300.0, -0.5, -1.0];
    let mut dz = vec![f32::NAN; 6];
    let mut stats = vec![f32::NAN; 4];
    let p = LossParams {
        rows: 6,
        n_first: 3,
        label_first: 1.0,
        label_second: -1.0,
        scale_first: 1.0 / 3.0,
        scale_second: 1.0 / 3.0,
        slot_loss: 0,
        slot_prob_first: NO_SLOT,
        slot_prob_second: NO_SLOT,
        hinge_margin: 1,
        ..Default::default()
    };
    hinge_logits(&p, &z, &mut dz, &mut stats);
    // Losses: 0, 0.5, 0 | 0, 0.5, 0.
    assert!((stats[0] - 1.0 / 3.0).abs() < 1e-6, "{}", stats[0]);
    let third = 1.0 / 3.0;
    assert_eq!(dz, vec![0.0, -third, 0.0, 0.0, third, 0.0]);
    // G: -mean(z) over fakes, gradient -1/n everywhere, however large the logit.
    let p2 = LossParams { rows: 2, n_first: 2, scale_first: 0.5, hinge_margin: 0, ..p };
    hinge_logits(&p2, &z[..2], &mut dz, &mut stats);
    assert!((stats[0] - (-(300.0 + 0.5) * 0.5)).abs() < 1e-3, "{}", stats[0]);
    assert_eq!(&dz[..2], &[-0.5, -0.5]);
}
