//! The GAN training step written down once, as data: the buffers it uses and the kernel calls it
//! makes. The GPU executor compiles each call into a pipeline, a uniform and a bind group at
//! start-up and records them in order; the CPU executor interprets the same list with the CPU
//! twins. So both backends run the very same sequence of the very same operations.
//!
//! One training step (DESIGN.md's data path):
//!   D step: noise -> G forward -> gather real batch -> D forward on [real; fake] -> BCE (1 / 0)
//!           -> D backward (weights) -> Adam(D)
//!   G step: fresh noise -> G forward -> D forward on fake -> BCE (label 1, non-saturating)
//!           -> D backward to its input (no weight gradients) -> G backward -> Adam(G)
//!           [-> EMA of G] -> step += 1
//!
//! D judges [real; fake] in one pass, the logits in one buffer, reals first. A D with batch norm
//! (the convolutional model) gives the reals and the fakes batch statistics of their own, as
//! PyTorch's DCGAN recipe does with two passes: the pass has two groups of rows
//! (`nn::Io::groups`), which batch norm normalises apart; on the CPU every sum over the batch
//! (the weight and bias gradients) runs group by group in the order two passes would, so the
//! bits are those of two passes, while one dispatch per layer serves both. With batch norm in G, G's weight average keeps
//! running statistics of its own: after each update the averaged G runs forward in training mode
//! on the step's noise.
//!
//! A conditional model (`--conditional`, `cfg.model.classes` > 0) adds labels: the data table
//! holds each sample's class after its values, gathered with the real batch into the first half
//! of the `labels` buffer; each update first draws its fakes' classes (`random_labels`, uniform,
//! keyed like its noise: fresh labels for every update, as its noise is fresh) into the second
//! half. G's input rows are [class embedding; z] (the noise kernel leaves the embedding's columns
//! free, G's `embed` layer fills them in place) and D's last layer is a projection head reading
//! the labels of its rows (`nn::ProjectionHead`).
//!
//! At `--precision f16` the same step runs with activations in f16 (`DType::F16`): every layer's
//! output, D.input, G's input (a cast of the f32 noise, G's first layer) and an f16 copy of each
//! network's parameters that the matmuls read. Master weights, their gradients, Adam's moments,
//! every activation gradient and the loss statistics stay f32; so do all sums (f32 accumulation
//! in the kernels). Gradients stay f32 because GAN gradients (scaled by 1/batch) sit near f16's
//! subnormal range, where f16 would flush them without loss scaling. The gathered real batch
//! passes through a cast into D.input, and D's last layer casts its logits back to the f32 the
//! loss reads. A weight copy is refreshed by a cast right after each Adam update of its network,
//! and by the `refresh` section whenever the host writes weights (a restore), so it always equals
//! the master weights rounded to f16. The kernels that touch an f16 buffer are the `_f16` entry
//! points, picked by the executor from the buffers' dtypes.

use crate::config::train::Loss;
use crate::config::{Precision, TrainConfig};
use crate::ir::state::{OPTIMIZER_D, OPTIMIZER_G};
use crate::ir::{At, BufId, BufSpec, Buffers, DataChunks, Op};
use crate::kernels::activation::{Activation, Cast, EwParams};
use crate::kernels::adam::{AdamParams, AdamStep, StepTick};
use crate::kernels::ema::{EmaParams, EmaUpdate};
use crate::kernels::head::HeadLoss;
use crate::kernels::loss::{BceLogits, HingeLogits, LossParams, NO_SLOT};
use crate::kernels::random::{self, NoiseNormal, RandomLabels, RandomParams};
use crate::nn::{spectral, Mode, Net, NetActs, NetParams, ParamGrads, Pass, Weights};
use crate::rng;

/// Rows G is run on per `sample` call.
pub const SAMPLE_ROWS: usize = 256;

/// Slots of the 4-float statistics buffer the losses write.
pub const SLOT_D_LOSS: u32 = 0;
pub const SLOT_G_LOSS: u32 = 1;
pub const SLOT_D_REAL: u32 = 2;
pub const SLOT_D_FAKE: u32 = 3;

