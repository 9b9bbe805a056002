//! Helpers shared by the integration tests: the GPU context (never skipping silently in CI),
//! seeded test values, a small image set, and the op harness.
#![allow(dead_code)]

pub mod harness;

use std::sync::Arc;

use shadergan::backend::gpu::GpuContext;
use shadergan::data::Dataset;

/// A GPU context for a test, or None (the test then returns early) when no adapter exists.
///
/// CI sets SHADERGAN_REQUIRE_GPU=1, which turns a missing adapter into a failure, and
/// SHADERGAN_EXPECT_ADAPTER=<name>, which fails the test unless that adapter was the one used:
/// GPU tests never skip silently there.
pub fn gpu() -> Option<Arc<GpuContext>> {
    let required = std::env::var("SHADERGAN_REQUIRE_GPU").is_ok_and(|v| v == "1");
    match GpuContext::new() {
        Ok(ctx) => {
            if let Ok(want) = std::env::var("SHADERGAN_EXPECT_ADAPTER") {
                assert!(
                    ctx.summary.name.to_lowercase().contains(&want.to_lowercase()),
                    "SHADERGAN_EXPECT_ADAPTER={want}, but the adapter is {}",
                    ctx.summary.describe()
                );
            }
            Some(ctx)
        }
        Err(e) if required => panic!("SHADERGAN_REQUIRE_GPU=1 but no GPU adapter: {e}"),
        Err(e) => {
            eprintln!("SKIPPED (no GPU adapter; CI sets SHADERGAN_REQUIRE_GPU=1): {e}");
            None
        }
    }
}

/// Deterministic pseudo-random values in [lo, hi).
pub fn uniform(n: usize, seed: u32, lo: f32, hi: f32) -> Vec<f32> {
    let mut out = vec![0f32; n];
    for (q, chunk) in out.chunks_mut(4).enumerate() {
        let w = shadergan::rng::philox4x32([q as u32, seed, 77, 77], [0x1234, 0x5678]);
        for (v, word) in chunk.iter_mut().zip(w) {
            *v = lo + (hi - lo) * shadergan::rng::unit_f32(word);
        }
    }
    out
}

/// 200 "images" of 7x7 bytes with some structure, for the training parity tests.
pub fn image_data() -> Arc<Dataset> {
    let (n, dim) = (200usize, 49usize);
    let noise = uniform(n * dim, 5, 0.0, 1.0);
    let bytes = (0..n * dim)
        .map(|i| {
            let (s, p) = (i / dim, i % dim);
            let ink = ((p % 7) as f32 - 3.0).abs() < 1.5 + (s % 3) as f32 * 0.5;
            (if ink { 200.0 + 55.0 * noise[i] } else { 30.0 * noise[i] }) as u8
        })
        .collect();
    Arc::new(Dataset::from_u8(n, dim, bytes).unwrap())
}

use shadergan::backend::cpu::CpuExecutor;
use shadergan::backend::gpu::GpuExecutor;
use shadergan::config::TrainConfig;
use shadergan::data::DataValues;
use shadergan::programs::gan::GanProgram;
use shadergan::GanTrainer;

fn program(cfg: &TrainConfig, data: &Dataset) -> GanProgram {
    GanProgram::build(cfg, data.n, matches!(data.values, DataValues::U8(_)))
}

/// The data as a trainer of `cfg` binds it: itself, or for a conditional model the labelled
/// table (`data.classes` after each sample's values).
pub fn table(cfg: &TrainConfig, data: &Arc<Dataset>) -> Arc<Dataset> {
    shadergan::programs::trainer::resident_table(cfg, data.clone()).unwrap()
}

/// A trainer on the CPU backend; `reference`: the plain twins only (no sgemm, no threads).
pub fn cpu_trainer(cfg: &TrainConfig, data: &Arc<Dataset>, reference: bool) -> GanTrainer {
    let data = &table(cfg, data);
    let p = program(cfg, data);
    let mut exec = CpuExecutor::new(&p.bufs, Some(data.clone()));
    if reference {
        exec = exec.reference();
    }
    GanTrainer::new(cfg.clone(), p, Box::new(exec)).unwrap()
}

/// A trainer on the GPU backend, or None (see [`gpu`]).
pub fn gpu_trainer(cfg: &TrainConfig, data: &Arc<Dataset>) -> Option<GanTrainer> {
    let ctx = gpu()?;
    let data = &table(cfg, data);
    let p = program(cfg, data);
    let exec = GpuExecutor::new(ctx, &p.bufs, Some(data)).unwrap();
    Some(GanTrainer::new(cfg.clone(), p, Box::new(exec)).unwrap())
}

/// The data bound in chunks of at most `max_bytes` (None: one).
pub fn chunks_of(data: &Dataset, max_bytes: Option<u64>) -> shadergan::ir::DataChunks {
    shadergan::ir::DataChunks::plan(data.n, data.row_bytes(), max_bytes).unwrap()
}

/// A CPU trainer (reference twins) whose program binds the data in chunks of at most `max_bytes`.
pub fn cpu_trainer_chunked(cfg: &TrainConfig, data: &Arc<Dataset>, max_bytes: Option<u64>) -> GanTrainer {
    let data = &table(cfg, data);
    let chunks = chunks_of(data, max_bytes);
    let p = GanProgram::build_chunked(cfg, &chunks, matches!(data.values, DataValues::U8(_)));
    let exec = CpuExecutor::with_chunks(&p.bufs, Some(data.clone()), chunks).reference();
    GanTrainer::new(cfg.clone(), p, Box::new(exec)).unwrap()
}

/// The same on the GPU backend, or None (see [`gpu`]).
pub fn gpu_trainer_chunked(cfg: &TrainConfig, data: &Arc<Dataset>, max_bytes: Option<u64>) -> Option<GanTrainer> {
    let ctx = gpu()?;
    let data = &table(cfg, data);
    let chunks = chunks_of(data, max_bytes);
    let p = GanProgram::build_chunked(cfg, &chunks, matches!(data.values, DataValues::U8(_)));
    let exec = GpuExecutor::with_chunks(ctx, &p.bufs, Some((data, &chunks))).unwrap();
    Some(GanTrainer::new(cfg.clone(), p, Box::new(exec)).unwrap())
}
