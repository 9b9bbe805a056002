//! The `train` command as a library call: data, run folder, trainer, and the loop's outputs
//! (log lines, metrics.csv, sample grids, loss plot, checkpoints), with resume (train/resume.rs)
//! and a clean stop on Ctrl-C / SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::checkpoint::{self, Checkpoint};
use super::log::LogRow;
use super::progress::Progress;
use super::resume;
use super::run_dir::{resolve_checkpoint, RunDir};
use crate::backend::Backend;
use crate::config::run::DataInfo;
use crate::config::{Given, RunConfig, RunOptions, TrainConfig, TrainOptions};
use crate::data::labels::ClassLabels;
use crate::data::source::{self, DataOptions, Loaded};
use crate::data::toy::{self, Toy};
use crate::data::{self, assets, Dataset};
use crate::error::{Error, Result};
use crate::eval::{unscored_json, write_eval_json, ClassifierChoice, Evaluation, Scorer};
use crate::io::png as images;
use crate::programs::trainer::{fixed_latents, to_data_scale, GanTrainer, StepStats, Trainer};

/// How much the run prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// A progress bar on a terminal, plain log lines otherwise.
    Normal,
    Quiet,
}

#[derive(Clone, Debug)]
pub struct TrainRequest {
    /// A .npy file or a folder of images; None: the built-in MNIST subset (or `toy`; a resumed
    /// run: the data its config.json names).
    pub data: Option<PathBuf>,
    /// How to read it (`--layout`, and for folders `--image-size`, `--channels`,
    /// `--skip-bad-images`, `--cache`); a resumed run keeps its recorded ones unless `given`.
    pub data_options: DataOptions,
    /// Train on a toy 2-D data set drawn from the run's seed instead of `data`, and write the
    /// toy metrics to eval.json at the end.
    pub toy: Option<Toy>,
    pub backend: Backend,
    pub options: TrainOptions,
    /// Length and cadences (a resumed run keeps its own unless `given` names them).
    pub run: RunOptions,
    /// The flags the user gave: a resumed run refuses those that disagree with its checkpoint.
    pub given: Given,
    pub out: Option<PathBuf>,
    pub overwrite: bool,
    pub resume: Option<PathBuf>,
    pub verbosity: Verbosity,
    /// What scores image runs (the toy metrics score `--toy` runs).
    pub classifier: ClassifierChoice,
}

impl TrainRequest {
    /// A request for `data` with every option at its default.
    pub fn new(data: Option<PathBuf>) -> Self {
        TrainRequest {
            data,
            data_options: DataOptions::default(),
            toy: None,
            backend: Backend::Auto,
            options: TrainOptions::default(),
            run: RunOptions::default(),
            given: Given::default(),
            out: None,
            overwrite: false,
            resume: None,
            verbosity: Verbosity::Normal,
            classifier: ClassifierChoice::Auto,
        }
    }
}

pub const DEFAULT_STEPS: u32 = 2000;
/// Image runs train this many epochs unless told otherwise: what the MNIST measurements used.
pub const DEFAULT_IMAGE_EPOCHS: f64 = 30.0;
/// ... and at least this many steps, so that a small folder (64 images: one step an epoch) still
/// trains long enough to learn something (docs/guide.md and docs/colour.md, "How long a run trains").
pub const MIN_IMAGE_STEPS: u32 = 3000;
/// Runs shorter than this get a warning: no model here learns more than blobs in fewer steps.
pub const SHORT_RUN_STEPS: u32 = 500;

/// What a finished (or stopped) run reports.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    pub last: Option<LogRow>,
    pub interrupted: bool,
    pub latest_checkpoint: PathBuf,
    /// The final evaluation (also in eval.json): toy metrics or image metrics, when the run has
    /// something to be judged by.
    pub eval: Option<serde_json::Value>,
}

/// A .npy file, or the built-in digits without one.
pub fn load_data(path: Option<&Path>) -> Result<(Dataset, String)> {
    match path {
        Some(p) => Ok((data::load_npy(p)?, p.display().to_string())),
        None => Ok((assets::default_dataset()?, assets::DEFAULT_DATA_NAME.to_string())),
    }
}

