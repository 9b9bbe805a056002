//! The CPU executor: runs a program's ops in order with the CPU twins, on plain `Vec<f32>`
//! buffers. An f16 buffer (`--precision f16`) is a `Vec<f32>` whose values are all f16 values:
//! whatever writes to it (an op, a host upload) is rounded with `round_f16`, the same store the
//! f16 kernels make, and the twins compute in f32 as those kernels do.

use std::sync::Arc;

use super::{Backend, Executor, Section};
use crate::data::{DataValues, Dataset};
use crate::error::{Error, Result};
use crate::ir::{pool, Pool};
use crate::ir::{BufId, BufSpec, DType, DataChunks, DataView, Host, Op, TrainState};
use crate::kernels::activation::round_f16_slice;

pub struct CpuExecutor {
    bufs: Vec<Vec<f32>>,
    specs: Vec<BufSpec>,
    state: TrainState,
    data: Option<Arc<Dataset>>,
    /// How the program binds the data set: its chunks (one for the whole set unless the
    /// program was built for more).
    chunks: DataChunks,
    sections: Vec<Vec<Op>>,
    /// Run the fast paths (blocked sgemm, threaded Adam); false runs the reference twins only
    /// (tests, and `SHADERGAN_CPU_REFERENCE=1`, which makes every CPU run use the plain loops:
    /// bit-reproducible on any CPU, whatever sgemm kernel it would pick).
    fast: bool,
    /// The threads the fast paths run on: the process's shared pool unless [`Self::threads`]
    /// gave this executor its own. The thread count never changes the bits (ir::pool).
    pool: Arc<Pool>,
    /// Whether any buffer is f16 (whose written spans are rounded after each op).
    any_f16: bool,
}

impl CpuExecutor {
    /// Zero-filled buffers and no sections yet; the data set as one chunk.
    pub fn new(specs: &[BufSpec], data: Option<Arc<Dataset>>) -> Self {
        let chunks = DataChunks::whole(data.as_ref().map_or(0, |d| d.n));
        Self::with_chunks(specs, data, chunks)
    }

    /// The same for a program built for the data set in `chunks` (see `ir::DataChunks`).
    pub fn with_chunks(specs: &[BufSpec], data: Option<Arc<Dataset>>, chunks: DataChunks) -> Self {
        CpuExecutor {
            bufs: specs.iter().map(|b| vec![0.0; b.len]).collect(),
            specs: specs.to_vec(),
            state: TrainState::new(),
            data,
            chunks,
            sections: vec![],
            fast: !std::env::var("SHADERGAN_CPU_REFERENCE").is_ok_and(|v| v == "1"),
            pool: pool::global(),
            any_f16: specs.iter().any(|b| b.dtype == DType::F16),
        }
    }

    /// Runs the fast paths on a pool of its own with this many threads.
    pub fn threads(mut self, threads: usize) -> Self {
        self.pool = Arc::new(Pool::new(threads));
        self
    }

    /// Threads the fast paths use.
    pub fn thread_count(&self) -> usize {
        self.pool.threads()
    }

    /// Runs the reference twins only.
    pub fn reference(mut self) -> Self {
        self.fast = false;
        self
    }

    /// Runs a list of ops once.
    pub fn run_ops(&mut self, list: &[Op]) {
        self.run_ops_times(list, 1)
    }

