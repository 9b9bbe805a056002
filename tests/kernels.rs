//! Each GPU kernel against its CPU twin (the reference ops), on lavapipe in CI: awkward shapes
//! (1, 63, 64, 65, 7x33x65), extreme values, and outputs pre-filled with NaN so that a kernel that
//! writes nothing fails. Tolerances come from `shadergan::check::TOLERANCES`.

mod common;

use std::sync::Arc;

use common::{gpu, uniform};
use shadergan::check::{compare, tolerance};
use shadergan::cpu::CpuProgram;
use shadergan::data::Dataset;
use shadergan::gpu::GpuProgram;
use shadergan::model::{Activation, LEAKY_SLOPE};
use shadergan::params::*;
use shadergan::plan::{BufSpec, Op};
use shadergan::trainer::Executor;

/// (gpu outputs, cpu outputs, gpu state, cpu state) of one kernel call.
type BothRuns = (Vec<Vec<f32>>, Vec<Vec<f32>>, TrainState, TrainState);

/// Buffers for one kernel call: (label, initial contents). Outputs start as NaN unless given.
struct Case {
    bufs: Vec<(String, Vec<f32>)>,
    state: TrainState,
    data: Option<Arc<Dataset>>,
}

impl Case {
    fn new() -> Self {
        Case { bufs: vec![], state: TrainState::new(), data: None }
    }

    fn input(&mut self, label: &str, values: Vec<f32>) -> usize {
        self.bufs.push((label.to_string(), values));
        self.bufs.len() - 1
    }

    fn output(&mut self, label: &str, len: usize) -> usize {
        self.input(label, vec![f32::NAN; len])
    }

    /// Runs `op` on both backends; returns (gpu, cpu) contents of `outs` and the two states.
    fn run(&self, op: Op, outs: &[usize]) -> Option<BothRuns> {
        let ctx = gpu()?;
        let specs: Vec<BufSpec> = self.bufs.iter().map(|(l, v)| BufSpec::f32(l.clone(), v.len())).collect();
        let mut cpu = CpuProgram::with_buffers(&specs, self.data.clone());
        cpu.fast = false;
        let mut gpu = GpuProgram::with_buffers(ctx, &specs, self.data.as_deref()).expect("buffers");
        for (i, (_, v)) in self.bufs.iter().enumerate() {
            cpu.write(i, v).unwrap();
            gpu.write(i, v).unwrap();
        }
        cpu.write_state(&self.state).unwrap();
        gpu.write_state(&self.state).unwrap();
        cpu.run_ops(std::slice::from_ref(&op));
        let section = gpu.add_section(std::slice::from_ref(&op)).expect("compile");
        gpu.run(section, 1).expect("run");
        let g = outs.iter().map(|&o| gpu.read(o).unwrap()).collect();
        let c = outs.iter().map(|&o| cpu.read(o).unwrap()).collect();
        Some((g, c, gpu.read_state().unwrap(), cpu.read_state().unwrap()))
    }

    /// Runs and compares every output with the kernel's tolerance; panics with the details.
    fn check(&self, op: Op, outs: &[usize], what: &str) {
        let entry = op.entry(true);
        let Some((g, c, _, _)) = self.run(op, outs) else { return };
        for (k, (gv, cv)) in g.iter().zip(&c).enumerate() {
            assert!(cv.iter().all(|v| !v.is_nan()), "{what}: CPU twin left NaN in output {k}");
            if let Err(e) = compare(&entry, gv, cv, tolerance(&entry)) {
                panic!("{what}, output {}: {e}", self.bufs[outs[k]].0);
            }
        }
    }
}

/// (m, n, k) shapes: ones, around 64, and the odd 7x33x65 in every order.
const SHAPES: &[(u32, u32, u32)] =
    &[(1, 1, 1), (1, 64, 63), (63, 64, 65), (64, 65, 63), (65, 63, 64), (7, 33, 65), (65, 7, 33), (33, 65, 7)];

