//! What a training run logs: one line (and one metrics.csv row) per logging step. The loop itself
//! is `session::train`, shared by both backends; it reads statistics back only on these steps.

use crate::programs::trainer::StepStats;

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
