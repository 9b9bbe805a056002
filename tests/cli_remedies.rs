//! The small-data remedies through the binary (`--loss hinge`, `--d-norm spectral`, `--augment`):
//! a colour DCGAN run with all three (and PacGAN, G's weight average) trains, resumes bit for
//! bit, generates, and keeps spectral normalisation's u and v under PyTorch's names; the MLP takes
//! them too; every combination they cannot take is refused with one line and exit 2, writing
//! nothing; a resumed run keeps them.

use std::path::Path;
use std::process::{Command, Output};

use shadergan::train::checkpoint;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shadergan")).args(args).output().expect("run shadergan")
}

fn ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(o.status.success(), "{args:?}:\n{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// 48 colour images of 32x32, NHWC uint8, with some structure.
fn colour_images(dir: &Path) -> String {
    let (n, s) = (48usize, 32usize);
    let bytes: Vec<u8> = (0..n * s * s * 3)
        .map(|i| {
            let (img, p) = (i / (s * s * 3), i % (s * s * 3));
            let (y, x, c) = (p / (s * 3), (p / 3) % s, p % 3);
            let disc = (x as i64 - 16).pow(2) + (y as i64 - 16).pow(2) < (40 + 10 * (img % 5)) as i64;
            if disc {
                [220u8, 180, 40][(c + img) % 3]
            } else {
                250
            }
        })
        .collect();
    let path = dir.join("emoji.npy");
    shadergan::data::save_npy_u8_as(&path, &[n, s, s, 3], &bytes).unwrap();
    path.to_str().unwrap().to_string()
}

fn remedies<'a>(data: &'a str, out: &'a str, steps: &'a str) -> Vec<&'a str> {
    let mut a = vec!["train", data, "--arch", "dcgan", "--g-channels", "4", "--d-channels", "4", "--latent-dim", "8"];
    a.extend(["--d-norm", "spectral", "--loss", "hinge", "--augment", "color,translation,cutout", "--pack", "2"]);
    a.extend(["--batch-size", "8", "--g-ema", "0.9", "--steps", steps, "--log-every", "3", "--checkpoint-every", "3"]);
    a.extend(["--sample-every", "0", "--backend", "cpu", "--classifier", "none", "--quiet", "--out", out]);
    a
}

#[test]
fn a_colour_run_with_every_remedy_trains_resumes_exactly_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let data = colour_images(dir.path());
    let (a, b) = (dir.path().join("straight"), dir.path().join("resumed"));
    ok(&remedies(&data, a.to_str().unwrap(), "6"));
    ok(&remedies(&data, b.to_str().unwrap(), "3"));
    let latest = b.join("checkpoints/latest.safetensors");
    ok(&["train", "--resume", latest.to_str().unwrap(), "--steps", "6", "--backend", "cpu", "--quiet"]);
    let straight = checkpoint::load(&a.join("checkpoints/latest.safetensors")).unwrap();
    let resumed = checkpoint::load(&latest).unwrap();
    assert_eq!(straight.snapshot, resumed.snapshot);

    // config.json says what ran, as the flags spell it.
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("config.json")).unwrap()).unwrap();
    let train = &cfg["train"];
    assert_eq!((train["loss"].as_str(), train["model"]["d_norm"].as_str()), (Some("hinge"), Some("spectral")));
    assert_eq!(train["model"]["augment"].as_str(), Some("color,translation,cutout"));

    // PyTorch's parametrization names: the raw weight, u and v; no batch norm in D.
    let bytes = std::fs::read(a.join("checkpoints/latest.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("D.conv1.parametrizations.weight.original").unwrap().shape(), [4, 6, 4, 4]);
    assert_eq!(st.tensor("D.conv1.parametrizations.weight.0._u").unwrap().shape(), [4]);
    assert_eq!(st.tensor("D.conv2.parametrizations.weight.0._v").unwrap().shape(), [4 * 16]);
    assert_eq!(st.tensor("D.conv4.parametrizations.weight.0._u").unwrap().shape(), [1]);
    assert!(st.tensor("D.conv2.bias").is_ok() && st.tensor("D.bn2.weight").is_err());
    assert!(st.tensor("optim.D.exp_avg.conv1.parametrizations.weight.original").is_ok());

    // generate from the run folder's checkpoint: (N, H, W, 3) uint8 as the data was.
    let s = dir.path().join("s.npy");
    let latest_a = a.join("checkpoints/latest.safetensors");
    ok(&["generate", latest_a.to_str().unwrap(), "--n", "5", "--out", s.to_str().unwrap(), "--backend", "cpu"]);
    let got = shadergan::data::load_npy(&s).unwrap();
    assert_eq!((got.n, got.dim, got.dtype.as_str()), (5, 32 * 32 * 3, "uint8"));

    // A resumed run keeps its loss and augmentation: other values are refused.
    for (flag, value) in [("--loss", "bce"), ("--augment", "none"), ("--d-norm", "batch")] {
        let o = run(&["train", "--resume", latest.to_str().unwrap(), flag, value, "--backend", "cpu", "--quiet"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag}: {err}");
        assert!(err.contains(&format!("{flag} {value}")), "{flag}: {err}");
    }
}

#[test]
fn the_mlp_takes_spectral_norm_hinge_and_augmentation() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mlp");
    let args = [
        "train",
        "--g-hidden",
        "16",
        "--d-hidden",
        "16",
        "--d-norm",
        "spectral",
        "--loss",
        "hinge",
        "--augment",
        "translation,cutout",
        "--steps",
        "4",
        "--batch-size",
        "16",
        "--backend",
        "cpu",
        "--classifier",
        "none",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    ok(&args);
    let ck = checkpoint::load(&out.join("checkpoints/latest.safetensors")).unwrap();
    assert_eq!(ck.config.model.image.map(|i| (i.channels, i.height)), Some((1, 28)));
    let names: Vec<String> = ck.config.model.discriminator(0.0, false).tensors().into_iter().map(|t| t.name).collect();
    assert_eq!(names[0], "fc1.parametrizations.weight.original");
}

#[test]
fn combinations_the_remedies_cannot_take_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let o = out.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--toy", "ring8", "--augment", "color"], "--augment is for images"),
        (&["--loss", "hinge", "--label-smoothing", "0.9"], "--label-smoothing is for --loss bce"),
        (&["--d-norm", "batch"], "--d-norm batch is for --arch dcgan"),
        (&["--precision", "f16", "--augment", "cutout"], "--augment trains in f32"),
        (&["--precision", "f16", "--d-norm", "spectral"], "--d-norm spectral trains in f32"),
        (&["--augment", "colour,rotation"], "unknown augmentation 'rotation'"),
    ];
    for (flags, needle) in cases {
        let args = [&["train", "--steps", "1", "--backend", "cpu", "--out", o][..], flags].concat();
        let r = run(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(needle), "{flags:?}: {err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{flags:?}: {err}");
        assert!(!out.join("config.json").exists(), "{flags:?} wrote a run");
    }
}
