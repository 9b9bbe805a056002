//! The one training interface. [`Trainer`] is what the CLI, the tests and `bench` use; both
//! backends implement it the same way, by running the shared [`GanProgram`] on an [`Executor`]:
//! the CPU one interprets the ops with the CPU twins, the GPU one records them as dispatches.

use std::sync::Arc;

use super::gan::{GanProgram, SLOT_D_FAKE, SLOT_D_LOSS, SLOT_D_REAL, SLOT_G_LOSS};
use crate::backend::{Backend, Device, Executor, Section};
use crate::config::TrainConfig;
use crate::data::{DataValues, Dataset};
use crate::error::{Error, Result};
use crate::ir::TrainState;
use crate::rng;

/// Losses and D's mean outputs of the most recent step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Number of steps completed.
    pub step: u32,
    /// Mean BCE on real + mean BCE on fake.
    pub d_loss: f32,
    /// Non-saturating G loss: mean BCE of D(G(z)) against label 1.
    pub g_loss: f32,
    /// Mean D(x) over the real batch.
    pub d_real: f32,
    /// Mean D(G(z)) over the fake batch, in the D step.
    pub d_fake: f32,
}

impl StepStats {
    pub fn is_finite(&self) -> bool {
        [self.d_loss, self.g_loss, self.d_real, self.d_fake].iter().all(|v| v.is_finite())
    }
}

/// One network's part of a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct NetSnapshot {
    pub params: Vec<f32>,
    /// Adam m then v, each the length of the parameters.
    pub moments: Vec<f32>,
    /// Non-trainable state (running statistics); empty when the network has none.
    pub state: Vec<f32>,
}

/// Everything needed to continue training exactly: weights, Adam state and counters.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub state: TrainState,
    pub g: NetSnapshot,
    pub d: NetSnapshot,
    /// G's weight average (`--g-ema`); None when off, or not yet kept (restore then starts it
    /// as a copy of G's weights).
    pub g_ema: Option<Vec<f32>>,
    /// The average's own running statistics (G with batch norm); empty otherwise, or when not
    /// yet kept (restore then starts them as a copy of G's).
    pub g_ema_state: Vec<f32>,
}

pub trait Trainer {
    /// `Cpu` or `Gpu`.
    fn backend(&self) -> Backend;
    /// Human-readable description of the device, e.g. the adapter's name and API.
    fn device_name(&self) -> String;
    fn config(&self) -> &TrainConfig;
    /// Steps completed so far.
    fn step(&self) -> u32;
    /// Runs `steps` training steps. The GPU backend queues them without waiting.
    fn train(&mut self, steps: u32) -> Result<()>;
    /// Statistics of the last step (waits for queued GPU work; reads back 16 bytes).
    fn stats(&mut self) -> Result<StepStats>;
    fn snapshot(&mut self) -> Result<Snapshot>;
    fn restore(&mut self, snapshot: &Snapshot) -> Result<()>;
    /// G applied to latent rows `z` (rows x latent_dim) in eval mode; returns rows x data_dim,
    /// in the scale G was trained on. A conditional G makes row i of class i mod classes
    /// ([`balanced_classes`]).
    fn sample(&mut self, z: &[f32]) -> Result<Vec<f32>>;
    /// The same with the class of each row given (a conditional G; each below its classes).
    fn sample_classes(&mut self, z: &[f32], classes: &[u32]) -> Result<Vec<f32>>;
}

/// Row i's class when none is asked for: i mod `classes`, every class equally often.
pub fn balanced_classes(rows: usize, classes: usize) -> Vec<u32> {
    (0..rows).map(|i| (i % classes.max(1)) as u32).collect()
}

/// The sections of a GAN program, compiled.
struct Sections {
    train: Section,
    sample: Section,
    refresh: Section,
}

/// A trainer: the GAN program and the executor that runs it.
pub struct GanTrainer {
    pub program: GanProgram,
    pub exec: Box<dyn Executor>,
    sections: Sections,
    cfg: TrainConfig,
    step: u32,
}

/// A trainer for `cfg` on `data`, on the backend asked for, with the seeded initial weights. The
/// data is bound in chunks under the device's storage binding limit (`ir::DataChunks`), so a
/// data set of any size that fits in memory trains. A conditional model (`cfg.model.classes`)
/// needs the data's classes (`Dataset::classes`): they travel with it, one more column of the
/// resident table ([`resident_table`]).
pub fn open(backend: Backend, cfg: TrainConfig, data: Arc<Dataset>) -> Result<GanTrainer> {
    cfg.validate(data.n)?;
    let table = resident_table(&cfg, data)?;
    let device = Device::open(backend)?;
    let chunks = device.data_chunks(&table)?;
    let program = GanProgram::build_chunked(&cfg, &chunks, matches!(table.values, DataValues::U8(_)));
    let exec = device.executor(&program.bufs, Some(table), chunks)?;
    GanTrainer::new(cfg, program, exec)
}

