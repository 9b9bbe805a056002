//! The binary end to end: a good run exits 0 and logs; each kind of bad input exits 2 with one
//! clear line on stderr, no panic, no backtrace, and nothing written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shadergan::data;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shadergan"));
    c.env("RUST_BACKTRACE", "1");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run shadergan")
}

/// Small uint8 "images": 64 samples of 4x4.
fn small_npy(dir: &Path) -> PathBuf {
    let p = dir.join("small.npy");
    let v: Vec<u8> = (0..64 * 16).map(|i| ((i * 31) % 256) as u8).collect();
    data::save_npy_u8(&p, 64, 16, &v).unwrap();
    p
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 2, an `error:` line naming `needle`, and no panic or backtrace.
fn assert_input_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "expected exit 2 for {needle:?}; stderr:\n{err}");
    assert!(err.contains(needle), "stderr should mention {needle:?}:\n{err}");
    assert!(!err.contains("panicked") && !err.contains("stack backtrace"), "panic:\n{err}");
}

#[test]
fn train_on_a_small_file_exits_0_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let npy = small_npy(dir.path());
    let out = dir.path().join("run");
    let o = run(&[
        "train",
        npy.to_str().unwrap(),
        "--backend",
        "cpu",
        "--steps",
        "20",
        "--batch-size",
        "8",
        "--log-every",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("step")).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for want in ["epoch", "D loss", "G loss", "D(x)", "D(G(z))", "steps/s"] {
        assert!(lines[1].contains(want), "log line lacks {want}: {}", lines[1]);
    }
    assert!(lines[1].starts_with("step      20"), "{}", lines[1]);
}

#[test]
fn train_on_the_gpu_backend() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let npy = small_npy(dir.path());
    let out = dir.path().join("run");
    let o = run(&[
        "train",
        npy.to_str().unwrap(),
        "--backend",
        "gpu",
        "--steps",
        "10",
        "--batch-size",
        "8",
        "--log-every",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("backend: gpu, "), "{}", stderr(&o));
}

/// Writes a .npy with a hand-made header (v1.0) and body.
fn raw_npy(dir: &Path, name: &str, header: &str, body: &[u8]) -> PathBuf {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
    bytes.extend_from_slice(h.as_bytes());
    bytes.extend_from_slice(body);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn inf_npy(d: &Path) -> PathBuf {
    let v = [0.5f32, f32::INFINITY, 0.1, 0.2];
    let body: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    raw_npy(d, "inf.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", &body)
}

fn version_npy(d: &Path) -> PathBuf {
    let p = raw_npy(d, "version.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", &[0; 16]);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[6] = 9; // format version 9.0 does not exist
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn big_endian_and_fortran_files_are_read_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let vals = [0.25f32, 0.5, 0.75, 1.0, 0.0, 0.125];
    let be: Vec<u8> = vals.iter().flat_map(|x| x.to_be_bytes()).collect();
    let p = raw_npy(dir.path(), "be.npy", "{'descr': '>f4', 'fortran_order': True, 'shape': (3, 2), }", &be);
    let d = data::load_npy(&p).unwrap();
    // Fortran order: element (r, c) is at c * 3 + r.
    assert_eq!((d.get(0, 0), d.get(1, 0), d.get(0, 1), d.get(2, 1)), (0.25, 0.5, 1.0, 0.125));
    let o = run(&[
        "train",
        p.to_str().unwrap(),
        "--backend",
        "cpu",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--out",
        dir.path().join("r").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bad_data_files_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f32s = |n: usize| -> Vec<u8> { (0..n).flat_map(|i| (i as f32 / n as f32).to_le_bytes()).collect() };
    let mut nan_body = f32s(8);
    nan_body[12..16].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(d.join("magic.npy"), b"PK\x03\x04 this is a zip file, not npy").unwrap();
    let good = small_npy(d);
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(d.join("truncated.npy"), &bytes[..bytes.len() - 7]).unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (d.join("missing.npy"), "cannot read"),
        (d.join("magic.npy"), "magic"),
        (d.join("truncated.npy"), "bytes"),
        (raw_npy(d, "int.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 4), }", &[0; 32]), "<i4"),
        (raw_npy(d, "empty.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }", &[]), "no samples"),
        (raw_npy(d, "nan.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }", &nan_body), "NaN"),
        (
            raw_npy(
                d,
                "liar.npy",
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 100000), }",
                &f32s(8),
            ),
            "bytes",
        ),
        (raw_npy(d, "flat.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (8,), }", &f32s(8)), "shape"),
        (raw_npy(d, "scalar.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", &f32s(1)), "shape"),
        (
            raw_npy(d, "four.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 2, 2), }", &f32s(8)),
            "shape",
        ),
        (raw_npy(d, "nodim.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 0), }", &[]), "0"),
        (raw_npy(d, "notdict.npy", "['descr', '<f4']", &f32s(8)), "header"),
        (
            raw_npy(
                d,
                "overflow.npy",
                "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
                &f32s(8),
            ),
            "overflow",
        ),
        (raw_npy(d, "obj.npy", "{'descr': '|O', 'fortran_order': False, 'shape': (2, 4), }", &[0; 16]), "dtype"),
        (inf_npy(d), "inf"),
        (version_npy(d), "version"),
    ];
    for (path, needle) in cases {
        let out = d.join(format!("out-{}", path.file_stem().unwrap().to_str().unwrap()));
        let o =
            run(&["train", path.to_str().unwrap(), "--backend", "cpu", "--steps", "2", "--out", out.to_str().unwrap()]);
        assert_input_error(&o, needle);
        assert_eq!(stderr(&o).lines().count(), 1, "one line only:\n{}", stderr(&o));
        assert!(!out.exists(), "{}: a run folder was created for bad input", path.display());
    }
}

