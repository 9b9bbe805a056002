//! The one op harness: runs a kernel call on both backends over the same buffers and compares
//! the outputs with the tolerance table (`shadergan::kernels::tolerance`). Outputs start as NaN,
//! so a kernel that writes nothing fails; the CPU side runs the reference twins (no fast paths).
//! f16 buffers need a GPU with shader-f16 (lavapipe has it, so CI runs every case).

use std::sync::Arc;

use shadergan::backend::cpu::CpuExecutor;
use shadergan::backend::gpu::{GpuContext, GpuExecutor};
use shadergan::backend::Executor;
use shadergan::data::Dataset;
use shadergan::ir::{BufId, BufSpec, DType, DataChunks, Op, TrainState};
use shadergan::kernels::tolerance::{compare, tolerance};

use super::gpu;

/// A GPU with shader-f16, or None (the test returns early, saying why).
pub fn gpu16() -> Option<Arc<GpuContext>> {
    let ctx = gpu()?;
    if !ctx.supports_f16() {
        // lavapipe (CI) has shader-f16, so these cases run there.
        assert!(!ctx.summary.name.contains("llvmpipe") || !ctx.summary.shader_f16, "llvmpipe offers f16");
        eprintln!("SKIPPED: {} has no shader-f16", ctx.summary.describe());
        return None;
    }
    Some(ctx)
}

/// The outputs (in the order asked for) and the training states after one call on each side.
pub struct Both {
    pub gpu: Vec<Vec<f32>>,
    pub cpu: Vec<Vec<f32>>,
    pub gpu_state: TrainState,
    pub cpu_state: TrainState,
}

/// Buffers for one kernel call, with their initial contents; the training state and data set.
pub struct Case {
    pub bufs: Vec<(BufSpec, Vec<f32>)>,
    pub state: TrainState,
    pub data: Option<Arc<Dataset>>,
    /// How the data set is bound (None: one binding).
    pub chunks: Option<DataChunks>,
}

impl Default for Case {
    fn default() -> Self {
        Self::new()
    }
}

impl Case {
    pub fn new() -> Self {
        Case { bufs: vec![], state: TrainState::new(), data: None, chunks: None }
    }

    pub fn input_as(&mut self, label: &str, dtype: DType, values: Vec<f32>) -> BufId {
        self.bufs.push((BufSpec { label: label.into(), len: values.len(), dtype }, values));
        self.bufs.len() - 1
    }

    pub fn input(&mut self, label: &str, values: Vec<f32>) -> BufId {
        self.input_as(label, DType::F32, values)
    }

    /// An output buffer of `len` values, NaN before the call.
    pub fn output_as(&mut self, label: &str, dtype: DType, len: usize) -> BufId {
        self.input_as(label, dtype, vec![f32::NAN; len])
    }

    pub fn output(&mut self, label: &str, len: usize) -> BufId {
        self.output_as(label, DType::F32, len)
    }

    fn specs(&self) -> Vec<BufSpec> {
        self.bufs.iter().map(|(s, _)| s.clone()).collect()
    }

    /// The entry point the GPU runs for `op` on these buffers (its `_f16` variant when one is
    /// f16): the name the tolerance table is looked up by.
    pub fn entry(&self, op: &Op) -> &'static str {
        let half = op.buffers().iter().any(|&b| self.bufs[b].0.dtype == DType::F16);
        if half {
            op.entry_f16().unwrap_or(op.entry())
        } else {
            op.entry()
        }
    }

    /// Runs `op` on both backends; None when there is no (suitable) GPU and skipping is allowed.
    pub fn run(&self, op: impl Into<Op>, outs: &[BufId]) -> Option<Both> {
        self.run_ops(vec![op.into()], outs)
    }

    /// Runs `ops` in order, as one section, on both backends.
    pub fn run_ops(&self, ops: Vec<Op>, outs: &[BufId]) -> Option<Both> {
        let half = self.bufs.iter().any(|(s, _)| s.dtype == DType::F16);
        let ctx = if half { gpu16()? } else { gpu()? };
        let specs = self.specs();
        let chunks = self.chunks.clone().unwrap_or_else(|| DataChunks::whole(self.data.as_ref().map_or(0, |d| d.n)));
        let mut cpu = CpuExecutor::with_chunks(&specs, self.data.clone(), chunks.clone()).reference();
        let data = self.data.as_deref().zip(Some(&chunks));
        let mut gpu = GpuExecutor::with_chunks(ctx, &specs, data).expect("buffers");
        for (i, (_, v)) in self.bufs.iter().enumerate() {
            cpu.write(i, v).unwrap();
            gpu.write(i, v).unwrap();
        }
        cpu.write_state(&self.state).unwrap();
        gpu.write_state(&self.state).unwrap();
        let ops = &ops[..];
        let (cs, gs) = (cpu.add_section(ops).expect("spans"), gpu.add_section(ops).expect("compile"));
        cpu.run(cs, 1).unwrap();
        gpu.run(gs, 1).expect("run");
        Some(Both {
            gpu: outs.iter().map(|&o| gpu.read(o).unwrap()).collect(),
            cpu: outs.iter().map(|&o| cpu.read(o).unwrap()).collect(),
            gpu_state: gpu.read_state().unwrap(),
            cpu_state: cpu.read_state().unwrap(),
        })
    }

    /// Runs and compares every output from element `skip` on with the entry's tolerance; the
    /// CPU twin must have written every compared value. Panics with the details.
    pub fn check_from(&self, op: impl Into<Op>, outs: &[BufId], skip: usize, what: &str) {
        let op = op.into();
        let entry = self.entry(&op);
        let Some(r) = self.run(op, outs) else { return };
        for (k, (g, c)) in r.gpu.iter().zip(&r.cpu).enumerate() {
            assert!(c[skip..].iter().all(|v| !v.is_nan()), "{entry} {what}: CPU twin left NaN in output {k}");
            if let Err(e) = compare(entry, &g[skip..], &c[skip..], tolerance(entry)) {
                panic!("{entry} {what}, output {}: {e}", self.bufs[outs[k]].0.label);
            }
        }
    }

    pub fn check(&self, op: impl Into<Op>, outs: &[BufId], what: &str) {
        self.check_from(op, outs, 0, what)
    }
}