/// The data set as the device holds it: the data itself, or for a conditional model the
/// labelled table, each row the sample's values then its class (`data::labels::labelled_table`).
pub fn resident_table(cfg: &TrainConfig, data: Arc<Dataset>) -> Result<Arc<Dataset>> {
    if cfg.model.classes == 0 {
        return Ok(data);
    }
    let Some(classes) = &data.classes else {
        return Err(Error::input("a conditional model needs the class of each sample (labelled data)"));
    };
    if classes.classes() != cfg.model.classes {
        return Err(Error::input(format!(
            "the data has {} classes, the model {}",
            classes.classes(),
            cfg.model.classes
        )));
    }
    Ok(Arc::new(crate::data::labels::labelled_table(&data, &classes.ids)?))
}

impl GanTrainer {
    /// Compiles the program's sections on an executor made for its buffers and uploads the
    /// seeded initial weights.
    pub fn new(cfg: TrainConfig, program: GanProgram, mut exec: Box<dyn Executor>) -> Result<Self> {
        let sections = Sections {
            train: exec.add_section(&program.train_step)?,
            sample: exec.add_section(&program.sample)?,
            refresh: exec.add_section(&program.refresh)?,
        };
        let fresh = |net: &crate::nn::Net| {
            let params = net.init(cfg.seed);
            let state = net.init_state(cfg.seed, &params);
            NetSnapshot { params, moments: vec![0.0; 2 * net.params_len], state }
        };
        let snapshot = Snapshot {
            state: TrainState::new(),
            g: fresh(&program.g_net),
            d: fresh(&program.d_net),
            g_ema: None,
            g_ema_state: vec![],
        };
        let mut t = GanTrainer { program, exec, sections, cfg, step: 0 };
        t.restore(&snapshot)?;
        Ok(t)
    }

    /// The time of each dispatch of one training step (see `Executor::profile`; it trains).
    pub fn profile_step(&mut self) -> Result<Option<Vec<(String, f64)>>> {
        let r = self.exec.profile(self.sections.train)?;
        self.step += 1;
        Ok(r)
    }

    fn read_net(&mut self, p: &crate::nn::NetParams) -> Result<NetSnapshot> {
        Ok(NetSnapshot {
            params: self.exec.read(p.params)?,
            moments: self.exec.read(p.moments)?,
            state: p.state.map(|s| self.exec.read(s)).transpose()?.unwrap_or_default(),
        })
    }

    fn write_net(&mut self, p: &crate::nn::NetParams, s: &NetSnapshot) -> Result<()> {
        self.exec.write(p.params, &s.params)?;
        self.exec.write(p.moments, &s.moments)?;
        if let Some(b) = p.state {
            self.exec.write(b, &s.state)?;
        }
        Ok(())
    }
}

/// Every snapshot buffer must have the model's size: (what, got, want).
fn check_sizes(p: &GanProgram, s: &Snapshot) -> Result<()> {
    let (g, d) = (&p.g_net, &p.d_net);
    let ema_len = s.g_ema.as_ref().map_or(g.params_len, |e| e.len());
    let ema_state = if s.g_ema_state.is_empty() { g.state_len } else { s.g_ema_state.len() };
    let checks = [
        ("G parameters", s.g.params.len(), g.params_len),
        ("D parameters", s.d.params.len(), d.params_len),
        ("G Adam moments", s.g.moments.len(), 2 * g.params_len),
        ("D Adam moments", s.d.moments.len(), 2 * d.params_len),
        ("G state", s.g.state.len(), g.state_len),
        ("D state", s.d.state.len(), d.state_len),
        ("G weight average", ema_len, g.params_len),
        ("G weight average's state", ema_state, g.state_len),
    ];
    for (what, got, want) in checks {
        if got != want {
            return Err(Error::input(format!("{what}: {got} values, the model needs {want}")));
        }
    }
    Ok(())
}

impl Trainer for GanTrainer {
    fn backend(&self) -> Backend {
        self.exec.backend()
    }

    fn device_name(&self) -> String {
        self.exec.device_name()
    }

    fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    fn step(&self) -> u32 {
        self.step
    }

    fn train(&mut self, steps: u32) -> Result<()> {
        let Some(next) = self.step.checked_add(steps) else {
            return Err(Error::input("the step counter would pass 2^32"));
        };
        self.exec.run(self.sections.train, steps)?;
        self.step = next;
        Ok(())
    }

    fn stats(&mut self) -> Result<StepStats> {
        let s = self.exec.read(self.program.stats)?;
        Ok(StepStats {
            step: self.step,
            d_loss: s[SLOT_D_LOSS as usize],
            g_loss: s[SLOT_G_LOSS as usize],
            d_real: s[SLOT_D_REAL as usize],
            d_fake: s[SLOT_D_FAKE as usize],
        })
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        let (g, d) = (self.program.g.clone(), self.program.d.clone());
        Ok(Snapshot {
            state: self.exec.read_state()?,
            g: self.read_net(&g)?,
            d: self.read_net(&d)?,
            g_ema: self.program.g_ema.as_ref().map(|e| e.params).map(|b| self.exec.read(b)).transpose()?,
            g_ema_state: self
                .program
                .g_ema
                .as_ref()
                .and_then(|e| e.state)
                .map(|b| self.exec.read(b))
                .transpose()?
                .unwrap_or_default(),
        })
    }

