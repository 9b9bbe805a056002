//! `--conditional` through the binary: labels in (a .npy's `--labels`, an image folder's class
//! subfolders, the built-in digits'), every bad label file and every refused combination (exit 2,
//! one line, no run folder left behind).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{GrayImage, Luma};
use shadergan::data;

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shadergan"))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run shadergan")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A .npy of `descr` values (little-endian bytes given) of `shape`.
fn npy(path: &Path, descr: &str, shape: &str, data: &[u8]) -> PathBuf {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

fn int64_labels(path: &Path, labels: &[i64]) -> PathBuf {
    let bytes: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    npy(path, "<i8", &format!("({},)", labels.len()), &bytes)
}

/// 40 uint8 samples of 4x4 and their labels 0, 1, 2, 0, 1, ... as int64.
fn labelled_npy(dir: &Path) -> (PathBuf, PathBuf) {
    let x = dir.join("x.npy");
    let v: Vec<u8> = (0..40 * 16).map(|i| ((i * 37) % 256) as u8).collect();
    data::save_npy_u8(&x, 40, 16, &v).unwrap();
    let labels: Vec<i64> = (0..40).map(|i| i % 3).collect();
    (x, int64_labels(&dir.join("y.npy"), &labels))
}

/// A folder of 8x8 gray images: `per` in each class subfolder, and `loose` at its root.
fn class_folder(root: &Path, classes: &[&str], per: u32, loose: u32) -> PathBuf {
    for (k, class) in classes.iter().enumerate() {
        fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..per {
            let img =
                GrayImage::from_fn(8, 8, |x, y| Luma([((x * 30 + y * 3 + i * 7) as usize * (k + 1) % 256) as u8]));
            img.save(root.join(class).join(format!("{i:02}.png"))).unwrap();
        }
    }
    for i in 0..loose {
        GrayImage::from_pixel(8, 8, Luma([i as u8])).save(root.join(format!("loose{i}.png"))).unwrap();
    }
    root.to_path_buf()
}

/// Exit 2, one `error:` line naming `needle`, no panic, and nothing written: neither `--out` nor
/// a `runs/` folder in the working directory.
#[track_caller]
fn refused(dir: &Path, args: &[&str], needle: &str) {
    let out = dir.join("run");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--backend", "cpu", "--steps", "2", "--batch-size", "4", "--out", out.to_str().unwrap()]);
    let o = run_in(dir, &all);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: expected exit 2; stderr:\n{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line:\n{err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{args:?}: {needle:?} not in:\n{err}");
    assert!(!out.exists(), "{args:?}: a run folder was left behind");
    // Without --out: no runs/ folder either.
    let o = run_in(dir, &all[..all.len() - 2]);
    assert_eq!(o.status.code(), Some(2), "{args:?} without --out:\n{}", stderr(&o));
    assert!(!dir.join("runs").exists(), "{args:?}: runs/ was created");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_bad_label_file_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (x, _) = labelled_npy(d);
    let x = s(&x);
    let cases: Vec<(PathBuf, &str)> = vec![
        (int64_labels(&d.join("short.npy"), &[0, 1]), "2 labels for 40 samples"),
        (int64_labels(&d.join("neg.npy"), &[[0, 1].repeat(19), vec![-1, 1]].concat()), "label 38 is -1"),
        (int64_labels(&d.join("big.npy"), &[[0, 1].repeat(19), vec![256, 1]].concat()), "at most 256 classes"),
        (int64_labels(&d.join("one.npy"), &[3; 40]), "needs at least two classes"),
        (npy(&d.join("f32.npy"), "<f4", "(40,)", &[0u8; 160]), "the labels are float32; --labels needs integer"),
        (
            npy(&d.join("nan.npy"), "<f8", "(40,)", &[f64::NAN.to_le_bytes(), 1f64.to_le_bytes()].concat().repeat(20)),
            "the labels are float64",
        ),
        (npy(&d.join("wide.npy"), "<i8", "(20, 2)", &[0u8; 320]), "labels must have shape (N,) or (N, 1)"),
        (npy(&d.join("bool.npy"), "|b1", "(40,)", &[0u8; 40]), "unsupported dtype"),
        (npy(&d.join("cut.npy"), "<i4", "(40,)", &[0u8; 100]), "truncated data"),
    ];
    fs::write(d.join("junk.npy"), b"not numpy").unwrap();
    for (labels, needle) in cases.iter().map(|(p, n)| (s(p), *n)).chain([(s(&d.join("junk.npy")), "not a .npy file")]) {
        refused(d, &["train", x, "--conditional", "--labels", labels], needle);
    }
    refused(d, &["train", x, "--conditional", "--labels", "missing.npy"], "missing.npy: cannot read");
}

#[test]
fn labels_and_conditional_are_refused_where_they_do_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (x, y) = labelled_npy(d);
    let (x, y) = (s(&x), s(&y));
    refused(d, &["train", x, "--labels", y], "--labels gives the classes of a --conditional run; add --conditional");
    refused(d, &["train", x, "--conditional"], "x.npy: --conditional needs the class of each sample: pass --labels");
    refused(d, &["train", "--toy", "ring8", "--conditional"], "--toy ring8 has no classes");
    refused(d, &["train", "--labels", y, "--conditional"], "the built-in digits have their labels built in");
    let folder = class_folder(&d.join("pets"), &["cat", "dog"], 3, 0);
    refused(
        d,
        &["train", s(&folder), "--conditional", "--labels", y],
        "pets is a folder, whose classes are its subfolders",
    );
    let loose = class_folder(&d.join("mixed"), &["cat", "dog"], 3, 1);
    refused(d, &["train", s(&loose), "--conditional"], "loose0.png is not in a class subfolder");
    let single = class_folder(&d.join("single"), &["cat"], 6, 0);
    refused(d, &["train", s(&single), "--conditional"], "every sample is of one class (cat)");
    // The built-in digits (28x28, labelled) for the DCGAN's refusal.
    refused(d, &["train", "--conditional", "--arch", "dcgan"], "--conditional trains --arch mlp so far");
    for (flags, needle) in [
        (&["--precision", "f16"][..], "--conditional trains in f32"),
        (&["--pack", "2"][..], "--conditional takes --pack 1, not 2"),
    ] {
        let args: Vec<&str> = [&["train", x, "--conditional", "--labels", y][..], flags].concat();
        refused(d, &args, needle);
    }
}

fn ok_in(dir: &Path, args: &[&str]) -> Output {
    let o = run_in(dir, args);
    assert!(o.status.success(), "{args:?}:\n{}", stderr(&o));
    o
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

/// A small conditional MLP run's flags (every option it takes: two D updates, dropout, G's
/// weight average, the hinge loss, spectral normalisation).
fn small_run<'a>(data: &'a str, out: &'a str, steps: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["train", data, "--conditional", "--g-hidden", "16", "--d-hidden", "12", "--latent-dim", "5"];
    a.extend(["--batch-size", "8", "--steps", steps, "--checkpoint-every", "3", "--log-every", "3"]);
    a.extend(["--backend", "cpu", "--quiet", "--out", out]);
    a.extend(extra);
    a
}

/// A .npy run with --labels: config.json records the labels file and the class names; the
/// checkpoint holds both embedding tables (and their Adam moments, G's average of G's) under
/// PyTorch-style names; resumed from a middle checkpoint it gives the same bits as straight
/// through; a resume on other labels is refused.
#[test]
fn a_labelled_npy_run_records_its_classes_and_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (x, y) = labelled_npy(d);
    let (a, b) = (d.join("straight"), d.join("resumed"));
    let extra = [
        "--labels",
        s(&y),
        "--sample-every",
        "0",
        "--d-steps",
        "2",
        "--d-dropout",
        "0.3",
        "--g-ema",
        "0.9",
        "--loss",
        "hinge",
    ];
    let extra = [&extra[..], &["--d-norm", "spectral"]].concat();
    ok_in(d, &small_run(s(&x), s(&a), "6", &extra));
    ok_in(d, &small_run(s(&x), s(&b), "3", &extra));
    let latest = b.join("checkpoints/latest.safetensors");
    ok_in(d, &["train", "--resume", s(&latest), "--steps", "6", "--backend", "cpu", "--quiet"]);
    let straight = shadergan::train::checkpoint::load(&a.join("checkpoints/latest.safetensors")).unwrap();
    let resumed = shadergan::train::checkpoint::load(&latest).unwrap();
    assert_eq!(straight.snapshot, resumed.snapshot, "resume is not bit-exact");
    assert_eq!(straight.config.class_names, ["0", "1", "2"]);

    let cfg = json(&a.join("config.json"));
    assert_eq!(cfg["train"]["class_names"], serde_json::json!(["0", "1", "2"]));
    assert_eq!(cfg["train"]["model"]["classes"], 3);
    assert_eq!(cfg["data"]["labels"].as_str(), Some(s(&y)));

    let bytes = fs::read(a.join("checkpoints/latest.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // G: nn.Embedding(3, 3), then fc1 reading concat(embedding, z): 3 + 5 inputs.
    assert_eq!(st.tensor("G.embed.weight").unwrap().shape(), [3, 3]);
    assert_eq!(st.tensor("G.fc1.weight").unwrap().shape(), [16, 8]);
    assert_eq!(st.tensor("G_ema.embed.weight").unwrap().shape(), [3, 3]);
    assert_eq!(st.tensor("optim.G.exp_avg.embed.weight").unwrap().shape(), [3, 3]);
    // D: the head fc2 and the projection's embedding (3 classes x 12 features), spectrally
    // normalised as PyTorch's parametrization names them.
    assert_eq!(st.tensor("D.fc2.parametrizations.weight.original").unwrap().shape(), [1, 12]);
    assert_eq!(st.tensor("D.embed.parametrizations.weight.original").unwrap().shape(), [3, 12]);
    assert_eq!(st.tensor("D.embed.parametrizations.weight.0._u").unwrap().shape(), [3]);
    assert_eq!(st.tensor("D.embed.parametrizations.weight.0._v").unwrap().shape(), [12]);
    assert_eq!(st.tensor("optim.D.exp_avg_sq.embed.parametrizations.weight.original").unwrap().shape(), [3, 12]);

    // Resuming on labels that name other classes is refused; so is --conditional on an
    // unconditional checkpoint.
    let other = int64_labels(&d.join("other.npy"), &(0..40).map(|i| i % 4).collect::<Vec<_>>());
    let o = run_in(d, &["train", "--resume", s(&latest), "--labels", s(&other), "--steps", "9", "--backend", "cpu"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the data's classes (0, 1, 2, 3) are not the checkpoint's (0, 1, 2)"),
        "{}",
        stderr(&o)
    );
    let plain = d.join("plain");
    let args = ["train", s(&x), "--g-hidden", "8", "--d-hidden", "8", "--batch-size", "8", "--steps", "2"];
    ok_in(d, &[&args[..], &["--backend", "cpu", "--quiet", "--out", s(&plain)]].concat());
    let o = run_in(d, &["train", "--resume", s(&plain), "--conditional", "--labels", s(&y), "--steps", "4"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--conditional true (checkpoint: false)"), "{}", stderr(&o));
}

/// A folder's class subfolders are the classes, in sorted order; config.json has their names;
/// the grid has one row per class; resume finds the folder (and its cache) again.
#[test]
fn a_class_folder_trains_with_its_subfolders_as_classes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let folder = class_folder(&d.join("shapes"), &["square", "dot", "ring"], 6, 0);
    let out = d.join("run");
    ok_in(d, &small_run(s(&folder), s(&out), "3", &["--sample-every", "3"]));
    let cfg = json(&out.join("config.json"));
    assert_eq!(cfg["train"]["class_names"], serde_json::json!(["dot", "ring", "square"]));
    assert!(cfg["data"].get("labels").is_none());
    // Three rows of 8 (one per class) of 8x8 images scaled to 56 pixels with 2-pixel borders,
    // the class names in a margin left of them.
    let grid = image::open(out.join("samples/step_000003.png")).unwrap();
    assert_eq!(grid.height(), 3 * 56 + 4 * 2);
    assert!(grid.width() > 8 * 56 + 9 * 2 + 16, "no margin for the names: {}", grid.width());
    ok_in(d, &["train", "--resume", s(&out), "--steps", "6", "--backend", "cpu", "--quiet"]);
    assert!(out.join("checkpoints/step_000006.safetensors").exists());
}

fn npy_f32(path: &Path, rows: usize, dim: usize, seed: u32) -> PathBuf {
    let hash = |i: usize| ((i as u32).wrapping_mul(2654435761) ^ seed) % 1000;
    let v: Vec<f32> = (0..rows * dim).map(|i| hash(i) as f32 / 250.0 - 2.0).collect();
    data::save_npy_f32(path, rows, dim, &v).unwrap();
    path.to_path_buf()
}

/// `generate` asks a conditional G for classes: --class (by index or name), --classes (the same
/// latents for each), --labels (one per sample); with --z the samples reproduce exactly, and the
/// class flags agree with each other. Bad classes and an unconditional G are refused.
#[test]
fn generate_asks_for_classes_and_reproduces_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let folder = class_folder(&d.join("shapes"), &["square", "dot", "ring"], 6, 0);
    let run = d.join("run");
    ok_in(d, &small_run(s(&folder), s(&run), "3", &["--sample-every", "0"]));
    let gen = |extra: &[&str], out: &str| -> Vec<u8> {
        let path = d.join(out);
        ok_in(d, &[&["generate", s(&run), "--backend", "cpu", "--out", s(&path)][..], extra].concat());
        fs::read(&path).unwrap()
    };
    let z = npy_f32(&d.join("z.npy"), 4, 5, 1);
    let ring = gen(&["--z", s(&z), "--class", "ring"], "ring.npy");
    // The class by index (ring is class 1 of dot, ring, square), and by a label file.
    assert_eq!(gen(&["--z", s(&z), "--class", "1"], "one.npy"), ring);
    let ones = int64_labels(&d.join("ones.npy"), &[1, 1, 1, 1]);
    assert_eq!(gen(&["--z", s(&z), "--labels", s(&ones)], "file.npy"), ring);
    // Another class, another picture; the same flags, the same bits.
    assert_ne!(gen(&["--z", s(&z), "--class", "dot"], "dot.npy"), ring);
    let mixed = int64_labels(&d.join("mixed.npy"), &[2, 0, 1, 2]);
    assert_eq!(
        gen(&["--z", s(&z), "--labels", s(&mixed)], "m1.npy"),
        gen(&["--z", s(&z), "--labels", s(&mixed)], "m2.npy")
    );
    // --classes: the same latents for each class in turn: [ring; dot] rows.
    let both = data::load_npy(&{
        gen(&["--z", s(&z), "--classes", "ring,dot"], "both.npy");
        d.join("both.npy")
    })
    .unwrap();
    let (r, o) = (data::load_npy(&d.join("ring.npy")).unwrap(), data::load_npy(&d.join("dot.npy")).unwrap());
    assert_eq!(both.n, 8);
    assert_eq!(both.values, data::DataValues::U8([raw(&r), raw(&o)].concat()));
    // --n of each class, and a grid with a row per class.
    let grid = d.join("grid.png");
    ok_in(d, &["generate", s(&run), "--classes", "0,1,2", "--n", "8", "--grid", s(&grid), "--backend", "cpu"]);
    let g = image::open(&grid).unwrap();
    assert_eq!(g.height(), 3 * 56 + 4 * 2);
    assert!(g.width() > 8 * 56 + 9 * 2 + 16, "no margin for the names: {}", g.width());
    // A grid whose rows mix classes (the default: sample i of class i mod 3) has no names.
    ok_in(d, &["generate", s(&run), "--n", "16", "--grid", s(&grid), "--backend", "cpu"]);
    assert_eq!(image::open(&grid).unwrap().width(), 8 * 56 + 9 * 2);
    let o = run_in(d, &["generate", s(&run), "--class", "ring", "--n", "3", "--out", "x.npy", "--backend", "cpu"]);
    assert!(stderr(&o).contains("generated 3 samples of 64 values each (classes: ring)"), "{}", stderr(&o));

    // Refused, one line, nothing written.
    let plain = d.join("plain");
    let (x, _) = labelled_npy(d);
    let args = ["train", s(&x), "--g-hidden", "8", "--d-hidden", "8", "--batch-size", "8", "--steps", "2"];
    ok_in(d, &[&args[..], &["--backend", "cpu", "--quiet", "--out", s(&plain)]].concat());
    let short = int64_labels(&d.join("short.npy"), &[0, 1]);
    let floats = npy(&d.join("fl.npy"), "<f4", "(4,)", &[0u8; 16]);
    for (target, extra, needle) in [
        (
            &run,
            vec!["--class", "3"],
            "--class 3: no such class; this generator knows 3 classes, 0 to 2 (dot, ring, square)",
        ),
        (&run, vec!["--class", "cat"], "--class cat: no such class"),
        (&run, vec!["--classes", "0,7"], "--classes 7: no such class"),
        (&run, vec!["--labels", s(&short), "--z", s(&z)], "2 labels for 4 latent vectors"),
        (&run, vec!["--labels", s(&floats)], "the labels are float32; give integer class indices"),
        (&plain, vec!["--class", "1"], "this generator is not conditional"),
        (&plain, vec!["--labels", s(&ones)], "this generator is not conditional"),
    ] {
        let out = d.join("refused.npy");
        let o = run_in(d, &[&["generate", s(target), "--backend", "cpu", "--out", s(&out)][..], &extra].concat());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {needle:?} not in {err}");
        assert!(!out.exists(), "{extra:?}: wrote a file");
    }
    let too_big = int64_labels(&d.join("big.npy"), &[0, 3]);
    let o = run_in(d, &["generate", s(&run), "--labels", s(&too_big), "--out", "y.npy", "--backend", "cpu"]);
    assert!(o.status.code() == Some(2) && stderr(&o).contains("label 1 is 3; this generator knows classes 0 to 2"));
}

fn raw(d: &data::Dataset) -> Vec<u8> {
    match &d.values {
        data::DataValues::U8(v) => v.clone(),
        _ => panic!("uint8 samples"),
    }
}

/// A conditional run on the built-in digits is judged by the built-in classifier class by
/// class: eval.json's `conditional` has the agreement with the class asked for (overall and per
/// class) and each class's Fréchet distance beside its real floor, metrics.csv their columns, and
/// `eval` reproduces them; `eval --labels` of an unconditional run is refused.
#[test]
fn eval_json_judges_a_conditional_run_class_by_class() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("digits");
    let args = ["train", "--conditional", "--g-hidden", "32", "--d-hidden", "32", "--steps", "8", "--eval-every", "4"];
    ok_in(d, &[&args[..], &["--backend", "cpu", "--quiet", "--out", s(&out)]].concat());
    let eval = json(&out.join("eval.json"));
    let c = &eval["conditional"];
    let agreement = c["agreement"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&agreement), "{c}");
    let per = c["per_class"].as_array().unwrap();
    assert_eq!(per.len(), 10);
    for (k, p) in per.iter().enumerate() {
        assert_eq!((p["class"].as_u64(), p["name"].as_str()), (Some(k as u64), Some(k.to_string().as_str())));
        // 10,000 evaluation samples, class i mod 10: 1,000 each; the real digits of that class.
        assert_eq!(p["samples"], 1000);
        assert!(p["real_samples"].as_u64().unwrap() > 800, "{p}");
        for key in ["agreement", "frechet_distance", "real_floor"] {
            assert!(p[key].as_f64().is_some_and(|v| v.is_finite() && v >= 0.0), "{key}: {p}");
        }
    }
    let mean: f64 = per.iter().map(|p| p["agreement"].as_f64().unwrap()).sum::<f64>() / 10.0;
    assert!((mean - agreement).abs() < 1e-9, "balanced classes: the mean of the classes' agreement");
    assert!(c["mean_class_frechet_distance"].as_f64().unwrap() > c["mean_class_real_floor"].as_f64().unwrap());
    // The unconditional metrics beside them.
    assert!(eval["frechet_distance"].as_f64().is_some() && eval["class_kl"].as_f64().is_some());
    let csv = fs::read_to_string(out.join("metrics.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert!(header.contains(&"class_agreement") && header.contains(&"class_frechet_distance"), "{header:?}");
    // The colour metric within each class too: 256 images a side per class, above its floor.
    let swd = &eval["class_swd"];
    let per = swd["per_class"].as_array().unwrap();
    assert_eq!(per.len(), 10);
    for p in per {
        assert_eq!(p["samples"], 256, "{p}");
        assert!(p["swd"].as_f64().unwrap() > p["real_floor"].as_f64().unwrap(), "{p}");
    }
    assert!(header.contains(&"class_swd"), "{header:?}");
    // `eval` gives what the run wrote.
    let o = ok_in(d, &["eval", s(&out), "--backend", "cpu"]);
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["conditional"], eval["conditional"]);
    assert_eq!(again["class_swd"], eval["class_swd"]);

    let plain = d.join("plain");
    let args = ["train", "--g-hidden", "8", "--d-hidden", "8", "--steps", "2", "--classifier", "none"];
    ok_in(d, &[&args[..], &["--backend", "cpu", "--quiet", "--out", s(&plain)]].concat());
    let (x, y) = labelled_npy(d);
    let o = run_in(d, &["eval", s(&plain), "--data", s(&x), "--labels", s(&y), "--backend", "cpu"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("this generator is not conditional"), "{}", stderr(&o));
}

/// What scripts/torch_generator.py builds for a conditional G, by PyTorch's definitions in f64
/// from the checkpoint's tensors alone: h = cat((nn.Embedding(C, C)(y), z), 1), then nn.Linear
/// layers with LeakyReLU(0.2) between and tanh after; it gives `generate --z --class` (as uint8).
#[test]
fn an_f64_forward_of_the_conditional_generator_matches_generate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (x, y) = labelled_npy(d);
    let run = d.join("run");
    ok_in(d, &small_run(s(&x), s(&run), "4", &["--labels", s(&y), "--g-ema", "0.9", "--sample-every", "0"]));
    let bytes = fs::read(run.join("checkpoints/latest.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = |name: &str| -> (Vec<usize>, Vec<f64>) {
        let v = st.tensor(&format!("G_ema.{name}")).unwrap();
        (v.shape().to_vec(), v.data().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect())
    };
    let linear = |name: &str, x: &[f64]| -> Vec<f64> {
        let ((shape, w), (_, b)) = (t(&format!("{name}.weight")), t(&format!("{name}.bias")));
        (0..shape[0]).map(|o| b[o] + (0..shape[1]).map(|i| w[o * shape[1] + i] * x[i]).sum::<f64>()).collect()
    };
    let z = npy_f32(&d.join("z.npy"), 3, 5, 9);
    let zs = data::load_npy(&z).unwrap();
    let out = d.join("g.npy");
    ok_in(d, &["generate", s(&run), "--z", s(&z), "--class", "2", "--out", s(&out), "--backend", "cpu"]);
    let got = raw(&data::load_npy(&out).unwrap());
    let (shape, embed) = t("embed.weight");
    assert_eq!(shape, [3, 3]);
    for r in 0..3 {
        let mut h: Vec<f64> = embed[2 * 3..3 * 3].to_vec();
        h.extend((0..5).map(|c| zs.get(r, c) as f64));
        h = linear("fc1", &h).into_iter().map(|v| if v > 0.0 { v } else { 0.2 * v }).collect();
        let y: Vec<f64> = linear("fc2", &h).into_iter().map(f64::tanh).collect();
        for (i, v) in y.iter().enumerate() {
            // The data's scale: tanh's [-1, 1] to bytes, rounded as generate rounds.
            let want = ((v + 1.0) * 127.5).round().clamp(0.0, 255.0);
            assert!((got[r * 16 + i] as f64 - want).abs() <= 1.0, "row {r} value {i}: {} vs {want}", got[r * 16 + i]);
        }
    }
}
