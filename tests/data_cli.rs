//! The data users bring, through the binary: a folder of colour PNGs and JPEGs of mixed sizes
//! (on both backends), its cache, resume and eval finding it again, colour `.npy` files in
//! either layout, and the bad cases (exit 2, one line, nothing written).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{ImageFormat, Rgb, RgbImage};
use serde_json::Value;
use shadergan::data;

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

/// Exit 2 with one `error:` line naming `needle`, no panic.
fn input_error(args: &[&str], needle: &str) -> String {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: expected exit 2; stderr:\n{err}");
    assert!(err.contains(needle), "{args:?}: stderr should mention {needle:?}:\n{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(p).unwrap()).unwrap()
}

/// A colour image: a disc of one of three colours on a light background, `w` x `h`.
fn disc(w: u32, h: u32, k: u32) -> RgbImage {
    let colours = [[220, 30, 30], [30, 180, 40], [40, 60, 230]];
    let r = w.min(h) as f32 / 3.0;
    RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - w as f32 / 2.0, y as f32 - h as f32 / 2.0);
        if dx * dx + dy * dy < r * r {
            Rgb(colours[k as usize % 3])
        } else {
            Rgb([235, 235, 225])
        }
    })
}

/// `n` colour images in three class folders: PNGs and JPEGs, three different sizes.
fn colour_folder(root: &Path, n: u32) -> PathBuf {
    let dir = root.join("pictures");
    for i in 0..n {
        let class = dir.join(format!("class{}", i % 3));
        fs::create_dir_all(&class).unwrap();
        let (w, h) = [(40, 30), (24, 24), (18, 36)][(i % 3) as usize];
        let (ext, fmt) = if i % 2 == 0 { ("png", ImageFormat::Png) } else { ("jpg", ImageFormat::Jpeg) };
        disc(w, h, i).save_with_format(class.join(format!("{i:03}.{ext}")), fmt).unwrap();
    }
    dir
}