    fn restore(&mut self, s: &Snapshot) -> Result<()> {
        check_sizes(&self.program, s)?;
        let (g, d) = (self.program.g.clone(), self.program.d.clone());
        self.write_net(&g, &s.g)?;
        self.write_net(&d, &s.d)?;
        if let Some(ema) = self.program.g_ema.clone() {
            // No average stored (a new run, or a checkpoint from before --g-ema): start it at G.
            self.exec.write(ema.params, s.g_ema.as_ref().unwrap_or(&s.g.params))?;
            if let Some(state) = ema.state {
                let own = if s.g_ema_state.is_empty() { &s.g.state } else { &s.g_ema_state };
                self.exec.write(state, own)?;
            }
        }
        self.exec.write_state(&s.state)?;
        if !self.program.refresh.is_empty() {
            // --precision f16: the weight copies the matmuls read follow the new weights.
            self.exec.run(self.sections.refresh, 1)?;
        }
        self.step = s.state.step;
        Ok(())
    }

    fn sample(&mut self, z: &[f32]) -> Result<Vec<f32>> {
        let classes = self.cfg.model.classes;
        if classes == 0 {
            return self.sample_rows(z, None);
        }
        let rows = z.len() / self.cfg.model.latent_dim.max(1);
        self.sample_rows(z, Some(&balanced_classes(rows, classes)))
    }

    fn sample_classes(&mut self, z: &[f32], classes: &[u32]) -> Result<Vec<f32>> {
        let c = self.cfg.model.classes;
        if c == 0 {
            return Err(Error::input("this generator is not conditional: it takes no classes"));
        }
        if let Some(bad) = classes.iter().find(|&&y| y as usize >= c) {
            return Err(Error::input(format!(
                "class {bad} does not exist: this generator knows classes 0 to {}",
                c - 1
            )));
        }
        self.sample_rows(z, Some(classes))
    }
}

impl GanTrainer {
    /// G in eval mode on the rows of `z`, SAMPLE_ROWS at a time: each row's z placed after the
    /// room for the class embedding (a conditional G, whose rows' classes `classes` gives).
    fn sample_rows(&mut self, z: &[f32], classes: Option<&[u32]>) -> Result<Vec<f32>> {
        let (latent, dim, width) = (self.cfg.model.latent_dim, self.cfg.model.data_dim, self.cfg.model.g_input_dim());
        if !z.len().is_multiple_of(latent) {
            return Err(Error::input(format!("latent vectors must have {latent} values each; got {} values", z.len())));
        }
        let n = z.len() / latent;
        if classes.is_some_and(|c| c.len() != n) {
            return Err(Error::input(format!("{n} latent vectors but {} classes", classes.map_or(0, |c| c.len()))));
        }
        let rows = self.program.sample_rows;
        let mut out = Vec::with_capacity(n * dim);
        for (k, chunk) in z.chunks(rows * latent).enumerate() {
            let mut padded = vec![0f32; rows * width];
            for (row, zr) in padded.chunks_mut(width).zip(chunk.chunks(latent)) {
                row[width - latent..].copy_from_slice(zr);
            }
            self.exec.write(self.program.sample_z, &padded)?;
            if let (Some(buf), Some(c)) = (self.program.sample_labels, classes) {
                let mut labels: Vec<f32> =
                    c[k * rows..(k * rows + chunk.len() / latent)].iter().map(|&y| y as f32).collect();
                labels.resize(rows, 0.0);
                self.exec.write(buf, &labels)?;
            }
            self.exec.run(self.sections.sample, 1)?;
            let y = self.exec.read(self.program.sample_out)?;
            out.extend_from_slice(&y[..chunk.len() / latent * dim]);
        }
        Ok(out)
    }
}

/// The 64 latent vectors every sample grid of a run is drawn from.
pub fn fixed_latents(cfg: &TrainConfig, rows: usize) -> Vec<f32> {
    fixed_latents_for(cfg, rows, rng::PURPOSE_SAMPLES)
}

/// `rows` latent vectors drawn from the run's seed for `purpose` (an `rng::PURPOSE_*`).
pub fn fixed_latents_for(cfg: &TrainConfig, rows: usize, purpose: u32) -> Vec<f32> {
    let mut z = vec![0f32; rows * cfg.model.latent_dim];
    rng::normals(rng::seed_words(cfg.seed), 0, 0, purpose, &mut z);
    z
}

/// Maps G's output back to the data's stored scale (uint8 data: 0..255, as f32).
pub fn to_data_scale(cfg: &TrainConfig, y: &[f32]) -> Vec<f32> {
    y.iter().map(|v| (v - cfg.data_shift) / cfg.data_scale).collect()
}
