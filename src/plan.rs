//! A training step written down once, as data: the buffers it uses and the kernel calls it makes,
//! with every call's parameters. The GPU backend turns each call into a pipeline, a uniform and a
//! bind group at start-up and records them in order; the CPU backend interprets the same list with
//! the CPU twins. So both backends run the very same sequence of the very same operations.
//!
//! One training step (DESIGN.md's data path):
//!   D step: noise -> G forward -> gather real batch -> D forward on [real; fake] -> BCE (1 / 0)
//!           -> D backward (weights) -> Adam(D)
//!   G step: fresh noise -> G forward -> D forward on fake -> BCE (label 1, non-saturating)
//!           -> D backward to its input -> G backward -> Adam(G) [-> EMA of G] -> step += 1

use crate::config::TrainConfig;
use crate::model::{Activation, Net, NetLayout, LEAKY_SLOPE};
use crate::params::*;
use crate::rng;

pub type BufId = usize;

/// A place in a buffer: buffer and element offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub buf: BufId,
    pub off: usize,
}

/// A buffer of f32 values. Its label names the tensor in GPU validation errors.
#[derive(Clone, Debug)]
pub struct BufSpec {
    pub label: String,
    pub len: usize,
}

/// One kernel call. The names are the WGSL entry points and the `cpu::ops` functions.
#[derive(Clone, Debug)]
pub enum Op {
    MatmulForward {
        p: MatmulParams,
        a: BufId,
        c: BufId,
        out: BufId,
    },
    MatmulBackwardInput {
        p: MatmulParams,
        a: BufId,
        c: BufId,
        out: BufId,
    },
    MatmulBackwardWeight {
        p: MatmulParams,
        a: BufId,
        c: BufId,
        out: BufId,
    },
    BiasBackward {
        p: MatmulParams,
        a: BufId,
        out: BufId,
    },
    ActivationForward {
        act: Activation,
        p: EwParams,
        x: BufId,
        out: BufId,
    },
    ActivationBackward {
        act: Activation,
        p: EwParams,
        y: BufId,
        dy: BufId,
        out: BufId,
    },
    BceLogits {
        p: LossParams,
        z: BufId,
        dz: BufId,
        stats: BufId,
    },
    AdamTick {
        p: AdamParams,
    },
    AdamStep {
        p: AdamParams,
        params: BufId,
        grads: BufId,
        moments: BufId,
    },
    StepTick,
    /// `ema` = beta `ema` + (1 - beta) `params` (G's weight average, `--g-ema`).
    EmaUpdate {
        p: EmaParams,
        params: BufId,
        ema: BufId,
    },
    NoiseNormal {
        p: RandomParams,
        out: BufId,
    },
    /// Reads the resident data set (u8 or f32, whichever it is).
    Gather {
        p: RandomParams,
        out: BufId,
    },
    /// In place; `p.stream` is the mask's salt, `p.shift` the rate, `p.scale` 1 / (1 - rate).
    Dropout {
        p: RandomParams,
        out: BufId,
    },
}

impl Op {
    /// The WGSL entry point this op runs.
    pub fn entry(&self, data_is_u8: bool) -> String {
        match self {
            Op::MatmulForward { .. } => "matmul_forward".into(),
            Op::MatmulBackwardInput { .. } => "matmul_backward_input".into(),
            Op::MatmulBackwardWeight { .. } => "matmul_backward_weight".into(),
            Op::BiasBackward { .. } => "bias_backward".into(),
            Op::ActivationForward { act, .. } => format!("{}_forward", act.kernel_name()),
            Op::ActivationBackward { act, .. } => format!("{}_backward", act.kernel_name()),
            Op::BceLogits { .. } => "bce_logits".into(),
            Op::AdamTick { .. } => "adam_tick".into(),
            Op::AdamStep { .. } => "adam_step".into(),
            Op::StepTick => "step_tick".into(),
            Op::EmaUpdate { .. } => "ema_update".into(),
            Op::NoiseNormal { .. } => "noise_normal".into(),
            Op::Gather { .. } => if data_is_u8 { "gather_u8" } else { "gather_f32" }.into(),
            Op::Dropout { .. } => "dropout".into(),
        }
    }
}

/// Buffers of one network.
#[derive(Clone, Debug)]
pub struct NetBufs {
    pub layout: NetLayout,
    pub params: BufId,
    pub grads: BufId,
    /// Adam's m (first `len` values) then v.
    pub moments: BufId,
    /// Output of each layer, after its activation.
    pub act: Vec<BufId>,
    /// Gradient with respect to each layer's output.
    pub dact: Vec<BufId>,
    /// Gradient with respect to each layer's pre-activation.
    pub dz: Vec<BufId>,
}

