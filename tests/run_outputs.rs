//! What a run leaves behind: the run folder, checkpoints that round-trip, exact resume, clean
//! failure on a mismatched resume, `generate` reproducing G, and a `latest` checkpoint that
//! survives kill -9 at any moment.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use shadergan::data::{self, Dataset};
use shadergan::rng;
use shadergan::train::checkpoint;
use shadergan::Trainer;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shadergan"))
}

fn run(args: &[&str]) -> Output {
    let o = bin().args(args).output().expect("run shadergan");
    o
}

fn ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(o.status.success(), "{args:?}:\n{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// 96 images of 6x6 uint8.
fn images(dir: &Path) -> PathBuf {
    let p = dir.join("img.npy");
    let v: Vec<u8> = (0..96 * 36).map(|i| ((i * 37 + i / 36 * 11) % 256) as u8).collect();
    data::save_npy_u8(&p, 96, 36, &v).unwrap();
    p
}

/// 512 points on a ring (float32, 2-D).
fn points(dir: &Path) -> PathBuf {
    let p = dir.join("ring.npy");
    let mut noise = vec![0f32; 1024];
    rng::normals([1, 2], 0, 0, 9, &mut noise);
    let v: Vec<f32> = (0..512)
        .flat_map(|i| {
            let a = std::f32::consts::TAU * (i % 8) as f32 / 8.0;
            [a.cos() + 0.05 * noise[2 * i], a.sin() + 0.05 * noise[2 * i + 1]]
        })
        .collect();
    data::save_npy_f32(&p, 512, 2, &v).unwrap();
    p
}

fn train_args<'a>(data: &'a str, out: &'a str, backend: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        data,
        "--backend",
        backend,
        "--steps",
        steps,
        "--batch-size",
        "16",
        "--log-every",
        "5",
        "--sample-every",
        "10",
        "--checkpoint-every",
        "10",
        "--g-hidden",
        "32",
        "--d-hidden",
        "32",
        "--latent-dim",
        "8",
        "--out",
        out,
        "--quiet",
    ]
}

