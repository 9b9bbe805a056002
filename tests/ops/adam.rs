//! adam.wgsl (the update, its tick, the step counter) against its CPU twins.

use crate::common::harness::{ew_inputs, Both, Case, LENS};
use crate::common::uniform;
use shadergan::ir::TrainState;
use shadergan::kernels::adam::*;

#[test]
fn adam_step_matches_cpu() {
    for &len in LENS {
        // The last two: at half the rate 2 steps before a 4-step linear decay ends, and past its end.
        for (net, t, step, decay_end) in
            [(0u32, 1u32, 0, 0), (1, 1, 0, 0), (0, 10, 0, 0), (1, 1000, 0, 0), (0, 10, 18, 20), (1, 10, 25, 20)]
        {
            let mut c = Case::new();
            c.state = TrainState::at(step, t, t, 0.5, 0.999);
            let params = c.input("params", uniform(len, 1, -1.0, 1.0));
            let grads = c.input("grads", ew_inputs(len, 2).iter().map(|v| v * 1e-2).collect());
            let mut mv = uniform(len, 3, -1e-2, 1e-2);
            mv.extend(uniform(len, 4, 0.0, 1e-4));
            let moments = c.input("moments", mv);
            let p = AdamParams {
                len: len as u32,
                net,
                lr: 2e-4,
                beta1: 0.5,
                beta2: 0.999,
                eps: 1e-8,
                decay_end,
                decay_inv: if decay_end > 0 { 0.25 } else { 0.0 },
            };
            c.check(
                AdamStep { p, params, grads, moments },
                &[params, moments],
                &format!("len {len} net {net} t {t} step {step} decay_end {decay_end}"),
            );
        }
    }
}

#[test]
fn adam_tick_and_step_tick_match_cpu_exactly() {
    for net in [0u32, 1] {
        let mut c = Case::new();
        c.state = TrainState::at(5, 3, 7, 0.5, 0.999);
        c.input("unused", vec![0.0]);
        let p = AdamParams { net, beta1: 0.5, beta2: 0.999, ..Default::default() };
        let Some(Both { gpu_state: gs, cpu_state: cs, .. }) = c.run(AdamTick { p }, &[]) else { return };
        assert_eq!(gs, cs, "adam_tick net {net}");
        let Some(Both { gpu_state: gs, cpu_state: cs, .. }) = c.run(StepTick, &[]) else { return };
        assert_eq!(gs, cs, "step_tick");
        assert_eq!(gs.step, 6);
    }
}
