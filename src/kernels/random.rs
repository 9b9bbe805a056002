//! Counter-based randomness keyed by (seed, step) (random.wgsl, random_f16.wgsl): the noise G
//! draws, the batch gather in each step's epoch order, the class labels of fake batches, and
//! dropout masks. No host work and no
//! stored RNG state per step; `crate::rng` computes the same bits on the CPU.

use super::{Entry, Family, Slot};
use crate::ir::kernel::groups_1d;
use crate::ir::{BufId, DataChunks, DataView, Host, Kernel, Res, Span, UniformLayout};
use crate::rng;

crate::uniform! {
    /// `RandomParams` in random.wgsl.
    pub struct RandomParams {
        pub len: u32,
        pub stream: u32,
        pub seed_lo: u32,
        pub seed_hi: u32,
        pub out_off: u32,
        pub rows: u32,
        pub dim: u32,
        pub n: u32,
        pub steps_per_epoch: u32,
        pub half_bits: u32,
        pub scale: f32,
        pub shift: f32,
        /// gather: D updates per training step (0 is read as 1) and which of them this batch feeds;
        /// the batch counter is step * sub_steps + sub_index.
        pub sub_steps: u32,
        pub sub_index: u32,
        /// gather: values per data set row (0 is read as `dim`) and the first column read, so that
        /// one resident table can hold several fields (the classifier's pixels, then its label).
        pub src_stride: u32,
        pub src_col: u32,
        /// gather: the data rows the bound chunk holds, [row_lo, row_hi) (row_hi 0: all `n`
        /// rows); batch rows whose source lies outside are left as they are.
        pub row_lo: u32,
        pub row_hi: u32,
        /// noise_normal: consecutive streams from `stream`, `len` values each, one after the
        /// other from `out_off` (0 is read as 1): every noise of a step in one dispatch. With
        /// `dim` > 0 each stream's values are rows of `dim` placed at column `src_col` of rows of
        /// `src_stride` (a conditional G's input, the class embedding in its other columns).
        pub streams: u32,
        /// random_labels: labels in [0, classes), shared by consecutive groups of `group`
        /// samples (0 is read as 1: PacGAN's packs share one label).
        pub classes: u32,
        pub group: u32,
        pub _pad1: u32,
        pub _pad2: u32,
        pub _pad3: u32,
    }
}

impl RandomParams {
    /// noise_normal's streams: at least 1.
    pub fn stream_count(&self) -> usize {
        self.streams.max(1) as usize
    }

    /// noise_normal: the values one stream spans, its `len` values packed (`dim` 0) or rows of
    /// `dim` placed in rows of `src_stride` at column `src_col`.
    pub fn noise_span(&self) -> usize {
        match self.dim {
            0 => self.len as usize,
            d => (self.len / d) as usize * self.src_stride as usize,
        }
    }

    /// noise_normal: where value `i` of a stream goes from the stream's start.
    pub fn noise_place(&self, i: usize) -> usize {
        match self.dim as usize {
            0 => i,
            d => (i / d) * self.src_stride as usize + self.src_col as usize + i % d,
        }
    }

    /// The gather's batch counter (wrapping like the GPU's u32 arithmetic).
    pub fn batch_counter(&self, step: u32) -> u32 {
        step.wrapping_mul(self.sub_steps.max(1)).wrapping_add(self.sub_index)
    }

