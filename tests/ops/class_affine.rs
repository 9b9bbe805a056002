//! class_affine.wgsl (conditional batch norm's per-class scale and shift) against its CPU twins at
//! awkward shapes (n 1, 63, 64, 65; c 1, 7, 33, 65; s 1, 7, 16; C 1, 2, 10, 1000), labels spread,
//! of one class, with a class absent and out of range, extreme values, outputs NaN before the
//! call; its gradients against f64 finite differences, alone and composed with batch norm (gamma
//! 1, beta 0) into conditional batch norm.

use super::embedding::{check_output, classes_of, labels_at_1, AbsentRows};
use crate::common::harness::{ew_inputs, label_sets, Case, BATCHES, CLASSES, WIDTHS};
use crate::common::uniform;
use shadergan::ir::Op;
use shadergan::kernels::activation::Activation;
use shadergan::kernels::class_affine::*;
use shadergan::kernels::norm::{batch_norm_backward_input, batch_norm_forward, NormParams};

const SPATIAL: &[usize] = &[1, 7, 16];

/// The activations the affine may end in, cycled over the shapes.
const ACTS: &[Activation] =
    &[Activation::Identity, Activation::Relu, Activation::LeakyRelu, Activation::Sigmoid, Activation::Tanh];

/// [`params`] ending in activation `act`.
fn with_act(p: ClassAffineParams, act: Activation) -> ClassAffineParams {
    ClassAffineParams { act: act.code(), slope: act.slope(), ..p }
}

/// Every (n, c) pair; s and C cycling so that each meets each n and each c.
fn shapes() -> impl Iterator<Item = (usize, usize, usize, u32)> {
    BATCHES.iter().enumerate().flat_map(|(i, &n)| {
        WIDTHS
            .iter()
            .enumerate()
            .map(move |(j, &c)| (n, c, SPATIAL[(i + 2 * j) % SPATIAL.len()], CLASSES[(i + j) % CLASSES.len()]))
    })
}

/// A NaN, then `values`: the kernels' offset-1 layout.
fn at_1(values: Vec<f32>) -> Vec<f32> {
    let mut v = vec![f32::NAN];
    v.extend(values);
    v
}

/// The params of an (n, c, s) call over `classes` classes, every tensor at offset 1, beta after
/// gamma.
fn params(n: usize, c: usize, s: usize, classes: u32) -> ClassAffineParams {
    ClassAffineParams {
        n: n as u32,
        c: c as u32,
        s: s as u32,
        classes,
        labels_off: 1,
        x_off: 1,
        y_off: 1,
        dy_off: 1,
        dx_off: 1,
        gamma_off: 1,
        beta_off: 1 + classes * c as u32,
        ..Default::default()
    }
}

#[test]
fn class_affine_forward_matches_cpu() {
    for (j, (n, c, s, classes)) in shapes().enumerate() {
        let act = ACTS[j % ACTS.len()];
        let mut cs = Case::new();
        let (seed, len, table) = ((n * 5 + c + s) as u32, n * c * s, classes as usize * c);
        let x = cs.input("x_hat", at_1(ew_inputs(len, seed + 1)));
        let params_buf = cs.input("G.params", at_1(ew_inputs(2 * table, seed + 2)));
        let (mut ops, mut outs): (Vec<Op>, _) = (vec![], vec![]);
        for (_, labels) in label_sets(n, classes, seed) {
            let labels = labels_at_1(&mut cs, &labels);
            let out = cs.output("y", 1 + len);
            let p = with_act(params(n, c, s, classes), act);
            ops.push(ClassAffineForward { p, labels, x, params: params_buf, out }.into());
            outs.push(out);
        }
        let Some(r) = cs.run_ops(ops, &outs) else { return };
        for (k, (g, cpu)) in r.gpu.iter().zip(&r.cpu).enumerate() {
            let what = format!("n {n} c {c} s {s} C {classes} {act:?}, labels {k}");
            check_output("class_affine_forward", g, cpu, |i| i >= 1, &what);
        }
    }
}

/// (dgamma and dbeta, dx, accumulate): both parts, as G's step; both, the parameters' gradients
/// added to an earlier pass's; the parameters' alone; dx alone.
const VARIANTS: [(bool, bool, bool); 4] =
    [(true, true, false), (true, true, true), (true, false, false), (false, true, false)];

