//! Where a run's data comes from, as the flags say it and as config.json records it: a `.npy`
//! file (`--layout` for 4-D shapes that read both ways), a folder of PNG/JPEG images
//! (`--image-size`, `--channels`, `--skip-bad-images`, `--cache`), or the built-in digits. The
//! same options load the data again for `train --resume` and `eval`.
//!
//! The image cache: decoding a large folder takes minutes, so the decoded array is kept as a
//! uint8 (N, H, W, C) `.npy` with a JSON sidecar ([`folder`]'s cache), and a cache that no longer
//! matches the folder or the options (images added, removed, renamed or changed; another
//! `--image-size`) is rebuilt by itself. By default it lives in the run folder
//! (`RUN/data-cache.npy`), so resuming and evaluating a run never decode again; `--cache FILE`
//! shares one across runs (the cache of a folder you train on often); `--cache none` decodes
//! every time and writes nothing.

use std::fmt;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};

use super::folder::{self, FolderImages, FolderOptions};
use super::labels::{self, ClassLabels};
use super::{assets, load_npy_with, Dataset, Layout};
use crate::error::{Error, Result};

/// The cache file's name in a run folder.
pub const RUN_CACHE_NAME: &str = "data-cache.npy";

/// How the data is read: flags of `train` and `eval`. Those after `labels` are for image folders.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct DataOptions {
    /// Where a 4-D .npy keeps its channels, for shapes that read both ways, e.g. (N, 3, 32, 3)
    /// [default: from the shape: a 1 or 3 on axis 1 is NCHW, on axis 3 NHWC].
    #[arg(long, value_enum)]
    pub layout: Option<Layout>,
    /// --conditional with a .npy data file: the class of each sample, a .npy of integers (N,)
    /// (class indices from 0). An image folder's classes are its subfolders; the built-in digits
    /// have theirs built in.
    #[arg(long, value_name = "FILE.npy")]
    pub labels: Option<PathBuf>,
    /// Image folders: resize each image's shorter side to S (antialiased) and cut out the centred
    /// S x S square; needed when the images differ in size.
    #[arg(long, value_name = "S")]
    pub image_size: Option<u32>,
    /// Image folders: 1 (gray; colour becomes luma, 0.299 R + 0.587 G + 0.114 B) or 3 (RGB; gray
    /// is replicated) [default: 3 when any image has colour, else 1].
    #[arg(long)]
    pub channels: Option<u8>,
    /// Image folders: skip files that do not load (one warning names them) instead of failing.
    #[arg(long)]
    pub skip_bad_images: bool,
    /// Image folders: where the decoded images are kept (FILE and FILE.json), rebuilt when the
    /// folder or the options change; `none`: decode every time [default: data-cache.npy in the
    /// run folder].
    #[arg(long, value_name = "FILE|none")]
    pub cache: Option<Cache>,
}

/// Where a folder's decoded images are cached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Cache {
    /// `data-cache.npy` in the run folder.
    #[default]
    Run,
    /// No cache.
    None,
    File(PathBuf),
}

impl std::str::FromStr for Cache {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "" => return Err("give a file name, or none".into()),
            "none" => Cache::None,
            "run" => Cache::Run,
            path => Cache::File(PathBuf::from(path)),
        })
    }
}

impl fmt::Display for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cache::Run => write!(f, "run"),
            Cache::None => write!(f, "none"),
            Cache::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// How a folder was read, as config.json records it (`data.folder`): the options as given (None:
/// automatic) and the cache ("run": the run folder's, "none", or a file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderInfo {
    pub image_size: Option<u32>,
    pub channels: Option<u8>,
    pub skip_bad_images: bool,
    pub cache: String,
}

impl DataOptions {
    fn folder_flags(&self) -> Vec<&'static str> {
        let mut v = vec![];
        if self.image_size.is_some() {
            v.push("--image-size");
        }
        if self.channels.is_some() {
            v.push("--channels");
        }
        if self.skip_bad_images {
            v.push("--skip-bad-images");
        }
        if self.cache.is_some() {
            v.push("--cache");
        }
        v
    }

    /// The options of a run that read its data as config.json records: `layout`, `labels` (a
    /// `--labels` file) and a folder's `info`.
    pub fn recorded(layout: Option<Layout>, labels: Option<&str>, info: Option<&FolderInfo>) -> Result<Self> {
        let labels = labels.map(PathBuf::from);
        let Some(f) = info else { return Ok(DataOptions { layout, labels, ..Default::default() }) };
        Ok(DataOptions {
            layout: None,
            labels,
            image_size: f.image_size,
            channels: f.channels,
            skip_bad_images: f.skip_bad_images,
            cache: Some(f.cache.parse().map_err(|e| Error::input(format!("config.json: data.folder.cache: {e}")))?),
        })
    }

    fn folder_options(&self, progress: bool) -> FolderOptions {
        FolderOptions { image_size: self.image_size, channels: self.channels, skip_bad: self.skip_bad_images, progress }
    }
}

/// Data loaded for a run.
pub struct Loaded {
    pub data: Dataset,
    /// The path as given, or the built-in set's name (logs, config.json).
    pub name: String,
    /// Lines for stderr: images skipped, a cache rebuilt.
    pub notes: Vec<String>,
    /// The samples' classes when they come with the data: a `--labels` file, the built-in
    /// digits'. A folder's are read from its file list, on demand ([`Loaded::class_labels`]).
    pub labels: Option<ClassLabels>,
    /// How a folder was read (config.json), None for other data.
    pub folder: Option<FolderInfo>,
    /// A folder's file list and source record (its pixels are in `data`), and the cache file
    /// read or written while loading, if any: for [`Loaded::write_run_cache`].
    meta: Option<(FolderImages, Option<PathBuf>)>,
}

