//! Training data: a validated array of samples, whatever file it came from ([`npy`], a
//! [`folder`] of PNG/JPEG images, the built-in digits in [`assets`], or a [`toy`] data set drawn
//! from the seed); [`source`] reads the flags that choose one and loads it.

pub mod assets;
pub mod folder;
pub mod labels;
pub mod npy;
pub mod source;
pub mod toy;

pub use npy::{
    load_labels, load_npy, load_npy_bytes, load_npy_with, save_npy_f32, save_npy_f32_as, save_npy_u8, save_npy_u8_as,
    MAX_CLASSES,
};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Values as stored: u8 stays u8 (the GPU reads bytes; scaled by 1/255 at gather time), floats become f32.
#[derive(Clone, Debug, PartialEq)]
pub enum DataValues {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

/// Where the channel axis of a 4-D image array sits: (N, C, H, W) or (N, H, W, C). `--layout`
/// settles shapes where both readings are possible, e.g. (N, 3, 32, 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// (N, C, H, W): channel planes, as PyTorch stores images.
    Nchw,
    /// (N, H, W, C): interleaved pixels, as image files, PIL and TensorFlow have them.
    Nhwc,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        }
    }
}

/// The geometry of image samples. Inside shadergan every image sample is held as channel planes
/// (NCHW): channel 0's `height x width` pixels row by row, then channel 1's, then channel 2's;
/// for one channel that is plain row-major. Data that came as (N, H, W, C) is converted once, at
/// load time. A convolutional model takes `channels` as its input channels; an MLP sees the
/// `channels * height * width` values of a sample as its features, in that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    pub fn gray(height: usize, width: usize) -> Self {
        ImageShape { channels: 1, height, width }
    }

    /// Values per sample: channels x height x width.
    pub fn values(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// "28x28 gray" or "64x64 RGB".
    pub fn describe(&self) -> String {
        let kind = match self.channels {
            1 => "gray".to_string(),
            3 => "RGB".to_string(),
            c => format!("{c}-channel"),
        };
        format!("{}x{} {kind}", self.height, self.width)
    }
}

#[derive(Clone, Debug)]
pub struct Dataset {
    /// Number of samples (first axis).
    pub n: usize,
    /// Features per sample = product of the other axes.
    pub dim: usize,
    /// The sample shape as in the source, e.g. [784], [28, 28], [1, 28, 28], [64, 64, 3]
    /// ((N, H, W, C) files and image folders) or [3, 64, 64]. The values need not be in this
    /// order: image samples are held as channel planes (see [`ImageShape`]).
    pub sample_shape: Vec<usize>,
    /// Row-major (N, dim), C order even if the file was Fortran order; image samples in NCHW
    /// order whatever the source's layout.
    pub values: DataValues,
    /// "uint8", "float32" or "float64" as in the file.
    pub dtype: String,
    /// Where the source had its channel axis (4-D arrays, image folders: NHWC); None when it had
    /// none ((N, D), (N, H, W)). `generate --out` writes samples back in this layout.
    pub layout: Option<Layout>,
    /// Image geometry: see [`Dataset::image`].
    image: Option<ImageShape>,
    /// The class of each sample, for a conditional run (`--conditional`; `labels`); None
    /// otherwise.
    pub classes: Option<labels::ClassLabels>,
}

impl Dataset {
    /// A dataset of `n` samples of `dim` finite f32 values; sample_shape [dim].
    pub fn from_f32(n: usize, dim: usize, values: Vec<f32>) -> Result<Self> {
        check_len(n, dim, values.len())?;
        check_finite(&values, dim, "data")?;
        Ok(Self::flat(n, dim, DataValues::F32(values), "float32"))
    }

    /// A dataset of `n` samples of `dim` bytes; sample_shape [dim].
    pub fn from_u8(n: usize, dim: usize, values: Vec<u8>) -> Result<Self> {
        check_len(n, dim, values.len())?;
        Ok(Self::flat(n, dim, DataValues::U8(values), "uint8"))
    }

    /// `n` images of `shape` as bytes, channel planes (NCHW), as an (N, C, H, W) file holds them.
    pub fn from_u8_images(n: usize, shape: ImageShape, values: Vec<u8>) -> Result<Self> {
        let sample_shape = vec![shape.channels, shape.height, shape.width];
        Self::images(n, shape, DataValues::U8(values), "uint8", sample_shape, Some(Layout::Nchw))
    }

    /// Flat samples: an image of one channel when `dim` is a square > 1 and the values lie in
    /// [0, 1] (MNIST as (N, 784)).
    fn flat(n: usize, dim: usize, values: DataValues, dtype: &str) -> Self {
        let mut d = Dataset {
            n,
            dim,
            sample_shape: vec![dim],
            values,
            dtype: dtype.into(),
            layout: None,
            image: None,
            classes: None,
        };
        let s = dim.isqrt();
        if s > 1 && s * s == dim && d.is_unit_range() {
            d.image = Some(ImageShape::gray(s, s));
        }
        d
    }

