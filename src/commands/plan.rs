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
            how: "train RGB64 --arch dcgan --g-ema 0",
            // Without G's weight average, which 64x64 runs now have by default (10 dispatches
            // more: 84), so that the count compares with the one issue 23 started from (146).
            cfg: TrainOptions { g_ema: Some(0.0), ..dcgan.clone() }.resolve(&rgb)?,
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

// ---------------------------------------------------------------- the cost model

/// A GPU as the cost model sees it. Every figure is a model input taken from a vendor's data
/// sheet or a published measurement of WebGPU's dispatch cost (docs/gpu.md gives the sources),
/// never a measurement of shadergan.
#[derive(Clone, Debug, Serialize)]
pub struct GpuModel {
    /// "h100", "rtx4090", "m2", or "custom".
    pub name: String,
    pub label: String,
    /// Peak f32 arithmetic (no tensor cores), in TFLOP/s.
    pub peak_tflops: f64,
    /// Memory bandwidth, GB/s.
    pub bandwidth_gbs: f64,
    /// Cost of one dispatch end to end (recording, the barrier wgpu places between dispatches
    /// that share a writable buffer, launch), microseconds.
    pub dispatch_us: f64,
}

/// The presets: data-sheet peaks and bandwidths; per-dispatch costs from arXiv 2604.02344's
/// WebGPU measurements (24-36 us on Vulkan, 32-71 us on Metal), taken at their low ends.
pub fn presets() -> Vec<GpuModel> {
    let m = |name: &str, label: &str, peak_tflops, bandwidth_gbs, dispatch_us| GpuModel {
        name: name.into(),
        label: label.into(),
        peak_tflops,
        bandwidth_gbs,
        dispatch_us,
    };
    vec![
        m("h100", "NVIDIA H100 SXM (Vulkan)", 67.0, 3350.0, 24.0),
        m("rtx4090", "NVIDIA RTX 4090 (Vulkan)", 82.6, 1008.0, 24.0),
        m("m2", "Apple M2, 10-core GPU (Metal)", 3.6, 100.0, 32.0),
    ]
}

/// A preset by name, or "custom:TFLOPS,GBS,US" (peak f32 TFLOP/s, bandwidth GB/s, microseconds
/// per dispatch).
pub fn gpu_model(spec: &str) -> Result<GpuModel> {
    if let Some(rest) = spec.strip_prefix("custom:") {
        let v: Vec<f64> = rest
            .split(',')
            .map(|x| x.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad_gpu(spec))?;
        if v.len() != 3 || v.iter().any(|x| !x.is_finite() || *x < 0.0) || v[0] <= 0.0 || v[1] <= 0.0 {
            return Err(bad_gpu(spec));
        }
        return Ok(GpuModel {
            name: "custom".into(),
            label: format!("custom ({rest})"),
            peak_tflops: v[0],
            bandwidth_gbs: v[1],
            dispatch_us: v[2],
        });
    }
    presets().into_iter().find(|g| g.name == spec.trim().to_ascii_lowercase()).ok_or_else(|| bad_gpu(spec))
}

fn bad_gpu(spec: &str) -> crate::error::Error {
    crate::error::Error::input(format!(
        "--plan-gpu {spec}: expected h100, rtx4090, m2 or custom:TFLOPS,GBS,US (e.g. custom:20,900,25)"
    ))
}

/// One dispatch of a step as the model costs it.
#[derive(Clone, Debug, Serialize)]
pub struct DispatchCost {
    pub entry: String,
    pub workgroups: u64,
    /// Floating-point operations (`ir::Kernel::flops`).
    pub flops: f64,
    /// Bytes read and written: every span the call declares, once (the compulsory traffic; a
    /// kernel that rereads through caches moves more).
    pub bytes: f64,
    /// flops / bytes.
    pub intensity: f64,
    /// The roofline's time for the work, max(flops / peak, bytes / bandwidth), microseconds.
    pub work_us: f64,
}

