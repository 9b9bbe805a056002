//! What scores an image run: the classifier metrics ([`image`]) when a classifier fits the
//! images, and the sliced Wasserstein distance ([`swd`]) when they are 16x16 or larger. Both
//! read one set of generated images (the evaluation latents of the run's seed) and build their
//! real side once, on first use.

use std::sync::Arc;

use serde_json::{json, Value};

use super::image::{self, RealReference};
use super::swd;
use super::Evaluation;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::programs::classifier::Classifier;
use crate::programs::trainer::{balanced_classes, fixed_latents_for, to_data_scale, Trainer};
use crate::rng;

/// The classifier metrics' part: the classifier and, once fitted, its real reference.
struct ClassifierPart {
    clf: Box<Classifier>,
    name: String,
    reference: Option<RealReference>,
}

/// The SWD's part: its sample count and, once built, its real reference.
struct SwdPart {
    samples: usize,
    levels: Vec<String>,
    reference: Option<swd::Reference>,
    /// A conditional run's per-class references, once built (`swd::by_class`).
    by_class: Option<swd::by_class::ClassReferences>,
}

/// Scores image runs (and `eval` of a .npy of generated images).
pub struct ImageScorer {
    data: Arc<Dataset>,
    classifier: Option<ClassifierPart>,
    swd: Option<SwdPart>,
}

impl ImageScorer {
    /// The scorer of images like `data`'s, with `classifier` (from `classifier_for`) when one
    /// fits; None when nothing can score them. `fakes` caps the SWD's sample count (a .npy of
    /// fewer generated images than the data set gives).
    pub fn new(
        data: &Arc<Dataset>,
        classifier: Option<(Classifier, String)>,
        fakes: Option<usize>,
    ) -> Option<ImageScorer> {
        let swd = data.image().filter(|&s| swd::unfit(s, data.n).is_none()).map(|shape| {
            let samples = swd::sample_count(data.n).min(fakes.unwrap_or(usize::MAX));
            SwdPart {
                samples,
                levels: swd::level_sizes(shape).into_iter().map(swd::level_name).collect(),
                reference: None,
                by_class: None,
            }
        });
        let classifier = classifier.map(|(clf, name)| ClassifierPart { clf: Box::new(clf), name, reference: None });
        if classifier.is_none() && swd.as_ref().is_none_or(|s| s.samples == 0) {
            return None;
        }
        Some(ImageScorer { data: data.clone(), classifier, swd })
    }

    pub fn classifier_name(&self) -> Option<String> {
        self.classifier.as_ref().map(|c| c.name.clone())
    }

    /// metrics.csv columns: the classifier's, then `swd` (the mean) and `swd_<level>`.
    pub fn columns(&self) -> Vec<String> {
        let mut c: Vec<String> = vec![];
        if self.classifier.is_some() {
            c.extend(["classes", "class_kl", "classifier_score", "frechet_distance"].map(String::from));
            if self.conditional() {
                c.extend(["class_agreement", "class_frechet_distance"].map(String::from));
            }
        }
        if let Some(s) = &self.swd {
            c.push("swd".into());
            c.extend(s.levels.iter().map(|l| format!("swd_{l}")));
            if self.conditional() {
                c.push("class_swd".into());
            }
        }
        c
    }

    /// A conditional run's scorer: the data has classes, which the classifier metrics then
    /// judge G's samples by (`eval::conditional`).
    fn conditional(&self) -> bool {
        self.data.classes.is_some()
    }

    /// How many generated images an evaluation reads.
    pub fn rows(&self) -> usize {
        let clf = self.classifier.as_ref().map_or(0, |_| image::EVAL_SAMPLES);
        clf.max(self.swd.as_ref().map_or(0, |s| s.samples))
    }

    /// Scores the trainer's G: `rows()` images from the evaluation latents of the run's seed.
    pub fn evaluate(&mut self, trainer: &mut dyn Trainer) -> Result<Evaluation> {
        let cfg = trainer.config().clone();
        let rows = self.rows();
        let z = fixed_latents_for(&cfg, rows, rng::PURPOSE_EVAL);
        let div = if cfg.data_u8 { 255.0 } else { 1.0 };
        // A conditional G: sample i of class i mod classes (`Trainer::sample`), every class alike.
        let images: Vec<f32> = to_data_scale(&cfg, &trainer.sample(&z)?).iter().map(|v| v / div).collect();
        let asked = balanced_classes(rows, cfg.model.classes);
        let asked = (cfg.model.classes > 0).then_some((asked.as_slice(), cfg.class_names.as_slice()));
        let mut e = self.score(&images, rows, cfg.seed, asked)?;
        let step = trainer.step();
        e.json["step"] = json!(step);
        e.line = format!("step {step}: {}", e.line);
        Ok(e)
    }

