//! `--arch dcgan` through the binary: a run on the built-in digits trains, writes its folder,
//! resumes bit for bit, generates and evaluates; the flags it refuses exit 2 with one line; and
//! an independent f64 forward pass of the 28x28 generator, written from PyTorch's definitions and
//! the checkpoint's tensor names and shapes alone, reproduces what `generate` computes: the
//! tensor layouts are PyTorch's.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use shadergan::data::Dataset;
use shadergan::train::checkpoint;
use shadergan::Trainer;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shadergan")).args(args).output().expect("run shadergan")
}

fn ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(o.status.success(), "{args:?}:\n{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// A narrow 28x28 DCGAN on the built-in digits, on the CPU.
fn train_args<'a>(out: &'a str, steps: &'a str) -> Vec<&'a str> {
    let mut a = vec!["train", "--arch", "dcgan", "--g-channels", "4", "--d-channels", "4", "--latent-dim", "8"];
    a.extend(["--batch-size", "16", "--steps", steps, "--log-every", "3", "--sample-every", "3", "--g-ema", "0.9"]);
    a.extend(["--checkpoint-every", "3", "--backend", "cpu", "--classifier", "none", "--quiet", "--out", out]);
    a
}

#[test]
fn a_dcgan_run_trains_resumes_exactly_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("straight"), dir.path().join("resumed"));
    ok(&train_args(a.to_str().unwrap(), "6"));
    ok(&train_args(b.to_str().unwrap(), "3"));
    let latest = b.join("checkpoints/latest.safetensors");
    ok(&["train", "--resume", latest.to_str().unwrap(), "--steps", "6", "--backend", "cpu", "--quiet"]);
    let straight = checkpoint::load(&a.join("checkpoints/latest.safetensors")).unwrap();
    let resumed = checkpoint::load(&latest).unwrap();
    assert_eq!(straight.snapshot, resumed.snapshot);
    assert_eq!(straight.config.model.arch, shadergan::config::model::Arch::Dcgan);
    assert!(a.join("samples/final.png").exists() && a.join("samples/step_000003.png").exists());
    // The checkpoint holds batch norm's running statistics, G's and its average's own.
    let bytes = std::fs::read(a.join("checkpoints/latest.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for name in ["G.bn1.running_mean", "G.bn2.running_var", "D.bn2.running_mean", "G_ema.bn1.running_var"] {
        assert_eq!(st.tensor(name).unwrap().shape().len(), 1, "{name}");
    }
    // generate and eval from it.
    let z = dir.path().join("z.npy");
    shadergan::data::save_npy_f32(&z, 3, 8, &common::uniform(24, 1, -2.0, 2.0)).unwrap();
    let s = dir.path().join("s.npy");
    let grid = dir.path().join("g.png");
    let args = ["generate", latest.to_str().unwrap(), "--z", z.to_str().unwrap(), "--backend", "cpu"];
    ok(&[&args[..], &["--out", s.to_str().unwrap(), "--grid", grid.to_str().unwrap()]].concat());
    let got = shadergan::data::load_npy(&s).unwrap();
    assert_eq!((got.n, got.dim, got.dtype.as_str()), (3, 784, "uint8"));
    assert!(grid.exists());
    let o = ok(&["eval", a.to_str().unwrap(), "--backend", "cpu"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["frechet_distance"].as_f64().is_some_and(|f| f.is_finite()), "{v}");
}

#[test]
fn flags_dcgan_cannot_take_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    for (flags, needle) in [
        (&["--g-hidden", "32"][..], "--g-hidden is for --arch mlp"),
        (&["--precision", "f16"], "--precision f16 is for --arch mlp"),
        (&["--toy", "ring8"], "--arch dcgan trains on images"),
    ] {
        let args = [
            &["train", "--arch", "dcgan", "--steps", "1", "--backend", "cpu", "--out", out.to_str().unwrap()][..],
            flags,
        ]
        .concat();
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(needle), "{flags:?}: {err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
        assert!(!out.join("config.json").exists(), "{flags:?} wrote a run");
    }
    // Images of a size it has no architecture for.
    let npy = dir.path().join("small.npy");
    shadergan::data::save_npy_u8(&npy, 40, 16 * 16, &vec![7; 40 * 256]).unwrap();
    let o = run(&[
        "train",
        npy.to_str().unwrap(),
        "--arch",
        "dcgan",
        "--steps",
        "1",
        "--batch-size",
        "8",
        "--backend",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("28x28, 32x32 and 64x64"));
}

/// The checkpoint's tensors by name, as f64.
fn tensors(path: &Path, prefix: &str) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if let Some(rest) = name.strip_prefix(prefix) {
            let v = view.data().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect();
            out.insert(rest.to_string(), (view.shape().to_vec(), v));
        }
    }
    out
}

