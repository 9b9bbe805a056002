//! head.wgsl (D's one-logit head, its loss and its backward pass in one dispatch) against its
//! CPU twin, and the twin's gradients against f64 finite differences of the loss.

use crate::common::harness::{Both, Case};
use crate::common::uniform;
use shadergan::backend::cpu::CpuExecutor;
use shadergan::backend::Executor;
use shadergan::ir::{BufSpec, DType, DataChunks};
use shadergan::kernels::activation::{activate, Activation, LEAKY_SLOPE};
use shadergan::kernels::head::{HeadLoss, HeadParams, LogitHead};
use shadergan::kernels::loss::{LossParams, NO_SLOT};
use shadergan::kernels::tolerance::{compare, tolerance};

const ACTS: [Activation; 5] =
    [Activation::Identity, Activation::Relu, Activation::LeakyRelu, Activation::Sigmoid, Activation::Tanh];

/// The losses the GAN step asks for: D's BCE (smoothed real label too), G's BCE, D's and G's
/// hinge. (name, loss params for `m` rows, hinge).
fn losses(m: usize) -> Vec<(&'static str, LossParams, bool)> {
    let half = (m / 2) as u32;
    let inv = 1.0 / (m / 2).max(1) as f32;
    let d = LossParams {
        rows: m as u32,
        n_first: half,
        label_first: 1.0,
        label_second: 0.0,
        scale_first: inv,
        scale_second: inv,
        slot_loss: 0,
        slot_prob_first: 2,
        slot_prob_second: if m > 1 { 3 } else { NO_SLOT },
        ..Default::default()
    };
    let g = LossParams {
        n_first: m as u32,
        scale_first: 1.0 / m as f32,
        scale_second: 0.0,
        slot_loss: 1,
        slot_prob_first: NO_SLOT,
        slot_prob_second: NO_SLOT,
        ..d
    };
    vec![
        ("D bce", d, false),
        ("D bce smoothed", LossParams { label_first: 0.9, ..d }, false),
        ("G bce", g, false),
        ("D hinge", LossParams { label_second: -1.0, hinge_margin: 1, ..d }, true),
        ("G hinge", LossParams { label_second: -1.0, hinge_margin: 0, ..g }, true),
    ]
}

/// Buffers of one call at (m, k): x made by `act_in` (values times `scale`), the weights at an
/// offset, NaN outputs (grads given when accumulating). Returns the case, the op, its outputs
/// [logits, grads, dx, stats] and where z and dz start in logits.
#[allow(clippy::too_many_arguments)]
fn case(
    m: usize,
    k: usize,
    act_in: Activation,
    scale: f32,
    loss: (LossParams, bool),
    parts: (bool, bool),
    bias: bool,
    acc: bool,
) -> (Case, LogitHead, [usize; 4], (usize, usize)) {
    let mut c = Case::new();
    let zx = uniform(3 + m * k, (m + 7 * k) as u32, -2.0, 2.0);
    let x = c.input("x", zx.iter().map(|&v| activate(v * scale, act_in.code(), act_in.slope())).collect());
    let w = c.input("w", uniform(5 + k + 1, k as u32 + 3, -1.0, 1.0));
    let glen = 2 + k + 1;
    let grads = if acc { c.input("grads", uniform(glen, 9, -1.0, 1.0)) } else { c.output("grads", glen) };
    // z at 1, dz after it at 2 + m (the GAN's layout), or before it in every other case.
    let z_first = (m + k).is_multiple_of(2);
    let logits = c.output("logits", 3 + 2 * m);
    let (z_off, dz_off) = if z_first { (1, 2 + m) } else { (2 + m, 1) };
    let dx = c.output("dx", 4 + m * k);
    let stats = c.output("stats", 4);
    let p = HeadParams {
        m: m as u32,
        k: k as u32,
        x_off: 3,
        w_off: 5,
        b_off: 5 + k as u32,
        no_bias: !bias as u32,
        z_off: z_off as u32,
        dz_off: dz_off as u32,
        dw_off: 2,
        db_off: 2 + k as u32,
        dx_off: 4,
        accumulate: acc as u32,
        act_in: act_in.code(),
        slope_in: act_in.slope(),
        ..Default::default()
    };
    let loss = HeadLoss { p: loss.0, hinge: loss.1, stats };
    let (g, d) = parts;
    let op = LogitHead {
        p: LogitHead::with_loss(p, loss),
        x,
        w,
        grads: g.then_some(grads),
        logits,
        dx: d.then_some(dx),
        stats,
        twin: None,
    };
    (c, op, [logits, grads, dx, stats], (z_off, dz_off))
}

