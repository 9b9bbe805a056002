//! The run directory: where a training run writes what it makes.
//!
//! ```text
//! runs/NAME/
//!   config.json                 the fully resolved configuration, written at the start
//!   metrics.csv                 step,epoch,d_loss,g_loss,d_real,d_fake,steps_per_s
//!   loss.png                    loss curves, redrawn at each sample
//!   samples/step_XXXXXX.png     8x8 grid (or a scatter plot for 2-D data) from fixed noise
//!   samples/final.png
//!   checkpoints/step_XXXXXX.safetensors, checkpoints/latest.safetensors
//! ```

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::train::log::LogRow;

pub struct RunDir {
    pub root: PathBuf,
}

pub const METRICS_HEADER: &str = "step,epoch,d_loss,g_loss,d_real,d_fake,steps_per_s";

impl RunDir {
    /// A new run folder: `out` if given (refused when it holds another run, unless `overwrite`),
    /// else the next free `runs/NNN`.
    pub fn create(out: Option<&Path>, overwrite: bool) -> Result<Self> {
        let root = match out {
            Some(p) => {
                if p.join("config.json").exists() && !overwrite {
                    return Err(Error::input(format!(
                        "{} already holds a run (config.json); choose another --out, or pass \
                         --overwrite to replace it, or --resume its checkpoint",
                        p.display()
                    )));
                }
                p.to_path_buf()
            }
            None => next_free(Path::new("runs"))?,
        };
        let dir = RunDir { root };
        dir.make_dirs()?;
        if overwrite {
            for stale in [dir.metrics(), dir.root.join("loss.png")] {
                let _ = fs::remove_file(stale);
            }
        }
        Ok(dir)
    }

    /// The run folder a checkpoint belongs to (`.../NAME/checkpoints/x.safetensors` -> NAME).
    pub fn of_checkpoint(ckpt: &Path) -> Result<Self> {
        let dir = RunDir { root: Self::root_of(ckpt) };
        dir.make_dirs()?;
        Ok(dir)
    }

    /// The run folder of a checkpoint path, without touching the disk.
    pub fn root_of(ckpt: &Path) -> PathBuf {
        let parent = ckpt.parent().unwrap_or(Path::new("."));
        if parent.file_name().is_some_and(|n| n == "checkpoints") {
            parent.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            parent.to_path_buf()
        }
    }

    fn make_dirs(&self) -> Result<()> {
        for d in [self.root.clone(), self.samples(), self.checkpoints()] {
            fs::create_dir_all(&d)
                .map_err(|e| Error::input(format!("cannot create the output folder {}: {e}", d.display())))?;
        }
        // Fail now, not after an hour of training, if the folder is not writable.
        let probe = self.root.join(".write-test");
        fs::write(&probe, b"")
            .map_err(|e| Error::input(format!("the output folder {} is not writable: {e}", self.root.display())))?;
        let _ = fs::remove_file(probe);
        Ok(())
    }

    pub fn samples(&self) -> PathBuf {
        self.root.join("samples")
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }

    pub fn latest(&self) -> PathBuf {
        self.checkpoints().join("latest.safetensors")
    }

    pub fn checkpoint_at(&self, step: u32) -> PathBuf {
        self.checkpoints().join(format!("step_{step:06}.safetensors"))
    }

    pub fn sample_at(&self, step: u32) -> PathBuf {
        self.samples().join(format!("step_{step:06}.png"))
    }

    /// Copies a run's config.json and metrics.csv from `from` (a resumed run continuing in a
    /// new folder); the checkpoints stay where they are.
    pub fn carry_over(&self, from: &Path) -> Result<()> {
        for name in ["config.json", "metrics.csv"] {
            let src = from.join(name);
            if src.exists() {
                let bytes = fs::read(&src).map_err(|e| Error::io(&src, e))?;
                write_atomic(&self.root.join(name), &bytes)?;
            }
        }
        Ok(())
    }

