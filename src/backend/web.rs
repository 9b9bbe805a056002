//! The web executor: it runs nothing and records everything, so that a browser can replay a
//! program with its own WebGPU (`shadergan export-web`, web/player.js). Each op becomes what the
//! GPU executor would make of it (the same entry point, f16 variant included, the same binding
//! slots, uniform bytes and workgroups: `gpu::executor`'s helpers), and every host write (the
//! seeded initial weights, a restored checkpoint, the training state) and every section run
//! before training (the f16 weight refresh) is kept in order. What the browser does with it is
//! what `GpuExecutor` does: one pipeline and bind group layout per entry point, one uniform
//! buffer and bind group per op, up to [`MAX_STEPS_PER_SUBMIT`] steps in one compute pass.
//!
//! [`MAX_STEPS_PER_SUBMIT`]: super::gpu::executor::MAX_STEPS_PER_SUBMIT

use std::sync::{Arc, Mutex};

use super::gpu::executor::{binding_slot, check_spans, entry_for};
use super::{Backend, Executor, Section};
use crate::error::{Error, Result};
use crate::ir::{BufId, BufSpec, DType, Op, Res, TrainState};
use crate::kernels::{self, Slot};

/// WebGPU's default limits, which every browser with WebGPU offers: a program that fits them
/// runs anywhere (the player asks for nothing more).
pub const WEB_MAX_STORAGE_BINDING: u64 = 128 << 20;
pub const WEB_MAX_STORAGE_BUFFERS_PER_STAGE: u32 = 8;
pub const WEB_MAX_WORKGROUPS_PER_DIMENSION: u32 = 65_535;

/// One recorded kernel call, as the GPU executor would dispatch it.
#[derive(Clone, Debug, PartialEq)]
pub struct Dispatch {
    /// The entry point run (the `_f16` variant where a bound buffer is f16).
    pub entry: &'static str,
    pub family: &'static str,
    /// The uniform at binding 0, if the entry point has one.
    pub uniform: Option<Vec<u8>>,
    /// The pipeline-overridable constants the entry point is compiled with (`Kernel::constants`:
    /// one pipeline per entry point and set, as the executor makes them).
    pub constants: Vec<(&'static str, f64)>,
    /// (binding slot, resource) of every other binding, at the slots the executor binds them.
    pub bindings: Vec<(u32, Res)>,
    /// Slots the kernel does not touch in this call (`Kernel::unused_slots`): the player binds a
    /// scratch buffer there, as WebGPU refuses the aliasing binding the executor makes.
    pub scratch: Vec<u32>,
    pub groups: [u32; 3],
}

/// What happened on the executor before the first training step.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Write { buf: BufId, values: Vec<f32> },
    State(TrainState),
    Run { section: usize, times: u32 },
}

/// Everything recorded: the buffers, the sections (in the order they were added) and the
/// actions.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    pub specs: Vec<BufSpec>,
    pub sections: Vec<Vec<Dispatch>>,
    pub actions: Vec<Action>,
}

/// The executor that records. `recording()` hands out the shared record, which stays readable
/// after the executor has moved into a trainer.
pub struct WebRecorder {
    rec: Arc<Mutex<Recording>>,
}

impl WebRecorder {
    /// A recorder for these buffers; refuses any over WebGPU's default binding limit.
    pub fn new(specs: &[BufSpec]) -> Result<Self> {
        for s in specs {
            let bytes = s.len as u64 * s.dtype.bytes();
            if bytes > WEB_MAX_STORAGE_BINDING {
                return Err(Error::input(format!(
                    "tensor {} needs {bytes} bytes, more than a browser's storage binding \
                     ({WEB_MAX_STORAGE_BINDING} bytes, WebGPU's default limit); use a smaller model or batch",
                    s.label
                )));
            }
        }
        let rec = Recording { specs: specs.to_vec(), ..Default::default() };
        Ok(WebRecorder { rec: Arc::new(Mutex::new(rec)) })
    }

    pub fn recording(&self) -> Arc<Mutex<Recording>> {
        self.rec.clone()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Recording) -> Result<T>) -> Result<T> {
        let mut r = self.rec.lock().map_err(|_| Error::gpu("internal error: the web recording is poisoned"))?;
        f(&mut r)
    }
}

