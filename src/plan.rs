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
//!
//! At `--precision f16` (issue 6) the same step runs with these buffers in f16 (`DType::F16`):
//! every layer's output (activations, D's logits, G's samples), D.input, G's input noise and
//! an f16 copy of each network's parameters ("G.params.f16", "D.params.f16") that the forward
//! and backward matmuls read. Master weights, their gradients, Adam's moments, every activation
//! gradient and the loss statistics stay f32; so do all sums (f32 accumulation in the kernels).
//! Gradients stay f32 because GAN gradients (scaled by 1/batch) sit near f16's subnormal range,
//! where f16 would flush them without loss scaling. Noise, the gathered real batch and the
//! logits are produced or consumed by f32 kernels, so they pass through small cast ops
//! (`Op::Cast`). A weight copy is refreshed by a cast right after each Adam update of its
//! network, and by the `refresh` section whenever the host writes weights (a restore), so it
//! always equals the master weights rounded to f16. The kernels that touch an f16
//! buffer are the `_f16` entry points, picked from the buffers' dtypes (`Op::entry_for`).

use crate::config::{Precision, TrainConfig};
use crate::model::{Activation, Layer, Net, NetLayout, LEAKY_SLOPE};
use crate::params::*;
use crate::rng;

pub type BufId = usize;

/// A place in a buffer: buffer and element offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub buf: BufId,
    pub off: usize,
}

/// How a buffer stores its values. The host always sees f32; an f16 buffer's values are rounded
/// to f16 on every store (on the GPU by the kernels and uploads, on the CPU by the executor).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DType {
    #[default]
    F32,
    F16,
}

impl DType {
    pub fn bytes(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }
}

/// A buffer of `len` values. Its label names the tensor in GPU validation errors.
#[derive(Clone, Debug)]
pub struct BufSpec {
    pub label: String,
    pub len: usize,
    pub dtype: DType,
}

impl BufSpec {
    pub fn f32(label: impl Into<String>, len: usize) -> Self {
        BufSpec { label: label.into(), len, dtype: DType::F32 }
    }

    pub fn f16(label: impl Into<String>, len: usize) -> Self {
        BufSpec { label: label.into(), len, dtype: DType::F16 }
    }
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
    /// Softmax cross-entropy of the classifier: logits `z` (rows, classes), labels (rows).
    SoftmaxXent {
        p: XentParams,
        z: BufId,
        labels: BufId,
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
    /// out[p.out_off + i] = x[p.in_off + i] for i < p.len, between an f32 and an f16 buffer
    /// (`to_f16`: x is f32 and out f16, else the other way round).
    Cast {
        p: EwParams,
        x: BufId,
        out: BufId,
        to_f16: bool,
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
            Op::SoftmaxXent { .. } => "softmax_xent".into(),
            Op::AdamTick { .. } => "adam_tick".into(),
            Op::AdamStep { .. } => "adam_step".into(),
            Op::StepTick => "step_tick".into(),
            Op::EmaUpdate { .. } => "ema_update".into(),
            Op::NoiseNormal { .. } => "noise_normal".into(),
            Op::Gather { .. } => if data_is_u8 { "gather_u8" } else { "gather_f32" }.into(),
            Op::Dropout { .. } => "dropout".into(),
            Op::Cast { to_f16, .. } => if *to_f16 { "cast_to_f16" } else { "cast_to_f32" }.into(),
        }
    }

    /// The entry point for these buffers: an op that touches an f16 buffer runs the `_f16`
    /// variant of its kernel (a cast's entry already names its direction).
    pub fn entry_for(&self, data_is_u8: bool, specs: &[BufSpec]) -> String {
        let base = self.entry(data_is_u8);
        let half = self.buffers().iter().any(|&b| specs[b].dtype == DType::F16);
        if half && !matches!(self, Op::Cast { .. }) {
            format!("{base}_f16")
        } else {
            base
        }
    }

    /// Every buffer the op reads or writes.
    pub fn buffers(&self) -> Vec<BufId> {
        match *self {
            Op::MatmulForward { a, c, out, .. }
            | Op::MatmulBackwardInput { a, c, out, .. }
            | Op::MatmulBackwardWeight { a, c, out, .. } => vec![a, c, out],
            Op::BiasBackward { a, out, .. } => vec![a, out],
            Op::ActivationForward { x, out, .. } | Op::Cast { x, out, .. } => vec![x, out],
            Op::ActivationBackward { y, dy, out, .. } => vec![y, dy, out],
            Op::BceLogits { z, dz, stats, .. } => vec![z, dz, stats],
            Op::SoftmaxXent { z, labels, dz, stats, .. } => vec![z, labels, dz, stats],
            Op::AdamTick { .. } | Op::StepTick => vec![],
            Op::AdamStep { params, grads, moments, .. } => vec![params, grads, moments],
            Op::EmaUpdate { params, ema, .. } => vec![params, ema],
            Op::NoiseNormal { out, .. } | Op::Gather { out, .. } | Op::Dropout { out, .. } => vec![out],
        }
    }

