//! Judging a generator: the toy mode-collapse metrics for `--toy` runs, the classifier-based
//! image metrics for image runs. Used at the end of `train` (eval.json), every `--eval-every`
//! steps (columns of metrics.csv), and by the `eval` command.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::checkpoint;
use crate::classifier::Classifier;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::image_metrics::{self, RealReference};
use crate::toy::{self, Toy};
use crate::trainer::{Backend, Trainer};

/// The classifier file built into shadergan: trained by shadergan itself on MNIST's 60,000
/// training digits (assets/README.md has the command and its test accuracy).
const BUILTIN_CLASSIFIER: &[u8] = include_bytes!("../assets/classifier-mnist.safetensors");
pub const BUILTIN_CLASSIFIER_NAME: &str = "assets/classifier-mnist.safetensors (built in)";

pub fn builtin_classifier() -> Result<Classifier> {
    Classifier::from_bytes(BUILTIN_CLASSIFIER, BUILTIN_CLASSIFIER_NAME)
}

/// Which classifier scores an image run (`--classifier`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassifierChoice {
    /// The built-in MNIST digit classifier for 28x28 images; no image metrics otherwise.
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
        ClassifierChoice::Auto if data.image_hw() != Some((28, 28)) => return Ok(None),
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
    Image {
        clf: Box<Classifier>,
        name: String,
        data: Arc<Dataset>,
        /// Fitted on first use (a second or two of host work).
        reference: Option<RealReference>,
    },
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
        Ok(classifier_for(choice, data)?.map(|(clf, name)| Scorer::Image {
            clf: Box::new(clf),
            name,
            data: data.clone(),
            reference: None,
        }))
    }

    /// metrics.csv columns of this kind of evaluation.
    pub fn columns(&self) -> &'static [&'static str] {
        match self {
            Scorer::Toy(_) => &["modes", "high_quality_pct", "reverse_kl"],
            Scorer::Image { .. } => &["classes", "class_kl", "classifier_score", "frechet_distance"],
        }
    }

    pub fn evaluate(&mut self, trainer: &mut dyn Trainer) -> Result<Evaluation> {
        let step = trainer.step();
        match self {
            Scorer::Toy(t) => {
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
            Scorer::Image { clf, name, data, reference } => {
                let seed = trainer.config().seed;
                let reference = reference.get_or_insert_with(|| image_metrics::real_reference(clf, data, seed));
                let m = image_metrics::evaluate(trainer, clf, reference)?;
                let mut v = serde_json::to_value(&m).map_err(|e| Error::Io(e.to_string()))?;
                v["step"] = json!(step);
                v["classifier"] = json!(name);
                v["classifier_test_accuracy"] = json!(clf.spec.test_accuracy);
                let cells = vec![
                    m.classes_hit.to_string(),
                    format!("{:.5}", m.class_kl),
                    format!("{:.4}", m.classifier_score),
                    format!("{:.4}", m.frechet_distance),
                ];
                Ok(Evaluation { json: v, cells, line: format!("step {step}: {}", m.line()) })
            }
        }
    }
}

/// Writes eval.json in a run folder, atomically.
pub fn write_eval_json(dir: &Path, json: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(json).map_err(|e| Error::Io(e.to_string()))?;
    text.push('\n');
    crate::rundir::write_atomic(&dir.join("eval.json"), text.as_bytes())
}

/// The `eval` command's request.
pub struct EvalRequest {
    /// A run folder (its latest checkpoint) or a checkpoint file.
    pub target: PathBuf,
    /// The toy benchmark (default: the run's own, from its config.json).
    pub toy: Option<Toy>,
    /// The real images (default: the run's own data file, from its config.json).
    pub data: Option<PathBuf>,
    pub classifier: ClassifierChoice,
    pub backend: Backend,
}

