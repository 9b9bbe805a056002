//! The two executors of a program: [`cpu`] interprets its ops with the CPU twins, [`gpu`]
//! records them as compute dispatches. Both hold the program's buffers, the training state and
//! the resident data set, and run named sections of ops.

pub mod cpu;
pub mod gpu;
pub mod web;

use std::sync::Arc;

use crate::data::Dataset;
use crate::error::Result;
use crate::ir::{BufId, BufSpec, DataChunks, Op, TrainState};

/// Which backend runs the math.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A real GPU if wgpu finds one, else the CPU.
    Auto,
    Gpu,
    Cpu,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Gpu => "gpu",
            Backend::Cpu => "cpu",
        }
    }
}

/// A compiled list of ops an executor can run (returned by [`Executor::add_section`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section(pub(crate) usize);

/// What a backend must do to run a program.
pub trait Executor {
    /// `Cpu` or `Gpu`.
    fn backend(&self) -> Backend;
    /// The device, e.g. the adapter's name and API.
    fn device_name(&self) -> String;
    /// Compiles `ops` (pipelines, bind groups) and keeps them as a section to run.
    fn add_section(&mut self, ops: &[Op]) -> Result<Section>;
    /// Runs a section `times` times over. The GPU queues the work without waiting for it.
    fn run(&mut self, section: Section, times: u32) -> Result<()>;
    fn read(&mut self, buf: BufId) -> Result<Vec<f32>>;
    fn write(&mut self, buf: BufId, values: &[f32]) -> Result<()>;
    fn read_state(&mut self) -> Result<TrainState>;
    fn write_state(&mut self, state: &TrainState) -> Result<()>;
    /// The time of each dispatch of one run of `section`, in seconds: GPU time from timestamp
    /// queries (None without them), on the CPU the wall clock of each op, averaged over
    /// `cpu::PROFILE_RUNS` runs. It runs the section, so it advances training.
    fn profile(&mut self, _section: Section) -> Result<Option<Vec<(String, f64)>>> {
        Ok(None)
    }
}

/// Whether `backend` means the GPU here: `Auto` takes a real GPU when wgpu sees one and otherwise
/// the CPU, saying so on stderr.
pub fn wants_gpu(backend: Backend) -> bool {
    match backend {
        Backend::Gpu => true,
        Backend::Cpu => false,
        Backend::Auto => match gpu::context::auto_adapter() {
            gpu::context::AutoAdapter::Hardware => true,
            gpu::context::AutoAdapter::Software(name) => {
                eprintln!(
                    "note: no hardware GPU found, only {name} (a GPU emulated on the CPU); running on \
                     the CPU backend (--backend gpu runs on {name} instead)"
                );
                false
            }
            gpu::context::AutoAdapter::None => {
                eprintln!("note: no GPU found; running on the CPU backend");
                false
            }
        },
    }
}

/// An executor with these buffers (zero-filled) and the data set in one binding, on the backend
/// asked for. Programs for data sets of any size go through [`Device`].
pub fn open(backend: Backend, bufs: &[BufSpec], data: Option<Arc<Dataset>>) -> Result<Box<dyn Executor>> {
    let chunks = DataChunks::whole(data.as_ref().map_or(0, |d| d.n));
    Device::open(backend)?.executor(bufs, data, chunks)
}

/// The machine a program will run on, chosen before the program is built: its data chunks
/// depend on the device's largest storage binding.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use shadergan::backend::{Backend, Device};
/// # fn f(data: Arc<shadergan::Dataset>, bufs: &[shadergan::ir::BufSpec]) -> shadergan::Result<()> {
/// let device = Device::open(Backend::Auto)?;
/// let chunks = device.data_chunks(&data)?;     // ir::DataChunks: row ranges, one binding each
/// // ... build the program for `chunks` (one gather per chunk: kernels::random::gather_chunks) ...
/// let exec = device.executor(bufs, Some(data), chunks)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub enum Device {
    Cpu,
    Gpu(Arc<gpu::GpuContext>),
}

impl Device {
    /// The CPU, or the GPU (its context opened) when `backend` means it (see [`wants_gpu`]).
    pub fn open(backend: Backend) -> Result<Self> {
        Ok(if wants_gpu(backend) { Device::Gpu(gpu::GpuContext::new()?) } else { Device::Cpu })
    }

    /// The most bytes one storage binding of data may hold: the GPU's
    /// `max_storage_buffer_binding_size` (and `max_buffer_size`); None on the CPU (no limit).
    pub fn max_data_binding(&self) -> Option<u64> {
        match self {
            Device::Cpu => None,
            Device::Gpu(ctx) => {
                let l = ctx.device.limits();
                Some(l.max_storage_buffer_binding_size.min(l.max_buffer_size))
            }
        }
    }

    /// How a program on this device binds `data`: whole rows in chunks under its binding limit
    /// (lowered by the `SHADERGAN_DATA_CHUNK_BYTES` test hook when set; one chunk on the CPU
    /// otherwise).
    pub fn data_chunks(&self, data: &Dataset) -> Result<DataChunks> {
        DataChunks::plan(data.n, data.row_bytes(), DataChunks::limit_with_hook(self.max_data_binding()))
    }

    /// An executor with these buffers (zero-filled) and `data` uploaded in `chunks`.
    pub fn executor(
        &self,
        bufs: &[BufSpec],
        data: Option<Arc<Dataset>>,
        chunks: DataChunks,
    ) -> Result<Box<dyn Executor>> {
        Ok(match self {
            Device::Cpu => Box::new(cpu::CpuExecutor::with_chunks(bufs, data, chunks)),
            Device::Gpu(ctx) => {
                Box::new(gpu::GpuExecutor::with_chunks(ctx.clone(), bufs, data.as_deref().zip(Some(&chunks)))?)
            }
        })
    }
}