    /// The buffers the op writes.
    pub fn outputs(&self) -> Vec<BufId> {
        match *self {
            Op::MatmulForward { out, .. }
            | Op::MatmulBackwardInput { out, .. }
            | Op::MatmulBackwardWeight { out, .. }
            | Op::BiasBackward { out, .. }
            | Op::ActivationForward { out, .. }
            | Op::ActivationBackward { out, .. }
            | Op::Cast { out, .. }
            | Op::NoiseNormal { out, .. }
            | Op::Gather { out, .. }
            | Op::Dropout { out, .. } => vec![out],
            Op::BceLogits { dz, stats, .. } | Op::SoftmaxXent { dz, stats, .. } => vec![dz, stats],
            Op::AdamTick { .. } | Op::StepTick => vec![],
            Op::AdamStep { params, moments, .. } => vec![params, moments],
            Op::EmaUpdate { ema, .. } => vec![ema],
        }
    }
}

/// Buffers of one network.
#[derive(Clone, Debug)]
pub struct NetBufs {
    pub layout: NetLayout,
    pub params: BufId,
    /// The f16 copy of `params` the matmuls read at `--precision f16`.
    pub params16: Option<BufId>,
    pub grads: BufId,
    /// Adam's m (first `len` values) then v.
    pub moments: BufId,
    /// Output of each layer, after its activation (f16 at `--precision f16`).
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
    /// Refreshes the f16 weight copies from the master weights; run after the host writes
    /// weights. Empty at f32.
    pub refresh: Vec<Op>,
}

/// Rows G is run on per `sample` call.
pub const SAMPLE_ROWS: usize = 256;

impl NetBufs {
    /// The weights the matmuls read: the f16 copy when there is one.
    pub fn weights(&self) -> BufId {
        self.params16.unwrap_or(self.params)
    }
}

pub(crate) struct Builder {
    pub(crate) bufs: Vec<BufSpec>,
    /// Activations in f16 (`--precision f16`).
    pub(crate) half: bool,
}

impl Builder {
    pub(crate) fn buf(&mut self, label: impl Into<String>, len: usize) -> BufId {
        self.bufs.push(BufSpec::f32(label, len.max(1)));
        self.bufs.len() - 1
    }

    fn buf16(&mut self, label: impl Into<String>, len: usize) -> BufId {
        self.bufs.push(BufSpec::f16(label, len.max(1)));
        self.bufs.len() - 1
    }

    /// An activation buffer: f16 at `--precision f16`, else f32.
    fn act(&mut self, label: impl Into<String>, len: usize) -> BufId {
        if self.half {
            self.buf16(label, len)
        } else {
            self.buf(label, len)
        }
    }

    /// A network's parameter, gradient and Adam buffers, and per-layer scratch for `rows` rows.
    pub(crate) fn net(&mut self, layout: &NetLayout, rows: usize) -> NetBufs {
        let name = layout.net.name();
        let params = self.buf(format!("{name}.params"), layout.len);
        let params16 = self.half.then(|| self.buf16(format!("{name}.params.f16"), layout.len));
        let grads = self.buf(format!("{name}.params.grad"), layout.len);
        let moments = self.buf(format!("{name}.adam.moments"), 2 * layout.len);
        let (mut act, mut dact, mut dz) = (vec![], vec![], vec![]);
        for (i, l) in layout.layers.iter().enumerate() {
            let n = rows * l.fan_out;
            act.push(self.act(format!("{name}.fc{}.out", i + 1), n));
            dact.push(self.buf(format!("{name}.fc{}.out.grad", i + 1), n));
            dz.push(self.buf(format!("{name}.fc{}.preact.grad", i + 1), n));
        }
        NetBufs { layout: layout.clone(), params, params16, grads, moments, act, dact, dz }
    }
}

pub(crate) fn slope_for(act: Activation) -> f32 {
    if act == Activation::LeakyRelu {
        LEAKY_SLOPE
    } else {
        0.0
    }
}

/// `matmul_forward` of layer `l` on `rows` rows, offsets of input and output at 0: weights, bias,
/// activation and its slope from the layout.
pub(crate) fn layer_forward(l: &Layer, rows: usize) -> MatmulParams {
    MatmulParams {
        m: rows as u32,
        n: l.fan_out as u32,
        k: l.fan_in as u32,
        act: l.activation.code(),
        c_off: l.w_off as u32,
        bias_off: l.b_off as u32,
        slope: slope_for(l.activation),
        ..Default::default()
    }
}

