//! Data sets larger than one GPU storage binding: the data is bound in chunks of whole rows and
//! gathered by one dispatch per chunk (src/ir/data.rs). A float32 set over lavapipe's 128 MiB
//! binding trains on the GPU; with small chunks forced, training gives the same bits as with one
//! binding, and the GPU agrees with the CPU within the tolerance table.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::{cpu_trainer_chunked, gpu, gpu_trainer_chunked, image_data, uniform};
use shadergan::backend::gpu::GpuExecutor;
use shadergan::backend::{Backend, Device};
use shadergan::config::TrainConfig;
use shadergan::data::Dataset;
use shadergan::ir::CHUNK_BYTES_ENV;
use shadergan::kernels::tolerance::{compare, tolerance};
use shadergan::programs::gan::GanProgram;
use shadergan::{Snapshot, TrainOptions, Trainer};

fn config(data: &Dataset, d_steps: usize) -> TrainConfig {
    let opts = TrainOptions {
        // The MLP: 1,024 values in [0, 1] read as 32x32 images would default to the DCGAN.
        arch: Some(shadergan::config::model::Arch::Mlp),
        latent_dim: Some(4),
        g_hidden: vec![12],
        d_hidden: vec![10],
        batch_size: Some(16),
        seed: 77,
        d_steps,
        ..Default::default()
    };
    opts.resolve(data).unwrap()
}

fn gathers(t: &shadergan::GanTrainer) -> usize {
    t.program.train_step.iter().filter(|op| op.entry().starts_with("gather")).count()
}

fn close(what: &str, g: &Snapshot, c: &Snapshot) {
    let t = tolerance("train_10_steps");
    assert_eq!(g.state, c.state, "{what}");
    for (name, a, b) in [("G", &g.g.params, &c.g.params), ("D", &g.d.params, &c.d.params)] {
        compare(name, a, b, t).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

/// 200 images of 49 bytes and the same as f32, in chunks of 3 samples (about 67 chunks, a
/// boundary inside every batch), against one binding: the same bits on each backend, after
/// steps across epochs and with two D updates a step; and GPU against CPU within tolerance.
#[test]
fn small_chunks_train_bit_for_bit_like_one_binding() {
    let bytes = image_data();
    let floats = {
        let shadergan::data::DataValues::U8(v) = &bytes.values else { unreachable!() };
        Arc::new(Dataset::from_f32(bytes.n, bytes.dim, v.iter().map(|&b| b as f32 / 255.0).collect()).unwrap())
    };
    for data in [bytes, floats] {
        for d_steps in [1, 2] {
            let cfg = config(&data, d_steps);
            let small = Some((3 * data.row_bytes()).next_multiple_of(4) as u64);
            let what = format!("{} data, d-steps {d_steps}", data.dtype);
            let mut one = cpu_trainer_chunked(&cfg, &data, None);
            let mut cut = cpu_trainer_chunked(&cfg, &data, small);
            assert_eq!((gathers(&one), gathers(&cut)), (d_steps, d_steps * data.n.div_ceil(3)), "{what}");
            // 30 steps: past the first epochs (200 / 16 = 12 batches each).
            one.train(30).unwrap();
            cut.train(30).unwrap();
            assert_eq!(one.snapshot().unwrap(), cut.snapshot().unwrap(), "{what}: CPU, chunked vs one binding");
            let (Some(mut g_one), Some(mut g_cut)) =
                (gpu_trainer_chunked(&cfg, &data, None), gpu_trainer_chunked(&cfg, &data, small))
            else {
                return;
            };
            g_one.train(30).unwrap();
            g_cut.train(30).unwrap();
            let gs = g_cut.snapshot().unwrap();
            assert_eq!(g_one.snapshot().unwrap(), gs, "{what}: GPU, chunked vs one binding");
            // GPU and CPU over the first 10 steps, both chunked.
            let mut c10 = cpu_trainer_chunked(&cfg, &data, small);
            let mut g10 = gpu_trainer_chunked(&cfg, &data, small).unwrap();
            c10.train(10).unwrap();
            g10.train(10).unwrap();
            close(&what, &g10.snapshot().unwrap(), &c10.snapshot().unwrap());
        }
    }
}

/// A float32 data set over the binding limit (lavapipe: 128 MiB): refused as one binding, trained
/// in chunks. 33,000 samples of 1,024 floats: 135 MB.
#[test]
fn float32_data_over_the_binding_limit_trains_on_the_gpu() {
    let Some(ctx) = gpu() else { return };
    let limit = ctx.device.limits().max_storage_buffer_binding_size;
    let dim = 1024;
    let n = (limit as usize / (4 * dim)) + 1000;
    let values: Vec<f32> = uniform(n * dim, 3, 0.0, 1.0);
    let data = Arc::new(Dataset::from_f32(n, dim, values).unwrap());
    assert!(data.byte_len() as u64 > limit, "{} bytes, limit {limit}", data.byte_len());
    let mut cfg = config(&data, 1);
    cfg.batch_size = 64;
    // One binding: refused, as before chunking.
    let p = GanProgram::build(&cfg, data.n, false);
    let err = GpuExecutor::new(ctx.clone(), &p.bufs, Some(&data)).err().expect("over the limit").to_string();
    assert!(err.contains("largest storage binding"), "{err}");
    // The trainer chunks it under the device's limit.
    let device = Device::Gpu(ctx);
    let chunks = device.data_chunks(&data).unwrap();
    assert!(chunks.len() >= 2, "{chunks:?}");
    let mut t = shadergan::open_trainer(Backend::Gpu, cfg, data.clone()).unwrap();
    assert_eq!(gathers(&t), chunks.len());
    t.train(3).unwrap();
    let s = t.stats().unwrap();
    assert!(s.is_finite() && s.step == 3, "{s:?}");
}

/// The test hook through the binary: SHADERGAN_DATA_CHUNK_BYTES splits the data on the CPU
/// backend too, and the checkpoint comes out bit for bit the same.
#[test]
fn the_chunk_hook_leaves_a_run_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("d.npy");
    let v: Vec<u8> = (0..100 * 12).map(|i| (i * 29 % 256) as u8).collect();
    shadergan::data::save_npy_u8(&npy, 100, 12, &v).unwrap();
    let mut ckpts = vec![];
    for (name, hook) in [("one", None), ("cut", Some("40"))] {
        let out = dir.path().join(name);
        let mut c = Command::new(env!("CARGO_BIN_EXE_shadergan"));
        c.args(["train", npy.to_str().unwrap(), "--backend", "cpu", "--steps", "12", "--batch-size", "8"]);
        c.args(["--g-hidden", "8", "--d-hidden", "8", "--quiet", "--out", out.to_str().unwrap()]);
        c.env("SHADERGAN_CPU_REFERENCE", "1").env_remove(CHUNK_BYTES_ENV);
        if let Some(h) = hook {
            c.env(CHUNK_BYTES_ENV, h);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        ckpts.push(std::fs::read(out.join("checkpoints/latest.safetensors")).unwrap());
    }
    // Every tensor (the metadata's order is not fixed).
    let tensors = |b: &[u8]| {
        let st = safetensors::SafeTensors::deserialize(b).unwrap();
        let mut v: Vec<(String, Vec<u8>)> = st.tensors().into_iter().map(|(k, t)| (k, t.data().to_vec())).collect();
        v.sort();
        v
    };
    assert!(tensors(&ckpts[0]) == tensors(&ckpts[1]), "chunked and one-binding checkpoints differ");
}
