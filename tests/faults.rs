//! GPU faults become errors, never panics: no adapter, a lost device, a validation error.

mod common;

use std::process::Command;
use std::sync::Arc;

use shadergan::backend::gpu::GpuExecutor;
use shadergan::backend::Executor;
use shadergan::data::Dataset;
use shadergan::programs::gan::GanProgram;
use shadergan::TrainOptions;

fn small() -> Arc<Dataset> {
    Arc::new(Dataset::from_u8(32, 16, (0..512).map(|i| (i % 256) as u8).collect()).unwrap())
}

#[test]
fn no_adapter_is_a_clear_error_and_auto_falls_back_to_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("d.npy");
    shadergan::data::save_npy_u8(&npy, 32, 16, &[7; 512]).unwrap();
    // A backend this machine does not have: wgpu then sees no adapter at all.
    let backend = if cfg!(target_os = "windows") { "metal" } else { "dx12" };
    let run = |b: &str, out: &str| {
        Command::new(env!("CARGO_BIN_EXE_shadergan"))
            .env("WGPU_BACKEND", backend)
            .env_remove("WGPU_ADAPTER_NAME")
            .args(["train", npy.to_str().unwrap(), "--backend", b, "--steps", "2", "--batch-size", "8"])
            .args(["--out", dir.path().join(out).to_str().unwrap()])
            .output()
            .unwrap()
    };
    let o = run("gpu", "g");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no GPU adapter found"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let o = run("auto", "a");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("running on the CPU backend"), "{err}");
}

#[test]
fn a_validation_error_is_reported_not_panicked() {
    let Some(ctx) = common::gpu() else { return };
    // MAP_READ cannot be combined with STORAGE: wgpu reports a validation error.
    let _bad = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("D.fc9.weight.bad"),
        size: 64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let err = ctx.wait(None).expect_err("the error must surface");
    let msg = err.to_string();
    assert!(msg.contains("GPU error") && msg.contains("D.fc9.weight.bad"), "{msg}");
    assert_eq!(err.exit_code(), 1);
    assert!(ctx.check().is_ok(), "the error is reported once");
}

#[test]
fn a_lost_device_is_an_error_not_a_panic() {
    let Some(ctx) = common::gpu() else { return };
    let data = small();
    let cfg = TrainOptions {
        latent_dim: Some(4),
        g_hidden: vec![8],
        d_hidden: vec![8],
        batch_size: Some(8),
        ..Default::default()
    }
    .resolve(&data)
    .unwrap();
    let p = GanProgram::build(&cfg, data.n, true);
    let mut exec = GpuExecutor::new(ctx.clone(), &p.bufs, Some(&data)).unwrap();
    let step = exec.add_section(&p.train_step).unwrap();
    exec.run(step, 2).unwrap();
    ctx.device.destroy();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let r = exec.run(step, 2).and_then(|_| exec.read(p.stats).map(|_| ()));
        r.map_err(|e| e.to_string())
    }));
    let r = result.expect("no panic after the device is lost");
    let err = r.expect_err("work on a lost device must fail");
    assert!(err.contains("GPU") || err.contains("device"), "{err}");
}
