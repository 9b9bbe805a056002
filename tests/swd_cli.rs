//! The sliced Wasserstein distance through the binary: a colour folder's run has it in eval.json
//! and metrics.csv, `eval` of the run reproduces it, `eval samples.npy --data DIR` scores
//! anyone's samples against the reference a seed-0 run uses (the folder read as `train` reads
//! it, `--image-size` included), and the bad cases are one line, exit 2. Images under 16x16 stay
//! unscored.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{Rgb, RgbImage};
use serde_json::{json, Value};
use shadergan::{data, rng};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shadergan")).args(args).env("RUST_BACKTRACE", "1").output().expect("run shadergan")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(o.status.success(), "shadergan {args:?} failed:\n{}", stderr(&o));
    o
}

fn printed(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Exit 2 with one `error:` line naming `needle`, no panic.
fn input_error(args: &[&str], needle: &str) {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: expected exit 2; stderr:\n{err}");
    assert!(err.contains(needle), "{args:?}: stderr should mention {needle:?}:\n{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json_file(p: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(p).unwrap()).unwrap()
}

/// `n` 32x32 PNGs: a disc of one of three colours, at a place that moves with i, on stripes.
fn folder(root: &Path, name: &str, n: u32) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    let colours = [[220, 30, 30], [30, 180, 40], [40, 60, 230]];
    for i in 0..n {
        let (cx, cy) = (8.0 + (i * 5 % 16) as f32, 8.0 + (i * 3 % 16) as f32);
        let img = RgbImage::from_fn(32, 32, |x, y| {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            if dx * dx + dy * dy < 49.0 {
                Rgb(colours[i as usize % 3])
            } else if (x + y) % 6 < 3 {
                Rgb([235, 235, 225])
            } else {
                Rgb([200, 190, 170])
            }
        });
        img.save(dir.join(format!("{i:03}.png"))).unwrap();
    }
    dir
}

fn assert_finite(v: &Value, key: &str) {
    assert!(v[key].as_f64().is_some_and(|x| x.is_finite() && x >= 0.0), "{key}: {v}");
}

#[test]
fn a_colour_folder_run_is_scored_by_the_swd_and_eval_reproduces_it() {
    let tmp = tempfile::tempdir().unwrap();
    let pics = folder(tmp.path(), "pics", 24);
    let out = tmp.path().join("run");
    let args = ["train", s(&pics), "--backend", "cpu", "--steps", "6", "--batch-size", "8", "--eval-every", "3"];
    let small = ["--arch", "mlp", "--g-hidden", "32", "--d-hidden", "32", "--latent-dim", "8", "--out", s(&out)];
    let o = ok(&[&args[..], &small].concat());
    // The log line at evaluation shows the SWD.
    let log = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(log.contains("eval step 3: SWD ") && log.contains("real-vs-real floor"), "{log}");

    let eval = json_file(&out.join("eval.json"));
    assert_eq!(eval["scored"], true);
    assert_eq!(eval["step"], 6);
    assert_eq!(eval["swd_levels"], json!(["32", "16"]));
    // N = min(2048, 24 / 2).
    assert_eq!(eval["swd_samples"], 12);
    for key in ["swd", "swd_real_floor"] {
        assert_finite(&eval, key);
    }
    assert_eq!(eval["swd_per_level"].as_array().unwrap().len(), 2);
    assert_eq!(eval["swd_real_floor_per_level"].as_array().unwrap().len(), 2);

    // metrics.csv: swd and one column per level, filled every --eval-every steps.
    let csv = fs::read_to_string(out.join("metrics.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0][7..], ["swd", "swd_32", "swd_16"]);
    let evaluated: Vec<&str> = rows[1..].iter().filter(|r| !r[7].is_empty()).map(|r| r[0]).collect();
    assert_eq!(evaluated, ["3", "6"], "{csv}");
    let last: f64 = rows.last().unwrap()[7].parse().unwrap();
    assert!((last - eval["swd"].as_f64().unwrap()).abs() < 1e-3, "{csv}");

    // `eval` of the run reproduces eval.json exactly.
    let again = printed(&ok(&["eval", s(&out), "--backend", "cpu"]));
    for key in ["swd", "swd_per_level", "swd_real_floor", "swd_real_floor_per_level", "swd_samples", "step"] {
        assert_eq!(again[key], eval[key], "{key}");
    }

    // Generated images as .npy (generate writes (N, 32, 32, 3) uint8) score against the folder
    // with the reference a seed-0 run uses: the same floor as this seed-0 run.
    let samples = tmp.path().join("samples.npy");
    let ckpt = out.join("checkpoints/latest.safetensors");
    ok(&["generate", s(&ckpt), "--n", "30", "--out", s(&samples), "--backend", "cpu"]);
    let v = printed(&ok(&["eval", s(&samples), "--data", s(&pics)]));
    assert_eq!((v["scored"].clone(), v["swd_samples"].clone()), (json!(true), json!(12)));
    assert_eq!(v["swd_real_floor"], eval["swd_real_floor"]);
    assert_finite(&v, "swd");
    // Fewer samples than N: N follows them (and the floor with it).
    let few = tmp.path().join("few.npy");
    ok(&["generate", s(&ckpt), "--n", "5", "--out", s(&few), "--backend", "cpu"]);
    assert_eq!(printed(&ok(&["eval", s(&few), "--data", s(&pics)]))["swd_samples"], 5);
}

#[test]
fn eval_scores_samples_against_a_folder_read_at_a_size_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let pics = folder(tmp.path(), "pics", 20);
    // The reference's own real images as the samples (the first N of seed 0's order): 0, as the
    // same images give the same neighbourhoods.
    let real = data::folder::load_image_folder(&pics, &Default::default()).unwrap();
    let perm = rng::EpochPermutation::new(0, rng::PURPOSE_EVAL, 20);
    let px = 32 * 32 * 3;
    let first: Vec<u8> = (0..10).flat_map(|q| &real.pixels[perm.apply(q) as usize * px..][..px]).copied().collect();
    let same = tmp.path().join("same.npy");
    data::save_npy_u8_as(&same, &[10, 32, 32, 3], &first).unwrap();
    let v = printed(&ok(&["eval", s(&same), "--data", s(&pics)]));
    assert_eq!(v["swd_samples"], 10);
    assert!(v["swd"].as_f64().unwrap() < 1e-6, "{v}");
    assert!(v["swd_real_floor"].as_f64().unwrap() > 1e-3, "{v}");
    // Uniform noise at 16x16 against the folder read at --image-size 16: far above the floor
    // (a high one: 10 images a side).
    let noise: Vec<u8> = (0..10 * 16 * 16 * 3u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let noise_npy = tmp.path().join("noise16.npy");
    data::save_npy_u8_as(&noise_npy, &[10, 16, 16, 3], &noise).unwrap();
    let v = printed(&ok(&["eval", s(&noise_npy), "--data", s(&pics), "--image-size", "16"]));
    assert_eq!((v["swd_levels"].clone(), v["swd_samples"].clone()), (json!(["16"]), json!(10)));
    assert!(v["swd"].as_f64().unwrap() > 3.0 * v["swd_real_floor"].as_f64().unwrap(), "{v}");

    // The wrong image size: one line, naming the flag that reads the folder at that size.
    input_error(&["eval", s(&noise_npy), "--data", s(&pics)], "--image-size 16");
    // Too few real images.
    let one = folder(tmp.path(), "one", 1);
    input_error(&["eval", s(&same), "--data", s(&one)], "at least 2 real images");
    // Flat rows of colour values: which value is which pixel is unknown.
    let flat = tmp.path().join("flat.npy");
    data::save_npy_f32(&flat, 2, 3072, &vec![0.5; 2 * 3072]).unwrap();
    input_error(&["eval", s(&flat), "--data", s(&pics)], "not images");
    // Floats outside [0, 1].
    let wide = tmp.path().join("wide.npy");
    data::save_npy_f32_as(&wide, &[2, 32, 32, 3], &vec![2.0; 2 * 3072]).unwrap();
    input_error(&["eval", s(&wide), "--data", s(&pics)], "(x + 1) / 2");
}

#[test]
fn images_under_16_pixels_stay_unscored() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("c8.npy");
    let v: Vec<u8> = (0..40 * 8 * 8 * 3).map(|i| ((i * 13) % 256) as u8).collect();
    data::save_npy_u8_as(&p, &[40, 8, 8, 3], &v).unwrap();
    let out = tmp.path().join("run");
    let args = ["train", s(&p), "--backend", "cpu", "--steps", "2", "--batch-size", "4", "--out", s(&out)];
    ok(&[&args[..], &["--g-hidden", "8", "--d-hidden", "8", "-q"]].concat());
    let eval = json_file(&out.join("eval.json"));
    assert_eq!(eval["scored"], false);
    assert!(eval["reason"].as_str().unwrap().contains("at least 16x16"), "{eval}");
    assert!(fs::read_to_string(out.join("metrics.csv")).unwrap().lines().next().unwrap().ends_with("steps_per_s"));
}
