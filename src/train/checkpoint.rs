//! Checkpoints: one [safetensors](https://huggingface.co/docs/safetensors) file per save, readable
//! from Python with `safetensors.torch.load_file`.
//!
//! Tensors, all F32, row-major, named by [`Net::tensors`](crate::nn::Net::tensors):
//! - `G.fc1.weight` (out, in), `G.fc1.bias` (out), `G.fc2.weight`, ... for every layer of G, then
//!   `D.fc1.weight`, ... for D. Weights are (out, in) like `torch.nn.Linear`, so stripping the `G.`
//!   prefix gives a `state_dict` for a `Sequential`-like module whose linear layers are `fc1`, `fc2`, ...
//! - Adam's state under the same layer names: `optim.G.exp_avg.fc1.weight` (m),
//!   `optim.G.exp_avg_sq.fc1.weight` (v), ..., and the same for `optim.D.`.
//! - With `--g-ema`, G's weight average under `G_ema.fc1.weight`, ... (the weights sampling and
//!   evaluation use). Optional on load: without them the average restarts from G's weights.
//!
//! Batch norm's running statistics are stored beside the parameters under PyTorch's names
//! (`G.bn1.running_mean`, `G.bn1.running_var`), and G's weight average keeps its own
//! (`G_ema.bn1.running_mean`, ...).
//!
//! Metadata (all strings): `format` = `shadergan-checkpoint`, `version` = `2`, `config` (the
//! [`TrainConfig`] as JSON), `step`, `t_d`, `t_g` (optimizer steps of D and G; decimal), `epoch`
//! (decimal), `data_shape` (the training data's sample shape, a JSON list) and `crate_version`.
//! Adam's bias-correction powers are not stored: loading recomputes them from `t_d` and `t_g`.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::config::model::mlp_param_count;
use crate::config::{ModelConfig, TrainConfig};
use crate::error::{Error, Result};
use crate::io::safetensors::{self as safetensors_io, one_line};
use crate::ir::TrainState;
use crate::programs::trainer::{NetSnapshot, Snapshot};

/// Value of the metadata key `format`.
pub const FORMAT: &str = "shadergan-checkpoint";
/// Value of the metadata key `version` this build writes.
pub const VERSION: &str = "2";
/// The versions `load` reads. 1 (shadergan 0.1.0): MLPs only; its config has no `arch`,
/// `image`, `g_channels` or `d_channels`, which read as an MLP (serde defaults), and its tensor
/// names are today's, so it needs no other migration (tests/compat.rs loads files 0.1.0 wrote).
pub const READS: &[&str] = &["1", "2"];

/// Everything a checkpoint holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub config: TrainConfig,
    /// Weights, Adam m and v, and the counters.
    pub snapshot: Snapshot,
    pub epoch: f64,
    /// The training data's sample shape, e.g. [28, 28].
    pub data_shape: Vec<usize>,
}

/// Where a tensor lives in a [`Snapshot`]: G's parameters, moments, state, then D's, then G's
/// weight average and its state (the order of `parts`).
const G_PARAMS: usize = 0;
const D_PARAMS: usize = 3;
const EMA: usize = 6;
const EMA_STATE: usize = 7;
const PARTS: usize = 8;

/// One tensor of the file: name, shape, which part of the snapshot it is in, and its first
/// element there.
struct Spec {
    name: String,
    shape: Vec<usize>,
    part: usize,
    start: usize,
}

/// The snapshot's buffers in `Spec::part` order.
fn parts(s: &Snapshot) -> [&[f32]; PARTS] {
    let ema = s.g_ema.as_deref().unwrap_or(&[]);
    [&s.g.params, &s.g.moments, &s.g.state, &s.d.params, &s.d.moments, &s.d.state, ema, &s.g_ema_state]
}

