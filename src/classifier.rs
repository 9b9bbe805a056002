//! The digit classifier that scores image runs: an MLP trained with shadergan's own kernels
//! (`shadergan classifier train images.npy labels.npy`), on either backend, with the softmax
//! cross-entropy kernel (`softmax_xent`, xent.wgsl) as its loss.
//!
//! Training is a plan like the GAN's: gather a batch of pixels and of labels from one resident
//! table (each row holds the pixels and then the label, so one permutation keeps them paired),
//! forward with dropout, softmax_xent, backward, Adam. Scoring runs on the host with the CPU's
//! sgemm, so a run's metrics do not depend on the backend that trained its GAN.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};

use crate::cpu::{fast, CpuProgram};
use crate::data::{DataValues, Dataset};
use crate::error::{Error, Result};
use crate::model::{Activation, Net, NetLayout};
use crate::params::{AdamParams, RandomParams, TrainState, XentParams};
use crate::plan::{self, At, Builder, Op};
use crate::trainer::{Backend, Executor};
use crate::{gpu, rng};

/// What the classifier file says about itself (safetensors metadata "classifier", as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierSpec {
    pub input_dim: usize,
    pub hidden: Vec<usize>,
    pub classes: usize,
    /// Network input = pixel * input_scale + input_shift, pixels in the data's units (uint8
    /// data: value / 255).
    pub input_scale: f32,
    pub input_shift: f32,
    /// Share of each class among the training labels: the reference of the class-KL metric.
    pub label_shares: Vec<f64>,
    /// Accuracy on the held-out set given at training time (None: none was given).
    pub test_accuracy: Option<f64>,
    pub train: ClassifierTraining,
}

/// How a classifier was trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierTraining {
    pub epochs: u32,
    pub batch_size: usize,
    pub lr: f32,
    pub dropout: f32,
    pub seed: u64,
    pub samples: usize,
    pub backend: String,
}

impl ClassifierSpec {
    pub fn layout(&self) -> NetLayout {
        NetLayout::new(Net::C, self.input_dim, &self.hidden, self.classes, Activation::Relu, Activation::Identity)
    }
}

/// A trained classifier: its spec and flat parameters (the layout of [`ClassifierSpec::layout`]).
#[derive(Clone, Debug)]
pub struct Classifier {
    pub spec: ClassifierSpec,
    pub params: Vec<f32>,
}

/// Rows scored per host matmul call (bounds the scratch memory).
const CHUNK: usize = 1000;

/// The classifier's outputs for a set of images.
pub struct Scores {
    /// (rows, classes) softmax probabilities.
    pub probs: Vec<f64>,
    /// (rows, last hidden width) penultimate-layer features.
    pub features: Vec<f32>,
    pub feature_dim: usize,
}

impl Classifier {
    /// Scores `rows` images given in the data's units (rows x input_dim, row-major).
    pub fn score(&self, images: &[f32], rows: usize) -> Scores {
        let layout = self.spec.layout();
        let (dim, classes) = (self.spec.input_dim, self.spec.classes);
        let feature_dim = layout.layers[layout.layers.len().saturating_sub(2)].fan_out;
        let mut probs = Vec::with_capacity(rows * classes);
        let mut features = Vec::with_capacity(rows * feature_dim);
        for start in (0..rows).step_by(CHUNK) {
            let m = CHUNK.min(rows - start);
            let mut x: Vec<f32> = images[start * dim..(start + m) * dim]
                .iter()
                .map(|v| v * self.spec.input_scale + self.spec.input_shift)
                .collect();
            for (i, l) in layout.layers.iter().enumerate() {
                let mut y = vec![0f32; m * l.fan_out];
                let p = plan::layer_forward(l, m);
                fast::matmul_forward(&p, &x, &self.params, &mut y);
                if i + 2 == layout.layers.len() {
                    features.extend_from_slice(&y);
                }
                x = y;
            }
            for row in x.chunks(classes) {
                let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
                let e: Vec<f64> = row.iter().map(|&z| (z as f64 - m).exp()).collect();
                let s: f64 = e.iter().sum();
                probs.extend(e.iter().map(|v| v / s));
            }
        }
        Scores { probs, features, feature_dim }
    }