/// A training step on a modelled GPU: a lower bound on its time, the sum over its dispatches of
/// the roofline time of the work and the cost of a dispatch.
#[derive(Clone, Debug, Serialize)]
pub struct StepPlan {
    pub model: String,
    pub gpu: GpuModel,
    pub dispatches: Vec<DispatchCost>,
    pub flops: f64,
    pub bytes: f64,
    pub work_us: f64,
    pub dispatch_us: f64,
    /// work_us + dispatch_us.
    pub step_us: f64,
}

/// The cost of every dispatch of `ops` on `gpu`, its buffers' element sizes from `bufs`.
pub fn plan_ops(model: &str, ops: &[crate::ir::Op], bufs: &[crate::ir::BufSpec], gpu: &GpuModel) -> StepPlan {
    let dispatches: Vec<DispatchCost> = ops
        .iter()
        .map(|op| {
            let bytes = op.spans().iter().fold(0.0, |acc, s| acc + s.len as f64 * bufs[s.buf].dtype.bytes() as f64);
            let flops = op.flops();
            let [x, y, z] = op.workgroups();
            let work_us = (flops / (gpu.peak_tflops * 1e12)).max(bytes / (gpu.bandwidth_gbs * 1e9)) * 1e6;
            DispatchCost {
                entry: op.entry().into(),
                workgroups: x as u64 * y as u64 * z as u64,
                flops,
                bytes,
                intensity: if bytes > 0.0 { flops / bytes } else { 0.0 },
                work_us,
            }
        })
        .collect();
    let work_us = dispatches.iter().fold(0.0, |acc, d| acc + d.work_us);
    let dispatch_us = gpu.dispatch_us * dispatches.len() as f64;
    StepPlan {
        model: model.into(),
        gpu: gpu.clone(),
        flops: dispatches.iter().fold(0.0, |acc, d| acc + d.flops),
        bytes: dispatches.iter().fold(0.0, |acc, d| acc + d.bytes),
        dispatches,
        work_us,
        dispatch_us,
        step_us: work_us + dispatch_us,
    }
}

/// Every model's training step on every preset (and `extra`, if given).
pub fn step_plans(extra: Option<&GpuModel>) -> Result<Vec<StepPlan>> {
    let mut gpus = presets();
    gpus.extend(extra.filter(|g| g.name == "custom").cloned());
    let mut out = vec![];
    for m in models()? {
        let p = m.program();
        for g in &gpus {
            out.push(plan_ops(m.name, &p.train_step, &p.bufs, g));
        }
    }
    Ok(out)
}