/// The lengths `parts` must have for `model` (the weight average's when `ema`).
fn part_lens(model: &ModelConfig, ema: bool) -> [usize; PARTS] {
    let (g, d) = (model.generator(false), model.discriminator(0.0, false));
    let (e, es) = if ema { (g.params_len, g.state_len) } else { (0, 0) };
    [g.params_len, 2 * g.params_len, g.state_len, d.params_len, 2 * d.params_len, d.state_len, e, es]
}

/// The bytes of the tensors of a checkpoint of `cfg`'s model (the file adds a small header):
/// G's and D's weights, Adam's two moments of each (what an exact resume needs), their running
/// statistics, and G's weight average with `--g-ema`.
pub fn tensor_bytes(cfg: &TrainConfig) -> u64 {
    4 * part_lens(&cfg.model, cfg.g_ema > 0.0).iter().sum::<usize>() as u64
}

/// Every tensor of a model, G then D; each net's parameters, then its m, then its v, then its
/// state; then G's weight average when `ema`.
fn specs(model: &ModelConfig, ema: bool) -> Vec<Spec> {
    let mut out = Vec::new();
    for (net, base) in [(model.generator(false), G_PARAMS), (model.discriminator(0.0, false), D_PARAMS)] {
        let n = &net.name;
        for (prefix, part, start) in [
            (format!("{n}."), base, 0),
            (format!("optim.{n}.exp_avg."), base + 1, 0),
            (format!("optim.{n}.exp_avg_sq."), base + 1, net.params_len),
        ] {
            for t in net.tensors() {
                out.push(Spec { name: format!("{prefix}{}", t.name), shape: t.shape, part, start: start + t.off });
            }
        }
        for t in net.state_tensors() {
            out.push(Spec { name: format!("{n}.{}", t.name), shape: t.shape, part: base + 2, start: t.off });
        }
        if ema && net.name == "G" {
            for t in net.tensors() {
                out.push(Spec { name: format!("G_ema.{}", t.name), shape: t.shape, part: EMA, start: t.off });
            }
            for t in net.state_tensors() {
                out.push(Spec { name: format!("G_ema.{}", t.name), shape: t.shape, part: EMA_STATE, start: t.off });
            }
        }
    }
    out
}

