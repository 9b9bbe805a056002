//! The GPU backend: wgpu context (every version-sensitive call), compiled kernels, and the
//! executor that records a plan's ops as compute dispatches.

pub mod context;
pub mod program;

pub use context::GpuContext;
pub use program::GpuProgram;

/// The GPU trainer: the shared plan run by the GPU executor.
pub type GpuTrainer = crate::trainer::PlanTrainer<GpuProgram>;
