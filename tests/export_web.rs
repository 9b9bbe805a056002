//! `export-web`: what it records (knobs and seeds must turn the recorded program into exactly the
//! one recorded with that setting or seed), the folders it writes (self-contained; a sampling
//! export keeps only what sampling binds), and its bad input. The browser runs these folders in
//! tests/web (headless Chromium).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use shadergan::backend::web::Recording;
use shadergan::commands::export_web::program::{self, SECTIONS};
use shadergan::config::{Loss, TrainConfig};
use shadergan::data::toy::Toy;
use shadergan::ir::DataChunks;
use shadergan::TrainOptions;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shadergan"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stderr(&o)
}

/// program.js's object.
fn program(dir: &Path) -> Value {
    let js = std::fs::read_to_string(dir.join("program.js")).unwrap();
    let json = js.split_once(".push(").unwrap().1.trim_end().trim_end_matches(");");
    serde_json::from_str(json).unwrap()
}

const TOY: &[&str] = &["--toy", "ring8", "--g-hidden", "8,8", "--d-hidden", "8,8", "--batch-size", "16"];

fn toy_config(seed: u64) -> (TrainConfig, shadergan::Dataset) {
    let data = Toy::Ring8.dataset(seed, 1000).unwrap();
    let opts = TrainOptions { g_hidden: vec![8], d_hidden: vec![8], batch_size: Some(16), seed, ..Default::default() };
    (opts.resolve_for(&data, Some(Toy::Ring8)).unwrap(), data)
}

fn record(cfg: &TrainConfig, n: usize) -> Recording {
    program::record(cfg, &DataChunks::whole(n), false, Some([-1.5, 1.5, -1.5, 1.5]), None).unwrap().recording().unwrap()
}

/// Every knob rewrites exactly the uniform words that make the base program the one built with
/// that setting (so the page, setting a value, runs what `train` with that flag runs).
#[test]
fn knobs_rewrite_the_program_into_the_one_with_that_setting() {
    let (cfg, data) = toy_config(0);
    let base = record(&cfg, data.n);
    let rerecord = |c: &TrainConfig| Ok(record(c, data.n));
    let knobs = program::knobs(&cfg, data.n, &base, &rerecord).unwrap();
    let names: Vec<&str> = knobs.iter().map(|k| k.name).collect();
    assert_eq!(names, ["lr", "d_lr", "beta1", "beta2", "real_label", "g_ema"]);
    let changed = [
        ("lr", TrainConfig { lr: 3e-3, d_lr: Some(cfg.d_lr()), ..cfg.clone() }),
        ("d_lr", TrainConfig { d_lr: Some(1e-3), ..cfg.clone() }),
        ("beta1", TrainConfig { beta1: 0.8, ..cfg.clone() }),
        ("beta2", TrainConfig { beta2: 0.99, ..cfg.clone() }),
        ("real_label", TrainConfig { real_label: 0.85, ..cfg.clone() }),
        ("g_ema", TrainConfig { g_ema: 0.9, ..cfg.clone() }),
    ];
    for (name, want_cfg) in changed {
        let knob = knobs.iter().find(|k| k.name == name).unwrap();
        let value = match name {
            "lr" => want_cfg.lr,
            "d_lr" => want_cfg.d_lr(),
            "beta1" => want_cfg.beta1,
            "beta2" => want_cfg.beta2,
            "real_label" => want_cfg.real_label,
            _ => want_cfg.g_ema,
        };
        let mut patched = base.sections.clone();
        for &(s, d, off) in &knob.targets {
            patched[s][d].uniform.as_mut().unwrap()[off..off + 4].copy_from_slice(&value.to_le_bytes());
        }
        assert_eq!(patched, record(&want_cfg, data.n).sections, "{name}");
        assert!(knob.targets.iter().all(|t| SECTIONS[t.0] == "train"), "{name}: {:?}", knob.targets);
    }
}

