//! The `generate` command: samples from a checkpoint's generator, on either backend.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::Backend;
use crate::config::TrainConfig;
use crate::data::{self, DataValues, Dataset, ImageShape, Layout};
use crate::error::{Error, Result};
use crate::io::png as images;
use crate::programs::trainer::{to_data_scale, Trainer};
use crate::rng;
use crate::train::checkpoint;
use crate::train::run_dir::resolve_checkpoint;

#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// A checkpoint, or a run folder (its latest checkpoint).
    pub checkpoint: PathBuf,
    pub n: usize,
    /// Where the samples go (.npy): uint8 for uint8 data, float32 otherwise; shaped as the
    /// training data ((N, H, W, C) for image folders, see `output_shape`).
    pub out: Option<PathBuf>,
    /// An 8-column grid of the first (up to 64) samples, for image data.
    pub grid: Option<PathBuf>,
    /// Latent vectors, float32 (N, latent_dim), instead of seeded noise.
    pub z: Option<PathBuf>,
    pub seed: u64,
    pub backend: Backend,
    /// A conditional G's classes (see [`Classes`]); None: row i of class i mod classes.
    pub classes: Option<Classes>,
}

/// The classes a conditional G is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classes {
    /// `--class K`: every sample of class K (a class name, or else an index).
    One(String),
    /// `--classes A,B,...`: the same latent vectors for each class in turn (`--n` of each, or
    /// each `--z` row), so a grid has a row per class when `--n` is its width.
    Each(Vec<String>),
    /// `--labels FILE.npy`: one class index per sample (integers, (N,)); the sample count.
    File(PathBuf),
}

/// What `generate` wrote: the samples in the data's scale, for tests and callers, and a
/// conditional G's class of each.
pub struct Generated {
    pub n: usize,
    pub dim: usize,
    pub values: Vec<f32>,
    pub classes: Option<Vec<u32>>,
    /// The names of the classes made, for the log line (the first few).
    pub class_names: Option<String>,
}

fn read_latents(path: &Path, latent: usize) -> Result<Vec<f32>> {
    let z = data::load_npy(path)?;
    let DataValues::F32(v) = z.values else {
        return Err(Error::input(format!(
            "{}: latent vectors must be float32 or float64, not {}",
            path.display(),
            z.dtype
        )));
    };
    if z.dim != latent {
        return Err(Error::input(format!(
            "{}: latent vectors have width {}, the model's latent_dim is {latent}",
            path.display(),
            z.dim
        )));
    }
    Ok(v)
}

/// The shape `--out` has: the data's own for data with a channel axis ((N, H, W, C) for image
/// folders and NHWC files, (N, C, H, W) for NCHW ones), (N, D) otherwise, as 0.1.0 wrote it.
fn output_shape(cfg: &TrainConfig, n: usize) -> Vec<usize> {
    match (cfg.image, cfg.layout) {
        (Some(i), Some(Layout::Nhwc)) => vec![n, i.height, i.width, i.channels],
        (Some(i), Some(Layout::Nchw)) => vec![n, i.channels, i.height, i.width],
        _ => vec![n, cfg.model.data_dim],
    }
}

/// Gray image geometry from a checkpoint's data shape, for checkpoints that do not record it.
fn image_of_shape(shape: &[usize]) -> Option<ImageShape> {
    match *shape {
        [h, w] | [1, h, w] => Some(ImageShape::gray(h, w)),
        [d] => {
            let s = d.isqrt();
            (s * s == d && s > 1).then_some(ImageShape::gray(s, s))
        }
        _ => None,
    }
}

/// The class of a `--class` or `--classes` entry: a class name, or else an index below the
/// number of classes.
fn class_of(cfg: &TrainConfig, given: &str, flag: &str) -> Result<u32> {
    if let Some(i) = cfg.class_names.iter().position(|n| n == given) {
        return Ok(i as u32);
    }
    let c = cfg.model.classes;
    match given.trim().parse::<usize>() {
        Ok(i) if i < c => Ok(i as u32),
        _ => Err(Error::input(format!(
            "{flag} {given}: no such class; this generator knows {c} classes, 0 to {} ({})",
            c - 1,
            class_list(&cfg.class_names)
        ))),
    }
}

