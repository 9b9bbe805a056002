//! shadergan: a GAN trainer whose math runs in hand-written WGSL compute shaders through wgpu,
//! with a CPU reference trainer that computes the same math in plain Rust.
//!
//! Map of the crate:
//! - [`data`]: `.npy` loading and validation.
//! - [`model`]: layer shapes, the flat parameter layout, seeded initialisation.
//! - [`rng`]: Philox and the batch-order permutation, shared bit for bit by both backends.
//! - [`plan`]: one training step as a list of kernel calls; [`params`]: their uniform structs.
//! - [`shaders`]: the WGSL registry. [`cpu`] and [`gpu`]: the two executors of a plan.
//! - [`trainer`]: the `Trainer` interface; [`run`]: the training loop the CLI drives.
//! - [`toy`]: the 2-D toy benchmarks (ring8, grid25) and their mode-collapse metrics.

pub mod assets;
pub mod bench;
pub mod check;
pub mod checkpoint;
pub mod classifier;
pub mod config;
pub mod cpu;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod generate;
pub mod gpu;
pub mod image_folder;
pub mod image_metrics;
pub mod images;
pub mod model;
pub mod params;
pub mod plan;
pub mod rng;
pub mod run;
pub mod rundir;
pub mod session;
pub mod shaders;
pub mod toy;
pub mod trainer;

use std::sync::Arc;

pub use config::{TrainConfig, TrainOptions};
pub use data::Dataset;
pub use error::{Error, Result};
pub use trainer::{Backend, Snapshot, StepStats, Trainer};

/// Creates a trainer on the requested backend. `auto` takes a real GPU when wgpu sees one and
/// otherwise the CPU, saying so on stderr.
pub fn open_trainer(backend: Backend, cfg: TrainConfig, data: Arc<Dataset>) -> Result<Box<dyn Trainer>> {
    cfg.validate(data.n)?;
    let plan = plan::build(&cfg, data.n);
    let use_gpu = match backend {
        Backend::Gpu => true,
        Backend::Cpu => false,
        Backend::Auto => {
            let real = gpu::context::real_gpu_available();
            if !real {
                eprintln!("note: no GPU found, training on the CPU backend (--backend gpu forces a GPU, software ones included)");
            }
            real
        }
    };
    if use_gpu {
        let ctx = gpu::GpuContext::new()?;
        let exec = gpu::GpuProgram::new(ctx, &plan, Some(&data))?;
        Ok(Box::new(trainer::PlanTrainer::new(cfg, plan, exec)?))
    } else {
        let exec = cpu::CpuProgram::new(&plan, Some(data));
        Ok(Box::new(trainer::PlanTrainer::new(cfg, plan, exec)?))
    }
}
