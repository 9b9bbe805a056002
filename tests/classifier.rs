//! The classifier's kernel and its use: `softmax_xent` against its CPU twin (awkward shapes,
//! extreme logits, NaN-filled outputs), the strided gather that pairs pixels with labels, and a
//! small classifier trained on each backend.

mod common;

use std::sync::Arc;

use common::{gpu, uniform};
use shadergan::check::{compare, tolerance};
use shadergan::classifier::{self, Classifier, ClassifierRequest, Labelled};
use shadergan::cpu::CpuProgram;
use shadergan::data::Dataset;
use shadergan::gpu::GpuProgram;
use shadergan::params::*;
use shadergan::plan::{BufSpec, Op};
use shadergan::trainer::{Backend, Executor};

/// (gpu, cpu) contents of every buffer after one op.
type BothRuns = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// Runs one op on both backends over buffers with these initial contents; returns (gpu, cpu)
/// contents of every buffer. None when there is no GPU (and it is allowed to skip).
fn run_both(bufs: &[Vec<f32>], data: Option<Dataset>, state: TrainState, op: &Op) -> Option<BothRuns> {
    let ctx = gpu()?;
    let specs: Vec<BufSpec> = bufs.iter().enumerate().map(|(i, v)| BufSpec::f32(format!("buf{i}"), v.len())).collect();
    let mut cpu = CpuProgram::with_buffers(&specs, data.clone().map(Arc::new));
    cpu.fast = false;
    let mut gpu = GpuProgram::with_buffers(ctx, &specs, data.as_ref()).expect("buffers");
    for (i, v) in bufs.iter().enumerate() {
        cpu.write(i, v).unwrap();
        gpu.write(i, v).unwrap();
    }
    cpu.write_state(&state).unwrap();
    gpu.write_state(&state).unwrap();
    cpu.run_ops(std::slice::from_ref(op));
    let s = gpu.add_section(std::slice::from_ref(op)).expect("compile");
    gpu.run(s, 1).expect("run");
    let g = (0..bufs.len()).map(|i| gpu.read(i).unwrap()).collect();
    let c = (0..bufs.len()).map(|i| cpu.read(i).unwrap()).collect();
    Some((g, c))
}

fn xent_case(rows: usize, classes: usize, logits: Vec<f32>, labels: Vec<f32>, what: &str) {
    // Buffers: 0 logits (offset 1), 1 labels (offset 2), 2 dz (offset 3), 3 stats.
    let z: Vec<f32> = [0.5].into_iter().chain(logits).collect();
    let y: Vec<f32> = [0.0, 0.0].into_iter().chain(labels).collect();
    let bufs = vec![z, y, vec![f32::NAN; 3 + rows * classes], vec![f32::NAN; 4]];
    let p = XentParams {
        rows: rows as u32,
        classes: classes as u32,
        z_off: 1,
        label_off: 2,
        dz_off: 3,
        scale: 1.0 / rows as f32,
        slot_loss: 1,
        slot_acc: 2,
    };
    let op = Op::SoftmaxXent { p, z: 0, labels: 1, dz: 2, stats: 3 };
    let Some((g, c)) = run_both(&bufs, None, TrainState::new(), &op) else { return };
    let t = tolerance("softmax_xent");
    assert!(c[2][3..].iter().chain(&c[3][1..3]).all(|v| v.is_finite()), "{what}: CPU twin wrote a non-finite value");
    compare("softmax_xent dz", &g[2][3..], &c[2][3..], t).unwrap_or_else(|e| panic!("{what}: {e}"));
    compare("softmax_xent stats", &g[3][1..3], &c[3][1..3], t).unwrap_or_else(|e| panic!("{what}: {e}"));
    // Only the asked-for slots are written, and nothing before the offsets.
    assert!(g[3][0].is_nan() && g[3][3].is_nan(), "{what}: wrote an unrequested stat");
    assert!(g[2][..3].iter().all(|v| v.is_nan()), "{what}: wrote before dz_off");
}

#[test]
fn softmax_xent_matches_cpu() {
    for &(rows, classes) in
        &[(1usize, 2usize), (1, 10), (63, 10), (64, 10), (65, 10), (7, 33), (33, 65), (65, 7), (300, 10)]
    {
        let logits = uniform(rows * classes, rows as u32 * 31 + classes as u32, -8.0, 8.0);
        let labels: Vec<f32> = (0..rows).map(|r| ((r * 7 + 3) % classes) as f32).collect();
        xent_case(rows, classes, logits, labels, &format!("{rows}x{classes}"));
    }
}

