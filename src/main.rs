//! The command line: parse, call the library, map errors to exit codes (2: bad input, 1: other).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use shadergan::commands::generate::{Classes, GenerateRequest};
use shadergan::config::{Given, Precision, RunOptions};
use shadergan::data::source::DataOptions;
use shadergan::data::toy::Toy;
use shadergan::eval::ClassifierChoice;
use shadergan::train::session::{self, TrainRequest, Verbosity};
use shadergan::{Backend, Error, Result, TrainOptions};

#[derive(Parser)]
#[command(name = "shadergan", version, about = "Train a GAN on the GPU with hand-written WGSL kernels")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a GAN on the samples of a .npy file or a folder of images (default: 10,000 built-in
    /// MNIST digits).
    Train(Box<TrainArgs>),
    /// Write samples from a checkpoint's generator.
    Generate(GenerateArgs),
    /// Measure a run's generator, printed as JSON: toy runs by modes captured, % high quality and
    /// reverse KL; image runs by the sliced Wasserstein distance (16x16 and up) and, where a
    /// classifier fits, class coverage, class-KL, classifier score and Fréchet distance, each
    /// beside its real-vs-real floor.
    Eval(EvalArgs),
    /// List the GPU adapters wgpu can see (Vulkan, Metal, DX12; OpenGL too with WGPU_BACKEND=gl).
    Info,
    /// Measure training speed on the GPU and CPU backends side by side (and matmul GFLOP/s).
    Bench(BenchArgs),
    /// The digit classifier that scores image runs (class coverage, class-KL, score, FD).
    #[command(subcommand)]
    Classifier(ClassifierCommand),
    /// Write a folder a browser opens (index.html, WebGPU): a checkpoint's generator to sample
    /// from, or a new run (train's flags, or a run's config.json) to train live, on shadergan's
    /// own WGSL kernels.
    ExportWeb(Box<ExportWebArgs>),
}

#[derive(Args)]
struct ExportWebArgs {
    /// A checkpoint or a run folder (its latest checkpoint): the page samples from its generator.
    /// A run's config.json, a .npy or a folder of images (with train's flags), or nothing
    /// (--toy, or the built-in digits): the page trains that run live.
    source: Option<PathBuf>,
    /// The folder to write (index.html, program.js and the page's scripts).
    #[arg(long)]
    out: PathBuf,
    /// Replace the files of a non-empty --out.
    #[arg(long)]
    overwrite: bool,
    /// Train on a toy 2-D data set (100,000 points drawn from the seed).
    #[arg(long, value_enum, conflicts_with = "source")]
    toy: Option<Toy>,
    #[command(flatten)]
    data_options: DataOptions,
    #[command(flatten)]
    options: TrainOptions,
    #[command(flatten)]
    run: RunOptions,
    /// Seeds the page offers (initial weights, noise, batch order, and toy data, each as `train
    /// --seed` gives them); the first is shown first. Replaces --seed.
    #[arg(long, value_delimiter = ',', conflicts_with = "seed")]
    seeds: Vec<u64>,
    /// Keep only the first N samples of the data (a smaller page; the program is then that of a
    /// run on those N).
    #[arg(long, value_name = "N")]
    samples: Option<usize>,
    /// The page's title.
    #[arg(long)]
    title: Option<String>,
}

#[derive(Subcommand)]
enum ClassifierCommand {
    /// Train an MLP classifier with shadergan's kernels and save it as safetensors.
    Train(ClassifierTrainArgs),
}

#[derive(Args)]
struct ClassifierTrainArgs {
    /// Training images: a .npy like `train` takes (e.g. MNIST's uint8 (60000, 784)).
    images: PathBuf,
    /// Their labels: a .npy of shape (N,), integer class indices from 0.
    labels: PathBuf,
    /// Held-out images, scored after every epoch (the accuracy is stored in the file).
    #[arg(long, requires = "test_labels")]
    test_images: Option<PathBuf>,
    #[arg(long, requires = "test_images")]
    test_labels: Option<PathBuf>,
    /// Where to write the classifier.
    #[arg(long, default_value = "classifier.safetensors")]
    out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    request: shadergan::programs::classifier::ClassifierRequest,
}