/// A setting `train` refuses in this configuration is no knob: the hinge loss takes no label
/// smoothing, so its page has no real-label slider (the rest stay).
#[test]
fn a_setting_train_would_refuse_is_no_knob() {
    let (cfg, data) = toy_config(0);
    let cfg = TrainConfig { loss: Loss::Hinge, ..cfg };
    cfg.validate(data.n).unwrap();
    let base = record(&cfg, data.n);
    let rerecord = |c: &TrainConfig| Ok(record(c, data.n));
    let knobs = program::knobs(&cfg, data.n, &base, &rerecord).unwrap();
    let names: Vec<&str> = knobs.iter().map(|k| k.name).collect();
    assert_eq!(names, ["lr", "d_lr", "beta1", "beta2", "g_ema"]);
}

/// Another seed's uniforms and initial actions make the program recorded with that seed.
#[test]
fn a_seed_variant_is_the_program_recorded_with_that_seed() {
    let (cfg, data) = toy_config(0);
    let base = record(&cfg, data.n);
    let other = record(&TrainConfig { seed: 7, ..cfg.clone() }, data.n);
    let v = program::seed_variant(7, &base, &other, None).unwrap();
    assert!(!v.uniforms.is_empty());
    let mut patched = base.sections.clone();
    for (s, d, bytes) in &v.uniforms {
        patched[*s][*d].uniform = Some(bytes.clone());
    }
    assert_eq!(patched, other.sections);
    assert_eq!(v.actions, other.initial_actions());
    assert_ne!(v.actions, base.initial_actions(), "seed 7 starts from other weights");
}

/// The files a page names (src=, href=) that are not in its folder.
fn missing_files(dir: &Path) -> Vec<String> {
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    let mut missing = vec![];
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let name = part.split('"').next().unwrap();
            if !name.starts_with("data:") && !dir.join(name).is_file() {
                missing.push(name.to_string());
            }
        }
    }
    missing
}

#[test]
fn a_training_export_holds_the_whole_program_with_its_knobs_and_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("page");
    let msg = ok(&[&["export-web"], TOY, &["--seeds", "4,9", "--out", out.to_str().unwrap()]].concat());
    assert!(msg.contains("index.html") && msg.contains("trains this run live"), "{msg}");
    assert_eq!(missing_files(&out), Vec::<String>::new());
    let p = program(&out);
    assert_eq!(p["format"], "shadergan-web-1");
    assert_eq!(p["config"]["seed"], 4);
    let sections = p["sections"].as_object().unwrap();
    assert!(["train", "sample", "refresh", "grid"].iter().all(|s| sections.contains_key(*s)));
    assert_eq!(p["seeds"].as_array().unwrap().len(), 2);
    // Toy data is drawn from the seed: each seed has its own.
    assert!(p["seeds"].as_array().unwrap().iter().all(|s| s["data"].as_array().is_some_and(|d| d.len() == 1)));
    // The WGSL is the native executor's, one module per family used.
    let families = p["families"].as_object().unwrap();
    for (name, f) in families {
        let family = shadergan::kernels::family(name).unwrap();
        assert_eq!(f["source"].as_str().unwrap(), shadergan::kernels::source(family));
    }
    assert!(p["io"]["grid"]["size"].as_u64().is_some());
}

/// A trained run of `steps` steps on the CPU backend.
fn trained_run(dir: &Path, steps: &str) -> PathBuf {
    let run = dir.join("run");
    ok(&[&["train"], TOY, &["--steps", steps, "--backend", "cpu", "--quiet", "--out", run.to_str().unwrap()]].concat());
    run
}

