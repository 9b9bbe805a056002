//! The sliced Wasserstein distance (SWD) of ProGAN (Karras et al. 2018, `metrics/
//! sliced_wasserstein.py` in tkarras/progressive_growing_of_gans): a colour metric that needs no
//! pretrained network, for images of any size from 16x16 up, gray or RGB.
//!
//! - Each image's Laplacian pyramid (the 5x5 binomial filter [1 4 6 4 1]^2 / 256, borders as
//!   scipy's `mode='mirror'`; down: filter, keep every 2nd pixel; up: zeros between the pixels,
//!   filter x 4), levels from the image size down while the size is at least 16 (64: 64, 32, 16;
//!   28: 28 alone); the last level is the Gaussian, the others Laplacian differences; in f32.
//! - From each level of each image, `NHOODS_PER_IMAGE` 7x7 neighbourhoods (centres at least 3 px
//!   from the border): descriptors of C x 7 x 7 values.
//! - Normalised per channel. **The one deliberate deviation from ProGAN**: it normalises the real
//!   and the generated descriptors each by their own mean and std, which makes the metric blind to
//!   a global per-channel colour shift or contrast change (a tinted or washed-out generator scores
//!   like a perfect one). Here both sets are normalised by the real set's per-channel mean and std.
//! - `DIR_REPEATS` x `DIRS_PER_REPEAT` random unit directions (Gaussian, normalised): both sets
//!   projected, each direction's projections sorted, the mean |difference| over descriptors and
//!   directions, the mean over repeats, x 1e3; per level and the mean of the levels.
//!
//! `N` = min(`MAX_SAMPLES`, floor(real images / 2)) images on each side. The real side (its
//! normalisation, sorted projections and the real-vs-real floor: the first N real images of the
//! seeded order against the next N) is computed once per run ([`Reference`]). All randomness
//! (the real images' order, the neighbourhoods, the directions) comes from the run's seed, so a
//! score is deterministic; slot i of every set (real, generated, the floor's second half) reads
//! the same neighbourhood positions, so identical sets score exactly 0.
//!
//! Speed: the projections are the crate's sgemm, the sorts an LSD radix sort on order-preserving
//! u32 keys (it orders exactly as `f32::total_cmp`), both on the CPU pool; every sum has a fixed
//! order, so the bits do not depend on the thread count. The reference holds the real sorted
//! projections: N x 128 x 512 f32 per level (512 MiB per level at N = 2048).

pub mod by_class;
mod pyramid;
mod radix;

use std::sync::Mutex;

use serde::Serialize;

use self::pyramid::plane_pyramid;
use self::radix::{key_value, with_sorted_keys};
use crate::data::{Dataset, ImageShape};
use crate::error::{Error, Result};
use crate::ir::pool;
use crate::kernels::gemm::{self, BSrc, Epilogue, Mat, Out};
use crate::programs::classifier::rows_f32;
use crate::rng;

/// Most images per side (fewer when the data set has fewer than twice as many).
pub const MAX_SAMPLES: usize = 2048;
/// The smallest pyramid level (ProGAN's 16).
pub const MIN_SIZE: usize = 16;
pub const NHOODS_PER_IMAGE: usize = 128;
/// Neighbourhoods are NHOOD x NHOOD pixels.
pub const NHOOD: usize = 7;
const HALF: usize = NHOOD / 2;
pub const DIR_REPEATS: usize = 4;
pub const DIRS_PER_REPEAT: usize = 128;
/// Philox counter words that keep the SWD's draws apart from the evaluation latents (which use
/// (i, 0, 0, PURPOSE_EVAL)).
const TAG_POSITIONS: u32 = 0x5357_4401;
const TAG_DIRECTIONS: u32 = 0x5357_4402;

/// The pyramid levels' sizes (height, width) for images of `shape`: empty when it is smaller
/// than `MIN_SIZE`. Each level is the previous one's every 2nd pixel, so an odd side rounds up.
pub fn level_sizes(shape: ImageShape) -> Vec<(usize, usize)> {
    let (mut h, mut w) = (shape.height, shape.width);
    let mut sizes = vec![];
    while h.min(w) >= MIN_SIZE {
        sizes.push((h, w));
        (h, w) = (h.div_ceil(2), w.div_ceil(2));
    }
    sizes
}

