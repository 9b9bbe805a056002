//! The digit classifier that scores image runs: an MLP trained with shadergan's own kernels
//! (`shadergan classifier train images.npy labels.npy`), on either backend, with the softmax
//! cross-entropy kernel (`softmax_xent`, xent.wgsl) as its loss.
//!
//! Training is a program like the GAN's, over the same network code (`nn`): gather a batch of
//! pixels and of labels from one resident table (each row holds the pixels and then the label,
//! so one permutation keeps them paired), forward with dropout, softmax_xent, backward, Adam.
//! Scoring runs the network's eval-mode forward pass on the CPU backend, so a run's metrics do
//! not depend on the backend that trained its GAN.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};

use crate::backend::cpu::CpuExecutor;
use crate::backend::{Backend, Device, Executor, Section};
use crate::config::model::NET_CLASSIFIER;
use crate::data::{DataValues, Dataset};
use crate::error::{Error, Result};
use crate::ir::state::OPTIMIZER_D;
use crate::ir::{At, BufId, BufSpec, Buffers, DataChunks, Op, TrainState};
use crate::kernels::activation::Activation;
use crate::kernels::adam::{AdamParams, AdamStep, StepTick};
use crate::kernels::random::{self, RandomParams};
use crate::kernels::xent::{SoftmaxXent, XentParams};
use crate::nn::{self, Mode, Net, NetActs, NetParams, ParamGrads, Pass};
use crate::rng;

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
    /// The network: input -> hidden (ReLU, then `dropout` in training) -> class logits.
    pub fn net(&self, dropout: f32) -> Net {
        let layers =
            nn::mlp(self.input_dim, &self.hidden, self.classes, Activation::Relu, Activation::Identity, dropout);
        Net::new("C", NET_CLASSIFIER, layers)
    }
}

