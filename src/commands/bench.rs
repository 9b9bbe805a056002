//! `shadergan bench`: the benchmark model on the GPU and CPU backends, one after the other in one
//! run, as steps per second and their ratio; the GPU's time per kernel family from timestamp
//! queries; and (`--matmul`) matmul GFLOP/s at several shapes, each result checked first against
//! the CPU twin. Figures are measured, never asserted: see BENCHMARKS.md.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::plan::{dispatch_counts, dispatch_table, DispatchCount};
use crate::backend::cpu::CpuExecutor;
use crate::backend::gpu::{GpuContext, GpuExecutor};
use crate::backend::Executor;
use crate::config::model::Arch;
use crate::config::{Precision, TrainConfig, TrainOptions};
use crate::data::{DataValues, Dataset};
use crate::error::{Error, Result};
use crate::ir::{BufSpec, Op};
use crate::kernels::matmul::tiled::{with_kernels, Kernels};
use crate::kernels::matmul::{fast, MatmulForward, MatmulParams};
use crate::kernels::tolerance::{compare, tolerance};
use crate::programs::gan::GanProgram;
use crate::programs::trainer::{GanTrainer, Trainer};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub batch_sizes: Vec<usize>,
    /// Measure each configuration for about this long (after warm-up).
    pub seconds: f64,
    pub gpu: bool,
    pub cpu: bool,
    pub matmul: bool,
    /// Include 4096^2 matmuls even on a CPU-emulated adapter (minutes on lavapipe).
    pub large: bool,
    /// Storage precisions to train at (`--precision`), each measured on every backend.
    pub precisions: Vec<Precision>,
    /// The benchmark MLP or the convolutional GAN (f32 only).
    pub arch: Arch,
    /// `--arch dcgan`: 28 (the 28x28 recipe of the PyTorch peer `torch_dcgan.py`, on the built-in
    /// digits), 32 or 64 (PyTorch's examples/dcgan for colour images, its 32x32 shrink at 32, on
    /// random colour images).
    pub image_size: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    pub backend: String,
    pub device: String,
    /// "f32" or "f16" (`--precision`).
    pub precision: String,
    pub batch: usize,
    pub steps: u32,
    pub steps_per_s: f64,
    /// CPU only: the threads the CPU backend ran on.
    pub threads: Option<usize>,
    /// GPU only: milliseconds per step by kernel family, from timestamp queries.
    pub kernel_ms: Option<Vec<(String, f64)>>,
    /// GPU only: milliseconds per step by entry point.
    pub entry_ms: Option<Vec<(String, f64)>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MatmulResult {
    pub device: String,
    /// "register" (matmul.wgsl, lavapipe's kernel) or "tiled64", "tiled32", "tiled16"
    /// (matmul_tiled.wgsl), as SHADERGAN_KERNELS names them.
    pub kernel: String,
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub gflops: f64,
    pub cpu_sgemm_gflops: f64,
    pub checked: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub steps: Vec<StepResult>,
    pub matmul: Vec<MatmulResult>,
    /// Dispatches per training step and per sampling pass of each model (`commands::plan`).
    pub dispatches: Vec<DispatchCount>,
    pub notes: Vec<String>,
}

/// The benchmark model on the built-in MNIST digits: G 64-256-256-784 (ReLU, ReLU, sigmoid),
/// D 784-256-256-1 (ReLU, ReLU, logit), Adam 2e-4.
pub(crate) fn bench_config(data: &Dataset, arch: Arch, batch: usize, precision: Precision) -> Result<TrainConfig> {
    use crate::kernels::activation::Activation::{Relu, Sigmoid};
    if arch == Arch::Dcgan {
        // The 28x28 DCGAN as PyTorch's peer (torch_dcgan.py) trains it, and at 32x32 and 64x64
        // PyTorch's examples/dcgan (nz 100, as scripts/torch_dcgan_bench.py): Adam 2e-4, no
        // weight average and no packing (the peers have neither).
        let colour = data.image().is_some_and(|i| i.channels == 3);
        let opts = TrainOptions {
            latent_dim: colour.then_some(100),
            arch: Some(arch),
            batch_size: Some(batch),
            g_ema: Some(0.0),
            pack: Some(1),
            lr_decay: Some(0.0),
            lr: Some(2e-4),
            g_fc_hidden: Some(0),
            d_fc_hidden: Some(0),
            precision,
            ..Default::default()
        };
        return opts.resolve(data);
    }
    let opts = TrainOptions {
        batch_size: Some(batch),
        g_activation: Some(Relu),
        d_activation: Some(Relu),
        g_output: Some(Sigmoid),
        g_hidden: vec![256, 256],
        d_hidden: vec![256, 256],
        d_dropout: Some(0.0),
        g_ema: Some(0.0),
        lr_decay: Some(0.0),
        lr: Some(crate::config::LR),
        precision,
        ..Default::default()
    };
    opts.resolve(data)
}