/// Writes samples/NAME: an 8x8 grid for image data (a conditional run's: one row per class, see
/// [`class_grid`], its name left of it), a scatter over the real points for 2-D data.
fn write_samples(trainer: &mut dyn Trainer, data: &Dataset, path: &Path) -> Result<()> {
    let cfg = trainer.config().clone();
    if let Some(shape) = data.image() {
        let (y, n) = match cfg.model.classes {
            0 => (trainer.sample(&fixed_latents(&cfg, 64))?, 64),
            _ => {
                let (z, classes) = class_grid(&cfg);
                (trainer.sample_classes(&z, &classes)?, classes.len())
            }
        };
        let div = if cfg.data_u8 { 255.0 } else { 1.0 };
        let img: Vec<f32> = to_data_scale(&cfg, &y).iter().map(|v| v / div).collect();
        let (c, h, w) = (shape.channels, shape.height, shape.width);
        match cfg.model.classes {
            0 => images::write_image_grid_png(path, &img, n, c, h, w, GRID_COLUMNS),
            _ => images::write_labelled_grid_png(path, &img, n, c, h, w, GRID_COLUMNS, &cfg.class_names),
        }
    } else if data.dim == 2 {
        let fake = to_data_scale(&cfg, &trainer.sample(&fixed_latents(&cfg, 1000))?);
        let n = data.n.min(2000);
        let real: Vec<f32> = (0..n).flat_map(|r| [data.get(r, 0), data.get(r, 1)]).collect();
        images::write_scatter_png(path, &real, &fake, &format!("step {}", trainer.step()))
    } else {
        Ok(())
    }
}

/// Columns of a sample grid.
pub const GRID_COLUMNS: usize = 8;
/// Most rows (classes) of a conditional run's sample grid.
pub const GRID_CLASS_ROWS: usize = 16;

/// A conditional run's sample grid: row r shows class r (the first [`GRID_CLASS_ROWS`] classes),
/// column j the same latent vector j in every row (the first [`GRID_COLUMNS`] of the run's
/// sample latents), so a column keeps its style while the class changes down it. Returns the
/// latents and classes of its samples, row by row.
pub fn class_grid(cfg: &TrainConfig) -> (Vec<f32>, Vec<u32>) {
    let rows = cfg.model.classes.min(GRID_CLASS_ROWS);
    let z = fixed_latents(cfg, GRID_COLUMNS).repeat(rows);
    let classes = (0..rows as u32).flat_map(|r| [r; GRID_COLUMNS]).collect();
    (z, classes)
}

/// Training steps per epoch, an epoch being one pass of D over the data (d_steps batches a step).
fn steps_per_epoch(data: &Dataset, cfg: &TrainConfig) -> usize {
    (data.n / cfg.batch_size / cfg.d_steps.max(1)).max(1)
}

fn save_checkpoint(trainer: &mut dyn Trainer, dir: &RunDir, data: &Dataset, keep: usize) -> Result<PathBuf> {
    let snapshot = trainer.snapshot()?;
    let step = snapshot.state.step;
    let ckpt = Checkpoint {
        config: trainer.config().clone(),
        epoch: step as f64 / steps_per_epoch(data, trainer.config()) as f64,
        data_shape: data.sample_shape.clone(),
        snapshot,
    };
    let path = dir.checkpoint_at(step);
    checkpoint::save(&path, &ckpt)?;
    dir.set_latest(&path)?;
    dir.prune_checkpoints(keep);
    Ok(path)
}

/// `check_finite` on the trainer's current step, reading its statistics back only when this step
/// was not just logged (and so checked already).
fn check_current(trainer: &mut dyn Trainer, logged: Option<&LogRow>, dir: &RunDir) -> Result<()> {
    match logged {
        Some(row) if row.stats.step == trainer.step() => Ok(()),
        _ => check_finite(&trainer.stats()?, dir),
    }
}

/// Stops training when a loss is NaN or infinite, naming the step and the last good checkpoint.
fn check_finite(stats: &StepStats, dir: &RunDir) -> Result<()> {
    if stats.is_finite() {
        return Ok(());
    }
    let kept = if dir.latest().exists() {
        format!("the last good checkpoint is {}", dir.latest().display())
    } else {
        "no checkpoint was written before it".to_string()
    };
    Err(Error::Diverged(format!(
        "training diverged: a loss is not finite at step {} (D loss {}, G loss {}); try a lower \
         --lr. {kept}",
        stats.step, stats.d_loss, stats.g_loss
    )))
}

