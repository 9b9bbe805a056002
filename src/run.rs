//! The training loop both backends share: it asks the trainer for steps, and for statistics only
//! every `log_every` steps. It never touches tensors itself.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::trainer::{StepStats, Trainer};

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Total steps to reach (a resumed run counts the steps already done).
    pub steps: u32,
    pub log_every: u32,
    /// Samples in the data set, for the epoch column.
    pub n_samples: usize,
}

/// One logged line's worth of numbers.
#[derive(Clone, Copy, Debug)]
pub struct LogRow {
    pub stats: StepStats,
    pub epoch: f64,
    pub steps_per_s: f64,
}

impl LogRow {
    /// A row for `stats`, with the rate over the last `steps` steps that took `elapsed`.
    pub fn measure(stats: StepStats, steps_per_epoch: usize, steps: u32, elapsed: std::time::Duration) -> Self {
        LogRow {
            stats,
            epoch: stats.step as f64 / steps_per_epoch.max(1) as f64,
            steps_per_s: steps as f64 / elapsed.as_secs_f64().max(1e-9),
        }
    }

    pub fn line(&self) -> String {
        let s = &self.stats;
        format!(
            "step {:>7}  epoch {:>7.2}  D loss {:.4}  G loss {:.4}  D(x) {:.3}  D(G(z)) {:.3}  {:.1} steps/s",
            s.step, self.epoch, s.d_loss, s.g_loss, s.d_real, s.d_fake, self.steps_per_s
        )
    }
}

/// Trains until `opts.steps`, calling `on_log` every `log_every` steps and at the end. Stops with
/// [`Error::Diverged`] when a loss is NaN or infinite.
pub fn train(
    trainer: &mut dyn Trainer,
    opts: &RunOptions,
    mut on_log: impl FnMut(&LogRow) -> Result<()>,
) -> Result<Option<LogRow>> {
    let batch = trainer.config().batch_size;
    let steps_per_epoch = (opts.n_samples / batch).max(1) as f64;
    let log_every = opts.log_every.max(1);
    let mut last = None;
    let mut t0 = Instant::now();
    let mut s0 = trainer.step();
    while trainer.step() < opts.steps {
        let to_log = log_every - trainer.step() % log_every;
        let n = to_log.min(opts.steps - trainer.step());
        trainer.train(n)?;
        let at_log = trainer.step() % log_every == 0 || trainer.step() == opts.steps;
        if at_log {
            let stats = trainer.stats()?;
            let dt = t0.elapsed().as_secs_f64();
            let row = LogRow {
                stats,
                epoch: stats.step as f64 / steps_per_epoch,
                steps_per_s: (stats.step - s0) as f64 / dt.max(1e-9),
            };
            if !stats.is_finite() {
                return Err(Error::Diverged(format!(
                    "training diverged: a loss is not finite at step {} (D loss {}, G loss {}); \
                     try a lower --lr",
                    stats.step, stats.d_loss, stats.g_loss
                )));
            }
            on_log(&row)?;
            last = Some(row);
            t0 = Instant::now();
            s0 = trainer.step();
        }
    }
    Ok(last)
}
