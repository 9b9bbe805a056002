//! The two executors of a program: [`cpu`] interprets its ops with the CPU twins, [`gpu`]
//! records them as compute dispatches. Both hold the program's buffers, the training state and
//! the resident data set, and run named sections of ops.

pub mod cpu;
pub mod gpu;

use std::sync::Arc;

use crate::data::Dataset;
use crate::error::Result;
use crate::ir::{BufId, BufSpec, Op, TrainState};

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
    /// GPU time of each dispatch of one run of `section`, in seconds (this runs it once, so it
    /// advances training). None where there are no timestamp queries, and on the CPU.
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
        Backend::Auto => {
            let real = gpu::context::real_gpu_available();
            if !real {
                eprintln!(
                    "note: no GPU found, running on the CPU backend (--backend gpu forces a GPU, software ones included)"
                );
            }
            real
        }
    }
}

/// An executor with these buffers (zero-filled) and the data set, on the backend asked for.
pub fn open(backend: Backend, bufs: &[BufSpec], data: Option<Arc<Dataset>>) -> Result<Box<dyn Executor>> {
    if wants_gpu(backend) {
        let ctx = gpu::GpuContext::new()?;
        Ok(Box::new(gpu::GpuExecutor::new(ctx, bufs, data.as_deref())?))
    } else {
        Ok(Box::new(cpu::CpuExecutor::new(bufs, data)))
    }
}
