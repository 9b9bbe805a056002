//! The CPU executor: runs a plan's ops in order with the CPU twins, on plain `Vec<f32>` buffers.
//! An f16 buffer (`--precision f16`) is a `Vec<f32>` whose values are all f16 values: whatever
//! writes to it (an op, a host upload) is rounded with `ops::round_f16`, the same store the f16
//! kernels make, and the twins compute in f32 as those kernels do.

use std::sync::Arc;

use super::{fast, ops};
use crate::data::{DataValues, Dataset};
use crate::error::Result;
use crate::params::TrainState;
use crate::plan::{BufId, BufSpec, DType, Op, Plan};
use crate::trainer::{sections, Backend, Executor};

pub struct CpuProgram {
    pub bufs: Vec<Vec<f32>>,
    /// Which buffers are f16.
    half: Vec<bool>,
    pub state: TrainState,
    data: Option<Arc<Dataset>>,
    sections: Vec<Vec<Op>>,
    /// Use the blocked sgemm for matmuls (training); false runs the reference ops only (tests,
    /// and `SHADERGAN_CPU_REFERENCE=1`, which makes every CPU run use the plain reference loops:
    /// bit-reproducible on any x86-64 or ARM CPU, whatever sgemm kernel it would pick).
    pub fast: bool,
}

impl CpuProgram {
    pub fn new(plan: &Plan, data: Option<Arc<Dataset>>) -> Self {
        let mut p = Self::with_buffers(&plan.bufs, data);
        p.sections = sections(plan).iter().map(|s| s.to_vec()).collect();
        p
    }

    /// An executor with these buffers (zero-filled) and no compiled sections.
    pub fn with_buffers(bufs: &[BufSpec], data: Option<Arc<Dataset>>) -> Self {
        CpuProgram {
            bufs: bufs.iter().map(|b| vec![0.0; b.len]).collect(),
            half: bufs.iter().map(|b| b.dtype == DType::F16).collect(),
            state: TrainState::new(),
            data,
            sections: vec![],
            fast: !std::env::var("SHADERGAN_CPU_REFERENCE").is_ok_and(|v| v == "1"),
        }
    }

    /// Adds a list of ops as a new section; returns its index.
    pub fn add_section(&mut self, ops: &[Op]) -> usize {
        self.sections.push(ops.to_vec());
        self.sections.len() - 1
    }

    /// Runs a list of ops once.
    pub fn run_ops(&mut self, list: &[Op]) {
        for op in list {
            self.run_op(op);
            // An f16 output: round what the twin wrote (values already f16 stay as they are).
            for out in op.outputs() {
                if self.half[out] {
                    let buf = &mut self.bufs[out];
                    let (off, len) = written_span(op).unwrap_or((0, buf.len()));
                    ops::round_f16_slice(&mut buf[off..off + len]);
                }
            }
        }
    }

    /// Takes the output buffer out so the inputs can be borrowed beside it.
    fn with_out(&mut self, out: BufId, f: impl FnOnce(&[Vec<f32>], &mut [f32])) {
        let mut o = std::mem::take(&mut self.bufs[out]);
        f(&self.bufs, &mut o);
        self.bufs[out] = o;
    }