#[derive(Args)]
struct BenchArgs {
    /// Batch sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,256")]
    batch_sizes: Vec<usize>,
    /// Seconds to measure each configuration for (after a short warm-up).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Which backends to measure, comma-separated: gpu, cpu, or all (both, side by side; a GPU
    /// emulated on the CPU counts as a GPU here). `--backends both` is the old spelling.
    #[arg(long, alias = "backends", value_delimiter = ',', default_value = "all", value_parser = ["all", "both", "gpu", "cpu"])]
    backend: Vec<String>,
    /// Also measure matmul GFLOP/s (the model's shapes, 1024^2, 4096^2).
    #[arg(long)]
    matmul: bool,
    /// Include 4096^2 even on a CPU-emulated adapter.
    #[arg(long)]
    large: bool,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also list the time of every kernel entry point (GPU timestamps; on the CPU, wall clock).
    #[arg(long)]
    kernels: bool,
    /// Storage precisions to measure, comma-separated (f16 on the GPU needs shader-f16).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "f32,f16")]
    precision: Vec<Precision>,
    /// The model: mlp (the benchmark MLP) or dcgan (the convolutional GAN, f32 only).
    #[arg(long, value_enum, default_value = "mlp")]
    arch: shadergan::config::model::Arch,
    /// --arch dcgan: 28 (the 28x28 recipe of the PyTorch peer torch_dcgan.py), 32 or 64
    /// (PyTorch's examples/dcgan on colour images, as scripts/torch_dcgan_bench.py).
    #[arg(long, default_value_t = 28)]
    image_size: usize,
    /// Threads of the CPU backend [default: SHADERGAN_THREADS, else every core this process may
    /// use].
    #[arg(long)]
    threads: Option<usize>,
    /// Print the cost model instead of measuring: every dispatch of a training step of the
    /// model (--arch, the first of --batch-sizes) with its FLOPs, bytes, workgroups and
    /// arithmetic intensity, and a roofline lower bound of the step's time on a modelled GPU;
    /// then every model on every modelled GPU. No device is used, so the measuring flags are
    /// refused beside it.
    #[arg(long, conflicts_with_all = ["seconds", "backend", "matmul", "large", "kernels", "precision", "image_size", "threads"])]
    plan: bool,
    /// The modelled GPU of --plan: h100, rtx4090, m2 (data-sheet figures, model inputs), or
    /// custom:TFLOPS,GBS,US (peak f32 TFLOP/s, bandwidth GB/s, microseconds per dispatch).
    #[arg(long, default_value = "h100", requires = "plan")]
    plan_gpu: String,
}