/// (width, height, colour type, pixels) of a PNG.
fn decode_png(path: &Path) -> (u32, u32, png::ColorType, Vec<u8>) {
    let file = std::io::BufReader::new(fs::File::open(path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type, buf)
}

/// A grid PNG in colour: RGB with pixels whose channels differ (not gray).
fn assert_colour_png(path: &Path) {
    let (_, _, ct, px) = decode_png(path);
    assert_eq!(ct, png::ColorType::Rgb, "{}", path.display());
    let coloured = px.chunks_exact(3).filter(|p| p[0].abs_diff(p[1]) > 8 || p[1].abs_diff(p[2]) > 8).count();
    assert!(coloured > 0, "{}: all gray", path.display());
}

fn train_folder(dir: &Path, out: &Path, backend: &str, extra: &[&str]) -> Output {
    let mut args = vec!["train", s(dir), "--backend", backend, "--steps", "6", "--batch-size", "8", "--log-every", "3"];
    args.extend_from_slice(&["--g-hidden", "32", "--d-hidden", "32", "--latent-dim", "8", "--out", s(out)]);
    args.extend_from_slice(extra);
    ok(&args)
}

#[test]
fn a_colour_folder_of_mixed_sizes_trains_and_makes_colour_grids() {
    let tmp = tempfile::tempdir().unwrap();
    let pics = colour_folder(tmp.path(), 12);
    // Mixed sizes need --image-size.
    let out = tmp.path().join("run");
    let err = input_error(&["train", s(&pics), "--backend", "cpu", "--out", s(&out)], "--image-size");
    assert!(err.contains("differ in size"), "{err}");
    assert!(!out.exists(), "a refused folder writes nothing");

    let o = train_folder(&pics, &out, "cpu", &["--image-size", "16"]);
    let err = stderr(&o);
    assert!(err.contains("12 samples of 16x16x3 (uint8, 16x16 RGB)"), "{err}");
    let cfg = json(&out.join("config.json"));
    let d = &cfg["data"];
    assert_eq!(d["layout"], "nhwc");
    assert_eq!(d["image"], serde_json::json!({"channels": 3, "height": 16, "width": 16}));
    assert_eq!(d["folder"]["image_size"], 16);
    assert_eq!(d["folder"]["cache"], "run");
    assert_eq!(d["sample_shape"], serde_json::json!([16, 16, 3]));
    assert_eq!(cfg["train"]["model"]["data_dim"], 768);
    assert_colour_png(&out.join("samples/final.png"));
    // The run folder's cache is a plain (N, H, W, C) uint8 array of the decoded images.
    let cached = fs::read(out.join("data-cache.npy")).unwrap();
    assert!(String::from_utf8_lossy(&cached[..128]).contains("'shape': (12, 16, 16, 3)"));
    // No classifier fits 16x16 RGB: the sliced Wasserstein distance scores it (one level).
    let eval = json(&out.join("eval.json"));
    assert_eq!((eval["scored"].clone(), eval["swd_levels"].clone()), (Value::Bool(true), serde_json::json!(["16"])));
    assert!(eval["swd"].as_f64().is_some_and(f64::is_finite), "{eval}");

    // generate writes the data's layout and dtype, and a colour grid.
    let (npy, grid) = (tmp.path().join("g.npy"), tmp.path().join("g.png"));
    let ckpt = out.join("checkpoints/latest.safetensors");
    ok(&["generate", s(&ckpt), "--n", "5", "--out", s(&npy), "--grid", s(&grid), "--backend", "cpu"]);
    let head = String::from_utf8_lossy(&fs::read(&npy).unwrap()[..128]).into_owned();
    assert!(head.contains("'descr': '|u1'") && head.contains("'shape': (5, 16, 16, 3)"), "{head}");
    assert_colour_png(&grid);
    let g = data::load_npy(&npy).unwrap();
    assert_eq!((g.n, g.image().map(|i| i.channels)), (5, Some(3)));

    // Resume with no data and eval find the folder again through config.json (and its cache).
    let o = ok(&["train", "--resume", s(&ckpt), "--steps", "9", "--backend", "cpu"]);
    assert!(stderr(&o).contains("images read from the cache"), "{}", stderr(&o));
    let o = ok(&["eval", s(&out), "--backend", "cpu"]);
    let printed: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((printed["scored"].clone(), printed["step"].clone()), (Value::Bool(true), Value::from(9)));

    // The same folder on the GPU backend.
    if common::gpu().is_some() {
        let gout = tmp.path().join("gpu");
        let o = train_folder(&pics, &gout, "gpu", &["--image-size", "16", "--cache", "none"]);
        assert!(stderr(&o).contains("backend: gpu"), "{}", stderr(&o));
        assert_colour_png(&gout.join("samples/final.png"));
        assert!(!gout.join("data-cache.npy").exists(), "--cache none writes no cache");
    }
}

#[test]
fn a_stale_cache_rebuilds_itself_and_a_shared_one_is_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let pics = colour_folder(tmp.path(), 9);
    let cache = tmp.path().join("shared.npy");
    let flags = ["--image-size", "12", "--cache", s(&cache)];
    let o = train_folder(&pics, &tmp.path().join("a"), "cpu", &flags);
    assert!(stderr(&o).contains("decoded images cached in"), "{}", stderr(&o));
    assert!(!tmp.path().join("a/data-cache.npy").exists(), "the cache went to --cache");
    let o = train_folder(&pics, &tmp.path().join("b"), "cpu", &flags);
    assert!(stderr(&o).contains("images read from the cache"), "{}", stderr(&o));
    // One more image: the cache is stale, says why, and is rebuilt.
    disc(20, 20, 1).save(pics.join("class1/new.png")).unwrap();
    let o = train_folder(&pics, &tmp.path().join("c"), "cpu", &flags);
    let err = stderr(&o);
    assert!(err.contains("rebuilt the image cache") && err.contains("had 9 images, now 10"), "{err}");
    assert!(err.contains("10 samples of 12x12x3"), "{err}");
    // Other options: rebuilt too.
    let o = train_folder(&pics, &tmp.path().join("d"), "cpu", &["--image-size", "10", "--cache", s(&cache)]);
    assert!(stderr(&o).contains("other options"), "{}", stderr(&o));
}

#[test]
fn gray_conversion_and_bad_images() {
    let tmp = tempfile::tempdir().unwrap();
    let pics = colour_folder(tmp.path(), 10);
    // --channels 1 makes gray: the grids are grayscale PNGs.
    let out = tmp.path().join("gray");
    let o = train_folder(&pics, &out, "cpu", &["--image-size", "8", "--channels", "1"]);
    assert!(stderr(&o).contains("10 samples of 8x8x1"), "{}", stderr(&o));
    assert_eq!(decode_png(&out.join("samples/final.png")).2, png::ColorType::Grayscale);
    // A file that is no image: an error naming it, nothing written; --skip-bad-images warns.
    fs::write(pics.join("class0/broken.png"), b"not a png at all").unwrap();
    let bad = tmp.path().join("bad");
    let err =
        input_error(&["train", s(&pics), "--image-size", "8", "--backend", "cpu", "--out", s(&bad)], "broken.png");
    assert!(err.contains("--skip-bad-images"), "{err}");
    assert!(!bad.exists());
    let o = train_folder(&pics, &bad, "cpu", &["--image-size", "8", "--skip-bad-images"]);
    let err = stderr(&o);
    assert!(err.contains("warning: skipped 1 of 11 images that do not load") && err.contains("broken.png"), "{err}");
    // Fewer images than the batch.
    let few = tmp.path().join("few");
    let err = input_error(
        &["train", s(&pics), "--image-size", "8", "--skip-bad-images", "--batch-size", "64", "--out", s(&few)],
        "--batch-size 64 is larger than the data set",
    );
    assert!(err.contains("10 images") && err.contains("--batch-size 10 or less"), "{err}");
    assert!(!few.exists());
}