/// A run's data, and when resuming its checkpoint (loaded once).
struct Inputs {
    loaded: Loaded,
    toy: Option<Toy>,
    ckpt: Option<Checkpoint>,
    /// The `--labels` file the data was read with (given, or recorded by a resumed run).
    labels: Option<PathBuf>,
}

/// The flags of `DataOptions` the user gave win over those a resumed run recorded.
fn merge_data_options(given: &Given, mine: &DataOptions, recorded: DataOptions) -> DataOptions {
    let pick = |id: &str| given.has(id);
    DataOptions {
        layout: if pick("layout") { mine.layout } else { recorded.layout },
        labels: if pick("labels") { mine.labels.clone() } else { recorded.labels },
        image_size: if pick("image_size") { mine.image_size } else { recorded.image_size },
        channels: if pick("channels") { mine.channels } else { recorded.channels },
        skip_bad_images: if pick("skip_bad_images") { mine.skip_bad_images } else { recorded.skip_bad_images },
        cache: if pick("cache") { mine.cache.clone() } else { recorded.cache },
    }
}

/// The data set: the toy one (drawn from the run's seed, for a resumed run its checkpoint's),
/// the file or folder, or the built-in digits. A resumed run given no data reads the data its
/// config.json names, the same way (a folder with its recorded options and cache).
fn load_inputs(req: &TrainRequest) -> Result<Inputs> {
    if req.toy.is_some() && req.data.is_some() {
        return Err(Error::input("pass either a data file or --toy, not both"));
    }
    let ckpt = req.resume.as_deref().map(checkpoint::load).transpose()?;
    let own_dir = req.resume.as_deref().map(RunDir::root_of);
    let previous = own_dir.as_deref().map(RunConfig::read).transpose()?.flatten();
    let recorded = previous.as_ref().map(|p| &p.data);
    let recorded_toy =
        recorded.and_then(|d| d.toy.as_deref()).and_then(|t| <Toy as clap::ValueEnum>::from_str(t, true).ok());
    let toy = req.toy.or(if req.data.is_none() { recorded_toy } else { None });
    let show = req.verbosity == Verbosity::Normal;
    if let Some(t) = toy {
        if req.data_options != DataOptions::default() {
            return Err(Error::input("--layout, --image-size, --channels, --skip-bad-images and --cache are for data files and folders, not --toy"));
        }
        let seed = ckpt.as_ref().map_or(req.options.seed, |c| c.config.seed);
        let data = t.dataset(seed, toy::TOY_SAMPLES)?;
        let loaded = source::Loaded::plain(data, format!("toy:{}", t.name()));
        return Ok(Inputs { loaded, toy, ckpt, labels: None });
    }
    let recorded_path =
        recorded.filter(|d| d.toy.is_none() && d.path != assets::DEFAULT_DATA_NAME).map(|d| PathBuf::from(&d.path));
    let path = req.data.clone().or(recorded_path);
    let opts = match recorded {
        Some(d) if path.as_deref() == Some(Path::new(&d.path)) => merge_data_options(
            &req.given,
            &req.data_options,
            DataOptions::recorded(d.layout, d.labels.as_deref(), d.folder.as_ref())?,
        ),
        _ => req.data_options.clone(),
    };
    let loaded = source::load(path.as_deref(), &opts, own_dir.as_deref(), show)?;
    Ok(Inputs { loaded, toy: None, ckpt, labels: opts.labels })
}

/// The classes of a conditional run's samples (a new `--conditional` run, or a resumed run
/// whose checkpoint is conditional: then the data's classes must be the checkpoint's); None
/// for an unconditional run, which refuses a `--labels` it would not use.
fn classes_of(inputs: &Inputs, conditional: bool) -> Result<Option<ClassLabels>> {
    if !conditional {
        if inputs.labels.is_some() {
            return Err(Error::input(
                "--labels gives the classes of a --conditional run; add --conditional (an unconditional GAN does \
                 not use them)",
            ));
        }
        return Ok(None);
    }
    if let Some(t) = inputs.toy {
        return Err(Error::input(format!(
            "--conditional needs labelled data (an image folder with class subfolders, a .npy with --labels, or \
             the built-in digits); --toy {} has no classes",
            t.name()
        )));
    }
    let classes = inputs.loaded.class_labels()?;
    if let Some(ck) = inputs.ckpt.as_ref().filter(|c| c.config.model.classes > 0) {
        if ck.config.class_names != classes.names {
            return Err(Error::input(format!(
                "the data's classes ({}) are not the checkpoint's ({}); resume on the data it was trained on",
                classes.names.join(", "),
                ck.config.class_names.join(", ")
            )));
        }
    }
    Ok(Some(classes))
}

