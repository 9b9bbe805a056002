//! The training state both backends keep beside the buffers: the step counter that keys noise,
//! dropout and the batch order, and Adam's step counts and running powers. On the GPU it is one
//! small buffer (`TrainState` in common.wgsl) advanced by the `step_tick` kernel at the end of each
//! training step.

use bytemuck::{Pod, Zeroable};

use super::uniform::{UniformInfo, UniformLayout};

/// `TrainState` in common.wgsl.
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

/// Which optimizer's counters an Adam kernel uses (`AdamParams::net`).
pub const OPTIMIZER_D: u32 = 0;
pub const OPTIMIZER_G: u32 = 1;

impl TrainState {
    pub fn new() -> Self {
        TrainState { step: 0, t_d: 0, t_g: 0, _pad: 0, pows: [1.0; 4] }
    }

    /// One optimizer step of `optimizer` (D or G): t += 1 and the running powers beta^t, by the
    /// repeated f32 multiplication `step_tick` performs.
    pub fn tick_adam(&mut self, optimizer: u32, beta1: f32, beta2: f32) {
        if optimizer == OPTIMIZER_D {
            self.t_d += 1;
            self.pows[0] *= beta1;
            self.pows[1] *= beta2;
        } else {
            self.t_g += 1;
            self.pows[2] *= beta1;
            self.pows[3] *= beta2;
        }
    }

    /// The state after `t_d` and `t_g` optimizer steps, so a resumed run continues bit for bit.
    pub fn at(step: u32, t_d: u32, t_g: u32, beta1: f32, beta2: f32) -> Self {
        let mut s = TrainState::new();
        s.step = step;
        for _ in 0..t_d {
            s.tick_adam(OPTIMIZER_D, beta1, beta2);
        }
        for _ in 0..t_g {
            s.tick_adam(OPTIMIZER_G, beta1, beta2);
        }
        s
    }
}

impl Default for TrainState {
    fn default() -> Self {
        Self::new()
    }
}

impl UniformLayout for TrainState {
    const INFO: UniformInfo = UniformInfo {
        name: "TrainState",
        size: std::mem::size_of::<TrainState>(),
        fields: || {
            vec![
                ("step", std::mem::offset_of!(TrainState, step)),
                ("t_d", std::mem::offset_of!(TrainState, t_d)),
                ("t_g", std::mem::offset_of!(TrainState, t_g)),
                ("_pad", std::mem::offset_of!(TrainState, _pad)),
                ("pows", std::mem::offset_of!(TrainState, pows)),
            ]
        },
    };
}
