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

use super::conditional::{self, ClassReference, ConditionalMetrics};
use crate::data::Dataset;
use crate::programs::classifier::{argmax, rows_f32, Classifier};
use crate::rng;

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
/// the real-vs-real floor; for labelled data (a conditional run) the same per class.
#[derive(Clone, Debug)]
pub struct RealReference {
    pub gaussian: Gaussian,
    pub samples: usize,
    pub floor: f64,
    pub floor_samples: usize,
    pub classes: Option<ClassReference>,
}

/// A set of real images scored: their features (rows of `dim`) and, for labelled data, classes.
struct Scored {
    features: Vec<f32>,
    dim: usize,
    labels: Vec<usize>,
}

impl Scored {
    fn set(&self) -> (&[f32], &[usize]) {
        (&self.features, &self.labels)
    }
}

/// Fits the reference on up to `EVAL_SAMPLES` real images drawn in a seeded order. The floor
/// compares that set with the next `EVAL_SAMPLES` images when the data set has them, and
/// otherwise two halves of the data set (a smaller sample, so a higher floor). Labelled data
/// (`Dataset::classes`) gets the same per class ([`ClassReference`]).
pub fn real_reference(clf: &Classifier, data: &Dataset, seed: u64) -> RealReference {
    let n = data.n;
    let perm = rng::EpochPermutation::new(seed, rng::PURPOSE_EVAL, n as u32);
    let ids = data.classes.as_ref().map(|c| &c.ids);
    let scored = |range: std::ops::Range<usize>| {
        let rows: Vec<usize> = range.map(|q| perm.apply(q as u32) as usize).collect();
        let s = clf.score(&rows_f32(data, rows.iter().copied()), rows.len());
        let labels = ids.map_or(vec![], |ids| rows.iter().map(|&r| ids[r] as usize).collect());
        Scored { features: s.features, dim: s.feature_dim, labels }
    };
    let fit = |s: &Scored| Gaussian::fit(&s.features, s.features.len() / s.dim.max(1), s.dim);
    let samples = EVAL_SAMPLES.min(n);
    let main = scored(0..samples);
    let gaussian = fit(&main);
    let (first, second, floor_samples) = if n >= 2 * samples {
        (None, scored(samples..2 * samples), samples)
    } else {
        let h = n / 2;
        (Some(scored(0..h)), scored(h..2 * h), h)
    };
    let floor = match &first {
        None => frechet_distance(&gaussian, &fit(&second)),
        Some(a) => frechet_distance(&fit(a), &fit(&second)),
    };
    let a = first.as_ref().unwrap_or(&main);
    let classes =
        data.classes.as_ref().map(|c| ClassReference::new(main.set(), a.set(), second.set(), main.dim, c.classes()));
    RealReference { gaussian, samples, floor, floor_samples, classes }
}

/// The metrics of `rows` images in the data's units.
pub fn score_images(clf: &Classifier, images: &[f32], rows: usize, reference: &RealReference) -> ImageMetrics {
    score_images_asked(clf, images, rows, reference, None).0
}

