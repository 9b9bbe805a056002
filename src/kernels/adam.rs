//! Adam (adam.wgsl): the update over a whole flat parameter buffer in one dispatch, and the tick
//! at the end of a training step that advances the step counter and each optimizer's step count
//! and bias-correction powers in the GPU-resident [`TrainState`] (one dispatch a step: an update
//! computes its own powers from the counters and `AdamParams::earlier`).

use super::{Entry, Family, Slot};
use crate::ir::kernel::groups_1d;
use crate::ir::{BufId, Host, Kernel, Res, Span, TrainState, UniformLayout};

crate::uniform! {
    /// `AdamParams` in adam.wgsl.
    pub struct AdamParams {
        pub len: u32,
        /// `OPTIMIZER_D` or `OPTIMIZER_G`: which counters of [`TrainState`] this optimizer uses.
        pub net: u32,
        pub lr: f32,
        pub beta1: f32,
        pub beta2: f32,
        pub eps: f32,
        /// Linear learning-rate decay (`--lr-decay`): while `decay_inv > 0`, the step with counter
        /// `step` trains at lr * min(1, (decay_end - min(step, decay_end)) * decay_inv), reaching 0
        /// at step `decay_end`. `decay_inv` is 1 / the decay's length, so the factor is one
        /// correctly rounded multiplication on every backend (WGSL's division is not exact).
        pub decay_end: u32,
        pub decay_inv: f32,
        /// This optimizer's updates earlier in the same training step (the j-th of `--d-steps` D
        /// updates has j): the counters in [`TrainState`] advance only at the step's end.
        pub earlier: u32,
        /// step_tick: the updates of the D optimizer (`OPTIMIZER_D`, also the classifier's) and
        /// of the G optimizer in the step, by which it advances their counters.
        pub d_updates: u32,
        pub g_updates: u32,
        pub _pad0: u32,
    }
}

impl AdamParams {
    /// The training state this update sees: `state` (as at the start of the step) with this
    /// optimizer's counter and powers advanced by its updates up to and including this one.
    pub fn state_for(&self, state: &TrainState) -> TrainState {
        let mut s = *state;
        for _ in 0..=self.earlier {
            s.tick_adam(self.net, self.beta1, self.beta2);
        }
        s
    }

    /// The learning rate of the step whose counter (steps completed before it) is `step`.
    pub fn lr_at(&self, step: u32) -> f32 {
        if self.decay_inv > 0.0 {
            self.lr * (((self.decay_end - step.min(self.decay_end)) as f32) * self.decay_inv).min(1.0)
        } else {
            self.lr
        }
    }
}

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

pub const FAMILY: Family = Family {
    name: "adam",
    wgsl: include_str!("../../shaders/adam.wgsl"),
    f16: false,
    // Every index is guarded by the kernel itself (the WGSL header says how) and every span
    // is checked on the host before a call is recorded: compiled without naga's runtime checks.
    unchecked: true,
    entries: &[
        Entry { name: "adam_step", slots: &[U(0), RW(1), R(2), RW(3), U(4)] },
        Entry { name: "step_tick", slots: &[U(0), RW(5)] },
    ],
    uniforms: &[AdamParams::INFO],
};

/// The Adam update of `params` from `grads`; `moments` holds m (first `len` values) then v.
#[derive(Clone, Debug)]
pub struct AdamStep {
    pub p: AdamParams,
    pub params: BufId,
    pub grads: BufId,
    pub moments: BufId,
}

impl Kernel for AdamStep {
    fn entry(&self) -> &'static str {
        "adam_step"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        Some(bytemuck::bytes_of(&self.p).to_vec())
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.params)), (2, Res::Buf(self.grads)), (3, Res::Buf(self.moments)), (4, Res::State)]
    }
    /// The moments, a square root, a division and the update: about 12 per parameter.
    fn flops(&self) -> f64 {
        12.0 * self.p.len as f64
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.len as usize)
    }
    fn spans(&self) -> Vec<Span> {
        let n = self.p.len as usize;
        vec![Span::write(self.params, 0, n), Span::read(self.grads, 0, n), Span::write(self.moments, 0, 2 * n)]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, grads, state, fast, pool) = (&self.p, self.grads, self.p.state_for(host.state), host.fast, host.pool);
        host.with_outs(self.params, self.moments, |b, params, m| {
            if fast {
                adam_step_threaded(pool, p, &state, params, &b[grads], m)
            } else {
                adam_step(p, &state, params, &b[grads], m)
            }
        })
    }
}

/// The end of a training step: the step counter, and the optimizers' counters by their updates.
#[derive(Clone, Debug)]
pub struct StepTick {
    /// `d_updates`, `g_updates`, `beta1`, `beta2`.
    pub p: AdamParams,
}

impl Kernel for StepTick {
    fn entry(&self) -> &'static str {
        "step_tick"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        Some(bytemuck::bytes_of(&self.p).to_vec())
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(5, Res::State)]
    }
    fn workgroups(&self) -> [u32; 3] {
        [1, 1, 1]
    }
    fn spans(&self) -> Vec<Span> {
        vec![]
    }
    fn run_cpu(&self, host: &mut Host) {
        step_tick(&self.p, host.state)
    }
}