    /// Images of `shape` whose values are already channel planes (NCHW); `sample_shape` and
    /// `layout` describe the source.
    pub(crate) fn images(
        n: usize,
        shape: ImageShape,
        values: DataValues,
        dtype: &str,
        sample_shape: Vec<usize>,
        layout: Option<Layout>,
    ) -> Result<Self> {
        let len = match &values {
            DataValues::U8(v) => v.len(),
            DataValues::F32(v) => v.len(),
        };
        check_len(n, shape.values(), len)?;
        let dim = shape.values();
        Ok(Dataset { n, dim, sample_shape, values, dtype: dtype.into(), layout, image: Some(shape), classes: None })
    }

    /// A folder's images, (N, H, W, C) u8 as the loader returns them: their pixels are taken
    /// (leaving the file list and the rest) and converted to channel planes in place.
    pub fn from_folder(images: &mut folder::FolderImages) -> Result<Self> {
        let (n, height, width, channels) = (images.n, images.height, images.width, images.channels);
        let shape = ImageShape { channels, height, width };
        let mut pixels = std::mem::take(&mut images.pixels);
        nhwc_to_nchw(&mut pixels, shape);
        Self::images(n, shape, DataValues::U8(pixels), "uint8", vec![height, width, channels], Some(Layout::Nhwc))
    }

    /// The first `n` samples (all of them when there are fewer), with the same shape, dtype,
    /// layout, image geometry and classes.
    pub fn first(&self, n: usize) -> Dataset {
        let n = n.min(self.n);
        let values = match &self.values {
            DataValues::U8(v) => DataValues::U8(v[..n * self.dim].to_vec()),
            DataValues::F32(v) => DataValues::F32(v[..n * self.dim].to_vec()),
        };
        Dataset {
            n,
            dim: self.dim,
            sample_shape: self.sample_shape.clone(),
            values,
            dtype: self.dtype.clone(),
            layout: self.layout,
            image: self.image,
            classes: self
                .classes
                .as_ref()
                .map(|c| labels::ClassLabels { ids: c.ids[..n].to_vec(), names: c.names.clone() }),
        }
    }

    /// The samples at `rows`, in that order, with the same shape, dtype, layout, image geometry
    /// and classes (the per-class scores pick a class's images this way).
    pub fn select(&self, rows: &[usize]) -> Dataset {
        let pick = |v: &[u8]| -> Vec<u8> {
            rows.iter().flat_map(|&r| v[r * self.dim..][..self.dim].iter().copied()).collect()
        };
        let values = match &self.values {
            DataValues::U8(v) => DataValues::U8(pick(v)),
            DataValues::F32(v) => {
                DataValues::F32(rows.iter().flat_map(|&r| v[r * self.dim..][..self.dim].iter().copied()).collect())
            }
        };
        let classes = self
            .classes
            .as_ref()
            .map(|c| labels::ClassLabels { ids: rows.iter().map(|&r| c.ids[r]).collect(), names: c.names.clone() });
        Dataset {
            n: rows.len(),
            values,
            classes,
            sample_shape: self.sample_shape.clone(),
            dtype: self.dtype.clone(),
            ..*self
        }
    }

    /// The image geometry of the samples, or None when they are not images. Images are samples
    /// of shape (H, W), (C, H, W) or (H, W, C) with C = 1 or 3 (in the file or folder), or flat
    /// samples of a square size > 1 with values in [0, 1] (one channel). Their values are held as
    /// channel planes (NCHW, see [`ImageShape`]) whatever the source's layout.
    pub fn image(&self) -> Option<ImageShape> {
        self.image
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

    /// Bytes the data occupies (what would be uploaded to a GPU).
    pub fn byte_len(&self) -> usize {
        match &self.values {
            DataValues::U8(v) => v.len(),
            DataValues::F32(v) => v.len() * 4,
        }
    }

    /// Bytes of one sample as stored (what a GPU binding holds per row).
    pub fn row_bytes(&self) -> usize {
        match &self.values {
            DataValues::U8(_) => self.dim,
            DataValues::F32(_) => self.dim * 4,
        }
    }

    /// The sample shape as "28x28" or "64x64x3".
    pub fn shape_text(&self) -> String {
        self.sample_shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
    }
}

/// Reorders every sample of `values` from (H, W, C) to (C, H, W), in place (one sample of
/// scratch).
pub fn nhwc_to_nchw<T: Copy + Default>(values: &mut [T], shape: ImageShape) {
    let ImageShape { channels: c, height: h, width: w } = shape;
    if c <= 1 {
        return;
    }
    let mut scratch = vec![T::default(); c * h * w];
    for sample in values.chunks_exact_mut(c * h * w) {
        for (i, px) in sample.chunks_exact(c).enumerate() {
            for (k, &v) in px.iter().enumerate() {
                scratch[k * h * w + i] = v;
            }
        }
        sample.copy_from_slice(&scratch);
    }
}

/// The inverse of [`nhwc_to_nchw`]: every sample from (C, H, W) to (H, W, C), in place.
pub fn nchw_to_nhwc<T: Copy + Default>(values: &mut [T], shape: ImageShape) {
    let ImageShape { channels: c, height: h, width: w } = shape;
    if c <= 1 {
        return;
    }
    let mut scratch = vec![T::default(); c * h * w];
    for sample in values.chunks_exact_mut(c * h * w) {
        for (i, px) in scratch.chunks_exact_mut(c).enumerate() {
            for (k, v) in px.iter_mut().enumerate() {
                *v = sample[k * h * w + i];
            }
        }
        sample.copy_from_slice(&scratch);
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