/// Dropout on a network's hidden layer outputs during one pass. The mask is keyed by (seed, step,
/// pass, layer), so the backward pass recomputes it instead of storing it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dropout {
    pub(crate) rate: f32,
    /// 0: D in the D step, 1: D in the G step.
    pub(crate) pass: u32,
    pub(crate) seed: u64,
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
pub(crate) fn forward(
    ops: &mut Vec<Op>,
    net: &NetBufs,
    input: At,
    rows: usize,
    last_out: Option<At>,
    dropout: Option<Dropout>,
) {
    let n_layers = net.layout.layers.len();
    let mut x = input;
    for (i, l) in net.layout.layers.iter().enumerate() {
        let out = match last_out {
            Some(at) if i + 1 == n_layers => at,
            _ => At { buf: net.act[i], off: 0 },
        };
        ops.push(Op::MatmulForward {
            p: MatmulParams { a_off: x.off as u32, out_off: out.off as u32, ..layer_forward(l, rows) },
            a: x.buf,
            c: net.weights(),
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
pub(crate) fn backward(
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
                c: net.weights(),
                out: t.buf,
            });
        }
    }
}

/// `out[off..off + len] = x[..len]` across dtypes (see `Op::Cast`).
fn cast(ops: &mut Vec<Op>, x: BufId, out: At, len: usize, to_f16: bool) {
    let p = EwParams { len: len as u32, out_off: out.off as u32, ..Default::default() };
    ops.push(Op::Cast { p, x, out: out.buf, to_f16 });
}

