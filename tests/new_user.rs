//! What a new user hit: a `--toy` run with no other flags (now the measured best settings), the
//! lines Mesa printed on a machine without a display, and the words of the backend flags.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shadergan"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `train --toy NAME --backend cpu` with nothing else, stopped by SIGTERM once its config.json
/// is written (the run would take minutes): its resolved configuration.
fn default_toy_config(toy: &str, dir: &Path) -> serde_json::Value {
    let out = dir.join(toy);
    let child = bin()
        .args(["train", "--toy", toy, "--backend", "cpu", "--quiet", "--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let config = out.join("config.json");
    let t0 = Instant::now();
    while !config.exists() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap()
}

/// The defaults for toy data are the README's best settings, steps included: batch 256, Adam
/// 2e-4, latent 2, G and D 128,128, PacGAN 2, G's weight average 0.999; 30,000 steps on ring8
/// and 80,000 on grid25. (It used to be 0-1 of 8 modes.)
#[test]
fn a_toy_run_with_no_flags_gets_the_best_settings() {
    let dir = tempfile::tempdir().unwrap();
    for (toy, steps) in [("ring8", 30_000), ("grid25", 80_000)] {
        let cfg = default_toy_config(toy, dir.path());
        let t = &cfg["train"];
        assert_eq!(cfg["steps"], steps, "{toy}");
        let near = |v: &serde_json::Value, x: f64| v.as_f64().is_some_and(|v| (v - x).abs() < 1e-9);
        assert_eq!(t["batch_size"].as_u64(), Some(256), "{toy}");
        assert!(near(&t["lr"], 2e-4) && near(&t["g_ema"], 0.999), "{toy}: {t}");
        let m = &t["model"];
        assert_eq!((m["latent_dim"].as_u64(), m["pack"].as_u64()), (Some(2), Some(2)), "{toy}");
        assert_eq!(
            (m["g_hidden"].clone(), m["d_hidden"].clone()),
            (serde_json::json!([128, 128]), serde_json::json!([128, 128]))
        );
        assert_eq!(cfg["data"]["toy"], toy);
    }
}

/// On a machine without a display (no XDG_RUNTIME_DIR) and WGPU_BACKEND unset, no command prints
/// Mesa's "error: XDG_RUNTIME_DIR is invalid or not set in the environment." (from its Vulkan
/// device-select layer), before or after the backend note.
#[test]
fn no_display_prints_no_xdg_runtime_dir_errors() {
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("d.npy");
    shadergan::data::save_npy_u8(&npy, 16, 4, &[5; 64]).unwrap();
    let out = dir.path().join("run");
    let runs: [Vec<&str>; 3] = [
        vec!["info"],
        vec!["train", npy.to_str().unwrap(), "--steps", "2", "--batch-size", "4", "--out", out.to_str().unwrap()],
        vec!["bench", "--backend", "all", "--seconds", "0.05", "--batch-sizes", "8", "--precision", "f32"],
    ];
    for args in runs {
        let o = bin()
            .args(&args)
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("WGPU_BACKEND")
            .env_remove("NODEVICE_SELECT")
            .output()
            .unwrap();
        let err = stderr(&o);
        assert!(o.status.success(), "{args:?}: {err}");
        assert!(!err.contains("XDG_RUNTIME_DIR"), "{args:?} printed Mesa's display error:\n{err}");
    }
}

/// `bench --backend` is spelled like `train --backend` (gpu, cpu; `all` for both, a comma list
/// works too), and the old `--backends both` still works.
#[test]
fn bench_takes_backend_like_train() {
    let quick = ["--seconds", "0.05", "--batch-sizes", "8", "--precision", "f32", "--json"];
    for spelling in [&["--backend", "cpu"][..], &["--backends", "cpu"], &["--backend", "cpu,cpu"]] {
        let o = bin().arg("bench").args(spelling).args(quick).output().unwrap();
        assert!(o.status.success(), "{spelling:?}: {}", stderr(&o));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let backends: Vec<&str> =
            report["steps"].as_array().unwrap().iter().filter_map(|s| s["backend"].as_str()).collect();
        assert!(!backends.is_empty() && backends.iter().all(|b| *b == "cpu"), "{spelling:?}: {backends:?}");
    }
    let o = bin().args(["bench", "--backend", "tpu"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// `bench --backend cpu --kernels` says where a CPU step's time goes: the wall clock of each op,
/// by kernel family and by entry point, the convolutions (the DCGAN's tiled entry points too)
/// under `conv`, and the families add up to the total it prints.
#[test]
fn cpu_bench_lists_the_time_of_every_kernel() {
    let o = bin()
        .args(["bench", "--backend", "cpu", "--arch", "dcgan", "--seconds", "0.05", "--batch-sizes", "4", "--kernels"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let head =
        out.lines().find(|l| l.starts_with("CPU time per step")).unwrap_or_else(|| panic!("no CPU times:\n{out}"));
    let total: f64 = head.rsplit(':').next().unwrap().trim().trim_end_matches(" ms").parse().unwrap();
    let families: Vec<(&str, f64)> = out
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("    ") && l.ends_with('%'))
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap(), w.next().unwrap().parse().unwrap())
        })
        .collect();
    assert!(families.iter().any(|(f, ms)| *f == "conv" && *ms > 0.0), "{out}");
    assert!(!families.iter().any(|(f, _)| *f == "other"), "an entry point without a family:\n{out}");
    let sum: f64 = families.iter().map(|(_, ms)| ms).sum();
    assert!((sum - total).abs() <= 0.01 * total + 0.01, "{sum} against {total}:\n{out}");
    assert!(out.contains("    conv2d_backward_weight"), "no entry points listed:\n{out}");
}
