//! A training run: its checkpoints, its run folder, what it logs, and the loop with resume.

pub mod checkpoint;
pub mod log;
pub mod progress;
pub mod resume;
pub mod run_dir;
pub mod session;