/// torch.nn.BatchNorm2d in eval mode on (c, h w), then ReLU.
fn bn_relu(t: &HashMap<String, (Vec<usize>, Vec<f64>)>, name: &str, x: &mut [f64], c: usize) {
    let hw = x.len() / c;
    let get = |k: &str| &t[&format!("{name}.{k}")].1;
    let (g, b, m, v) = (get("weight"), get("bias"), get("running_mean"), get("running_var"));
    for (i, x) in x.iter_mut().enumerate() {
        let ch = i / hw;
        *x = (g[ch] * (*x - m[ch]) / (v[ch] + 1e-5).sqrt() + b[ch]).max(0.0);
    }
}

/// torch.nn.ConvTranspose2d(c_in, c_out, 4, 2, 1) by its definition, a scatter: input pixel
/// (ci, h, w) adds x W[ci, co, i, j] to output (co, 2h - 1 + i, 2w - 1 + j).
fn conv_transpose(t: &HashMap<String, (Vec<usize>, Vec<f64>)>, name: &str, x: &[f64], hw: usize) -> (Vec<f64>, usize) {
    let (shape, w) = &t[&format!("{name}.weight")];
    let (c_in, c_out, k) = (shape[0], shape[1], shape[2]);
    let out_hw = 2 * hw;
    let mut y = vec![0.0; c_out * out_hw * out_hw];
    for ci in 0..c_in {
        for h in 0..hw {
            for wi in 0..hw {
                let v = x[(ci * hw + h) * hw + wi];
                for co in 0..c_out {
                    for i in 0..k {
                        for j in 0..k {
                            let (oh, ow) = ((2 * h + i) as i64 - 1, (2 * wi + j) as i64 - 1);
                            if oh >= 0 && ow >= 0 && (oh as usize) < out_hw && (ow as usize) < out_hw {
                                y[(co * out_hw + oh as usize) * out_hw + ow as usize] +=
                                    v * w[((ci * c_out + co) * k + i) * k + j];
                            }
                        }
                    }
                }
            }
        }
    }
    (y, out_hw)
}

#[test]
fn an_independent_f64_forward_of_the_28x28_generator_matches() {
    for hidden in ["0", "6"] {
        f64_forward_matches(hidden);
    }
}

/// Trains a few steps with `--g-fc-hidden HIDDEN`, then G (its weight average, in eval mode) by
/// PyTorch's definitions from the checkpoint's tensors alone against `sample`.
fn f64_forward_matches(hidden: &str) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r");
    let mut args = train_args(run.to_str().unwrap(), "4");
    args.extend(["--g-fc-hidden", hidden]);
    ok(&args);
    let latest = run.join("checkpoints/latest.safetensors");
    let t = tensors(&latest, "G_ema.");
    let z = common::uniform(2 * 8, 7, -2.0, 2.0);
    let ck = checkpoint::load(&latest).unwrap();
    let data = Arc::new(Dataset::from_u8(16, 784, vec![0; 16 * 784]).unwrap());
    let mut trainer = shadergan::open_trainer(shadergan::Backend::Cpu, ck.config.clone(), data).unwrap();
    trainer.restore(&ck.snapshot).unwrap();
    let got = trainer.sample(&z).unwrap();
    // torch.nn.Linear(in, out, bias=False) on x: a weight of shape (out, in).
    let linear = |name: &str, x: &[f64]| -> Vec<f64> {
        let (shape, w) = &t[&format!("{name}.weight")];
        assert_eq!(shape[1], x.len(), "a Linear weight is (out, in)");
        (0..shape[0]).map(|o| (0..x.len()).map(|i| w[o * x.len() + i] * x[i]).sum()).collect()
    };
    for r in 0..2 {
        // [Linear(8, h, bias=False) -> BatchNorm1d(h) -> ReLU ->] Linear(_, 8*49, bias=False) ->
        // view(8, 7, 7) -> BN -> ReLU -> ConvT -> BN -> ReLU -> ConvT -> tanh.
        let mut x: Vec<f64> = z[r * 8..(r + 1) * 8].iter().map(|&v| v as f64).collect();
        if hidden != "0" {
            x = linear("hidden", &x);
            let features = x.len();
            bn_relu(&t, "bn_hidden", &mut x, features);
        }
        let mut x = linear("fc", &x);
        assert_eq!(x.len(), 8 * 49);
        bn_relu(&t, "bn1", &mut x, 8);
        let (mut x, hw) = conv_transpose(&t, "deconv1", &x, 7);
        bn_relu(&t, "bn2", &mut x, 4);
        let (y, hw) = conv_transpose(&t, "deconv2", &x, hw);
        assert_eq!(y.len(), 784);
        assert_eq!(hw, 28);
        for (i, (&g, want)) in got[r * 784..(r + 1) * 784].iter().zip(y.iter().map(|v| v.tanh())).enumerate() {
            assert!((g as f64 - want).abs() < 1e-5, "hidden {hidden}, row {r}, pixel {i}: shadergan {g} vs f64 {want}");
        }
    }
    assert!(t.keys().all(|k| !k.contains("num_batches")), "PyTorch's counter is not a tensor of ours");
}