/// A batch holds distinct samples: a data set smaller than the batch is an error naming it.
fn check_batch(batch: usize, data: &Dataset, name: &str) -> Result<()> {
    if batch <= data.n {
        return Ok(());
    }
    let what = if data.layout == Some(data::Layout::Nhwc) && Path::new(name).is_dir() { "images" } else { "samples" };
    Err(Error::input(format!(
        "--batch-size {batch} is larger than the data set ({name}: {} {what}); a batch holds \
         distinct {what}, so pass --batch-size {} or less",
        data.n, data.n
    )))
}

/// Where a run starts: its configuration, checkpoint (resuming), folder and earlier config.json.
struct Start {
    cfg: TrainConfig,
    ckpt: Option<Checkpoint>,
    dir: RunDir,
    previous: Option<RunConfig>,
}

fn start(
    req: &TrainRequest,
    data: &Dataset,
    data_name: &str,
    toy: Option<Toy>,
    ckpt: Option<Checkpoint>,
) -> Result<Start> {
    match (&req.resume, ckpt) {
        (Some(path), Some(ck)) => {
            let cfg = resume::config_of(&ck, path, &req.options, &req.given, data, data_name)?;
            // Refused before a new --out folder is made, so a refusal leaves nothing behind.
            let recorded = RunConfig::read(&RunDir::root_of(path))?;
            let total = run_length(req, data, toy, steps_per_epoch(data, &cfg), recorded.as_ref())?;
            if ck.snapshot.state.step >= total {
                return Err(Error::input(format!(
                    "the checkpoint is already at step {}; pass a larger --steps to continue",
                    ck.snapshot.state.step
                )));
            }
            schedule(cfg.clone(), true, total)?;
            let (dir, previous) = resume::run_dir(path, req.out.as_deref(), req.overwrite)?;
            Ok(Start { cfg, ckpt: Some(ck), dir, previous })
        }
        _ => {
            check_batch(req.options.batch_size_for(toy), data, data_name)?;
            let classes = data.classes.as_ref().map(|c| c.names.as_slice());
            let cfg = req.options.resolve_with_classes(data, toy, classes)?;
            let dir = RunDir::create(req.out.as_deref(), req.overwrite)?;
            Ok(Start { cfg, ckpt: None, dir, previous: None })
        }
    }
}

/// The run's total length: the flags, else a resumed run's planned one, else the defaults.
fn run_length(
    req: &TrainRequest,
    data: &Dataset,
    toy: Option<Toy>,
    per_epoch: usize,
    previous: Option<&RunConfig>,
) -> Result<u32> {
    let epochs = |e: f64| (e * per_epoch as f64).ceil().min(u32::MAX as f64) as u32;
    Ok(match (req.run.steps, req.run.epochs, previous) {
        (Some(s), _, _) => s,
        (None, Some(e), _) if e.is_finite() && e > 0.0 => epochs(e),
        (None, Some(e), _) => return Err(Error::input(format!("--epochs must be positive, not {e}"))),
        // A resumed run without a length goes on to the length it was started with.
        (None, None, Some(p)) => p.steps,
        (None, None, None) => match toy {
            Some(t) => crate::config::toy_steps(t),
            None if data.image().is_some() => epochs(DEFAULT_IMAGE_EPOCHS).max(MIN_IMAGE_STEPS),
            None => DEFAULT_STEPS,
        },
    })
}

/// The configuration a new run of `req` trains with on `data` (its schedule fixed to the run's
/// length), as `train` resolves it: what `export-web` exports for the same flags.
pub fn new_run_config(req: &TrainRequest, data: &Dataset, data_name: &str, toy: Option<Toy>) -> Result<TrainConfig> {
    check_batch(req.options.batch_size_for(toy), data, data_name)?;
    let cfg = req.options.resolve_for(data, toy)?;
    let total = run_length(req, data, toy, steps_per_epoch(data, &cfg), None)?;
    Ok(cfg.with_run_length(total))
}

