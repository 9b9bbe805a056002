//! What a step asks of a GPU, read from the programs alone (no GPU needed): the dispatches of a
//! training step and of a sampling pass for each model `bench` knows (`bench` prints them,
//! `bench --json` lists them).
//!
//! The GPU executor records one compute dispatch per op of a section and nothing else: no buffer
//! copies or clears inside a step (the data set is uploaded once; the host writes buffers and
//! reads statistics only between submissions, at log, sample and checkpoint steps). So the
//! dispatches of a step are the ops of the program's `train_step`, and those of a sampling pass
//! the ops of its `sample` section.

use serde::Serialize;

use crate::config::model::Arch;
use crate::config::{Precision, TrainConfig, TrainOptions};
use crate::data::{DataValues, Dataset, ImageShape};
use crate::error::Result;
use crate::programs::gan::GanProgram;

/// The batch the models are built at (each model's own default is 64 too; the count does not
/// depend on it).
pub const PLAN_BATCH: usize = 64;

/// A model `bench` counts, built as a training run would build it.
pub struct PlanModel {
    /// "benchmark MLP", "28x28 DCGAN defaults", ...
    pub name: &'static str,
    /// How a user gets it.
    pub how: &'static str,
    pub cfg: TrainConfig,
    /// Samples in its data set and whether they are bytes.
    pub n: usize,
    pub data_u8: bool,
}

impl PlanModel {
    pub fn program(&self) -> GanProgram {
        GanProgram::build(&self.cfg, self.n, self.data_u8)
    }
}

/// 256 RGB 64x64 images (mid grey): enough to resolve the 64x64 DCGAN's defaults.
fn rgb64() -> Result<Dataset> {
    let shape = ImageShape { channels: 3, height: 64, width: 64 };
    Dataset::from_u8_images(256, shape, vec![128; 256 * shape.values()])
}

/// The five models: the benchmark MLP and the DCGAN that `bench` times, the MLP and DCGAN a
/// user gets from `train` on MNIST with no flags, and the 64x64 DCGAN (PyTorch's DCGAN example).
pub fn models() -> Result<Vec<PlanModel>> {
    let mnist = crate::data::assets::default_dataset()?;
    let rgb = rgb64()?;
    let u8_of = |d: &Dataset| matches!(d.values, DataValues::U8(_));
    let bench = |arch| super::bench::bench_config(&mnist, arch, PLAN_BATCH, Precision::F32);
    let dcgan = TrainOptions { arch: Some(Arch::Dcgan), ..Default::default() };
    Ok(vec![
        PlanModel {
            name: "benchmark MLP",
            how: "bench (--arch mlp)",
            cfg: bench(Arch::Mlp)?,
            n: mnist.n,
            data_u8: u8_of(&mnist),
        },
        PlanModel {
            name: "MLP image defaults",
            how: "train MNIST",
            cfg: TrainOptions::default().resolve(&mnist)?,
            n: mnist.n,
            data_u8: u8_of(&mnist),
        },
        PlanModel {
            name: "DCGAN as bench times it",
            how: "bench --arch dcgan",
            cfg: bench(Arch::Dcgan)?,
            n: mnist.n,
            data_u8: u8_of(&mnist),
        },
        PlanModel {
            name: "28x28 DCGAN defaults",
            how: "train MNIST --arch dcgan",
            cfg: dcgan.resolve(&mnist)?,
            n: mnist.n,
            data_u8: u8_of(&mnist),
        },
        PlanModel {
            name: "64x64 DCGAN",
            how: "train RGB64 --arch dcgan",
            cfg: dcgan.resolve(&rgb)?,
            n: rgb.n,
            data_u8: u8_of(&rgb),
        },
    ])
}

/// Dispatches of one model's step and sampling pass.
#[derive(Clone, Debug, Serialize)]
pub struct DispatchCount {
    pub model: String,
    /// The command that trains it.
    pub how: String,
    pub batch: usize,
    /// Per training step (every D update and the G update).
    pub train_step: usize,
    /// Per sampling pass (G in eval mode on `programs::gan::SAMPLE_ROWS` rows).
    pub sample: usize,
}

/// The dispatch counts of every model in [`models`].
pub fn dispatch_counts() -> Result<Vec<DispatchCount>> {
    Ok(models()?
        .into_iter()
        .map(|m| {
            let p = m.program();
            DispatchCount {
                model: m.name.into(),
                how: m.how.into(),
                batch: m.cfg.batch_size,
                train_step: p.train_step.len(),
                sample: p.sample.len(),
            }
        })
        .collect())
}

/// The counts as `bench` prints them.
pub fn dispatch_table(counts: &[DispatchCount]) -> String {
    let mut s = format!(
        "\n{:<26} {:<26} {:>6} {:>12} {:>12}  (one dispatch per op; no copies or clears in a step)\n",
        "dispatches", "trained by", "batch", "train step", "sampling"
    );
    for c in counts {
        s += &format!("{:<26} {:<26} {:>6} {:>12} {:>12}\n", c.model, c.how, c.batch, c.train_step, c.sample);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dispatches of each model's step and sampling pass. A change here is a change in
    /// what every GPU step costs: update the figures with BENCHMARKS.md's table, on purpose.
    #[test]
    fn dispatches_per_step_are_as_recorded() {
        let got: Vec<(String, usize, usize)> =
            dispatch_counts().unwrap().into_iter().map(|c| (c.model, c.train_step, c.sample)).collect();
        let want = [
            ("benchmark MLP", 29, 3),
            ("MLP image defaults", 38, 3),
            ("DCGAN as bench times it", 51, 5),
            ("28x28 DCGAN defaults", 69, 7),
            ("64x64 DCGAN", 95, 9),
        ];
        let want: Vec<(String, usize, usize)> = want.iter().map(|&(m, t, s)| (m.to_string(), t, s)).collect();
        assert_eq!(got, want);
    }
}
