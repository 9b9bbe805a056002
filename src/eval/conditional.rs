//! How well a conditional generator makes the class asked for, judged by the classifier that
//! scores the run (`image`):
//! - agreement: the share of samples the classifier assigns (argmax) to the class they were asked
//!   for, overall and per class. It takes class k of the data to be class k of the classifier,
//!   so it is reported only when both have the same number of classes (MNIST's digits and the
//!   built-in digit classifier); the classifier's own test accuracy is the ceiling a perfect
//!   generator would approach.
//! - the Fréchet distance within each class: the classifier's penultimate features of the
//!   samples asked for class c against those of the real images of class c, with the same
//!   distance between two disjoint real sets of that class beside it as its floor (each class
//!   has about a tenth of the samples of the overall distance, so its floor is higher).

use serde::Serialize;

use super::image::{frechet_distance, Gaussian};
use crate::programs::classifier::argmax;

/// The real side per class: each class's feature Gaussian (None under 2 samples), its sample
/// count, and the real-vs-real floor of the class (None when a floor set has under 2).
#[derive(Clone, Debug)]
pub struct ClassReference {
    pub gaussians: Vec<Option<Gaussian>>,
    pub samples: Vec<usize>,
    pub floors: Vec<Option<f64>>,
}

/// Fewest samples a class needs for a Gaussian (its covariance divides by n - 1).
const MIN_CLASS_SAMPLES: usize = 2;

/// Fits one Gaussian per class to `features` (rows of `dim`) whose classes `labels` gives.
pub fn fit_per_class(features: &[f32], dim: usize, labels: &[usize], classes: usize) -> Vec<(usize, Option<Gaussian>)> {
    (0..classes)
        .map(|c| {
            let rows: Vec<usize> = (0..labels.len()).filter(|&r| labels[r] == c).collect();
            let picked: Vec<f32> =
                rows.iter().flat_map(|&r| features[r * dim..(r + 1) * dim].iter().copied()).collect();
            let g = (rows.len() >= MIN_CLASS_SAMPLES).then(|| Gaussian::fit(&picked, rows.len(), dim));
            (rows.len(), g)
        })
        .collect()
}

impl ClassReference {
    /// From the reference set (features and labels) and the two disjoint floor sets.
    pub fn new(
        reference: (&[f32], &[usize]),
        floor_a: (&[f32], &[usize]),
        floor_b: (&[f32], &[usize]),
        dim: usize,
        classes: usize,
    ) -> Self {
        let fitted = fit_per_class(reference.0, dim, reference.1, classes);
        let a = fit_per_class(floor_a.0, dim, floor_a.1, classes);
        let b = fit_per_class(floor_b.0, dim, floor_b.1, classes);
        let floors = a
            .iter()
            .zip(&b)
            .map(|((_, ga), (_, gb))| match (ga, gb) {
                (Some(x), Some(y)) => Some(frechet_distance(x, y)),
                _ => None,
            })
            .collect();
        let (samples, gaussians) = fitted.into_iter().unzip();
        ClassReference { gaussians, samples, floors }
    }
}

/// One class's numbers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub class: usize,
    pub name: String,
    /// Samples asked for this class.
    pub samples: usize,
    pub agreement: Option<f64>,
    pub frechet_distance: Option<f64>,
    pub real_samples: usize,
    pub real_floor: Option<f64>,
}

/// eval.json's `conditional`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConditionalMetrics {
    /// Share of all samples classified as the class asked for (None: the classifier's classes
    /// are not the data's).
    pub agreement: Option<f64>,
    /// The mean over classes of the per-class Fréchet distance, and of its floor.
    pub mean_class_frechet_distance: Option<f64>,
    pub mean_class_real_floor: Option<f64>,
    pub per_class: Vec<ClassMetrics>,
}

impl ConditionalMetrics {
    pub fn line(&self) -> String {
        let agree = self.agreement.map_or(String::new(), |a| format!("class asked agreed {:.1}%, ", 100.0 * a));
        let fd = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        format!(
            "{agree}per-class Fréchet distance {} (floor {})",
            fd(self.mean_class_frechet_distance),
            fd(self.mean_class_real_floor)
        )
    }
}

