//! Judging a generator: the toy mode-collapse metrics ([`toy`]) for `--toy` runs; for image
//! runs the classifier-based metrics ([`image`]) where a classifier fits and the sliced
//! Wasserstein distance ([`swd`]) on images of 16x16 or more ([`scorer`] combines them). Used at
//! the end of `train` (eval.json), every `--eval-every` steps (columns of metrics.csv), and by
//! the `eval` command.

pub mod conditional;
pub mod image;
pub mod scorer;
pub mod swd;
pub mod toy;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use self::scorer::ImageScorer;
use crate::data::toy::Toy;
use crate::data::{Dataset, ImageShape};
use crate::error::{Error, Result};
use crate::programs::classifier::Classifier;
use crate::programs::trainer::Trainer;

/// The classifier file built into shadergan: trained by shadergan itself on MNIST's 60,000
/// training digits (assets/README.md has the command and its test accuracy).
const BUILTIN_CLASSIFIER: &[u8] = include_bytes!("../../assets/classifier-mnist.safetensors");
pub const BUILTIN_CLASSIFIER_NAME: &str = "assets/classifier-mnist.safetensors (built in)";

pub fn builtin_classifier() -> Result<Classifier> {
    Classifier::from_bytes(BUILTIN_CLASSIFIER, BUILTIN_CLASSIFIER_NAME)
}

/// Which classifier scores an image run (`--classifier`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassifierChoice {
    /// The built-in MNIST digit classifier for 28x28 gray images; no image metrics otherwise.
    Auto,
    None,
    Builtin,
    Path(PathBuf),
}

impl std::str::FromStr for ClassifierChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "auto" => ClassifierChoice::Auto,
            "none" => ClassifierChoice::None,
            "builtin" => ClassifierChoice::Builtin,
            path => ClassifierChoice::Path(PathBuf::from(path)),
        })
    }
}

/// The classifier (and its name) for image data, or None when there is none to use.
pub fn classifier_for(choice: &ClassifierChoice, data: &Dataset) -> Result<Option<(Classifier, String)>> {
    let clf = match choice {
        ClassifierChoice::None => return Ok(None),
        // The built-in classifier knows 28x28 gray digits: colour 28x28 images are not for it.
        ClassifierChoice::Auto if data.image() != Some(ImageShape::gray(28, 28)) => return Ok(None),
        ClassifierChoice::Auto | ClassifierChoice::Builtin => (builtin_classifier()?, BUILTIN_CLASSIFIER_NAME.into()),
        ClassifierChoice::Path(p) => (Classifier::load(p)?, p.display().to_string()),
    };
    if clf.0.spec.input_dim != data.dim {
        return Err(Error::input(format!(
            "{}: the classifier takes images of {} values; the data has {}",
            clf.1, clf.0.spec.input_dim, data.dim
        )));
    }
    Ok(Some(clf))
}

/// What a run is judged by.
pub enum Scorer {
    Toy(Toy),
    Image(Box<ImageScorer>),
}

/// One evaluation: its JSON (eval.json), its metrics.csv cells and a log line.
pub struct Evaluation {
    pub json: Value,
    pub cells: Vec<String>,
    pub line: String,
}

impl Scorer {
    /// The scorer of a run on `data` (None: nothing to judge it by).
    pub fn new(toy: Option<Toy>, choice: &ClassifierChoice, data: &Arc<Dataset>) -> Result<Option<Self>> {
        if let Some(t) = toy {
            return Ok(Some(Scorer::Toy(t)));
        }
        let classifier = classifier_for(choice, data)?;
        Ok(ImageScorer::new(data, classifier, None).map(|s| Scorer::Image(Box::new(s))))
    }

    /// The classifier's name (image runs scored by one).
    pub fn classifier_name(&self) -> Option<String> {
        match self {
            Scorer::Image(s) => s.classifier_name(),
            Scorer::Toy(_) => None,
        }
    }

    /// metrics.csv columns of this kind of evaluation.
    pub fn columns(&self) -> Vec<String> {
        match self {
            Scorer::Toy(_) => ["modes", "high_quality_pct", "reverse_kl"].map(String::from).to_vec(),
            Scorer::Image(s) => s.columns(),
        }
    }

    pub fn evaluate(&mut self, trainer: &mut dyn Trainer) -> Result<Evaluation> {
        match self {
            Scorer::Toy(t) => {
                let step = trainer.step();
                let m = toy::evaluate(trainer, *t)?;
                let mut v = serde_json::to_value(&m).map_err(|e| Error::Io(e.to_string()))?;
                v["toy"] = json!(t.name());
                v["step"] = json!(step);
                let cells = vec![
                    m.modes_captured.to_string(),
                    format!("{:.2}", m.high_quality_pct),
                    format!("{:.5}", m.reverse_kl),
                ];
                Ok(Evaluation { json: v, cells, line: format!("{} at step {step}: {}", t.name(), m.line()) })
            }
            Scorer::Image(s) => s.evaluate(trainer),
        }
    }
}

/// What eval.json says when nothing fits the run's data to score it with (no `--toy`, no
/// classifier for its images, and images too small or too few for the sliced Wasserstein
/// distance): `scored` false and why, so a run on any data ends cleanly.
pub fn unscored_json(step: u32, data: &Dataset, choice: &ClassifierChoice) -> Value {
    let reason = match (choice, data.image()) {
        (ClassifierChoice::None, None) => "--classifier none".to_string(),
        (ClassifierChoice::None, Some(image)) => {
            format!("{}; and --classifier none", swd::unfit(image, data.n).unwrap_or_default())
        }
        (_, Some(image)) => format!(
            "{}; and no classifier fits these {} images (the built-in one is for 28x28 gray digits; train \
             one on labelled images of {} values with `shadergan classifier train` and pass --classifier FILE)",
            swd::unfit(image, data.n).unwrap_or_default(),
            image.describe(),
            data.dim
        ),
        (_, None) => format!(
            "samples of {} values are neither images nor a --toy data set, so there is nothing to score them with",
            data.dim
        ),
    };
    json!({ "step": step, "scored": false, "reason": reason })
}

/// Writes eval.json in a run folder, atomically.
pub fn write_eval_json(dir: &Path, json: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(json).map_err(|e| Error::Io(e.to_string()))?;
    text.push('\n');
    crate::io::write_atomic(&dir.join("eval.json"), text.as_bytes())
}
