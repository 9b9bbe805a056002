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
}

/// What `generate` wrote: the samples in the data's scale, for tests and callers.
pub struct Generated {
    pub n: usize,
    pub dim: usize,
    pub values: Vec<f32>,
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

pub fn generate(req: &GenerateRequest) -> Result<Generated> {
    let ckpt = checkpoint::load(&resolve_checkpoint(&req.checkpoint)?)?;
    let cfg = ckpt.config.clone();
    let latent = cfg.model.latent_dim;
    let dim = cfg.model.data_dim;
    let z = match &req.z {
        Some(p) => read_latents(p, latent)?,
        None => {
            if req.n == 0 {
                return Err(Error::input("--n must be at least 1"));
            }
            let mut z = vec![0f32; req.n.checked_mul(latent).ok_or_else(|| Error::input("--n is too large"))?];
            rng::normals(rng::seed_words(req.seed), 1, 0, rng::PURPOSE_SAMPLES, &mut z);
            z
        }
    };
    let n = z.len() / latent;
    // The trainer needs a data set to build its training step; generation never reads it.
    let placeholder = Dataset::from_u8(cfg.batch_size, dim, vec![0; cfg.batch_size * dim])?;
    let mut trainer = crate::open_trainer(req.backend, cfg.clone(), Arc::new(placeholder))?;
    trainer.restore(&ckpt.snapshot)?;
    let values = to_data_scale(&cfg, &trainer.sample(&z)?);
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
        let k = n.min(64);
        let div = if is_u8 { 255.0 } else { 1.0 };
        let img: Vec<f32> = values[..k * dim].iter().map(|v| v / div).collect();
        images::write_image_grid_png(grid, &img, k, image.channels, image.height, image.width, 8)?;
    }
    Ok(Generated { n, dim, values })
}