/// Trains `warmup` steps, then as many as fit in `seconds`; returns (steps, steps/s).
fn time_steps(t: &mut dyn Trainer, seconds: f64) -> Result<(u32, f64)> {
    t.train(3)?;
    t.stats()?; // waits for the GPU
    let start = Instant::now();
    let mut steps = 0u32;
    let mut chunk = 1u32;
    while start.elapsed().as_secs_f64() < seconds {
        t.train(chunk)?;
        t.stats()?;
        steps += chunk;
        chunk = (chunk * 2).min(64);
    }
    Ok((steps, steps as f64 / start.elapsed().as_secs_f64()))
}

fn family(entry: &str) -> &'static str {
    match crate::kernels::entry(entry).map(|(f, _)| f.name) {
        _ if entry.starts_with("cast_") => "cast",
        Some("matmul" | "matmul_f16") => "matmul",
        Some("activation" | "activation_f16") => "activation",
        Some("loss") => "loss",
        Some("head") => "head",
        Some("adam") => "adam",
        Some("random" | "random_f16") => "rng/gather",
        Some("conv" | "conv_gemm") => "conv",
        Some("norm") => "batch_norm",
        Some("spectral") => "spectral",
        Some("augment") => "augment",
        _ => "other",
    }
}

/// Milliseconds per step by kernel family and by entry point, from a profile's seconds per
/// dispatch.
type PerKernel = Option<Vec<(String, f64)>>;
fn per_kernel_ms(per: Option<Vec<(String, f64)>>) -> (PerKernel, PerKernel) {
    let sum_by = |key: &dyn Fn(&str) -> String| {
        per.as_ref().map(|per| {
            let mut out: Vec<(String, f64)> = vec![];
            for (entry, s) in per {
                let k = key(entry);
                match out.iter_mut().find(|(n, _)| *n == k) {
                    Some((_, v)) => *v += s * 1e3,
                    None => out.push((k, s * 1e3)),
                }
            }
            out
        })
    };
    (sum_by(&|e| family(e).to_string()), sum_by(&|e| e.to_string()))
}

fn gpu_steps(
    ctx: &Arc<GpuContext>,
    data: &Arc<Dataset>,
    arch: Arch,
    batch: usize,
    precision: Precision,
    seconds: f64,
) -> Result<StepResult> {
    let cfg = bench_config(data, arch, batch, precision)?;
    let program = GanProgram::build(&cfg, data.n, matches!(data.values, DataValues::U8(_)));
    let exec = GpuExecutor::new(ctx.clone(), &program.bufs, Some(data))?;
    let mut t = GanTrainer::new(cfg, program, Box::new(exec))?;
    let (steps, rate) = time_steps(&mut t, seconds)?;
    let (kernel_ms, entry_ms) = per_kernel_ms(t.profile_step()?);
    Ok(StepResult {
        backend: "gpu".into(),
        device: t.device_name(),
        precision: precision.name().into(),
        batch,
        steps,
        steps_per_s: rate,
        threads: None,
        kernel_ms,
        entry_ms,
    })
}

