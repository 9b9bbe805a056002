//! adam.wgsl (the update, the tick at a step's end) against its CPU twins.

use crate::common::harness::{ew_inputs, Both, Case, LENS};
use crate::common::uniform;
use shadergan::ir::TrainState;
use shadergan::kernels::adam::*;

#[test]
fn adam_step_matches_cpu() {
    for &len in LENS {
        // The last two: at half the rate 2 steps before a 4-step linear decay ends, and past its end.
        // (net, t, step, decay_end, earlier): `earlier` updates of the same optimizer earlier in
        // the step (the second of two D steps has 1).
        for (net, t, step, decay_end, earlier) in [
            (0u32, 0u32, 0, 0, 0u32),
            (1, 0, 0, 0, 0),
            (0, 9, 0, 0, 0),
            (1, 999, 0, 0, 0),
            (0, 10, 18, 20, 0),
            (1, 10, 25, 20, 0),
            (0, 0, 0, 0, 1),
            (0, 7, 3, 0, 2),
        ] {
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
                earlier,
                ..Default::default()
            };
            c.check(
                AdamStep { p, params, grads, moments },
                &[params, moments],
                &format!("len {len} net {net} t {t} step {step} decay_end {decay_end} earlier {earlier}"),
            );
        }
    }
}

#[test]
fn step_tick_matches_cpu_exactly() {
    for (d_updates, g_updates) in [(0u32, 0u32), (1, 1), (3, 1), (0, 2)] {
        let mut c = Case::new();
        c.state = TrainState::at(5, 3, 7, 0.5, 0.999);
        c.input("unused", vec![0.0]);
        let p = AdamParams { d_updates, g_updates, beta1: 0.5, beta2: 0.999, ..Default::default() };
        let Some(Both { gpu_state: gs, cpu_state: cs, .. }) = c.run(StepTick { p }, &[]) else { return };
        assert_eq!(gs, cs, "step_tick {d_updates} {g_updates}");
        assert_eq!(gs, TrainState::at(6, 3 + d_updates, 7 + g_updates, 0.5, 0.999));
    }
}
