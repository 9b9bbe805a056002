//! The classifier end to end: a small classifier trained on each backend (they agree), saved and
//! loaded, the built-in one, and forged files. Its kernel (softmax_xent) is in tests/ops/xent.rs.

mod common;

use common::{gpu, uniform};
use shadergan::backend::Backend;
use shadergan::data::Dataset;
use shadergan::kernels::tolerance::{compare, tolerance};
use shadergan::programs::classifier::{self, Classifier, ClassifierRequest, Labelled};

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
    let clf = shadergan::eval::builtin_classifier().unwrap();
    assert_eq!((clf.spec.input_dim, clf.spec.classes), (784, 10));
    assert!(clf.spec.test_accuracy.unwrap() >= 0.98, "{:?}", clf.spec.test_accuracy);
    // The built-in digits are MNIST training images: it must know nearly all of them.
    let data = shadergan::data::assets::default_dataset().unwrap();
    let images = classifier::rows_f32(&data, 0..1000);
    let s = clf.score(&images, 1000);
    let confident = s.probs.chunks(10).filter(|p| p.iter().cloned().fold(0.0, f64::max) > 0.9).count();
    assert!(confident > 900, "{confident} of 1000 confident");
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