const ACTS: &[Activation] =
    &[Activation::Identity, Activation::Relu, Activation::LeakyRelu, Activation::Sigmoid, Activation::Tanh];

fn slope(act: Activation) -> f32 {
    if act == Activation::LeakyRelu {
        LEAKY_SLOPE
    } else {
        0.0
    }
}

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
                slope: slope(act),
                ..Default::default()
            };
            // Only the written span is compared: the two leading values stay NaN on both.
            let op = Op::MatmulForward { p, a: x, c: w, out: y };
            let Some((g, cpu, _, _)) = c.run(op, &[y]) else { return };
            let t = shadergan::check::tolerance("matmul_forward");
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
        c.check(Op::MatmulBackwardInput { p, a: dz, c: w, out: dx }, &[dx], &format!("{m}x{n}x{k}"));
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
            let op = Op::MatmulBackwardWeight { p, a: dz, c: x, out: grads };
            let Some((g, cpu, _, _)) = c.run(op, &[grads]) else { return };
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
            c.check(Op::BiasBackward { p, a: dz, out: grads }, &[grads], &format!("{m}x{n}"));
        }
    }
}

/// Inputs for element-wise kernels: a spread of values plus the extremes.
fn ew_inputs(len: usize, seed: u32) -> Vec<f32> {
    let mut v = uniform(len, seed, -8.0, 8.0);
    let extremes = [0.0, -0.0, 30.0, -30.0, 300.0, -300.0, 1e-7, -1e-7, 15.0, -15.0];
    for (slot, e) in v.iter_mut().zip(extremes) {
        *slot = e;
    }
    v
}

const LENS: &[usize] = &[1, 63, 64, 65, 7 * 33 * 65];

#[test]
fn activations_forward_match_cpu() {
    for &act in &ACTS[1..] {
        for &len in LENS {
            let mut c = Case::new();
            let x = c.input("x", ew_inputs(len + 1, len as u32));
            let y = c.output("y", len);
            let p = EwParams { len: len as u32, slope: slope(act), in_off: 1, ..Default::default() };
            c.check(Op::ActivationForward { act, p, x, out: y }, &[y], &format!("{act:?} len {len}"));
        }
    }
}

#[test]
fn activations_backward_match_cpu() {
    for &act in &ACTS[1..] {
        for &len in LENS {
            let mut c = Case::new();
            // y must be a possible output of the activation.
            let ys: Vec<f32> =
                ew_inputs(len, 3).iter().map(|&z| shadergan::cpu::ops::activate(z, act.code(), slope(act))).collect();
            let y = c.input("y", ys);
            let dy = c.input("dy", uniform(len + 2, 5, -1.0, 1.0));
            let dz = c.output("dz", len);
            let p = EwParams { len: len as u32, slope: slope(act), dy_off: 2, ..Default::default() };
            c.check(Op::ActivationBackward { act, p, y, dy, out: dz }, &[dz], &format!("{act:?} len {len}"));
        }
    }
}

#[test]
fn large_elementwise_dispatch_is_split_and_covers_every_element() {
    // More than 65,535 workgroups of 256: the host splits the grid into two dimensions.
    let len = 65_536 * 256 + 5;
    let mut c = Case::new();
    let x = c.input("x", uniform(len, 1, -1.0, 1.0));
    let y = c.output("y", len);
    let p = EwParams { len: len as u32, ..Default::default() };
    c.check(Op::ActivationForward { act: Activation::Relu, p, x, out: y }, &[y], "relu 16.8M");
}

