//! The progress bar of a run on a terminal (plain log lines otherwise): step, epoch, the losses
//! and speed of the latest log row (the one just measured, not the one before it) and an ETA,
//! which reads "-" until the run has trained a chunk of steps since the bar appeared (before
//! that any estimate is a guess; indicatif's own reads "0s").

use std::fmt::Write;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanDuration, ProgressBar, ProgressState, ProgressStyle};

use super::log::LogRow;

/// Where a run's progress goes: a bar on a terminal, else log lines on stdout (or nothing).
pub struct Progress {
    bar: Option<ProgressBar>,
    show: bool,
    per_epoch: usize,
}

/// The bar's message at `step`: the epoch, and the losses and speed of `last`, the latest row
/// logged.
pub fn message(step: u32, per_epoch: usize, last: Option<&LogRow>) -> String {
    let losses = last.map_or(String::new(), |r| {
        format!("  D {:.3}  G {:.3}  {:.1} steps/s", r.stats.d_loss, r.stats.g_loss, r.steps_per_s)
    });
    format!("epoch {:.2}{losses}", step as f64 / per_epoch.max(1) as f64)
}

/// The ETA shown at position `pos` of a bar that started at `start`.
pub fn eta(pos: u64, start: u64, estimate: Duration) -> String {
    if pos <= start {
        "-".into()
    } else {
        format!("{:#}", HumanDuration(estimate))
    }
}

impl Progress {
    /// A bar from `start` to `total` when `show` and stderr is a terminal.
    pub fn new(show: bool, total: u32, start: u32, per_epoch: usize) -> Self {
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let start = start as u64;
            let style = ProgressStyle::with_template("{bar:30} step {pos}/{len}  {msg}  ETA {eta_or_dash}")
                .expect("valid template")
                .with_key("eta_or_dash", move |s: &ProgressState, w: &mut dyn Write| {
                    let _ = w.write_str(&eta(s.pos(), start, s.eta()));
                });
            let pb = ProgressBar::new(total as u64).with_style(style).with_position(start);
            // A resumed run starts mid-way: its rate is measured from here.
            pb.reset_eta();
            pb.set_message(message(start as u32, per_epoch, None));
            pb
        });
        Progress { bar, show, per_epoch }
    }

    /// After training to `step`, with `last` the latest log row (measured at this step if it
    /// was a log step).
    pub fn update(&self, step: u32, last: Option<&LogRow>) {
        if let Some(b) = &self.bar {
            b.set_message(message(step, self.per_epoch, last));
            b.set_position(step as u64);
            // Both at once: indicatif draws at most 20 times a second, so the second change
            // would otherwise wait for the next chunk of steps to show.
            b.force_draw();
        }
    }

    /// A log line: above the bar, or on stdout.
    pub fn println(&self, line: String) {
        match &self.bar {
            Some(b) => b.println(line),
            None if self.show => println!("{line}"),
            None => {}
        }
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::programs::trainer::StepStats;

    #[test]
    fn the_message_shows_the_row_it_is_given_and_the_eta_waits_for_progress() {
        let stats = StepStats { step: 500, d_loss: 0.6561, g_loss: 1.5098, d_real: 0.7, d_fake: 0.3 };
        let row = LogRow { stats, epoch: 3.2, steps_per_s: 80.0 };
        assert_eq!(message(500, 156, Some(&row)), "epoch 3.21  D 0.656  G 1.510  80.0 steps/s");
        assert_eq!(message(0, 156, None), "epoch 0.00");
        assert_eq!(eta(0, 0, Duration::ZERO), "-");
        assert_eq!(eta(300, 300, Duration::ZERO), "-", "a resumed run before its first chunk");
        // indicatif's compact form, as its own {eta}: 95 s reads "2m" (it rounds, and says no
        // "1" of a unit above seconds).
        assert_eq!(eta(350, 300, Duration::from_secs(95)), "2m");
    }
}