/// G's weight average (`--g-ema`): its buffers, G's layout.
#[derive(Clone, Debug)]
pub struct EmaBufs {
    pub params: BufId,
    /// Its f16 copy for sampling at `--precision f16`, cast at the start of each sampling call
    /// (sampling is rare, so the training step does not pay for it).
    pub params16: Option<BufId>,
    /// Its own running statistics, when G has batch norm.
    pub state: Option<BufId>,
}

impl EmaBufs {
    fn weights(&self) -> Weights {
        Weights { read: self.params16.unwrap_or(self.params), grads: None, state: self.state }
    }
}

/// The whole program: buffers, the ops of one training step, of sampling G, and of refreshing
/// the f16 weight copies.
#[derive(Debug)]
pub struct GanProgram {
    pub bufs: Vec<BufSpec>,
    pub g_net: Net,
    pub d_net: Net,
    pub g: NetParams,
    pub d: NetParams,
    pub stats: BufId,
    pub g_ema: Option<EmaBufs>,
    /// [real; fake] rows, the input of D: (2 batch, dim).
    pub d_input: BufId,
    /// A conditional model's labels of D's rows, reals then fakes (2 batch f32 class indices).
    pub labels: Option<BufId>,
    pub train_step: Vec<Op>,
    /// G forward (eval mode) on `sample_rows` latent rows in `sample_z`, output in `sample_out`;
    /// with G's weight average when one is kept.
    pub sample: Vec<Op>,
    pub sample_rows: usize,
    pub sample_z: BufId,
    pub sample_out: BufId,
    /// A conditional G's class of each sampled row (f32 class indices).
    pub sample_labels: Option<BufId>,
    /// Refreshes the f16 weight copies from the master weights; empty at f32.
    pub refresh: Vec<Op>,
}

/// The buffers and networks the step's sections are built from.
struct Builder<'a> {
    cfg: &'a TrainConfig,
    /// The data set's chunks (one binding each) and whether its values are bytes.
    chunks: &'a DataChunks,
    data_u8: bool,
    bufs: Buffers,
    g_net: Net,
    d_net: Net,
    g: NetParams,
    d: NetParams,
    g_acts: NetActs,
    /// D's buffers, for [real; fake] in one pass.
    d_acts: NetActs,
    /// D judges reals and fakes with batch statistics of their own (batch norm): the pass has
    /// two groups of rows (`nn::Io::groups`).
    apart: bool,
    noise: BufId,
    d_input: BufId,
    /// At f16: the gathered batch in f32, cast into D.input.
    real32: Option<BufId>,
    d_input_grad: BufId,
    /// D's logits, reals first, and their gradient.
    d_logits: BufId,
    d_logits_grad: BufId,
    stats: BufId,
    /// A conditional model's class labels (f32 class indices) of D's rows: the real batch's
    /// (gathered from the data table's last column), then the fakes' (`random_labels`).
    labels: Option<BufId>,
}

