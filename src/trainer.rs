//! The one training interface. `Trainer` is what the CLI, the tests and `bench` use; both backends
//! implement it the same way, by running the shared [`Plan`] on an [`Executor`]: the CPU one
//! interprets the ops with the CPU twins, the GPU one records them as compute dispatches.

use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::params::{TrainState, SLOT_D_FAKE, SLOT_D_LOSS, SLOT_D_REAL, SLOT_G_LOSS};
use crate::plan::{BufId, Op, Plan};

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

/// Everything needed to continue training exactly: weights, Adam state and counters.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub state: TrainState,
    pub g_params: Vec<f32>,
    pub d_params: Vec<f32>,
    /// Adam m then v, each the length of the parameters.
    pub g_moments: Vec<f32>,
    pub d_moments: Vec<f32>,
    /// G's weight average (`--g-ema`); None when off, or not yet kept (restore then starts it
    /// as a copy of `g_params`).
    pub g_ema: Option<Vec<f32>>,
}

/// Which backend runs the math.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A real GPU if wgpu finds one, else the CPU.
    Auto,
    Gpu,
    Cpu,
}

pub trait Trainer {
    /// "cpu" or "gpu".
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
    /// G applied to latent rows `z` (rows x latent_dim); returns rows x data_dim, in the scale G
    /// was trained on.
    fn sample(&mut self, z: &[f32]) -> Result<Vec<f32>>;
}

/// What a backend must do to run a plan.
pub trait Executor {
    fn backend(&self) -> Backend;
    fn device_name(&self) -> String;
    /// Runs the ops of `section` (0 = training step, 1 = sampling, 2 = refreshing the f16
    /// weight copies) `times` times over.
    fn run(&mut self, section: usize, times: u32) -> Result<()>;
    fn read(&mut self, buf: BufId) -> Result<Vec<f32>>;
    fn write(&mut self, buf: BufId, values: &[f32]) -> Result<()>;
    fn read_state(&mut self) -> Result<TrainState>;
    fn write_state(&mut self, state: &TrainState) -> Result<()>;
}

/// The sections an executor compiles from a plan, in order.
pub fn sections(plan: &Plan) -> [&[Op]; 3] {
    [&plan.train_step, &plan.sample, &plan.refresh]
}

/// A trainer: a plan and the executor that runs it.
pub struct PlanTrainer<E: Executor> {
    pub plan: Plan,
    pub exec: E,
    cfg: TrainConfig,
    step: u32,
}

impl<E: Executor> PlanTrainer<E> {
    /// Wraps an executor that was built for `plan` and uploads the seeded initial weights.
    pub fn new(cfg: TrainConfig, plan: Plan, exec: E) -> Result<Self> {
        let mut t = PlanTrainer { plan, exec, cfg, step: 0 };
        let g = t.plan.g.layout.init(t.cfg.seed);
        let d = t.plan.d.layout.init(t.cfg.seed);
        let snapshot = Snapshot {
            state: TrainState::new(),
            g_moments: vec![0.0; 2 * g.len()],
            d_moments: vec![0.0; 2 * d.len()],
            g_params: g,
            d_params: d,
            g_ema: None,
        };
        t.restore(&snapshot)?;
        Ok(t)
    }
}

impl<E: Executor> Trainer for PlanTrainer<E> {
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
        self.exec.run(0, steps)?;
        self.step = next;
        Ok(())
    }

    fn stats(&mut self) -> Result<StepStats> {
        let s = self.exec.read(self.plan.stats)?;
        Ok(StepStats {
            step: self.step,
            d_loss: s[SLOT_D_LOSS as usize],
            g_loss: s[SLOT_G_LOSS as usize],
            d_real: s[SLOT_D_REAL as usize],
            d_fake: s[SLOT_D_FAKE as usize],
        })
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        Ok(Snapshot {
            state: self.exec.read_state()?,
            g_params: self.exec.read(self.plan.g.params)?,
            d_params: self.exec.read(self.plan.d.params)?,
            g_moments: self.exec.read(self.plan.g.moments)?,
            d_moments: self.exec.read(self.plan.d.moments)?,
            g_ema: self.plan.g_ema.map(|b| self.exec.read(b)).transpose()?,
        })
    }

    fn restore(&mut self, s: &Snapshot) -> Result<()> {
        let (g, d) = (&self.plan.g, &self.plan.d);
        let checks = [
            ("G parameters", s.g_params.len(), g.layout.len),
            ("D parameters", s.d_params.len(), d.layout.len),
            ("G Adam moments", s.g_moments.len(), 2 * g.layout.len),
            ("D Adam moments", s.d_moments.len(), 2 * d.layout.len),
        ];
        let ema_len = s.g_ema.as_ref().map_or(g.layout.len, |e| e.len());
        let checks = checks.into_iter().chain([("G weight average", ema_len, g.layout.len)]);
        for (what, got, want) in checks {
            if got != want {
                return Err(Error::input(format!("{what}: {got} values, the model needs {want}")));
            }
        }
        let (gp, dp, gm, dm) = (g.params, d.params, g.moments, d.moments);
        self.exec.write(gp, &s.g_params)?;
        self.exec.write(dp, &s.d_params)?;
        self.exec.write(gm, &s.g_moments)?;
        self.exec.write(dm, &s.d_moments)?;
        if let Some(ema) = self.plan.g_ema {
            // No average stored (a new run, or a checkpoint from before --g-ema): start it at G.
            self.exec.write(ema, s.g_ema.as_ref().unwrap_or(&s.g_params))?;
        }
        self.exec.write_state(&s.state)?;
        if !self.plan.refresh.is_empty() {
            // --precision f16: the weight copies the matmuls read follow the new weights.
            self.exec.run(2, 1)?;
        }
        self.step = s.state.step;
        Ok(())
    }

    fn sample(&mut self, z: &[f32]) -> Result<Vec<f32>> {
        let latent = self.cfg.model.latent_dim;
        let dim = self.cfg.model.data_dim;
        if !z.len().is_multiple_of(latent) {
            return Err(Error::input(format!("latent vectors must have {latent} values each; got {} values", z.len())));
        }
        let rows = self.plan.sample_rows;
        let mut out = Vec::with_capacity(z.len() / latent * dim);
        for chunk in z.chunks(rows * latent) {
            let mut padded = chunk.to_vec();
            padded.resize(rows * latent, 0.0);
            self.exec.write(self.plan.sample_z, &padded)?;
            self.exec.run(1, 1)?;
            let y = self.exec.read(self.plan.sample_out)?;
            out.extend_from_slice(&y[..chunk.len() / latent * dim]);
        }
        Ok(out)
    }
}