#[test]
fn logit_head_matches_cpu() {
    let shapes = [(1, 1), (1, 65), (63, 64), (64, 63), (65, 65), (128, 33), (7 * 33, 65), (300, 7)];
    let t = tolerance("logit_head");
    for (i, &(m, k)) in shapes.iter().enumerate() {
        for (j, (name, lp, hinge)) in losses(m).into_iter().enumerate() {
            let parts = [(true, true), (true, false), (false, true)][(i + j) % 3];
            let (bias, acc) = ((i + j) % 2 == 0, (i + 2 * j) % 3 == 1 && parts.0);
            let act_in = ACTS[(i + j) % ACTS.len()];
            // Every fifth case with logits of hundreds: the losses' saturated ends.
            let scale = if (i + j) % 5 == 4 { 200.0 } else { 1.0 };
            let (c, op, outs, (zo, dzo)) = case(m, k, act_in, scale, (lp, hinge), parts, bias, acc);
            let what = format!("{m}x{k} {name} {act_in:?} parts {parts:?} bias {bias} acc {acc} scale {scale}");
            let Some(Both { gpu: g, cpu, .. }) = c.run(op, &outs) else { return };
            let check = |o: usize, lo: usize, hi: usize, part: &str| {
                assert!(cpu[o][lo..hi].iter().all(|v| !v.is_nan()), "{what}: twin left NaN in {part}");
                compare("logit_head", &g[o][lo..hi], &cpu[o][lo..hi], t)
                    .unwrap_or_else(|e| panic!("{what}, {part}: {e}"));
            };
            check(0, zo, zo + m, "z");
            check(0, dzo, dzo + m, "dz");
            if parts.0 {
                check(1, 2, 2 + k + bias as usize, "dw, db");
            }
            if parts.1 {
                check(2, 4, 4 + m * k, "dx");
            } else {
                assert!(g[2].iter().all(|v| v.is_nan()), "{what}: dx written");
            }
            for slot in [lp.slot_loss, lp.slot_prob_first, lp.slot_prob_second] {
                if slot != NO_SLOT {
                    check(3, slot as usize, slot as usize + 1, "stats");
                }
            }
            // What the call does not write stays as it was on both sides.
            let same = |o: usize, r: std::ops::Range<usize>| {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&g[o][r.clone()]), bits(&cpu[o][r.clone()]), "{what}: output {o} {r:?}");
            };
            same(0, 0..1);
            same(0, m + 1..m + 2);
            same(0, 2 * m + 2..2 * m + 3);
            same(1, 0..2);
            if !parts.0 || !bias {
                same(1, if parts.0 { 2 + k } else { 0 }..2 + k + 1);
            }
            let slots = [lp.slot_loss, lp.slot_prob_first, lp.slot_prob_second];
            for s in (0..4u32).filter(|s| !slots.contains(s)) {
                same(3, s as usize..s as usize + 1);
            }
        }
    }
}

/// Runs `op` on the CPU reference (no GPU) over `bufs` and returns them afterwards.
fn run_cpu(bufs: &[(&str, Vec<f32>)], op: LogitHead) -> Vec<Vec<f32>> {
    let specs: Vec<BufSpec> =
        bufs.iter().map(|(l, v)| BufSpec { label: (*l).into(), len: v.len(), dtype: DType::F32 }).collect();
    let mut cpu = CpuExecutor::with_chunks(&specs, None, DataChunks::whole(0)).reference();
    for (i, (_, v)) in bufs.iter().enumerate() {
        cpu.write(i, v).unwrap();
    }
    let s = cpu.add_section(&[op.into()]).expect("spans");
    cpu.run(s, 1).unwrap();
    (0..bufs.len()).map(|i| cpu.read(i).unwrap()).collect()
}