#[test]
fn folder_flags_are_refused_where_they_do_not_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let pics = colour_folder(tmp.path(), 3);
    let npy = tmp.path().join("x.npy");
    data::save_npy_u8(&npy, 8, 16, &[7; 128]).unwrap();
    let out = tmp.path().join("out");
    let o = s(&out);
    input_error(&["train", s(&npy), "--image-size", "8", "--out", o], "--image-size applies to image folders only");
    input_error(&["train", s(&npy), "--cache", "none", "--skip-bad-images", "--out", o], "apply to image folders");
    input_error(&["train", "--channels", "3", "--out", o], "built-in digits");
    input_error(&["train", s(&pics), "--layout", "nhwc", "--out", o], "--layout applies to .npy files");
    input_error(&["train", s(&pics), "--image-size", "8", "--channels", "2", "--out", o], "--channels 2");
    input_error(&["train", s(&pics), "--image-size", "0", "--out", o], "--image-size 0");
    input_error(&["train", "--toy", "ring8", "--image-size", "8", "--out", o], "not --toy");
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    input_error(&["train", s(&empty), "--out", o], "the folder is empty");
    assert!(!out.exists());
}

/// Colour .npy files: NHWC and NCHW train and generate back in their own layout; a shape that
/// reads both ways needs --layout, which config.json records for resume.
#[test]
fn colour_npy_in_either_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let (n, h, w) = (16usize, 4usize, 5usize);
    let nhwc: Vec<u8> = (0..n * h * w * 3).map(|i| ((i * 37) % 256) as u8).collect();
    let cases: [(&str, Vec<usize>, &str); 2] =
        [("nhwc", vec![n, h, w, 3], "(3, 4, 5, 3)"), ("nchw", vec![n, 3, h, w], "(3, 3, 4, 5)")];
    for (name, shape, want) in cases {
        let p = tmp.path().join(format!("{name}.npy"));
        data::save_npy_u8_as(&p, &shape, &nhwc).unwrap();
        let out = tmp.path().join(name);
        let args = ["train", s(&p), "--backend", "cpu", "--steps", "3", "--batch-size", "4", "--out", s(&out)];
        let o = ok(&[&args[..], &["--g-hidden", "16", "--d-hidden", "16"]].concat());
        assert!(stderr(&o).contains("4x5 RGB"), "{}", stderr(&o));
        assert_eq!(json(&out.join("config.json"))["data"]["layout"], name);
        assert_colour_png(&out.join("samples/final.png"));
        let g = tmp.path().join(format!("{name}-g.npy"));
        let ckpt = out.join("checkpoints/latest.safetensors");
        ok(&["generate", s(&ckpt), "--n", "3", "--out", s(&g), "--backend", "cpu"]);
        let head = String::from_utf8_lossy(&fs::read(&g).unwrap()[..128]).into_owned();
        assert!(head.contains(&format!("'shape': {want}")), "{name}: {head}");
    }
    // (N, 3, 4, 3) reads both ways.
    let amb = tmp.path().join("amb.npy");
    data::save_npy_u8_as(&amb, &[8, 3, 4, 3], &[9; 8 * 36]).unwrap();
    let out = tmp.path().join("amb");
    let base = ["train", s(&amb), "--backend", "cpu", "--steps", "2", "--batch-size", "4", "--out", s(&out)];
    input_error(&base, "pass --layout nchw or --layout nhwc");
    ok(&[&base[..], &["--layout", "nhwc", "--g-hidden", "8", "--d-hidden", "8"]].concat());
    assert_eq!(json(&out.join("config.json"))["data"]["image"]["height"], 3);
    // Resume finds the file and its layout in config.json.
    let ckpt = out.join("checkpoints/latest.safetensors");
    ok(&["train", "--resume", s(&ckpt), "--steps", "4", "--backend", "cpu", "--quiet"]);
}

/// `--classifier auto` scores 28x28 gray digits only: on 28x28 colour the digit classifier is
/// not used; the sliced Wasserstein distance scores the run.
#[test]
fn auto_classifier_skips_colour_28x28() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("c28.npy");
    let v: Vec<u8> = (0..20 * 28 * 28 * 3).map(|i| ((i * 13) % 256) as u8).collect();
    data::save_npy_u8_as(&p, &[20, 28, 28, 3], &v).unwrap();
    let out = tmp.path().join("run");
    let args = ["train", s(&p), "--backend", "cpu", "--steps", "2", "--batch-size", "4", "--out", s(&out)];
    ok(&[&args[..], &["--g-hidden", "8", "--d-hidden", "8"]].concat());
    let cfg = json(&out.join("config.json"));
    assert_eq!(cfg["classifier"], Value::Null);
    let eval = json(&out.join("eval.json"));
    assert_eq!((eval["scored"].clone(), eval["swd_samples"].clone()), (Value::Bool(true), Value::from(10)));
    assert!(eval.get("classifier").is_none() && eval.get("frechet_distance").is_none(), "{eval}");
    // Asking for the built-in one explicitly is a clear error instead.
    let o = run(&["eval", s(&out), "--classifier", "builtin", "--backend", "cpu"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("784"), "{}", stderr(&o));
}