#[test]
fn class_affine_backward_matches_cpu_and_absent_classes_get_zero() {
    for (j, (n, c, s, classes)) in shapes().enumerate() {
        for (v, &(params_part, input, accumulate)) in VARIANTS.iter().enumerate() {
            let act = ACTS[(j + v) % ACTS.len()];
            // Sigmoid and tanh: each side recomputes y with its own exp/tanh, and where they
            // saturate (gamma and dy in the hundreds) act'(y) is 0 on one side and an ulp's worth
            // on the other, times dy gamma: moderate values for them (the f64 finite
            // differences above check their formulas), the extremes for the rest.
            let smooth = matches!(act, Activation::Sigmoid | Activation::Tanh);
            let values = |len, seed| if smooth { uniform(len, seed, -2.0, 2.0) } else { ew_inputs(len, seed) };
            let mut cs = Case::new();
            let (seed, len, table) = ((n * 3 + c + s + v) as u32, n * c * s, classes as usize * c);
            let x = cs.input("x_hat", at_1(uniform(len, seed + 1, -3.0, 3.0)));
            let params_buf = cs.input("G.params", at_1(values(2 * table, seed + 2)));
            let dy = cs.input("dy", at_1(values(len, seed + 3)));
            let before = at_1(if accumulate { ew_inputs(2 * table, seed + 4) } else { vec![f32::NAN; 2 * table] });
            let (mut ops, mut outs, mut sets): (Vec<Op>, _, _) = (vec![], vec![], vec![]);
            for (name, labels) in label_sets(n, classes, seed) {
                let lb = labels_at_1(&mut cs, &labels);
                let grads = params_part.then(|| cs.input("G.params.grad", before.clone()));
                let dx = input.then(|| cs.output("dx", 1 + len));
                let p = with_act(ClassAffineParams { accumulate: accumulate as u32, ..params(n, c, s, classes) }, act);
                ops.push(ClassAffineBackward { p, labels: lb, x, params: params_buf, dy, grads, dx }.into());
                outs.extend(grads.into_iter().chain(dx));
                sets.push((name, labels));
            }
            let Some(r) = cs.run_ops(ops, &outs) else { return };
            let per_set = params_part as usize + input as usize;
            for (k, (name, labels)) in sets.iter().enumerate() {
                let what = format!("n {n} c {c} s {s} C {classes} variant {v} {act:?}, {name}");
                for o in k * per_set..(k + 1) * per_set {
                    check_output("class_affine_backward", &r.gpu[o], &r.cpu[o], |i| i >= 1, &what);
                }
                if params_part {
                    let o = k * per_set;
                    // gamma's rows, then beta's: C rows of c each, 2C in all.
                    for off in [1, 1 + table] {
                        let absent = AbsentRows { off, width: c, classes, accumulate };
                        absent.check(labels, &before, [&r.gpu[o], &r.cpu[o]], &what);
                    }
                }
            }
        }
    }
}

/// Gradients of L = sum w y by central differences in f64, against the twins'.
fn assert_close(what: &str, analytic: &[f32], numeric: impl Fn(usize) -> f64) {
    for (i, &a) in analytic.iter().enumerate() {
        let n = numeric(i);
        assert!((a as f64 - n).abs() <= 1e-4 + 1e-3 * n.abs(), "{what}[{i}]: analytic {a} vs {n}");
    }
}

fn central(f: impl Fn(&[f64]) -> f64, at: &[f64], i: usize) -> f64 {
    let h = 1e-6;
    let (mut hi, mut lo) = (at.to_vec(), at.to_vec());
    hi[i] += h;
    lo[i] -= h;
    (f(&hi) - f(&lo)) / (2.0 * h)
}

/// An activation in f64, for the smooth ones and the identity (the FD checks avoid ReLU's kink).
fn act64(z: f64, act: Activation) -> f64 {
    match act {
        Activation::Identity => z,
        Activation::Tanh => z.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        Activation::LeakyRelu if z > 0.0 => z,
        Activation::LeakyRelu => act.slope() as f64 * z,
        Activation::Relu => z.max(0.0),
    }
}

/// Conditional batch norm in f64: batch norm (biased variance, eps 1e-5, no affine) then the
/// class's gamma and beta and `act`, weighted by w and summed. theta = gamma (C c), then beta
/// (C c).
fn cond_bn_loss(
    x: &[f64],
    theta: &[f64],
    ys: &[usize],
    w: &[f32],
    (n, c, s): (usize, usize, usize),
    act: Activation,
) -> f64 {
    let table = theta.len() / 2;
    let mut loss = 0.0;
    for ch in 0..c {
        let at = |b: usize, sp: usize| (b * c + ch) * s + sp;
        let m = (n * s) as f64;
        let all = || (0..n).flat_map(|b| (0..s).map(move |sp| (b, sp)));
        let mean = all().map(|(b, sp)| x[at(b, sp)]).sum::<f64>() / m;
        let var = all().map(|(b, sp)| (x[at(b, sp)] - mean).powi(2)).sum::<f64>() / m;
        for (b, sp) in all() {
            let x_hat = (x[at(b, sp)] - mean) / (var + 1e-5).sqrt();
            let t = ys[b] * c + ch;
            loss += w[at(b, sp)] as f64 * act64(x_hat * theta[t] + theta[table + t], act);
        }
    }
    loss
}