/// Conditional batch norm in eval mode as torch builds it: BatchNorm2d(c, affine=False) on
/// (c, h w) from the running statistics, then gamma[y] and beta[y] from the (C, c)
/// `NAME.gamma.weight` / `NAME.beta.weight` (nn.Embedding), then ReLU.
fn cond_bn_relu(t: &HashMap<String, (Vec<usize>, Vec<f64>)>, name: &str, x: &mut [f64], c: usize, y: usize) {
    let hw = x.len() / c;
    let get = |k: &str| &t[&format!("{name}.{k}")].1;
    let (g, b, m, v) = (get("gamma.weight"), get("beta.weight"), get("running_mean"), get("running_var"));
    assert!(!t.contains_key(&format!("{name}.weight")), "no affine of its own");
    for (i, x) in x.iter_mut().enumerate() {
        let ch = i / hw;
        *x = (g[y * c + ch] * (*x - m[ch]) / (v[ch] + 1e-5).sqrt() + b[y * c + ch]).max(0.0);
    }
}

/// `--conditional --arch dcgan` through the binary on the built-in digits: G's batch norms are
/// conditional (`G.bnI.gamma.weight`, (10, c)), D ends in a projection head (`D.embed.weight`),
/// G's input is [embed(y); z] (`G.embed.weight`, (10, 10)); `generate --z --class K` is what
/// G computes by PyTorch's definitions from the checkpoint's tensors alone (f64, in eval mode,
/// the weight average), to the byte; and the sample grid is written.
#[test]
fn a_conditional_dcgan_generates_the_class_asked_for_by_pytorchs_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("c");
    let mut args = train_args(run_dir.to_str().unwrap(), "4");
    args.extend(["--conditional", "--g-fc-hidden", "6"]);
    ok(&args);
    let latest = run_dir.join("checkpoints/latest.safetensors");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["model"]["classes"], 10);
    assert_eq!(config["train"]["model"]["pack"], 1, "no packing under --conditional");
    let t = tensors(&latest, "G_ema.");
    for bn in ["bn_hidden", "bn1", "bn2"] {
        assert_eq!(t[&format!("{bn}.gamma.weight")].0[0], 10, "{bn}");
        assert_eq!(t[&format!("{bn}.beta.weight")].0, t[&format!("{bn}.gamma.weight")].0, "{bn}");
    }
    assert_eq!(t["embed.weight"].0, [10, 10]);
    assert_eq!(t["hidden.weight"].0, [6, 10 + 8], "G reads [embed(y); z]");
    let d = tensors(&latest, "D.");
    // The head on D's last features (its default hidden linear layer's, at 28x28).
    let phi = d["bn_hidden.weight"].0[0];
    assert_eq!((d["fc.weight"].0.clone(), d["embed.weight"].0.clone()), (vec![1, phi], vec![10, phi]));
    assert!(run_dir.join("samples/final.png").exists());

    let z = dir.path().join("z.npy");
    let zs = common::uniform(2 * 8, 7, -2.0, 2.0);
    shadergan::data::save_npy_f32(&z, 2, 8, &zs).unwrap();
    let out = dir.path().join("s.npy");
    let (l, zp, o) = (latest.to_str().unwrap(), z.to_str().unwrap(), out.to_str().unwrap());
    ok(&["generate", l, "--z", zp, "--class", "3", "--out", o, "--backend", "cpu"]);
    let got = match shadergan::data::load_npy(&out).unwrap().values {
        shadergan::data::DataValues::U8(v) => v,
        _ => panic!("the digits' samples are bytes"),
    };
    let linear = |name: &str, x: &[f64]| -> Vec<f64> {
        let (shape, w) = &t[&format!("{name}.weight")];
        (0..shape[0]).map(|o| (0..x.len()).map(|i| w[o * x.len() + i] * x[i]).sum()).collect()
    };
    for r in 0..2 {
        // [embed(3); z], as nn.Embedding then torch.cat.
        let embed = &t["embed.weight"].1[3 * 10..4 * 10];
        let x: Vec<f64> = embed.iter().copied().chain(zs[r * 8..(r + 1) * 8].iter().map(|&v| v as f64)).collect();
        let mut x = linear("hidden", &x);
        cond_bn_relu(&t, "bn_hidden", &mut x, 6, 3);
        let mut x = linear("fc", &x);
        cond_bn_relu(&t, "bn1", &mut x, 8, 3);
        let (mut x, hw) = conv_transpose(&t, "deconv1", &x, 7);
        cond_bn_relu(&t, "bn2", &mut x, 4, 3);
        let (y, _) = conv_transpose(&t, "deconv2", &x, hw);
        for (i, v) in y.iter().enumerate() {
            // tanh's [-1, 1] to bytes, rounded as generate rounds.
            let want = ((v.tanh() + 1.0) * 127.5).round().clamp(0.0, 255.0);
            let g = got[r * 784 + i] as f64;
            assert!((g - want).abs() <= 1.0, "row {r}, pixel {i}: generate {g} vs f64 {want}");
        }
    }
}