fn act64(v: f64, a: Activation) -> f64 {
    match a {
        Activation::Identity => v,
        Activation::Relu => v.max(0.0),
        Activation::LeakyRelu => {
            if v > 0.0 {
                v
            } else {
                LEAKY_SLOPE as f64 * v
            }
        }
        Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        Activation::Tanh => v.tanh(),
    }
}

/// The loss in f64 from the formulas: x = act_in(u) (u the pre-activation), z = x w + b.
fn loss64(lp: &LossParams, hinge: bool, act_in: Activation, u: &[f64], w: &[f64], b: f64) -> f64 {
    let k = w.len();
    let mut total = 0.0;
    for (i, row) in u.chunks(k).enumerate() {
        let z: f64 = row.iter().zip(w).map(|(&v, &wk)| act64(v, act_in) * wk).sum::<f64>() + b;
        let first = (i as u32) < lp.n_first;
        let (y, s) = if first { (lp.label_first, lp.scale_first) } else { (lp.label_second, lp.scale_second) };
        let (y, s) = (y as f64, s as f64);
        let l = if !hinge {
            z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()
        } else if lp.hinge_margin != 0 {
            (1.0 - y * z).max(0.0)
        } else {
            -y * z
        };
        total += s * l;
    }
    total
}

/// The twin's dw, db and dx (dx: the gradient of the loss with respect to the pre-activation u
/// of x, act_in' folded in) against central differences of the f64 loss.
#[test]
fn logit_head_gradients_match_finite_differences() {
    let (m, k) = (6, 5);
    for (name, lp, hinge) in losses(m) {
        for act_in in [Activation::Identity, Activation::Tanh, Activation::Sigmoid] {
            let u: Vec<f32> = uniform(m * k, 21, -1.5, 1.5);
            let x: Vec<f32> = u.iter().map(|&v| activate(v, act_in.code(), act_in.slope())).collect();
            let wb = uniform(k + 1, 22, -1.0, 1.0);
            let p = HeadParams {
                m: m as u32,
                k: k as u32,
                b_off: k as u32,
                db_off: k as u32,
                act_in: act_in.code(),
                slope_in: act_in.slope(),
                ..Default::default()
            };
            let bufs = [
                ("x", x),
                ("w", wb.clone()),
                ("grads", vec![f32::NAN; k + 1]),
                ("logits", vec![f32::NAN; 2 * m]),
                ("dx", vec![f32::NAN; m * k]),
                ("stats", vec![f32::NAN; 4]),
            ];
            let loss = HeadLoss { p: LossParams { rows: m as u32, ..lp }, hinge, stats: 5 };
            let p = HeadParams { dz_off: m as u32, ..p };
            let op = LogitHead {
                p: LogitHead::with_loss(p, loss),
                x: 0,
                w: 1,
                grads: Some(2),
                logits: 3,
                dx: Some(4),
                stats: 5,
                twin: None,
            };
            let out = run_cpu(&bufs, op);
            let (u64s, w64): (Vec<f64>, Vec<f64>) =
                (u.iter().map(|&v| v as f64).collect(), wb.iter().map(|&v| v as f64).collect());
            let f = |u: &[f64], w: &[f64]| loss64(&lp, hinge, act_in, u, &w[..k], w[k]);
            let h = 1e-6;
            let fd = |plus: f64, minus: f64| (plus - minus) / (2.0 * h);
            let close = |got: f32, want: f64, what: String| {
                assert!(
                    (got as f64 - want).abs() <= 1e-4 + 1e-3 * want.abs(),
                    "{name} {act_in:?} {what}: {got} vs {want}"
                );
            };
            for j in 0..=k {
                let (mut a, mut b) = (w64.clone(), w64.clone());
                a[j] += h;
                b[j] -= h;
                close(out[2][j], fd(f(&u64s, &a), f(&u64s, &b)), format!("d params[{j}]"));
            }
            for e in 0..m * k {
                let (mut a, mut b) = (u64s.clone(), u64s.clone());
                a[e] += h;
                b[e] -= h;
                close(out[4][e], fd(f(&a, &w64), f(&b, &w64)), format!("dx[{e}]"));
            }
            close(out[5][lp.slot_loss as usize], f(&u64s, &w64), "loss".into());
        }
    }
}

