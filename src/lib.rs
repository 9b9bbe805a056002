//! shadergan: a GAN trainer whose math runs in hand-written WGSL compute shaders through wgpu,
//! with a CPU reference trainer that computes the same math in plain Rust.
//!
//! Map of the crate, bottom up (each module uses only those above it):
//! - [`error`], [`rng`]: typed errors; Philox and the batch permutation, shared bit for bit by
//!   both backends.
//! - [`ir`]: the kernel-call IR: buffers, the [`ir::Kernel`] interface of every op, uniform
//!   structs' layout tables, the training state, the CPU fast paths' thread pool.
//! - [`kernels`]: one module per WGSL kernel family: its uniforms, one launcher per entry point,
//!   its CPU twins; the registry of families; the tolerance table.
//! - [`nn`]: layers (linear, dropout, casts) and networks: tensors, names, initialisation, and
//!   forward/backward passes as kernel calls.
//! - [`io`]: the one atomic file writer, PNG output. [`data`]: `.npy` files, the built-in digits,
//!   toy data sets.
//! - [`backend`]: the CPU and GPU executors of a list of kernel calls.
//! - [`config`]: the model (its networks), the training configuration with its defaults.
//! - [`programs`]: whole programs built from networks: the GAN step and its [`programs::trainer`],
//!   the digit classifier.
//! - [`eval`]: toy and image metrics, and the scorer runs use.
//! - [`train`]: a training run: checkpoints, run folder, logging, the loop with resume.
//! - [`commands`]: `generate`, `eval`, `bench`. The binary (main.rs) is only the CLI.

pub mod backend;
pub mod commands;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod io;
pub mod ir;
pub mod kernels;
pub mod nn;
pub mod programs;
pub mod rng;
pub mod train;

pub use backend::Backend;
pub use config::{TrainConfig, TrainOptions};
pub use data::Dataset;
pub use error::{Error, Result};
pub use programs::trainer::{open as open_trainer, GanTrainer, Snapshot, StepStats, Trainer};
