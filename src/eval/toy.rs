//! The PacGAN paper's mode-collapse metrics (Lin et al., NeurIPS 2018) on the toy data sets:
//! a generated sample is *high quality* when it lies within 3 std of its nearest mode; a mode is
//! *captured* when it is the nearest mode of at least one high-quality sample; the *reverse KL*
//! compares the mode histogram of the high-quality samples with the uniform distribution.

use serde::{Deserialize, Serialize};

use crate::data::toy::Toy;
use crate::error::{Error, Result};
use crate::programs::trainer::{fixed_latents, to_data_scale, Trainer};

/// Generated points the metrics are computed on.
pub const EVAL_SAMPLES: usize = 2_500;

/// The PacGAN mode-collapse metrics of a set of generated points.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToyMetrics {
    pub samples: usize,
    pub modes_captured: usize,
    pub modes_total: usize,
    /// Percent of samples within 3 std of their nearest mode.
    pub high_quality_pct: f64,
    /// KL(histogram of the high-quality samples over modes || uniform) = ln K - entropy; ln K when
    /// there are no high-quality samples.
    pub reverse_kl: f64,
}

impl ToyMetrics {
    pub fn line(&self) -> String {
        format!(
            "modes captured {}/{}, high quality {:.1}%, reverse KL {:.3} ({} samples)",
            self.modes_captured, self.modes_total, self.high_quality_pct, self.reverse_kl, self.samples
        )
    }
}

/// Metrics of `points`, flat (x, y) pairs, against the modes of `toy`. Computed in f64.
pub fn toy_metrics(toy: Toy, points: &[f32]) -> ToyMetrics {
    let modes: Vec<(f64, f64)> = toy.modes().iter().map(|&(x, y)| (x as f64, y as f64)).collect();
    let limit = 3.0 * toy.std() as f64;
    let mut counts = vec![0usize; modes.len()];
    let n = points.len() / 2;
    for p in points.chunks_exact(2) {
        let (x, y) = (p[0] as f64, p[1] as f64);
        let (best, d2) = modes
            .iter()
            .enumerate()
            .map(|(m, &(mx, my))| (m, (x - mx).powi(2) + (y - my).powi(2)))
            .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
        if d2.sqrt() <= limit {
            counts[best] += 1;
        }
    }
    let hq: usize = counts.iter().sum();
    let log_k = (modes.len() as f64).ln();
    let reverse_kl = if hq == 0 {
        log_k
    } else {
        let entropy: f64 = counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / hq as f64;
                -p * p.ln()
            })
            .sum();
        (log_k - entropy).max(0.0)
    };
    ToyMetrics {
        samples: n,
        modes_captured: counts.iter().filter(|&&c| c > 0).count(),
        modes_total: modes.len(),
        high_quality_pct: if n == 0 { 0.0 } else { 100.0 * hq as f64 / n as f64 },
        reverse_kl,
    }
}

/// Samples `EVAL_SAMPLES` points from the run's fixed noise and measures them.
pub fn evaluate(trainer: &mut dyn Trainer, toy: Toy) -> Result<ToyMetrics> {
    let cfg = trainer.config().clone();
    if cfg.model.data_dim != 2 {
        return Err(Error::input(format!(
            "toy metrics need a model of 2-D samples; this one makes samples of {} values",
            cfg.model.data_dim
        )));
    }
    let y = to_data_scale(&cfg, &trainer.sample(&fixed_latents(&cfg, EVAL_SAMPLES))?);
    Ok(toy_metrics(toy, &y))
}
