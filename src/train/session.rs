//! The `train` command as a library call: data, run folder, trainer, and the loop's outputs
//! (log lines, metrics.csv, sample grids, loss plot, checkpoints), with resume and a clean stop on
//! Ctrl-C / SIGTERM.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::backend::Backend;
use crate::config::{TrainConfig, TrainOptions};
use crate::data::toy::{self, Toy};
use crate::data::Dataset;
use crate::data::{self, assets};
use crate::error::{Error, Result};
use crate::eval::{write_eval_json, ClassifierChoice, Scorer};
use crate::io::png as images;
use crate::programs::trainer::{fixed_latents, to_data_scale, Trainer};
use crate::train::checkpoint::{self, Checkpoint};
use crate::train::log::LogRow;
use crate::train::run_dir::RunDir;

/// How much the run prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// A progress bar on a terminal, plain log lines otherwise.
    Normal,
    Quiet,
}

#[derive(Clone, Debug)]
pub struct TrainRequest {
    /// None: the built-in MNIST subset (or `toy`).
    pub data: Option<PathBuf>,
    /// Train on a toy 2-D data set drawn from the run's seed instead of `data`, and write the
    /// toy metrics to eval.json at the end.
    pub toy: Option<Toy>,
    pub backend: Backend,
    pub options: TrainOptions,
    /// Total steps; None: `epochs`, or `DEFAULT_IMAGE_EPOCHS` epochs for images, else 2,000.
    pub steps: Option<u32>,
    pub epochs: Option<f64>,
    /// Cadences; None: the resumed run's own (from its config.json), else the defaults.
    pub log_every: Option<u32>,
    pub sample_every: Option<u32>,
    pub checkpoint_every: Option<u32>,
    pub keep_checkpoints: usize,
    pub out: Option<PathBuf>,
    pub overwrite: bool,
    pub resume: Option<PathBuf>,
    pub verbosity: Verbosity,
    /// What scores image runs (the toy metrics score `--toy` runs).
    pub classifier: ClassifierChoice,
    /// Evaluate every this many steps into metrics.csv; 0: only at the end. None: the resumed
    /// run's own, else 0.
    pub eval_every: Option<u32>,
}

pub const DEFAULT_STEPS: u32 = 2000;
/// Image runs train this many epochs unless told otherwise: what the MNIST measurements used.
pub const DEFAULT_IMAGE_EPOCHS: f64 = 30.0;
pub const DEFAULT_LOG_EVERY: u32 = 100;
pub const DEFAULT_SAMPLE_EVERY: u32 = 500;
pub const DEFAULT_CHECKPOINT_EVERY: u32 = 1000;

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

pub fn load_data(path: Option<&Path>) -> Result<(Dataset, String)> {
    match path {
        Some(p) => Ok((data::load_npy(p)?, p.display().to_string())),
        None => Ok((assets::default_dataset()?, assets::DEFAULT_DATA_NAME.to_string())),
    }
}

