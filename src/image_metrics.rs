//! How good an image GAN's samples are, judged by a digit classifier (see `classifier`):
//! - class coverage: classes predicted for at least `HIT_SHARE` of the samples, of all classes;
//! - class-KL: KL(predicted-class histogram || the classifier's training-label histogram);
//! - classifier score (Inception-score style): exp(E_x KL(p(y|x) || p(y))), p(y) = E_x p(y|x);
//! - Fréchet distance between Gaussians fitted to the classifier's penultimate features of
//!   generated and of real images, |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2),
//!   in f64 with symmetric eigendecompositions, beside the same distance between two disjoint sets
//!   of real images (the floor a perfect generator would reach at that sample size).

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use serde::Serialize;

use crate::classifier::{argmax, rows_f32, Classifier};
use crate::data::Dataset;
use crate::error::Result;
use crate::rng;
use crate::session::{fixed_latents_for, to_data_scale};
use crate::trainer::Trainer;

/// Generated and real images scored per evaluation (fewer real ones when the data set is smaller).
pub const EVAL_SAMPLES: usize = 10_000;
/// A class is covered when at least this share of 1 / classes of the samples fall in it (1% of
/// the samples for 10 classes): a few stray predictions do not count as covering a class.
pub const HIT_SHARE: f64 = 0.1;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImageMetrics {
    pub samples: usize,
    pub classes_hit: usize,
    pub classes: usize,
    pub class_kl: f64,
    pub classifier_score: f64,
    pub frechet_distance: f64,
    /// Fréchet distance between two disjoint real sets of `real_floor_samples` images each.
    pub real_floor: f64,
    pub real_samples: usize,
    pub real_floor_samples: usize,
    /// Share of the samples predicted as each class.
    pub class_shares: Vec<f64>,
}

impl ImageMetrics {
    pub fn line(&self) -> String {
        format!(
            "classes {}/{}, class-KL {:.4}, classifier score {:.2}, Fréchet distance {:.2} (real-vs-real floor {:.2})",
            self.classes_hit,
            self.classes,
            self.class_kl,
            self.classifier_score,
            self.frechet_distance,
            self.real_floor
        )
    }
}

/// Mean and covariance of a set of feature vectors, in f64.
#[derive(Clone, Debug)]
pub struct Gaussian {
    pub mean: DVector<f64>,
    pub cov: DMatrix<f64>,
}

impl Gaussian {
    /// Fits `rows` vectors of `dim` values (row-major); the covariance divides by rows - 1.
    pub fn fit(features: &[f32], rows: usize, dim: usize) -> Self {
        let x: Vec<f64> = features[..rows * dim].iter().map(|&v| v as f64).collect();
        let mut mean = vec![0f64; dim];
        for row in x.chunks(dim) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
        let centered: Vec<f64> = x.chunks(dim).flat_map(|row| row.iter().zip(&mean).map(|(v, m)| v - m)).collect();
        // cov = X^T X / (rows - 1) with X (rows, dim) centered: one dgemm.
        let mut cov = vec![0f64; dim * dim];
        if rows > 0 && dim > 0 {
            // SAFETY: X^T is (dim, rows) read through strides (1, dim) of `centered` (rows * dim
            // values), X is (rows, dim) with strides (dim, 1), and cov is (dim, dim) row-major.
            unsafe {
                matrixmultiply::dgemm(
                    dim,
                    rows,
                    dim,
                    1.0 / (rows.max(2) - 1) as f64,
                    centered.as_ptr(),
                    1,
                    dim as isize,
                    centered.as_ptr(),
                    dim as isize,
                    1,
                    0.0,
                    cov.as_mut_ptr(),
                    dim as isize,
                    1,
                );
            }
        }
        Gaussian { mean: DVector::from_vec(mean), cov: DMatrix::from_row_slice(dim, dim, &cov) }
    }
}

/// The symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues
/// from rounding are clamped to 0).
fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let e = SymmetricEigen::new(m.clone());
    let d = DMatrix::from_diagonal(&e.eigenvalues.map(|l| l.max(0.0).sqrt()));
    &e.eigenvectors * d * e.eigenvectors.transpose()
}

/// Fréchet distance between two Gaussians. tr((S_a S_b)^1/2) is taken as the sum of the square
/// roots of the eigenvalues of the symmetric S_a^1/2 S_b S_a^1/2, which has the same eigenvalues
/// as S_a S_b, so no non-symmetric square root is needed.
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    let diff = &a.mean - &b.mean;
    let s = sqrt_psd(&a.cov);
    let mut m = &s * &b.cov * &s;
    // Symmetrize away rounding so the symmetric solver sees a symmetric matrix.
    m = (&m + m.transpose()) * 0.5;
    let cross: f64 = SymmetricEigen::new(m).eigenvalues.iter().map(|l| l.max(0.0).sqrt()).sum();
    (diff.dot(&diff) + a.cov.trace() + b.cov.trace() - 2.0 * cross).max(0.0)
}

