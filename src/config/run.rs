//! A run folder's config.json: everything a run was started with, written and read through this
//! one typed struct. Version 1 (shadergan 0.1.0) had the same fields without `version`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::train::TrainConfig;
use crate::data::source::FolderInfo;
use crate::data::{ImageShape, Layout};
use crate::error::{Error, Result};

/// The version this build writes.
pub const RUN_CONFIG_VERSION: u32 = 2;

fn version_1() -> u32 {
    1
}

/// The training data, as the run saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// The file given, or the built-in data set's name, or `toy:NAME`.
    pub path: String,
    /// The toy data set (`--toy`), drawn from the run's seed.
    pub toy: Option<String>,
    pub n: usize,
    /// As in the source: [H, W, C] for image folders and (N, H, W, C) files.
    pub sample_shape: Vec<usize>,
    pub dtype: String,
    /// Where the source had its channel axis ("nchw", "nhwc"; image folders: "nhwc"); absent
    /// for (N, D) and (N, H, W) data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
    /// The image geometry the models see (samples as channel planes, NCHW): channels, height,
    /// width; absent for data that is not images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageShape>,
    /// How an image folder was read (`--image-size`, `--channels`, `--skip-bad-images`,
    /// `--cache`), so that resume and eval read it the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<FolderInfo>,
    /// The `--labels` file of a conditional run on a .npy (the class names are the training
    /// config's `class_names`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(default = "version_1")]
    pub version: u32,
    pub train: TrainConfig,
    pub data: DataInfo,
    /// "cpu" or "gpu", and the device's name.
    pub backend: String,
    pub device: String,
    /// The run's planned length.
    pub steps: u32,
    pub steps_per_epoch: usize,
    pub log_every: u32,
    pub sample_every: u32,
    pub checkpoint_every: u32,
    #[serde(default)]
    pub eval_every: u32,
    /// The classifier that scores the run, if any.
    #[serde(default)]
    pub classifier: Option<String>,
    #[serde(default)]
    pub resumed_from: Option<String>,
    pub shadergan_version: String,
}

impl RunConfig {
    /// `dir/config.json`: None when there is none; an error naming the file when it is not one.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join("config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::input(format!("{}: cannot read: {e}", path.display()))),
        };
        let cfg: RunConfig = serde_json::from_str(&text)
            .map_err(|e| Error::input(format!("{}: not a shadergan run configuration: {e}", path.display())))?;
        if cfg.version > RUN_CONFIG_VERSION {
            return Err(Error::input(format!(
                "{}: written by a newer shadergan (config version {}; this build reads up to {RUN_CONFIG_VERSION})",
                path.display(),
                cfg.version
            )));
        }
        Ok(Some(cfg))
    }

    /// Writes `dir/config.json` atomically, as the current version.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut cfg = self.clone();
        cfg.version = RUN_CONFIG_VERSION;
        let mut text = serde_json::to_string_pretty(&cfg).map_err(|e| Error::Io(e.to_string()))?;
        text.push('\n');
        crate::io::write_atomic(&dir.join("config.json"), text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_0_1_0_config_and_writes_the_current_version() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v0.1.0/image-ema");
        let cfg = RunConfig::read(&fixture).unwrap().expect("the fixture has one");
        assert_eq!((cfg.version, cfg.steps, cfg.log_every, cfg.train.seed), (1, 6, 2, 11));
        assert_eq!(cfg.data.sample_shape, vec![7, 7]);
        let dir = tempfile::tempdir().unwrap();
        cfg.write(dir.path()).unwrap();
        let back = RunConfig::read(dir.path()).unwrap().unwrap();
        assert_eq!(back, RunConfig { version: RUN_CONFIG_VERSION, ..cfg });
        assert!(RunConfig::read(&dir.path().join("none")).unwrap().is_none());
        std::fs::write(dir.path().join("config.json"), "{\"steps\": 3}").unwrap();
        let err = RunConfig::read(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a shadergan run configuration"), "{err}");
    }
}