fn cpu_steps(data: &Arc<Dataset>, arch: Arch, batch: usize, precision: Precision, seconds: f64) -> Result<StepResult> {
    let cfg = bench_config(data, arch, batch, precision)?;
    let program = GanProgram::build(&cfg, data.n, matches!(data.values, DataValues::U8(_)));
    let exec = CpuExecutor::new(&program.bufs, Some(data.clone()));
    let threads = exec.thread_count();
    let mut t = GanTrainer::new(cfg, program, Box::new(exec))?;
    let (steps, rate) = time_steps(&mut t, seconds)?;
    let (kernel_ms, entry_ms) = per_kernel_ms(t.profile_step()?);
    Ok(StepResult {
        backend: "cpu".into(),
        device: t.device_name(),
        precision: precision.name().into(),
        batch,
        steps,
        steps_per_s: rate,
        threads: Some(threads),
        kernel_ms,
        entry_ms,
    })
}

/// One matmul_forward on the GPU on `kernel`: checked against the CPU, then timed.
fn matmul_case(ctx: &Arc<GpuContext>, kernel: Kernels, m: u32, n: u32, k: u32, seconds: f64) -> Result<MatmulResult> {
    let (mu, nu, ku) = (m as usize, n as usize, k as usize);
    let rng_vals = |len: usize, salt: u32| {
        let mut v = vec![0f32; len];
        crate::rng::normals([salt, 99], 0, 0, 7, &mut v);
        v
    };
    let x = rng_vals(mu * ku, 1);
    let mut w = rng_vals(nu * ku + nu, 2);
    w.iter_mut().for_each(|v| *v *= 1.0 / (k as f32).sqrt());
    let specs = [BufSpec::f32("bench.x", x.len()), BufSpec::f32("bench.w", w.len()), BufSpec::f32("bench.y", mu * nu)];
    let p = MatmulParams { m, n, k, bias_off: n * k, ..Default::default() };
    let op: Op = MatmulForward { p, a: 0, c: 1, out: 2 }.into();
    let mut g = GpuExecutor::new(ctx.clone(), &specs, None)?;
    g.write(0, &x)?;
    g.write(1, &w)?;
    g.write(2, &vec![f32::NAN; mu * nu])?;
    let section = with_kernels(kernel, || g.add_section(std::slice::from_ref(&op)))?;
    g.run(section, 1)?;
    let got = g.read(2)?;
    let mut want = vec![0f32; mu * nu];
    let t0 = Instant::now();
    fast::matmul_forward(&crate::ir::pool::global(), &p, &x, &w, &mut want);
    let cpu_s = t0.elapsed().as_secs_f64();
    compare("matmul_forward", &got, &want, tolerance("matmul_forward"))
        .map_err(|e| Error::gpu(format!("matmul {m}x{n}x{k} ({}) is wrong on this GPU: {e}", kernel.name())))?;
    let flop = 2.0 * m as f64 * n as f64 * k as f64;
    // Time: repeat until `seconds`, in batches of dispatches, waiting at the end of each.
    let start = Instant::now();
    let mut reps = 0u32;
    let mut batch = 1u32;
    while start.elapsed().as_secs_f64() < seconds {
        g.run(section, batch)?;
        g.finish()?;
        reps += batch;
        batch = (batch * 2).min(256);
    }
    let gpu_s = start.elapsed().as_secs_f64() / reps as f64;
    Ok(MatmulResult {
        device: ctx.summary.describe(),
        kernel: kernel.name(),
        m,
        n,
        k,
        gflops: flop / gpu_s / 1e9,
        cpu_sgemm_gflops: flop / cpu_s / 1e9,
        checked: true,
    })
}

/// Random colour images of `size` x `size` (the speed of a step does not depend on them).
fn colour_images(size: usize) -> Result<Dataset> {
    let n = 1024;
    let shape = crate::data::ImageShape { channels: 3, height: size, width: size };
    let mut bytes = vec![0f32; n * 3 * size * size];
    crate::rng::normals([size as u32, 7], 0, 0, crate::rng::PURPOSE_SAMPLES, &mut bytes);
    let bytes = bytes.iter().map(|v| (128.0 + 40.0 * v).clamp(0.0, 255.0) as u8).collect();
    Dataset::from_u8_images(n, shape, bytes)
}

