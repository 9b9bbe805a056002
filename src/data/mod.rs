//! Training data: a validated array of samples, whatever file it came from ([`npy`], a
//! [`folder`] of PNG/JPEG images, the built-in digits in [`assets`], or a [`toy`] data set drawn
//! from the seed).

pub mod assets;
pub mod folder;
pub mod npy;
pub mod toy;

pub use npy::{load_labels, load_npy, load_npy_bytes, save_npy_f32, save_npy_u8, MAX_CLASSES};

use crate::error::{Error, Result};

/// Values as stored: u8 stays u8 (the GPU reads bytes; scaled by 1/255 at gather time), floats become f32.
#[derive(Clone, Debug, PartialEq)]
pub enum DataValues {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

#[derive(Clone, Debug)]
pub struct Dataset {
    /// Number of samples (first axis).
    pub n: usize,
    /// Features per sample = product of the other axes.
    pub dim: usize,
    /// E.g. [784], [28, 28] or [1, 28, 28] as in the file.
    pub sample_shape: Vec<usize>,
    /// Row-major (N, dim), C order even if the file was Fortran order.
    pub values: DataValues,
    /// "uint8", "float32" or "float64" as in the file.
    pub dtype: String,
}

impl Dataset {
    /// A dataset of `n` samples of `dim` finite f32 values; sample_shape [dim].
    pub fn from_f32(n: usize, dim: usize, values: Vec<f32>) -> Result<Self> {
        check_len(n, dim, values.len())?;
        check_finite(&values, dim, "data")?;
        Ok(Self { n, dim, sample_shape: vec![dim], values: DataValues::F32(values), dtype: "float32".into() })
    }

    /// A dataset of `n` samples of `dim` bytes; sample_shape [dim].
    pub fn from_u8(n: usize, dim: usize, values: Vec<u8>) -> Result<Self> {
        check_len(n, dim, values.len())?;
        Ok(Self { n, dim, sample_shape: vec![dim], values: DataValues::U8(values), dtype: "uint8".into() })
    }

    /// Value of sample `row`, feature `col`, after u8 scaling (x/255), as f32.
    /// Panics if out of range (a caller bug, not a data problem).
    pub fn get(&self, row: usize, col: usize) -> f32 {
        assert!(col < self.dim, "feature {col} out of range (dim {})", self.dim);
        let i = row * self.dim + col;
        match &self.values {
            DataValues::U8(v) => f32::from(v[i]) / 255.0,
            DataValues::F32(v) => v[i],
        }
    }

    /// (min, max) over all values after u8 scaling.
    pub fn value_range(&self) -> (f32, f32) {
        let fold = |(lo, hi): (f32, f32), x: f32| (lo.min(x), hi.max(x));
        let init = (f32::INFINITY, f32::NEG_INFINITY);
        match &self.values {
            DataValues::U8(v) => match (v.iter().min(), v.iter().max()) {
                (Some(&lo), Some(&hi)) => (f32::from(lo) / 255.0, f32::from(hi) / 255.0),
                _ => init,
            },
            DataValues::F32(v) => v.iter().copied().fold(init, fold),
        }
    }

    /// True if every value (after u8 scaling) lies in [0, 1]: image-like data.
    pub fn is_unit_range(&self) -> bool {
        let (lo, hi) = self.value_range();
        lo >= 0.0 && hi <= 1.0
    }

    /// (height, width) if the samples are images: sample_shape (H, W) or (1, H, W), or a flat
    /// dim that is a perfect square > 1 with unit range. None otherwise.
    pub fn image_hw(&self) -> Option<(usize, usize)> {
        match self.sample_shape.as_slice() {
            [h, w] | [1, h, w] => Some((*h, *w)),
            [d] => {
                let s = d.isqrt();
                (s > 1 && s * s == *d && self.is_unit_range()).then_some((s, s))
            }
            _ => None,
        }
    }

    /// Bytes the data occupies (what would be uploaded to a GPU).
    pub fn byte_len(&self) -> usize {
        match &self.values {
            DataValues::U8(v) => v.len(),
            DataValues::F32(v) => v.len() * 4,
        }
    }
}

fn check_len(n: usize, dim: usize, len: usize) -> Result<()> {
    if n == 0 || dim == 0 || n.checked_mul(dim) != Some(len) {
        crate::bail_input!("data: {len} values do not form {n} samples of {dim} features (both must be > 0)");
    }
    Ok(())
}

/// Error on the first NaN or Inf, naming its sample and feature.
pub(crate) fn check_finite(values: &[f32], dim: usize, name: &str) -> Result<()> {
    match values.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(bad_value(name, i, dim, values[i], "")),
        None => Ok(()),
    }
}

pub(crate) fn bad_value(name: &str, i: usize, dim: usize, x: impl std::fmt::LowerExp, why: &str) -> Error {
    let (row, col) = (i / dim.max(1), i % dim.max(1));
    Error::input(format!("{name}: value at sample {row}, feature {col} is {x:e}{why}"))
}