/// A level's name: "64" for 64x64, "64x48" otherwise (metrics.csv columns, eval.json).
pub fn level_name((h, w): (usize, usize)) -> String {
    if h == w {
        h.to_string()
    } else {
        format!("{h}x{w}")
    }
}

/// Images per side for a data set of `n_real` images: min(`MAX_SAMPLES`, n_real / 2).
pub fn sample_count(n_real: usize) -> usize {
    MAX_SAMPLES.min(n_real / 2)
}

/// Why images of `shape` (`n` of them) cannot be scored, or None when they can.
pub fn unfit(shape: ImageShape, n: usize) -> Option<String> {
    if shape.height.min(shape.width) < MIN_SIZE {
        return Some(format!(
            "the sliced Wasserstein distance needs images of at least {MIN_SIZE}x{MIN_SIZE}; these are {}",
            shape.describe()
        ));
    }
    (sample_count(n) == 0)
        .then(|| format!("the sliced Wasserstein distance needs at least 2 real images; there are {n}"))
}

/// The distance at each level (x 1e3) and their mean.
#[derive(Clone, Debug, PartialEq)]
pub struct Distances {
    pub per_level: Vec<f64>,
    pub mean: f64,
}

impl Distances {
    fn of(per_level: Vec<f64>) -> Self {
        let mean = per_level.iter().sum::<f64>() / per_level.len().max(1) as f64;
        Distances { per_level, mean }
    }
}

/// What eval.json records of the SWD.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SwdMetrics {
    /// The mean over the levels, x 1e3.
    pub swd: f64,
    pub swd_per_level: Vec<f64>,
    /// The levels' sizes, as `level_name` writes them, largest first.
    pub swd_levels: Vec<String>,
    /// The same distance between two disjoint sets of `swd_samples` real images.
    pub swd_real_floor: f64,
    pub swd_real_floor_per_level: Vec<f64>,
    /// Images on each side.
    pub swd_samples: usize,
}

impl SwdMetrics {
    pub fn line(&self) -> String {
        let levels: Vec<String> =
            self.swd_levels.iter().zip(&self.swd_per_level).map(|(l, d)| format!("{l}: {d:.2}")).collect();
        format!("SWD {:.2} [{}] (real-vs-real floor {:.2})", self.swd, levels.join(", "), self.swd_real_floor)
    }
}

/// One level of the real side: its per-channel normalisation and sorted projections.
struct LevelReference {
    size: (usize, usize),
    stats: ChannelStats,
    /// `DIR_REPEATS * DIRS_PER_REPEAT` rows (repeat-major) of `N * NHOODS_PER_IMAGE` values.
    sorted: Vec<Vec<f32>>,
}

/// The real side of the comparison, computed once per run.
pub struct Reference {
    shape: ImageShape,
    key: [u32; 2],
    samples: usize,
    levels: Vec<LevelReference>,
    floor: Distances,
}

