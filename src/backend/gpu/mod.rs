//! The GPU backend: the wgpu context (every version-sensitive call) and the executor that records
//! a program's ops as compute dispatches.

pub mod context;
pub mod executor;

pub use context::GpuContext;
pub use executor::GpuExecutor;
