//! The `export-web` command: a checkpoint, a run folder, a run's config.json, or `train`'s own
//! flags become a folder that a browser opens (index.html, no server needed): the generator to
//! sample from, with latent sliders and interpolation, or the whole training program to train
//! live. The browser runs shadergan's WGSL through its WebGPU, replayed by a small player
//! (web/player.js) from what [`program`] records; [`bundle`] writes the folder.

pub mod bundle;
pub mod program;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::web::WEB_MAX_STORAGE_BINDING;
use crate::config::{RunConfig, RunOptions, TrainConfig, TrainOptions};
use crate::data::source::{self, DataOptions};
use crate::data::toy::{self, Toy};
use crate::data::{assets, Dataset};
use crate::error::{Error, Result};
use crate::ir::DataChunks;
use crate::train::checkpoint;
use crate::train::run_dir::{resolve_checkpoint, RunDir};
use crate::train::session::{self, TrainRequest};

/// The `export-web` command's request.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    /// A checkpoint, a run folder (its latest checkpoint), a run's config.json, or training data
    /// (a .npy or a folder of images); None: `toy`, or the built-in digits.
    pub source: Option<PathBuf>,
    pub toy: Option<Toy>,
    pub data_options: DataOptions,
    /// `train`'s flags, for a training export from data.
    pub options: TrainOptions,
    pub run: RunOptions,
    /// More seeds the page offers (initial weights, noise, batch order and toy data of each).
    pub seeds: Vec<u64>,
    /// Keep the first this many samples of the data (a smaller page).
    pub samples: Option<usize>,
    pub out: PathBuf,
    pub overwrite: bool,
    /// The page's title [default: from the source].
    pub title: Option<String>,
}

/// A checkpoint's generator, to sample from.
pub struct SampleExport {
    pub cfg: TrainConfig,
    pub checkpoint: PathBuf,
    /// The path given (a run folder or a checkpoint), for the page's title.
    pub source: PathBuf,
    /// The run's toy data set, if its config.json names one (D's heat map and the real points).
    pub toy: Option<Toy>,
    pub step: u32,
}

/// A new run, to train live.
pub struct TrainExport {
    pub cfg: TrainConfig,
    pub data: Arc<Dataset>,
    pub data_name: String,
    pub toy: Option<Toy>,
}

/// What the folder holds.
pub enum Export {
    Sample(SampleExport),
    Train(TrainExport),
}

/// What the command wrote.
pub struct Exported {
    pub out: PathBuf,
    pub bytes: u64,
    pub training: bool,
}

fn is_checkpoint_source(p: &Path) -> bool {
    if p.is_dir() {
        return resolve_checkpoint(p).is_ok();
    }
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

/// Flags that would be ignored are refused: a checkpoint or config.json has its own settings.
fn refuse_training_flags(req: &ExportRequest, what: &str) -> Result<()> {
    let given = req.options != TrainOptions::default()
        || req.run != RunOptions::default()
        || req.toy.is_some()
        || req.data_options != DataOptions::default()
        || req.samples.is_some();
    if given {
        return Err(Error::input(format!(
            "export-web {what} takes its model, data and settings from it; drop the training flags \
             (they are for exporting a new run from data, --toy or the built-in digits)"
        )));
    }
    Ok(())
}

/// The run's toy data set, when its config.json beside the checkpoint names one.
fn run_toy(ckpt: &Path) -> Result<Option<Toy>> {
    let run = RunConfig::read(&RunDir::root_of(ckpt))?;
    Ok(run.and_then(|r| r.data.toy).and_then(|t| <Toy as clap::ValueEnum>::from_str(&t, true).ok()))
}

/// A run's config.json: its configuration and its data, read as the run read it.
fn from_run_config(path: &Path) -> Result<Export> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::input(format!("{}: cannot read: {e}", path.display())))?;
    let run: RunConfig = serde_json::from_str(&text)
        .map_err(|e| Error::input(format!("{}: not a shadergan run configuration: {e}", path.display())))?;
    let cfg = run.train;
    let toy = run.data.toy.as_deref().and_then(|t| <Toy as clap::ValueEnum>::from_str(t, true).ok());
    let root = path.parent().unwrap_or(Path::new("."));
    let (data, data_name) = match toy {
        Some(t) => (t.dataset(cfg.seed, toy::TOY_SAMPLES)?, format!("toy:{}", t.name())),
        None if run.data.path == assets::DEFAULT_DATA_NAME => (assets::default_dataset()?, run.data.path.clone()),
        None => {
            let opts = DataOptions::recorded(run.data.layout, run.data.labels.as_deref(), run.data.folder.as_ref())?;
            let loaded = source::load(Some(Path::new(&run.data.path)), &opts, Some(root), false)?;
            (loaded.data, run.data.path.clone())
        }
    };
    if data.dim != cfg.model.data_dim {
        return Err(Error::input(format!(
            "{}: the run's data ({data_name}) now has samples of {} values, its model {}",
            path.display(),
            data.dim,
            cfg.model.data_dim
        )));
    }
    Ok(Export::Train(TrainExport { cfg, data: Arc::new(data), data_name, toy }))
}