impl Reference {
    /// The reference for `samples` images a side: the first `samples` real images of the seeded
    /// order (`rng::EpochPermutation` of the run's seed for `PURPOSE_EVAL`, the order the
    /// classifier metrics read), and the floor against the next `samples`.
    pub fn new(data: &Dataset, seed: u64, samples: usize) -> Result<Self> {
        let shape = data.image().ok_or_else(|| Error::input("the sliced Wasserstein distance scores images"))?;
        if let Some(why) = unfit(shape, data.n) {
            return Err(Error::input(why));
        }
        if samples == 0 || 2 * samples > data.n {
            return Err(Error::input(format!(
                "{samples} images a side need {} real images; there are {}",
                2 * samples,
                data.n
            )));
        }
        let perm = rng::EpochPermutation::new(seed, rng::PURPOSE_EVAL, data.n as u32);
        let reals = |r: std::ops::Range<usize>| rows_f32(data, r.map(|q| perm.apply(q as u32) as usize));
        let key = rng::seed_words(seed);
        let sizes = level_sizes(shape);
        let pyramid_a = pyramid(&reals(0..samples), samples, shape, &sizes);
        let pyramid_b = pyramid(&reals(samples..2 * samples), samples, shape, &sizes);
        let mut levels = vec![];
        let mut floor = vec![];
        for (l, (a, b)) in pyramid_a.into_iter().zip(pyramid_b).enumerate() {
            let set = Set { n: samples, channels: shape.channels, size: sizes[l], level: l as u32, key };
            let mut desc = set.descriptors(&a, None);
            let stats = ChannelStats::of(&desc, shape.channels);
            stats.normalise(&mut desc);
            let sorted = sorted_projections(&desc, set.dim(), key, l as u32);
            drop(desc);
            let desc_b = set.descriptors(&b, Some(&stats));
            floor.push(distance(&sorted, &desc_b, set.dim(), key, l as u32));
            levels.push(LevelReference { size: sizes[l], stats, sorted });
        }
        Ok(Reference { shape, key, samples, levels, floor: Distances::of(floor) })
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    pub fn floor(&self) -> &Distances {
        &self.floor
    }

    /// The distance of `images` (`samples()` images as channel planes, in [0, 1] like the real
    /// data) from the real ones.
    pub fn distances(&self, images: &[f32]) -> Distances {
        let n = self.samples;
        assert_eq!(images.len(), n * self.shape.values(), "swd: {n} images of {}", self.shape.describe());
        let sizes: Vec<_> = self.levels.iter().map(|l| l.size).collect();
        let levels = pyramid(images, n, self.shape, &sizes);
        let per_level = levels
            .into_iter()
            .zip(&self.levels)
            .enumerate()
            .map(|(l, (level, r))| {
                let set = Set { n, channels: self.shape.channels, size: r.size, level: l as u32, key: self.key };
                let desc = set.descriptors(&level, Some(&r.stats));
                distance(&r.sorted, &desc, set.dim(), self.key, l as u32)
            })
            .collect();
        Distances::of(per_level)
    }

    /// `distances` with the floor and the sample count, as eval.json records them.
    pub fn metrics(&self, images: &[f32]) -> SwdMetrics {
        let d = self.distances(images);
        SwdMetrics {
            swd: d.mean,
            swd_per_level: d.per_level,
            swd_levels: self.levels.iter().map(|l| level_name(l.size)).collect(),
            swd_real_floor: self.floor.mean,
            swd_real_floor_per_level: self.floor.per_level.clone(),
            swd_samples: self.samples,
        }
    }
}

/// `f(i)` for every i < tasks on the CPU pool; the results in order.
fn par_map<T: Send>(tasks: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let slots: Vec<Mutex<Option<T>>> = (0..tasks).map(|_| Mutex::new(None)).collect();
    pool::global().run(tasks, &|i| *slots[i].lock().expect("a task panicked") = Some(f(i)));
    slots.into_iter().map(|s| s.into_inner().expect("a task panicked").expect("every task ran")).collect()
}

/// Splits `len` items into tasks of `chunk` (by size alone, never by the thread count).
fn ranges(len: usize, chunk: usize) -> Vec<std::ops::Range<usize>> {
    (0..len.div_ceil(chunk)).map(|t| t * chunk..((t + 1) * chunk).min(len)).collect()
}

/// `f(t, chunk t)` for the chunks of `chunk` values of `out`, on the CPU pool.
fn par_fill(out: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let parts: Vec<Mutex<&mut [f32]>> = out.chunks_mut(chunk.max(1)).map(Mutex::new).collect();
    pool::global().run(parts.len(), &|t| f(t, &mut parts[t].lock().expect("a task panicked")));
}

/// The pyramids of `n` images (channel planes): per level, n x C planes of that level's size.
fn pyramid(images: &[f32], n: usize, shape: ImageShape, sizes: &[(usize, usize)]) -> Vec<Vec<f32>> {
    const PLANES: usize = 16;
    let plane = shape.height * shape.width;
    let mut levels: Vec<Vec<f32>> = sizes.iter().map(|(h, w)| vec![0f32; n * shape.channels * h * w]).collect();
    let parts: Vec<Vec<Mutex<&mut [f32]>>> = levels
        .iter_mut()
        .zip(sizes)
        .map(|(l, (h, w))| l.chunks_mut(PLANES * h * w).map(Mutex::new).collect())
        .collect();
    pool::global().run(parts[0].len(), &|t| {
        let mut outs: Vec<_> = parts.iter().map(|p| p[t].lock().expect("a task panicked")).collect();
        let planes = images[t * PLANES * plane..].chunks(plane).take(outs[0].len() / plane);
        for (i, src) in planes.enumerate() {
            for ((out, level), (h, w)) in outs.iter_mut().zip(plane_pyramid(src, sizes)).zip(sizes) {
                out[i * h * w..(i + 1) * h * w].copy_from_slice(&level);
            }
        }
    });
    drop(parts);
    levels
}

// ---- descriptors ----

/// One set of images at one pyramid level: where its neighbourhoods are.
struct Set {
    n: usize,
    channels: usize,
    size: (usize, usize),
    level: u32,
    key: [u32; 2],
}

impl Set {
    /// Values per descriptor: C x 7 x 7.
    fn dim(&self) -> usize {
        self.channels * NHOOD * NHOOD
    }