/// step += 1; each optimizer's t += its updates, its running powers multiplied by beta as often.
pub fn step_tick(p: &AdamParams, state: &mut TrainState) {
    state.step += 1;
    for _ in 0..p.d_updates {
        state.tick_adam(crate::ir::state::OPTIMIZER_D, p.beta1, p.beta2);
    }
    for _ in 0..p.g_updates {
        state.tick_adam(crate::ir::state::OPTIMIZER_G, p.beta1, p.beta2);
    }
}

/// One Adam update over a flat parameter buffer; `moments` holds m then v.
pub fn adam_step(p: &AdamParams, state: &TrainState, params: &mut [f32], grads: &[f32], moments: &mut [f32]) {
    let (m, v) = moments.split_at_mut(p.len as usize);
    adam_update(p, state, params, grads, m, v);
}

/// The update of `adam_step` on the first `p.len` elements of separate m and v slices.
pub fn adam_update(
    p: &AdamParams,
    state: &TrainState,
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let len = p.len as usize;
    let (b1pow, b2pow) = if p.net == 0 { (state.pows[0], state.pows[1]) } else { (state.pows[2], state.pows[3]) };
    let bias1 = 1.0 - b1pow;
    let bias2 = 1.0 - b2pow;
    let step_size = p.lr_at(state.step) / bias1;
    let sqrt_bias2 = bias2.sqrt();
    let c = AdamConsts { beta1: p.beta1, beta2: p.beta2, eps: p.eps, step_size, sqrt_bias2 };
    adam_loop(&c, &mut params[..len], &grads[..len], &mut m[..len], &mut v[..len]);
}

/// The per-element constants of one update.
#[derive(Clone, Copy)]
struct AdamConsts {
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32,
    sqrt_bias2: f32,
}

/// The update, element by element: plain IEEE operations (no fused multiply-add), so any
/// vector width gives the same bits.
#[inline(always)]
fn adam_loop(c: &AdamConsts, params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32]) {
    for (((p, &g), m), v) in params.iter_mut().zip(grads).zip(m.iter_mut()).zip(v.iter_mut()) {
        let mi = c.beta1 * *m + (1.0 - c.beta1) * g;
        let vi = c.beta2 * *v + (1.0 - c.beta2) * g * g;
        *m = mi;
        *v = vi;
        let denom = vi.sqrt() / c.sqrt_bias2 + c.eps;
        *p -= c.step_size * (mi / denom);
    }
}

/// `adam_update` compiled for AVX-512 where the CPU has it (the same operations, 16 at a time).
fn adam_update_fast(
    p: &AdamParams,
    state: &TrainState,
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        #[target_feature(enable = "avx512f")]
        unsafe fn wide(c: &AdamConsts, params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32]) {
            adam_loop(c, params, grads, m, v)
        }
        let len = p.len as usize;
        let (b1pow, b2pow) = if p.net == 0 { (state.pows[0], state.pows[1]) } else { (state.pows[2], state.pows[3]) };
        let step_size = p.lr_at(state.step) / (1.0 - b1pow);
        let sqrt_bias2 = (1.0 - b2pow).sqrt();
        let c = AdamConsts { beta1: p.beta1, beta2: p.beta2, eps: p.eps, step_size, sqrt_bias2 };
        // SAFETY: the CPU has AVX-512F (checked above).
        unsafe { wide(&c, &mut params[..len], &grads[..len], &mut m[..len], &mut v[..len]) };
        return;
    }
    adam_update(p, state, params, grads, m, v)
}

/// Parameters per task: a split by size alone (element-wise, so bit-identical anyway).
const ADAM_CHUNK: usize = 1 << 14;

/// `adam_step` in chunks across the pool, each vectorized (element-wise, so bit-identical to
/// the reference whatever the thread count).
pub fn adam_step_threaded(
    pool: &crate::ir::Pool,
    p: &AdamParams,
    state: &TrainState,
    params: &mut [f32],
    grads: &[f32],
    moments: &mut [f32],
) {
    let len = p.len as usize;
    let (m, v) = moments.split_at_mut(len);
    let (tasks, chunk) = crate::ir::pool::chunks(len, ADAM_CHUNK, usize::MAX);
    let ptrs = (params.as_mut_ptr() as usize, m.as_mut_ptr() as usize, v.as_mut_ptr() as usize);
    let grads = &grads[..len];
    pool.run(tasks, &|t| {
        let (lo, hi) = (t * chunk, ((t + 1) * chunk).min(len));
        // SAFETY: chunk t of params, m and v (each `len` long), touched by this task only.
        let part = |base: usize| unsafe { std::slice::from_raw_parts_mut((base as *mut f32).add(lo), hi - lo) };
        let sub = AdamParams { len: (hi - lo) as u32, ..*p };
        adam_update_fast(&sub, state, part(ptrs.0), &grads[lo..hi], part(ptrs.1), part(ptrs.2));
    });
}