/// What `train` with these flags would run.
fn from_flags(req: &ExportRequest) -> Result<Export> {
    if req.toy.is_some() && req.source.is_some() {
        return Err(Error::input("pass either a data file or --toy, not both"));
    }
    let mut options = req.options.clone();
    if let Some(&first) = req.seeds.first() {
        options.seed = first;
    }
    let (data, name) = match req.toy {
        Some(t) => (t.dataset(options.seed, toy::TOY_SAMPLES)?, format!("toy:{}", t.name())),
        None => {
            let loaded = source::load(req.source.as_deref(), &req.data_options, None, false)?;
            (loaded.data, loaded.name)
        }
    };
    let data = match req.samples {
        Some(0) => return Err(Error::input("--samples must be at least 1")),
        Some(n) => data.first(n),
        None => data,
    };
    let mut train = TrainRequest::new(req.source.clone());
    train.toy = req.toy;
    train.options = options;
    train.run = req.run.clone();
    let cfg = session::new_run_config(&train, &data, &name, req.toy)?;
    Ok(Export::Train(TrainExport { cfg, data: Arc::new(data), data_name: name, toy: req.toy }))
}

/// Reads the source: what the folder will hold.
pub fn resolve(req: &ExportRequest) -> Result<Export> {
    match req.source.as_deref() {
        Some(p) if is_checkpoint_source(p) => {
            refuse_training_flags(req, "CHECKPOINT")?;
            if !req.seeds.is_empty() {
                return Err(Error::input("--seeds is for training exports; a checkpoint has its own weights"));
            }
            let path = resolve_checkpoint(p)?;
            let ckpt = checkpoint::load(&path)?;
            let toy = run_toy(&path)?;
            let step = ckpt.snapshot.state.step;
            Ok(Export::Sample(SampleExport { cfg: ckpt.config, checkpoint: path, source: p.to_path_buf(), toy, step }))
        }
        Some(p) if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) => {
            refuse_training_flags(req, "CONFIG.json")?;
            if !req.seeds.is_empty() {
                return Err(Error::input("--seeds is for exports from data or --toy; a config.json has its own seed"));
            }
            from_run_config(p)
        }
        _ => from_flags(req),
    }
}

/// The data chunks a browser binds: whole rows under WebGPU's default binding limit.
pub fn web_chunks(data: &Dataset) -> Result<DataChunks> {
    DataChunks::plan(data.n, data.row_bytes(), Some(WEB_MAX_STORAGE_BINDING))
}

pub fn export(req: &ExportRequest) -> Result<Exported> {
    bundle::check_out(&req.out, req.overwrite)?;
    if req.options.conditional || req.data_options.labels.is_some() {
        return Err(Error::input(
            "export-web trains only unconditional GANs live; leave out --conditional and --labels (a \
             conditional run's checkpoint exports to sample each class)",
        ));
    }
    let what = resolve(req)?;
    if let Export::Train(t) = &what {
        if t.cfg.model.classes > 0 {
            return Err(Error::input(
                "export-web trains only unconditional GANs live (this run is --conditional); export its \
                 checkpoint or run folder to sample each class",
            ));
        }
    }
    let program = match &what {
        Export::Sample(s) => bundle::sample_program(s, req.title.as_deref())?,
        Export::Train(t) => bundle::train_program(t, &req.seeds, req.title.as_deref())?,
    };
    let bytes = bundle::write_folder(&req.out, &program)?;
    Ok(Exported { out: req.out.clone(), bytes, training: matches!(what, Export::Train(_)) })
}
