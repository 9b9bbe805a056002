//! Run folders and checkpoints written by shadergan 0.1.0 (tests/fixtures/v0.1.0, made once by
//! scripts/make_compat_fixture.sh with that release) and a convolutional run written before the
//! DCGAN's config gained `d_norm` and the hidden linear layers (tests/fixtures/dcgan-8af5826,
//! scripts/make_dcgan_compat_fixture.sh) still load, sample the same bits and resume to the same
//! bits. The expected hashes were taken with the binary that wrote each fixture; they are never
//! re-blessed by a later version (a later version that fails here broke users' checkpoints).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use shadergan::data;

const FIXTURE: &str = "tests/fixtures/v0.1.0";
const DCGAN_FIXTURE: &str = "tests/fixtures/dcgan-8af5826";

/// Only when blessing a fixture's hashes: the binary that wrote it (`SHADERGAN_COMPAT_BIN`).
fn binary() -> String {
    match std::env::var("SHADERGAN_COMPAT_BIN") {
        Ok(bin) if blessing() => bin,
        _ => env!("CARGO_BIN_EXE_shadergan").to_string(),
    }
}

fn blessing() -> bool {
    std::env::var("SHADERGAN_BLESS_COMPAT").is_ok_and(|v| v == "1")
}

fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn shadergan(args: &[&str]) -> String {
    let o = Command::new(binary()).args(args).env("SHADERGAN_CPU_REFERENCE", "1").output().expect("run shadergan");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "shadergan {args:?} failed:\n{err}");
    err
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn tensor_hashes(ckpt: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
    let bytes = std::fs::read(ckpt).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (name, view) in st.tensors() {
        out.insert(format!("{prefix} {name}"), fnv(view.data()));
    }
}

/// Generate from the 0.1.0 checkpoint, then resume it three more steps: every hash.
fn exercise(fixture: &str, run: &str, data: &[&str], latent: usize, resume_to: u32) -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(fixture);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(run);
    copy_dir(&root.join(run), &dir);
    let latest: PathBuf = dir.join("checkpoints/latest.safetensors");
    let mut got = BTreeMap::new();

    let z: Vec<f32> = (0..7 * latent).map(|i| (i as f32 * 0.61).cos() * 1.3).collect();
    let zp = tmp.path().join("z.npy");
    data::save_npy_f32(&zp, 7, latent, &z).unwrap();
    let s = tmp.path().join("s.npy");
    shadergan(&[
        "generate",
        latest.to_str().unwrap(),
        "--z",
        zp.to_str().unwrap(),
        "--backend",
        "cpu",
        "--out",
        s.to_str().unwrap(),
    ]);
    got.insert(format!("{run} generate"), fnv(&std::fs::read(&s).unwrap()));

    let data_path = root.join("data.npy");
    let mut args: Vec<&str> = vec!["train"];
    for a in data {
        args.push(if *a == "DATA" { data_path.to_str().unwrap() } else { a });
    }
    let steps = resume_to.to_string();
    args.extend(["--resume", latest.to_str().unwrap(), "--steps", &steps, "--backend", "cpu", "--quiet"]);
    shadergan(&args);
    tensor_hashes(&latest, &format!("{run} resumed"), &mut got);
    got
}

#[test]
fn v0_1_0_checkpoints_load_sample_and_resume_bit_for_bit() {
    let mut got = exercise(FIXTURE, "image-ema", &["DATA", "--classifier", "none"], 64, 9);
    got.extend(exercise(FIXTURE, "toy-f16", &["--toy", "ring8"], 2, 8));
    check(FIXTURE, &got, "a 0.1.0 checkpoint no longer samples or resumes the same");
}

#[test]
fn dcgan_checkpoints_from_before_d_norm_and_the_hidden_layers_load_sample_and_resume() {
    let got = exercise(DCGAN_FIXTURE, "dcgan-ema", &["DATA", "--classifier", "none"], 8, 7);
    check(DCGAN_FIXTURE, &got, "a DCGAN checkpoint of 8af5826 no longer samples or resumes the same");
}

/// `got` against the fixture's expected.txt (or, blessing, written to it).
fn check(fixture: &str, got: &BTreeMap<String, String>, what: &str) {
    let text: String = got.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    let expected = Path::new(env!("CARGO_MANIFEST_DIR")).join(fixture).join("expected.txt");
    // Only ever with the binary that wrote the fixture (see the header).
    if blessing() {
        std::fs::write(&expected, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&expected).unwrap();
    for (w, g) in want.lines().zip(text.lines()) {
        assert_eq!(w, g, "{what}");
    }
    assert_eq!(want.lines().count(), text.lines().count());
}