fn si(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// One step's dispatches, as `bench --plan` prints them.
pub fn plan_table(p: &StepPlan) -> String {
    let g = &p.gpu;
    let mut s = format!(
        "cost model: {}, one training step on {} ({} TFLOP/s f32, {} GB/s, {} us per dispatch: model inputs, not \
         measurements)\n{:<4} {:<32} {:>10} {:>9} {:>9} {:>8} {:>10}\n",
        p.model,
        g.label,
        g.peak_tflops,
        g.bandwidth_gbs,
        g.dispatch_us,
        "#",
        "entry point",
        "workgroups",
        "FLOPs",
        "bytes",
        "FLOP/B",
        "work us"
    );
    for (i, d) in p.dispatches.iter().enumerate() {
        s += &format!(
            "{:<4} {:<32} {:>10} {:>9} {:>9} {:>8.2} {:>10.2}\n",
            i,
            d.entry,
            d.workgroups,
            si(d.flops),
            si(d.bytes),
            d.intensity,
            d.work_us
        );
    }
    s +=
        &format!(
        "total: {} dispatches, {} FLOPs, {} bytes; roofline work {:.1} us + dispatches {:.1} us = {:.1} us per step \
         (a lower bound: {:.0} steps/s at most)\n",
        p.dispatches.len(), si(p.flops), si(p.bytes), p.work_us, p.dispatch_us, p.step_us, 1e6 / p.step_us.max(1e-9)
    );
    s
}

/// Every model on every modelled GPU: the step's lower bound and the dispatches' share of it.
pub fn plans_summary(plans: &[StepPlan]) -> String {
    let mut s = format!(
        "\ncost model, every model (batch {PLAN_BATCH}): lower bounds from model inputs, not measurements\n{:<26} {:<30} {:>10} {:>11} {:>10} {:>10}\n",
        "model", "GPU", "dispatches", "work us", "step us", "dispatch %"
    );
    for p in plans {
        s += &format!(
            "{:<26} {:<30} {:>10} {:>11.1} {:>10.1} {:>9.0}%\n",
            p.model,
            p.gpu.label,
            p.dispatches.len(),
            p.work_us,
            p.step_us,
            100.0 * p.dispatch_us / p.step_us.max(1e-12)
        );
    }
    s
}

/// What `bench --plan` prints: bench's model (`arch`, at `batch`) dispatch by dispatch on `gpu`,
/// then every model on every modelled GPU.
#[derive(Clone, Debug, Serialize)]
pub struct PlanReport {
    pub step: StepPlan,
    pub summary: Vec<StepPlan>,
    pub dispatches: Vec<DispatchCount>,
}

pub fn bench_plan(arch: Arch, batch: usize, gpu: &GpuModel) -> Result<PlanReport> {
    let mnist = crate::data::assets::default_dataset()?;
    let cfg = super::bench::bench_config(&mnist, arch, batch, Precision::F32)?;
    let p = GanProgram::build(&cfg, mnist.n, matches!(mnist.values, DataValues::U8(_)));
    let name = match arch {
        Arch::Mlp => "benchmark MLP",
        Arch::Dcgan => "DCGAN as bench times it",
    };
    Ok(PlanReport {
        step: plan_ops(&format!("{name}, batch {batch}"), &p.train_step, &p.bufs, gpu),
        summary: step_plans(Some(gpu))?,
        dispatches: dispatch_counts()?,
    })
}

/// The report as `bench --plan` prints it.
pub fn plan_report_table(r: &PlanReport) -> String {
    plan_table(&r.step) + &plans_summary(&r.summary) + &dispatch_table(&r.dispatches)
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
            ("benchmark MLP", 24, 3),
            ("MLP image defaults", 25, 3),
            ("DCGAN as bench times it", 37, 5),
            ("28x28 DCGAN defaults", 51, 7),
            ("64x64 DCGAN", 69, 9),
        ];
        let want: Vec<(String, usize, usize)> = want.iter().map(|&(m, t, s)| (m.to_string(), t, s)).collect();
        assert_eq!(got, want);
    }

    /// Dropout makes no dispatch of its own next to linear layers at f32; a dropout below a
    /// conditional D's projection head keeps its backward calls (the head does not fuse them);
    /// f16 keeps every call.
    #[test]
    fn dropout_calls_remain_only_where_no_neighbour_fuses_them() {
        let mnist = crate::data::assets::default_dataset().unwrap();
        let names: Vec<String> = (0..10).map(|k| k.to_string()).collect();
        let dropouts = |o: TrainOptions| {
            let cfg = o.resolve_with_classes(&mnist, None, Some(&names)).unwrap();
            let p = GanProgram::build(&cfg, mnist.n, true);
            p.train_step.iter().filter(|op| op.entry().starts_with("dropout")).count()
        };
        assert_eq!(dropouts(TrainOptions::default()), 0);
        // The top dropout's backward in the D step and the G step; every forward fused.
        assert_eq!(dropouts(TrainOptions { conditional: true, ..Default::default() }), 2);
        let f16 = TrainOptions { precision: Precision::F16, ..Default::default() };
        assert_eq!(dropouts(f16), 8);
    }
}