#[test]
fn softmax_xent_is_finite_and_matches_at_extremes() {
    // Logits of +-30 and +-300: exp(300) overflows f32, the max-shifted form does not.
    let rows = 6;
    let classes = 3;
    let logits = vec![
        300.0, -300.0, 0.0, // right and sure
        -300.0, 300.0, 0.0, // wrong and sure: loss 600
        30.0, -30.0, 30.0, // a tie: the first largest is the prediction
        -300.0, -300.0, -300.0, // all equal: loss ln 3
        30.0, 29.0, -30.0, //
        0.0, 0.0, 300.0,
    ];
    let labels = vec![0.0, 0.0, 2.0, 1.0, 1.0, 2.0];
    let mut dz = vec![0.0; rows * classes];
    let mut stats = vec![0.0; 2];
    let p = XentParams { rows: 6, classes: 3, scale: 1.0, slot_loss: 0, slot_acc: 1, ..Default::default() };
    shadergan::cpu::ops::softmax_xent(&p, &logits, &labels, &mut dz, &mut stats);
    assert!(dz.iter().all(|v| v.is_finite()), "{dz:?}");
    let want_loss = 0.0 + 600.0 + 2f32.ln() + 3f32.ln() + (1.0 + (-1f32).exp() + (-60f32).exp()).ln() + 1.0 + 0.0;
    assert!((stats[0] - want_loss).abs() < 1e-3, "loss {} vs {want_loss}", stats[0]);
    // Right: rows 0 and 5; row 2's first largest is class 0 (label 2); row 3 ties at class 0.
    assert!((stats[1] - 2.0 / 6.0).abs() < 1e-6, "accuracy {}", stats[1]);
    assert_eq!(&dz[3..6], &[-1.0, 1.0, 0.0]);
    xent_case(rows, classes, logits, labels, "extremes");
}

#[test]
fn strided_gather_pairs_pixels_with_labels() {
    // A table of rows [pixels..., label], read as two gathers with one permutation.
    let (n, dim, rows) = (65usize, 5usize, 16u32);
    let table: Vec<u8> =
        (0..n).flat_map(|r| (0..dim).map(move |c| ((r * 3 + c) % 250) as u8).chain([(r % 10) as u8])).collect();
    let data = Dataset::from_u8(n, dim + 1, table).unwrap();
    let base = RandomParams {
        seed_lo: 9,
        rows,
        n: n as u32,
        steps_per_epoch: n as u32 / rows,
        half_bits: shadergan::rng::feistel_half_bits(n as u32),
        src_stride: dim as u32 + 1,
        ..Default::default()
    };
    let pixels = RandomParams { len: rows * dim as u32, dim: dim as u32, scale: 1.0, ..base };
    let labels = RandomParams { len: rows, dim: 1, src_col: dim as u32, scale: 1.0, ..base };
    for step in [0u32, 3, 7] {
        let state = TrainState::at(step, 0, 0, 0.9, 0.999);
        let bufs = vec![vec![f32::NAN; rows as usize * dim], vec![f32::NAN; rows as usize]];
        let Some((g1, c1)) = run_both(&bufs, Some(data.clone()), state, &Op::Gather { p: pixels, out: 0 }) else {
            return;
        };
        let (g2, c2) = run_both(&bufs, Some(data.clone()), state, &Op::Gather { p: labels, out: 1 }).unwrap();
        assert_eq!(g1[0], c1[0], "pixels, step {step}");
        assert_eq!(g2[1], c2[1], "labels, step {step}");
        // Each gathered label is its own row's: row r has pixel 0 = (3 r) % 250 and label r % 10.
        for r in 0..rows as usize {
            let src = (0..n).find(|&s| (s * 3 % 250) as f32 == c1[0][r * dim]).unwrap();
            assert_eq!(c2[1][r], (src % 10) as f32, "row {r}, step {step}");
        }
    }
}

/// Three separable classes in 12 dimensions: class k has its bright pixels in block k.
fn blobs(n: usize, seed: u32) -> (Dataset, Vec<u8>) {
    let noise = uniform(n * 12, seed, 0.0, 0.3);
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    let v: Vec<f32> =
        (0..n * 12).map(|i| noise[i] + if (i % 12) / 4 == labels[i / 12] as usize { 0.7 } else { 0.0 }).collect();
    (Dataset::from_f32(n, 12, v).unwrap(), labels)
}

fn small_request(backend: Backend) -> ClassifierRequest {
    ClassifierRequest {
        hidden: vec![16],
        epochs: 4,
        batch_size: 32,
        lr: 1e-2,
        dropout: 0.1,
        seed: 5,
        backend,
        quiet: true,
    }
}

