//! `classifier train`, image evaluation at the end of `train` and every `--eval-every` steps, and
//! `eval` of an image run, through the binary: good runs write what they say, bad input exits 2
//! with one line and writes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shadergan::data;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shadergan")).env("RUST_BACKTRACE", "1").args(args).output().expect("run")
}

fn assert_input_error(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "expected exit 2 for {needle:?}; stderr:\n{err}");
    assert!(err.contains(needle), "stderr should mention {needle:?}:\n{err}");
    assert!(!err.contains("panicked") && !err.contains("stack backtrace"), "panic:\n{err}");
}

fn ok(o: &Output) {
    assert!(o.status.success(), "failed:\n{}", String::from_utf8_lossy(&o.stderr));
}

/// 240 uint8 "images" of 16 pixels in 3 classes (bright block = class), and their labels.
fn labelled(dir: &Path, name: &str, n: usize) -> (PathBuf, PathBuf) {
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    let px: Vec<u8> = (0..n * 16)
        .map(|i| {
            let (r, c) = (i / 16, i % 16);
            (((r * 37 + c * 11) % 60) + if c / 5 == labels[r] as usize { 180 } else { 0 }) as u8
        })
        .collect();
    let (x, y) = (dir.join(format!("{name}_x.npy")), dir.join(format!("{name}_y.npy")));
    data::save_npy_u8(&x, n, 16, &px).unwrap();
    write_labels(&y, &labels);
    (x, y)
}

/// A (N,) uint8 .npy.
fn write_labels(path: &Path, labels: &[u8]) {
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({},), }}", labels.len());
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(labels);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn classifier_train_writes_a_classifier_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = labelled(dir.path(), "train", 240);
    let (tx, ty) = labelled(dir.path(), "test", 60);
    let out = dir.path().join("c.safetensors");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let base = ["classifier", "train"];
    let common = ["--backend", "cpu", "--epochs", "3", "--batch-size", "16", "--hidden", "16", "--lr", "0.01"];
    let mut args: Vec<String> = base.iter().map(|a| a.to_string()).collect();
    args.extend([
        s(&x),
        s(&y),
        "--test-images".into(),
        s(&tx),
        "--test-labels".into(),
        s(&ty),
        "--out".into(),
        s(&out),
    ]);
    args.extend(common.iter().map(|a| a.to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&argv);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("test accuracy"), "{err}");
    let clf = shadergan::programs::classifier::Classifier::load(&out).unwrap();
    assert!(clf.spec.test_accuracy.unwrap() > 0.9, "{:?}", clf.spec.test_accuracy);

    // An existing --out is kept unless --overwrite.
    let before = std::fs::read(&out).unwrap();
    assert_input_error(&run(&argv), "--overwrite");
    assert_eq!(std::fs::read(&out).unwrap(), before);

    // One label short; labels of the wrong shape; a test label the training set never saw.
    let fresh = dir.path().join("fresh.safetensors");
    let short = dir.path().join("short.npy");
    write_labels(&short, &vec![0u8; 239]);
    let wide = dir.path().join("wide.npy");
    data::save_npy_u8(&wide, 240, 2, &vec![0u8; 480]).unwrap();
    let unseen = dir.path().join("unseen.npy");
    write_labels(&unseen, &[7u8; 60]);
    for (labels, test_labels, needle) in [
        (short.clone(), ty.clone(), "240 images but 239 labels"),
        (wide.clone(), ty.clone(), "labels must have shape (N,)"),
        (y.clone(), unseen.clone(), "a test label is 7"),
    ] {
        let o = run(&[
            "classifier",
            "train",
            &s(&x),
            &s(&labels),
            "--test-images",
            &s(&tx),
            "--test-labels",
            &s(&test_labels),
            "--out",
            &s(&fresh),
            "--backend",
            "cpu",
            "--epochs",
            "1",
        ]);
        assert_input_error(&o, needle);
        assert!(!fresh.exists(), "{needle}: wrote a classifier anyway");
    }
}

/// 300 uint8 28x28 images: digits-like strokes are not needed for the metrics to be computed.
fn mnist_like(dir: &Path) -> PathBuf {
    let p = dir.join("img28.npy");
    let v: Vec<u8> = (0..300 * 784).map(|i| if (i % 784) % 29 < 3 + (i / 784) % 5 { 220 } else { 0 }).collect();
    data::save_npy_u8(&p, 300, 784, &v).unwrap();
    p
}