impl Loaded {
    /// Data that needs no cache (a file, the built-in digits, a toy set).
    pub fn plain(data: Dataset, name: String) -> Self {
        Loaded { data, name, notes: vec![], labels: None, folder: None, meta: None }
    }

    /// The class of each sample, for `--conditional`: the `--labels` file's or the built-in
    /// digits', or a folder's class subfolders (call it before [`Loaded::write_run_cache`],
    /// which lets the file list go). An error names what is missing.
    pub fn class_labels(&self) -> Result<ClassLabels> {
        if let Some(l) = &self.labels {
            return Ok(l.clone());
        }
        if let Some((images, _)) = &self.meta {
            // A cache from before the walk's root was recorded: the folder as given now.
            let root = images.root.clone().unwrap_or_else(|| PathBuf::from(&self.name));
            return labels::folder_classes(&root, &images.files);
        }
        Err(Error::input(format!(
            "{}: --conditional needs the class of each sample: pass --labels LABELS.npy (integer class \
             indices, one per sample)",
            self.name
        )))
    }

    /// With the default cache (`Cache::Run`): writes the run folder's cache when loading did not
    /// already read or write that very file (a new run, whose folder is created only once its
    /// data is known to be good; a resumed run continuing in a new `--out`).
    /// `data` is the loaded data (it may have been moved out of `self.data`).
    pub fn write_run_cache(&mut self, run_dir: &Path, data: &Dataset) -> Result<()> {
        let target = run_dir.join(RUN_CACHE_NAME);
        let (Some(f), Some((images, used))) = (&self.folder, &self.meta) else { return Ok(()) };
        if f.cache != Cache::Run.to_string() || used.as_deref() == Some(target.as_path()) {
            return Ok(());
        }
        let super::DataValues::U8(planes) = &data.values else { return Ok(()) };
        folder::save_cache_planes(&target, images, planes)?;
        self.meta = None;
        Ok(())
    }
}

/// Loads the data at `path` (None: the built-in digits) as `opts` say. `run_dir` is the run
/// folder when it exists already (resume, eval): a folder's default cache is read from and
/// written to it; without one (a new run, which creates its folder only once the data is known
/// to be good) the cache is written later, by [`Loaded::write_run_cache`]. `progress`: a bar
/// while decoding, on a terminal.
pub fn load(path: Option<&Path>, opts: &DataOptions, run_dir: Option<&Path>, progress: bool) -> Result<Loaded> {
    let Some(path) = path else {
        refuse_folder_flags(opts, "the built-in digits are no image folder")?;
        if opts.layout.is_some() {
            return Err(Error::input("--layout applies to a .npy file; the built-in digits are (N, 784)"));
        }
        if opts.labels.is_some() {
            return Err(Error::input(
                "--labels is for a .npy data file; the built-in digits have their labels built in",
            ));
        }
        let data = assets::default_dataset()?;
        let name = assets::DEFAULT_DATA_NAME.to_string();
        let labels = Some(assets::default_labels()?);
        return Ok(Loaded { labels, ..Loaded::plain(data, name) });
    };
    let name = path.display().to_string();
    if !path.is_dir() {
        refuse_folder_flags(opts, &format!("{name} is a file, not an image folder"))?;
        let data = load_npy_with(path, opts.layout)?;
        let labels = opts.labels.as_deref().map(|l| labels::load_label_file(l, data.n)).transpose()?;
        return Ok(Loaded { labels, ..Loaded::plain(data, name) });
    }
    if opts.layout.is_some() {
        return Err(Error::input(format!(
            "--layout applies to .npy files; {name} is a folder, whose images are read as (N, H, W, C)"
        )));
    }
    if opts.labels.is_some() {
        return Err(Error::input(format!(
            "--labels is for a .npy data file; {name} is a folder, whose classes are its subfolders"
        )));
    }
    load_folder(path, name, opts, run_dir, progress)
}

fn refuse_folder_flags(opts: &DataOptions, why: &str) -> Result<()> {
    match opts.folder_flags().as_slice() {
        [] => Ok(()),
        [one] => Err(Error::input(format!("{one} applies to image folders only; {why}"))),
        flags => Err(Error::input(format!("{} apply to image folders only; {why}", flags.join(", ")))),
    }
}

fn load_folder(dir: &Path, name: String, opts: &DataOptions, run_dir: Option<&Path>, progress: bool) -> Result<Loaded> {
    let fopts = opts.folder_options(progress);
    let cache = opts.cache.clone().unwrap_or_default();
    let file = match (&cache, run_dir) {
        (Cache::File(f), _) => Some(f.clone()),
        (Cache::Run, Some(run)) => Some(run.join(RUN_CACHE_NAME)),
        (Cache::Run, None) | (Cache::None, _) => None,
    };
    let mut notes = vec![];
    let mut images = match &file {
        Some(f) => {
            let existed = f.is_file() || folder::sidecar_path(f).is_file();
            let (images, rebuilt) = folder::load_image_folder_cached(dir, &fopts, f)?;
            match rebuilt {
                Some(why) if existed => notes.push(format!("note: rebuilt the image cache {}: {why}", f.display())),
                Some(_) => notes.push(format!("note: decoded images cached in {}", f.display())),
                None => notes.push(format!("note: images read from the cache {}", f.display())),
            }
            images
        }
        None => folder::load_image_folder(dir, &fopts)?,
    };
    notes.extend(images.skipped_warning(3));
    let data = Dataset::from_folder(&mut images)?;
    let folder = Some(FolderInfo {
        image_size: opts.image_size,
        channels: opts.channels,
        skip_bad_images: opts.skip_bad_images,
        cache: cache.to_string(),
    });
    Ok(Loaded { data, name, notes, labels: None, folder, meta: Some((images, file)) })
}