/// [`score_images`], and for samples asked for classes (`asked`, with the classes' names) the
/// conditional metrics, from the same classifier pass.
pub fn score_images_asked(
    clf: &Classifier,
    images: &[f32],
    rows: usize,
    reference: &RealReference,
    asked: Option<(&[u32], &[String])>,
) -> (ImageMetrics, Option<ConditionalMetrics>) {
    let s = clf.score(images, rows);
    let classes = clf.spec.classes;
    let (classes_hit, class_kl, classifier_score, class_shares) =
        class_metrics(&s.probs, classes, &clf.spec.label_shares);
    let fake = Gaussian::fit(&s.features, rows, s.feature_dim);
    let conditional = match (asked, &reference.classes) {
        (Some((asked, names)), Some(r)) => {
            Some(conditional::score(&s.probs, classes, &s.features, s.feature_dim, &asked[..rows], r, names))
        }
        _ => None,
    };
    let m = ImageMetrics {
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
    };
    (m, conditional)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(mean: &[f64], cov_diag: &[f64]) -> Gaussian {
        Gaussian {
            mean: DVector::from_row_slice(mean),
            cov: DMatrix::from_diagonal(&DVector::from_row_slice(cov_diag)),
        }
    }

    #[test]
    fn frechet_distance_of_diagonal_gaussians_has_the_closed_form() {
        // For diagonal covariances: |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2.
        let a = gaussian(&[0.0, 1.0, 2.0], &[1.0, 4.0, 9.0]);
        let b = gaussian(&[1.0, 1.0, 0.0], &[4.0, 4.0, 1.0]);
        let want = (1.0 + 0.0 + 4.0) + (1.0 + 0.0 + 4.0);
        assert!((frechet_distance(&a, &b) - want).abs() < 1e-9, "{}", frechet_distance(&a, &b));
        assert!(frechet_distance(&a, &a).abs() < 1e-9);
        assert!((frechet_distance(&a, &b) - frechet_distance(&b, &a)).abs() < 1e-9);
    }

    #[test]
    fn frechet_distance_handles_rotated_covariances() {
        // diag(4, 1) and diag(1, 4), both written densely in a basis rotated by 45 degrees (so no
        // entry is zero): in their shared eigenbasis the distance is (2 - 1)^2 + (1 - 2)^2 = 2.
        let r = std::f64::consts::FRAC_1_SQRT_2;
        let rot = DMatrix::from_row_slice(2, 2, &[r, -r, r, r]);
        let d1 = DMatrix::from_diagonal(&DVector::from_row_slice(&[4.0, 1.0]));
        let d2 = DMatrix::from_diagonal(&DVector::from_row_slice(&[1.0, 4.0]));
        let a = Gaussian { mean: DVector::zeros(2), cov: &rot * &d1 * rot.transpose() };
        let b = Gaussian { mean: DVector::zeros(2), cov: &rot * &d2 * rot.transpose() };
        assert!((frechet_distance(&a, &b) - 2.0).abs() < 1e-9, "{}", frechet_distance(&a, &b));
    }

    #[test]
    fn fit_recovers_mean_and_unbiased_covariance() {
        let x = [1.0f32, 2.0, 3.0, 6.0, 5.0, 10.0];
        let g = Gaussian::fit(&x, 3, 2);
        assert!((g.mean[0] - 3.0).abs() < 1e-12 && (g.mean[1] - 6.0).abs() < 1e-12);
        // var x = (4 + 0 + 4) / 2 = 4, var y = (16 + 0 + 16) / 2 = 16, cov = (8 + 0 + 8) / 2 = 8.
        assert!((g.cov[(0, 0)] - 4.0).abs() < 1e-9 && (g.cov[(1, 1)] - 16.0).abs() < 1e-9);
        assert!((g.cov[(0, 1)] - 8.0).abs() < 1e-9 && (g.cov[(1, 0)] - 8.0).abs() < 1e-9);
    }

    #[test]
    fn class_metrics_of_a_perfect_and_a_collapsed_generator() {
        let shares = vec![0.25; 4];
        // Perfect: every class equally, each sample certain.
        let perfect: Vec<f64> =
            (0..400).flat_map(|i| (0..4).map(move |k| if k == i % 4 { 1.0 } else { 0.0 })).collect();
        let (hit, kl, score, s) = class_metrics(&perfect, 4, &shares);
        assert_eq!(hit, 4);
        assert!(kl.abs() < 1e-12);
        assert!((score - 4.0).abs() < 1e-9, "score {score}");
        assert_eq!(s, shares);
        // Collapsed: all class 2, plus a few strays below the coverage threshold.
        let mut collapsed: Vec<f64> = (0..1000).flat_map(|_| [0.0, 0.0, 1.0, 0.0]).collect();
        collapsed[0..4].copy_from_slice(&[1.0, 0.0, 0.0, 0.0]);
        let (hit, kl, score, _) = class_metrics(&collapsed, 4, &shares);
        assert_eq!(hit, 1);
        assert!((kl - (0.999 * (0.999f64 / 0.25).ln() + 0.001 * (0.001f64 / 0.25).ln())).abs() < 1e-9);
        assert!(score < 1.02, "score {score}");
    }
}