    /// Values per row of the resident data set.
    pub fn row_stride(&self) -> u32 {
        if self.src_stride == 0 {
            self.dim
        } else {
            self.src_stride
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed_lo as u64 | (self.seed_hi as u64) << 32
    }

    /// One past the last row of the bound chunk.
    pub fn row_end(&self) -> u32 {
        if self.row_hi == 0 {
            self.n
        } else {
            self.row_hi
        }
    }
}

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

pub const FAMILY: Family = Family {
    name: "random",
    wgsl: include_str!("../../shaders/random.wgsl"),
    f16: false,
    unchecked: false,
    entries: &[
        Entry { name: "noise_normal", slots: &[U(0), U(1), RW(3)] },
        Entry { name: "gather_u8", slots: &[U(0), U(1), R(2), RW(3)] },
        Entry { name: "gather_f32", slots: &[U(0), U(1), R(2), RW(3)] },
        Entry { name: "dropout", slots: &[U(0), U(1), RW(3)] },
        Entry { name: "random_labels", slots: &[U(0), U(1), RW(3)] },
    ],
    uniforms: &[RandomParams::INFO],
};

pub const FAMILY_F16: Family = Family {
    name: "random_f16",
    wgsl: include_str!("../../shaders/random_f16.wgsl"),
    f16: true,
    unchecked: false,
    entries: &[Entry { name: "dropout_f16", slots: &[U(0), U(1), RW(3)] }],
    uniforms: &[RandomParams::INFO],
};

fn bytes(p: &RandomParams) -> Option<Vec<u8>> {
    Some(bytemuck::bytes_of(p).to_vec())
}

/// `p.len` standard normals keyed by (seed, step, `p.stream`) at `p.out_off` of `out`.
#[derive(Clone, Debug)]
pub struct NoiseNormal {
    pub p: RandomParams,
    pub out: BufId,
}

impl Kernel for NoiseNormal {
    fn entry(&self) -> &'static str {
        "noise_normal"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::State), (3, Res::Buf(self.out))]
    }
    fn workgroups(&self) -> [u32; 3] {
        // One invocation per four values (one Philox block) of each stream.
        groups_1d((self.p.len as usize).div_ceil(4) * self.p.stream_count())
    }
    fn spans(&self) -> Vec<Span> {
        vec![Span::write(self.out, self.p.out_off, self.p.noise_span() * self.p.stream_count())]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, state, fast, pool) = (&self.p, *host.state, host.fast, host.pool);
        host.with_out(self.out, |_, o| {
            for k in 0..p.stream_count() as u32 {
                let off = p.out_off + k * p.noise_span() as u32;
                let q = RandomParams { stream: p.stream + k, out_off: off, streams: 1, ..*p };
                if p.dim > 0 {
                    noise_normal_rows(&q, &state, o)
                } else if fast {
                    noise_normal_threaded(pool, &q, &state, o)
                } else {
                    noise_normal(&q, &state, o)
                }
            }
        })
    }
}

/// `p.len` class labels (class indices as f32) in [0, `p.classes`) keyed by (seed, step,
/// `p.stream`) at `p.out_off` of `out`, consecutive groups of `p.group` sharing one; `p.streams`
/// streams one after the other (every update of a step in one dispatch, as [`NoiseNormal`]).
#[derive(Clone, Debug)]
pub struct RandomLabels {
    pub p: RandomParams,
    pub out: BufId,
}

impl Kernel for RandomLabels {
    fn entry(&self) -> &'static str {
        "random_labels"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::State), (3, Res::Buf(self.out))]
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.len as usize * self.p.stream_count())
    }
    fn spans(&self) -> Vec<Span> {
        vec![Span::write(self.out, self.p.out_off, self.p.len as usize * self.p.stream_count())]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, state) = (&self.p, *host.state);
        host.with_out(self.out, |_, o| random_labels(p, &state, o))
    }
}

/// Class labels keyed by (seed, step, stream): `random_labels` in random.wgsl.
pub fn random_labels(p: &RandomParams, state: &crate::ir::TrainState, out: &mut [f32]) {
    let (len, group) = (p.len as usize, p.group.max(1));
    for k in 0..p.stream_count() {
        let stream = p.stream + k as u32;
        for i in 0..len {
            let class = rng::random_class([p.seed_lo, p.seed_hi], state.step, stream, i as u32 / group, p.classes);
            out[p.out_off as usize + k * len + i] = class as f32;
        }
    }
}