    /// Share of `labels` that the classifier predicts (argmax) correctly.
    pub fn accuracy(&self, images: &[f32], labels: &[u8]) -> f64 {
        let s = self.score(images, labels.len());
        let k = self.spec.classes;
        let right = (s.probs.chunks(k).zip(labels)).filter(|(p, &y)| argmax(p) == y as usize).count();
        right as f64 / labels.len().max(1) as f64
    }

    /// Saves as safetensors (tensors `C.fcN.weight` (out, in) and `C.fcN.bias`; metadata
    /// `format` = "shadergan-classifier" and `classifier` = the spec as JSON), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let layout = self.spec.layout();
        let bytes: &[u8] = bytemuck::cast_slice(&self.params);
        let mut views = vec![];
        for (name, off, shape) in layout.tensors() {
            let len: usize = shape.iter().product();
            let view = TensorView::new(safetensors::Dtype::F32, shape, &bytes[off * 4..(off + len) * 4])
                .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
            views.push((format!("C.{name}"), view));
        }
        let spec = serde_json::to_string(&self.spec).map_err(|e| Error::Io(e.to_string()))?;
        let meta = [("format".to_string(), FORMAT.to_string()), ("classifier".to_string(), spec)];
        let out = safetensors::serialize(views, Some(meta.into_iter().collect()))
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        crate::rundir::write_atomic(path, &out)
    }

    /// Loads and validates a classifier file.
    pub fn load(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Error::input(format!("{name}: cannot read: {e}")))?;
        Self::from_bytes(&bytes, &name)
    }

    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let fail = |m: String| Error::input(format!("{name}: {m}"));
        let (_, meta) = crate::checkpoint::read_header(bytes).map_err(fail)?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let meta: std::collections::HashMap<String, String> = meta;
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(fail(format!("not a shadergan classifier (metadata format is not \"{FORMAT}\")")));
        }
        let spec: ClassifierSpec = serde_json::from_str(meta.get("classifier").map_or("", String::as_str))
            .map_err(|e| fail(format!("bad classifier metadata: {e}")))?;
        let sane = spec.input_dim > 0
            && spec.classes >= 2
            && spec.classes <= crate::data::MAX_CLASSES
            && !spec.hidden.is_empty()
            && !spec.hidden.contains(&0)
            && spec.label_shares.len() == spec.classes
            && spec.hidden.len() <= 16
            && spec.hidden.iter().chain([spec.input_dim].iter()).all(|&w| w <= 1 << 20);
        if !sane {
            return Err(fail("the classifier metadata describes an impossible network".into()));
        }
        let layout = spec.layout();
        let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(|e| fail(e.to_string()))?;
        // Check every tensor's shape before allocating: the data of matching tensors is in the
        // file, so the parameters cannot outgrow it, whatever the metadata claims.
        let mut views = vec![];
        for (tname, off, shape) in layout.tensors() {
            let key = format!("C.{tname}");
            let t = tensors.tensor(&key).map_err(|_| fail(format!("tensor {key} is missing")))?;
            if t.dtype() != safetensors::Dtype::F32 || t.shape() != shape.as_slice() {
                return Err(fail(format!("tensor {key} is {:?} {:?}; expected F32 {shape:?}", t.dtype(), t.shape())));
            }
            views.push((off, t));
        }
        let mut params = vec![0f32; layout.len];
        for (off, t) in views {
            for (dst, src) in params[off..].iter_mut().zip(t.data().chunks_exact(4)) {
                *dst = f32::from_le_bytes(src.try_into().expect("chunks of 4"));
            }
        }
        if let Some(i) = params.iter().position(|v| !v.is_finite()) {
            return Err(fail(format!("parameter {i} is not finite")));
        }
        Ok(Classifier { spec, params })
    }
}