/// The whole program: buffers, the ops of one training step, and the ops of sampling G.
#[derive(Clone, Debug)]
pub struct Plan {
    pub bufs: Vec<BufSpec>,
    pub g: NetBufs,
    pub d: NetBufs,
    pub stats: BufId,
    /// G's exponential moving average of weights (`--g-ema` > 0), same layout as `g.params`;
    /// `sample` runs G with these weights.
    pub g_ema: Option<BufId>,
    /// [real; fake] rows, the input of D: (2 batch, dim).
    pub d_input: BufId,
    pub train_step: Vec<Op>,
    /// G forward on `sample_rows` latent rows in `sample_z`, output in `sample_out`; with G's
    /// weight average when `g_ema` is kept.
    pub sample: Vec<Op>,
    pub sample_rows: usize,
    pub sample_z: BufId,
    pub sample_out: BufId,
}

/// Rows G is run on per `sample` call.
pub const SAMPLE_ROWS: usize = 256;

struct Builder {
    bufs: Vec<BufSpec>,
}

impl Builder {
    fn buf(&mut self, label: impl Into<String>, len: usize) -> BufId {
        self.bufs.push(BufSpec { label: label.into(), len: len.max(1) });
        self.bufs.len() - 1
    }

    /// A network's parameter, gradient and Adam buffers, and per-layer scratch for `rows` rows.
    fn net(&mut self, layout: &NetLayout, rows: usize) -> NetBufs {
        let name = layout.net.name();
        let params = self.buf(format!("{name}.params"), layout.len);
        let grads = self.buf(format!("{name}.params.grad"), layout.len);
        let moments = self.buf(format!("{name}.adam.moments"), 2 * layout.len);
        let (mut act, mut dact, mut dz) = (vec![], vec![], vec![]);
        for (i, l) in layout.layers.iter().enumerate() {
            let n = rows * l.fan_out;
            act.push(self.buf(format!("{name}.fc{}.out", i + 1), n));
            dact.push(self.buf(format!("{name}.fc{}.out.grad", i + 1), n));
            dz.push(self.buf(format!("{name}.fc{}.preact.grad", i + 1), n));
        }
        NetBufs { layout: layout.clone(), params, grads, moments, act, dact, dz }
    }
}

fn slope_for(act: Activation) -> f32 {
    if act == Activation::LeakyRelu {
        LEAKY_SLOPE
    } else {
        0.0
    }
}

/// Dropout on a network's hidden layer outputs during one pass. The mask is keyed by (seed, step,
/// pass, layer), so the backward pass recomputes it instead of storing it.
#[derive(Clone, Copy, Debug)]
struct Dropout {
    rate: f32,
    /// 0: D in the D step, 1: D in the G step.
    pass: u32,
    seed: u64,
}

impl Dropout {
    fn op(&self, layer: usize, buf: BufId, len: usize) -> Op {
        Op::Dropout {
            p: RandomParams {
                len: len as u32,
                stream: self.pass * 256 + layer as u32,
                seed_lo: self.seed as u32,
                seed_hi: (self.seed >> 32) as u32,
                scale: 1.0 / (1.0 - self.rate),
                shift: self.rate,
                ..Default::default()
            },
            out: buf,
        }
    }
}

/// Forward through a network: `input` (rows, in) -> each layer's output. The last layer writes to
/// `last_out` instead of its own buffer when given; hidden outputs go through `dropout` if given.
fn forward(ops: &mut Vec<Op>, net: &NetBufs, input: At, rows: usize, last_out: Option<At>, dropout: Option<Dropout>) {
    let n_layers = net.layout.layers.len();
    let mut x = input;
    for (i, l) in net.layout.layers.iter().enumerate() {
        let out = match last_out {
            Some(at) if i + 1 == n_layers => at,
            _ => At { buf: net.act[i], off: 0 },
        };
        ops.push(Op::MatmulForward {
            p: MatmulParams {
                m: rows as u32,
                n: l.fan_out as u32,
                k: l.fan_in as u32,
                act: l.activation.code(),
                a_off: x.off as u32,
                c_off: l.w_off as u32,
                out_off: out.off as u32,
                bias_off: l.b_off as u32,
                slope: slope_for(l.activation),
                ..Default::default()
            },
            a: x.buf,
            c: net.params,
            out: out.buf,
        });
        if let (Some(d), true) = (dropout, i + 1 < n_layers) {
            ops.push(d.op(i, out.buf, rows * l.fan_out));
        }
        x = out;
    }
}