/// The bytes of the safetensors file for `ckpt`.
fn to_bytes(ckpt: &Checkpoint) -> Result<Vec<u8>> {
    let (model, s) = (&ckpt.config.model, &ckpt.snapshot);
    let bufs = parts(s);
    if bufs.iter().map(|b| b.len()).ne(part_lens(model, s.g_ema.is_some())) {
        return Err(Error::input("checkpoint: the snapshot's buffer sizes do not match its config's model"));
    }
    let tensors: Vec<_> = specs(model, s.g_ema.is_some())
        .into_iter()
        .map(|t| {
            let n: usize = t.shape.iter().product();
            let bytes: Vec<u8> = bufs[t.part][t.start..t.start + n].iter().flat_map(|v| v.to_le_bytes()).collect();
            (t.name, t.shape, bytes)
        })
        .collect();
    let err = |e: SafeTensorError| Error::Io(format!("checkpoint: cannot serialise: {e}"));
    let views: Vec<_> = tensors
        .iter()
        .map(|(name, shape, b)| Ok((name, TensorView::new(Dtype::F32, shape.clone(), b)?)))
        .collect::<Result<_, SafeTensorError>>()
        .map_err(err)?;
    let config = serde_json::to_string(&ckpt.config).map_err(|e| Error::Io(format!("checkpoint: {e}")))?;
    let st = &s.state;
    let meta = [
        ("format", FORMAT.to_string()),
        ("version", VERSION.to_string()),
        ("config", config),
        ("step", st.step.to_string()),
        ("t_d", st.t_d.to_string()),
        ("t_g", st.t_g.to_string()),
        ("epoch", ckpt.epoch.to_string()),
        ("data_shape", format!("{:?}", ckpt.data_shape)),
        ("crate_version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    let meta = meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    safetensors::serialize(views, Some(meta)).map_err(err)
}

/// Writes atomically ([`crate::io::write_atomic`]): a crash or a full disk at any moment leaves
/// either the old file or the new one.
pub fn save(path: &Path, ckpt: &Checkpoint) -> Result<()> {
    crate::io::write_atomic(path, &to_bytes(ckpt)?)
}

/// Reads and fully validates a checkpoint. Every problem with the file's contents is an
/// [`Error::Input`] with one line naming the file.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let name = path.display().to_string();
    let fail = |msg: String| Error::Input(format!("{name}: {msg}"));
    let bytes = fs::read(path).map_err(|e| {
        use std::io::ErrorKind::*;
        match e.kind() {
            NotFound | PermissionDenied | IsADirectory => fail(format!("cannot read checkpoint: {e}")),
            _ => Error::io(path, e),
        }
    })?;
    let (st, meta) = safetensors_io::open(&bytes).map_err(fail)?;
    let (config, state, epoch, data_shape) = read_metadata(&meta).map_err(fail)?;
    let snapshot = read_tensors(&st, &config, state).map_err(fail)?;
    Ok(Checkpoint { config, snapshot, epoch, data_shape })
}

type Metadata = (TrainConfig, TrainState, f64, Vec<usize>);

/// The checkpoint's metadata: its config (validated), counters, epoch and data shape.
fn read_metadata(meta: &HashMap<String, String>) -> std::result::Result<Metadata, String> {
    let get = |key: &str| meta.get(key).ok_or_else(|| format!("not a shadergan checkpoint: metadata lacks \"{key}\""));
    let format = get("format")?;
    if format != FORMAT {
        return Err(format!("not a shadergan checkpoint: metadata \"format\" is \"{}\"", one_line(format)));
    }
    let version = get("version")?;
    if !READS.contains(&version.as_str()) {
        let reads = READS.join(" and ");
        return Err(format!(
            "checkpoint version \"{}\" is not supported (this build reads {reads})",
            one_line(version)
        ));
    }
    let config: TrainConfig = serde_json::from_str(get("config")?)
        .map_err(|e| format!("metadata \"config\" is not a valid training config: {}", one_line(e)))?;
    let m = &config.model;
    if mlp_param_count(m.latent_dim, &m.g_hidden, m.data_dim).and(mlp_param_count(m.data_dim, &m.d_hidden, 1)).is_none()
    {
        return Err("the stored config describes a model too large to exist".into());
    }
    config.validate(config.batch_size.max(1)).map_err(|e| format!("the stored config is invalid: {e}"))?;
    let number = |key: &str| get(key)?.parse::<u32>().map_err(|_| format!("metadata \"{key}\" is not a whole number"));
    let state = TrainState::at(number("step")?, number("t_d")?, number("t_g")?, config.beta1, config.beta2);
    let epoch = get("epoch")?.parse::<f64>().ok().filter(|e| e.is_finite() && *e >= 0.0);
    let epoch = epoch.ok_or("metadata \"epoch\" is not a non-negative number")?;
    let data_shape: Vec<usize> =
        serde_json::from_str(get("data_shape")?).map_err(|_| "metadata \"data_shape\" is not a list of sizes")?;
    if data_shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b)) != Some(m.data_dim) {
        return Err(format!("metadata \"data_shape\" {data_shape:?} does not hold {} values per sample", m.data_dim));
    }
    Ok((config, state, epoch, data_shape))
}