pub const FORMAT: &str = "shadergan-classifier";

pub fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

/// Everything `classifier train` needs.
#[derive(Clone, Debug)]
pub struct ClassifierRequest {
    pub hidden: Vec<usize>,
    pub epochs: u32,
    pub batch_size: usize,
    pub lr: f32,
    pub dropout: f32,
    pub seed: u64,
    pub backend: Backend,
    pub quiet: bool,
}

impl Default for ClassifierRequest {
    fn default() -> Self {
        ClassifierRequest {
            hidden: vec![256, 256],
            epochs: 15,
            batch_size: 128,
            lr: 1e-3,
            dropout: 0.2,
            seed: 0,
            backend: Backend::Auto,
            quiet: false,
        }
    }
}

/// The stats buffer slots of the classifier's step.
const SLOT_LOSS: u32 = 0;
const SLOT_ACC: u32 = 1;

/// Pixels then the label in each row, so that one gather permutation keeps them paired.
fn labelled_table(images: &Dataset, labels: &[u8]) -> Result<Dataset> {
    let (n, dim) = (images.n, images.dim);
    match &images.values {
        DataValues::U8(v) => {
            let mut t = Vec::with_capacity(n * (dim + 1));
            for (row, &y) in v.chunks(dim).zip(labels) {
                t.extend_from_slice(row);
                t.push(y);
            }
            Dataset::from_u8(n, dim + 1, t)
        }
        DataValues::F32(v) => {
            let mut t = Vec::with_capacity(n * (dim + 1));
            for (row, &y) in v.chunks(dim).zip(labels) {
                t.extend_from_slice(row);
                t.push(y as f32);
            }
            Dataset::from_f32(n, dim + 1, t)
        }
    }
}

struct ClassifierPlan {
    bufs: Vec<crate::plan::BufSpec>,
    step: Vec<Op>,
    params: usize,
    stats: usize,
}

fn build_plan(spec: &ClassifierSpec, req: &ClassifierRequest, n: usize, u8_data: bool) -> ClassifierPlan {
    let layout = spec.layout();
    let (b, dim, k) = (req.batch_size, spec.input_dim, spec.classes);
    let mut bld = Builder { bufs: vec![], half: false };
    let net = bld.net(&layout, b);
    let input = bld.buf("C.input", b * dim);
    let labels = bld.buf("C.labels", b);
    let logits_grad = bld.buf("C.logits.grad", b * k);
    let stats = bld.buf("C.stats", 2);
    let (seed_lo, seed_hi) = (req.seed as u32, (req.seed >> 32) as u32);
    let unit = if u8_data { 1.0 / 255.0 } else { 1.0 };
    let gather = RandomParams {
        seed_lo,
        seed_hi,
        rows: b as u32,
        n: n as u32,
        steps_per_epoch: (n / b) as u32,
        half_bits: rng::feistel_half_bits(n as u32),
        src_stride: dim as u32 + 1,
        ..Default::default()
    };
    let mut ops = vec![
        Op::Gather {
            p: RandomParams {
                len: (b * dim) as u32,
                dim: dim as u32,
                scale: spec.input_scale * unit,
                shift: spec.input_shift,
                ..gather
            },
            out: input,
        },
        Op::Gather {
            p: RandomParams { len: b as u32, dim: 1, src_col: dim as u32, scale: 1.0, shift: 0.0, ..gather },
            out: labels,
        },
    ];
    let dropout = (req.dropout > 0.0).then_some(plan::Dropout { rate: req.dropout, pass: 0, seed: req.seed });
    let at0 = |buf| At { buf, off: 0 };
    plan::forward(&mut ops, &net, at0(input), b, None, dropout);
    let logits = *net.act.last().expect("C has layers");
    ops.push(Op::SoftmaxXent {
        p: XentParams {
            rows: b as u32,
            classes: k as u32,
            scale: 1.0 / b as f32,
            slot_loss: SLOT_LOSS,
            slot_acc: SLOT_ACC,
            ..Default::default()
        },
        z: logits,
        labels,
        dz: logits_grad,
        stats,
    });
    let outs: Vec<At> = net.act.iter().map(|&x| at0(x)).collect();
    plan::backward(&mut ops, &net, at0(input), &outs, b, at0(logits_grad), true, None, dropout);
    let adam = AdamParams {
        len: layout.len as u32,
        net: 0,
        lr: req.lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        ..Default::default()
    };
    ops.push(Op::AdamTick { p: adam });
    ops.push(Op::AdamStep { p: adam, params: net.params, grads: net.grads, moments: net.moments });
    ops.push(Op::StepTick);
    ClassifierPlan { bufs: bld.bufs, step: ops, params: net.params, stats }
}