/// The 4x4 convolution head of the 32x32 and 64x64 DCGANs' D (one output channel over its whole
/// input) runs as `logit_head` (`nn::Conv2d::fused_head`); its CPU twin is the convolution's own
/// calls around the loss. GPU against twin: rows 1, 63, 128 in one or two groups, c_in 1, 7, 64,
/// with and without a bias, dw and db (accumulated too) and dx with the activation below folded.
#[test]
fn a_convolution_head_runs_as_logit_head() {
    use shadergan::ir::{At, Op};
    use shadergan::nn::layer::{Ctx, Grads, Io, Layer};
    use shadergan::nn::{Conv2d, Init};
    let t = tolerance("logit_head");
    let cases = [(1usize, 1usize, 1usize, false), (63, 7, 1, true), (128, 64, 2, false), (128, 7, 2, true)];
    for (i, &(m, c_in, groups, bias)) in cases.iter().enumerate() {
        let conv = Conv2d {
            c_in,
            c_out: 1,
            h: 4,
            w: 4,
            k: 4,
            stride: 1,
            pad: 0,
            bias,
            init: Init::Normal(0.02),
            spectral: false,
            activation: Activation::Identity,
        };
        let k = c_in * 16;
        let act_in = [Activation::LeakyRelu, Activation::Identity][i % 2];
        let acc = i % 3 == 1;
        let (lp, hinge) = (losses(m)[i % 4].1, losses(m)[i % 4].2);
        let mut c = Case::new();
        let zx = uniform(3 + m * k, (m + k) as u32, -2.0, 2.0);
        let x = c.input("x", zx.iter().map(|&v| activate(v, act_in.code(), act_in.slope())).collect());
        let w = c.input("w", uniform(5 + k + 1, 11, -0.3, 0.3));
        let glen = 5 + k + 1;
        let grads = if acc { c.input("grads", uniform(glen, 9, -1.0, 1.0)) } else { c.output("grads", glen) };
        let logits = c.output("logits", 2 * m + 1);
        let dx = c.output("dx", 3 + m * k);
        let stats = c.output("stats", 4);
        let mut ops: Vec<Op> = vec![];
        let cx = Ctx {
            ops: &mut ops,
            weights: w,
            off: 5,
            grads: Some(grads),
            state: None,
            state_off: 0,
            scratch: &[],
            seed: 0,
            half: false,
            labels: None,
            out_mask: Default::default(),
        };
        let io = Io { x: At { buf: x, off: 3 }, y: At { buf: logits, off: 1 }, rows: m, groups };
        let g = Grads {
            dy: At { buf: logits, off: 1 + m },
            dx: Some(At { buf: dx, off: 3 }),
            weights: true,
            accumulate: acc,
            dz_given: false,
            dx_act: act_in,
            dx_mask: Default::default(),
        };
        let loss = HeadLoss { p: LossParams { z_off: 1, dz_off: 1 + m as u32, ..lp }, hinge, stats };
        let op = conv.fused_head(&cx, io, g, loss).expect("a whole-input one-channel convolution fuses");
        assert_eq!(op.entry(), "logit_head");
        let what = format!("{m} rows x ({c_in}, 4, 4), groups {groups}, bias {bias}, acc {acc}, {act_in:?}");
        let Some(Both { gpu: gv, cpu, .. }) = c.run(op, &[logits, grads, dx]) else { return };
        let written = [(0, 1..1 + 2 * m), (1, 5..5 + k + bias as usize), (2, 3..3 + m * k)];
        for (o, range) in written {
            assert!(cpu[o][range.clone()].iter().all(|v| !v.is_nan()), "{what}: twin left NaN in output {o}");
            compare("logit_head", &gv[o][range.clone()], &cpu[o][range], t)
                .unwrap_or_else(|e| panic!("{what}, output {o}: {e}"));
        }
        // A head that is not the whole input (padding) keeps the convolution's own calls.
        let padded = Conv2d { pad: 1, h: 2, w: 2, ..conv };
        assert!(padded.fused_head(&cx, io, g, loss).is_none());
    }
}
