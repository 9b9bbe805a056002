//! projection.wgsl (the projection discriminator's class term) against its CPU twins at awkward
//! shapes (B 1, 63, 64, 65; K 1, 7, 33, 65; C 1, 2, 10, 1000), labels spread, of one class, with
//! a class absent and out of range, extreme values; what the kernels add to (the head's logits
//! and phi's gradient) given, everything else NaN. The gradients against f64 finite differences.

use super::embedding::{check_output, classes_of, labels_at_1, shapes, AbsentRows};
use crate::common::harness::{ew_inputs, label_sets, Case};
use crate::common::uniform;
use shadergan::ir::Op;
use shadergan::kernels::activation::{activate, Activation, LEAKY_SLOPE};
use shadergan::kernels::projection::*;

/// A NaN, then `values`: the kernels' offset-1 layout.
fn at_1(values: Vec<f32>) -> Vec<f32> {
    let mut v = vec![f32::NAN];
    v.extend(values);
    v
}

#[test]
fn projection_forward_matches_cpu() {
    for (rows, dim, classes) in shapes() {
        let mut c = Case::new();
        let (seed, nk) = ((rows * 5 + dim) as u32, rows * dim);
        let embed = c.input("E", at_1(ew_inputs(classes as usize * dim, seed + 1)));
        let phi = c.input("phi", at_1(ew_inputs(nk, seed + 2)));
        let (mut ops, mut outs): (Vec<Op>, _) = (vec![], vec![]);
        for (_, labels) in label_sets(rows, classes, seed) {
            let labels = labels_at_1(&mut c, &labels);
            // The head's logits, which the term is added to.
            let logits = c.input("D.out", at_1(uniform(rows, seed + 3, -5.0, 5.0)));
            let p = ProjectionParams {
                rows: rows as u32,
                dim: dim as u32,
                classes,
                labels_off: 1,
                embed_off: 1,
                phi_off: 1,
                logit_off: 1,
                ..Default::default()
            };
            ops.push(ProjectionForward { p, labels, embed, phi, logits }.into());
            outs.push(logits);
        }
        let Some(r) = c.run_ops(ops, &outs) else { return };
        for (k, (g, cpu)) in r.gpu.iter().zip(&r.cpu).enumerate() {
            let what = format!("B {rows} K {dim} C {classes}, labels {k}");
            check_output("projection_forward", g, cpu, |i| i >= 1, &what);
        }
    }
}

/// (parts, activation, accumulate): both parts, as the D step; both onto a folded leaky ReLU
/// with dE added to an earlier pass's; dE alone; dphi alone (the G step) after a ReLU.
const VARIANTS: [(bool, bool, Activation, bool); 4] = [
    (true, true, Activation::Identity, false),
    (true, true, Activation::LeakyRelu, true),
    (true, false, Activation::Identity, false),
    (false, true, Activation::Relu, false),
];

#[test]
fn projection_backward_matches_cpu_and_absent_classes_get_zero() {
    for (rows, dim, classes) in shapes() {
        for (v, &(params, input, act, accumulate)) in VARIANTS.iter().enumerate() {
            let mut c = Case::new();
            let (seed, nk, ck) = ((rows * 3 + dim + v) as u32, rows * dim, classes as usize * dim);
            let embed = c.input("E", at_1(ew_inputs(ck, seed + 1)));
            // phi as its activation leaves it (ReLU's: no negatives).
            let mut phi = ew_inputs(nk, seed + 2);
            phi.iter_mut().for_each(|x| *x = activate(*x, act.code(), act.slope()));
            let phi = c.input("phi", at_1(phi));
            let dlogits = c.input("dlogits", at_1(ew_inputs(rows, seed + 3)));
            let before = at_1(if accumulate { ew_inputs(ck, seed + 4) } else { vec![f32::NAN; ck] });
            let (mut ops, mut outs, mut sets): (Vec<Op>, _, _) = (vec![], vec![], vec![]);
            for (name, labels) in label_sets(rows, classes, seed) {
                let lb = labels_at_1(&mut c, &labels);
                let grads = params.then(|| c.input("D.params.grad", before.clone()));
                // The head's gradient of phi, which the term is added to.
                let dphi = input.then(|| c.input("phi.grad", at_1(uniform(nk, seed + 5, -1.0, 1.0))));
                let p = ProjectionParams {
                    rows: rows as u32,
                    dim: dim as u32,
                    classes,
                    labels_off: 1,
                    embed_off: 1,
                    phi_off: 1,
                    logit_off: 1,
                    dphi_off: 1,
                    accumulate: accumulate as u32,
                    act: act.code(),
                    slope: act.slope(),
                    ..Default::default()
                };
                ops.push(ProjectionBackward { p, labels: lb, embed, phi, dlogits, grads, dphi }.into());
                outs.extend(grads.into_iter().chain(dphi));
                sets.push((name, labels));
            }
            let Some(r) = c.run_ops(ops, &outs) else { return };
            let per_set = params as usize + input as usize;
            for (k, (name, labels)) in sets.iter().enumerate() {
                let what = format!("B {rows} K {dim} C {classes} variant {v}, {name}");
                for o in k * per_set..(k + 1) * per_set {
                    check_output("projection_backward", &r.gpu[o], &r.cpu[o], |i| i >= 1, &what);
                }
                if params {
                    let o = k * per_set;
                    let absent = AbsentRows { off: 1, width: dim, classes, accumulate };
                    absent.check(labels, &before, [&r.gpu[o], &r.cpu[o]], &what);
                }
            }
        }
    }
}