/// A trained classifier: its spec and flat parameters (the layout of [`ClassifierSpec::net`]).
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
    /// Scores `rows` images given in the data's units (rows x input_dim, row-major), in chunks
    /// of `CHUNK` rows through the network's eval-mode forward pass on the CPU backend, so a
    /// run's metrics do not depend on the backend that trained its GAN.
    pub fn score(&self, images: &[f32], rows: usize) -> Scores {
        let net = self.spec.net(0.0);
        let (dim, classes) = (self.spec.input_dim, self.spec.classes);
        let mut bufs = Buffers::new(false);
        let params = bufs.f32("C.params", net.params_len);
        let input = bufs.f32("C.input", CHUNK * dim);
        let acts = net.alloc_acts(&mut bufs, "C", CHUNK);
        // The penultimate layer's output: the features of the Fréchet distance.
        let feature_buf = acts.value(net.layers.len() - 1).expect("a hidden layer");
        let feature_dim = net.layers[net.layers.len() - 2].layer.out_features();
        let mut exec = CpuExecutor::new(&bufs.specs, None);
        exec.write(params, &self.params).expect("sized for the network");
        // One section per chunk size (at most two): each matmul is built for its exact rows.
        let mut sections: Vec<(usize, Section)> = vec![];
        let mut probs = Vec::with_capacity(rows * classes);
        let mut features = Vec::with_capacity(rows * feature_dim);
        for start in (0..rows).step_by(CHUNK) {
            let m = CHUNK.min(rows - start);
            let section = match sections.iter().find(|(r, _)| *r == m) {
                Some(&(_, s)) => s,
                None => {
                    let w = nn::Weights { read: params, grads: None, state: None };
                    let pass = Pass::new(At::start(input), m, Mode::Eval, 0);
                    let mut ops = vec![];
                    net.forward(&mut ops, w, &acts, &pass);
                    let s = exec.add_section(&ops).expect("sized for the network");
                    sections.push((m, s));
                    s
                }
            };
            let mut x: Vec<f32> = images[start * dim..(start + m) * dim]
                .iter()
                .map(|v| v * self.spec.input_scale + self.spec.input_shift)
                .collect();
            x.resize(CHUNK * dim, 0.0);
            exec.write(input, &x).expect("sized for the chunk");
            exec.run(section, 1).expect("the CPU backend does not fail");
            let f = exec.read(feature_buf).expect("a CPU buffer");
            features.extend_from_slice(&f[..m * feature_dim]);
            let logits = exec.read(acts.output()).expect("a CPU buffer");
            for row in logits[..m * classes].chunks(classes) {
                let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
                let e: Vec<f64> = row.iter().map(|&z| (z as f64 - mx).exp()).collect();
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
        let bytes: &[u8] = bytemuck::cast_slice(&self.params);
        let mut views = vec![];
        for t in self.spec.net(0.0).tensors() {
            let len: usize = t.shape.iter().product();
            let view = TensorView::new(safetensors::Dtype::F32, t.shape, &bytes[t.off * 4..(t.off + len) * 4])
                .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
            views.push((format!("C.{}", t.name), view));
        }
        let spec = serde_json::to_string(&self.spec).map_err(|e| Error::Io(e.to_string()))?;
        let meta = [("format".to_string(), FORMAT.to_string()), ("classifier".to_string(), spec)];
        let out = safetensors::serialize(views, Some(meta.into_iter().collect()))
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        crate::io::write_atomic(path, &out)
    }

    /// Loads and validates a classifier file.
    pub fn load(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Error::input(format!("{name}: cannot read: {e}")))?;
        Self::from_bytes(&bytes, &name)
    }

    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let fail = |m: String| Error::input(format!("{name}: {m}"));
        let meta = crate::io::safetensors::read_metadata(bytes).map_err(fail)?;
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
        let net = spec.net(0.0);
        let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(|e| fail(e.to_string()))?;
        // Check every tensor's shape before allocating: the data of matching tensors is in the
        // file, so the parameters cannot outgrow it, whatever the metadata claims.
        let mut views = vec![];
        for want in net.tensors() {
            let (key, shape) = (format!("C.{}", want.name), want.shape);
            let t = tensors.tensor(&key).map_err(|_| fail(format!("tensor {key} is missing")))?;
            if t.dtype() != safetensors::Dtype::F32 || t.shape() != shape.as_slice() {
                return Err(fail(format!("tensor {key} is {:?} {:?}; expected F32 {shape:?}", t.dtype(), t.shape())));
            }
            views.push((want.off, t));
        }
        let mut params = vec![0f32; net.params_len];
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

/// Everything `classifier train` needs (its flags, with their defaults).
#[derive(clap::Args, Clone, Debug)]
pub struct ClassifierRequest {
    /// Hidden layer sizes (ReLU), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "256,256")]
    pub hidden: Vec<usize>,
    #[arg(long, default_value_t = 15)]
    pub epochs: u32,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam's initial learning rate (betas 0.9, 0.999), decayed to 0 over the epochs (cosine).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// Dropout rate on the hidden layers during training.
    #[arg(long, default_value_t = 0.2)]
    pub dropout: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: Backend,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

impl Default for ClassifierRequest {
    fn default() -> Self {
        crate::config::options::defaults()
    }
}

/// The stats buffer slots of the classifier's step.
const SLOT_LOSS: u32 = 0;
const SLOT_ACC: u32 = 1;

/// The classifier's training step: buffers and the network's.
struct ClassifierProgram {
    bufs: Vec<BufSpec>,
    net: Net,
    params: NetParams,
    acts: NetActs,
    input: BufId,
    labels: BufId,
    logits_grad: BufId,
    stats: BufId,
}

impl ClassifierProgram {
    fn new(spec: &ClassifierSpec, req: &ClassifierRequest) -> Self {
        let net = spec.net(req.dropout);
        let (b, dim, k) = (req.batch_size, spec.input_dim, spec.classes);
        let mut bufs = Buffers::new(false);
        let params = net.alloc(&mut bufs);
        let acts = net.alloc_acts(&mut bufs, "C", b);
        let input = bufs.f32("C.input", b * dim);
        let labels = bufs.f32("C.labels", b);
        let logits_grad = bufs.f32("C.logits.grad", b * k);
        let stats = bufs.f32("C.stats", 2);
        ClassifierProgram { bufs: bufs.specs, net, params, acts, input, labels, logits_grad, stats }
    }

    /// One step at learning rate `lr`: gather a batch of pixels and of labels, forward with
    /// dropout, softmax_xent, backward, Adam.
    fn step(
        &self,
        spec: &ClassifierSpec,
        req: &ClassifierRequest,
        data: &Dataset,
        chunks: &DataChunks,
        lr: f32,
    ) -> Vec<Op> {
        let (b, dim, k, n) = (req.batch_size, spec.input_dim, spec.classes, data.n);
        let u8_data = matches!(data.values, DataValues::U8(_));
        let unit = if u8_data { 1.0 / 255.0 } else { 1.0 };
        let gather = RandomParams {
            seed_lo: req.seed as u32,
            seed_hi: (req.seed >> 32) as u32,
            rows: b as u32,
            n: n as u32,
            steps_per_epoch: (n / b) as u32,
            half_bits: rng::feistel_half_bits(n as u32),
            src_stride: dim as u32 + 1,
            ..Default::default()
        };
        let pixels = RandomParams {
            len: (b * dim) as u32,
            dim: dim as u32,
            scale: spec.input_scale * unit,
            shift: spec.input_shift,
            ..gather
        };
        let labels = RandomParams { len: b as u32, dim: 1, src_col: dim as u32, scale: 1.0, shift: 0.0, ..gather };
        let mut ops = random::gather_chunks(u8_data, pixels, self.input, chunks);
        ops.extend(random::gather_chunks(u8_data, labels, self.labels, chunks));
        let pass = Pass::new(At::start(self.input), b, Mode::Train { pass: 0 }, req.seed);
        self.net.forward(&mut ops, self.params.weights(), &self.acts, &pass);
        let p = XentParams {
            rows: b as u32,
            classes: k as u32,
            scale: 1.0 / b as f32,
            slot_loss: SLOT_LOSS,
            slot_acc: SLOT_ACC,
            ..Default::default()
        };
        ops.push(
            SoftmaxXent { p, z: self.acts.output(), labels: self.labels, dz: self.logits_grad, stats: self.stats }
                .into(),
        );
        let dout = At::start(self.logits_grad);
        self.net.backward(&mut ops, self.params.weights(), &self.acts, &pass, dout, None, ParamGrads::Write);
        let adam = AdamParams {
            len: self.net.params_len as u32,
            net: OPTIMIZER_D,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            ..Default::default()
        };
        let pb = &self.params;
        ops.push(AdamStep { p: adam, params: pb.params, grads: pb.grads, moments: pb.moments }.into());
        ops.push(StepTick { p: AdamParams { d_updates: 1, ..adam } }.into());
        ops
    }
}

/// Epoch `e` (0-based) of `epochs` trains at lr * (1 + cos(pi e / epochs)) / 2: cosine decay, so
/// the last epochs settle instead of bouncing around the minimum.
pub fn epoch_lr(lr: f32, e: u32, epochs: u32) -> f32 {
    let t = e as f64 / epochs.max(1) as f64;
    (lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
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

/// Checks a request against its data; returns the number of classes.
fn check_request(train: &Labelled, test: Option<&Labelled>, req: &ClassifierRequest) -> Result<usize> {
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
    Ok(classes)
}

/// The spec of a classifier for `classes` classes trained on `train` as `req` says.
fn spec_for(train: &Labelled, classes: usize, req: &ClassifierRequest) -> ClassifierSpec {
    let mut counts = vec![0usize; classes];
    for &y in train.labels {
        counts[y as usize] += 1;
    }
    let n = train.images.n;
    ClassifierSpec {
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
    }
}

/// Trains a classifier; `test` is scored after each epoch. Prints one line per epoch unless quiet.
pub fn train(train: &Labelled, test: Option<&Labelled>, req: &ClassifierRequest) -> Result<Classifier> {
    let classes = check_request(train, test, req)?;
    let spec = spec_for(train, classes, req);
    let n = train.images.n;
    let program = ClassifierProgram::new(&spec, req);
    // Pixels then the label in each row, so that one gather permutation keeps them paired.
    let table = Arc::new(crate::data::labels::labelled_table(train.images, train.labels)?);
    // The table is bound in chunks under the device's storage binding limit.
    let device = Device::open(req.backend)?;
    let chunks = device.data_chunks(&table)?;
    let mut exec = device.executor(&program.bufs, Some(table.clone()), chunks.clone())?;
    // One section per epoch: its own learning rate (cosine decay).
    let mut epochs = vec![];
    for e in 0..req.epochs {
        let lr = epoch_lr(req.lr, e, req.epochs);
        epochs.push(exec.add_section(&program.step(&spec, req, &table, &chunks, lr))?);
    }
    let params = program.net.init(req.seed);
    let mut clf = Classifier { spec, params };
    clf.spec.train.backend = exec.device_name();
    exec.write(program.params.params, &clf.params)?;
    // Step 0 and Adam's beta powers of 1 (a fresh GPU buffer would hold zeros).
    exec.write_state(&TrainState::new())?;
    let test_images = test.map(|t| rows_f32(t.images, 0..t.images.n));
    let steps_per_epoch = (n / req.batch_size) as u32;
    if !req.quiet {
        eprintln!(
            "classifier: {n} images of {} values, {classes} classes, hidden {:?}, {}, {}",
            clf.spec.input_dim,
            req.hidden,
            exec.backend().name(),
            exec.device_name()
        );
    }
    for (e, &section) in epochs.iter().enumerate() {
        let t0 = Instant::now();
        exec.run(section, steps_per_epoch)?;
        let stats = exec.read(program.stats)?;
        if !stats[SLOT_LOSS as usize].is_finite() {
            return Err(Error::Diverged(format!("classifier training diverged in epoch {}; try a lower --lr", e + 1)));
        }
        clf.params = exec.read(program.params.params)?;
        if let (Some(t), Some(x)) = (test, &test_images) {
            clf.spec.test_accuracy = Some(clf.accuracy(x, t.labels));
        }
        if !req.quiet {
            let test_acc =
                clf.spec.test_accuracy.map_or(String::new(), |a| format!("  test accuracy {:.2}%", 100.0 * a));
            eprintln!(
                "epoch {:>3}  last batch: loss {:.4}  accuracy {:.1}%{test_acc}  ({:.1} s)",
                e + 1,
                stats[SLOT_LOSS as usize],
                100.0 * stats[SLOT_ACC as usize],
                t0.elapsed().as_secs_f64()
            );
        }
    }
    Ok(clf)
}