/// Backward through a network whose forward wrote `outs` (each layer's output) from `input`.
/// `dout` is the gradient with respect to the last output. Weight gradients go to the network's
/// gradient buffer when `weights`; the input gradient to `dinput` when given. `dropout` must be
/// the forward pass's: its mask, applied to a hidden layer's gradient, is the backward of dropout.
// Nine arguments: each is one of the places the backward pass reads or writes, or the forward
// pass's dropout; bundling them into a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn backward(
    ops: &mut Vec<Op>,
    net: &NetBufs,
    input: At,
    outs: &[At],
    rows: usize,
    dout: At,
    weights: bool,
    dinput: Option<At>,
    dropout: Option<Dropout>,
) {
    let layers = &net.layout.layers;
    for i in (0..layers.len()).rev() {
        let l = layers[i];
        let dy = if i + 1 == layers.len() { dout } else { At { buf: net.dact[i], off: 0 } };
        if let (Some(d), true) = (dropout, i + 1 < layers.len()) {
            ops.push(d.op(i, dy.buf, rows * l.fan_out));
        }
        let dz = if l.activation == Activation::Identity {
            dy
        } else {
            ops.push(Op::ActivationBackward {
                act: l.activation,
                p: EwParams {
                    len: (rows * l.fan_out) as u32,
                    slope: slope_for(l.activation),
                    in_off: outs[i].off as u32,
                    dy_off: dy.off as u32,
                    out_off: 0,
                    ..Default::default()
                },
                y: outs[i].buf,
                dy: dy.buf,
                out: net.dz[i],
            });
            At { buf: net.dz[i], off: 0 }
        };
        let x = if i == 0 { input } else { outs[i - 1] };
        let base = MatmulParams {
            m: rows as u32,
            n: l.fan_out as u32,
            k: l.fan_in as u32,
            a_off: dz.off as u32,
            ..Default::default()
        };
        if weights {
            ops.push(Op::MatmulBackwardWeight {
                p: MatmulParams { c_off: x.off as u32, out_off: l.w_off as u32, ..base },
                a: dz.buf,
                c: x.buf,
                out: net.grads,
            });
            ops.push(Op::BiasBackward {
                p: MatmulParams { bias_off: l.b_off as u32, ..base },
                a: dz.buf,
                out: net.grads,
            });
        }
        let target = if i > 0 { Some(At { buf: net.dact[i - 1], off: 0 }) } else { dinput };
        if let Some(t) = target {
            ops.push(Op::MatmulBackwardInput {
                p: MatmulParams { c_off: l.w_off as u32, out_off: t.off as u32, ..base },
                a: dz.buf,
                c: net.params,
                out: t.buf,
            });
        }
    }
}

fn adam(ops: &mut Vec<Op>, net: &NetBufs, cfg: &TrainConfig) {
    let p = AdamParams {
        len: net.layout.len as u32,
        net: if net.layout.net == Net::D { 0 } else { 1 },
        lr: cfg.lr,
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        eps: cfg.eps,
        ..Default::default()
    };
    ops.push(Op::AdamTick { p });
    ops.push(Op::AdamStep { p, params: net.params, grads: net.grads, moments: net.moments });
}