/// A batch of `p.rows` data rows in this step's order, scaled, from a data set of bytes: the
/// rows that chunk `chunk` of the data set holds (`p.row_lo`, `p.row_hi`).
#[derive(Clone, Debug)]
pub struct GatherU8 {
    pub p: RandomParams,
    pub out: BufId,
    pub chunk: usize,
}

/// The same from a data set of f32 values.
#[derive(Clone, Debug)]
pub struct GatherF32 {
    pub p: RandomParams,
    pub out: BufId,
    pub chunk: usize,
}

/// The gather launcher for the data set's storage, from chunk `chunk` (whose rows `p` names).
pub fn gather_from(data_u8: bool, p: RandomParams, out: BufId, chunk: usize) -> crate::ir::Op {
    if data_u8 {
        GatherU8 { p, out, chunk }.into()
    } else {
        GatherF32 { p, out, chunk }.into()
    }
}

/// The gather from a data set in one binding (chunk 0 holding every row).
pub fn gather(data_u8: bool, p: RandomParams, out: BufId) -> crate::ir::Op {
    gather_from(data_u8, RandomParams { row_lo: 0, row_hi: 0, ..p }, out, 0)
}

/// The whole batch from a data set split into `chunks`: one gather per chunk, each writing the
/// batch rows whose source it holds, so that together they write every row once.
pub fn gather_chunks(data_u8: bool, p: RandomParams, out: BufId, chunks: &DataChunks) -> Vec<crate::ir::Op> {
    let at = |r: usize| u32::try_from(r).expect("at most u32::MAX / 2 samples (TrainConfig::validate)");
    let ops = chunks.rows.iter().enumerate();
    ops.map(|(k, rows)| {
        gather_from(data_u8, RandomParams { row_lo: at(rows.start), row_hi: at(rows.end), ..p }, out, k)
    })
    .collect()
}

fn gather_spans(p: &RandomParams, out: BufId) -> Vec<Span> {
    vec![Span::write(out, p.out_off, p.rows as usize * p.dim as usize)]
}

fn gather_groups(p: &RandomParams) -> [u32; 3] {
    [p.dim.div_ceil(64).max(1), p.rows.max(1), 1]
}

impl Kernel for GatherU8 {
    fn entry(&self) -> &'static str {
        "gather_u8"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::State), (2, Res::Data(self.chunk)), (3, Res::Buf(self.out))]
    }
    fn workgroups(&self) -> [u32; 3] {
        gather_groups(&self.p)
    }
    fn spans(&self) -> Vec<Span> {
        gather_spans(&self.p, self.out)
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, state) = (&self.p, *host.state);
        let DataView::U8(data) = host.data(self.chunk) else { panic!("gather_u8 on a data set of f32") };
        host.with_out(self.out, |_, o| gather_u8(p, &state, data, o))
    }
}

impl Kernel for GatherF32 {
    fn entry(&self) -> &'static str {
        "gather_f32"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::State), (2, Res::Data(self.chunk)), (3, Res::Buf(self.out))]
    }
    fn workgroups(&self) -> [u32; 3] {
        gather_groups(&self.p)
    }
    fn spans(&self) -> Vec<Span> {
        gather_spans(&self.p, self.out)
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, state) = (&self.p, *host.state);
        let DataView::F32(data) = host.data(self.chunk) else { panic!("gather_f32 on a data set of bytes") };
        host.with_out(self.out, |_, o| gather_f32(p, &state, data, o))
    }
}

