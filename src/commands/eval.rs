//! The `eval` command: a run's generator (or a .npy of generated images) scored as `train`
//! scores it in eval.json.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::backend::Backend;
use crate::config::RunConfig;
use crate::data::source::{self, DataOptions};
use crate::data::toy::{self, Toy};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::eval::scorer::ImageScorer;
use crate::eval::{classifier_for, swd, unscored_json, ClassifierChoice, Scorer};
use crate::programs::trainer::Trainer;
use crate::train::checkpoint;
use crate::train::run_dir::{resolve_checkpoint, RunDir};

/// The `eval` command's request.
pub struct EvalRequest {
    /// A run folder (its latest checkpoint) or a checkpoint file.
    pub target: PathBuf,
    /// The toy benchmark (default: the run's own, from its config.json).
    pub toy: Option<Toy>,
    /// The real images (default: the run's own data file or folder, from its config.json).
    pub data: Option<PathBuf>,
    /// How to read `data` (and a .npy target's layout); the run's own recorded ones without `data`.
    pub data_options: DataOptions,
    pub classifier: ClassifierChoice,
    pub backend: Backend,
}

/// Scores generated images saved as .npy (another trainer's, or `generate --out`) against real
/// images, with the same metrics as a run's eval.json and the real reference a seed-0 run uses:
/// the classifier metrics on the first `EVAL_SAMPLES` rows (the Fréchet distance depends on the
/// count, so compare like with like), the SWD on the first min(2048, real images / 2, rows).
fn eval_samples_file(req: &EvalRequest) -> Result<Value> {
    let name = req.target.display().to_string();
    if req.toy.is_some() {
        return Err(Error::input(format!("{name}: --toy scores a checkpoint's generator, not a .npy of samples")));
    }
    let Some(real_path) = &req.data else {
        return Err(Error::input(format!(
            "{name}: scoring a .npy of generated images needs --data REAL.npy (or an image folder), the real images to compare with"
        )));
    };
    let samples = crate::data::load_npy_with(&req.target, req.data_options.layout)?;
    let real = Arc::new(source::load(Some(real_path), &req.data_options, None, false)?.data);
    check_samples_fit(&name, &samples, &real, real_path)?;
    let classifier = classifier_for(&req.classifier, &real)?;
    let Some(mut scorer) = ImageScorer::new(&real, classifier, Some(samples.n)) else {
        let why = match real.image() {
            Some(shape) => swd::unfit(shape, real.n).unwrap_or_default(),
            None => format!("{} holds no images", real_path.display()),
        };
        return Err(Error::input(format!(
            "{name}: nothing to score these images with: {why}; and no classifier fits them (pass --classifier FILE)"
        )));
    };
    let rows = scorer.rows().min(samples.n);
    let images = crate::programs::classifier::rows_f32(&samples, 0..rows);
    let mut v = scorer.score(&images, rows, 0, None)?.json;
    v["samples_file"] = json!(name);
    Ok(v)
}

/// Generated images comparable with the real ones: as many values, the same image shape, in
/// [0, 1] (uint8 or floats).
fn check_samples_fit(name: &str, samples: &Dataset, real: &Dataset, real_path: &Path) -> Result<()> {
    let real_name = real_path.display();
    match (samples.image(), real.image()) {
        (Some(a), Some(b)) if a != b => {
            let hint = if real_path.is_dir() && a.channels == b.channels && a.height == a.width {
                format!(" (--image-size {} reads the folder at that size)", a.height)
            } else {
                String::new()
            };
            return Err(Error::input(format!(
                "{name}: {} images ({} values) cannot be compared with the {} images ({} values) of {real_name}{hint}",
                a.describe(),
                samples.dim,
                b.describe(),
                real.dim
            )));
        }
        (None, Some(b)) if b.channels > 1 && samples.dim == real.dim => {
            return Err(Error::input(format!(
                "{name}: samples of shape {} are not images; give colour samples as (N, H, W, C) or (N, C, H, W)",
                samples.shape_text()
            )));
        }
        _ if samples.dim != real.dim => {
            return Err(Error::input(format!(
                "{name}: samples of {} values cannot be compared with {real_name} of {} values",
                samples.dim, real.dim
            )));
        }
        _ => {}
    }
    if !samples.is_unit_range() {
        let (lo, hi) = samples.value_range();
        return Err(Error::input(format!(
            "{name}: generated images must be uint8 or floats in [0, 1], like the real data; these \
             range over [{lo}, {hi}] (map a tanh output with (x + 1) / 2)"
        )));
    }
    Ok(())
}