    /// Neighbourhood j of image slot i: its centre (y, x), in [3, h - 3) x [3, w - 3), the same
    /// for every set at this level.
    fn centre(&self, i: usize, j: usize) -> (usize, usize) {
        let (h, w) = self.size;
        let words = rng::philox4x32(
            [(i * NHOODS_PER_IMAGE + j) as u32, TAG_POSITIONS, self.level, rng::PURPOSE_EVAL],
            self.key,
        );
        (HALF + words[0] as usize % (h - 2 * HALF), HALF + words[1] as usize % (w - 2 * HALF))
    }

    /// The descriptors of the level's planes (n x C planes): row i * 128 + j holds neighbourhood
    /// j of image i, as (channel, dy, dx); normalised by `stats` when given.
    fn descriptors(&self, level: &[f32], stats: Option<&ChannelStats>) -> Vec<f32> {
        let (h, w) = self.size;
        let (c, dim) = (self.channels, self.dim());
        assert_eq!(level.len(), self.n * c * h * w);
        const IMAGES: usize = 16;
        let mut desc = vec![0f32; self.n * NHOODS_PER_IMAGE * dim];
        par_fill(&mut desc, IMAGES * NHOODS_PER_IMAGE * dim, |t, out| {
            let images = out.len() / (NHOODS_PER_IMAGE * dim);
            let mut rows = out.chunks_exact_mut(dim);
            for i in t * IMAGES..t * IMAGES + images {
                for j in 0..NHOODS_PER_IMAGE {
                    let (cy, cx) = self.centre(i, j);
                    let row = rows.next().expect("sized for the chunk's images");
                    for (ch, block) in row.chunks_exact_mut(NHOOD * NHOOD).enumerate() {
                        let plane = &level[(i * c + ch) * h * w..][..h * w];
                        for (dy, line) in block.chunks_exact_mut(NHOOD).enumerate() {
                            let y = cy + dy - HALF;
                            let src = &plane[y * w + cx - HALF..][..NHOOD];
                            match stats {
                                Some(s) => line.iter_mut().zip(src).for_each(|(o, &v)| *o = s.apply(ch, v)),
                                None => line.copy_from_slice(src),
                            }
                        }
                    }
                }
            }
        });
        desc
    }
}

/// Per-channel mean and std (population) of descriptors, over all rows and the 7x7 positions.
#[derive(Clone, Debug)]
struct ChannelStats {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl ChannelStats {
    fn of(desc: &[f32], channels: usize) -> Self {
        let dim = channels * NHOOD * NHOOD;
        let rows = desc.len() / dim;
        let count = (rows * NHOOD * NHOOD).max(1) as f64;
        // Per chunk of rows, per channel: sums in a fixed order, then added in chunk order.
        let chunks = ranges(rows, 4096);
        let sums = |f: &(dyn Fn(usize, f32) -> f64 + Sync)| -> Vec<f64> {
            let parts = par_map(chunks.len(), |t| {
                let mut s = vec![0f64; channels];
                for row in desc[chunks[t].start * dim..chunks[t].end * dim].chunks(dim) {
                    for (ch, vals) in row.chunks(NHOOD * NHOOD).enumerate() {
                        s[ch] += vals.iter().map(|&v| f(ch, v)).sum::<f64>();
                    }
                }
                s
            });
            (0..channels).map(|ch| parts.iter().map(|p| p[ch]).sum::<f64>() / count).collect()
        };
        let mean = sums(&|_, v| v as f64);
        let var = sums(&|ch, v| (v as f64 - mean[ch]).powi(2));
        // A constant channel (std 0) is left unscaled, where ProGAN would divide by zero.
        let std = var.iter().map(|&v| if v.sqrt() > 1e-12 { v.sqrt() as f32 } else { 1.0 }).collect();
        ChannelStats { mean: mean.iter().map(|&m| m as f32).collect(), std }
    }