crate::uniform! {
    /// `DropMask` in common.wgsl: a dropout mask that a linear layer's kernels apply as they store
    /// a value (its output in the forward pass, the gradient it hands down in the backward pass)
    /// instead of a [`Dropout`] dispatch of its own. `rate` 0: no mask. The rows form groups of
    /// `rows`, group g keyed by stream `stream + g * stride`, exactly as one [`Dropout`] call per
    /// group (`nn::Dropout`), so the masks and the bits are those of the separate calls.
    pub struct DropMask {
        pub rate: f32,
        /// 1 / (1 - rate), rounded as [`Dropout`]'s `scale`.
        pub scale: f32,
        pub rows: u32,
        pub stream: u32,
        pub stride: u32,
        pub seed_lo: u32,
        pub seed_hi: u32,
        pub _pad: u32,
    }
}

impl DropMask {
    /// The mask at `rate` of dropout draw `stream` (group 0's; group g's is `stream + g *
    /// stride`) over groups of `rows` rows.
    pub fn new(rate: f32, seed: u64, stream: u32, stride: u32, rows: usize) -> Self {
        DropMask {
            rate,
            scale: 1.0 / (1.0 - rate),
            rows: rows as u32,
            stream,
            stride,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            _pad: 0,
        }
    }

    /// Whether there is a mask to apply.
    pub fn on(&self) -> bool {
        self.rate > 0.0
    }

    /// The training state at slot 7 when the mask is on: the `_dropout` entry points (matmul,
    /// matmul_tiled, head) read the step there; the others do not bind it.
    pub fn state_binding(&self) -> Option<(u32, Res)> {
        self.on().then_some((7, Res::State))
    }

    /// The [`Dropout`] call of group `g` on `features` values per row, at element `off` of its
    /// buffer (its first row's).
    pub fn group_params(&self, g: u32, features: usize, off: usize) -> RandomParams {
        RandomParams {
            len: self.rows * features as u32,
            stream: self.stream + g * self.stride,
            seed_lo: self.seed_lo,
            seed_hi: self.seed_hi,
            out_off: (off + g as usize * self.rows as usize * features) as u32,
            scale: self.scale,
            shift: self.rate,
            ..Default::default()
        }
    }

    /// The CPU twin: the mask on `total_rows` rows of `features` values at element `off` of
    /// `out`, one [`dropout`] call per group (nothing when off).
    pub fn apply(
        &self,
        state: &crate::ir::TrainState,
        total_rows: usize,
        features: usize,
        off: usize,
        out: &mut [f32],
    ) {
        if !self.on() {
            return;
        }
        for g in 0..(total_rows / self.rows.max(1) as usize) as u32 {
            dropout(&self.group_params(g, features, off), state, out);
        }
    }
}

/// In place; `p.stream` is the mask's salt, `p.shift` the rate, `p.scale` 1 / (1 - rate). The
/// same call on the gradient is the backward pass.
#[derive(Clone, Debug)]
pub struct Dropout {
    pub p: RandomParams,
    pub out: BufId,
}

impl Kernel for Dropout {
    fn entry(&self) -> &'static str {
        "dropout"
    }
    fn entry_f16(&self) -> Option<&'static str> {
        Some("dropout_f16")
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::State), (3, Res::Buf(self.out))]
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.len as usize)
    }
    fn spans(&self) -> Vec<Span> {
        vec![Span::write(self.out, self.p.out_off, self.p.len as usize)]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, state) = (&self.p, *host.state);
        host.with_out(self.out, |_, o| dropout(p, &state, o))
    }
}

/// Standard normal noise keyed by (seed, step, stream): `noise_normal` in random.wgsl.
pub fn noise_normal(p: &RandomParams, state: &crate::ir::TrainState, out: &mut [f32]) {
    let off = p.out_off as usize;
    let key = [p.seed_lo, p.seed_hi];
    rng::normals(key, state.step, p.stream, rng::PURPOSE_NOISE, &mut out[off..off + p.len as usize]);
}

