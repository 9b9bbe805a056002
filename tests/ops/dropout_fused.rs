//! Dropout fused into the linear layers' kernels (`DropMask` in common.wgsl): the `_dropout`
//! entry points of matmul_forward, matmul_forward_tiled, matmul_backward and logit_head against
//! their twins, and the twins against the sequence they replace (the unmasked kernel, then one
//! `dropout` call per group of rows), which must match bit for bit: the fusion changes no CPU
//! bits. Shapes from SHAPES, one and two groups of rows (reals and fakes), a step and seed that
//! are not zero, NaN-prefilled outputs.

use crate::common::harness::{Both, Case, SHAPES};
use crate::common::uniform;
use shadergan::ir::{BufId, Op, TrainState};
use shadergan::kernels::activation::{activate, Activation};
use shadergan::kernels::head::{HeadLoss, HeadParams, LogitHead};
use shadergan::kernels::loss::{LossParams, NO_SLOT};
use shadergan::kernels::matmul::*;
use shadergan::kernels::random::{DropMask, Dropout};
use shadergan::kernels::tolerance::{compare, tolerance};

/// The stream step between the groups of a pass (`nn::Mode::for_group`: pass + 128 g, x 256).
const STRIDE: u32 = 128 * 256;

/// The masks tried on `m` rows: rate 0.3 over one group, and rate 0.5 over two groups of m / 2
/// rows where m is even.
fn masks(m: u32) -> Vec<(DropMask, u32)> {
    let mut v = vec![(DropMask::new(0.3, 0x5_0000_0009, 3, STRIDE, m as usize), 1)];
    if m.is_multiple_of(2) {
        v.push((DropMask::new(0.5, 77, 2 * 256 + 1, STRIDE, m as usize / 2), 2));
    }
    v
}

/// The separate calls a mask replaces: one `dropout` per group over `features` values per row
/// from element `off` of `out`.
fn dropout_calls(mask: &DropMask, groups: u32, features: u32, off: u32, out: BufId) -> Vec<Op> {
    (0..groups).map(|g| Dropout { p: mask.group_params(g, features as usize, off as usize), out }.into()).collect()
}

fn case_at_step() -> Case {
    let mut c = Case::new();
    c.state = TrainState::at(1234, 0, 0, 0.5, 0.999);
    c
}

/// Runs the fused op and the separate sequence; checks the twin equals the sequence's twins bit
/// for bit, and the GPU equals the twin within the entry's tolerance, over `written`.
fn check(c: &Case, fused: Op, separate: Vec<Op>, out: BufId, written: std::ops::Range<usize>, what: &str) {
    let entry = c.entry(&fused);
    let Some(Both { gpu: g, cpu, .. }) = c.run(fused, &[out]) else { return };
    let Some(Both { cpu: seq, .. }) = c.run_ops(separate, &[out]) else { return };
    let (g, cpu, seq) = (&g[0][written.clone()], &cpu[0][written.clone()], &seq[0][written]);
    assert!(cpu.iter().all(|v| !v.is_nan()), "{entry} {what}: twin left NaN");
    let same = cpu.iter().zip(seq).all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same, "{entry} {what}: the fused twin differs from the kernel then dropout");
    compare(entry, g, cpu, tolerance(entry)).unwrap_or_else(|e| panic!("{entry} {what}: {e}"));
    // The same units dropped on both sides.
    let zeros = |v: &[f32]| v.iter().map(|x| *x == 0.0).collect::<Vec<_>>();
    assert_eq!(zeros(g), zeros(cpu), "{entry} {what}: masks differ");
}

#[test]
fn matmul_forward_dropout_matches_kernel_then_dropout() {
    for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
        for (mask, groups) in masks(m) {
            let act = [Activation::LeakyRelu, Activation::Relu, Activation::Tanh][i % 3];
            let mut c = case_at_step();
            let x = c.input("x", uniform(3 + (m * k) as usize, m, -1.0, 1.0));
            let w = c.input("w", uniform(5 + (n * k + n) as usize, n, -1.0, 1.0));
            let y = c.output("y", 2 + (m * n) as usize);
            let p = MatmulParams {
                m,
                n,
                k,
                act: act.code(),
                slope: act.slope(),
                a_off: 3,
                c_off: 5,
                bias_off: 5 + n * k,
                out_off: 2,
                ..Default::default()
            };
            let what = format!("{m}x{n}x{k} {act:?} groups {groups}");
            let plain = MatmulForward { p, a: x, c: w, out: y };
            let mut seq: Vec<Op> = vec![plain.clone().into()];
            seq.extend(dropout_calls(&mask, groups, n, 2, y));
            let fused = MatmulForward { p: MatmulParams { drop: mask, ..p }, ..plain };
            assert_eq!(shadergan::ir::Kernel::entry(&fused), "matmul_forward_dropout");
            check(&c, fused.clone().into(), seq.clone(), y, 2..2 + (m * n) as usize, &what);
            for wg in [16u32, 8, 4] {
                let tiled = MatmulForwardTiled { p: fused.p, a: x, c: w, out: y, wg };
                let what = format!("{what} tile {}", 4 * wg);
                check(&c, tiled.into(), seq.clone(), y, 2..2 + (m * n) as usize, &what);
            }
        }
    }
}

