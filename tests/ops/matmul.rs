//! matmul.wgsl and matmul_f16.wgsl against their CPU twins: every (m, n, k) of SHAPES, every
//! activation, offsets inside the buffers as in the flat parameter layout, accumulation.

use crate::common::harness::{Both, Case, SHAPES};
use crate::common::uniform;
use shadergan::ir::DType::{F16, F32};
use shadergan::kernels::activation::Activation;
use shadergan::kernels::matmul::*;
use shadergan::kernels::tolerance::{compare, tolerance};

const ACTS: &[Activation] =
    &[Activation::Identity, Activation::Relu, Activation::LeakyRelu, Activation::Sigmoid, Activation::Tanh];

#[test]
fn matmul_forward_matches_cpu() {
    for &(m, n, k) in SHAPES {
        for &act in ACTS {
            let mut c = Case::new();
            // Offsets inside the buffers, as in the flat parameter layout.
            let x = c.input("x", uniform(3 + (m * k) as usize, m, -1.0, 1.0));
            let w = c.input("w", uniform(5 + (n * k + n) as usize, n, -1.0, 1.0));
            let y = c.output("y", 2 + (m * n) as usize);
            let p = MatmulParams {
                m,
                n,
                k,
                act: act.code(),
                a_off: 3,
                c_off: 5,
                bias_off: 5 + n * k,
                out_off: 2,
                slope: act.slope(),
                ..Default::default()
            };
            // Only the written span is compared: the two leading values stay NaN on both.
            let op = MatmulForward { p, a: x, c: w, out: y };
            let Some(Both { gpu: g, cpu, .. }) = c.run(op, &[y]) else { return };
            let t = shadergan::kernels::tolerance::tolerance("matmul_forward");
            compare("matmul_forward", &g[0][2..], &cpu[0][2..], t)
                .unwrap_or_else(|e| panic!("{m}x{n}x{k} {act:?}: {e}"));
            assert!(cpu[0][2..].iter().all(|v| !v.is_nan()));
        }
    }
}

#[test]
fn matmul_backward_input_matches_cpu() {
    for &(m, n, k) in SHAPES {
        let mut c = Case::new();
        let dz = c.input("dz", uniform((m * n) as usize, m + 1, -1.0, 1.0));
        let w = c.input("w", uniform(4 + (n * k) as usize, n + 2, -1.0, 1.0));
        let dx = c.output("dx", (m * k) as usize);
        let p = MatmulParams { m, n, k, c_off: 4, ..Default::default() };
        c.check(MatmulBackwardInput { p, a: dz, c: w, out: dx }, &[dx], &format!("{m}x{n}x{k}"));
    }
}

#[test]
fn matmul_backward_weight_matches_cpu() {
    for &(m, n, k) in SHAPES {
        for accumulate in [0, 1] {
            let mut c = Case::new();
            let dz = c.input("dz", uniform((m * n) as usize, m + 3, -1.0, 1.0));
            let x = c.input("x", uniform(1 + (m * k) as usize, k, -1.0, 1.0));
            let len = 8 + (n * k) as usize;
            let grads =
                if accumulate == 1 { c.input("grads", uniform(len, 9, -1.0, 1.0)) } else { c.output("grads", len) };
            let p = MatmulParams { m, n, k, c_off: 1, out_off: 8, accumulate, ..Default::default() };
            let op = MatmulBackwardWeight { p, a: dz, c: x, out: grads };
            let Some(Both { gpu: g, cpu, .. }) = c.run(op, &[grads]) else { return };
            let t = tolerance("matmul_backward_weight");
            compare("matmul_backward_weight", &g[0][8..], &cpu[0][8..], t)
                .unwrap_or_else(|e| panic!("{m}x{n}x{k} accumulate={accumulate}: {e}"));
            assert!(cpu[0][8..].iter().all(|v| !v.is_nan()));
        }
    }
}

#[test]
fn bias_backward_matches_cpu() {
    for &(m, n, _) in SHAPES {
        for accumulate in [0, 1] {
            let mut c = Case::new();
            let dz = c.input("dz", uniform((m * n) as usize, n, -1.0, 1.0));
            let grads = if accumulate == 1 {
                c.input("grads", uniform(n as usize, 4, -1.0, 1.0))
            } else {
                c.output("grads", n as usize)
            };
            let p = MatmulParams { m, n, accumulate, ..Default::default() };
            c.check(BiasBackward { p, a: dz, out: grads }, &[grads], &format!("{m}x{n}"));
        }
    }
}