/// The step with Adam's learning rate set to `lr`.
fn with_lr(step: &[Op], lr: f32) -> Vec<Op> {
    let mut ops = step.to_vec();
    for op in &mut ops {
        if let Op::AdamTick { p } | Op::AdamStep { p, .. } = op {
            p.lr = lr;
        }
    }
    ops
}

/// Epoch `e` (0-based) of `epochs` trains at lr * (1 + cos(pi e / epochs)) / 2: cosine decay, so
/// the last epochs settle instead of bouncing around the minimum.
pub fn epoch_lr(lr: f32, e: u32, epochs: u32) -> f32 {
    let t = e as f64 / epochs.max(1) as f64;
    (lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
}

/// An executor for a plan's buffers with the step of each epoch (its own learning rate) as
/// sections 0, 1, ...
fn executor(backend: Backend, plan: &ClassifierPlan, data: Dataset, lrs: &[f32]) -> Result<Box<dyn Executor>> {
    let gpu = match backend {
        Backend::Gpu => true,
        Backend::Cpu => false,
        Backend::Auto => gpu::context::real_gpu_available(),
    };
    if gpu {
        let mut p = gpu::GpuProgram::with_buffers(gpu::GpuContext::new()?, &plan.bufs, Some(&data))?;
        for &lr in lrs {
            p.add_section(&with_lr(&plan.step, lr))?;
        }
        Ok(Box::new(p))
    } else {
        let mut p = CpuProgram::with_buffers(&plan.bufs, Some(Arc::new(data)));
        for &lr in lrs {
            p.add_section(&with_lr(&plan.step, lr));
        }
        Ok(Box::new(p))
    }
}

/// A labelled image set: images in the data's units and their labels.
pub struct Labelled<'a> {
    pub images: &'a Dataset,
    pub labels: &'a [u8],
}

fn check_labelled(set: &Labelled, what: &str) -> Result<()> {
    if set.images.n != set.labels.len() {
        return Err(Error::input(format!(
            "{what}: {} images but {} labels; give one label per image",
            set.images.n,
            set.labels.len()
        )));
    }
    Ok(())
}

/// Rows of a data set as f32 in the data's units (uint8: value / 255).
pub fn rows_f32(d: &Dataset, rows: impl Iterator<Item = usize>) -> Vec<f32> {
    let mut out = vec![];
    for r in rows {
        match &d.values {
            DataValues::U8(v) => out.extend(v[r * d.dim..(r + 1) * d.dim].iter().map(|&x| x as f32 / 255.0)),
            DataValues::F32(v) => out.extend_from_slice(&v[r * d.dim..(r + 1) * d.dim]),
        }
    }
    out
}