#[test]
fn bad_flags_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let npy = small_npy(dir.path());
    let p = npy.to_str().unwrap();
    let out = dir.path().join("r");
    let o = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--batch-size", "0"], "--batch-size"),
        (&["--batch-size", "65"], "larger than the data set"),
        (&["--g-hidden", "256,0"], "--g-hidden"),
        (&["--latent-dim", "0"], "--latent-dim"),
        (&["--lr=-1"], "--lr"),
        (&["--beta1", "1.5"], "--beta1"),
        (&["--epochs", "0"], "--epochs"),
        (&["--label-smoothing", "1.5"], "--label-smoothing"),
        (&["--pack", "3", "--batch-size", "8"], "multiple of --pack"),
        (&["--pack", "0"], "--pack"),
        (&["--d-dropout", "1"], "--d-dropout"),
        (&["--d-steps", "0"], "--d-steps"),
        (&["--lr-decay", "1.5"], "--lr-decay"),
        (&["--d-dropout", "0.3", "--d-activation", "tanh"], "--d-activation relu or leaky-relu"),
        (&["--g-activation", "swish"], "invalid value"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["train", p, "--backend", "cpu", "--steps", "2", "--out", o];
        args.extend_from_slice(extra);
        assert_input_error(&run(&args), needle);
    }
}

#[test]
fn an_existing_run_is_not_overwritten_without_flag() {
    let dir = tempfile::tempdir().unwrap();
    let npy = small_npy(dir.path());
    let out = dir.path().join("run");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "train",
            npy.to_str().unwrap(),
            "--backend",
            "cpu",
            "--steps",
            "4",
            "--batch-size",
            "8",
            "--out",
            out.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    assert!(bin().args(args(&[])).output().unwrap().status.success());
    let before = std::fs::read(out.join("checkpoints/latest.safetensors")).unwrap();
    let o = bin().args(args(&["--seed", "5"])).output().unwrap();
    assert_input_error(&o, "already holds a run");
    assert_eq!(std::fs::read(out.join("checkpoints/latest.safetensors")).unwrap(), before);
    assert!(bin().args(args(&["--seed", "5", "--overwrite"])).output().unwrap().status.success());
}