/// Every tensor the config's model needs, checked (dtype, shape, finite) before anything is
/// allocated, so that all sizes are bounded by the file's.
fn read_tensors(st: &SafeTensors, config: &TrainConfig, state: TrainState) -> std::result::Result<Snapshot, String> {
    let m = &config.model;
    let layers = m.g_hidden.len() + m.d_hidden.len() + 2;
    if layers > st.len() {
        return Err(format!("the stored config has {layers} layers, the file only {} tensors", st.len()));
    }
    // G's weight average is optional: checkpoints from before --g-ema lack it.
    let ema = config.g_ema > 0.0 && st.names().iter().any(|n| n.starts_with("G_ema."));
    let specs = specs(m, ema);
    let mut views = Vec::with_capacity(specs.len());
    for t in &specs {
        let v = st.tensor(&t.name).map_err(|_| format!("tensor {} is missing", t.name))?;
        if v.dtype() != Dtype::F32 {
            return Err(format!("tensor {} is {:?}, expected F32", t.name, v.dtype()));
        }
        if v.shape() != t.shape.as_slice() {
            return Err(format!("tensor {} has shape {:?}, the stored config needs {:?}", t.name, v.shape(), t.shape));
        }
        views.push(v);
    }
    if let Some(extra) = st.names().into_iter().find(|n| !specs.iter().any(|t| t.name == *n)) {
        return Err(format!("unexpected tensor {}", one_line(extra)));
    }
    let mut bufs = part_lens(m, ema).map(|n| vec![0.0; n]);
    for (t, v) in specs.iter().zip(&views) {
        let dst = &mut bufs[t.part];
        for (i, (x, b)) in dst[t.start..].iter_mut().zip(v.data().chunks_exact(4)).enumerate() {
            *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if !x.is_finite() {
                return Err(format!("tensor {} holds a non-finite value ({x}) at flat index {i}", t.name));
            }
        }
    }
    let [g_params, g_moments, g_state, d_params, d_moments, d_state, g_ema, g_ema_state] = bufs;
    let g = NetSnapshot { params: g_params, moments: g_moments, state: g_state };
    let d = NetSnapshot { params: d_params, moments: d_moments, state: d_state };
    Ok(Snapshot { state, g, d, g_ema: ema.then_some(g_ema), g_ema_state })
}

