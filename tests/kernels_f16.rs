//! The `_f16` kernels (`--precision f16`) against their CPU twins on f16 buffers: awkward shapes
//! (1, 63, 64, 65, 7x33x65), outputs pre-filled with NaN, values past f16's range and below its
//! normal range. The CPU twin computes in f32 and rounds every f16 store with `ops::round_f16`,
//! as the kernels do. Tolerances come from `shadergan::check::TOLERANCES`.

mod common;

use std::sync::Arc;

use common::{gpu, uniform};
use shadergan::check::{compare, tolerance};
use shadergan::cpu::ops::{activate, round_f16};
use shadergan::cpu::CpuProgram;
use shadergan::gpu::{GpuContext, GpuProgram};
use shadergan::model::{Activation, LEAKY_SLOPE};
use shadergan::params::*;
use shadergan::plan::{BufSpec, DType, Op};
use shadergan::trainer::Executor;

/// A GPU with shader-f16, or None (the test returns early, saying why).
fn gpu16() -> Option<Arc<GpuContext>> {
    let ctx = gpu()?;
    if !ctx.supports_f16() {
        // lavapipe (CI) has shader-f16, so these tests run there.
        assert!(!ctx.summary.name.contains("llvmpipe") || !ctx.summary.shader_f16, "llvmpipe offers f16");
        eprintln!("SKIPPED: {} has no shader-f16", ctx.summary.describe());
        return None;
    }
    Some(ctx)
}

/// (gpu, cpu) contents of the outputs of one kernel call.
type BothOutputs = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// Buffers for one kernel call; outputs start as NaN.
struct Case {
    bufs: Vec<(BufSpec, Vec<f32>)>,
    state: TrainState,
}

impl Case {
    fn new() -> Self {
        Case { bufs: vec![], state: TrainState::new() }
    }

    fn input(&mut self, label: &str, dtype: DType, values: Vec<f32>) -> usize {
        let spec = BufSpec { label: label.into(), len: values.len(), dtype };
        self.bufs.push((spec, values));
        self.bufs.len() - 1
    }

    fn output(&mut self, label: &str, dtype: DType, len: usize) -> usize {
        self.input(label, dtype, vec![f32::NAN; len])
    }

    /// Runs `op` on both backends; (gpu, cpu) contents of `outs`.
    fn run(&self, op: &Op, outs: &[usize]) -> Option<BothOutputs> {
        let ctx = gpu16()?;
        let specs: Vec<BufSpec> = self.bufs.iter().map(|(s, _)| s.clone()).collect();
        let mut cpu = CpuProgram::with_buffers(&specs, None);
        cpu.fast = false;
        let mut gpu = GpuProgram::with_buffers(ctx, &specs, None).expect("buffers");
        for (i, (_, v)) in self.bufs.iter().enumerate() {
            cpu.write(i, v).unwrap();
            gpu.write(i, v).unwrap();
        }
        cpu.write_state(&self.state).unwrap();
        gpu.write_state(&self.state).unwrap();
        cpu.run_ops(std::slice::from_ref(op));
        let section = gpu.add_section(std::slice::from_ref(op)).expect("compile");
        gpu.run(section, 1).expect("run");
        let g = outs.iter().map(|&o| gpu.read(o).unwrap()).collect();
        let c = outs.iter().map(|&o| cpu.read(o).unwrap()).collect();
        Some((g, c))
    }

    /// Runs and compares `outs[k][skip..]` with the entry's tolerance; the CPU side must have
    /// written every compared value.
    fn check(&self, op: Op, outs: &[usize], skip: usize, what: &str) {
        let specs: Vec<BufSpec> = self.bufs.iter().map(|(s, _)| s.clone()).collect();
        let entry = op.entry_for(true, &specs);
        assert!(entry.ends_with("_f16") || entry.starts_with("cast_"), "{entry} is not an f16 kernel");
        let Some((g, c)) = self.run(&op, outs) else { return };
        for (k, (gv, cv)) in g.iter().zip(&c).enumerate() {
            assert!(cv[skip..].iter().all(|v| !v.is_nan()), "{what}: CPU twin left NaN in output {k}");
            if let Err(e) = compare(&entry, &gv[skip..], &cv[skip..], tolerance(&entry)) {
                panic!("{entry} {what}, output {}: {e}", self.bufs[outs[k]].0.label);
            }
        }
    }
}