/// Refreshes a network's f16 weight copy from its f32 master weights (nothing at f32).
fn cast_weights(ops: &mut Vec<Op>, net: &NetBufs) {
    if let Some(p16) = net.params16 {
        cast(ops, net.params, At { buf: p16, off: 0 }, net.layout.len, true);
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
        decay_end: cfg.lr_decay_end,
        decay_inv: match cfg.lr_decay_steps() {
            0 => 0.0,
            n => 1.0 / n as f32,
        },
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
    let half = cfg.precision == Precision::F16;
    let mut bld = Builder { bufs: vec![], half };
    // D sees `pack` samples per decision: the rows of D.input, read pack at a time, are its
    // rows (row-major, so packing real with real and fake with fake needs no copy).
    let pack = cfg.model.pack.max(1);
    let db = b / pack;
    let g = bld.net(&g_layout, b);
    let d = bld.net(&d_layout, 2 * db);
    let stats = bld.buf("stats", 4);
    let noise = bld.buf("noise", b * latent);
    // f16: the f32 kernels' outputs (noise, the real batch) and input (logits) get f16 twins.
    let noise16 = half.then(|| bld.buf16("noise.f16", b * latent));
    let d_input = bld.act("D.input", 2 * b * dim);
    let real32 = half.then(|| bld.buf("D.input.real", b * dim));
    let logits32 = half.then(|| bld.buf("D.logits", 2 * db));
    let d_input_grad = bld.buf("D.input.grad", b * dim);
    let d_logits_grad = bld.buf("D.logits.grad", 2 * b);
    let sample_z = bld.act("sample.z", SAMPLE_ROWS * latent);
    // Sampling runs G's layers at SAMPLE_ROWS rows: own scratch, shared parameters.
    let sample_act: Vec<BufId> = (g_layout.layers.iter().enumerate())
        .map(|(i, l)| bld.act(format!("sample.G.fc{}.out", i + 1), SAMPLE_ROWS * l.fan_out))
        .collect();
    let sample_out = *sample_act.last().expect("G has layers");
    let g_ema = (cfg.g_ema > 0.0).then(|| bld.buf("G.params.ema", g_layout.len));
    // Sampling reads the average when there is one; at f16 through its own f16 copy, cast at the
    // start of each sampling call (sampling is rare, so the training step does not pay for it).
    let g_ema16 = g_ema.and_then(|_| half.then(|| bld.buf16("G.params.ema.f16", g_layout.len)));
    let gs = match g_ema {
        Some(ema) => NetBufs { act: sample_act, params: ema, params16: g_ema16, ..g.clone() },
        None => NetBufs { act: sample_act, ..g.clone() },
    };

    let (seed_lo, seed_hi) = (cfg.seed as u32, (cfg.seed >> 32) as u32);
    let noise_p = |stream| RandomParams { len: (b * latent) as u32, stream, seed_lo, seed_hi, ..Default::default() };
    let fake = At { buf: d_input, off: b * dim };
    let at0 = |buf| At { buf, off: 0 };
    let g_outs: Vec<At> = g.act[..g.act.len() - 1].iter().map(|&x| at0(x)).chain([fake]).collect();
    let d_outs: Vec<At> = d.act.iter().map(|&x| at0(x)).collect();
    let d_logits = *d_outs.last().expect("D has layers");
    let mut ops = vec![];
    let g_input = at0(noise16.unwrap_or(noise));
    // Noise for G, drawn in f32 and (at f16) cast to G's f16 input.
    let draw_noise = |ops: &mut Vec<Op>, stream| {
        ops.push(Op::NoiseNormal { p: noise_p(stream), out: noise });
        if let Some(n16) = noise16 {
            cast(ops, noise, at0(n16), b * latent, true);
        }
    };
    // The loss reads f32 logits: at f16, D's f16 logits cast to an f32 copy.
    let loss_z = |ops: &mut Vec<Op>, rows: usize| match logits32 {
        Some(l32) => {
            cast(ops, d_logits.buf, at0(l32), rows, false);
            at0(l32)
        }
        None => d_logits,
    };

    let d_dropout = |pass| (cfg.d_dropout > 0.0).then_some(Dropout { rate: cfg.d_dropout, pass, seed: cfg.seed });
    let inv_b = 1.0 / db as f32;
    // D steps: `d_steps` D updates per training step, each on fresh noise and a fresh real batch.
    // The first uses noise stream 0 and dropout pass 0, the G step 1, later D steps 2, 3, ...
    let d_steps = cfg.d_steps.max(1);
    for j in 0..d_steps {
        let (stream, pass) = if j == 0 { (rng::STREAM_D, 0) } else { (1 + j as u32, 1 + j as u32) };
        draw_noise(&mut ops, stream);
        forward(&mut ops, &g, g_input, b, Some(fake), None);
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
            out: real32.unwrap_or(d_input),
        });
        if let Some(r32) = real32 {
            cast(&mut ops, r32, at0(d_input), b * dim, true);
        }
        forward(&mut ops, &d, at0(d_input), 2 * db, None, d_dropout(pass));
        let z = loss_z(&mut ops, 2 * db);
        ops.push(Op::BceLogits {
            p: LossParams {
                rows: 2 * db as u32,
                n_first: db as u32,
                label_first: cfg.real_label,
                label_second: 0.0,
                scale_first: inv_b,
                scale_second: inv_b,
                z_off: z.off as u32,
                dz_off: 0,
                slot_loss: SLOT_D_LOSS,
                slot_prob_first: SLOT_D_REAL,
                slot_prob_second: SLOT_D_FAKE,
                ..Default::default()
            },
            z: z.buf,
            dz: d_logits_grad,
            stats,
        });
        backward(&mut ops, &d, at0(d_input), &d_outs, 2 * db, at0(d_logits_grad), true, None, d_dropout(pass));
        adam(&mut ops, &d, cfg);
        cast_weights(&mut ops, &d);
    }

    // G step.
    draw_noise(&mut ops, rng::STREAM_G);
    forward(&mut ops, &g, g_input, b, Some(fake), None);
    forward(&mut ops, &d, fake, db, None, d_dropout(1));
    let z = loss_z(&mut ops, db);
    ops.push(Op::BceLogits {
        p: LossParams {
            rows: db as u32,
            n_first: db as u32,
            label_first: 1.0,
            label_second: 0.0,
            scale_first: inv_b,
            scale_second: 0.0,
            z_off: z.off as u32,
            dz_off: 0,
            slot_loss: SLOT_G_LOSS,
            slot_prob_first: NO_SLOT,
            slot_prob_second: NO_SLOT,
            ..Default::default()
        },
        z: z.buf,
        dz: d_logits_grad,
        stats,
    });
    backward(&mut ops, &d, fake, &d_outs, db, at0(d_logits_grad), false, Some(at0(d_input_grad)), d_dropout(1));
    backward(&mut ops, &g, g_input, &g_outs, b, at0(d_input_grad), true, None, None);
    adam(&mut ops, &g, cfg);
    cast_weights(&mut ops, &g);
    if let Some(ema) = g_ema {
        let p = EmaParams { len: g_layout.len as u32, beta: cfg.g_ema, ..Default::default() };
        ops.push(Op::EmaUpdate { p, params: g.params, ema });
    }
    ops.push(Op::StepTick);

    let mut refresh = vec![];
    cast_weights(&mut refresh, &g);
    cast_weights(&mut refresh, &d);
    let mut sample = vec![];
    if g_ema.is_some() {
        cast_weights(&mut sample, &gs);
    }
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
        refresh,
    }
}