/// Writes samples/NAME: an 8x8 grid for image data, a scatter over the real points for 2-D data.
fn write_samples(trainer: &mut dyn Trainer, data: &Dataset, path: &Path) -> Result<()> {
    let cfg = trainer.config().clone();
    if let Some((h, w)) = data.image_hw() {
        let y = trainer.sample(&fixed_latents(&cfg, 64))?;
        let div = if cfg.data_u8 { 255.0 } else { 1.0 };
        let img: Vec<f32> = to_data_scale(&cfg, &y).iter().map(|v| v / div).collect();
        images::write_grid_png(path, &img, 64, h, w, 8)
    } else if data.dim == 2 {
        let fake = to_data_scale(&cfg, &trainer.sample(&fixed_latents(&cfg, 1000))?);
        let n = data.n.min(2000);
        let real: Vec<f32> = (0..n).flat_map(|r| [data.get(r, 0), data.get(r, 1)]).collect();
        images::write_scatter_png(path, &real, &fake, &format!("step {}", trainer.step()))
    } else {
        Ok(())
    }
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

/// Model and optimizer flags the user set (values other than the defaults, or given activations)
/// that disagree with a checkpoint's configuration, as "--flag VALUE (checkpoint: VALUE)".
fn flags_differing_from(opts: &TrainOptions, ck: &TrainConfig) -> Vec<String> {
    let (d, m) = (TrainOptions::default(), &ck.model);
    let mut out = vec![];
    let mut differ = |flag: &str, mine: String, default: String, theirs: String| {
        if mine != default && mine != theirs {
            out.push(format!("{flag} {mine} (checkpoint: {theirs})"));
        }
    };
    let list = |v: &[usize]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
    differ("--latent-dim", opts.latent_dim.to_string(), d.latent_dim.to_string(), m.latent_dim.to_string());
    differ("--g-hidden", list(&opts.g_hidden), list(&d.g_hidden), list(&m.g_hidden));
    differ("--d-hidden", list(&opts.d_hidden), list(&d.d_hidden), list(&m.d_hidden));
    for (flag, mine, theirs) in [
        ("--g-activation", opts.g_activation, m.g_activation),
        ("--d-activation", opts.d_activation, m.d_activation),
        ("--g-output", opts.g_output, m.g_output),
    ] {
        if let Some(a) = mine {
            differ(flag, format!("{a:?}"), String::new(), format!("{theirs:?}"));
        }
    }
    differ("--pack", opts.pack.to_string(), d.pack.to_string(), m.pack.to_string());
    differ("--batch-size", opts.batch_size.to_string(), d.batch_size.to_string(), ck.batch_size.to_string());
    differ("--seed", opts.seed.to_string(), d.seed.to_string(), ck.seed.to_string());
    differ("--beta1", opts.beta1.to_string(), d.beta1.to_string(), ck.beta1.to_string());
    differ("--beta2", opts.beta2.to_string(), d.beta2.to_string(), ck.beta2.to_string());
    differ("--d-steps", opts.d_steps.to_string(), d.d_steps.to_string(), ck.d_steps.to_string());
    for (flag, mine, theirs) in [
        ("--d-dropout", opts.d_dropout, ck.d_dropout),
        ("--g-ema", opts.g_ema, ck.g_ema),
        ("--lr-decay", opts.lr_decay, ck.lr_decay),
        ("--lr", opts.lr, ck.lr),
    ] {
        if let Some(v) = mine {
            differ(flag, v.to_string(), String::new(), theirs.to_string());
        }
    }
    differ("--label-smoothing", opts.real_label.to_string(), d.real_label.to_string(), ck.real_label.to_string());
    differ("--precision", opts.precision.name().into(), d.precision.name().into(), ck.precision.name().into());
    out
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
fn check_finite(stats: &crate::programs::trainer::StepStats, dir: &RunDir) -> Result<()> {
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

pub fn train(req: &TrainRequest, stop: Arc<AtomicBool>) -> Result<TrainSummary> {
    let mut preloaded = None;
    let (data, data_name) = match req.toy {
        Some(t) => {
            if req.data.is_some() {
                return Err(Error::input("pass either a data file or --toy, not both"));
            }
            // A resumed toy run draws the same points: from its checkpoint's seed.
            let seed = match &req.resume {
                Some(path) => {
                    let ckpt = checkpoint::load(path)?;
                    let seed = ckpt.config.seed;
                    preloaded = Some(ckpt);
                    seed
                }
                None => req.options.seed,
            };
            (t.dataset(seed, toy::TOY_SAMPLES)?, format!("toy:{}", t.name()))
        }
        None => load_data(req.data.as_deref())?,
    };
    let data = Arc::new(data);
    let (cfg, resume_from, dir) = match &req.resume {
        Some(path) => {
            let ckpt = match preloaded.take() {
                Some(c) => c,
                None => checkpoint::load(path)?,
            };
            if ckpt.config.model.data_dim != data.dim {
                return Err(Error::input(format!(
                    "{}: the checkpoint was trained on samples of {} values; {data_name} has {}",
                    path.display(),
                    ckpt.config.model.data_dim,
                    data.dim
                )));
            }
            let differ = flags_differing_from(&req.options, &ckpt.config);
            if !differ.is_empty() {
                return Err(Error::input(format!(
                    "{}: the checkpoint was trained with other settings: {}; a resumed run keeps \
                     the checkpoint's model and optimizer, so drop these flags (or start a new run)",
                    path.display(),
                    differ.join(", ")
                )));
            }
            ckpt.config.validate(data.n)?;
            (ckpt.config.clone(), Some(ckpt), RunDir::of_checkpoint(path)?)
        }
        None => {
            let cfg = req.options.resolve(&data)?;
            (cfg, None, RunDir::create(req.out.as_deref(), req.overwrite)?)
        }
    };
    // A resumed run keeps its cadences unless the flags change them.
    let previous: serde_json::Value = std::fs::read_to_string(dir.root.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(|_| resume_from.is_some())
        .unwrap_or_default();
    let cadence = |flag: Option<u32>, key: &str, default: u32| {
        flag.or_else(|| previous[key].as_u64().map(|v| v as u32)).unwrap_or(default)
    };
    let log_every_flag = cadence(req.log_every, "log_every", DEFAULT_LOG_EVERY);
    let sample_every_flag = cadence(req.sample_every, "sample_every", DEFAULT_SAMPLE_EVERY);
    let ckpt_every_flag = cadence(req.checkpoint_every, "checkpoint_every", DEFAULT_CHECKPOINT_EVERY);
    let eval_every_flag = cadence(req.eval_every, "eval_every", 0);
    let mut scorer = Scorer::new(req.toy, &req.classifier, &data)?;
    let classifier_name = match &scorer {
        Some(Scorer::Image { name, .. }) => Some(name.clone()),
        _ => None,
    };
    let eval_columns = scorer.as_ref().map_or(&[][..], |s| s.columns());
    let steps_per_epoch = steps_per_epoch(&data, &cfg);
    let planned = previous["steps"].as_u64().map(|s| s.min(u32::MAX as u64) as u32);
    let total = match (req.steps, req.epochs) {
        (Some(s), _) => s,
        (None, Some(e)) if e.is_finite() && e > 0.0 => (e * steps_per_epoch as f64).ceil().min(u32::MAX as f64) as u32,
        (None, Some(e)) => return Err(Error::input(format!("--epochs must be positive, not {e}"))),
        // A resumed run without a length goes on to the length it was started with.
        (None, None) if planned.is_some() => planned.unwrap_or_default(),
        (None, None) if data.image_hw().is_some() && req.toy.is_none() => {
            (DEFAULT_IMAGE_EPOCHS * steps_per_epoch as f64).ceil().min(u32::MAX as f64) as u32
        }
        (None, None) => DEFAULT_STEPS,
    };
    let cfg = match &resume_from {
        None => cfg.with_run_length(total),
        // The schedule was fixed when the run started; past its end the rate is 0.
        Some(_) if cfg.lr_decay_steps() > 0 && total > cfg.lr_decay_end => {
            return Err(Error::input(format!(
                "this run's learning rate decays to 0 at step {} (--lr-decay {}), so it cannot \
                 train to step {total}; start a new run for a longer one",
                cfg.lr_decay_end, cfg.lr_decay
            )));
        }
        Some(_) => cfg,
    };
    let mut trainer = crate::open_trainer(req.backend, cfg.clone(), data.clone())?;
    if let Some(ckpt) = &resume_from {
        trainer.restore(&ckpt.snapshot)?;
        if trainer.step() >= total {
            return Err(Error::input(format!(
                "the checkpoint is already at step {}; pass a larger --steps to continue",
                trainer.step()
            )));
        }
        dir.truncate_metrics(trainer.step())?;
    }
    dir.write_config(&json!({
        "train": cfg,
        "data": {
            "path": data_name,
            "toy": req.toy.map(|t| t.name()),
            "n": data.n,
            "sample_shape": data.sample_shape,
            "dtype": data.dtype,
        },
        "backend": format!("{:?}", trainer.backend()).to_lowercase(),
        "device": trainer.device_name(),
        "steps": total,
        "steps_per_epoch": steps_per_epoch,
        "log_every": log_every_flag,
        "sample_every": sample_every_flag,
        "checkpoint_every": ckpt_every_flag,
        "eval_every": eval_every_flag,
        "classifier": classifier_name,
        "resumed_from": req.resume.as_ref().map(|p| p.display().to_string()),
        "shadergan_version": env!("CARGO_PKG_VERSION"),
    }))?;

    let show = req.verbosity == Verbosity::Normal;
    if show {
        eprintln!(
            "data: {data_name}: {} samples of {} ({}); run folder: {}",
            data.n,
            data.sample_shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x"),
            data.dtype,
            dir.root.display()
        );
        eprintln!("backend: {:?} on {}", trainer.backend(), trainer.device_name());
    }
    let bar = (show && std::io::stderr().is_terminal()).then(|| {
        let pb = indicatif::ProgressBar::new(total as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} step {pos}/{len}  {msg}  ETA {eta}")
                .expect("valid template"),
        );
        pb.set_position(trainer.step() as u64);
        pb
    });

    let every = |n: u32| if n == 0 { u32::MAX } else { n };
    let (log_every, sample_every, ckpt_every) =
        (every(log_every_flag), every(sample_every_flag), every(ckpt_every_flag));
    // Evaluations need something to judge by; without it --eval-every does nothing.
    let eval_every = if scorer.is_some() { every(eval_every_flag) } else { u32::MAX };
    let mut last_eval = None;
    let (mut t0, mut s0) = (Instant::now(), trainer.step());
    let mut last = None;
    let mut interrupted = false;
    while trainer.step() < total {
        // Stop at the next log, sample or checkpoint step; at most 50 steps between stop checks.
        let at = trainer.step();
        let next = [log_every, sample_every, ckpt_every, eval_every]
            .iter()
            .map(|&e| (at / e + 1).saturating_mul(e))
            .chain([total, at + 50])
            .min()
            .expect("non-empty");
        trainer.train(next - at)?;
        let step = trainer.step();
        if let Some(b) = &bar {
            b.set_position(step as u64);
            let losses = last.as_ref().map_or(String::new(), |r: &LogRow| {
                format!("  D {:.3}  G {:.3}  {:.1} steps/s", r.stats.d_loss, r.stats.g_loss, r.steps_per_s)
            });
            b.set_message(format!("epoch {:.2}{losses}", step as f64 / steps_per_epoch as f64));
        }
        let evaluate_now = step % eval_every == 0 || (step == total && eval_every != u32::MAX);
        if step % log_every == 0 || step == total || evaluate_now {
            let row = LogRow::measure(trainer.stats()?, steps_per_epoch, step - s0, t0.elapsed());
            check_finite(&row.stats, &dir)?;
            let eval = match (&mut scorer, evaluate_now) {
                (Some(s), true) => Some(s.evaluate(&mut trainer)?),
                _ => None,
            };
            dir.append_metrics(&row, eval_columns, eval.as_ref().map(|e| e.cells.as_slice()))?;
            let lines = [Some(row.line()), eval.as_ref().map(|e| format!("eval {}", e.line))];
            for line in lines.into_iter().flatten() {
                match &bar {
                    Some(b) => b.println(line),
                    None if show => println!("{line}"),
                    None => {}
                }
            }
            if eval.is_some() {
                last_eval = eval;
            }
            last = Some(row);
            (t0, s0) = (Instant::now(), step);
        }
        if step % sample_every == 0 {
            write_samples(&mut trainer, &data, &dir.sample_at(step))?;
            let (s, d, g) = dir.read_losses();
            images::write_loss_png(&dir.root.join("loss.png"), &s, &d, &g)?;
        }
        if step % ckpt_every == 0 {
            // Never write a diverged state over the last good checkpoint.
            check_current(&mut trainer, last.as_ref(), &dir)?;
            save_checkpoint(&mut trainer, &dir, &data, req.keep_checkpoints)?;
        }
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
    }
    let step = trainer.step();
    if !dir.checkpoint_at(step).exists() {
        check_current(&mut trainer, last.as_ref(), &dir)?;
        save_checkpoint(&mut trainer, &dir, &data, req.keep_checkpoints)?;
    }
    write_samples(&mut trainer, &data, &dir.samples().join("final.png"))?;
    let (s, d, g) = dir.read_losses();
    images::write_loss_png(&dir.root.join("loss.png"), &s, &d, &g)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // The final evaluation: reuse the loop's when it was at this very step.
    let eval = match scorer.as_mut() {
        Some(s) => {
            let e = match last_eval.take() {
                Some(e) if e.json["step"] == json!(trainer.step()) => e,
                _ => {
                    let e = s.evaluate(&mut trainer)?;
                    if show {
                        println!("eval {}", e.line);
                    }
                    e
                }
            };
            write_eval_json(&dir.root, &e.json)?;
            Some(e.json)
        }
        None => None,
    };
    Ok(TrainSummary { run_dir: dir.root.clone(), last, interrupted, latest_checkpoint: dir.latest(), eval })
}