/// Class coverage, class-KL, score and class shares from softmax outputs (rows, classes).
pub fn class_metrics(probs: &[f64], classes: usize, label_shares: &[f64]) -> (usize, f64, f64, Vec<f64>) {
    let rows = probs.len() / classes.max(1);
    let mut counts = vec![0usize; classes];
    let mut marginal = vec![0f64; classes];
    for p in probs.chunks(classes) {
        counts[argmax(p)] += 1;
        for (m, v) in marginal.iter_mut().zip(p) {
            *m += v;
        }
    }
    let n = rows.max(1) as f64;
    let shares: Vec<f64> = counts.iter().map(|&c| c as f64 / n).collect();
    marginal.iter_mut().for_each(|m| *m /= n);
    let hit = shares.iter().filter(|&&s| s >= HIT_SHARE / classes as f64).count();
    let kl = |p: &[f64], q: &[f64]| -> f64 {
        p.iter().zip(q).filter(|(&a, _)| a > 0.0).map(|(&a, &b)| a * (a / b.max(1e-300)).ln()).sum()
    };
    let class_kl = kl(&shares, label_shares);
    let mean_kl: f64 = probs.chunks(classes).map(|p| kl(p, &marginal)).sum::<f64>() / n;
    (hit, class_kl, mean_kl.exp(), shares)
}

/// The real side of the comparison, computed once per run: the real images' feature Gaussian and
/// the real-vs-real floor.
#[derive(Clone, Debug)]
pub struct RealReference {
    pub gaussian: Gaussian,
    pub samples: usize,
    pub floor: f64,
    pub floor_samples: usize,
}

/// Fits the reference on up to `EVAL_SAMPLES` real images drawn in a seeded order. The floor
/// compares that set with the next `EVAL_SAMPLES` images when the data set has them, and
/// otherwise two halves of the data set (a smaller sample, so a higher floor).
pub fn real_reference(clf: &Classifier, data: &Dataset, seed: u64) -> RealReference {
    let n = data.n;
    let perm = rng::EpochPermutation::new(seed, rng::PURPOSE_EVAL, n as u32);
    let order = |range: std::ops::Range<usize>| range.map(|q| perm.apply(q as u32) as usize);
    let fit = |range: std::ops::Range<usize>| {
        let rows = range.len();
        let s = clf.score(&rows_f32(data, order(range)), rows);
        Gaussian::fit(&s.features, rows, s.feature_dim)
    };
    let samples = EVAL_SAMPLES.min(n);
    let gaussian = fit(0..samples);
    let (floor, floor_samples) = if n >= 2 * samples {
        (frechet_distance(&gaussian, &fit(samples..2 * samples)), samples)
    } else {
        let h = n / 2;
        (frechet_distance(&fit(0..h), &fit(h..2 * h)), h)
    };
    RealReference { gaussian, samples, floor, floor_samples }
}

/// Scores `EVAL_SAMPLES` images from the trainer's G (fixed latents of the run's seed).
pub fn evaluate(trainer: &mut dyn Trainer, clf: &Classifier, reference: &RealReference) -> Result<ImageMetrics> {
    let cfg = trainer.config().clone();
    let z = fixed_latents_for(&cfg, EVAL_SAMPLES, rng::PURPOSE_EVAL);
    let div = if cfg.data_u8 { 255.0 } else { 1.0 };
    let images: Vec<f32> = to_data_scale(&cfg, &trainer.sample(&z)?).iter().map(|v| v / div).collect();
    Ok(score_images(clf, &images, EVAL_SAMPLES, reference))
}

/// The metrics of `rows` images in the data's units.
pub fn score_images(clf: &Classifier, images: &[f32], rows: usize, reference: &RealReference) -> ImageMetrics {
    let s = clf.score(images, rows);
    let classes = clf.spec.classes;
    let (classes_hit, class_kl, classifier_score, class_shares) =
        class_metrics(&s.probs, classes, &clf.spec.label_shares);
    let fake = Gaussian::fit(&s.features, rows, s.feature_dim);
    ImageMetrics {
        samples: rows,
        classes_hit,
        classes,
        class_kl,
        classifier_score,
        frechet_distance: frechet_distance(&fake, &reference.gaussian),
        real_floor: reference.floor,
        real_samples: reference.samples,
        real_floor_samples: reference.floor_samples,
        class_shares,
    }
}
