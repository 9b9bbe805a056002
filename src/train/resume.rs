//! Continuing a run from a checkpoint: its model and optimizer are kept, so a flag the user gave
//! that disagrees with them is refused; the run keeps its cadences and length unless the flags
//! change them; it goes on in its own folder, or in `--out` with its config.json and metrics.csv
//! carried over.

use std::path::Path;

use super::checkpoint::Checkpoint;
use super::run_dir::RunDir;
use crate::config::{Given, RunConfig, RunOptions, TrainConfig, TrainOptions};
use crate::data::Dataset;
use crate::error::{Error, Result};

/// A flag of `TrainOptions`: its clap id, its spelling, the value the user gave and the
/// checkpoint's, both as the flag spells them.
type FlagCheck = (&'static str, &'static str, fn(&TrainOptions) -> String, fn(&TrainConfig) -> String);

fn list(v: &[usize]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

fn act(a: Option<crate::kernels::activation::Activation>) -> String {
    a.map_or_else(String::new, |a| a.flag_name())
}

/// Every model and optimizer flag, as the user gives it and as a checkpoint holds it.
const FLAGS: &[FlagCheck] = &[
    ("arch", "--arch", |o| opt(o.arch.map(|a| a.name())), |c| c.model.arch.name().into()),
    ("g_channels", "--g-channels", |o| o.g_channels.to_string(), |c| c.model.g_channels.to_string()),
    ("d_channels", "--d-channels", |o| o.d_channels.to_string(), |c| c.model.d_channels.to_string()),
    ("d_norm", "--d-norm", |o| opt(o.d_norm.map(|n| n.name())), |c| c.model.d_norm.name().into()),
    ("loss", "--loss", |o| opt(o.loss.map(|l| l.name())), |c| c.loss.name().into()),
    ("augment", "--augment", |o| opt(o.augment), |c| c.model.augment.name()),
    ("g_fc_hidden", "--g-fc-hidden", |o| opt(o.g_fc_hidden), |c| c.model.g_fc_hidden.to_string()),
    ("d_fc_hidden", "--d-fc-hidden", |o| opt(o.d_fc_hidden), |c| c.model.d_fc_hidden.to_string()),
    ("latent_dim", "--latent-dim", |o| opt(o.latent_dim), |c| c.model.latent_dim.to_string()),
    ("g_hidden", "--g-hidden", |o| list(&o.g_hidden), |c| list(&c.model.g_hidden)),
    ("d_hidden", "--d-hidden", |o| list(&o.d_hidden), |c| list(&c.model.d_hidden)),
    ("g_activation", "--g-activation", |o| act(o.g_activation), |c| c.model.g_activation.flag_name()),
    ("d_activation", "--d-activation", |o| act(o.d_activation), |c| c.model.d_activation.flag_name()),
    ("g_output", "--g-output", |o| act(o.g_output), |c| c.model.g_output.flag_name()),
    ("pack", "--pack", |o| opt(o.pack), |c| c.model.pack.to_string()),
    ("batch_size", "--batch-size", |o| opt(o.batch_size), |c| c.batch_size.to_string()),
    ("seed", "--seed", |o| o.seed.to_string(), |c| c.seed.to_string()),
    ("lr", "--lr", |o| opt(o.lr), |c| c.lr.to_string()),
    ("d_lr", "--d-lr", |o| opt(o.d_lr), |c| c.d_lr().to_string()),
    ("beta1", "--beta1", |o| o.beta1.to_string(), |c| c.beta1.to_string()),
    ("beta2", "--beta2", |o| o.beta2.to_string(), |c| c.beta2.to_string()),
    ("real_label", "--label-smoothing", |o| o.real_label.to_string(), |c| c.real_label.to_string()),
    ("d_dropout", "--d-dropout", |o| opt(o.d_dropout), |c| c.d_dropout.to_string()),
    ("d_steps", "--d-steps", |o| o.d_steps.to_string(), |c| c.d_steps.to_string()),
    ("precision", "--precision", |o| o.precision.name().into(), |c| c.precision.name().into()),
    ("g_ema", "--g-ema", |o| opt(o.g_ema), |c| c.g_ema.to_string()),
    ("lr_decay", "--lr-decay", |o| opt(o.lr_decay), |c| c.lr_decay.to_string()),
    ("conditional", "--conditional", |o| o.conditional.to_string(), |c| (c.model.classes > 0).to_string()),
];

/// The flags the user gave that disagree with the checkpoint, as "--flag VALUE (checkpoint:
/// VALUE)". A flag given with the checkpoint's own value is fine; one left out always is.
pub fn flags_differing(opts: &TrainOptions, given: &Given, ck: &TrainConfig) -> Vec<String> {
    let mut out = vec![];
    for &(id, flag, mine, theirs) in FLAGS {
        let (m, t) = (mine(opts), theirs(ck));
        if given.has(id) && m != t {
            out.push(format!("{flag} {m} (checkpoint: {t})"));
        }
    }
    out
}

/// The checkpoint's configuration, checked against the data and the flags.
pub fn config_of(
    ckpt: &Checkpoint,
    path: &Path,
    opts: &TrainOptions,
    given: &Given,
    data: &Dataset,
    data_name: &str,
) -> Result<TrainConfig> {
    if ckpt.config.model.data_dim != data.dim {
        return Err(Error::input(format!(
            "{}: the checkpoint was trained on samples of {} values; {data_name} has {}",
            path.display(),
            ckpt.config.model.data_dim,
            data.dim
        )));
    }
    let differ = flags_differing(opts, given, &ckpt.config);
    if !differ.is_empty() {
        return Err(Error::input(format!(
            "{}: the checkpoint was trained with other settings: {}; a resumed run keeps the \
             checkpoint's model and optimizer, so drop these flags (or start a new run)",
            path.display(),
            differ.join(", ")
        )));
    }
    ckpt.config.validate(data.n)?;
    Ok(ckpt.config.clone())
}

/// Where a resumed run goes on: the checkpoint's own run folder, or `out` (a new folder, which
/// gets the run's config.json and metrics.csv), and the run's config.json as it was.
pub fn run_dir(ckpt_path: &Path, out: Option<&Path>, overwrite: bool) -> Result<(RunDir, Option<RunConfig>)> {
    let own = RunDir::root_of(ckpt_path);
    let previous = RunConfig::read(&own)?;
    let same = |o: &Path| o.canonicalize().ok().is_some_and(|o| own.canonicalize().is_ok_and(|own| own == o));
    let dir = match out {
        Some(o) if !same(o) => {
            let dir = RunDir::create(Some(o), overwrite)?;
            dir.carry_over(&own)?;
            dir
        }
        _ => RunDir::of_checkpoint(ckpt_path)?,
    };
    Ok((dir, previous))
}

/// The cadences of a run: the flags given, else a resumed run's own, else the defaults.
pub fn cadences(run: &RunOptions, given: &Given, previous: Option<&RunConfig>) -> RunOptions {
    let pick = |id: &str, flag: u32, prev: fn(&RunConfig) -> u32| match previous {
        Some(p) if !given.has(id) => prev(p),
        _ => flag,
    };
    RunOptions {
        log_every: pick("log_every", run.log_every, |p| p.log_every),
        sample_every: pick("sample_every", run.sample_every, |p| p.sample_every),
        checkpoint_every: pick("checkpoint_every", run.checkpoint_every, |p| p.checkpoint_every),
        eval_every: pick("eval_every", run.eval_every, |p| p.eval_every),
        ..run.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_given_flags_that_disagree_are_refused() {
        let data = Dataset::from_u8(8, 4, vec![9; 32]).unwrap();
        let opts = TrainOptions { batch_size: Some(4), ..Default::default() };
        let ck = opts.resolve(&data).unwrap();
        // Nothing given: nothing differs, whatever the defaults are.
        let mut other = opts.clone();
        other.seed = 5;
        other.latent_dim = Some(3);
        assert!(flags_differing(&other, &Given::default(), &ck).is_empty());
        // Given with the checkpoint's value: fine. Given otherwise: named with both values.
        assert!(flags_differing(&opts, &Given::of(&["seed", "batch_size"]), &ck).is_empty());
        other.lr = Some(1e-3);
        let d = flags_differing(&other, &Given::of(&["seed", "latent_dim", "lr"]), &ck);
        assert_eq!(
            d,
            ["--latent-dim 3 (checkpoint: 64)", "--seed 5 (checkpoint: 0)", "--lr 0.001 (checkpoint: 0.0004)"]
        );
        // D's rate is --lr's unless the run set its own: giving that value again is fine.
        other.d_lr = Some(4e-4);
        assert!(flags_differing(&other, &Given::of(&["d_lr"]), &ck).is_empty());
        other.d_lr = Some(1e-4);
        assert_eq!(flags_differing(&other, &Given::of(&["d_lr"]), &ck), ["--d-lr 0.0001 (checkpoint: 0.0004)"]);
    }
}
