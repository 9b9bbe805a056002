//! The toy benchmarks (ring8, grid25) and their PacGAN metrics: hand-made point sets, the data
//! sets' mode statistics, and `train --toy` / `eval` end to end on the CPU backend.

use std::process::Command;

use shadergan::data::toy::Toy;
use shadergan::data::DataValues;
use shadergan::eval::toy::toy_metrics;

fn flat(points: &[(f32, f32)]) -> Vec<f32> {
    points.iter().flat_map(|&(x, y)| [x, y]).collect()
}

#[test]
fn even_points_at_every_mode_capture_all() {
    let modes = Toy::Ring8.modes();
    let pts: Vec<(f32, f32)> = (0..800).map(|i| modes[i % 8]).collect();
    let m = toy_metrics(Toy::Ring8, &flat(&pts));
    assert_eq!(m.samples, 800);
    assert_eq!(m.modes_total, 8);
    assert_eq!(m.modes_captured, 8);
    assert!((m.high_quality_pct - 100.0).abs() < 1e-9, "{m:?}");
    assert!(m.reverse_kl.abs() < 1e-9, "{m:?}");
}

#[test]
fn all_points_at_one_mode_is_full_collapse() {
    let (x, y) = Toy::Ring8.modes()[3];
    // Within 3 std (0.03) of the mode, still high quality.
    let pts: Vec<(f32, f32)> = (0..500).map(|i| (x + 0.02 * ((i % 3) as f32 - 1.0), y)).collect();
    let m = toy_metrics(Toy::Ring8, &flat(&pts));
    assert_eq!(m.modes_captured, 1);
    assert!((m.high_quality_pct - 100.0).abs() < 1e-9);
    assert!((m.reverse_kl - 8f64.ln()).abs() < 1e-9, "{m:?}");
}

#[test]
fn points_far_from_every_mode_are_not_high_quality() {
    let pts: Vec<(f32, f32)> = (0..100).map(|i| (0.5 * (i % 2) as f32, 0.0)).collect();
    let m = toy_metrics(Toy::Ring8, &flat(&pts));
    assert_eq!(m.high_quality_pct, 0.0);
    assert_eq!(m.modes_captured, 0);
    assert!((m.reverse_kl - 8f64.ln()).abs() < 1e-9);
    // Just outside 3 std of a grid25 mode (0.15) is not high quality, just inside is.
    let g = toy_metrics(Toy::Grid25, &flat(&[(2.16, 0.0), (2.14, 0.0)]));
    assert_eq!(g.modes_captured, 1);
    assert!((g.high_quality_pct - 50.0).abs() < 1e-9);
}

#[test]
fn grid25_modes() {
    let modes = Toy::Grid25.modes();
    assert_eq!(modes.len(), 25);
    assert!(modes.contains(&(-4.0, 4.0)) && modes.contains(&(0.0, 0.0)) && modes.contains(&(2.0, -2.0)));
    let ring = Toy::Ring8.modes();
    assert!((ring[2].0.abs() < 1e-6) && (ring[2].1 - 1.0).abs() < 1e-6);
}