    /// Appends one row to metrics.csv (creating it with its header). `eval_columns` name the
    /// evaluation columns after the standard ones; `cells` fills them on evaluation steps and
    /// leaves them empty otherwise. A file from an earlier part of the run keeps its header: the
    /// row gets as many cells as it names.
    pub fn append_metrics(&self, row: &LogRow, eval_columns: &[String], cells: Option<&[String]>) -> Result<()> {
        let path = self.metrics();
        let new = !path.exists();
        let columns = if new {
            METRICS_HEADER.split(',').count() + eval_columns.len()
        } else {
            // The header line only: the file grows with the run, and this runs on every log row.
            let mut header = String::new();
            let _ = fs::File::open(&path)
                .map(|f| std::io::BufRead::read_line(&mut std::io::BufReader::new(f), &mut header));
            header.trim_end().split(',').count()
        };
        let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let s = &row.stats;
        let mut text = String::new();
        if new {
            text.push_str(METRICS_HEADER);
            for c in eval_columns {
                text.push(',');
                text.push_str(c);
            }
            text.push('\n');
        }
        text.push_str(&format!(
            "{},{:.4},{},{},{},{},{:.2}",
            s.step, row.epoch, s.d_loss, s.g_loss, s.d_real, s.d_fake, row.steps_per_s
        ));
        let standard = METRICS_HEADER.split(',').count();
        for i in 0..columns.saturating_sub(standard) {
            text.push(',');
            if let Some(v) = cells.and_then(|c| c.get(i)) {
                text.push_str(v);
            }
        }
        text.push('\n');
        f.write_all(text.as_bytes()).map_err(|e| Error::io(&path, e))
    }

    /// (step, d_loss, g_loss) of every row of metrics.csv, for the loss plot.
    pub fn read_losses(&self) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
        let text = fs::read_to_string(self.metrics()).unwrap_or_default();
        let (mut s, mut d, mut g) = (vec![], vec![], vec![]);
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if let (Some(a), Some(b), Some(c)) = (f.first(), f.get(2), f.get(3)) {
                if let (Ok(a), Ok(b), Ok(c)) = (a.parse(), b.parse(), c.parse()) {
                    s.push(a);
                    d.push(b);
                    g.push(c);
                }
            }
        }
        (s, d, g)
    }

    /// Drops metrics rows past `step` (a resumed run redoes them).
    pub fn truncate_metrics(&self, step: u32) -> Result<()> {
        let path = self.metrics();
        let Ok(text) = fs::read_to_string(&path) else { return Ok(()) };
        let kept: Vec<&str> = text
            .lines()
            .enumerate()
            .filter(|(i, l)| {
                *i == 0 || l.split(',').next().and_then(|s| s.parse::<u32>().ok()).is_some_and(|s| s <= step)
            })
            .map(|(_, l)| l)
            .collect();
        write_atomic(&path, (kept.join("\n") + "\n").as_bytes())
    }

    /// Deletes all but the newest `keep` step checkpoints (0 keeps all).
    pub fn prune_checkpoints(&self, keep: usize) {
        if keep == 0 {
            return;
        }
        let Ok(entries) = fs::read_dir(self.checkpoints()) else { return };
        let mut steps: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step_") && n.ends_with(".safetensors"))
            })
            .collect();
        steps.sort();
        let n = steps.len();
        for p in steps.into_iter().take(n.saturating_sub(keep)) {
            let _ = fs::remove_file(p);
        }
    }

    /// Points latest.safetensors at `ckpt` atomically (a hard link renamed into place; a copy
    /// where links are not supported).
    pub fn set_latest(&self, ckpt: &Path) -> Result<()> {
        let latest = self.latest();
        let tmp = self.checkpoints().join(".latest.tmp");
        let _ = fs::remove_file(&tmp);
        if fs::hard_link(ckpt, &tmp).is_err() {
            fs::copy(ckpt, &tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        fs::rename(&tmp, &latest).map_err(|e| Error::io(&latest, e))
    }
}

/// `runs/001`, `runs/002`, ...: the first number not taken.
fn next_free(base: &Path) -> Result<PathBuf> {
    for i in 1..100_000 {
        let p = base.join(format!("{i:03}"));
        if !p.exists() {
            return Ok(p);
        }
    }
    Err(Error::input(format!("{} is full; pass --out", base.display())))
}