/// The data of a checkpoint's evaluation, with its classes when the generator is conditional
/// (they judge it class by class, and must be the checkpoint's); `--labels` is refused for an
/// unconditional one.
fn classes_for(loaded: source::Loaded, cfg: &crate::config::TrainConfig, opts: &DataOptions) -> Result<Dataset> {
    if cfg.model.classes == 0 {
        if opts.labels.is_some() {
            return Err(Error::input(
                "--labels gives the classes of a conditional run's data; this generator is not conditional",
            ));
        }
        return Ok(loaded.data);
    }
    let classes = loaded.class_labels()?;
    if classes.names != cfg.class_names {
        return Err(Error::input(format!(
            "the data's classes ({}) are not the checkpoint's ({})",
            classes.names.join(", "),
            cfg.class_names.join(", ")
        )));
    }
    let mut data = loaded.data;
    data.classes = Some(classes);
    Ok(data)
}

/// Evaluates a checkpoint's generator (or a .npy of generated images); returns the JSON `train`
/// would write to eval.json.
pub fn eval(req: &EvalRequest) -> Result<Value> {
    if req.target.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        return eval_samples_file(req);
    }
    let ckpt_path = resolve_checkpoint(&req.target)?;
    let ckpt = checkpoint::load(&ckpt_path)?;
    let cfg = ckpt.config.clone();
    // The run's config.json says what it trained on (unless the flags say otherwise).
    let run_cfg = match (&req.toy, &req.data) {
        (None, None) => RunConfig::read(&RunDir::root_of(&ckpt_path))?,
        _ => None,
    };
    let run_data = run_cfg.as_ref().map(|c| &c.data);
    let toy = req.toy.or_else(|| {
        run_data.and_then(|d| d.toy.as_deref()).and_then(|t| <Toy as clap::ValueEnum>::from_str(t, true).ok())
    });
    let run_root = RunDir::root_of(&ckpt_path);
    let loaded = match (toy, &req.data) {
        (Some(t), _) => source::Loaded::plain(t.dataset(cfg.seed, toy::TOY_SAMPLES)?, format!("toy:{}", t.name())),
        (None, Some(p)) => source::load(Some(p), &req.data_options, Some(&run_root), false)?,
        (None, None) => match run_data {
            Some(d) if d.path == crate::data::assets::DEFAULT_DATA_NAME => {
                source::load(None, &DataOptions::default(), None, false)?
            }
            // The file or folder as the run read it (a folder through the run's image cache).
            Some(d) => {
                let opts = DataOptions::recorded(d.layout, d.labels.as_deref(), d.folder.as_ref())?;
                source::load(Some(Path::new(&d.path)), &opts, Some(&run_root), false)?
            }
            None => {
                return Err(Error::input(format!(
                    "{}: no config.json beside it names the training data; pass --data FILE (or --toy)",
                    ckpt_path.display()
                )))
            }
        },
    };
    let data = classes_for(loaded, &cfg, &req.data_options)?;
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
        // What the run's eval.json says: nothing fits these samples.
        return Ok(unscored_json(ckpt.snapshot.state.step, &data, &req.classifier));
    };
    let mut trainer = crate::open_trainer(req.backend, cfg, data)?;
    trainer.restore(&ckpt.snapshot)?;
    Ok(scorer.evaluate(&mut trainer)?.json)
}