const SHAPES: &[(u32, u32, u32)] =
    &[(1, 1, 1), (1, 64, 63), (63, 64, 65), (64, 65, 63), (65, 63, 64), (7, 33, 65), (65, 7, 33), (33, 65, 7)];

const ACTS: &[Activation] =
    &[Activation::Identity, Activation::Relu, Activation::LeakyRelu, Activation::Sigmoid, Activation::Tanh];

const LENS: &[usize] = &[1, 63, 64, 65, 7 * 33 * 65];

fn slope(act: Activation) -> f32 {
    if act == Activation::LeakyRelu {
        LEAKY_SLOPE
    } else {
        0.0
    }
}

use DType::{F16, F32};

#[test]
fn matmul_forward_f16_matches_cpu() {
    for &(m, n, k) in SHAPES {
        for &act in ACTS {
            let mut c = Case::new();
            let x = c.input("x", F16, uniform(3 + (m * k) as usize, m, -1.0, 1.0));
            let w = c.input("w.f16", F16, uniform(5 + (n * k + n) as usize, n, -1.0, 1.0));
            let y = c.output("y", F16, 2 + (m * n) as usize);
            let p = MatmulParams {
                m,
                n,
                k,
                act: act.code(),
                a_off: 3,
                c_off: 5,
                bias_off: 5 + n * k,
                out_off: 2,
                slope: slope(act),
                ..Default::default()
            };
            c.check(Op::MatmulForward { p, a: x, c: w, out: y }, &[y], 2, &format!("{m}x{n}x{k} {act:?}"));
        }
    }
}

#[test]
fn matmul_forward_f16_saturates_past_the_f16_range() {
    // Sums near +-1e5 are stored as +-65504 (the largest f16), never as an undefined conversion.
    let (m, n, k) = (5u32, 6u32, 7u32);
    let mut c = Case::new();
    // Rows of x alternate in sign, so rows of y sit near +1.5e5 and -1.5e5.
    let x = c.input("x", F16, (0..m * k).map(|i| if (i / k) % 2 == 0 { 200.0 } else { -200.0 }).collect());
    let w = c.input("w.f16", F16, (0..n * k + n).map(|i| 100.0 + i as f32).collect());
    let y = c.output("y", F16, (m * n) as usize);
    let p = MatmulParams { m, n, k, bias_off: n * k, ..Default::default() };
    let op = Op::MatmulForward { p, a: x, c: w, out: y };
    let Some((g, cpu)) = c.run(&op, &[y]) else { return };
    assert!(cpu[0].iter().all(|v| v.abs() == 65504.0), "the case must saturate: {:?}", cpu[0]);
    assert!(cpu[0].contains(&-65504.0));
    compare("matmul_forward_f16", &g[0], &cpu[0], tolerance("matmul_forward_f16")).unwrap();
}

#[test]
fn matmul_backward_input_f16_matches_cpu() {
    for &(m, n, k) in SHAPES {
        let mut c = Case::new();
        let dz = c.input("dz", F32, uniform((m * n) as usize, m + 1, -1.0, 1.0));
        let w = c.input("w.f16", F16, uniform(4 + (n * k) as usize, n + 2, -1.0, 1.0));
        let dx = c.output("dx", F32, 1 + (m * k) as usize);
        let p = MatmulParams { m, n, k, c_off: 4, out_off: 1, ..Default::default() };
        c.check(Op::MatmulBackwardInput { p, a: dz, c: w, out: dx }, &[dx], 1, &format!("{m}x{n}x{k}"));
    }
}

#[test]
fn matmul_backward_weight_f16_matches_cpu() {
    for &(m, n, k) in SHAPES {
        for accumulate in [0, 1] {
            let mut c = Case::new();
            let dz = c.input("dz", F32, uniform((m * n) as usize, m + 3, -1e-3, 1e-3));
            let x = c.input("x", F16, uniform(1 + (m * k) as usize, k, -1.0, 1.0));
            let len = 8 + (n * k) as usize;
            let grads = if accumulate == 1 {
                c.input("grads", F32, uniform(len, 9, -1.0, 1.0))
            } else {
                c.output("grads", F32, len)
            };
            let p = MatmulParams { m, n, k, c_off: 1, out_off: 8, accumulate, ..Default::default() };
            let op = Op::MatmulBackwardWeight { p, a: dz, c: x, out: grads };
            c.check(op, &[grads], 8, &format!("{m}x{n}x{k} accumulate={accumulate}"));
        }
    }
}