#[test]
fn sigmoid_never_overflows() {
    use shadergan::cpu::ops::sigmoid;
    assert_eq!(sigmoid(300.0), 1.0);
    assert_eq!(sigmoid(-300.0), 0.0);
    assert!((sigmoid(-30.0) - 9.357623e-14).abs() < 1e-19);
    assert!((sigmoid(30.0) - 1.0).abs() < 1e-7);
}

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
            let op = Op::BceLogits { p, z, dz, stats };
            let Some((g, cpu, _, _)) = c.run(op, &[dz, stats]) else { return };
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
    shadergan::cpu::ops::bce_logits(&p, &z, &mut dz, &mut stats);
    // Per row: 0, 300, ~9.4e-14, ~30; sigmoid(30) rounds to 1 in f32, so its gradient is 0.
    assert!((stats[0] - 330.0).abs() < 1e-3, "{}", stats[0]);
    assert_eq!(dz, vec![0.0, -1.0, 0.0, -1.0]);
    // The tiny loss of a confident right answer is kept, not rounded to zero.
    z.truncate(3);
    z[0] = 30.0;
    let p1 = LossParams { rows: 1, n_first: 1, ..p };
    shadergan::cpu::ops::bce_logits(&p1, &z, &mut dz, &mut stats);
    assert!((stats[0] - 9.357623e-14).abs() < 1e-19, "{}", stats[0]);
}

#[test]
fn adam_step_matches_cpu() {
    for &len in LENS {
        // The last two: at half the rate 2 steps before a 4-step linear decay ends, and past its end.
        for (net, t, step, decay_end) in
            [(0u32, 1u32, 0, 0), (1, 1, 0, 0), (0, 10, 0, 0), (1, 1000, 0, 0), (0, 10, 18, 20), (1, 10, 25, 20)]
        {
            let mut c = Case::new();
            c.state = TrainState::at(step, t, t, 0.5, 0.999);
            let params = c.input("params", uniform(len, 1, -1.0, 1.0));
            let grads = c.input("grads", ew_inputs(len, 2).iter().map(|v| v * 1e-2).collect());
            let mut mv = uniform(len, 3, -1e-2, 1e-2);
            mv.extend(uniform(len, 4, 0.0, 1e-4));
            let moments = c.input("moments", mv);
            let p = AdamParams {
                len: len as u32,
                net,
                lr: 2e-4,
                beta1: 0.5,
                beta2: 0.999,
                eps: 1e-8,
                decay_end,
                decay_inv: if decay_end > 0 { 0.25 } else { 0.0 },
            };
            c.check(
                Op::AdamStep { p, params, grads, moments },
                &[params, moments],
                &format!("len {len} net {net} t {t} step {step} decay_end {decay_end}"),
            );
        }
    }
}

#[test]
fn ema_update_matches_cpu() {
    for &len in LENS {
        for beta in [0.0f32, 0.9, 0.999] {
            let mut c = Case::new();
            // One value past len on each buffer: the kernel must leave it as it is.
            let params = c.input("params", ew_inputs(len + 1, 7));
            let mut start = uniform(len, 8, -1.0, 1.0);
            start.push(12_345.0);
            let ema = c.input("ema", start);
            let p = EmaParams { len: len as u32, beta, ..Default::default() };
            c.check(Op::EmaUpdate { p, params, ema }, &[ema], &format!("len {len} beta {beta}"));
        }
        // The average is read as well as written, so a NaN-prefilled output must come out NaN on
        // both backends (a kernel that wrote without reading would not); the finite starts above
        // catch a kernel that writes nothing, since every value moves by (1 - beta) (w - ema).
        let mut c = Case::new();
        let params = c.input("params", ew_inputs(len, 9));
        let ema = c.output("ema", len);
        let p = EmaParams { len: len as u32, beta: 0.5, ..Default::default() };
        let Some((g, cpu, _, _)) = c.run(Op::EmaUpdate { p, params, ema }, &[ema]) else { return };
        assert!(g[0].iter().chain(&cpu[0]).all(|v| v.is_nan()), "len {len}: NaN in, NaN out");
    }
}

#[test]
fn adam_tick_and_step_tick_match_cpu_exactly() {
    for net in [0u32, 1] {
        let mut c = Case::new();
        c.state = TrainState::at(5, 3, 7, 0.5, 0.999);
        c.input("unused", vec![0.0]);
        let p = AdamParams { net, beta1: 0.5, beta2: 0.999, ..Default::default() };
        let Some((_, _, gs, cs)) = c.run(Op::AdamTick { p }, &[]) else { return };
        assert_eq!(gs, cs, "adam_tick net {net}");
        let Some((_, _, gs, cs)) = c.run(Op::StepTick, &[]) else { return };
        assert_eq!(gs, cs, "step_tick");
        assert_eq!(gs.step, 6);
    }
}