/// (m, n, k) shapes: ones, around 64, and the odd 7x33x65 in every order.
pub const SHAPES: &[(u32, u32, u32)] =
    &[(1, 1, 1), (1, 64, 63), (63, 64, 65), (64, 65, 63), (65, 63, 64), (7, 33, 65), (65, 7, 33), (33, 65, 7)];

/// Lengths of element-wise calls: one, around 64, and 7x33x65.
pub const LENS: &[usize] = &[1, 63, 64, 65, 7 * 33 * 65];

/// Inputs for element-wise kernels: a spread of values plus the extremes.
pub fn ew_inputs(len: usize, seed: u32) -> Vec<f32> {
    let mut v = super::uniform(len, seed, -8.0, 8.0);
    let extremes = [0.0, -0.0, 30.0, -30.0, 300.0, -300.0, 1e-7, -1e-7, 15.0, -15.0];
    for (slot, e) in v.iter_mut().zip(extremes) {
        *slot = e;
    }
    v
}

/// Values across f16's range: ordinary, past its largest value, subnormal and below.
pub fn wide_values(len: usize, seed: u32) -> Vec<f32> {
    let mut v = super::uniform(len, seed, -4.0, 4.0);
    let extremes = [0.0, -0.0, 1e5, -1e5, 65504.0, 65520.0, 3e-5, 6e-8, 1e-9, -2.5e-6, 0.1, 1.0 / 3.0];
    for (slot, e) in v.iter_mut().zip(extremes) {
        *slot = e;
    }
    v
}

/// Batch sizes, feature widths and class counts of the class-conditional kernels' parity tests
/// (embedding, projection, class_affine).
pub const BATCHES: &[usize] = &[1, 63, 64, 65];
pub const WIDTHS: &[usize] = &[1, 7, 33, 65];
pub const CLASSES: &[u32] = &[1, 2, 10, 1000];

/// Labels (class indices as f32) of a batch of `rows` over `classes` classes, named after what
/// they exercise: spread over the classes; one class only (the last); class 1 absent (every
/// class but one present where the batch allows; not with one class); the extremes: classes 0
/// and C - 1, then labels the kernels clamp (negative, -0, C, past C, not an integer, huge,
/// NaN, infinite), then spread.
pub fn label_sets(rows: usize, classes: u32, seed: u32) -> Vec<(&'static str, Vec<f32>)> {
    let c = classes as f32;
    let spread: Vec<f32> = super::uniform(rows, seed, 0.0, c).into_iter().map(|v| v.floor().min(c - 1.0)).collect();
    let mut sets = vec![("spread", spread.clone()), ("one class", vec![c - 1.0; rows])];
    if classes > 1 {
        // Class 1 replaced by its neighbour; in batch order so that small batches still cover
        // the other classes.
        let absent = (0..rows).map(|b| (b as u32 % classes) as f32).map(|y| if y == 1.0 { 0.0 } else { y });
        sets.push(("class 1 absent", absent.collect()));
    }
    let clamped = [0.0, c - 1.0, -1.0, -0.0, c, c + 0.5, 2.7, 1e9, -1e9, f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    let mut extremes = spread;
    for (slot, e) in extremes.iter_mut().zip(clamped) {
        *slot = e;
    }
    sets.push(("extremes", extremes));
    sets
}