pub fn run(opts: &BenchOptions, mut progress: impl FnMut(&str)) -> Result<BenchReport> {
    let colour = opts.arch == Arch::Dcgan && opts.image_size != 28;
    if !matches!(opts.image_size, 28 | 32 | 64) || (opts.arch == Arch::Mlp && opts.image_size != 28) {
        return Err(Error::input("--image-size is 28, 32 or 64, and only for --arch dcgan"));
    }
    let data = Arc::new(if colour { colour_images(opts.image_size)? } else { crate::data::assets::default_dataset()? });
    let colour_model = format!(
        "PyTorch's examples/dcgan at {0}x{0}x3 (nz 100, ngf = ndf = 64; at 32x32 one block fewer): ConvT/BN/ReLU G \
         to tanh, Conv/BN/LReLU D to one logit; Adam 2e-4 (0.5, 0.999), no weight average; one step = one D update \
         (reals and fakes in separate passes) + one G update on fresh noise; data: 1,024 random colour images",
        opts.image_size
    );
    let model = match opts.arch {
        Arch::Dcgan if colour => colour_model.as_str(),
        Arch::Mlp => {
            "G 64-256-256-784 (ReLU, ReLU, sigmoid), D 784-256-256-1 (ReLU, ReLU, logit), Adam 2e-4 \
                (0.5, 0.999); one step = one D update + one G update; data: the built-in 10,000 MNIST digits"
        }
        Arch::Dcgan => {
            "DCGAN 28x28: G z64 -> Linear(64, 6272, no bias) -> BN -> ReLU -> ConvT(128, 64, 4, 2, 1) -> BN \
                -> ReLU -> ConvT(64, 1, 4, 2, 1) -> tanh; D Conv(1, 64, 4, 2, 1) -> LReLU -> Conv(64, 128, 4, 2, 1) \
                -> BN -> LReLU -> Linear(6272, 1); Adam 2e-4 (0.5, 0.999), no weight average; one step = one D \
                update (reals and fakes in separate passes) + one G update on fresh noise; data: the built-in \
                10,000 MNIST digits"
        }
    };
    let mut report = BenchReport { model: model.to_string(), dispatches: dispatch_counts()?, ..Default::default() };
    let mut precisions = opts.precisions.clone();
    if opts.arch == Arch::Dcgan && precisions.contains(&Precision::F16) {
        precisions.retain(|&p| p == Precision::F32);
        report.notes.push("--arch dcgan trains at f32 only: f16 not measured".into());
    }
    let opts = &BenchOptions { precisions, ..opts.clone() };
    let ctx = if opts.gpu {
        match GpuContext::new() {
            Ok(c) => Some(c),
            Err(e) => {
                report.notes.push(format!("GPU backend not measured: {e}"));
                None
            }
        }
    } else {
        None
    };
    if let Some(c) = &ctx {
        let k = crate::kernels::matmul::tiled::kernels();
        let on = if k != Kernels::Auto {
            "forced by SHADERGAN_KERNELS".to_string()
        } else if c.summary.is_cpu {
            "the register-blocked kernels on a CPU-emulated adapter".to_string()
        } else {
            "the tiled matmul_forward on a GPU".to_string()
        };
        report.notes.push(format!("matmul kernels: {} ({on})", k.name()));
        if c.summary.is_cpu {
            report
                .notes
                .push(format!("{} emulates a GPU on the CPU: its figures say nothing about GPU speed", c.summary.name));
        }
        if !c.supports_timestamps() {
            report.notes.push(format!("{} has no timestamp queries: no per-kernel times", c.summary.name));
        }
    }
    let gpu_f16 = ctx.as_ref().is_some_and(|c| c.supports_f16());
    if let (Some(c), false, true) = (&ctx, gpu_f16, opts.precisions.contains(&Precision::F16)) {
        report.notes.push(format!("{} has no shader-f16: GPU f16 not measured", c.summary.name));
    }
    for &batch in &opts.batch_sizes {
        for &precision in &opts.precisions {
            let name = precision.name();
            if let (Some(c), true) = (&ctx, precision == Precision::F32 || gpu_f16) {
                progress(&format!("gpu, {name}, batch {batch}"));
                report.steps.push(gpu_steps(c, &data, opts.arch, batch, precision, opts.seconds)?);
            }
            if opts.cpu {
                progress(&format!("cpu, {name}, batch {batch}"));
                report.steps.push(cpu_steps(&data, opts.arch, batch, precision, opts.seconds)?);
            }
        }
    }
    if opts.matmul {
        match &ctx {
            None => report.notes.push("matmul benchmark needs a GPU".into()),
            Some(c) => {
                let mut shapes = vec![(128, 256, 784), (64, 784, 256), (1024, 1024, 1024)];
                if !c.summary.is_cpu || opts.large {
                    shapes.push((4096, 4096, 4096));
                } else {
                    report.notes.push("4096^2 skipped on a CPU-emulated adapter (pass --large)".into());
                }
                // Every kernel at every shape: the register-blocked one and the tiled ones.
                let kernels = [Kernels::Register, Kernels::Tiled(16), Kernels::Tiled(8), Kernels::Tiled(4)];
                for (m, n, k) in shapes {
                    for kernel in kernels {
                        progress(&format!("matmul {m}x{n}x{k} {}", kernel.name()));
                        report.matmul.push(matmul_case(c, kernel, m, n, k, opts.seconds.min(2.0))?);
                    }
                }
            }
        }
    }
    Ok(report)
}