    fn run_op(&mut self, op: &Op) {
        let fast = self.fast;
        match *op {
            Op::MatmulForward { ref p, a, c, out } => self.with_out(out, |b, o| {
                if fast {
                    fast::matmul_forward(p, &b[a], &b[c], o)
                } else {
                    ops::matmul_forward(p, &b[a], &b[c], o)
                }
            }),
            Op::MatmulBackwardInput { ref p, a, c, out } => self.with_out(out, |b, o| {
                if fast {
                    fast::matmul_backward_input(p, &b[a], &b[c], o)
                } else {
                    ops::matmul_backward_input(p, &b[a], &b[c], o)
                }
            }),
            Op::MatmulBackwardWeight { ref p, a, c, out } => self.with_out(out, |b, o| {
                if fast {
                    fast::matmul_backward_weight(p, &b[a], &b[c], o)
                } else {
                    ops::matmul_backward_weight(p, &b[a], &b[c], o)
                }
            }),
            Op::BiasBackward { ref p, a, out } => self.with_out(out, |b, o| ops::bias_backward(p, &b[a], o)),
            Op::ActivationForward { act, ref p, x, out } => {
                self.with_out(out, |b, o| ops::activation_forward(act.code(), p, &b[x], o))
            }
            Op::Cast { ref p, x, out, .. } => self.with_out(out, |b, o| ops::cast(p, &b[x], o)),
            Op::ActivationBackward { act, ref p, y, dy, out } => {
                self.with_out(out, |b, o| ops::activation_backward(act.code(), p, &b[y], &b[dy], o))
            }
            Op::BceLogits { ref p, z, dz, stats } => {
                let mut s = std::mem::take(&mut self.bufs[stats]);
                self.with_out(dz, |b, o| ops::bce_logits(p, &b[z], o, &mut s));
                self.bufs[stats] = s;
            }
            Op::SoftmaxXent { ref p, z, labels, dz, stats } => {
                let mut s = std::mem::take(&mut self.bufs[stats]);
                self.with_out(dz, |b, o| ops::softmax_xent(p, &b[z], &b[labels], o, &mut s));
                self.bufs[stats] = s;
            }
            Op::AdamTick { ref p } => ops::adam_tick(&mut self.state, p.net, p.beta1, p.beta2),
            Op::AdamStep { ref p, params, grads, moments } => {
                let mut pv = std::mem::take(&mut self.bufs[params]);
                let state = self.state;
                self.with_out(moments, |b, m| {
                    if fast {
                        fast::adam_step(p, &state, &mut pv, &b[grads], m)
                    } else {
                        ops::adam_step(p, &state, &mut pv, &b[grads], m)
                    }
                });
                self.bufs[params] = pv;
            }
            Op::StepTick => ops::step_tick(&mut self.state),
            Op::EmaUpdate { ref p, params, ema } => self.with_out(ema, |b, o| ops::ema_update(p, &b[params], o)),
            Op::NoiseNormal { ref p, out } => {
                let state = self.state;
                self.with_out(out, |_, o| ops::noise_normal(p, &state, o))
            }
            Op::Dropout { ref p, out } => {
                let state = self.state;
                self.with_out(out, |_, o| ops::dropout(p, &state, o))
            }
            Op::Gather { ref p, out } => {
                let state = self.state;
                let data = self.data.clone().expect("a plan with a gather needs a data set");
                self.with_out(out, |_, o| match &data.values {
                    DataValues::U8(v) => ops::gather_u8(p, &state, v, o),
                    DataValues::F32(v) => ops::gather_f32(p, &state, v, o),
                })
            }
        }
    }
}

/// (offset, length) of what an op that writes one output writes, where the plan's f16 outputs
/// are concerned; None: the whole buffer (correct for any op, only slower).
fn written_span(op: &Op) -> Option<(usize, usize)> {
    match op {
        Op::MatmulForward { p, .. } => Some((p.out_off as usize, p.m as usize * p.n as usize)),
        Op::Cast { p, .. } | Op::ActivationForward { p, .. } => Some((p.out_off as usize, p.len as usize)),
        Op::Dropout { p, .. } => Some((p.out_off as usize, p.len as usize)),
        _ => None,
    }
}

impl Executor for CpuProgram {
    fn backend(&self) -> Backend {
        Backend::Cpu
    }

    fn device_name(&self) -> String {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        format!("CPU ({threads} threads)")
    }

    fn run(&mut self, section: usize, times: u32) -> Result<()> {
        let list = std::mem::take(&mut self.sections[section]);
        for _ in 0..times {
            self.run_ops(&list);
        }
        self.sections[section] = list;
        Ok(())
    }

    fn read(&mut self, buf: BufId) -> Result<Vec<f32>> {
        Ok(self.bufs[buf].clone())
    }

    fn write(&mut self, buf: BufId, values: &[f32]) -> Result<()> {
        self.bufs[buf].copy_from_slice(values);
        if self.half[buf] {
            ops::round_f16_slice(&mut self.bufs[buf]);
        }
        Ok(())
    }

    fn read_state(&mut self) -> Result<TrainState> {
        Ok(self.state)
    }

    fn write_state(&mut self, state: &TrainState) -> Result<()> {
        self.state = *state;
        Ok(())
    }
}