    /// A value of channel `ch`, normalised.
    #[inline]
    fn apply(&self, ch: usize, v: f32) -> f32 {
        (v - self.mean[ch]) / self.std[ch]
    }

    /// Normalises descriptors (rows of C x 7 x 7) in place.
    fn normalise(&self, desc: &mut [f32]) {
        let per = NHOOD * NHOOD;
        let dim = self.mean.len() * per;
        par_fill(desc, 4096 * dim, |_, part| {
            for row in part.chunks_mut(dim) {
                for (ch, vals) in row.chunks_mut(per).enumerate() {
                    vals.iter_mut().for_each(|v| *v = self.apply(ch, *v));
                }
            }
        });
    }
}

// ---- projections, sorting, distance ----

/// `DIRS_PER_REPEAT` unit directions of `dim` values (row-major), repeat `repeat` of `level`:
/// Gaussian, each normalised to length 1.
fn directions(key: [u32; 2], level: u32, repeat: usize, dim: usize) -> Vec<f32> {
    let mut d = vec![0f32; DIRS_PER_REPEAT * dim];
    rng::normals(key, TAG_DIRECTIONS, level * DIR_REPEATS as u32 + repeat as u32, rng::PURPOSE_EVAL, &mut d);
    for row in d.chunks_mut(dim) {
        let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        row.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
    }
    d
}

/// The descriptors (rows x dim) projected on `dirs` into `out`: (DIRS_PER_REPEAT, rows), one row
/// a direction.
fn project(desc: &[f32], dim: usize, dirs: &[f32], out: &mut Vec<f32>) {
    let rows = desc.len() / dim;
    out.resize(DIRS_PER_REPEAT * rows, 0.0);
    let a = Mat::new(dirs, 0, dim, 1);
    // B (dim x rows) is the descriptors read transposed; the sgemm packs its panels.
    let b = BSrc::Mat(Mat::new(desc, 0, 1, dim));
    let o = Out { data: out, rs: rows, col_off: None };
    gemm::gemm(&pool::global(), DIRS_PER_REPEAT, rows, dim, a, b, o, Epilogue::PLAIN);
}

/// The real side's projections on every direction of `level`, each sorted.
fn sorted_projections(desc: &[f32], dim: usize, key: [u32; 2], level: u32) -> Vec<Vec<f32>> {
    let rows = desc.len() / dim;
    let mut sorted = Vec::with_capacity(DIR_REPEATS * DIRS_PER_REPEAT);
    let mut proj = vec![];
    for r in 0..DIR_REPEATS {
        project(desc, dim, &directions(key, level, r, dim), &mut proj);
        sorted.extend(par_map(DIRS_PER_REPEAT, |d| {
            with_sorted_keys(&proj[d * rows..(d + 1) * rows], |keys| keys.iter().map(|&k| key_value(k)).collect())
        }));
    }
    sorted
}

/// The sliced Wasserstein distance (x 1e3) of descriptors from the sorted projections of the
/// real ones at `level`: per direction the mean |difference| of the sorted projections, the mean
/// over directions and repeats.
fn distance(sorted: &[Vec<f32>], desc: &[f32], dim: usize, key: [u32; 2], level: u32) -> f64 {
    let rows = desc.len() / dim;
    let mut total = 0f64;
    let mut proj = vec![];
    for r in 0..DIR_REPEATS {
        project(desc, dim, &directions(key, level, r, dim), &mut proj);
        let sums = par_map(DIRS_PER_REPEAT, |d| {
            let real = &sorted[r * DIRS_PER_REPEAT + d];
            with_sorted_keys(&proj[d * rows..(d + 1) * rows], |keys| {
                keys.iter().zip(real).map(|(&k, &b)| (key_value(k) as f64 - b as f64).abs()).sum::<f64>()
            })
        });
        total += sums.iter().sum::<f64>() / (rows * DIRS_PER_REPEAT) as f64;
    }
    total / DIR_REPEATS as f64 * 1e3
}

#[cfg(test)]
mod tests;