/// What the run folder keeps of its checkpoints, and what each weighs.
pub fn checkpoint_note(cfg: &TrainConfig, keep: usize) -> String {
    let mb = checkpoint::tensor_bytes(cfg) as f64 / 1e6;
    let kept = match keep {
        0 => "all are kept".to_string(),
        1 => "the newest is kept".to_string(),
        n => format!("the newest {n} are kept"),
    };
    format!(
        "checkpoints: {mb:.1} MB each (weights and Adam's state, for an exact resume); {kept} \
         (--keep-checkpoints N, 0: all), latest.safetensors links to the newest"
    )
}

/// The warning a new run of `total` steps gets when it is too short to learn anything.
fn short_run_warning(total: u32, per_epoch: usize, resumed: bool) -> Option<String> {
    if resumed || total >= SHORT_RUN_STEPS {
        return None;
    }
    let epochs = total as f64 / per_epoch.max(1) as f64;
    Some(format!(
        "warning: this run trains {total} steps ({epochs:.1} epochs); in under {SHORT_RUN_STEPS} steps a GAN \
         rarely learns more than blurs: try --steps {MIN_IMAGE_STEPS} or more"
    ))
}

/// Fixes the learning-rate schedule of a new run; a resumed run keeps its own, so it cannot
/// train past the schedule's end.
fn schedule(cfg: TrainConfig, resumed: bool, total: u32) -> Result<TrainConfig> {
    if !resumed {
        return Ok(cfg.with_run_length(total));
    }
    if cfg.lr_decay_steps() > 0 && total > cfg.lr_decay_end {
        return Err(Error::input(format!(
            "this run's learning rate decays to 0 at step {} (--lr-decay {}), so it cannot \
             train to step {total}; start a new run for a longer one",
            cfg.lr_decay_end, cfg.lr_decay
        )));
    }
    Ok(cfg)
}

pub fn train(req: &TrainRequest, stop: Arc<AtomicBool>) -> Result<TrainSummary> {
    // --resume takes a run folder too (its latest checkpoint).
    let resume = req.resume.as_deref().map(resolve_checkpoint).transpose()?;
    let req = &TrainRequest { resume, ..req.clone() };
    let inputs = load_inputs(req)?;
    // A resumed run is conditional as its checkpoint is (a --conditional that disagrees is
    // refused beside the other flags, in `resume::config_of`).
    let conditional = req.options.conditional || inputs.ckpt.as_ref().is_some_and(|c| c.config.model.classes > 0);
    let classes = classes_of(&inputs, conditional)?;
    let Inputs { mut loaded, toy, ckpt, labels } = inputs;
    let show = req.verbosity == Verbosity::Normal;
    if show {
        loaded.notes.iter().for_each(|n| eprintln!("{n}"));
    }
    let data_name = loaded.name.clone();
    // The data moves into the Arc the trainer shares; `loaded` keeps the folder's records.
    let mut data = std::mem::replace(&mut loaded.data, Dataset::from_u8(1, 1, vec![0])?);
    data.classes = classes;
    let data = Arc::new(data);
    let Start { cfg, ckpt, dir, previous } = start(req, &data, &data_name, toy, ckpt)?;
    loaded.write_run_cache(&dir.root, &data)?;
    let cadence = resume::cadences(&req.run, &req.given, previous.as_ref());
    let scorer = Scorer::new(toy, &req.classifier, &data)?;
    let per_epoch = steps_per_epoch(&data, &cfg);
    let total = run_length(req, &data, toy, per_epoch, previous.as_ref())?;
    let cfg = schedule(cfg, ckpt.is_some(), total)?;
    let mut trainer = crate::open_trainer(req.backend, cfg.clone(), data.clone())?;
    if let Some(ck) = &ckpt {
        trainer.restore(&ck.snapshot)?;
        dir.truncate_metrics(trainer.step())?;
    }
    let run_cfg = RunConfig {
        version: crate::config::run::RUN_CONFIG_VERSION,
        train: cfg,
        data: DataInfo {
            path: data_name.clone(),
            toy: toy.map(|t| t.name().to_string()),
            n: data.n,
            sample_shape: data.sample_shape.clone(),
            dtype: data.dtype.clone(),
            layout: data.layout,
            image: data.image(),
            folder: loaded.folder.clone(),
            labels: labels.filter(|_| data.classes.is_some()).map(|l| l.display().to_string()),
        },
        backend: trainer.backend().name().into(),
        device: trainer.device_name(),
        steps: total,
        steps_per_epoch: per_epoch,
        log_every: cadence.log_every,
        sample_every: cadence.sample_every,
        checkpoint_every: cadence.checkpoint_every,
        eval_every: cadence.eval_every,
        classifier: scorer.as_ref().and_then(|s| s.classifier_name()),
        resumed_from: req.resume.as_ref().map(|p| p.display().to_string()),
        shadergan_version: env!("CARGO_PKG_VERSION").into(),
    };
    run_cfg.write(&dir.root)?;
    if show {
        let image = data.image().filter(|i| i.channels > 1).map_or(String::new(), |i| format!(", {}", i.describe()));
        eprintln!(
            "data: {data_name}: {} samples of {} ({}{image}); run folder: {}",
            data.n,
            data.shape_text(),
            data.dtype,
            dir.root.display()
        );
        eprintln!("backend: {}, {}", trainer.backend().name(), trainer.device_name());
        eprintln!("{}", checkpoint_note(trainer.config(), req.run.keep_checkpoints));
        if let Some(w) = short_run_warning(total, per_epoch, ckpt.is_some()) {
            eprintln!("{w}");
        }
    }
    let classifier = req.classifier.clone();
    let keep = req.run.keep_checkpoints;
    let mut run = Run { trainer, data, dir, cadence, keep, scorer, classifier, total, per_epoch, show };
    let (last, interrupted, last_eval) = run.train_loop(&stop)?;
    run.finish(last, interrupted, last_eval)
}

