//! The command line: parse, call the library, map errors to exit codes (2: bad input, 1: other).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use shadergan::model::Activation;
use shadergan::run::{self, RunOptions};
use shadergan::{data, Backend, Result, TrainOptions};

#[derive(Parser)]
#[command(name = "shadergan", version, about = "Train a GAN on the GPU with hand-written WGSL kernels")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a GAN on the samples of a .npy file.
    Train(TrainArgs),
    /// List the GPU adapters wgpu can see.
    Info,
}

#[derive(Args)]
struct TrainArgs {
    /// A .npy file of samples: uint8, float32 or float64; shape (N, D), (N, H, W) or (N, 1, H, W).
    data: PathBuf,
    /// auto: a real GPU if there is one, else the CPU.
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    /// Training steps (one step = one D update + one G update).
    #[arg(long, default_value_t = 2000)]
    steps: u32,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Decides the initial weights, the noise and the batch order, on both backends.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 2e-4)]
    lr: f32,
    #[arg(long, default_value_t = 0.5)]
    beta1: f32,
    #[arg(long, default_value_t = 0.999)]
    beta2: f32,
    #[arg(long, default_value_t = 64)]
    latent_dim: usize,
    /// Hidden layer sizes of G, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "256,256")]
    g_hidden: Vec<usize>,
    /// Hidden layer sizes of D, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "256,256")]
    d_hidden: Vec<usize>,
    #[arg(long, value_enum, default_value = "relu")]
    g_activation: Activation,
    #[arg(long, value_enum, default_value = "relu")]
    d_activation: Activation,
    /// G's output activation; default: sigmoid for data in [0, 1], identity otherwise.
    #[arg(long, value_enum)]
    g_output: Option<Activation>,
    /// Print a line every this many steps.
    #[arg(long, default_value_t = 100)]
    log_every: u32,
}

fn train(args: TrainArgs) -> Result<()> {
    let data = Arc::new(data::load_npy(&args.data)?);
    let opts = TrainOptions {
        latent_dim: args.latent_dim,
        g_hidden: args.g_hidden,
        d_hidden: args.d_hidden,
        g_activation: args.g_activation,
        d_activation: args.d_activation,
        g_output: args.g_output,
        batch_size: args.batch_size,
        seed: args.seed,
        lr: args.lr,
        beta1: args.beta1,
        beta2: args.beta2,
    };
    let cfg = opts.resolve(&data)?;
    eprintln!(
        "data: {} ({} samples of {}, {})",
        args.data.display(),
        data.n,
        data.sample_shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x"),
        data.dtype
    );
    let mut trainer = shadergan::open_trainer(args.backend, cfg, data.clone())?;
    eprintln!("backend: {:?} on {}", trainer.backend(), trainer.device_name());
    let run_opts = RunOptions { steps: args.steps, log_every: args.log_every, n_samples: data.n };
    run::train(trainer.as_mut(), &run_opts, |row| {
        println!("{}", row.line());
        Ok(())
    })?;
    Ok(())
}

fn info() -> Result<()> {
    let adapters = shadergan::gpu::context::list_adapters();
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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train(args),
        Command::Info => info(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