#[test]
fn unwritable_output_folder_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let npy = small_npy(dir.path());
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = blocker.join("run"); // a folder inside a regular file cannot exist
    let o = run(&[
        "train",
        npy.to_str().unwrap(),
        "--backend",
        "cpu",
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_input_error(&o, "output folder");
}

#[test]
fn info_lists_adapters() {
    let o = run(&["info"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `bench --plan` needs no device: every dispatch of the benchmark model's step, the models on
/// the modelled GPUs (marked as model inputs), and the dispatch table; a GPU it does not know
/// is refused with one line.
#[test]
fn bench_plan_prints_the_cost_model() {
    let o = run(&["bench", "--plan", "--plan-gpu", "custom:20,900,25"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    for needle in [
        "matmul_backward",
        "logit_head",
        "adam_step",
        "step_tick",
        "total: 24 dispatches",
        "not measurements",
        "64x64 DCGAN",
    ] {
        assert!(out.contains(needle), "bench --plan should print {needle:?}:\n{out}");
    }
    let o = run(&["bench", "--plan", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("bench --plan --json prints JSON");
    for bad in ["foo", "custom:1,2", "custom:0,900,25", "custom:20,nan,25"] {
        assert_input_error(&run(&["bench", "--plan", "--plan-gpu", bad]), "--plan-gpu");
    }
    // The measuring flags mean nothing to the model: refused, not ignored.
    for flag in [&["--matmul"][..], &["--seconds", "5"], &["--threads", "1"], &["--image-size", "64"]] {
        let args: Vec<&str> = ["bench", "--plan"].iter().chain(flag).copied().collect();
        assert_input_error(&run(&args), "cannot be used with");
    }
}

#[test]
fn a_model_beyond_the_gpu_binding_limit_is_a_clear_error() {
    let Some(ctx) = common::gpu() else { return };
    let limit = ctx.summary.max_storage_buffer_binding_size.min(ctx.summary.max_buffer_size);
    let dir = tempfile::tempdir().unwrap();
    let npy = small_npy(dir.path());
    // D's first layer alone: 16 x hidden floats, sized to pass the limit.
    let hidden = (limit / 4 / 16 + 1).to_string();
    let out = dir.path().join("run");
    let o = run(&[
        "train",
        npy.to_str().unwrap(),
        "--backend",
        "gpu",
        "--steps",
        "1",
        "--batch-size",
        "8",
        "--d-hidden",
        &hidden,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_input_error(&o, "max_storage_buffer_binding_size");
    assert!(stderr(&o).contains("D.params"), "{}", stderr(&o));
}

#[test]
fn divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let npy = small_npy(dir.path());
    let out = dir.path().join("run");
    let o = run(&[
        "train",
        npy.to_str().unwrap(),
        "--backend",
        "cpu",
        "--steps",
        "400",
        "--batch-size",
        "8",
        "--lr",
        "1e12",
        "--log-every",
        "1",
        "--checkpoint-every",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("diverged") && err.contains("at step"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let latest = out.join("checkpoints/latest.safetensors");
    if latest.exists() {
        let ck = shadergan::train::checkpoint::load(&latest).expect("the last good checkpoint loads");
        assert!(ck.snapshot.g.params.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn bad_checkpoints_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let npy = small_npy(dir.path());
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\xff\xff\xff\xff\xff\xff\xff\x7f not a safetensors file").unwrap();
    let o =
        run(&["train", npy.to_str().unwrap(), "--backend", "cpu", "--resume", junk.to_str().unwrap(), "--steps", "5"]);
    assert_input_error(&o, "junk.safetensors");
    let o = run(&["generate", junk.to_str().unwrap(), "--out", dir.path().join("s.npy").to_str().unwrap()]);
    assert_input_error(&o, "junk.safetensors");
    let o = run(&["generate", dir.path().join("none.safetensors").to_str().unwrap(), "--out", "x.npy"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn broken_checkpoints_exit_2_and_leave_the_run_alone() {
    let dir = tempfile::tempdir().unwrap();
    let npy = small_npy(dir.path());
    let out = dir.path().join("run");
    let o = run(&[
        "train",
        npy.to_str().unwrap(),
        "--backend",
        "cpu",
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let good = std::fs::read(out.join("checkpoints/latest.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(good[8..8 + header_len].to_vec()).unwrap();
    let mut huge_header = good.clone();
    huge_header[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let with_header = |h: &str| {
        let mut h = h.to_string();
        while h.len() < header_len {
            h.push(' ');
        }
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(&good[8 + header_len..]);
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("header-beyond-file", huge_header),
        ("tensor-missing", with_header(&header.replacen("\"G.fc1.bias\"", "\"G.fc1.bias_renamed\"", 1))),
        ("wrong-dtype", with_header(&header.replacen("\"F32\"", "\"I32\"", 1))),
        ("bad-metadata", with_header(&header.replacen("\"format\"", "\"formax\"", 1))),
    ];
    for (name, bytes) in cases {
        let p = dir.path().join(format!("{name}.safetensors"));
        std::fs::write(&p, bytes).unwrap();
        let o =
            run(&["train", npy.to_str().unwrap(), "--backend", "cpu", "--resume", p.to_str().unwrap(), "--steps", "8"]);
        assert_input_error(&o, &format!("{name}.safetensors"));
        let o = run(&[
            "generate",
            p.to_str().unwrap(),
            "--backend",
            "cpu",
            "--out",
            dir.path().join("s.npy").to_str().unwrap(),
        ]);
        assert_input_error(&o, &format!("{name}.safetensors"));
    }
    assert_eq!(std::fs::read(out.join("checkpoints/latest.safetensors")).unwrap(), good);
    assert!(!dir.path().join("s.npy").exists());
}
