//! The uniform structs of the WGSL kernels, mirrored field for field (`#[repr(C)]`, padded to 16
//! bytes). The GPU launchers upload them; the CPU twins in `cpu::ops` take the very same structs,
//! so both sides read one description of every call.

use bytemuck::{Pod, Zeroable};

/// `MatmulParams` in matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub act: u32,
    pub a_off: u32,
    pub c_off: u32,
    pub out_off: u32,
    pub bias_off: u32,
    pub slope: f32,
    pub accumulate: u32,
    pub _pad: [u32; 2],
}

/// `EwParams` in activation.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct EwParams {
    pub len: u32,
    pub slope: f32,
    pub in_off: u32,
    pub dy_off: u32,
    pub out_off: u32,
    pub _pad: [u32; 3],
}

/// "Do not write this statistic" (`NO_SLOT` in loss.wgsl).
pub const NO_SLOT: u32 = u32::MAX;
/// Slots of the 4-float statistics buffer.
pub const SLOT_D_LOSS: u32 = 0;
pub const SLOT_G_LOSS: u32 = 1;
pub const SLOT_D_REAL: u32 = 2;
pub const SLOT_D_FAKE: u32 = 3;

/// `LossParams` in loss.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct LossParams {
    pub rows: u32,
    pub n_first: u32,
    pub label_first: f32,
    pub label_second: f32,
    pub scale_first: f32,
    pub scale_second: f32,
    pub z_off: u32,
    pub dz_off: u32,
    pub slot_loss: u32,
    pub slot_prob_first: u32,
    pub slot_prob_second: u32,
    pub _pad: u32,
}

/// `XentParams` in xent.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct XentParams {
    pub rows: u32,
    pub classes: u32,
    pub z_off: u32,
    pub label_off: u32,
    pub dz_off: u32,
    /// 1 / rows for the mean loss.
    pub scale: f32,
    pub slot_loss: u32,
    pub slot_acc: u32,
}

/// `AdamParams` in adam.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct AdamParams {
    pub len: u32,
    /// 0 = D, 1 = G: which counters of [`TrainState`] this optimizer uses.
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
}

impl AdamParams {
    /// The learning rate of the step whose counter (steps completed before it) is `step`.
    pub fn lr_at(&self, step: u32) -> f32 {
        if self.decay_inv > 0.0 {
            self.lr * (((self.decay_end - step.min(self.decay_end)) as f32) * self.decay_inv).min(1.0)
        } else {
            self.lr
        }
    }
}

/// `EmaParams` in ema.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct EmaParams {
    pub len: u32,
    /// ema = beta * ema + (1 - beta) * params.
    pub beta: f32,
    pub _pad: [u32; 2],
}

/// `TrainState` in adam.wgsl and random.wgsl: the step counter and Adam's bias-correction state,
/// resident on the GPU and advanced by `adam_tick` and `step_tick`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct TrainState {
    pub step: u32,
    pub t_d: u32,
    pub t_g: u32,
    pub _pad: u32,
    /// beta1^t_d, beta2^t_d, beta1^t_g, beta2^t_g.
    pub pows: [f32; 4],
}

impl TrainState {
    pub fn new() -> Self {
        TrainState { step: 0, t_d: 0, t_g: 0, _pad: 0, pows: [1.0; 4] }
    }

    /// The state after `t_d` and `t_g` optimizer steps: the powers by the same repeated f32
    /// multiplication `adam_tick` performs, so a resumed run continues bit for bit.
    pub fn at(step: u32, t_d: u32, t_g: u32, beta1: f32, beta2: f32) -> Self {
        let mut s = TrainState::new();
        s.step = step;
        for _ in 0..t_d {
            crate::cpu::ops::adam_tick(&mut s, 0, beta1, beta2);
        }
        for _ in 0..t_g {
            crate::cpu::ops::adam_tick(&mut s, 1, beta1, beta2);
        }
        s
    }
}

impl Default for TrainState {
    fn default() -> Self {
        Self::new()
    }
}

/// `RandomParams` in random.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq)]
pub struct RandomParams {
    pub len: u32,
    pub stream: u32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub out_off: u32,
    pub rows: u32,
    pub dim: u32,
    pub n: u32,
    pub steps_per_epoch: u32,
    pub half_bits: u32,
    pub scale: f32,
    pub shift: f32,
    /// gather: D updates per training step (0 is read as 1) and which of them this batch feeds;
    /// the batch counter is step * sub_steps + sub_index.
    pub sub_steps: u32,
    pub sub_index: u32,
    /// gather: values per data set row (0 is read as `dim`) and the first column read, so that
    /// one resident table can hold several fields (the classifier's pixels, then its label).
    pub src_stride: u32,
    pub src_col: u32,
}

impl RandomParams {
    /// The gather's batch counter (wrapping like the GPU's u32 arithmetic).
    pub fn batch_counter(&self, step: u32) -> u32 {
        step.wrapping_mul(self.sub_steps.max(1)).wrapping_add(self.sub_index)
    }

    /// Values per row of the resident data set.
    pub fn row_stride(&self) -> u32 {
        if self.src_stride == 0 {
            self.dim
        } else {
            self.src_stride
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed_lo as u64 | (self.seed_hi as u64) << 32
    }
}

#[cfg(test)]
mod tests {
    use super::AdamParams;

    #[test]
    fn lr_at_decays_linearly_to_zero() {
        let p = AdamParams { lr: 2e-4, decay_end: 100, decay_inv: 1.0 / 40.0, ..Default::default() };
        assert_eq!(p.lr_at(0), 2e-4);
        assert_eq!(p.lr_at(60), 2e-4);
        assert_eq!(p.lr_at(80), 1e-4);
        assert!((p.lr_at(99) - 2e-4 / 40.0).abs() < 1e-12);
        assert_eq!(p.lr_at(100), 0.0);
        assert_eq!(p.lr_at(u32::MAX), 0.0);
        let constant = AdamParams { lr: 2e-4, ..Default::default() };
        assert_eq!(constant.lr_at(1_000_000), 2e-4);
    }
}
