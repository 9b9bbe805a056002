//! `--precision f16` through the binary: a clear exit-2 error on a GPU without shader-f16, the
//! precision stored in config.json and checkpoints, exact resume at f16 on the CPU, and a resume
//! that asks for another precision refused like any other model flag.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shadergan::config::Precision;
use shadergan::data;
use shadergan::train::checkpoint;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shadergan"));
    c.env("RUST_BACKTRACE", "1").envs(env.iter().copied());
    c.args(args).output().expect("run shadergan")
}

fn ok(args: &[&str]) -> Output {
    let o = run(args, &[]);
    assert!(o.status.success(), "{args:?}:\n{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// 64 uint8 "images" of 4x4.
fn small_npy(dir: &Path) -> PathBuf {
    let p = dir.join("small.npy");
    let v: Vec<u8> = (0..64 * 16).map(|i| ((i * 31) % 256) as u8).collect();
    data::save_npy_u8(&p, 64, 16, &v).unwrap();
    p
}

fn train<'a>(npy: &'a str, out: &'a str, backend: &'a str, steps: &'a str) -> Vec<&'a str> {
    let model = ["--batch-size", "8", "--g-hidden", "32", "--d-hidden", "32", "--latent-dim", "8"];
    let mut v = vec!["train", npy, "--backend", backend, "--steps", steps, "--log-every", "5", "--out", out, "--quiet"];
    v.extend(model);
    v
}

#[test]
fn f16_on_a_gpu_without_shader_f16_exits_2_with_one_line() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let npy = small_npy(dir.path());
    let out = dir.path().join("run");
    let mut args = train(npy.to_str().unwrap(), out.to_str().unwrap(), "gpu", "5");
    args.extend(["--precision", "f16"]);
    // SHADERGAN_NO_F16=1: the context does not request SHADER_F16, as on an adapter without it.
    let o = run(&args, &[("SHADERGAN_NO_F16", "1")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("error: --precision f16 needs a GPU with shader-f16"), "{err}");
    // One line of ours (the Vulkan loader may add its own chatter around it).
    assert_eq!(err.lines().filter(|l| l.contains("f16")).count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn f16_trains_on_the_gpu() {
    let Some(ctx) = common::gpu() else { return };
    if !ctx.supports_f16() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let npy = small_npy(dir.path());
    let out = dir.path().join("run");
    let mut args = train(npy.to_str().unwrap(), out.to_str().unwrap(), "gpu", "10");
    args.extend(["--precision", "f16"]);
    ok(&args);
    let ck = checkpoint::load(&out.join("checkpoints/latest.safetensors")).unwrap();
    assert_eq!(ck.config.precision, Precision::F16);
}

#[test]
fn f16_is_stored_resumes_exactly_and_a_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let npy = small_npy(dir.path());
    let p = npy.to_str().unwrap();
    let (a, b) = (dir.path().join("straight"), dir.path().join("resumed"));
    for (out, steps) in [(&a, "20"), (&b, "10")] {
        let mut args = train(p, out.to_str().unwrap(), "cpu", steps);
        args.extend(["--precision", "f16"]);
        ok(&args);
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["train"]["precision"], "f16");
    // Resumed without the flag: the checkpoint's f16 carries on, bit for bit on the CPU.
    let latest = b.join("checkpoints/latest.safetensors");
    ok(&["train", p, "--backend", "cpu", "--resume", latest.to_str().unwrap(), "--steps", "20", "--quiet"]);
    let straight = checkpoint::load(&a.join("checkpoints/latest.safetensors")).unwrap();
    let resumed = checkpoint::load(&latest).unwrap();
    assert_eq!(resumed.config.precision, Precision::F16);
    assert_eq!(straight.snapshot, resumed.snapshot);

    // An f32 run resumed with --precision f16 is refused, naming both.
    let c = dir.path().join("f32");
    ok(&train(p, c.to_str().unwrap(), "cpu", "5"));
    let ck = c.join("checkpoints/latest.safetensors");
    let o = run(
        &["train", p, "--backend", "cpu", "--resume", ck.to_str().unwrap(), "--steps", "9", "--precision", "f16"],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--precision f16 (checkpoint: f32)"), "{err}");
}

#[test]
fn a_config_written_before_the_flag_existed_is_f32() {
    let data = shadergan::Dataset::from_u8(4, 2, vec![0; 8]).unwrap();
    let opts = shadergan::TrainOptions { batch_size: Some(2), precision: Precision::F16, ..Default::default() };
    let mut json = serde_json::to_value(opts.resolve(&data).unwrap()).unwrap();
    assert_eq!(json["precision"], "f16");
    json.as_object_mut().unwrap().remove("precision");
    let old: shadergan::TrainConfig = serde_json::from_value(json).unwrap();
    assert_eq!(old.precision, Precision::F32);
}