    /// Runs a list of ops `times` times over (one list of data views for all: a training step
    /// allocates nothing; tests/cpu_no_alloc.rs).
    fn run_ops_times(&mut self, list: &[Op], times: u32) {
        let data = self.data.clone();
        fn view<'a>(d: &'a Dataset, r: &std::ops::Range<usize>) -> DataView<'a> {
            match &d.values {
                DataValues::U8(v) => DataView::U8(&v[r.start * d.dim..r.end * d.dim]),
                DataValues::F32(v) => DataView::F32(&v[r.start * d.dim..r.end * d.dim]),
            }
        }
        // One chunk (every data set that fits a binding) on the stack: nothing allocated.
        let (one, many): ([DataView; 1], Vec<DataView>);
        let views: &[DataView] = match data.as_deref() {
            Some(d) if self.chunks.rows.len() == 1 => {
                one = [view(d, &self.chunks.rows[0])];
                &one
            }
            Some(d) => {
                many = self.chunks.rows.iter().map(|r| view(d, r)).collect();
                &many
            }
            None => &[],
        };
        for op in (0..times).flat_map(|_| list) {
            let mut host =
                Host { bufs: &mut self.bufs, state: &mut self.state, data: views, fast: self.fast, pool: &self.pool };
            op.run_cpu(&mut host);
            if !self.any_f16 {
                continue; // (and no list of spans to allocate per op)
            }
            // An f16 output: round what the twin wrote (values already f16 stay as they are).
            for s in op.spans().into_iter().filter(|s| s.write && self.specs[s.buf].dtype == DType::F16) {
                round_f16_slice(&mut self.bufs[s.buf][s.off..s.off + s.len]);
            }
        }
    }

    /// The spans of every op must lie inside their buffers (as the GPU executor checks).
    fn check(&self, ops: &[Op]) -> Result<()> {
        for op in ops {
            for s in op.spans() {
                if s.off + s.len > self.specs[s.buf].len {
                    return Err(Error::gpu(format!(
                        "internal error: {} reaches element {} of {} ({} elements)",
                        op.entry(),
                        s.off + s.len,
                        self.specs[s.buf].label,
                        self.specs[s.buf].len
                    )));
                }
            }
            match op.data_chunk() {
                Some(_) if self.data.is_none() => {
                    return Err(Error::gpu(format!("internal error: {} needs a data set", op.entry())));
                }
                Some(k) if k >= self.chunks.len() => {
                    return Err(Error::gpu(format!(
                        "internal error: {} binds data chunk {k} of {}",
                        op.entry(),
                        self.chunks.len()
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The CPU's model name ("AMD EPYC 9654"), from /proc/cpuinfo where there is one.
/// Runs of a section that `profile` averages over on the CPU (its clock is noisier than the GPU's
/// timestamp queries).
pub const PROFILE_RUNS: u32 = 5;

pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info.lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim()));
    model.filter(|m| !m.is_empty()).unwrap_or("CPU").to_string()
}

impl Executor for CpuExecutor {
    fn backend(&self) -> Backend {
        Backend::Cpu
    }

    fn device_name(&self) -> String {
        let threads = if self.fast { self.pool.threads() } else { 1 };
        format!("{} ({threads} thread{})", cpu_model(), if threads == 1 { "" } else { "s" })
    }

    fn add_section(&mut self, ops: &[Op]) -> Result<Section> {
        self.check(ops)?;
        self.sections.push(ops.to_vec());
        Ok(Section(self.sections.len() - 1))
    }

    fn run(&mut self, section: Section, times: u32) -> Result<()> {
        let list = std::mem::take(&mut self.sections[section.0]);
        self.run_ops_times(&list, times);
        self.sections[section.0] = list;
        Ok(())
    }

    /// Wall-clock time of each op, the mean over `PROFILE_RUNS` runs of the section.
    fn profile(&mut self, section: Section) -> Result<Option<Vec<(String, f64)>>> {
        let list = std::mem::take(&mut self.sections[section.0]);
        let mut secs = vec![0f64; list.len()];
        for _ in 0..PROFILE_RUNS {
            for (op, t) in list.iter().zip(secs.iter_mut()) {
                let start = std::time::Instant::now();
                self.run_ops(std::slice::from_ref(op));
                *t += start.elapsed().as_secs_f64();
            }
        }
        let per = list.iter().zip(&secs).map(|(op, t)| (op.entry().to_string(), t / PROFILE_RUNS as f64)).collect();
        self.sections[section.0] = list;
        Ok(Some(per))
    }

    fn read(&mut self, buf: BufId) -> Result<Vec<f32>> {
        Ok(self.bufs[buf].clone())
    }

    fn write(&mut self, buf: BufId, values: &[f32]) -> Result<()> {
        let spec = &self.specs[buf];
        if spec.len != values.len() {
            return Err(Error::input(format!("{}: {} values given, {} expected", spec.label, values.len(), spec.len)));
        }
        self.bufs[buf].copy_from_slice(values);
        if spec.dtype == DType::F16 {
            round_f16_slice(&mut self.bufs[buf]);
        }
        Ok(())
    }

    fn read_state(&mut self) -> Result<TrainState> {
        Ok(self.state)
    }

    fn write_state(&mut self, state: &TrainState) -> Result<()> {
        self.state = *state;
        Ok(())
    }
}