#[test]
fn matmul_forward_f16_matches_cpu() {
    for &(m, n, k) in SHAPES {
        for &act in ACTS {
            let mut c = Case::new();
            let x = c.input_as("x", F16, uniform(3 + (m * k) as usize, m, -1.0, 1.0));
            let w = c.input_as("w.f16", F16, uniform(5 + (n * k + n) as usize, n, -1.0, 1.0));
            let y = c.output_as("y", F16, 2 + (m * n) as usize);
            let p = MatmulParams {
                m,
                n,
                k,
                act: act.code(),
                a_off: 3,
                c_off: 5,
                bias_off: 5 + n * k,
                out_off: 2,
                slope: act.slope(),
                ..Default::default()
            };
            c.check_from(MatmulForward { p, a: x, c: w, out: y }, &[y], 2, &format!("{m}x{n}x{k} {act:?}"));
        }
    }
}

#[test]
fn matmul_forward_f16_saturates_past_the_f16_range() {
    // Sums near +-1e5 are stored as +-65504 (the largest f16), never as an undefined conversion.
    let (m, n, k) = (5u32, 6u32, 7u32);
    let mut c = Case::new();
    // Rows of x alternate in sign, so rows of y sit near +1.5e5 and -1.5e5.
    let x = c.input_as("x", F16, (0..m * k).map(|i| if (i / k) % 2 == 0 { 200.0 } else { -200.0 }).collect());
    let w = c.input_as("w.f16", F16, (0..n * k + n).map(|i| 100.0 + i as f32).collect());
    let y = c.output_as("y", F16, (m * n) as usize);
    let p = MatmulParams { m, n, k, bias_off: n * k, ..Default::default() };
    let op = MatmulForward { p, a: x, c: w, out: y };
    let Some(Both { gpu: g, cpu, .. }) = c.run(op, &[y]) else { return };
    assert!(cpu[0].iter().all(|v| v.abs() == 65504.0), "the case must saturate: {:?}", cpu[0]);
    assert!(cpu[0].contains(&-65504.0));
    compare("matmul_forward_f16", &g[0], &cpu[0], tolerance("matmul_forward_f16")).unwrap();
}

#[test]
fn matmul_backward_input_f16_matches_cpu() {
    for &(m, n, k) in SHAPES {
        let mut c = Case::new();
        let dz = c.input_as("dz", F32, uniform((m * n) as usize, m + 1, -1.0, 1.0));
        let w = c.input_as("w.f16", F16, uniform(4 + (n * k) as usize, n + 2, -1.0, 1.0));
        let dx = c.output_as("dx", F32, 1 + (m * k) as usize);
        let p = MatmulParams { m, n, k, c_off: 4, out_off: 1, ..Default::default() };
        c.check_from(MatmulBackwardInput { p, a: dz, c: w, out: dx }, &[dx], 1, &format!("{m}x{n}x{k}"));
    }
}

#[test]
fn matmul_backward_weight_f16_matches_cpu() {
    for &(m, n, k) in SHAPES {
        for accumulate in [0, 1] {
            let mut c = Case::new();
            let dz = c.input_as("dz", F32, uniform((m * n) as usize, m + 3, -1e-3, 1e-3));
            let x = c.input_as("x", F16, uniform(1 + (m * k) as usize, k, -1.0, 1.0));
            let len = 8 + (n * k) as usize;
            let grads = if accumulate == 1 {
                c.input_as("grads", F32, uniform(len, 9, -1.0, 1.0))
            } else {
                c.output_as("grads", F32, len)
            };
            let p = MatmulParams { m, n, k, c_off: 1, out_off: 8, accumulate, ..Default::default() };
            let op = MatmulBackwardWeight { p, a: dz, c: x, out: grads };
            c.check_from(op, &[grads], 8, &format!("{m}x{n}x{k} accumulate={accumulate}"));
        }
    }
}

#[test]
fn matmul_forward_without_bias_reads_none() {
    for &(m, n, k) in SHAPES {
        let mut c = Case::new();
        let x = c.input("x", uniform((m * k) as usize, m, -1.0, 1.0));
        // The weights, then NaN where a bias would be: read, it would poison every output.
        let mut w = uniform((n * k) as usize, n, -1.0, 1.0);
        w.extend(vec![f32::NAN; n as usize]);
        let w = c.input("w", w);
        let y = c.output("y", (m * n) as usize);
        let p =
            MatmulParams { m, n, k, act: Activation::Tanh.code(), bias_off: n * k, no_bias: 1, ..Default::default() };
        c.check(MatmulForward { p, a: x, c: w, out: y }, &[y], &format!("{m}x{n}x{k} no bias"));
    }
}