/// Trains a classifier; `test` is scored after each epoch. Prints one line per epoch unless quiet.
pub fn train(train: &Labelled, test: Option<&Labelled>, req: &ClassifierRequest) -> Result<Classifier> {
    check_labelled(train, "training set")?;
    if let Some(t) = test {
        check_labelled(t, "test set")?;
        if t.images.dim != train.images.dim {
            return Err(Error::input(format!(
                "the test images have {} values each, the training images {}",
                t.images.dim, train.images.dim
            )));
        }
    }
    let classes = *train.labels.iter().max().unwrap_or(&0) as usize + 1;
    if classes < 2 {
        return Err(Error::input("the labels name only one class; a classifier needs at least two"));
    }
    if let Some(bad) = test.and_then(|t| t.labels.iter().find(|&&y| y as usize >= classes)) {
        return Err(Error::input(format!(
            "a test label is {bad}, but the training labels only go up to {}",
            classes - 1
        )));
    }
    if req.batch_size == 0 || req.batch_size > train.images.n {
        return Err(Error::input(format!(
            "--batch-size must be from 1 to the number of training images ({}), not {}",
            train.images.n, req.batch_size
        )));
    }
    if !(0.0..1.0).contains(&req.dropout) {
        return Err(Error::input(format!("--dropout must be in [0, 1), not {}", req.dropout)));
    }
    if req.hidden.is_empty() || req.hidden.contains(&0) {
        return Err(Error::input("--hidden needs at least one layer, each of at least 1 unit"));
    }
    if !(req.lr.is_finite() && req.lr > 0.0) {
        return Err(Error::input(format!("--lr must be positive, not {}", req.lr)));
    }
    let mut counts = vec![0usize; classes];
    for &y in train.labels {
        counts[y as usize] += 1;
    }
    let n = train.images.n;
    let spec = ClassifierSpec {
        input_dim: train.images.dim,
        hidden: req.hidden.clone(),
        classes,
        input_scale: 2.0,
        input_shift: -1.0,
        label_shares: counts.iter().map(|&c| c as f64 / n as f64).collect(),
        test_accuracy: None,
        train: ClassifierTraining {
            epochs: req.epochs,
            batch_size: req.batch_size,
            lr: req.lr,
            dropout: req.dropout,
            seed: req.seed,
            samples: n,
            backend: String::new(),
        },
    };
    let u8_data = matches!(train.images.values, DataValues::U8(_));
    let plan = build_plan(&spec, req, n, u8_data);
    let lrs: Vec<f32> = (0..req.epochs).map(|e| epoch_lr(req.lr, e, req.epochs)).collect();
    let mut exec = executor(req.backend, &plan, labelled_table(train.images, train.labels)?, &lrs)?;
    let params = spec.layout().init(req.seed);
    let mut clf = Classifier { spec, params };
    clf.spec.train.backend = exec.device_name();
    exec.write(plan.params, &clf.params)?;
    // Step 0 and Adam's beta powers of 1 (a fresh GPU buffer would hold zeros).
    exec.write_state(&TrainState::new())?;
    let test_images = test.map(|t| rows_f32(t.images, 0..t.images.n));
    let steps_per_epoch = (n / req.batch_size) as u32;
    if !req.quiet {
        eprintln!(
            "classifier: {n} images of {} values, {classes} classes, hidden {:?}, {} on {}",
            clf.spec.input_dim,
            req.hidden,
            if exec.backend() == Backend::Cpu { "cpu" } else { "gpu" },
            exec.device_name()
        );
    }
    for epoch in 1..=req.epochs {
        let t0 = Instant::now();
        exec.run(epoch as usize - 1, steps_per_epoch)?;
        let stats = exec.read(plan.stats)?;
        if !stats[SLOT_LOSS as usize].is_finite() {
            return Err(Error::Diverged(format!("classifier training diverged in epoch {epoch}; try a lower --lr")));
        }
        clf.params = exec.read(plan.params)?;
        if let (Some(t), Some(x)) = (test, &test_images) {
            clf.spec.test_accuracy = Some(clf.accuracy(x, t.labels));
        }
        if !req.quiet {
            let test_acc =
                clf.spec.test_accuracy.map_or(String::new(), |a| format!("  test accuracy {:.2}%", 100.0 * a));
            eprintln!(
                "epoch {epoch:>3}  last batch: loss {:.4}  accuracy {:.1}%{test_acc}  ({:.1} s)",
                stats[SLOT_LOSS as usize],
                100.0 * stats[SLOT_ACC as usize],
                t0.elapsed().as_secs_f64()
            );
        }
    }
    Ok(clf)
}