#[test]
fn the_run_folder_holds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let npy = images(dir.path());
    let out = dir.path().join("run");
    ok(&train_args(npy.to_str().unwrap(), out.to_str().unwrap(), "cpu", "20"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["model"]["latent_dim"], 8);
    assert_eq!(config["data"]["n"], 96);
    assert_eq!(config["backend"], "cpu");
    assert!(config["shadergan_version"].is_string());
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "step,epoch,d_loss,g_loss,d_real,d_fake,steps_per_s");
    assert_eq!(rows.len(), 5, "{csv}");
    assert!(rows[4].starts_with("20,"));
    for f in [
        "samples/step_000010.png",
        "samples/step_000020.png",
        "samples/final.png",
        "loss.png",
        "checkpoints/step_000010.safetensors",
        "checkpoints/step_000020.safetensors",
        "checkpoints/latest.safetensors",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let ck = checkpoint::load(&out.join("checkpoints/latest.safetensors")).unwrap();
    assert_eq!(ck.snapshot.state.step, 20);
    assert_eq!(ck.data_shape, vec![36]);
    // The default numbered folder is used without --out.
    let o = bin()
        .current_dir(dir.path())
        .args(["train", npy.to_str().unwrap(), "--backend", "cpu", "--steps", "2", "--batch-size", "8", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(dir.path().join("runs/001/config.json").is_file());
}

#[test]
fn two_d_data_gets_scatter_plots() {
    let dir = tempfile::tempdir().unwrap();
    let npy = points(dir.path());
    let out = dir.path().join("run");
    ok(&train_args(npy.to_str().unwrap(), out.to_str().unwrap(), "cpu", "10"));
    assert!(out.join("samples/final.png").is_file());
}

fn resume_is_exact(backend: &str) -> Option<(checkpoint::Checkpoint, checkpoint::Checkpoint)> {
    if backend == "gpu" && common::gpu().is_none() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let npy = images(dir.path());
    let (a, b) = (dir.path().join("straight"), dir.path().join("resumed"));
    let p = npy.to_str().unwrap();
    ok(&train_args(p, a.to_str().unwrap(), backend, "30"));
    ok(&train_args(p, b.to_str().unwrap(), backend, "10"));
    let latest = b.join("checkpoints/latest.safetensors");
    ok(&["train", p, "--backend", backend, "--resume", latest.to_str().unwrap(), "--steps", "30", "--quiet"]);
    let straight = checkpoint::load(&a.join("checkpoints/latest.safetensors")).unwrap();
    let resumed = checkpoint::load(&latest).unwrap();
    assert_eq!(resumed.snapshot.state.step, 30);
    // metrics.csv continues without duplicate rows.
    let csv = std::fs::read_to_string(b.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "{csv}");
    Some((straight, resumed))
}

#[test]
fn resume_on_cpu_is_bit_exact() {
    let (straight, resumed) = resume_is_exact("cpu").unwrap();
    assert_eq!(straight.snapshot, resumed.snapshot);
}

#[test]
fn resume_on_gpu_matches_within_parity_tolerance() {
    let Some((straight, resumed)) = resume_is_exact("gpu") else { return };
    let t = shadergan::kernels::tolerance::tolerance("train_10_steps");
    assert_eq!(straight.snapshot.state, resumed.snapshot.state);
    shadergan::kernels::tolerance::compare("G", &resumed.snapshot.g.params, &straight.snapshot.g.params, t).unwrap();
    shadergan::kernels::tolerance::compare("D", &resumed.snapshot.d.params, &straight.snapshot.d.params, t).unwrap();
}

#[test]
fn resume_keeps_the_lr_decay_schedule_and_stops_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let npy = images(dir.path());
    let p = npy.to_str().unwrap();
    let (a, b) = (dir.path().join("straight"), dir.path().join("resumed"));
    for out in [&a, &b] {
        let mut args = train_args(p, out.to_str().unwrap(), "cpu", "30");
        args.extend(["--lr-decay", "0.5"]);
        ok(&args);
    }
    // Resume b from step 10 without a length: it goes on to the 30 steps it was started with,
    // on the schedule in the checkpoint.
    let at10 = b.join("checkpoints/step_000010.safetensors");
    ok(&["train", p, "--backend", "cpu", "--resume", at10.to_str().unwrap(), "--quiet"]);
    let straight = checkpoint::load(&a.join("checkpoints/latest.safetensors")).unwrap();
    let latest = b.join("checkpoints/latest.safetensors");
    let resumed = checkpoint::load(&latest).unwrap();
    assert_eq!((resumed.config.lr_decay, resumed.config.lr_decay_end), (0.5, 30));
    assert_eq!(straight.snapshot, resumed.snapshot);
    // Past the schedule's end the rate is 0: training on is refused, and nothing changes.
    let before = std::fs::read(&latest).unwrap();
    let o = run(&["train", p, "--backend", "cpu", "--resume", latest.to_str().unwrap(), "--steps", "40"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("decays to 0 at step 30"), "{err}");
    assert_eq!(std::fs::read(&latest).unwrap(), before);
    // The same refusal into a new --out makes no folder there.
    let fresh = dir.path().join("not-made");
    let o = run(&["train", p, "--backend", "cpu", "--resume", latest.to_str().unwrap(), "--steps", "40"]
        .into_iter()
        .chain(["--out", fresh.to_str().unwrap()])
        .collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!fresh.exists(), "a refused resume made {}", fresh.display());
}

#[test]
fn mismatched_resume_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let img = images(dir.path());
    let pts = points(dir.path());
    let out = dir.path().join("run");
    ok(&train_args(img.to_str().unwrap(), out.to_str().unwrap(), "cpu", "10"));
    let latest = out.join("checkpoints/latest.safetensors");
    let before = std::fs::read(&latest).unwrap();
    let o = run(&[
        "train",
        pts.to_str().unwrap(),
        "--backend",
        "cpu",
        "--resume",
        latest.to_str().unwrap(),
        "--steps",
        "20",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("36"));
    let o = run(&[
        "train",
        img.to_str().unwrap(),
        "--backend",
        "cpu",
        "--resume",
        latest.to_str().unwrap(),
        "--steps",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already at step 10"));
    // The same refusal into a new --out makes no folder there.
    let fresh = dir.path().join("not-made");
    let o2 = run(&[
        "train",
        img.to_str().unwrap(),
        "--backend",
        "cpu",
        "--resume",
        latest.to_str().unwrap(),
        "--steps",
        "5",
        "--out",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(o2.status.code(), Some(2), "{}", String::from_utf8_lossy(&o2.stderr));
    assert!(String::from_utf8_lossy(&o2.stderr).contains("already at step 10"));
    assert!(!fresh.exists(), "a refused resume made {}", fresh.display());
    // A model flag that disagrees with the checkpoint is refused, naming both values.
    let o = run(&[
        "train",
        img.to_str().unwrap(),
        "--backend",
        "cpu",
        "--resume",
        latest.to_str().unwrap(),
        "--steps",
        "20",
        "--latent-dim",
        "16",
        "--g-hidden",
        "64",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--latent-dim 16 (checkpoint: 8)") && err.contains("--g-hidden 64 (checkpoint: 32)"), "{err}");
    assert_eq!(std::fs::read(&latest).unwrap(), before, "a failed resume changed the checkpoint");
}

#[test]
fn generate_with_z_reproduces_the_generator() {
    let dir = tempfile::tempdir().unwrap();
    let pts = points(dir.path());
    let out = dir.path().join("run");
    ok(&train_args(pts.to_str().unwrap(), out.to_str().unwrap(), "cpu", "10"));
    let latest = out.join("checkpoints/latest.safetensors");
    let z: Vec<f32> = (0..5 * 8).map(|i| (i as f32 * 0.37).sin()).collect();
    let zp = dir.path().join("z.npy");
    data::save_npy_f32(&zp, 5, 8, &z).unwrap();
    let samples = dir.path().join("s.npy");
    ok(&[
        "generate",
        latest.to_str().unwrap(),
        "--z",
        zp.to_str().unwrap(),
        "--out",
        samples.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    let got = data::load_npy(&samples).unwrap();
    assert_eq!((got.n, got.dim), (5, 2));
    // The same G on the same latents, computed here from the checkpoint.
    let ck = checkpoint::load(&latest).unwrap();
    let ds = Arc::new(Dataset::from_f32(16, 2, vec![0.0; 32]).unwrap());
    let mut t = shadergan::open_trainer(shadergan::Backend::Cpu, ck.config.clone(), ds).unwrap();
    t.restore(&ck.snapshot).unwrap();
    let want = t.sample(&z).unwrap();
    let got: Vec<f32> = (0..5).flat_map(|r| [got.get(r, 0), got.get(r, 1)]).collect();
    assert_eq!(got, want);
    // Wrong width is a clean error.
    let bad = dir.path().join("bad.npy");
    data::save_npy_f32(&bad, 2, 3, &[0.0; 6]).unwrap();
    let o =
        run(&["generate", latest.to_str().unwrap(), "--z", bad.to_str().unwrap(), "--out", samples.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("latent_dim is 8"));
}

#[test]
fn generate_writes_uint8_images_and_a_grid() {
    let dir = tempfile::tempdir().unwrap();
    let img = images(dir.path());
    let out = dir.path().join("run");
    ok(&train_args(img.to_str().unwrap(), out.to_str().unwrap(), "cpu", "10"));
    let latest = out.join("checkpoints/latest.safetensors");
    let samples = dir.path().join("s.npy");
    let grid = dir.path().join("g.png");
    ok(&[
        "generate",
        latest.to_str().unwrap(),
        "--n",
        "100",
        "--out",
        samples.to_str().unwrap(),
        "--grid",
        grid.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    let got = data::load_npy(&samples).unwrap();
    assert_eq!((got.n, got.dim, got.dtype.as_str()), (100, 36, "uint8"));
    assert!(grid.is_file());
}

#[test]
fn kill_9_at_any_moment_leaves_a_loadable_latest() {
    let dir = tempfile::tempdir().unwrap();
    let npy = images(dir.path());
    let out = dir.path().join("run");
    let p = npy.to_str().unwrap();
    let o = out.to_str().unwrap();
    let mut args = train_args(p, o, "cpu", "100000");
    args.retain(|a| *a != "--quiet");
    let ck_every = args.iter().position(|a| *a == "--checkpoint-every").unwrap();
    args[ck_every + 1] = "7";
    let mut loaded = 0;
    for (i, delay_ms) in [150u64, 420, 700, 1000, 1300].into_iter().enumerate() {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if i > 0 {
            a.push("--overwrite".into());
        }
        let mut child =
            bin().args(&a).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let latest = out.join("checkpoints/latest.safetensors");
        if latest.exists() {
            let ck = checkpoint::load(&latest).unwrap_or_else(|e| panic!("after kill at {delay_ms} ms: {e}"));
            assert_eq!(ck.snapshot.state.step % 7, 0);
            loaded += 1;
        }
        // No temp file may ever be taken for a checkpoint.
        for e in std::fs::read_dir(out.join("checkpoints")).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(name.ends_with(".safetensors") || name.ends_with(".tmp"), "{name}");
        }
    }
    assert!(loaded >= 3, "the runs were killed before any checkpoint: make the delays longer");
}

#[test]
fn sigint_writes_a_checkpoint_and_says_how_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let npy = images(dir.path());
    let out = dir.path().join("run");
    let mut args = train_args(npy.to_str().unwrap(), out.to_str().unwrap(), "cpu", "1000000");
    args.retain(|a| *a != "--quiet");
    let child =
        bin().args(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("--resume"), "{err}");
    let ck = checkpoint::load(&out.join("checkpoints/latest.safetensors")).unwrap();
    assert!(ck.snapshot.state.step > 0);
    // The step it names is the checkpoint's, not the last logged row's.
    let said = format!("stopped at step {};", ck.snapshot.state.step);
    assert!(err.contains(&said), "{said:?} not in {err}");
}

#[test]
fn sigterm_also_writes_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let npy = images(dir.path());
    let out = dir.path().join("run");
    let args = train_args(npy.to_str().unwrap(), out.to_str().unwrap(), "cpu", "1000000");
    let child =
        bin().args(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ck = checkpoint::load(&out.join("checkpoints/latest.safetensors")).unwrap();
    assert!(ck.snapshot.state.step > 0);
}

#[test]
fn resume_with_out_continues_in_the_new_folder_and_leaves_the_old_one_alone() {
    let dir = tempfile::tempdir().unwrap();
    let npy = images(dir.path());
    let p = npy.to_str().unwrap();
    let (a, b, c) = (dir.path().join("straight"), dir.path().join("first"), dir.path().join("second"));
    ok(&train_args(p, a.to_str().unwrap(), "cpu", "30"));
    ok(&train_args(p, b.to_str().unwrap(), "cpu", "10"));
    let before: Vec<_> = std::fs::read_dir(b.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name()).collect();
    let latest = b.join("checkpoints/latest.safetensors");
    // The model flags given again with their own values are fine; the cadences carry over.
    let args = ["train", p, "--backend", "cpu", "--resume", latest.to_str().unwrap(), "--steps", "30"];
    ok(&[&args[..], &["--latent-dim", "8", "--batch-size", "16", "--out", c.to_str().unwrap(), "--quiet"]].concat());
    let resumed = checkpoint::load(&c.join("checkpoints/latest.safetensors")).unwrap();
    let straight = checkpoint::load(&a.join("checkpoints/latest.safetensors")).unwrap();
    assert_eq!(resumed.snapshot, straight.snapshot);
    // The new folder has the whole run's metrics (the first 10 steps carried over) and its config.
    let csv = std::fs::read_to_string(c.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "{csv}");
    let cfg = shadergan::config::RunConfig::read(&c).unwrap().unwrap();
    assert_eq!((cfg.steps, cfg.log_every, cfg.sample_every), (30, 5, 10));
    assert_eq!(cfg.resumed_from.as_deref(), latest.to_str());
    // The old folder is as it was.
    let after: Vec<_> = std::fs::read_dir(b.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after);
    assert_eq!(std::fs::read_to_string(b.join("metrics.csv")).unwrap().lines().count(), 3);
    assert_eq!(shadergan::config::RunConfig::read(&b).unwrap().unwrap().steps, 10);
}