/// matmul_backward (a linear layer's backward pass in one dispatch) against its twin: every
/// shape and activation, each of dw + db + dx, dw + db only and dx only, with and without a
/// bias, writing and accumulating, with and without the layer before's activation applied to
/// dx, every tensor at an offset inside its buffer. y and x are real outputs of their
/// activations (ReLU's zeros included), so act'(y) and act_in'(x) are what training sees.
#[test]
fn matmul_backward_matches_cpu() {
    use shadergan::kernels::activation::activate;
    for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
        for (j, &act) in ACTS.iter().enumerate() {
            let (weights, input) = [(true, true), (true, false), (false, true)][(i + j) % 3];
            let (bias, accumulate) = ((i + j) % 2 == 0, (i + 2 * j) % 2 == 1 && weights);
            let mut c = Case::new();
            let dy = c.input("dy", uniform(1 + (m * n) as usize, m + 11, -1.0, 1.0));
            let z = uniform(4 + (m * n) as usize, n + 12, -2.0, 2.0);
            let y = c.input("y", z.iter().map(|&v| activate(v, act.code(), act.slope())).collect());
            let w = c.input("w", uniform(6 + (n * k) as usize, k + 13, -1.0, 1.0));
            let act_in = ACTS[(i + 2 * j + 1) % ACTS.len()];
            let zx = uniform(5 + (m * k) as usize, m + k, -2.0, 2.0);
            let x = c.input("x", zx.iter().map(|&v| activate(v, act_in.code(), act_in.slope())).collect());
            let glen = 3 + (n * k + n) as usize;
            let grads =
                if accumulate { c.input("grads", uniform(glen, 14, -1.0, 1.0)) } else { c.output("grads", glen) };
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
                no_bias: !bias as u32,
                accumulate: accumulate as u32,
                dx_off: 2,
                act_in: act_in.code(),
                slope_in: act_in.slope(),
                ..Default::default()
            };
            let op = MatmulBackward { p, dy, y, w, x, grads: weights.then_some(grads), dx: input.then_some(dx) };
            let what = format!(
                "{m}x{n}x{k} {act:?} in {act_in:?} weights {weights} input {input} bias {bias} acc {accumulate}"
            );
            let Some(Both { gpu: g, cpu, .. }) = c.run(op, &[grads, dx]) else { return };
            let t = tolerance("matmul_backward");
            // Compared: what the call writes; the rest stays NaN (or as given) on both sides.
            let glen_written = if bias { glen } else { glen - n as usize };
            if weights {
                assert!(cpu[0][3..glen_written].iter().all(|v| !v.is_nan()), "{what}: twin left NaN");
                compare("matmul_backward", &g[0][3..glen_written], &cpu[0][3..glen_written], t)
                    .unwrap_or_else(|e| panic!("{what}, grads: {e}"));
            }
            if !bias || !weights {
                // Nothing written past dw (no bias), or nothing at all (no weights).
                let from = if weights { glen_written } else { 0 };
                assert!(g[0][from..].iter().zip(&cpu[0][from..]).all(|(a, b)| a.to_bits() == b.to_bits()), "{what}");
            }
            if input {
                assert!(cpu[1][2..].iter().all(|v| !v.is_nan()), "{what}: twin left NaN in dx");
                compare("matmul_backward", &g[1][2..], &cpu[1][2..], t).unwrap_or_else(|e| panic!("{what}, dx: {e}"));
            } else {
                assert!(g[1].iter().all(|v| v.is_nan()), "{what}: dx written");
            }
        }
    }
}

/// matmul_forward_tiled (workgroup-memory tiles for real GPUs) at every tile size against the
/// twin: every shape, activations in turn, with and without a bias, offsets inside the buffers.
/// (Run the whole suite with SHADERGAN_KERNELS=tiled16|tiled32|tiled64 to put every matmul of
/// the training tests on it as well.)
#[test]
fn matmul_forward_tiled_matches_cpu() {
    for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
        for wg in [16u32, 8, 4] {
            let act = ACTS[(i + wg as usize) % ACTS.len()];
            let no_bias = (i % 2) as u32;
            let mut c = Case::new();
            let x = c.input("x", uniform(3 + (m * k) as usize, m, -1.0, 1.0));
            let w = c.input("w", uniform(5 + (n * k + n) as usize, n, -1.0, 1.0));
            let y = c.output("y", 2 + (m * n) as usize);
            let p = MatmulParams {
                m,
                n,
                k,
                act: act.code(),
                a_off: 3,
                c_off: 5,
                bias_off: 5 + n * k,
                out_off: 2,
                slope: act.slope(),
                no_bias,
                ..Default::default()
            };
            let what = format!("{m}x{n}x{k} {act:?} tile {} no_bias {no_bias}", 4 * wg);
            c.check_from(MatmulForwardTiled { p, a: x, c: w, out: y, wg }, &[y], 2, &what);
        }
    }
}