/// The report as the table `bench` prints; `entries` adds the time of every entry point.
pub fn table(r: &BenchReport, entries: bool) -> String {
    let mut s = format!("model: {}\n\n", r.model);
    s += &format!(
        "{:<7} {:<44} {:<9} {:>6} {:>10} {:>9}\n",
        "backend", "device", "precision", "batch", "steps/s", "GPU/CPU"
    );
    for x in &r.steps {
        let ratio = if x.backend == "gpu" {
            r.steps
                .iter()
                .find(|c| c.backend == "cpu" && c.batch == x.batch && c.precision == x.precision)
                .map(|c| format!("{:.2}x", x.steps_per_s / c.steps_per_s))
                .unwrap_or_default()
        } else {
            String::new()
        };
        // Three significant figures: the 64x64 DCGAN runs at a fraction of a step per second.
        let rate =
            if x.steps_per_s >= 100.0 { format!("{:.1}", x.steps_per_s) } else { format!("{:.3}", x.steps_per_s) };
        s +=
            &format!("{:<7} {:<44} {:<9} {:>6} {:>10} {:>9}\n", x.backend, x.device, x.precision, x.batch, rate, ratio);
    }
    for x in r.steps.iter().filter(|x| x.kernel_ms.is_some()) {
        let fam = x.kernel_ms.as_ref().expect("filtered");
        let total: f64 = fam.iter().map(|(_, v)| v).sum();
        s += &match x.backend.as_str() {
            "gpu" => format!(
                "\nGPU time per step, {}, batch {} (timestamp queries, one pass per dispatch): {total:.3} ms\n",
                x.precision, x.batch
            ),
            _ => format!(
                "\nCPU time per step, {}, batch {} (wall clock of each op, mean of {} steps): {total:.3} ms\n",
                x.precision,
                x.batch,
                crate::backend::cpu::PROFILE_RUNS
            ),
        };
        for (name, v) in fam {
            s += &format!("  {name:<12} {v:>10.3} ms  {:>5.1}%\n", 100.0 * v / total.max(1e-12));
        }
        if let (true, Some(per)) = (entries, &x.entry_ms) {
            for (name, v) in per {
                s += &format!("    {name:<30} {v:>10.3} ms\n");
            }
        }
    }
    if !r.matmul.is_empty() {
        s += &format!(
            "\n{:<22} {:<10} {:>12} {:>18}  (each result checked against the CPU first)\n",
            "matmul_forward m x n x k", "kernel", "GPU GFLOP/s", "CPU sgemm GFLOP/s"
        );
        for m in &r.matmul {
            s += &format!(
                "{:<22} {:<10} {:>12.2} {:>18.2}\n",
                format!("{}x{}x{}", m.m, m.n, m.k),
                m.kernel,
                m.gflops,
                m.cpu_sgemm_gflops
            );
        }
    }
    s += &dispatch_table(&r.dispatches);
    for n in &r.notes {
        s += &format!("note: {n}\n");
    }
    s
}