/// Checks that a checkpoint fits a run: the same model and data sample dimension. Otherwise an
/// [`Error::Input`] lists what differs, e.g. "checkpoint has --latent-dim 64, this run 32".
pub fn check_compatible(ckpt: &Checkpoint, cfg: &TrainConfig) -> Result<()> {
    let (a, b) = (&ckpt.config.model, &cfg.model);
    let list = |v: &[usize]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
    let act = |x: crate::kernels::activation::Activation| {
        clap::ValueEnum::to_possible_value(&x).map_or(format!("{x:?}"), |p| p.get_name().to_string())
    };
    let pairs = [
        ("--latent-dim", a.latent_dim.to_string(), b.latent_dim.to_string()),
        ("--g-hidden", list(&a.g_hidden), list(&b.g_hidden)),
        ("--d-hidden", list(&a.d_hidden), list(&b.d_hidden)),
        ("--g-activation", act(a.g_activation), act(b.g_activation)),
        ("--d-activation", act(a.d_activation), act(b.d_activation)),
        ("--g-output", act(a.g_output), act(b.g_output)),
        ("classes (--conditional)", a.classes.to_string(), b.classes.to_string()),
    ];
    let differ = pairs.into_iter().filter(|(_, x, y)| x != y);
    let mut diffs: Vec<_> = differ.map(|(flag, x, y)| format!("checkpoint has {flag} {x}, this run {y}")).collect();
    if a.data_dim != b.data_dim {
        let shape = ckpt.data_shape.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("x");
        diffs.push(format!(
            "checkpoint was trained on samples of {} values ({shape}), this data has {}",
            a.data_dim, b.data_dim
        ));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(Error::input(format!("the checkpoint does not fit this run: {}", diffs.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::activation::Activation;

    fn sample() -> Checkpoint {
        let (data_dim, latent_dim, g_hidden, d_hidden) = (6, 3, vec![5, 4], vec![4]);
        let (g_activation, d_activation, g_output) = (Activation::Relu, Activation::LeakyRelu, Activation::Tanh);
        let model = ModelConfig {
            arch: crate::config::model::Arch::Mlp,
            image: None,
            g_channels: 64,
            d_channels: 64,
            data_dim,
            latent_dim,
            g_hidden,
            d_hidden,
            g_activation,
            d_activation,
            g_output,
            pack: 1,
            d_norm: crate::config::model::DNorm::Batch,
            g_fc_hidden: 0,
            d_fc_hidden: 0,
            augment: Default::default(),
            classes: 0,
        };
        let (g, d) = (model.generator(false), model.discriminator(0.0, false));
        let (batch_size, seed, lr, beta1, beta2, eps, real_label) = (2, 9, 2e-4, 0.5, 0.999, 1e-8, 0.9);
        let (data_scale, data_shift, data_u8) = (1.0 / 255.0, 0.0, true);
        let config = TrainConfig {
            model,
            batch_size,
            seed,
            lr,
            d_lr: Some(3e-4),
            beta1,
            beta2,
            eps,
            real_label,
            data_scale,
            data_shift,
            data_u8,
            d_dropout: 0.0,
            d_steps: 1,
            precision: crate::config::Precision::F16,
            g_ema: 0.0,
            lr_decay: 0.5,
            lr_decay_end: 40,
            image: None,
            layout: None,
            loss: crate::config::Loss::Bce,
            class_names: vec![],
        };
        let wave = |n: usize, k: f32| (0..n).map(|i| (i as f32 * k).sin() * 1e-3).collect::<Vec<f32>>();
        let snapshot = Snapshot {
            state: TrainState::at(7, 7, 6, 0.5, 0.999),
            g: NetSnapshot { params: g.init(9), moments: wave(2 * g.params_len, 0.37), state: vec![] },
            d: NetSnapshot { params: d.init(9), moments: wave(2 * d.params_len, 0.91), state: vec![] },
            g_ema: None,
            g_ema_state: vec![],
        };
        Checkpoint { config, snapshot, epoch: 1.75, data_shape: vec![2, 3] }
    }

    type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

    /// The file of `sample()`, its tensors and metadata edited.
    fn edited(edit: impl FnOnce(&mut Tensors, &mut HashMap<String, String>)) -> Vec<u8> {
        let bytes = to_bytes(&sample()).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let mut meta = header.metadata().clone().unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut ts: Tensors =
            st.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
        edit(&mut ts, &mut meta);
        let views: Vec<_> =
            ts.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        safetensors::serialize(views, Some(meta)).unwrap()
    }

    fn load_bytes(bytes: &[u8]) -> Result<Checkpoint> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        fs::write(&path, bytes).unwrap();
        load(&path)
    }

    #[track_caller]
    fn expect_input(bytes: &[u8], needle: &str) {
        match load_bytes(bytes) {
            Err(Error::Input(msg)) => {
                assert!(msg.contains("bad.safetensors: ") && msg.contains(needle), "{needle:?} not in {msg:?}");
                assert!(!msg.contains('\n'), "{msg:?}");
            }
            other => panic!("expected Error::Input containing {needle:?}, got {other:?}"),
        }
    }

    fn tensor<'a>(ts: &'a mut Tensors, name: &str) -> &'a mut (String, Dtype, Vec<usize>, Vec<u8>) {
        ts.iter_mut().find(|t| t.0 == name).unwrap()
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        let ck = sample();
        save(&path, &ck).unwrap();
        assert_eq!(load(&path).unwrap(), ck);
        check_compatible(&ck, &ck.config).unwrap();
    }

    #[test]
    fn g_ema_round_trips_and_is_optional_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        let mut ck = sample();
        ck.config.g_ema = 0.999;
        let g = ck.snapshot.g.params.len();
        ck.snapshot.g_ema = Some((0..g).map(|i| i as f32 * 0.01).collect());
        save(&path, &ck).unwrap();
        let st_bytes = fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&st_bytes).unwrap();
        assert_eq!(st.tensor("G_ema.fc1.weight").unwrap().shape(), &[5, 3]);
        assert_eq!(load(&path).unwrap(), ck);
        // A checkpoint without the average (written before --g-ema) still loads, without it.
        let mut old = ck.clone();
        old.snapshot.g_ema = None;
        save(&path, &old).unwrap();
        assert_eq!(load(&path).unwrap().snapshot.g_ema, None);
    }

    #[test]
    fn layout_as_documented() {
        let ck = sample();
        let bytes = to_bytes(&ck).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let layers: [(&str, &[usize]); 10] = [
            ("G.fc1.weight", &[5, 3]),
            ("G.fc1.bias", &[5]),
            ("G.fc2.weight", &[4, 5]),
            ("G.fc2.bias", &[4]),
            ("G.fc3.weight", &[6, 4]),
            ("G.fc3.bias", &[6]),
            ("D.fc1.weight", &[4, 6]),
            ("D.fc1.bias", &[4]),
            ("D.fc2.weight", &[1, 4]),
            ("D.fc2.bias", &[1]),
        ];
        let mut want = Vec::new();
        for (name, shape) in layers {
            let (net, rest) = name.split_once('.').unwrap();
            for full in
                [name.to_string(), format!("optim.{net}.exp_avg.{rest}"), format!("optim.{net}.exp_avg_sq.{rest}")]
            {
                let v = st.tensor(&full).unwrap();
                assert_eq!((v.dtype(), v.shape()), (Dtype::F32, shape), "{full}");
                want.push(full);
            }
        }
        assert_eq!(st.len(), want.len());
        let floats = |name: &str| -> Vec<f32> {
            st.tensor(name).unwrap().data().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
        };
        let (s, g) = (&ck.snapshot, ck.config.model.generator(false).tensors());
        let (fc2w, fc3b, len) = (&g[2], &g[5], ck.snapshot.g.params.len());
        assert_eq!(floats("G.fc2.weight"), s.g.params[fc2w.off..fc2w.off + 20]);
        assert_eq!(floats("optim.G.exp_avg.fc3.bias"), s.g.moments[fc3b.off..len]);
        assert_eq!(floats("optim.G.exp_avg_sq.fc1.weight"), s.g.moments[len..len + 15]);
        assert_eq!(floats("D.fc2.bias"), s.d.params[s.d.params.len() - 1..]);
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().as_ref().unwrap();
        for (k, v) in [
            ("format", FORMAT),
            ("version", "2"),
            ("step", "7"),
            ("t_d", "7"),
            ("t_g", "6"),
            ("epoch", "1.75"),
            ("data_shape", "[2, 3]"),
        ] {
            assert_eq!(meta[k], v, "{k}");
        }
        assert!(meta["config"].contains("\"latent_dim\":3") && meta.contains_key("crate_version"));
    }

    #[test]
    fn broken_files_are_input_errors() {
        let good = to_bytes(&sample()).unwrap();
        let mut x = 12345u64;
        let noise: Vec<u8> = (0..3000)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                (x >> 56) as u8
            })
            .collect();
        expect_input(&noise, "safetensors");
        for cut in [0, 5, 8, 20, good.len() / 2, good.len() - 4, good.len() - 1] {
            expect_input(&good[..cut], "truncated");
        }
        for n in [u64::MAX, 1 << 40, good.len() as u64] {
            let mut b = good.clone();
            b[..8].copy_from_slice(&n.to_le_bytes());
            expect_input(&b, "header length field");
        }
        // Data offsets summing to nearly 2^64 (overflowed inside safetensors 0.8 unguarded).
        let sz: u64 = (1 << 61) - 1;
        let t =
            |i: u64| format!(r#""t{i}":{{"dtype":"U8","shape":[{sz}],"data_offsets":[{},{}]}}"#, i * sz, (i + 1) * sz);
        let h = format!("{{{}}}", (0..8).map(t).collect::<Vec<_>>().join(","));
        expect_input(&[&(h.len() as u64).to_le_bytes()[..], h.as_bytes()].concat(), "offsets run past the end");
        let meta_case = |key: &str, value: Option<&str>, needle: &str| {
            expect_input(
                &edited(|_, m| {
                    drop(match value {
                        Some(v) => m.insert(key.into(), v.into()),
                        None => m.remove(key),
                    })
                }),
                needle,
            )
        };
        meta_case("config", None, "lacks \"config\"");
        meta_case("config", Some("{\"model\": "), "\"config\" is not a valid");
        meta_case("format", Some("other"), "not a shadergan checkpoint");
        meta_case("version", Some("3"), "version \"3\" is not supported");
        meta_case("step", Some("-1"), "\"step\" is not a whole number");
        meta_case("data_shape", Some("[7]"), "data_shape");
        expect_input(&edited(|t, _| t.retain(|t| t.0 != "D.fc2.bias")), "tensor D.fc2.bias is missing");
        expect_input(&edited(|t, _| tensor(t, "G.fc1.weight").2 = vec![3, 5]), "G.fc1.weight has shape [3, 5]");
        expect_input(
            &edited(|t, _| {
                let b = tensor(t, "G.fc1.bias");
                b.1 = Dtype::F64;
                b.3 =
                    b.3.chunks(4)
                        .flat_map(|c| (f32::from_le_bytes(c.try_into().unwrap()) as f64).to_le_bytes())
                        .collect();
            }),
            "G.fc1.bias is F64, expected F32",
        );
        expect_input(
            &edited(|t, _| tensor(t, "D.fc1.weight").3[8..12].copy_from_slice(&f32::NAN.to_le_bytes())),
            "non-finite value (NaN) at flat index 2",
        );
        expect_input(
            &edited(|t, _| t.push(("extra".into(), Dtype::F32, vec![1], vec![0; 4]))),
            "unexpected tensor extra",
        );
    }

    #[test]
    fn damaged_bytes_never_panic() {
        let good = to_bytes(&sample()).unwrap();
        let mut x = 99u64;
        for _ in 0..300 {
            let mut b = good.clone();
            for _ in 0..3 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let i = (x >> 33) as usize % good.len().min(1200);
                b[i] = (x >> 20) as u8;
            }
            let _ = load_bytes(&b);
        }
    }

    #[test]
    fn compatibility() {
        let ck = sample();
        let msg = |edit: fn(&mut ModelConfig)| {
            let mut cfg = ck.config.clone();
            edit(&mut cfg.model);
            match check_compatible(&ck, &cfg) {
                Err(Error::Input(m)) => m,
                other => panic!("{other:?}"),
            }
        };
        assert!(msg(|m| m.latent_dim = 4).contains("checkpoint has --latent-dim 3, this run 4"));
        assert!(msg(|m| m.g_hidden = vec![5]).contains("--g-hidden 5,4, this run 5"));
        let both = msg(|m| {
            m.d_hidden = vec![8];
            m.g_output = Activation::Sigmoid;
        });
        assert!(both.contains("--d-hidden 4, this run 8; checkpoint has --g-output tanh, this run sigmoid"), "{both}");
        assert!(msg(|m| m.data_dim = 7).contains("samples of 6 values (2x3), this data has 7"));
    }

    #[test]
    fn save_replaces_atomically_and_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.safetensors");
        let (mut a, b) = (sample(), sample());
        a.epoch = 0.5;
        save(&path, &a).unwrap();
        save(&path, &b).unwrap();
        assert_eq!(load(&path).unwrap(), b);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["ck.safetensors"]);

        assert!(
            matches!(save(&dir.path().join("no/such/dir/ck.safetensors"), &a), Err(Error::Io(m)) if m.contains("no/such/dir"))
        );
        // The temp path taken by a directory: the write fails even for root.
        fs::create_dir(dir.path().join(".ck.safetensors.tmp")).unwrap();
        assert!(matches!(save(&path, &a), Err(Error::Io(m)) if m.contains(".ck.safetensors.tmp")));
        assert_eq!(load(&path).unwrap(), b);
        fs::remove_dir(dir.path().join(".ck.safetensors.tmp")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o555)).unwrap();
            let writable = fs::write(dir.path().join("probe"), b"").is_ok(); // true for root
            if !writable {
                assert!(matches!(save(&path, &a), Err(Error::Io(_))));
                assert_eq!(load(&path).unwrap(), b);
                assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
            }
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}