impl Builder<'_> {
    fn batch(&self) -> usize {
        self.cfg.batch_size
    }

    /// D's rows per pass over one batch: `pack` samples make one row.
    fn d_rows(&self) -> usize {
        self.cfg.batch_size / self.cfg.model.pack.max(1)
    }

    fn fake(&self) -> At {
        At { buf: self.d_input, off: self.batch() * self.cfg.model.data_dim }
    }

    /// G on noise stream `stream` of the step (`noise_op`), into D.input's fake half; a
    /// conditional G with the fakes' labels (`fake_labels`).
    fn g_pass(&self, stream: u32) -> Pass {
        let input = At { buf: self.noise, off: stream as usize * self.batch() * self.cfg.model.g_input_dim() };
        let labels = self.labels.map(|buf| At { buf, off: self.batch() });
        Pass {
            out: Some(self.fake()),
            labels,
            ..Pass::new(input, self.batch(), Mode::Train { pass: 0 }, self.cfg.seed)
        }
    }

    /// D on `rows` rows from `input`, its logits at row `logit_row` of the logits buffer, a
    /// conditional D with the labels from `label_row` of the labels buffer.
    fn d_pass(&self, input: At, rows: usize, logit_row: usize, label_row: usize, pass: u32) -> Pass {
        let out = Some(At { buf: self.d_logits, off: logit_row });
        let labels = self.labels.map(|buf| At { buf, off: label_row });
        Pass { out, labels, ..Pass::new(input, rows, Mode::Train { pass }, self.cfg.seed) }
    }

    /// The noise of every update of the step in one dispatch: stream k (0 the first D update, 1
    /// the G update, 2, 3, ... the later D updates) at k batch x G's input width of the noise
    /// buffer. A conditional G's input rows hold the class embedding first, so z goes to the
    /// columns after it.
    fn noise_op(&self) -> Op {
        let (b, m, seed) = (self.batch(), &self.cfg.model, self.cfg.seed);
        let p = RandomParams {
            len: (b * m.latent_dim) as u32,
            stream: rng::STREAM_D,
            streams: self.cfg.d_steps.max(1) as u32 + 1,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            ..Default::default()
        };
        let p = match m.g_embed_dim() {
            0 => p,
            e => RandomParams { dim: m.latent_dim as u32, src_stride: m.g_input_dim() as u32, src_col: e as u32, ..p },
        };
        NoiseNormal { p, out: self.noise }.into()
    }

    /// A conditional model's fake labels for the update on noise stream `stream`: uniform
    /// classes (`random_labels`, keyed as the noise) into the second half of the labels, which
    /// G and D read.
    fn fake_labels(&self, ops: &mut Vec<Op>, stream: u32) {
        let Some(labels) = self.labels else { return };
        let (b, seed) = (self.batch(), self.cfg.seed);
        let p = RandomParams {
            len: b as u32,
            stream,
            out_off: b as u32,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            classes: self.cfg.model.classes as u32,
            group: self.cfg.model.pack.max(1) as u32,
            ..Default::default()
        };
        ops.push(RandomLabels { p, out: labels }.into());
    }

    /// This step's real batch (the `j`-th of `d_steps`) into D.input's first half; a
    /// conditional model's data table has each sample's label after its values, gathered in the
    /// same order into the first half of the labels.
    fn gather_real(&self, ops: &mut Vec<Op>, j: usize) {
        let (cfg, n, b, dim) = (self.cfg, self.chunks.n(), self.batch(), self.cfg.model.data_dim);
        let stride = if self.labels.is_some() { dim as u32 + 1 } else { 0 };
        let p = RandomParams {
            len: (b * dim) as u32,
            seed_lo: cfg.seed as u32,
            seed_hi: (cfg.seed >> 32) as u32,
            rows: b as u32,
            dim: dim as u32,
            n: n as u32,
            steps_per_epoch: (n / b) as u32,
            half_bits: rng::feistel_half_bits(n as u32),
            scale: cfg.data_scale,
            shift: cfg.data_shift,
            sub_steps: cfg.d_steps.max(1) as u32,
            sub_index: j as u32,
            src_stride: stride,
            ..Default::default()
        };
        ops.extend(random::gather_chunks(self.data_u8, p, self.real32.unwrap_or(self.d_input), self.chunks));
        if let Some(labels) = self.labels {
            let p = RandomParams { len: b as u32, dim: 1, src_col: dim as u32, scale: 1.0, shift: 0.0, ..p };
            ops.extend(random::gather_chunks(self.data_u8, p, labels, self.chunks));
        }
        if let Some(r32) = self.real32 {
            let p = EwParams { len: (b * dim) as u32, ..Default::default() };
            ops.push(Cast { p, x: r32, out: self.d_input, to_f16: true }.into());
        }
    }

    /// D's loss on its logits (`rows` of them): with `g_step`, G's loss on fakes only; else D's,
    /// real rows first, then fakes. BCE: labels 1 (or the smoothed real label) and 0, G's
    /// non-saturating loss against 1. Hinge: signs +1 and -1 with the margin, G's -D(G(z)).
    fn head_loss(&self, rows: usize, g_step: bool) -> HeadLoss {
        let p = self.bce_params(rows, g_step);
        match self.cfg.loss {
            Loss::Bce => HeadLoss { p, hinge: false, stats: self.stats },
            Loss::Hinge => {
                let p = LossParams { label_second: -1.0, hinge_margin: !g_step as u32, ..p };
                HeadLoss { p, hinge: true, stats: self.stats }
            }
        }
    }

    /// The loss kernel on D's logits (where D's head is not fused with it).
    fn loss(&self, loss: HeadLoss) -> Op {
        let (p, z, dz, stats) = (loss.p, self.d_logits, self.d_logits_grad, loss.stats);
        if loss.hinge {
            HingeLogits { p, z, dz, stats }.into()
        } else {
            BceLogits { p, z, dz, stats }.into()
        }
    }

    /// D's forward pass `pass` with weights `w`, the loss on its `rows` logits (G's with
    /// `g_step`) and D's backward pass (to `dinput` if given, its weights' gradients as `params`
    /// says). Where D ends in a one-logit linear head, the head, the loss and the head's backward
    /// pass are one dispatch (`kernels::head`): two fewer than forward, loss, backward.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        ops: &mut Vec<Op>,
        w: Weights,
        pass: &Pass,
        dinput: Option<At>,
        params: ParamGrads,
        rows: usize,
        g_step: bool,
    ) {
        let (d, acts, loss) = (&self.d_net, &self.d_acts, self.head_loss(rows, g_step));
        // The fused head keeps the logits' gradient after the logits, in their buffer.
        let head_dout = At { buf: self.d_logits, off: 2 * self.d_rows() };
        match d.fused_head(w, acts, pass, head_dout, dinput, params, loss) {
            Some(head) => {
                d.forward_body(ops, w, acts, pass);
                ops.push(head);
                d.backward_body(ops, w, acts, pass, head_dout, dinput, params);
            }
            None => {
                let dout = At::start(self.d_logits_grad);
                d.forward(ops, w, acts, pass);
                ops.push(self.loss(loss));
                d.backward(ops, w, acts, pass, dout, dinput, params);
            }
        }
    }

    fn bce_params(&self, rows: usize, g_step: bool) -> LossParams {
        let inv_b = 1.0 / self.d_rows() as f32;
        if g_step {
            LossParams {
                rows: rows as u32,
                n_first: rows as u32,
                label_first: 1.0,
                scale_first: inv_b,
                slot_loss: SLOT_G_LOSS,
                slot_prob_first: NO_SLOT,
                slot_prob_second: NO_SLOT,
                ..Default::default()
            }
        } else {
            LossParams {
                rows: rows as u32,
                n_first: (rows / 2) as u32,
                label_first: self.cfg.real_label,
                label_second: 0.0,
                scale_first: inv_b,
                scale_second: inv_b,
                slot_loss: SLOT_D_LOSS,
                slot_prob_first: SLOT_D_REAL,
                slot_prob_second: SLOT_D_FAKE,
                ..Default::default()
            }
        }
    }

    /// The Adam update of `net`, its `earlier`-th in the step (its counters advance at the step's
    /// end, in `step_tick`), then the f16 copy of its weights.
    fn adam(&self, ops: &mut Vec<Op>, net: &Net, bufs: &NetParams, optimizer: u32, earlier: usize) {
        let cfg = self.cfg;
        let p = AdamParams {
            len: net.params_len as u32,
            net: optimizer,
            lr: if optimizer == OPTIMIZER_D { cfg.d_lr() } else { cfg.lr },
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            decay_end: cfg.lr_decay_end,
            decay_inv: match cfg.lr_decay_steps() {
                0 => 0.0,
                n => 1.0 / n as f32,
            },
            earlier: earlier as u32,
            ..Default::default()
        };
        if let (Some(sn), Some(state)) = (bufs.sn, bufs.state) {
            // The gradients of W / sigma, every pass added, become those of W.
            spectral::backward(ops, net, bufs.grads, state, sn);
        }
        ops.push(AdamStep { p, params: bufs.params, grads: bufs.grads, moments: bufs.moments }.into());
        net.cast_weights(ops, bufs.params, bufs.params16);
        if let (Some(sn), Some(state)) = (bufs.sn, bufs.state) {
            // One power iteration on the new weights, and the weights the next passes read.
            spectral::refresh(ops, net, bufs.params, state, sn, true);
        }
    }

    /// D update `j` of the step, on fresh noise and a fresh real batch. The first uses noise
    /// stream 0 and dropout pass 0, the G step 1, later D steps 2, 3, ... (the first makes the
    /// noise of them all); with batch norm the
    /// fakes are a second group of the pass, whose dropout and augmentation draw as a pass of
    /// its own (128 on: `nn::Mode::for_group`).
    fn d_step(&self, ops: &mut Vec<Op>, j: usize) {
        let (stream, pass) = if j == 0 { (rng::STREAM_D, 0) } else { (1 + j as u32, 1 + j as u32) };
        if j == 0 {
            ops.push(self.noise_op());
        }
        self.fake_labels(ops, stream);
        self.g_net.forward(ops, self.g.weights(), &self.g_acts, &self.g_pass(stream));
        self.gather_real(ops, j);
        let (db, w) = (self.d_rows(), self.d.weights());
        let groups = if self.apart { 2 } else { 1 };
        let both = Pass { groups, ..self.d_pass(At::start(self.d_input), 2 * db, 0, 0, pass) };
        self.judge(ops, w, &both, None, ParamGrads::Write, 2 * db, false);
        self.adam(ops, &self.d_net, &self.d, OPTIMIZER_D, j);
    }

    /// The G update through D (whose weights it does not touch), then G's weight average.
    fn g_step(&self, ops: &mut Vec<Op>) {
        self.fake_labels(ops, rng::STREAM_G);
        let g_pass = self.g_pass(rng::STREAM_G);
        self.g_net.forward(ops, self.g.weights(), &self.g_acts, &g_pass);
        let rows = self.d_rows();
        // D's first layer applies the derivative of G's output activation to D.input's
        // gradient where it can, so that G's last layer takes it as its dz (one kernel fewer).
        let fold = self.d_net.input_fold(self.g_net.output_activation(), self.cfg.precision == Precision::F16);
        let pass = Pass { input_act: fold, ..self.d_pass(self.fake(), rows, 0, self.batch(), 1) };
        let dinput = At::start(self.d_input_grad);
        self.judge(ops, self.d.weights(), &pass, Some(dinput), ParamGrads::None, rows, true);
        let g_back = Pass { dout_is_dz: fold != Activation::Identity, ..g_pass };
        self.g_net.backward(ops, self.g.weights(), &self.g_acts, &g_back, dinput, None, ParamGrads::Write);
        self.adam(ops, &self.g_net, &self.g, OPTIMIZER_G, 0);
    }

    /// G's weight average after G's update; with batch norm, its own running statistics from a
    /// training-mode pass on the step's noise (into scratch of its own).
    fn ema_step(&mut self, ops: &mut Vec<Op>, ema: &EmaBufs) {
        let p = EmaParams { len: self.g_net.params_len as u32, beta: self.cfg.g_ema, ..Default::default() };
        ops.push(EmaUpdate { p, params: self.g.params, ema: ema.params }.into());
        if ema.state.is_some() {
            let rows = self.batch();
            let acts = self.g_net.alloc_acts(&mut self.bufs, "G_ema", rows);
            let pass = Pass { out: None, ..self.g_pass(rng::STREAM_G) };
            self.g_net.forward(ops, ema.weights(), &acts, &pass);
        }
    }
}

