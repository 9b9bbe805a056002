//! The CPU backend: the reference ops (`ops`, the oracle for every GPU kernel), fast matmuls for
//! training (`fast`), and the executor that runs a plan with them.

pub mod fast;
pub mod ops;
pub mod program;

pub use program::CpuProgram;

/// The CPU trainer: the shared plan run by the CPU executor.
pub type CpuTrainer = crate::trainer::PlanTrainer<CpuProgram>;