/// The metrics of samples asked for classes `asked`, given the classifier's softmax `probs`
/// (rows, `clf_classes`) and features (rows, `dim`) of them.
pub fn score(
    probs: &[f64],
    clf_classes: usize,
    features: &[f32],
    dim: usize,
    asked: &[u32],
    reference: &ClassReference,
    names: &[String],
) -> ConditionalMetrics {
    let classes = names.len();
    let agrees = clf_classes == classes;
    let predicted: Vec<usize> = probs.chunks(clf_classes).map(argmax).collect();
    let asked: Vec<usize> = asked.iter().map(|&y| y as usize).collect();
    let fake = fit_per_class(features, dim, &asked, classes);
    let mut per_class = vec![];
    for (c, (n, g)) in fake.into_iter().enumerate() {
        let right = (0..asked.len()).filter(|&r| asked[r] == c && predicted[r] == c).count();
        let fd = match (&g, &reference.gaussians[c]) {
            (Some(f), Some(r)) => Some(frechet_distance(f, r)),
            _ => None,
        };
        per_class.push(ClassMetrics {
            class: c,
            name: names[c].clone(),
            samples: n,
            agreement: (agrees && n > 0).then(|| right as f64 / n as f64),
            frechet_distance: fd,
            real_samples: reference.samples[c],
            real_floor: reference.floors[c],
        });
    }
    let right = (0..asked.len()).filter(|&r| predicted[r] == asked[r]).count();
    let mean = |v: Vec<Option<f64>>| -> Option<f64> {
        let known: Vec<f64> = v.into_iter().flatten().collect();
        (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
    };
    ConditionalMetrics {
        agreement: (agrees && !asked.is_empty()).then(|| right as f64 / asked.len() as f64),
        mean_class_frechet_distance: mean(per_class.iter().map(|c| c.frechet_distance).collect()),
        mean_class_real_floor: mean(per_class.iter().map(|c| c.real_floor).collect()),
        per_class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_counts_the_class_asked_for() {
        // 3 classes; 6 samples asked 0, 1, 2, 0, 1, 2; the classifier sees 0, 1, 1, 0, 2, 2.
        let onehot = |k: usize| (0..3).map(move |j| if j == k { 1.0 } else { 0.0 });
        let probs: Vec<f64> = [0, 1, 1, 0, 2, 2].into_iter().flat_map(onehot).collect();
        let features: Vec<f32> = (0..12).map(|i| (i * 7 % 5) as f32).collect();
        let labels = [0usize, 1, 2, 0, 1, 2];
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let r = ClassReference::new((&features, &labels), (&features, &labels), (&features, &labels), 2, 3);
        let m = score(&probs, 3, &features, 2, &[0, 1, 2, 0, 1, 2], &r, &names);
        assert_eq!(m.agreement, Some(4.0 / 6.0));
        let per: Vec<Option<f64>> = m.per_class.iter().map(|c| c.agreement).collect();
        assert_eq!(per, [Some(1.0), Some(0.5), Some(0.5)]);
        // The same features as the reference: every class's distance and floor is 0.
        let zero = |v: Option<f64>| v.is_some_and(|v| v.abs() < 1e-6);
        assert!(m.per_class.iter().all(|c| zero(c.frechet_distance) && zero(c.real_floor)), "{m:?}");
        assert_eq!((m.per_class[1].name.as_str(), m.per_class[1].samples, m.per_class[1].real_samples), ("b", 2, 2));
        // A classifier of other classes: no agreement, the distances still.
        let m = score(&[0.5, 0.5].repeat(6), 2, &features, 2, &[0, 1, 2, 0, 1, 2], &r, &names);
        assert!(m.agreement.is_none() && m.per_class.iter().all(|c| c.agreement.is_none()));
        assert!(m.mean_class_frechet_distance.is_some());
    }
}