/// `noise_normal` with its values in rows of `p.dim` placed in wider rows (`p.noise_place`):
/// the same values as packed, each where the kernel stores it.
pub fn noise_normal_rows(p: &RandomParams, state: &crate::ir::TrainState, out: &mut [f32]) {
    let (off, len, key) = (p.out_off as usize, p.len as usize, [p.seed_lo, p.seed_hi]);
    for q in 0..len.div_ceil(4) {
        let w = rng::philox4x32([q as u32, state.step, p.stream, rng::PURPOSE_NOISE], key);
        let (z0, z1) = rng::box_muller(w[0], w[1]);
        let (z2, z3) = rng::box_muller(w[2], w[3]);
        for (j, z) in [z0, z1, z2, z3].into_iter().enumerate().take(len - 4 * q) {
            out[off + p.noise_place(4 * q + j)] = z;
        }
    }
}

/// `noise_normal` cut into pieces of whole groups of 4 on the pool: every value comes from its
/// own counter, so the bits are the twin's whatever the thread count.
pub fn noise_normal_threaded(pool: &crate::ir::Pool, p: &RandomParams, state: &crate::ir::TrainState, out: &mut [f32]) {
    const PIECE: usize = 2048; // values per task, a multiple of 4
    let (off, len) = (p.out_off as usize, p.len as usize);
    if len <= PIECE {
        return noise_normal(p, state, out);
    }
    let (key, ptr) = ([p.seed_lo, p.seed_hi], out[off..off + len].as_mut_ptr() as usize);
    pool.run(len.div_ceil(PIECE), &|t| {
        let (start, end) = (t * PIECE, ((t + 1) * PIECE).min(len));
        // SAFETY: values start..end of the noise, written by this task only.
        let piece = unsafe { std::slice::from_raw_parts_mut((ptr as *mut f32).add(start), end - start) };
        rng::normals_from(key, state.step, p.stream, rng::PURPOSE_NOISE, start / 4, piece);
    });
}

/// Where batch row `r` starts in the bound chunk (`data` holds rows [row_lo, row_hi)), or None
/// when its source row lies in another chunk.
fn chunk_offset(p: &RandomParams, step: u32, r: u32) -> Option<usize> {
    let src = rng::batch_row_source(p.seed(), p.batch_counter(step), r, p.rows, p.n);
    (p.row_lo..p.row_end())
        .contains(&src)
        .then(|| (src - p.row_lo) as usize * p.row_stride() as usize + p.src_col as usize)
}

/// Batch rows in this step's order, scaled, those whose source `data` (one chunk) holds:
/// `gather_u8` in random.wgsl.
pub fn gather_u8(p: &RandomParams, state: &crate::ir::TrainState, data: &[u8], out: &mut [f32]) {
    let dim = p.dim as usize;
    for r in 0..p.rows {
        let Some(src) = chunk_offset(p, state.step, r) else { continue };
        let dst = p.out_off as usize + r as usize * dim;
        for c in 0..dim {
            out[dst + c] = data[src + c] as f32 * p.scale + p.shift;
        }
    }
}

/// `gather_f32` in random.wgsl.
pub fn gather_f32(p: &RandomParams, state: &crate::ir::TrainState, data: &[f32], out: &mut [f32]) {
    let dim = p.dim as usize;
    for r in 0..p.rows {
        let Some(src) = chunk_offset(p, state.step, r) else { continue };
        let dst = p.out_off as usize + r as usize * dim;
        for c in 0..dim {
            out[dst + c] = data[src + c] * p.scale + p.shift;
        }
    }
}

/// Dropout in place with a mask keyed by (seed, step, salt): `dropout` in random.wgsl. Also the
/// backward pass, applied to the gradient.
pub fn dropout(p: &RandomParams, state: &crate::ir::TrainState, out: &mut [f32]) {
    let key = rng::dropout_key(p.seed(), state.step, p.stream);
    let off = p.out_off as usize;
    for (i, v) in out[off..off + p.len as usize].iter_mut().enumerate() {
        *v = if rng::dropout_keep(key, i as u32, p.shift) { *v * p.scale } else { 0.0 };
    }
}
