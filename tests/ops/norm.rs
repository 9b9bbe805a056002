//! norm.wgsl's kernels against their CPU twins through the harness (the twins themselves are
//! checked against f64 references in conv.rs): training forward, eval and the one-dispatch
//! backward, each with and without its fused activation, over one group and two (D's reals and
//! fakes in one call, each with its own statistics), at awkward shapes, every tensor at an
//! offset, outputs NaN before the call; accumulating parameter gradients.

use crate::common::harness::{Both, Case};
use crate::common::uniform;
use shadergan::kernels::activation::{activate, Activation};
use shadergan::kernels::norm::*;
use shadergan::kernels::tolerance::{compare, tolerance};

const ACTS: &[Activation] =
    &[Activation::Identity, Activation::Relu, Activation::LeakyRelu, Activation::Sigmoid, Activation::Tanh];

/// (n, c, s) per group: a linear layer's features (s = 1), one value, 65 channels, s past 256
/// lanes, a strided m past 256.
const CASES: &[[u32; 3]] = &[[4, 3, 1], [1, 1, 1], [2, 65, 3], [2, 3, 300], [3, 1, 700], [64, 2, 1], [7, 33, 5]];

fn compare_from(what: &str, name: &str, gpu: &[f32], cpu: &[f32], from: usize) {
    assert!(cpu[from..].iter().all(|v| !v.is_nan()), "{what}: twin left NaN in {name}");
    compare("batch_norm", &gpu[from..], &cpu[from..], tolerance("batch_norm"))
        .unwrap_or_else(|e| panic!("{what}, {name}: {e}"));
}

#[test]
fn batch_norm_forward_and_eval_match_cpu() {
    for (i, &[n, c, s]) in CASES.iter().enumerate() {
        for groups in [1u32, 2] {
            let act = ACTS[(i + groups as usize) % ACTS.len()];
            let what = format!("n {n} c {c} s {s} groups {groups} {act:?}");
            let len = (groups * n * c * s) as usize;
            let mut case = Case::new();
            let x = case.input("x", uniform(2 + len, n + c + s, -3.0, 5.0));
            let params = case.input("params", uniform(1 + 2 * c as usize, c, 0.5, 1.5));
            let state = case.input("state", uniform(4 + 2 * c as usize, s, 0.1, 1.0));
            let saved = case.output("saved", 3 + 3 * (c * groups) as usize);
            let y = case.output("y", 1 + len);
            let p = NormParams {
                x_off: 2,
                y_off: 1,
                gamma_off: 1,
                beta_off: 1 + c,
                mean_off: 4,
                var_off: 4 + c,
                save_off: 3,
                act: act.code(),
                slope: act.slope(),
                groups,
                ..NormParams::new(n, c, s)
            };
            let op = BatchNormForward { p, a: x, c: params, out: y, state, saved };
            let Some(Both { gpu: g, cpu, .. }) = case.run(op, &[y, state, saved]) else { return };
            compare_from(&what, "y", &g[0], &cpu[0], 1);
            compare_from(&what, "running statistics", &g[1], &cpu[1], 4);
            compare_from(&what, "saved", &g[2], &cpu[2], 3);
            let y = case.output("y.eval", 1 + len);
            let op = BatchNormEval { p, a: x, c: params, out: y, state };
            let Some(Both { gpu: g, cpu, .. }) = case.run(op, &[y]) else { return };
            compare_from(&format!("eval {what}"), "y", &g[0], &cpu[0], 1);
        }
    }
}