/// The class names, the first few.
fn class_list(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(12).map(String::as_str).collect();
    let more = if names.len() > 12 { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

/// `--labels FILE.npy` of `generate`: integer class indices, each below the number of classes.
fn read_class_file(path: &Path, cfg: &TrainConfig) -> Result<Vec<u32>> {
    let name = path.display().to_string();
    let a = crate::data::npy::read_label_array(path)?;
    let crate::data::npy::LabelValues::Ints(v) = a.values else {
        return Err(Error::input(format!("{name}: the labels are {}; give integer class indices", a.dtype)));
    };
    let c = cfg.model.classes;
    if let Some((i, y)) = v.iter().enumerate().find(|(_, &y)| y < 0 || y as usize >= c) {
        return Err(Error::input(format!("{name}: label {i} is {y}; this generator knows classes 0 to {}", c - 1)));
    }
    Ok(v.into_iter().map(|y| y as u32).collect())
}

/// Every sample's latent vector and, for a conditional G, its class: from `--z` or seeded noise
/// and the class flags (see [`Classes`]).
fn inputs(req: &GenerateRequest, cfg: &TrainConfig) -> Result<(Vec<f32>, Option<Vec<u32>>)> {
    let latent = cfg.model.latent_dim;
    if cfg.model.classes == 0 && req.classes.is_some() {
        return Err(Error::input(
            "this generator is not conditional (trained without --conditional): it takes no --class, --classes or --labels",
        ));
    }
    let file = match &req.classes {
        Some(Classes::File(p)) => Some(read_class_file(p, cfg)?),
        _ => None,
    };
    let z = match (&req.z, &file) {
        (Some(p), _) => read_latents(p, latent)?,
        (None, Some(f)) => seeded_latents(f.len(), latent, req.seed)?,
        (None, None) => seeded_latents(req.n, latent, req.seed)?,
    };
    let n = z.len() / latent;
    let classes = match &req.classes {
        None if cfg.model.classes == 0 => return Ok((z, None)),
        None => crate::programs::trainer::balanced_classes(n, cfg.model.classes),
        Some(Classes::One(k)) => vec![class_of(cfg, k, "--class")?; n],
        Some(Classes::File(p)) => {
            let f = file.expect("read above");
            if f.len() != n {
                return Err(Error::input(format!("{}: {} labels for {n} latent vectors (--z)", p.display(), f.len())));
            }
            f
        }
        Some(Classes::Each(list)) => {
            let ids = list.iter().map(|k| class_of(cfg, k, "--classes")).collect::<Result<Vec<_>>>()?;
            let z = z.repeat(ids.len());
            let classes = ids.iter().flat_map(|&y| std::iter::repeat_n(y, n)).collect();
            return Ok((z, Some(classes)));
        }
    };
    Ok((z, Some(classes)))
}

/// Columns of `--grid`.
const GRID_WIDTH: usize = 8;

/// The class name of each row of a `--grid` whose every row shows one class (`--class`, or
/// `--classes` with `--n 8`); None when a row mixes classes (nothing to name it by).
fn row_names(classes: &[u32], names: &[String]) -> Option<Vec<String>> {
    let rows: Vec<&[u32]> = classes.chunks(GRID_WIDTH).collect();
    let single = rows.iter().all(|r| r.iter().all(|&y| y == r[0]));
    single.then(|| rows.iter().map(|r| names.get(r[0] as usize).cloned().unwrap_or_default()).collect())
}

fn seeded_latents(n: usize, latent: usize, seed: u64) -> Result<Vec<f32>> {
    if n == 0 {
        return Err(Error::input("--n must be at least 1"));
    }
    let mut z = vec![0f32; n.checked_mul(latent).ok_or_else(|| Error::input("--n is too large"))?];
    rng::normals(rng::seed_words(seed), 1, 0, rng::PURPOSE_SAMPLES, &mut z);
    Ok(z)
}

pub fn generate(req: &GenerateRequest) -> Result<Generated> {
    let ckpt = checkpoint::load(&resolve_checkpoint(&req.checkpoint)?)?;
    let cfg = ckpt.config.clone();
    let (latent, dim) = (cfg.model.latent_dim, cfg.model.data_dim);
    let (z, classes) = inputs(req, &cfg)?;
    let n = z.len() / latent;
    // The trainer needs a data set to build its training step; generation never reads it.
    let mut placeholder = Dataset::from_u8(cfg.batch_size, dim, vec![0; cfg.batch_size * dim])?;
    if cfg.model.classes > 0 {
        let (ids, names) = (vec![0; cfg.batch_size], cfg.class_names.clone());
        placeholder.classes = Some(crate::data::labels::ClassLabels { ids, names });
    }
    let mut trainer = crate::open_trainer(req.backend, cfg.clone(), Arc::new(placeholder))?;
    trainer.restore(&ckpt.snapshot)?;
    let y = match &classes {
        Some(c) => trainer.sample_classes(&z, c)?,
        None => trainer.sample(&z)?,
    };
    let values = to_data_scale(&cfg, &y);
    let is_u8 = cfg.data_u8;
    if let Some(out) = &req.out {
        let (shape, mut rows) = (output_shape(&cfg, n), values.clone());
        if let (Some(image), Some(Layout::Nhwc)) = (cfg.image, cfg.layout) {
            data::nchw_to_nhwc(&mut rows, image);
        }
        if is_u8 {
            let bytes: Vec<u8> = rows.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect();
            data::save_npy_u8_as(out, &shape, &bytes)?;
        } else {
            data::save_npy_f32_as(out, &shape, &rows)?;
        }
    }
    if let Some(grid) = &req.grid {
        let Some(image) = cfg.image.or_else(|| image_of_shape(&ckpt.data_shape)) else {
            return Err(Error::input(format!(
                "--grid needs image data; this model makes samples of shape {:?}",
                ckpt.data_shape
            )));
        };
        // --classes: up to 16 named rows of 8; otherwise 8 rows.
        let k = n.min(if matches!(req.classes, Some(Classes::Each(_))) { 16 * GRID_WIDTH } else { 64 });
        let div = if is_u8 { 255.0 } else { 1.0 };
        let img: Vec<f32> = values[..k * dim].iter().map(|v| v / div).collect();
        let (c, h, w) = (image.channels, image.height, image.width);
        match classes.as_deref().and_then(|c| row_names(&c[..k], &cfg.class_names)) {
            Some(names) => images::write_labelled_grid_png(grid, &img, k, c, h, w, GRID_WIDTH, &names)?,
            None => images::write_image_grid_png(grid, &img, k, c, h, w, GRID_WIDTH)?,
        }
    }
    let class_names = classes.as_ref().map(|c| {
        let mut seen: Vec<u32> = c.clone();
        seen.sort_unstable();
        seen.dedup();
        class_list(&seen.iter().map(|&y| cfg.class_names[y as usize].clone()).collect::<Vec<_>>())
    });
    Ok(Generated { n, dim, values, classes, class_names })
}