/// Scores generated images saved as .npy (another trainer's, or `generate --out`) against real
/// images, with the same classifier and metrics as a run's eval.json: the first `EVAL_SAMPLES`
/// rows (the Fréchet distance depends on the count, so compare like with like).
fn eval_samples_file(req: &EvalRequest) -> Result<Value> {
    let name = req.target.display().to_string();
    if req.toy.is_some() {
        return Err(Error::input(format!("{name}: --toy scores a checkpoint's generator, not a .npy of samples")));
    }
    let Some(real_path) = &req.data else {
        return Err(Error::input(format!(
            "{name}: scoring a .npy of generated images needs --data REAL.npy, the real images to compare with"
        )));
    };
    let samples = crate::data::load_npy(&req.target)?;
    let real = Arc::new(crate::data::load_npy(real_path)?);
    if samples.dim != real.dim {
        return Err(Error::input(format!(
            "{name}: samples of {} values cannot be compared with {} of {} values",
            samples.dim,
            real_path.display(),
            real.dim
        )));
    }
    if !samples.is_unit_range() {
        let (lo, hi) = samples.value_range();
        return Err(Error::input(format!(
            "{name}: generated images must be uint8 or floats in [0, 1], like the real data; these \
             range over [{lo}, {hi}] (map a tanh output with (x + 1) / 2)"
        )));
    }
    let Some((clf, clf_name)) = classifier_for(&req.classifier, &real)? else {
        return Err(Error::input(format!(
            "{name}: nothing to score these images with: they are not 28x28; pass --classifier FILE"
        )));
    };
    let rows = samples.n.min(image_metrics::EVAL_SAMPLES);
    let images = crate::classifier::rows_f32(&samples, 0..rows);
    let reference = image_metrics::real_reference(&clf, &real, 0);
    let m = image_metrics::score_images(&clf, &images, rows, &reference);
    let mut v = serde_json::to_value(&m).map_err(|e| Error::Io(e.to_string()))?;
    v["samples_file"] = json!(name);
    v["classifier"] = json!(clf_name);
    v["classifier_test_accuracy"] = json!(clf.spec.test_accuracy);
    Ok(v)
}

/// Evaluates a checkpoint's generator (or a .npy of generated images); returns the JSON `train`
/// would write to eval.json.
pub fn eval(req: &EvalRequest) -> Result<Value> {
    if req.target.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        return eval_samples_file(req);
    }
    let ckpt_path = if req.target.is_dir() {
        crate::rundir::RunDir { root: req.target.clone() }.latest()
    } else {
        req.target.clone()
    };
    let ckpt = checkpoint::load(&ckpt_path)?;
    let cfg = ckpt.config.clone();
    // The run's config.json says what it trained on.
    let run_cfg: Value = std::fs::read_to_string(crate::rundir::RunDir::root_of(&ckpt_path).join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let toy = req
        .toy
        .or_else(|| run_cfg["data"]["toy"].as_str().and_then(|t| <Toy as clap::ValueEnum>::from_str(t, true).ok()));
    let data = match (toy, &req.data) {
        (Some(t), _) => t.dataset(cfg.seed, toy::TOY_SAMPLES)?,
        (None, Some(p)) => crate::data::load_npy(p)?,
        (None, None) => match run_cfg["data"]["path"].as_str() {
            Some(p) if p == crate::assets::DEFAULT_DATA_NAME => crate::assets::default_dataset()?,
            Some(p) => crate::data::load_npy(Path::new(p))?,
            None => {
                return Err(Error::input(format!(
                    "{}: no config.json beside it names the training data; pass --data FILE (or --toy)",
                    ckpt_path.display()
                )))
            }
        },
    };
    if data.dim != cfg.model.data_dim {
        let what = if toy.is_some() { "eval --toy needs a model of 2-D samples" } else { "the data does not fit" };
        return Err(Error::input(format!(
            "{}: {what}: the checkpoint makes samples of {} values, the data has {}",
            ckpt_path.display(),
            cfg.model.data_dim,
            data.dim
        )));
    }
    let data = Arc::new(data);
    let Some(mut scorer) = Scorer::new(toy, &req.classifier, &data)? else {
        return Err(Error::input(
            "nothing to evaluate this run with: it is neither a --toy run nor 28x28 images; pass \
             --classifier FILE (from `shadergan classifier train`) or --toy",
        ));
    };
    let mut trainer = crate::open_trainer(req.backend, cfg, data)?;
    trainer.restore(&ckpt.snapshot)?;
    Ok(scorer.evaluate(trainer.as_mut())?.json)
}