/// Every mode gets about n/K samples, the per-axis std around each mode is near the stated one,
/// and the data set scores like perfect samples.
#[test]
fn toy_data_sets_have_the_stated_modes() {
    for toy in [Toy::Ring8, Toy::Grid25] {
        let n = 50_000;
        let d = toy.dataset(7, n).unwrap();
        assert_eq!((d.n, d.dim), (n, 2));
        let DataValues::F32(v) = &d.values else { panic!("float data") };
        let modes = toy.modes();
        let k = modes.len();
        let mut count = vec![0usize; k];
        let mut sq = vec![0f64; k];
        for p in v.chunks_exact(2) {
            let (m, _) = modes
                .iter()
                .enumerate()
                .map(|(i, &(x, y))| (i, (p[0] - x).powi(2) + (p[1] - y).powi(2)))
                .fold((0, f32::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
            count[m] += 1;
            sq[m] += ((p[0] - modes[m].0).powi(2) + (p[1] - modes[m].1).powi(2)) as f64;
        }
        let expect = n as f64 / k as f64;
        for (m, &c) in count.iter().enumerate() {
            assert!((c as f64 - expect).abs() < 0.1 * expect, "{toy:?} mode {m}: {c} samples, expected ~{expect}");
            let std = (sq[m] / (2.0 * c as f64)).sqrt();
            let want = toy.std() as f64;
            assert!((std - want).abs() < 0.05 * want, "{toy:?} mode {m}: std {std}, stated {want}");
        }
        let met = toy_metrics(toy, v);
        assert_eq!(met.modes_captured, k);
        assert!(met.high_quality_pct > 98.0, "{toy:?}: {met:?}");
        assert!(met.reverse_kl < 0.01, "{toy:?}: {met:?}");
        // Seeded: the same seed draws the same points, another seed others.
        let DataValues::F32(again) = toy.dataset(7, n).unwrap().values else { panic!() };
        assert_eq!(&again, v);
        let DataValues::F32(other) = toy.dataset(8, n).unwrap().values else { panic!() };
        assert_ne!(&other, v);
    }
}

#[test]
fn train_toy_writes_eval_json_and_eval_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_shadergan"))
        .args(["train", "--toy", "ring8", "--backend", "cpu", "--steps", "300", "--log-every", "50"])
        .args(["--g-hidden", "64,64", "--d-hidden", "64,64", "--latent-dim", "8"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "train failed:\n{err}");
    assert!(stdout.contains("eval ring8 at step 300:"), "stdout:\n{stdout}");
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    for key in ["samples", "modes_captured", "modes_total", "high_quality_pct", "reverse_kl"] {
        assert!(eval.get(key).is_some(), "eval.json lacks {key}: {eval}");
    }
    assert_eq!(eval["samples"], 2500);
    assert_eq!(eval["modes_total"], 8);
    assert_eq!(eval["toy"], "ring8");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["data"]["toy"], "ring8");
    assert_eq!(config["data"]["n"], 100_000);

    let ckpt = out.join("checkpoints").join("latest.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_shadergan"))
        .args(["eval", "--toy", "ring8", "--backend", "cpu"])
        .arg(&ckpt)
        .output()
        .unwrap();
    assert!(o.status.success(), "eval failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["samples", "modes_captured", "modes_total", "high_quality_pct", "reverse_kl"] {
        assert_eq!(printed[key], eval[key], "{key}: eval printed {printed}, eval.json has {eval}");
    }

    // A data file and --toy together are refused, as is eval of a model that is not 2-D.
    let o =
        Command::new(env!("CARGO_BIN_EXE_shadergan")).args(["train", "some.npy", "--toy", "ring8"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn eval_of_an_image_model_is_an_input_error() {
    let tmp = tempfile::tempdir().unwrap();
    let npy = tmp.path().join("small.npy");
    let v: Vec<u8> = (0..64 * 16).map(|i| ((i * 31) % 256) as u8).collect();
    shadergan::data::save_npy_u8(&npy, 64, 16, &v).unwrap();
    let out = tmp.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_shadergan"))
        .arg("train")
        .arg(&npy)
        .args(["--backend", "cpu", "--steps", "2", "--batch-size", "16", "--g-hidden", "8", "--d-hidden", "8"])
        .args(["--latent-dim", "4", "-q", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(env!("CARGO_BIN_EXE_shadergan"))
        .args(["eval", "--toy", "grid25", "--backend", "cpu"])
        .arg(out.join("checkpoints").join("latest.safetensors"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("2-D"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn g_ema_is_checkpointed_restored_on_resume_and_used_by_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |out: &std::path::Path, extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_shadergan"))
            .args(["train", "--toy", "ring8", "--backend", "cpu", "--quiet", "--g-ema", "0.99"])
            .args(["--g-hidden", "16", "--d-hidden", "16", "--latent-dim", "2", "--checkpoint-every", "0"])
            .arg("--out")
            .arg(out)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "train failed:\n{}", String::from_utf8_lossy(&o.stderr));
    };
    let (a, b) = (tmp.path().join("straight"), tmp.path().join("resumed"));
    run(&a, &["--steps", "40"]);
    run(&b, &["--steps", "20"]);
    let latest = b.join("checkpoints").join("latest.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_shadergan"))
        .args(["train", "--toy", "ring8", "--backend", "cpu", "--quiet", "--steps", "40", "--resume"])
        .arg(&latest)
        .output()
        .unwrap();
    assert!(o.status.success(), "resume failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let load = |dir: &std::path::Path| {
        shadergan::train::checkpoint::load(&dir.join("checkpoints").join("latest.safetensors")).unwrap()
    };
    let (straight, resumed) = (load(&a), load(&b));
    let ema = straight.snapshot.g_ema.as_ref().expect("the checkpoint keeps G's weight average");
    assert_ne!(ema, &straight.snapshot.g.params);
    assert_eq!(straight.snapshot, resumed.snapshot, "resume continues the average exactly");
    // eval samples with the average, as the run's own eval.json did.
    let eval: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(a.join("eval.json")).unwrap()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_shadergan"))
        .args(["eval", "--toy", "ring8", "--backend", "cpu"])
        .arg(a.join("checkpoints").join("latest.safetensors"))
        .output()
        .unwrap();
    assert!(o.status.success(), "eval failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(printed["high_quality_pct"], eval["high_quality_pct"]);
    assert_eq!(printed["reverse_kl"], eval["reverse_kl"]);
}