/// A run in progress: the trainer and everything the loop writes to.
struct Run {
    trainer: GanTrainer,
    data: Arc<Dataset>,
    dir: RunDir,
    cadence: RunOptions,
    keep: usize,
    scorer: Option<Scorer>,
    /// What was asked to score it (for eval.json when nothing fits).
    classifier: ClassifierChoice,
    total: u32,
    per_epoch: usize,
    show: bool,
}

/// A cadence of `n` steps (0: never).
fn every(n: u32) -> u32 {
    if n == 0 {
        u32::MAX
    } else {
        n
    }
}

impl Run {
    /// Trains to the end (or a stop request); returns the last logged row, whether it was
    /// stopped, and the last evaluation.
    fn train_loop(&mut self, stop: &AtomicBool) -> Result<(Option<LogRow>, bool, Option<Evaluation>)> {
        let c = &self.cadence;
        let (log_every, sample_every, ckpt_every) =
            (every(c.log_every), every(c.sample_every), every(c.checkpoint_every));
        // Evaluations need something to judge by; without it --eval-every does nothing.
        let eval_every = if self.scorer.is_some() { every(c.eval_every) } else { u32::MAX };
        let bar = Progress::new(self.show, self.total, self.trainer.step(), self.per_epoch);
        let (mut last, mut last_eval, mut stopped) = (None, None, false);
        let (mut t0, mut s0) = (Instant::now(), self.trainer.step());
        while self.trainer.step() < self.total {
            // Stop at the next log, sample or checkpoint step; at most 50 steps between stop checks.
            let at = self.trainer.step();
            let next = [log_every, sample_every, ckpt_every, eval_every]
                .iter()
                .map(|&e| (at / e + 1).saturating_mul(e))
                .chain([self.total, at + 50])
                .min()
                .expect("non-empty");
            self.trainer.train(next - at)?;
            let step = self.trainer.step();
            let evaluate_now = step.is_multiple_of(eval_every) || (step == self.total && eval_every != u32::MAX);
            if step.is_multiple_of(log_every) || step == self.total || evaluate_now {
                let row = LogRow::measure(self.trainer.stats()?, self.per_epoch, step - s0, t0.elapsed());
                let eval = self.log(&row, evaluate_now, &bar)?;
                last_eval = eval.or(last_eval);
                last = Some(row);
                (t0, s0) = (Instant::now(), step);
            }
            bar.update(step, last.as_ref());
            if step.is_multiple_of(sample_every) {
                self.write_outputs(&self.dir.sample_at(step))?;
            }
            if step.is_multiple_of(ckpt_every) {
                // Never write a diverged state over the last good checkpoint.
                check_current(&mut self.trainer, last.as_ref(), &self.dir)?;
                save_checkpoint(&mut self.trainer, &self.dir, &self.data, self.keep)?;
            }
            if stop.load(Ordering::SeqCst) {
                stopped = true;
                break;
            }
        }
        bar.finish();
        Ok((last, stopped, last_eval))
    }