impl GanProgram {
    /// The program for a configuration and a data set of `n` samples (`data_u8`: stored as bytes)
    /// in one binding. A conditional model's data set is the labelled table (`data::labels`).
    pub fn build(cfg: &TrainConfig, n: usize, data_u8: bool) -> Self {
        Self::build_chunked(cfg, &DataChunks::whole(n), data_u8)
    }

    /// The same for a data set bound in `chunks` (one gather per chunk).
    pub fn build_chunked(cfg: &TrainConfig, chunks: &DataChunks, data_u8: bool) -> Self {
        let half = cfg.precision == Precision::F16;
        let (b, dim) = (cfg.batch_size, cfg.model.data_dim);
        let g_net = cfg.model.generator(half);
        let d_net = cfg.model.discriminator(cfg.d_dropout, half);
        let mut bufs = Buffers::new(half);
        let db = b / cfg.model.pack.max(1);
        let (g, d) = (g_net.alloc(&mut bufs), d_net.alloc(&mut bufs));
        let g_acts = g_net.alloc_acts(&mut bufs, "G", b);
        // Batch norm in D: reals and fakes with statistics of their own, in one pass.
        let apart = d_net.has_batch_norm();
        let d_acts = d_net.alloc_acts(&mut bufs, "D", 2 * db);
        let stats = bufs.f32("stats", 4);
        // The noise of every update of a step (`noise_op`), in G's input rows.
        let noise = bufs.f32("noise", (cfg.d_steps.max(1) + 1) * b * cfg.model.g_input_dim());
        let d_input = bufs.act("D.input", 2 * b * dim);
        let real32 = half.then(|| bufs.f32("D.input.real", b * dim));
        let d_input_grad = bufs.f32("D.input.grad", b * dim);
        // The logits, then room for their gradient where D's head is fused with the loss
        // (`kernels::head`); the loss kernel of an unfused head writes D.logits.grad.
        let d_logits = bufs.f32("D.logits", 2 * db + 2 * db);
        let d_logits_grad = bufs.f32("D.logits.grad", 2 * b);
        let labels = (cfg.model.classes > 0).then(|| bufs.f32("labels", 2 * b));
        let mut s = Builder {
            cfg,
            chunks,
            data_u8,
            bufs,
            g_net,
            d_net,
            g,
            d,
            g_acts,
            d_acts,
            apart,
            noise,
            d_input,
            real32,
            d_input_grad,
            d_logits,
            d_logits_grad,
            stats,
            labels,
        };
        let g_ema = (cfg.g_ema > 0.0).then(|| EmaBufs {
            params: s.bufs.f32("G.params.ema", s.g_net.params_len),
            params16: half.then(|| s.bufs.f16("G.params.ema.f16", s.g_net.params_len)),
            state: (s.g_net.state_len > 0).then(|| s.bufs.f32("G.state.ema", s.g_net.state_len)),
        });

        let mut train_step = vec![];
        for j in 0..cfg.d_steps.max(1) {
            s.d_step(&mut train_step, j);
        }
        s.g_step(&mut train_step);
        if let Some(ema) = &g_ema {
            s.ema_step(&mut train_step, ema);
        }
        let updates = AdamParams {
            d_updates: cfg.d_steps.max(1) as u32,
            g_updates: 1,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            ..Default::default()
        };
        train_step.push(StepTick { p: updates }.into());

        let mut refresh = vec![];
        s.g_net.cast_weights(&mut refresh, s.g.params, s.g.params16);
        s.d_net.cast_weights(&mut refresh, s.d.params, s.d.params16);
        if let (Some(sn), Some(state)) = (s.d.sn, s.d.state) {
            // D's normalised weights from the stored v (u and sigma recomputed, u to its bits).
            spectral::refresh(&mut refresh, &s.d_net, s.d.params, state, sn, false);
        }
        let (sample, sample_z, sample_out, sample_labels) = sample_section(&mut s, g_ema.as_ref());
        GanProgram {
            bufs: s.bufs.specs,
            g_net: s.g_net,
            d_net: s.d_net,
            g: s.g,
            d: s.d,
            stats,
            g_ema,
            d_input,
            labels,
            train_step,
            sample,
            sample_rows: SAMPLE_ROWS,
            sample_z,
            sample_out,
            sample_labels,
            refresh,
        }
    }
}