    /// Scores `rows` images (channel planes, in [0, 1] like the data) against the real images in
    /// the order of `seed`: the classifier metrics on the first `EVAL_SAMPLES` (or all), the SWD
    /// on the first `swd_samples`; images a conditional G made for the classes `asked` (with
    /// their names) also by class (eval.json's `conditional`).
    pub fn score(
        &mut self,
        images: &[f32],
        rows: usize,
        seed: u64,
        asked: Option<(&[u32], &[String])>,
    ) -> Result<Evaluation> {
        let dim = self.data.dim;
        let conditional = self.conditional();
        let (mut v, mut cells, mut parts) = (json!({ "scored": true }), vec![], vec![]);
        if let Some(c) = &mut self.classifier {
            let reference = c.reference.get_or_insert_with(|| image::real_reference(&c.clf, &self.data, seed));
            let n = rows.min(image::EVAL_SAMPLES);
            let (m, by_class) = image::score_images_asked(&c.clf, &images[..n * dim], n, reference, asked);
            merge(&mut v, serde_json::to_value(&m).map_err(|e| Error::Io(e.to_string()))?);
            v["classifier"] = json!(c.name);
            v["classifier_test_accuracy"] = json!(c.clf.spec.test_accuracy);
            cells.extend([
                m.classes_hit.to_string(),
                format!("{:.5}", m.class_kl),
                format!("{:.4}", m.classifier_score),
                format!("{:.4}", m.frechet_distance),
            ]);
            parts.push(m.line());
            if conditional {
                let cell = |x: Option<f64>, digits: usize| x.map_or(String::new(), |x| format!("{x:.digits$}"));
                let (agree, fd) =
                    by_class.as_ref().map_or((None, None), |b| (b.agreement, b.mean_class_frechet_distance));
                cells.extend([cell(agree, 5), cell(fd, 4)]);
            }
            if let Some(b) = by_class {
                parts.push(b.line());
                v["conditional"] = serde_json::to_value(&b).map_err(|e| Error::Io(e.to_string()))?;
            }
        }
        if let Some(s) = &mut self.swd {
            if s.reference.is_none() {
                s.reference = Some(swd::Reference::new(&self.data, seed, s.samples)?);
            }
            let reference = s.reference.as_ref().expect("built above");
            let m = reference.metrics(&images[..s.samples * dim]);
            cells.push(format!("{:.4}", m.swd));
            cells.extend(m.swd_per_level.iter().map(|d| format!("{d:.4}")));
            parts.push(m.line());
            merge(&mut v, serde_json::to_value(&m).map_err(|e| Error::Io(e.to_string()))?);
            if conditional {
                let by_class = match asked {
                    Some((asked, _)) => Some(class_swd(s, &self.data, seed, &images[..rows * dim], asked)?),
                    None => None,
                };
                cells.push(
                    by_class.as_ref().and_then(|b| b.mean_class_swd).map_or(String::new(), |x| format!("{x:.4}")),
                );
                if let Some(b) = by_class {
                    parts.push(b.line());
                    v["class_swd"] = serde_json::to_value(&b).map_err(|e| Error::Io(e.to_string()))?;
                }
            }
        }
        Ok(Evaluation { json: v, cells, line: parts.join("; ") })
    }
}

/// The SWD within each class of images made for the classes `asked` (row by row), the
/// classes' references built on first use.
fn class_swd(
    s: &mut SwdPart,
    data: &Dataset,
    seed: u64,
    images: &[f32],
    asked: &[u32],
) -> Result<swd::by_class::ClassSwdMetrics> {
    if s.by_class.is_none() {
        let classes = data.classes.as_ref().map_or(0, |c| c.classes());
        let counts: Vec<usize> = (0..classes).map(|c| asked.iter().filter(|&&y| y as usize == c).count()).collect();
        s.by_class = swd::by_class::ClassReferences::new(data, seed, &counts)?;
    }
    let refs = s.by_class.as_ref().ok_or_else(|| Error::input("per-class SWD: the data has no classes"))?;
    Ok(refs.metrics(images, data.dim, asked))
}

/// Adds the fields of the object `from` to the object `into`.
fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}