    /// One log row: checked, evaluated when due, appended to metrics.csv and printed.
    fn log(&mut self, row: &LogRow, evaluate: bool, bar: &Progress) -> Result<Option<Evaluation>> {
        check_finite(&row.stats, &self.dir)?;
        let eval = match (&mut self.scorer, evaluate) {
            (Some(s), true) => Some(s.evaluate(&mut self.trainer)?),
            _ => None,
        };
        let columns = self.scorer.as_ref().map_or(vec![], |s| s.columns());
        self.dir.append_metrics(row, &columns, eval.as_ref().map(|e| e.cells.as_slice()))?;
        bar.println(row.line());
        if let Some(e) = &eval {
            bar.println(format!("eval {}", e.line));
        }
        Ok(eval)
    }

    /// A sample grid (or scatter plot) at `path` and the loss plot.
    fn write_outputs(&mut self, path: &Path) -> Result<()> {
        write_samples(&mut self.trainer, &self.data, path)?;
        let (s, d, g) = self.dir.read_losses();
        images::write_loss_png(&self.dir.root.join("loss.png"), &s, &d, &g)
    }

    /// The final checkpoint, samples, loss plot and evaluation (eval.json).
    fn finish(
        mut self,
        last: Option<LogRow>,
        interrupted: bool,
        last_eval: Option<Evaluation>,
    ) -> Result<TrainSummary> {
        let step = self.trainer.step();
        if !self.dir.checkpoint_at(step).exists() {
            check_current(&mut self.trainer, last.as_ref(), &self.dir)?;
            save_checkpoint(&mut self.trainer, &self.dir, &self.data, self.keep)?;
        }
        self.write_outputs(&self.dir.samples().join("final.png"))?;
        // The final evaluation: reuse the loop's when it was at this very step.
        let eval = match self.scorer.as_mut() {
            Some(s) => {
                let e = match last_eval {
                    Some(e) if e.json["step"] == json!(step) => e,
                    _ => {
                        let e = s.evaluate(&mut self.trainer)?;
                        if self.show {
                            println!("eval {}", e.line);
                        }
                        e
                    }
                };
                write_eval_json(&self.dir.root, &e.json)?;
                Some(e.json)
            }
            // Nothing fits the data: eval.json says so (unless --classifier none asked for none).
            None if self.classifier != ClassifierChoice::None => {
                let json = unscored_json(step, &self.data, &self.classifier);
                if self.show {
                    println!("eval: not scored: {}", json["reason"].as_str().unwrap_or_default());
                }
                write_eval_json(&self.dir.root, &json)?;
                Some(json)
            }
            None => None,
        };
        let dir = &self.dir;
        Ok(TrainSummary { run_dir: dir.root.clone(), last, interrupted, latest_checkpoint: dir.latest(), eval })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(n: usize) -> Dataset {
        let shape = crate::data::ImageShape { channels: 3, height: 32, width: 32 };
        Dataset::from_u8_images(n, shape, vec![7; n * 3 * 32 * 32]).unwrap()
    }

    #[test]
    fn small_folders_train_at_least_the_step_floor() {
        let req = TrainRequest::new(None);
        // 64 images at batch 64: one step an epoch, so 30 epochs alone would be 30 steps.
        assert_eq!(run_length(&req, &images(64), None, 1, None).unwrap(), MIN_IMAGE_STEPS);
        // Big data sets keep their 30 epochs.
        assert_eq!(run_length(&req, &images(64), None, 937, None).unwrap(), 28_110);
        // What the user asks for is what runs, short or not.
        let mut short = TrainRequest::new(None);
        short.run.steps = Some(30);
        assert_eq!(run_length(&short, &images(64), None, 1, None).unwrap(), 30);
        short.run.steps = None;
        short.run.epochs = Some(3.0);
        assert_eq!(run_length(&short, &images(64), None, 1, None).unwrap(), 3);
    }

    #[test]
    fn short_new_runs_are_warned() {
        let w = short_run_warning(30, 1, false).unwrap();
        assert!(w.starts_with("warning: this run trains 30 steps (30.0 epochs)"), "{w}");
        assert!(short_run_warning(SHORT_RUN_STEPS, 1, false).is_none());
        assert!(short_run_warning(30, 1, true).is_none(), "a resumed run was warned when it started");
    }
}