#[derive(Args)]
struct TrainArgs {
    /// A .npy file of samples (uint8, float32 or float64; shape (N, D), (N, H, W), (N, C, H, W)
    /// or (N, H, W, C) with C = 1 or 3), or a folder of PNG/JPEG images (loose or in class
    /// subfolders). Without one, trains on the first 10,000 MNIST digits built into shadergan (a
    /// resumed run: on the data its config.json names).
    data: Option<PathBuf>,
    #[command(flatten)]
    data_options: DataOptions,
    /// Train on a toy 2-D data set (100,000 points drawn from --seed) instead of a data file, and
    /// write its mode-collapse metrics to eval.json at the end.
    #[arg(long, value_enum, conflicts_with = "data")]
    toy: Option<Toy>,
    /// auto: a real GPU if there is one, else the CPU.
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    #[command(flatten)]
    options: TrainOptions,
    #[command(flatten)]
    run: RunOptions,
    /// What scores image runs: auto (the built-in MNIST digit classifier for 28x28 images), a
    /// file from `shadergan classifier train`, builtin, or none.
    #[arg(long, default_value = "auto")]
    classifier: ClassifierChoice,
    /// Run folder [default: the next free runs/NNN; a resumed run: its own].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace a run already in --out.
    #[arg(long)]
    overwrite: bool,
    /// Continue from a checkpoint, or a run folder's latest (its model and optimizer state,
    /// cadences and planned length; --steps is the new total). The run goes on in its own folder, or in --out with its
    /// config.json and metrics.csv carried over.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
    /// Threads of the CPU backend [default: SHADERGAN_THREADS, else every core this process may
    /// use]. The thread count never changes the bits a seed gives.
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct EvalArgs {
    /// A run folder (its latest checkpoint), a checkpoint file, or a .npy of generated images
    /// (uint8 or floats in [0, 1], e.g. from another trainer; scored against --data, a .npy or
    /// an image folder read as `train` reads it, e.g. with --image-size).
    target: PathBuf,
    /// Measure against this toy benchmark [default: the run's own --toy].
    #[arg(long, value_enum)]
    toy: Option<Toy>,
    /// The real images, a .npy or a folder [default: the run's own data, as its config.json names
    /// it and read as the run read it].
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    data_options: DataOptions,
    /// What scores image runs: auto, builtin, none or a classifier file.
    #[arg(long, default_value = "auto")]
    classifier: ClassifierChoice,
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
}

#[derive(Args)]
struct GenerateArgs {
    /// A checkpoint written by `train` (e.g. runs/001/checkpoints/step_002000.safetensors), or a
    /// run folder (runs/001: its latest checkpoint).
    checkpoint: PathBuf,
    /// How many samples (of each class with --classes; ignored with --z and --labels).
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// Output .npy: uint8 (N, D) for image data, float32 otherwise.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write a PNG grid of the first 64 samples (128 with --classes: a named row per class, up
    /// to 16 classes).
    #[arg(long)]
    grid: Option<PathBuf>,
    /// Latent vectors to use, float32 (N, latent_dim), instead of seeded noise.
    #[arg(long)]
    z: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    /// A conditional run's generator: every sample of this class (its name, e.g. a class
    /// folder's, or its index) [default: sample i of class i mod the number of classes].
    #[arg(long, conflicts_with_all = ["classes", "labels"])]
    class: Option<String>,
    /// A conditional run's generator: the same --n latent vectors (or --z rows) for each of these
    /// classes in turn, comma-separated (--n 8 --grid: one row per class, named).
    #[arg(long, value_delimiter = ',', conflicts_with = "labels")]
    classes: Vec<String>,
    /// A conditional run's generator: the class of each sample, a .npy of integers (N,); N
    /// samples (--n is ignored), or one per --z row.
    #[arg(long, value_name = "FILE.npy")]
    labels: Option<PathBuf>,
}

/// `--threads`: the CPU backend's pool size, set before anything starts it.
fn set_threads(threads: Option<usize>) -> Result<()> {
    match threads {
        Some(0) => Err(Error::input("--threads must be at least 1")),
        Some(n) => {
            shadergan::ir::pool::set_default_threads(n);
            Ok(())
        }
        None => Ok(()),
    }
}

fn train(args: TrainArgs, given: Given) -> Result<()> {
    set_threads(args.threads)?;
    let req = TrainRequest {
        data: args.data.clone(),
        data_options: args.data_options,
        toy: args.toy,
        backend: args.backend,
        options: args.options,
        run: args.run.clone(),
        given,
        out: args.out,
        overwrite: args.overwrite,
        resume: args.resume,
        verbosity: if args.quiet { Verbosity::Quiet } else { Verbosity::Normal },
        classifier: args.classifier,
    };
    // Ctrl-C and SIGTERM finish the current chunk of steps, write a checkpoint and exit cleanly.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let summary = session::train(&req, stop)?;
    if summary.interrupted {
        let data = match args.toy {
            Some(t) => format!("--toy {} ", t.name()),
            None => args.data.map(|d| format!("{} ", d.display())).unwrap_or_default(),
        };
        eprintln!(
            "stopped at step {}; checkpoint written. Resume with:\n  shadergan train {data}--resume {}{}",
            summary.last.map_or(0, |r| r.stats.step),
            summary.latest_checkpoint.display(),
            args.run.steps.map(|s| format!(" --steps {s}")).unwrap_or_default()
        );
    } else if !args.quiet {
        eprintln!(
            "done: samples in {0}/samples, checkpoint {1}",
            summary.run_dir.display(),
            summary.latest_checkpoint.display()
        );
    }
    Ok(())
}

fn generate(args: GenerateArgs) -> Result<()> {
    let (out, grid) = (args.out.clone(), args.grid.clone());
    let req = GenerateRequest {
        checkpoint: args.checkpoint,
        n: args.n,
        out: args.out.clone(),
        grid: args.grid.clone(),
        z: args.z,
        seed: args.seed,
        backend: args.backend,
        classes: match (args.class, args.classes.is_empty(), args.labels) {
            (Some(k), _, _) => Some(Classes::One(k)),
            (None, false, _) => Some(Classes::Each(args.classes)),
            (None, true, Some(f)) => Some(Classes::File(f)),
            (None, true, None) => None,
        },
    };
    if req.out.is_none() && req.grid.is_none() {
        return Err(Error::input("nothing to write: pass --out samples.npy and/or --grid grid.png"));
    }
    let g = shadergan::commands::generate::generate(&req)?;
    let to: Vec<String> = out.iter().chain(&grid).map(|p| p.display().to_string()).collect();
    let classes = g.class_names.map_or(String::new(), |c| format!(" (classes: {c})"));
    eprintln!("generated {} samples of {} values each{classes}: {}", g.n, g.dim, to.join(", "));
    Ok(())
}

fn export_web(args: ExportWebArgs) -> Result<()> {
    let req = shadergan::commands::export_web::ExportRequest {
        source: args.source,
        toy: args.toy,
        data_options: args.data_options,
        options: args.options,
        run: args.run,
        seeds: args.seeds,
        samples: args.samples,
        out: args.out,
        overwrite: args.overwrite,
        title: args.title,
    };
    let e = shadergan::commands::export_web::export(&req)?;
    let what = if e.training { "trains this run live" } else { "samples from this generator" };
    eprintln!(
        "wrote {} ({:.1} MB): open {} in a browser with WebGPU; it {what}",
        e.out.display(),
        e.bytes as f64 / 1e6,
        e.out.join("index.html").display()
    );
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    let req = shadergan::commands::eval::EvalRequest {
        target: args.target,
        toy: args.toy,
        data: args.data,
        data_options: args.data_options,
        classifier: args.classifier,
        backend: args.backend,
    };
    let v = shadergan::commands::eval::eval(&req)?;
    println!("{}", serde_json::to_string_pretty(&v).map_err(|e| Error::Io(e.to_string()))?);
    Ok(())
}

fn classifier_train(args: ClassifierTrainArgs) -> Result<()> {
    use shadergan::programs::classifier::{self, Labelled};
    if args.out.exists() && !args.overwrite {
        return Err(Error::input(format!("{} exists; pass --overwrite to replace it", args.out.display())));
    }
    let images = shadergan::data::load_npy(&args.images)?;
    let labels = shadergan::data::load_labels(&args.labels)?;
    let test = match (&args.test_images, &args.test_labels) {
        (Some(i), Some(l)) => Some((shadergan::data::load_npy(i)?, shadergan::data::load_labels(l)?)),
        _ => None,
    };
    let req = args.request;
    let test_set = test.as_ref().map(|(i, l)| Labelled { images: i, labels: l });
    let clf = classifier::train(&Labelled { images: &images, labels: &labels }, test_set.as_ref(), &req)?;
    clf.save(&args.out)?;
    if !req.quiet {
        let acc = clf.spec.test_accuracy.map_or(String::new(), |a| format!(" (test accuracy {:.2}%)", 100.0 * a));
        eprintln!("wrote {}{acc}", args.out.display());
    }
    Ok(())
}

fn bench(args: BenchArgs) -> Result<()> {
    if args.batch_sizes.contains(&0) || args.seconds.is_nan() || args.seconds <= 0.0 {
        return Err(Error::input("--batch-sizes and --seconds must be positive"));
    }
    if args.plan {
        use shadergan::commands::plan;
        let gpu = plan::gpu_model(&args.plan_gpu)?;
        let report = plan::bench_plan(args.arch, args.batch_sizes[0], &gpu)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report).map_err(|e| Error::Io(e.to_string()))?);
        } else {
            print!("{}", plan::plan_report_table(&report));
        }
        return Ok(());
    }
    set_threads(args.threads)?;
    let opts = shadergan::commands::bench::BenchOptions {
        batch_sizes: args.batch_sizes,
        seconds: args.seconds,
        gpu: args.backend.iter().any(|b| b != "cpu"),
        cpu: args.backend.iter().any(|b| b != "gpu"),
        matmul: args.matmul,
        large: args.large,
        precisions: args.precision,
        arch: args.arch,
        image_size: args.image_size,
    };
    let report = shadergan::commands::bench::run(&opts, |what| eprintln!("measuring {what} ..."))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| Error::Io(e.to_string()))?);
    } else {
        print!("{}", shadergan::commands::bench::table(&report, args.kernels));
    }
    Ok(())
}

fn info() -> Result<()> {
    let adapters = shadergan::backend::gpu::context::list_adapters();
    if adapters.is_empty() {
        println!("no GPU adapters found");
    }
    for a in adapters {
        println!("{}", a.describe());
        println!("  driver: {}", a.driver);
        println!(
            "  max storage binding {} MiB, max buffer {} MiB, workgroups/dim {}, invocations/workgroup {}",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroups_per_dimension,
            a.max_compute_invocations_per_workgroup
        );
        println!(
            "  timestamp queries: {}, shader-f16: {}, subgroups: {}",
            a.timestamp_queries, a.shader_f16, a.subgroups
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    // Before any thread exists: it may set an environment variable (see there).
    shadergan::backend::gpu::context::quiet_device_select_layer();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Train(args) => {
            let given = matches.subcommand_matches("train").map(Given::from_matches).unwrap_or_default();
            train(*args, given)
        }
        Command::Generate(args) => generate(args),
        Command::Eval(args) => eval(args),
        Command::Info => info(),
        Command::Bench(args) => bench(args),
        Command::Classifier(ClassifierCommand::Train(args)) => classifier_train(args),
        Command::ExportWeb(args) => export_web(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