/// Builds the plan for a model, batch size and data set of `n` samples.
pub fn build(cfg: &TrainConfig, n: usize) -> Plan {
    let b = cfg.batch_size;
    let dim = cfg.model.data_dim;
    let latent = cfg.model.latent_dim;
    let g_layout = cfg.model.layout(Net::G);
    let d_layout = cfg.model.layout(Net::D);
    let mut bld = Builder { bufs: vec![] };
    // D sees `pack` samples per decision: the rows of D.input, read pack at a time, are its
    // rows (row-major, so packing real with real and fake with fake needs no copy).
    let pack = cfg.model.pack.max(1);
    let db = b / pack;
    let g = bld.net(&g_layout, b);
    let d = bld.net(&d_layout, 2 * db);
    let stats = bld.buf("stats", 4);
    let noise = bld.buf("noise", b * latent);
    let d_input = bld.buf("D.input", 2 * b * dim);
    let d_input_grad = bld.buf("D.input.grad", b * dim);
    let d_logits_grad = bld.buf("D.logits.grad", 2 * b);
    let sample_z = bld.buf("sample.z", SAMPLE_ROWS * latent);
    // Sampling runs G's layers at SAMPLE_ROWS rows: own scratch, shared parameters.
    let sample_act: Vec<BufId> = (g_layout.layers.iter().enumerate())
        .map(|(i, l)| bld.buf(format!("sample.G.fc{}.out", i + 1), SAMPLE_ROWS * l.fan_out))
        .collect();
    let sample_out = *sample_act.last().expect("G has layers");
    let g_ema = (cfg.g_ema > 0.0).then(|| bld.buf("G.params.ema", g_layout.len));
    let gs = NetBufs { act: sample_act, params: g_ema.unwrap_or(g.params), ..g.clone() };

    let (seed_lo, seed_hi) = (cfg.seed as u32, (cfg.seed >> 32) as u32);
    let noise_p = |stream| RandomParams { len: (b * latent) as u32, stream, seed_lo, seed_hi, ..Default::default() };
    let fake = At { buf: d_input, off: b * dim };
    let at0 = |buf| At { buf, off: 0 };
    let g_outs: Vec<At> = g.act[..g.act.len() - 1].iter().map(|&x| at0(x)).chain([fake]).collect();
    let d_outs: Vec<At> = d.act.iter().map(|&x| at0(x)).collect();
    let d_logits = *d_outs.last().expect("D has layers");
    let mut ops = vec![];

    let d_dropout = |pass| (cfg.d_dropout > 0.0).then_some(Dropout { rate: cfg.d_dropout, pass, seed: cfg.seed });
    let inv_b = 1.0 / db as f32;
    // D steps: `d_steps` D updates per training step, each on fresh noise and a fresh real batch.
    // The first uses noise stream 0 and dropout pass 0, the G step 1, later D steps 2, 3, ...
    let d_steps = cfg.d_steps.max(1);
    for j in 0..d_steps {
        let (stream, pass) = if j == 0 { (rng::STREAM_D, 0) } else { (1 + j as u32, 1 + j as u32) };
        ops.push(Op::NoiseNormal { p: noise_p(stream), out: noise });
        forward(&mut ops, &g, at0(noise), b, Some(fake), None);
        ops.push(Op::Gather {
            p: RandomParams {
                len: (b * dim) as u32,
                seed_lo,
                seed_hi,
                rows: b as u32,
                dim: dim as u32,
                n: n as u32,
                steps_per_epoch: (n / b) as u32,
                half_bits: rng::feistel_half_bits(n as u32),
                scale: cfg.data_scale,
                shift: cfg.data_shift,
                sub_steps: d_steps as u32,
                sub_index: j as u32,
                ..Default::default()
            },
            out: d_input,
        });
        forward(&mut ops, &d, at0(d_input), 2 * db, None, d_dropout(pass));
        ops.push(Op::BceLogits {
            p: LossParams {
                rows: 2 * db as u32,
                n_first: db as u32,
                label_first: cfg.real_label,
                label_second: 0.0,
                scale_first: inv_b,
                scale_second: inv_b,
                z_off: d_logits.off as u32,
                dz_off: 0,
                slot_loss: SLOT_D_LOSS,
                slot_prob_first: SLOT_D_REAL,
                slot_prob_second: SLOT_D_FAKE,
                ..Default::default()
            },
            z: d_logits.buf,
            dz: d_logits_grad,
            stats,
        });
        backward(&mut ops, &d, at0(d_input), &d_outs, 2 * db, at0(d_logits_grad), true, None, d_dropout(pass));
        adam(&mut ops, &d, cfg);
    }

    // G step.
    ops.push(Op::NoiseNormal { p: noise_p(rng::STREAM_G), out: noise });
    forward(&mut ops, &g, at0(noise), b, Some(fake), None);
    forward(&mut ops, &d, fake, db, None, d_dropout(1));
    ops.push(Op::BceLogits {
        p: LossParams {
            rows: db as u32,
            n_first: db as u32,
            label_first: 1.0,
            label_second: 0.0,
            scale_first: inv_b,
            scale_second: 0.0,
            z_off: d_logits.off as u32,
            dz_off: 0,
            slot_loss: SLOT_G_LOSS,
            slot_prob_first: NO_SLOT,
            slot_prob_second: NO_SLOT,
            ..Default::default()
        },
        z: d_logits.buf,
        dz: d_logits_grad,
        stats,
    });
    backward(&mut ops, &d, fake, &d_outs, db, at0(d_logits_grad), false, Some(at0(d_input_grad)), d_dropout(1));
    backward(&mut ops, &g, at0(noise), &g_outs, b, at0(d_input_grad), true, None, None);
    adam(&mut ops, &g, cfg);
    if let Some(ema) = g_ema {
        let p = EmaParams { len: g_layout.len as u32, beta: cfg.g_ema, ..Default::default() };
        ops.push(Op::EmaUpdate { p, params: g.params, ema });
    }
    ops.push(Op::StepTick);

    let mut sample = vec![];
    forward(&mut sample, &gs, at0(sample_z), SAMPLE_ROWS, None, None);

    Plan {
        bufs: bld.bufs,
        g,
        d,
        stats,
        g_ema,
        d_input,
        train_step: ops,
        sample,
        sample_rows: SAMPLE_ROWS,
        sample_z,
        sample_out,
    }
}