#[test]
fn image_runs_are_evaluated_at_the_end_and_every_eval_every_steps() {
    let dir = tempfile::tempdir().unwrap();
    let npy = mnist_like(dir.path());
    let out = dir.path().join("run");
    let small = ["--g-hidden", "32", "--d-hidden", "32", "--latent-dim", "8", "--batch-size", "32", "-q"];
    let mut args = vec!["train", npy.to_str().unwrap(), "--backend", "cpu", "--steps", "20", "--eval-every", "10"];
    args.extend(small);
    args.extend(["--out", out.to_str().unwrap()]);
    ok(&run(&args));

    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(eval["step"], 20);
    assert_eq!(eval["samples"], 10_000);
    assert_eq!(eval["classes"], 10);
    assert_eq!(eval["real_samples"], 300);
    assert_eq!(eval["real_floor_samples"], 150);
    for key in ["class_kl", "classifier_score", "frechet_distance", "real_floor"] {
        assert!(eval[key].as_f64().is_some_and(f64::is_finite), "{key}: {eval}");
    }
    assert!(eval["classifier"].as_str().unwrap().contains("built in"));

    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    // The classifier's columns, then the SWD's (28x28: one pyramid level).
    assert_eq!(rows[0][7..], ["classes", "class_kl", "classifier_score", "frechet_distance", "swd", "swd_28"]);
    let evaluated: Vec<&str> = rows[1..].iter().filter(|r| !r[10].is_empty()).map(|r| r[0]).collect();
    assert_eq!(evaluated, ["10", "20"], "{csv}");
    // The final evaluation in eval.json is the step-20 row.
    let fd: f64 = rows.last().unwrap()[10].parse().unwrap();
    assert!((fd - eval["frechet_distance"].as_f64().unwrap()).abs() < 1e-3 * fd.max(1.0));

    // `eval` of the run folder reproduces eval.json (the same latents and real images).
    let o = run(&["eval", out.to_str().unwrap(), "--backend", "cpu"]);
    ok(&o);
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in
        ["classes_hit", "class_kl", "classifier_score", "frechet_distance", "real_floor", "swd", "swd_real_floor"]
    {
        assert_eq!(printed[key], eval[key], "{key}");
    }
    assert_eq!((eval["swd_samples"].clone(), eval["scored"].clone()), (150.into(), true.into()));

    // --classifier none: no classifier metrics, the SWD alone.
    let out2 = dir.path().join("run2");
    let mut args = vec!["train", npy.to_str().unwrap(), "--backend", "cpu", "--steps", "4", "--classifier", "none"];
    args.extend(small);
    args.extend(["--out", out2.to_str().unwrap()]);
    ok(&run(&args));
    let eval2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out2.join("eval.json")).unwrap()).unwrap();
    assert!(eval2["swd"].as_f64().is_some_and(f64::is_finite) && eval2.get("frechet_distance").is_none(), "{eval2}");
    // A missing classifier file is an input error, before any training.
    let out3 = dir.path().join("run3");
    let mut args = vec!["train", npy.to_str().unwrap(), "--backend", "cpu", "--classifier", "nope.safetensors"];
    args.extend(small);
    args.extend(["--out", out3.to_str().unwrap()]);
    assert_input_error(&run(&args), "nope.safetensors");
    assert!(!out3.join("checkpoints").join("latest.safetensors").exists());
}

#[test]
fn eval_scores_a_npy_of_generated_images_against_real_ones() {
    let dir = tempfile::tempdir().unwrap();
    let real = mnist_like(dir.path());
    let r = real.to_str().unwrap();
    // The real images scored as if generated: the same set, so a Fréchet distance of ~0.
    let o = run(&["eval", r, "--data", r]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["samples"], 300);
    assert_eq!(v["samples_file"], r);
    assert!(v["frechet_distance"].as_f64().unwrap().abs() < 1e-3, "{v}");
    assert!(v["classifier"].as_str().unwrap().contains("built in"));
    // The same images as float32 in [0, 1] score the same.
    let d = data::load_npy(&real).unwrap();
    let floats: Vec<f32> = match &d.values {
        data::DataValues::U8(b) => b.iter().map(|&x| x as f32 / 255.0).collect(),
        data::DataValues::F32(_) => unreachable!(),
    };
    let f = dir.path().join("floats.npy");
    data::save_npy_f32(&f, 300, 784, &floats).unwrap();
    let o = run(&["eval", f.to_str().unwrap(), "--data", r]);
    ok(&o);
    let w: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["classes_hit", "class_kl", "classifier_score"] {
        let (a, b) = (v[key].as_f64().unwrap(), w[key].as_f64().unwrap());
        assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "{key}: {a} vs {b}");
    }

    // Bad input: one line, exit 2.
    assert_input_error(&run(&["eval", r]), "needs --data");
    let tanh: Vec<f32> = floats.iter().map(|x| 2.0 * x - 1.0).collect();
    let t = dir.path().join("tanh.npy");
    data::save_npy_f32(&t, 300, 784, &tanh).unwrap();
    assert_input_error(&run(&["eval", t.to_str().unwrap(), "--data", r]), "(x + 1) / 2");
    let small = dir.path().join("small.npy");
    data::save_npy_u8(&small, 4, 16, &[0; 64]).unwrap();
    assert_input_error(&run(&["eval", small.to_str().unwrap(), "--data", r]), "16 values");
    assert_input_error(&run(&["eval", r, "--data", r, "--toy", "ring8"]), "--toy");
}