#[test]
fn a_checkpoint_export_samples_and_keeps_only_what_sampling_binds() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path(), "6");
    for (i, source) in [run.clone(), run.join("checkpoints/latest.safetensors")].iter().enumerate() {
        let out = dir.path().join(format!("page{i}"));
        let msg = ok(&["export-web", source.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(msg.contains("samples from this generator"), "{msg}");
        assert_eq!(missing_files(&out), Vec::<String>::new());
        let p = program(&out);
        assert!(p["sections"].get("train").is_none());
        let labels: Vec<&str> = p["buffers"].as_array().unwrap().iter().map(|b| b["label"].as_str().unwrap()).collect();
        assert!(labels.contains(&"G.params.ema") && !labels.contains(&"D.adam.moments"), "{labels:?}");
        assert_eq!(p["source"]["step"], 6);
        // A toy run's export shows D's output on the grid, so D's weights come along.
        assert!(labels.contains(&"D.params") && p["io"]["grid"].is_object());
        assert_eq!(p["knobs"], serde_json::json!([]));
    }
}

#[test]
fn a_run_config_exports_that_run_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path(), "2");
    let out = dir.path().join("page");
    ok(&["export-web", run.join("config.json").to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let p = program(&out);
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(p["config"], cfg["train"]);
    assert!(p["sections"].get("train").is_some());
}

#[test]
fn f16_and_sample_limits_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f16");
    ok(&[&["export-web"], TOY, &["--precision", "f16", "--samples", "500", "--out", out.to_str().unwrap()]].concat());
    let p = program(&out);
    assert_eq!(p["needs_f16"], true);
    assert_eq!(p["data"]["n"], 500);
    assert!(p["entries"].as_object().unwrap().keys().any(|e| e.ends_with("_f16")));
    assert!(!p["sections"]["refresh"].as_array().unwrap().is_empty());
}

fn assert_input_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn bad_exports_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = trained_run(dir.path(), "2");
    let (r, cfg) = (run_dir.to_str().unwrap(), run_dir.join("config.json"));
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["export-web", r, "--lr", "0.1", "--out", o], "drop the training flags"),
        (vec!["export-web", r, "--seeds", "1,2", "--out", o], "--seeds is for training exports"),
        (vec!["export-web", cfg.to_str().unwrap(), "--seeds", "1", "--out", o], "has its own seed"),
        (vec!["export-web", "nope.npy", "--out", o], "nope.npy"),
        (vec!["export-web", "--toy", "ring8", "--samples", "0", "--out", o], "--samples"),
        (vec!["export-web", "--toy", "ring8", "--batch-size", "0", "--out", o], "batch"),
    ];
    for (args, needle) in cases {
        assert_input_error(&run(&args), needle);
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
    // An --out that holds something is left alone without --overwrite.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("mine.txt"), "keep").unwrap();
    assert_input_error(&run(&["export-web", "--toy", "ring8", "--out", o]), "--overwrite");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    assert_input_error(&run(&["export-web", r, "--out", out.join("mine.txt").to_str().unwrap()]), "a file");
}

/// A conditional run's checkpoint exports for sampling: the page writes each row's class into
/// the sampling labels and z after the room for G's class embedding; training one live is
/// refused with one line (flags or its config.json), nothing written.
#[test]
fn a_conditional_checkpoint_exports_to_sample_each_class_and_is_not_trained_live() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let small = ["--g-hidden", "16", "--d-hidden", "16", "--batch-size", "16"];
    let train = [
        &["train", "--conditional", "--steps", "2", "--backend", "cpu", "--quiet", "--classifier", "none"][..],
        &small[..],
    ]
    .concat();
    ok(&[&train[..], &["--out", run_dir.to_str().unwrap()]].concat());
    let out = dir.path().join("page");
    ok(&["export-web", run_dir.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let p = program(&out);
    let io = &p["io"];
    assert_eq!(io["classes"], 10);
    assert_eq!(io["class_names"].as_array().unwrap().len(), 10);
    assert_eq!(io["sample_width"], 10 + io["latent_dim"].as_u64().unwrap());
    let labels = io["sample_labels"].as_u64().expect("the sampling labels are exported") as usize;
    assert_eq!(p["buffers"][labels]["label"], "sample.labels");
    let o = dir.path().join("live");
    let live = [&["export-web", "--conditional"][..], &small[..], &["--out", o.to_str().unwrap()]].concat();
    assert_input_error(&run(&live), "trains only unconditional GANs live");
    let cfg = run_dir.join("config.json");
    assert_input_error(
        &run(&["export-web", cfg.to_str().unwrap(), "--out", o.to_str().unwrap()]),
        "(this run is --conditional)",
    );
    assert!(!o.exists());
}