/// The twins' gradients against central differences in f64 of
/// L = sum_b w_b (head_b + <E[y_b], phi_b>), phi = act(h): dL/dE and dL/dh (the gradient of
/// phi scaled by act'(h), as the term adds it where the head's backward folded the activation),
/// with a class absent, a clamped label, and h away from the leaky ReLU's kink.
#[test]
fn projection_backward_matches_f64_finite_differences() {
    let (rows, dim, classes) = (6usize, 4usize, 4u32);
    let labels = [0.0, 3.0, 3.0, 9.0, 0.0, -2.0];
    let ys = classes_of(&labels, classes);
    let w = uniform(rows, 1, -2.0, 2.0);
    let e0 = uniform(classes as usize * dim, 2, -1.0, 1.0);
    let mut h0 = uniform(rows * dim, 3, -1.0, 1.0);
    h0.iter_mut().for_each(|x| *x += 0.1f32.copysign(*x));
    let act = Activation::LeakyRelu;
    let leaky = |x: f64| if x > 0.0 { x } else { LEAKY_SLOPE as f64 * x };
    let loss = |e: &[f64], h: &[f64]| -> f64 {
        (0..rows).map(|b| w[b] as f64 * (0..dim).map(|k| e[ys[b] * dim + k] * leaky(h[b * dim + k])).sum::<f64>()).sum()
    };
    let phi: Vec<f32> = h0.iter().map(|&x| activate(x, act.code(), act.slope())).collect();
    let p = ProjectionParams {
        rows: rows as u32,
        dim: dim as u32,
        classes,
        act: act.code(),
        slope: act.slope(),
        ..Default::default()
    };
    let mut de = vec![f32::NAN; e0.len()];
    projection_backward_params(&p, &labels, &phi, &w, &mut de);
    let mut dh = vec![0f32; h0.len()];
    projection_backward_input(&p, &labels, &e0, &phi, &w, &mut dh);
    let (e, h): (Vec<f64>, Vec<f64>) = (e0.iter().map(|&v| v as f64).collect(), h0.iter().map(|&v| v as f64).collect());
    let fd = |i: usize, of_e: bool| {
        let step = 1e-6;
        let (mut ep, mut hp) = (e.clone(), h.clone());
        let x = if of_e { &mut ep[i] } else { &mut hp[i] };
        *x += step;
        let hi = loss(&ep, &hp);
        let (mut em, mut hm) = (e.clone(), h.clone());
        let x = if of_e { &mut em[i] } else { &mut hm[i] };
        *x -= step;
        (hi - loss(&em, &hm)) / (2.0 * step)
    };
    for (i, &a) in de.iter().enumerate() {
        let n = fd(i, true);
        assert!((a as f64 - n).abs() <= 1e-5 + 1e-4 * n.abs(), "dE[{i}]: analytic {a} vs {n}");
    }
    for (i, &a) in dh.iter().enumerate() {
        let n = fd(i, false);
        assert!((a as f64 - n).abs() <= 1e-5 + 1e-4 * n.abs(), "dh[{i}]: analytic {a} vs {n}");
    }
    // Classes 1 and 2 are named by no label: exactly 0.
    assert!(de[dim..3 * dim].iter().all(|&v| v == 0.0), "{de:?}");
    // And the forward the loss differentiates is the twin's (head 0).
    let mut logits = vec![0f32; rows];
    projection_forward(&p, &labels, &e0, &phi, &mut logits);
    let e64: Vec<f64> = e0.iter().map(|&v| v as f64).collect();
    for b in 0..rows {
        let want: f64 = (0..dim).map(|k| e64[ys[b] * dim + k] * phi[b * dim + k] as f64).sum();
        assert!((logits[b] as f64 - want).abs() < 1e-5, "logit {b}: {} vs {want}", logits[b]);
    }
}