/// G in eval mode on SAMPLE_ROWS rows, with its own scratch and the weight average if kept; a
/// conditional G's input rows have room for the class embedding before z, and its labels a
/// buffer of their own.
fn sample_section(s: &mut Builder, ema: Option<&EmaBufs>) -> (Vec<Op>, BufId, BufId, Option<BufId>) {
    let sample_z = s.bufs.f32("sample.z", SAMPLE_ROWS * s.cfg.model.g_input_dim());
    let sample_labels = s.labels.map(|_| s.bufs.f32("sample.labels", SAMPLE_ROWS));
    let acts = s.g_net.alloc_acts(&mut s.bufs, "sample.G", SAMPLE_ROWS);
    let mut ops = vec![];
    let weights = match ema {
        Some(e) => {
            s.g_net.cast_weights(&mut ops, e.params, e.params16);
            Weights { state: e.state.or(s.g.state), ..e.weights() }
        }
        None => Weights { grads: None, ..s.g.weights() },
    };
    let labels = sample_labels.map(At::start);
    let pass = Pass { labels, ..Pass::new(At::start(sample_z), SAMPLE_ROWS, Mode::Eval, s.cfg.seed) };
    s.g_net.forward(&mut ops, weights, &acts, &pass);
    (ops, sample_z, acts.output(), sample_labels)
}