#[test]
fn matmul_backward_dropout_masks_dx_as_dropout_would() {
    for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
        for (mask, groups) in masks(m) {
            let act = [Activation::LeakyRelu, Activation::Identity, Activation::Sigmoid][i % 3];
            let mut c = case_at_step();
            let dy = c.input("dy", uniform(1 + (m * n) as usize, m + 11, -1.0, 1.0));
            let z = uniform(4 + (m * n) as usize, n + 12, -2.0, 2.0);
            let y = c.input("y", z.iter().map(|&v| activate(v, act.code(), act.slope())).collect());
            let w = c.input("w", uniform(6 + (n * k) as usize, k + 13, -1.0, 1.0));
            let x = c.input("x", uniform(5 + (m * k) as usize, m + k, -1.0, 1.0));
            let grads = c.output("grads", 3 + (n * k + n) as usize);
            let dx = c.output("dx", 2 + (m * k) as usize);
            let p = MatmulParams {
                m,
                n,
                k,
                act: act.code(),
                slope: act.slope(),
                a_off: 1,
                y_off: 4,
                c_off: 6,
                x_off: 5,
                out_off: 3,
                bias_off: 3 + n * k,
                dx_off: 2,
                groups,
                ..Default::default()
            };
            let what = format!("{m}x{n}x{k} {act:?} groups {groups}");
            let plain = MatmulBackward { p, dy, y, w, x, grads: Some(grads), dx: Some(dx) };
            let mut seq: Vec<Op> = vec![plain.clone().into()];
            seq.extend(dropout_calls(&mask, groups, k, 2, dx));
            let fused = MatmulBackward { p: MatmulParams { drop: mask, ..p }, ..plain };
            assert_eq!(shadergan::ir::Kernel::entry(&fused), "matmul_backward_dropout");
            check(&c, fused.clone().into(), seq.clone(), dx, 2..2 + (m * k) as usize, &what);
            // dw and db are the unmasked call's.
            check(&c, fused.into(), seq, grads, 3..3 + (n * k + n) as usize, &format!("{what} grads"));
        }
    }
}

#[test]
fn logit_head_dropout_masks_dx_as_dropout_would() {
    for &(m, k) in &[(1usize, 1usize), (1, 65), (63, 64), (64, 63), (65, 65), (128, 33), (7 * 33, 65)] {
        for (mask, groups) in masks(m as u32) {
            let mut c = case_at_step();
            let x = c.input("x", uniform(3 + m * k, (m + 7 * k) as u32, -1.0, 1.0));
            let w = c.input("w", uniform(5 + k + 1, k as u32 + 3, -1.0, 1.0));
            let grads = c.output("grads", 2 + k + 1);
            let logits = c.output("logits", 3 + 2 * m);
            let dx = c.output("dx", 4 + m * k);
            let stats = c.output("stats", 4);
            let lp = LossParams {
                rows: m as u32,
                n_first: (m / 2) as u32,
                label_first: 1.0,
                scale_first: 1.0 / (m / 2).max(1) as f32,
                scale_second: 1.0 / (m / 2).max(1) as f32,
                slot_loss: 0,
                slot_prob_first: 2,
                slot_prob_second: NO_SLOT,
                ..Default::default()
            };
            let p = HeadParams {
                m: m as u32,
                k: k as u32,
                x_off: 3,
                w_off: 5,
                b_off: 5 + k as u32,
                z_off: 1,
                dz_off: 2 + m as u32,
                dw_off: 2,
                db_off: 2 + k as u32,
                dx_off: 4,
                groups,
                ..Default::default()
            };
            let loss = HeadLoss { p: lp, hinge: false, stats };
            let p = LogitHead::with_loss(p, loss);
            let plain = LogitHead { p, x, w, grads: Some(grads), logits, dx: Some(dx), stats, twin: None };
            let mut seq: Vec<Op> = vec![plain.clone().into()];
            seq.extend(dropout_calls(&mask, groups, k as u32, 4, dx));
            let fused = LogitHead { p: HeadParams { drop: mask, ..p }, ..plain };
            assert_eq!(shadergan::ir::Kernel::entry(&fused), "logit_head_dropout");
            let what = format!("{m}x{k} groups {groups}");
            check(&c, fused.into(), seq, dx, 4..4 + m * k, &what);
        }
    }
}