/// The dispatches the GPU executor would record for `ops` over buffers `specs`, checked against
/// what a browser offers by default. The recorder does not know the browser's adapter, so no op
/// is swapped for its variant for real GPUs (`Kernel::gpu_variant`, same contract): a page runs
/// the kernels the executor runs on a CPU-emulated adapter such as lavapipe.
pub fn compile(specs: &[BufSpec], ops: &[Op]) -> Result<Vec<Dispatch>> {
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        check_spans(specs, op)?;
        let entry = entry_for(specs, op)?;
        let (family, e) = kernels::entry(entry).ok_or_else(|| Error::gpu(format!("no kernel named {entry}")))?;
        let storage = e.slots.iter().filter(|s| !matches!(s, Slot::Uniform(_))).count() as u32;
        if storage > WEB_MAX_STORAGE_BUFFERS_PER_STAGE {
            return Err(Error::gpu(format!("{entry} binds {storage} storage buffers, more than a browser allows")));
        }
        if op.workgroups().iter().any(|&g| g > WEB_MAX_WORKGROUPS_PER_DIMENSION) {
            return Err(Error::gpu(format!(
                "{entry} dispatches {:?} workgroups, more than a browser allows",
                op.workgroups()
            )));
        }
        let unused = op.unused_slots();
        let (scratch, used): (Vec<_>, Vec<_>) = op.bindings().into_iter().partition(|(role, _)| unused.contains(role));
        let bindings: Vec<(u32, Res)> =
            used.into_iter().map(|(role, r)| (binding_slot(specs, family, role, r), r)).collect();
        let scratch: Vec<u32> = scratch.into_iter().map(|(role, r)| binding_slot(specs, family, role, r)).collect();
        for (binding, r) in &bindings {
            if !e.slots.iter().any(|s| s.binding() == *binding) {
                return Err(Error::gpu(format!("internal error: {entry} has no binding {binding} for {r:?}")));
            }
        }
        out.push(Dispatch {
            entry,
            family: family.name,
            uniform: op.uniform(),
            constants: op.constants(),
            bindings,
            scratch,
            groups: op.workgroups(),
        });
    }
    Ok(out)
}

impl Executor for WebRecorder {
    fn backend(&self) -> Backend {
        Backend::Gpu
    }

    fn device_name(&self) -> String {
        "WebGPU (recorded for a browser)".into()
    }

    fn add_section(&mut self, ops: &[Op]) -> Result<Section> {
        self.with(|r| {
            let compiled = compile(&r.specs, ops)?;
            r.sections.push(compiled);
            Ok(Section(r.sections.len() - 1))
        })
    }

    fn run(&mut self, section: Section, times: u32) -> Result<()> {
        self.with(|r| {
            r.actions.push(Action::Run { section: section.0, times });
            Ok(())
        })
    }

    fn read(&mut self, buf: BufId) -> Result<Vec<f32>> {
        self.with(|r| Err(Error::gpu(format!("internal error: the web recorder cannot read {}", r.specs[buf].label))))
    }

    fn write(&mut self, buf: BufId, values: &[f32]) -> Result<()> {
        self.with(|r| {
            let spec = &r.specs[buf];
            if spec.len != values.len() {
                return Err(Error::input(format!(
                    "{}: {} values given, {} expected",
                    spec.label,
                    values.len(),
                    spec.len
                )));
            }
            if spec.dtype == DType::F16 {
                // The host writes master weights (f32); the f16 copies come from the refresh section.
                return Err(Error::gpu(format!("internal error: the host writes f16 buffer {}", spec.label)));
            }
            r.actions.push(Action::Write { buf, values: values.to_vec() });
            Ok(())
        })
    }

    fn read_state(&mut self) -> Result<TrainState> {
        Err(Error::gpu("internal error: the web recorder cannot read the training state"))
    }

    fn write_state(&mut self, state: &TrainState) -> Result<()> {
        self.with(|r| {
            r.actions.push(Action::State(*state));
            Ok(())
        })
    }
}

impl Recording {
    /// The actions reduced to what a fresh player must do: each written buffer's last values
    /// (all-zero ones left out: a buffer starts zeroed), the last training state, then each
    /// section that ran once (a restore's f16 refresh, which depends only on the final weights).
    pub fn initial_actions(&self) -> Vec<Action> {
        let mut writes: Vec<(BufId, &Vec<f32>)> = vec![];
        let (mut state, mut runs) = (None, vec![]);
        for a in &self.actions {
            match a {
                Action::Write { buf, values } => match writes.iter_mut().find(|(b, _)| b == buf) {
                    Some(w) => w.1 = values,
                    None => writes.push((*buf, values)),
                },
                Action::State(s) => state = Some(*s),
                Action::Run { section, .. } if !runs.contains(section) => runs.push(*section),
                Action::Run { .. } => {}
            }
        }
        let mut out: Vec<Action> = writes
            .into_iter()
            .filter(|(_, v)| v.iter().any(|x| x.to_bits() != 0))
            .map(|(buf, v)| Action::Write { buf, values: v.clone() })
            .collect();
        out.extend(state.map(Action::State));
        out.extend(runs.into_iter().map(|section| Action::Run { section, times: 1 }));
        out
    }
}