#[test]
fn batch_norm_backward_matches_cpu() {
    for (i, &[n, c, s]) in CASES.iter().enumerate() {
        for groups in [1u32, 2] {
            for (j, (params_wanted, input_wanted)) in
                [(true, true), (true, false), (false, true)].into_iter().enumerate()
            {
                let act = ACTS[(i + j + groups as usize) % ACTS.len()];
                let accumulate = (i + j) % 2 == 1 && params_wanted;
                let what =
                    format!("n {n} c {c} s {s} groups {groups} {act:?} params {params_wanted} input {input_wanted} acc {accumulate}");
                let len = (groups * n * c * s) as usize;
                let mut case = Case::new();
                let x = case.input("x", uniform(2 + len, n + c + s, -3.0, 5.0));
                let dy = case.input("dy", uniform(3 + len, c + 7, -1.0, 1.0));
                let z = uniform(1 + len, s + 9, -2.0, 2.0);
                let y = case.input("y", z.iter().map(|&v| activate(v, act.code(), act.slope())).collect());
                // Saved statistics as a forward would leave them: means, 1/std, gamma.
                let mut st = uniform(3 * (c * groups) as usize, 5, -1.0, 1.0);
                for g in 0..groups as usize {
                    let base = 3 * c as usize * g;
                    st[base + c as usize..base + 2 * c as usize].iter_mut().for_each(|v| *v = 0.5 + v.abs());
                }
                let saved = case.input("saved", st);
                let glen = 2 + 2 * c as usize;
                let grads = if accumulate {
                    case.input("grads", uniform(glen, 3, -1.0, 1.0))
                } else {
                    case.output("grads", glen)
                };
                let dx = case.output("dx", 4 + len);
                let p = NormParams {
                    x_off: 2,
                    dy_off: 3,
                    y_off: 1,
                    dx_off: 4,
                    dgamma_off: 2,
                    dbeta_off: 2 + c,
                    accumulate: accumulate as u32,
                    act: act.code(),
                    slope: act.slope(),
                    groups,
                    ..NormParams::new(n, c, s)
                };
                let op = BatchNormBackward {
                    p,
                    a: x,
                    dy,
                    y,
                    saved,
                    grads: params_wanted.then_some(grads),
                    dx: input_wanted.then_some(dx),
                };
                let Some(Both { gpu: g, cpu, .. }) = case.run(op, &[grads, dx]) else { return };
                if params_wanted {
                    compare_from(&what, "dgamma, dbeta", &g[0], &cpu[0], 2);
                }
                if input_wanted {
                    compare_from(&what, "dx", &g[1], &cpu[1], 4);
                } else {
                    assert!(g[1].iter().all(|v| v.is_nan()), "{what}: dx written");
                }
            }
        }
    }
}

/// Without an affine (`no_affine`, conditional batch norm's first half): gamma 1 and beta 0,
/// the parameters never read (bound to a NaN buffer shorter than gamma_off + c, outside every
/// span), on both backends, training and eval; the twin's output is bit for bit the affine
/// twin's with gamma 1 and beta 0, so the f64 references in conv.rs cover it too.
#[test]
fn batch_norm_without_affine_reads_no_parameters() {
    use shadergan::kernels::activation::activate_in_place;
    for (i, &[n, c, s]) in CASES.iter().enumerate() {
        for groups in [1u32, 2] {
            let act = ACTS[(i + groups as usize) % ACTS.len()];
            let what = format!("no affine: n {n} c {c} s {s} groups {groups} {act:?}");
            let len = (groups * n * c * s) as usize;
            let mut case = Case::new();
            let x = case.input("x", uniform(2 + len, n + c + s, -3.0, 5.0));
            let params = case.input("params", vec![f32::NAN]);
            let state = case.input("state", uniform(4 + 2 * c as usize, s, 0.1, 1.0));
            let saved = case.output("saved", 3 + 3 * (c * groups) as usize);
            let y = case.output("y", 1 + len);
            let p = NormParams {
                x_off: 2,
                y_off: 1,
                gamma_off: 7,
                beta_off: 9 + c,
                mean_off: 4,
                var_off: 4 + c,
                save_off: 3,
                act: act.code(),
                slope: act.slope(),
                groups,
                no_affine: 1,
                ..NormParams::new(n, c, s)
            };
            let op = BatchNormForward { p, a: x, c: params, out: y, state, saved };
            let Some(Both { gpu: g, cpu, .. }) = case.run(op, &[y, state, saved]) else { return };
            compare_from(&what, "y", &g[0], &cpu[0], 1);
            compare_from(&what, "running statistics", &g[1], &cpu[1], 4);
            compare_from(&what, "saved", &g[2], &cpu[2], 3);
            let y_eval = case.output("y.eval", 1 + len);
            let op = BatchNormEval { p, a: x, c: params, out: y_eval, state };
            let Some(Both { gpu: ge, cpu: ce, .. }) = case.run(op, &[y_eval]) else { return };
            compare_from(&format!("eval {what}"), "y", &ge[0], &ce[0], 1);

            // The affine twin with gamma 1 and beta 0 at the same offsets: the same bits.
            let mut ones = vec![0f32; 9 + 2 * c as usize];
            ones[7..7 + c as usize].iter_mut().for_each(|v| *v = 1.0);
            let q = NormParams { no_affine: 0, ..p };
            let xs = &case.bufs[x].1;
            let mut st = case.bufs[state].1.clone();
            let (mut sv, mut ya) = (vec![0.0; 3 + 3 * (c * groups) as usize], vec![0.0; 1 + len]);
            for g in 0..groups as usize {
                batch_norm_forward(&q.group(g), xs, &ones, &mut ya, &mut st, &mut sv);
            }
            activate_in_place(act.code(), act.slope(), &mut ya[1..]);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&ya[1..]), bits(&cpu[0][1..]), "{what}: y");
            assert_eq!(bits(&sv[3..]), bits(&cpu[2][3..]), "{what}: saved");
        }
    }
}
