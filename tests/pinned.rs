//! Today's training behaviour, pinned bit for bit on the CPU backend's reference ops.
//!
//! Each case trains a few steps through the binary (`SHADERGAN_CPU_REFERENCE=1`: the plain
//! reference loops, which round the same on every CPU, unlike an sgemm whose kernel depends on
//! the CPU's vector units), then hashes every tensor of the final checkpoint and the output of
//! `generate --z`. The hashes are in tests/fixtures/pinned_cpu.txt. A refactor must leave them
//! unchanged; a change that means to change the math updates the file on purpose:
//!
//!   SHADERGAN_BLESS=1 cargo test --release --test pinned
//!
//! and says so in its commit.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use shadergan::data;

const GOLDEN: &str = "tests/fixtures/pinned_cpu.txt";

/// FNV-1a over the bytes: stable, dependency-free, enough to see a single changed bit.
fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn shadergan(args: &[String]) {
    let o = Command::new(env!("CARGO_BIN_EXE_shadergan"))
        .args(args)
        .env("SHADERGAN_CPU_REFERENCE", "1")
        .output()
        .expect("run shadergan");
    assert!(o.status.success(), "shadergan {args:?} failed:\n{}", String::from_utf8_lossy(&o.stderr));
}

/// (name, flags, latent width): the flag sets the layer-abstraction issue names.
fn cases() -> Vec<(&'static str, &'static str, usize)> {
    vec![
        ("image-defaults", "DATA --steps 4 --batch-size 16 --seed 3", 64),
        ("f16", "DATA --precision f16 --g-hidden 24 --d-hidden 24 --steps 4 --batch-size 16 --seed 4", 64),
        (
            "toy-pack-ema",
            "--toy ring8 --pack 2 --g-ema 0.999 --latent-dim 2 --g-hidden 32,32 --d-hidden 32,32 \
             --batch-size 32 --steps 5 --seed 5",
            2,
        ),
        (
            "dsteps-dropout-smoothing-decay",
            "DATA --d-steps 2 --d-dropout 0.3 --label-smoothing 0.9 --lr-decay 0.5 --g-hidden 24 \
             --d-hidden 24,20 --steps 6 --batch-size 16 --seed 6",
            64,
        ),
    ]
}

/// "case key hash" lines of one case: every checkpoint tensor, its counters, generate's output.
fn run_case(dir: &Path, name: &str, flags: &str, latent: usize) -> BTreeMap<String, String> {
    let data = dir.join("data.npy");
    let out = dir.join(name);
    let mut args: Vec<String> = vec!["train".into()];
    args.extend(flags.split_whitespace().map(|a| if a == "DATA" { data.display().to_string() } else { a.into() }));
    args.extend(["--backend", "cpu", "--classifier", "none", "--quiet", "--out"].map(String::from));
    args.push(out.display().to_string());
    shadergan(&args);
    let latest = out.join("checkpoints/latest.safetensors");
    let mut lines = BTreeMap::new();
    let bytes = std::fs::read(&latest).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (tensor, view) in st.tensors() {
        lines.insert(format!("{name} {tensor}"), fnv(view.data()));
    }
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap_or_default();
    for key in ["step", "t_d", "t_g"] {
        lines.insert(format!("{name} meta.{key}"), meta.get(key).cloned().unwrap_or_default());
    }
    let z: Vec<f32> = (0..5 * latent).map(|i| (i as f32 * 0.37).sin() * 1.5).collect();
    let zp = dir.join(format!("{name}.z.npy"));
    data::save_npy_f32(&zp, 5, latent, &z).unwrap();
    let samples = dir.join(format!("{name}.samples.npy"));
    let gen = ["generate", latest.to_str().unwrap(), "--z", zp.to_str().unwrap(), "--backend", "cpu", "--out"];
    let mut gen: Vec<String> = gen.iter().map(|s| s.to_string()).collect();
    gen.push(samples.display().to_string());
    shadergan(&gen);
    lines.insert(format!("{name} generate"), fnv(&std::fs::read(&samples).unwrap()));
    lines
}

#[test]
fn cpu_training_is_pinned_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let images = common::image_data();
    let shadergan::data::DataValues::U8(bytes) = &images.values else { unreachable!() };
    data::save_npy_u8(&dir.path().join("data.npy"), images.n, images.dim, bytes).unwrap();
    let mut got = BTreeMap::new();
    for (name, flags, latent) in cases() {
        got.extend(run_case(dir.path(), name, flags, latent));
    }
    let text: String = got.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var("SHADERGAN_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&golden).expect("tests/fixtures/pinned_cpu.txt (SHADERGAN_BLESS=1 writes it)");
    let diff: Vec<String> = want
        .lines()
        .zip(text.lines())
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("  pinned: {a}\n  now:    {b}"))
        .collect();
    assert!(
        diff.is_empty() && want.lines().count() == text.lines().count(),
        "CPU training no longer matches the pinned bits ({} lines differ):\n{}",
        diff.len(),
        diff.join("\n")
    );
}