#[test]
fn a_small_classifier_learns_on_the_cpu_and_round_trips_through_safetensors() {
    let (x, y) = blobs(600, 1);
    let (tx, ty) = blobs(300, 2);
    let clf = classifier::train(
        &Labelled { images: &x, labels: &y },
        Some(&Labelled { images: &tx, labels: &ty }),
        &small_request(Backend::Cpu),
    )
    .unwrap();
    let acc = clf.spec.test_accuracy.unwrap();
    assert!(acc > 0.95, "test accuracy {acc}");
    assert_eq!(clf.spec.classes, 3);
    assert_eq!(clf.spec.label_shares, vec![1.0 / 3.0; 3]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    clf.save(&path).unwrap();
    let back = Classifier::load(&path).unwrap();
    assert_eq!(back.params, clf.params);
    assert_eq!(back.spec, clf.spec);
    // A truncated file is a clear input error, not a panic.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = Classifier::load(&path).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
}

#[test]
fn classifier_training_agrees_across_backends() {
    if gpu().is_none() {
        return;
    }
    let (x, y) = blobs(600, 1);
    let set = Labelled { images: &x, labels: &y };
    let req = ClassifierRequest { epochs: 2, ..small_request(Backend::Cpu) };
    let c = classifier::train(&set, None, &req).unwrap();
    let g = classifier::train(&set, None, &ClassifierRequest { backend: Backend::Gpu, ..req }).unwrap();
    compare("classifier params after 2 epochs", &g.params, &c.params, tolerance("train_10_steps")).unwrap();
}

#[test]
fn the_built_in_classifier_loads_and_knows_digits() {
    let clf = shadergan::evaluate::builtin_classifier().unwrap();
    assert_eq!((clf.spec.input_dim, clf.spec.classes), (784, 10));
    assert!(clf.spec.test_accuracy.unwrap() >= 0.98, "{:?}", clf.spec.test_accuracy);
    // The built-in digits are MNIST training images: it must know nearly all of them.
    let data = shadergan::assets::default_dataset().unwrap();
    let images = classifier::rows_f32(&data, 0..1000);
    let s = clf.score(&images, 1000);
    let confident = s.probs.chunks(10).filter(|p| p.iter().cloned().fold(0.0, f64::max) > 0.9).count();
    assert!(confident > 900, "{confident} of 1000 confident");
}

#[test]
fn softmax_xent_gradient_matches_f64_finite_differences() {
    // The CPU twin's dz against central differences of the mean loss computed in f64.
    let (rows, classes) = (5usize, 7usize);
    let z = uniform(rows * classes, 41, -4.0, 4.0);
    let labels: Vec<f32> = (0..rows).map(|r| ((r * 3) % classes) as f32).collect();
    let p = XentParams {
        rows: rows as u32,
        classes: classes as u32,
        scale: 1.0 / rows as f32,
        slot_loss: 0,
        slot_acc: 1,
        ..Default::default()
    };
    let mut dz = vec![0.0; rows * classes];
    let mut stats = vec![0.0; 2];
    shadergan::cpu::ops::softmax_xent(&p, &z, &labels, &mut dz, &mut stats);
    let loss64 = |z: &[f64]| -> f64 {
        let mut total = 0.0;
        for (r, row) in z.chunks(classes).enumerate() {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            total += lse - row[labels[r] as usize];
        }
        total / rows as f64
    };
    let z64: Vec<f64> = z.iter().map(|&v| v as f64).collect();
    assert!((loss64(&z64) - stats[0] as f64).abs() < 1e-5, "loss {} vs {}", stats[0], loss64(&z64));
    let h = 1e-6;
    for i in 0..z64.len() {
        let (mut up, mut down) = (z64.clone(), z64.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (loss64(&up) - loss64(&down)) / (2.0 * h);
        assert!((fd - dz[i] as f64).abs() < 1e-6 + 1e-4 * fd.abs(), "dz[{i}] {} vs finite difference {fd}", dz[i]);
    }
}

#[test]
fn a_classifier_file_that_lies_about_its_size_is_refused_without_allocating() {
    let (x, y) = blobs(96, 1);
    let clf = classifier::train(
        &Labelled { images: &x, labels: &y },
        None,
        &ClassifierRequest { epochs: 1, ..small_request(Backend::Cpu) },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    clf.save(&path).unwrap();
    // Same tensors, metadata claiming a 2^20-wide hidden layer (4 TB of parameters).
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut spec = clf.spec.clone();
    spec.hidden = vec![1 << 20, 1 << 20];
    let meta: std::collections::HashMap<String, String> = [
        ("format".to_string(), classifier::FORMAT.to_string()),
        ("classifier".to_string(), serde_json::to_string(&spec).unwrap()),
    ]
    .into();
    let views: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    let forged = safetensors::serialize(views, Some(meta)).unwrap();
    std::fs::write(&path, forged).unwrap();
    let err = Classifier::load(&path).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("expected F32 [1048576, 12]"), "{err}");
    // Not a classifier at all: a GAN checkpoint's format is named.
    std::fs::write(&path, b"not safetensors").unwrap();
    assert_eq!(Classifier::load(&path).unwrap_err().exit_code(), 2);
}