/// The twins' gradients of conditional batch norm composed as `nn::ConditionalBatchNorm` runs
/// it: batch norm's forward without an affine (`no_affine`: x_hat), class_affine_forward with
/// the activation; then class_affine_backward (act' at the recomputed y applied to dy; dgamma, dbeta,
/// dx_hat) and batch norm's input gradient from dx_hat (its saved gamma is 1) — against f64
/// finite differences of the whole, with a class absent and a clamped label, without an
/// activation, with tanh and with leaky ReLU. Also the affine alone: dx_hat against differences
/// in x_hat.
#[test]
fn conditional_batch_norm_gradients_match_f64_finite_differences() {
    for act in [Activation::Identity, Activation::Tanh, Activation::LeakyRelu] {
        conditional_batch_norm_matches(act);
    }
}

fn conditional_batch_norm_matches(act: Activation) {
    let (n, c, s, classes) = (5usize, 3usize, 4usize, 4u32);
    let labels = [0.0, 3.0, 3.0, 7.0, 0.0];
    let ys = classes_of(&labels, classes);
    let len = n * c * s;
    let x = uniform(len, 1, -2.0, 2.0);
    let w = uniform(len, 2, -1.0, 1.0);
    let mut theta = uniform(2 * classes as usize * c, 3, -1.0, 1.0);
    theta[..classes as usize * c].iter_mut().for_each(|g| *g += 1.0);
    let table = classes as usize * c;
    let ca = ClassAffineParams {
        n: n as u32,
        c: c as u32,
        s: s as u32,
        classes,
        beta_off: table as u32,
        act: act.code(),
        slope: act.slope(),
        ..Default::default()
    };

    // Forward: batch norm without an affine (its parameters never read: an empty buffer), then
    // the class affine and the activation.
    let bn = NormParams { no_affine: 1, ..NormParams::new(n as u32, c as u32, s as u32) };
    let (mut x_hat, mut state, mut saved) =
        (vec![f32::NAN; len], vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0], vec![0f32; 3 * c]);
    batch_norm_forward(&bn, &x, &[], &mut x_hat, &mut state, &mut saved);
    let mut y = vec![f32::NAN; len];
    class_affine_forward(&ca, &labels, &x_hat, &theta, &mut y);

    // Backward, dL/dy = w.
    let mut grads = vec![f32::NAN; 2 * table];
    class_affine_backward_params(&ca, &labels, &x_hat, &theta, &w, &mut grads);
    let mut dx_hat = vec![f32::NAN; len];
    class_affine_backward_input(&ca, &labels, &x_hat, &theta, &w, &mut dx_hat);
    let mut dx = vec![f32::NAN; len];
    batch_norm_backward_input(&bn, &x, &dx_hat, &mut dx, &saved);

    let to64 = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let (x64, theta64, x_hat64) = (to64(&x), to64(&theta), to64(&x_hat));
    let shape = (n, c, s);
    let what = |name: &str| format!("{act:?} {name}");
    assert_close(&what("dx"), &dx, |i| central(|xv| cond_bn_loss(xv, &theta64, &ys, &w, shape, act), &x64, i));
    assert_close(&what("dgamma, dbeta"), &grads, |i| {
        central(|t| cond_bn_loss(&x64, t, &ys, &w, shape, act), &theta64, i)
    });
    // Classes 1 and 2 are named by no label: exactly 0, in gamma's and beta's gradients.
    for off in [0, table] {
        assert!(grads[off + c..off + 3 * c].iter().all(|&g| g == 0.0), "{grads:?}");
    }
    // The affine alone: y = act(x_hat gamma + beta).
    let affine = |xh: &[f64]| -> f64 {
        (0..len)
            .map(|i| {
                let t = ys[i / (c * s)] * c + (i / s) % c;
                w[i] as f64 * act64(xh[i] * theta64[t] + theta64[table + t], act)
            })
            .sum()
    };
    assert_close(&what("dx_hat"), &dx_hat, |i| central(affine, &x_hat64, i));
    // And the forward the losses differentiate is the twins'.
    for (i, &yi) in y.iter().enumerate() {
        let t = ys[i / (c * s)] * c + (i / s) % c;
        let want = act64(x_hat64[i] * theta64[t] + theta64[table + t], act);
        assert!((yi as f64 - want).abs() < 1e-5, "{act:?} y[{i}]: {yi} vs {want}");
    }
}