#[test]
fn noise_normal_matches_cpu() {
    for &len in LENS {
        for (step, stream) in [(0u32, 0u32), (12_345, 1)] {
            let mut c = Case::new();
            c.state = TrainState::at(step, 0, 0, 0.5, 0.999);
            let out = c.output("noise", len + 3);
            let p = RandomParams { len: len as u32, stream, seed_lo: 7, seed_hi: 1, out_off: 3, ..Default::default() };
            let Some((g, cpu, _, _)) = c.run(Op::NoiseNormal { p, out }, &[out]) else { return };
            compare("noise_normal", &g[0][3..], &cpu[0][3..], tolerance("noise_normal"))
                .unwrap_or_else(|e| panic!("len {len} step {step}: {e}"));
            assert!(cpu[0][3..].iter().all(|v| v.is_finite()));
        }
    }
}

#[test]
fn gather_matches_cpu_exactly() {
    let (n, dim) = (65usize, 33usize);
    let bytes: Vec<u8> = (0..n * dim).map(|i| (i * 7 % 256) as u8).collect();
    let floats: Vec<f32> = uniform(n * dim, 11, -3.0, 3.0);
    let sets = [Dataset::from_u8(n, dim, bytes).unwrap(), Dataset::from_f32(n, dim, floats).unwrap()];
    for data in sets {
        for rows in [1u32, 7, 64] {
            // Steps inside the first epoch and past it (a new permutation); with several D
            // updates per step (sub_steps), each its own batch.
            for (step, sub_steps, sub_index) in [(0u32, 1u32, 0u32), (1, 1, 0), (9, 1, 0), (100, 1, 0), (4, 3, 2)] {
                let mut c = Case::new();
                c.data = Some(Arc::new(data.clone()));
                c.state = TrainState::at(step, 0, 0, 0.5, 0.999);
                let out = c.output("batch", 2 + rows as usize * dim);
                let p = RandomParams {
                    len: rows * dim as u32,
                    seed_lo: 3,
                    seed_hi: 0,
                    out_off: 2,
                    rows,
                    dim: dim as u32,
                    n: n as u32,
                    steps_per_epoch: n as u32 / rows,
                    half_bits: shadergan::rng::feistel_half_bits(n as u32),
                    scale: 1.0 / 255.0,
                    shift: -0.5,
                    sub_steps,
                    sub_index,
                    ..Default::default()
                };
                let Some((g, cpu, _, _)) = c.run(Op::Gather { p, out }, &[out]) else { return };
                assert!(cpu[0][2..].iter().all(|v| v.is_finite()));
                compare("gather", &g[0][2..], &cpu[0][2..], tolerance("gather"))
                    .unwrap_or_else(|e| panic!("{} rows {rows} step {step}: {e}", data.dtype));
            }
        }
    }
}

#[test]
fn dropout_matches_cpu_exactly() {
    for &len in LENS {
        for (step, salt, rate) in [(0u32, 0u32, 0.3f32), (77, 257, 0.5)] {
            let mut c = Case::new();
            c.state = TrainState::at(step, 0, 0, 0.5, 0.999);
            let out = c.input("D.fc1.out", uniform(len + 1, 3, -1.0, 1.0));
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
            let Some((g, cpu, _, _)) = c.run(Op::Dropout { p, out }, &[out]) else { return };
            compare("dropout", &g[0], &cpu[0], tolerance("dropout"))
                .unwrap_or_else(|e| panic!("len {len} step {step}: {e}"));
            if len > 1000 {
                let dropped = cpu[0][1..].iter().filter(|v| **v == 0.0).count() as f32 / len as f32;
                assert!((dropped - rate).abs() < 0.02, "dropped {dropped} at rate {rate}");
            }
        }
    }
}