#[test]
fn activations_backward_f16_match_cpu() {
    for &act in &ACTS[1..] {
        for &len in LENS {
            let mut c = Case::new();
            // y: a possible f16 output of the activation.
            let ys: Vec<f32> = uniform(len + 1, 3, -8.0, 8.0)
                .iter()
                .map(|&z| round_f16(activate(z, act.code(), slope(act))))
                .collect();
            let y = c.input("D.fc1.out", F16, ys);
            let dy = c.input("dy", F32, uniform(len + 2, 5, -1e-3, 1e-3));
            let dz = c.output("dz", F32, len);
            let p = EwParams { len: len as u32, slope: slope(act), in_off: 1, dy_off: 2, ..Default::default() };
            c.check(Op::ActivationBackward { act, p, y, dy, out: dz }, &[dz], 0, &format!("{act:?} len {len}"));
        }
    }
}

/// Values across f16's range: ordinary, past its largest value, subnormal and below.
fn wide_values(len: usize, seed: u32) -> Vec<f32> {
    let mut v = uniform(len, seed, -4.0, 4.0);
    let extremes = [0.0, -0.0, 1e5, -1e5, 65504.0, 65520.0, 3e-5, 6e-8, 1e-9, -2.5e-6, 0.1, 1.0 / 3.0];
    for (slot, e) in v.iter_mut().zip(extremes) {
        *slot = e;
    }
    v
}

#[test]
fn casts_match_cpu_exactly() {
    for &len in LENS {
        let mut c = Case::new();
        let src = c.input("G.params", F32, wide_values(len + 3, len as u32));
        let half = c.output("G.params.f16", F16, len + 1);
        let to16 = EwParams { len: len as u32, in_off: 3, out_off: 1, ..Default::default() };
        c.check(Op::Cast { p: to16, x: src, out: half, to_f16: true }, &[half], 1, &format!("to f16, len {len}"));
        // f16 -> f32 is exact: the f16 input was rounded on upload, on both sides alike.
        let mut c2 = Case::new();
        let h = c2.input("D.fc3.out", F16, wide_values(len + 1, len as u32 + 7));
        let back2 = c2.output("D.logits", F32, len + 2);
        let to32 = EwParams { len: len as u32, in_off: 1, out_off: 2, ..Default::default() };
        c2.check(Op::Cast { p: to32, x: h, out: back2, to_f16: false }, &[back2], 2, &format!("to f32, len {len}"));
    }
}

#[test]
fn round_f16_saturates_and_rounds_to_nearest_even() {
    assert_eq!(round_f16(1e5), 65504.0);
    assert_eq!(round_f16(-1e9), -65504.0);
    assert_eq!(round_f16(1.0 + 1.0 / 4096.0), 1.0); // half an ulp below a tie: down
    assert_eq!(round_f16(1.0 + 3.0 / 2048.0), 1.0 + 2.0 / 1024.0); // a tie: to even
    assert_eq!(round_f16(6e-8), 5.9604645e-8); // the smallest subnormal
    assert_eq!(round_f16(1e-9), 0.0);
}

#[test]
fn dropout_f16_matches_cpu_exactly() {
    for &len in LENS {
        for (step, salt, rate) in [(0u32, 0u32, 0.3f32), (77, 257, 0.5)] {
            let mut c = Case::new();
            c.state = TrainState::at(step, 0, 0, 0.5, 0.999);
            let out = c.input("D.fc1.out", F16, wide_values(len + 1, 3));
            let p = RandomParams {
                len: len as u32,
                stream: salt,
                seed_lo: 5,
                seed_hi: 9,
                out_off: 1,
                scale: 1.0 / (1.0 - rate),
                shift: rate,
                ..Default::default()
            };
            c.check(Op::Dropout { p, out }, &[out], 0, &format!("len {len} step {step}"));
        }
    }
}

#[test]
fn round_f16_slice_equals_round_f16_value_by_value() {
    let mut v = wide_values(5000, 1);
    v.extend([1e-7, -3e-8, 65519.0, 65520.0, -65536.0, f32::MAX, f32::MIN_POSITIVE, 1.0 + 3.0 / 2048.0]);
    let want: Vec<f32> = v.iter().map(|&x| round_f16(x)).collect();
    shadergan::cpu::ops::round_f16_slice(&mut v);
    assert_eq!(v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
}
