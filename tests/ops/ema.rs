//! ema.wgsl (G's weight average) against its CPU twin.

use crate::common::harness::{ew_inputs, Both, Case, LENS};
use crate::common::uniform;
use shadergan::kernels::ema::*;

#[test]
fn ema_update_matches_cpu() {
    for &len in LENS {
        for beta in [0.0f32, 0.9, 0.999] {
            let mut c = Case::new();
            // One value past len on each buffer: the kernel must leave it as it is.
            let params = c.input("params", ew_inputs(len + 1, 7));
            let mut start = uniform(len, 8, -1.0, 1.0);
            start.push(12_345.0);
            let ema = c.input("ema", start);
            let p = EmaParams { len: len as u32, beta, ..Default::default() };
            c.check(EmaUpdate { p, params, ema }, &[ema], &format!("len {len} beta {beta}"));
        }
        // The average is read as well as written, so a NaN-prefilled output must come out NaN on
        // both backends (a kernel that wrote without reading would not); the finite starts above
        // catch a kernel that writes nothing, since every value moves by (1 - beta) (w - ema).
        let mut c = Case::new();
        let params = c.input("params", ew_inputs(len, 9));
        let ema = c.output("ema", len);
        let p = EmaParams { len: len as u32, beta: 0.5, ..Default::default() };
        let Some(Both { gpu: g, cpu, .. }) = c.run(EmaUpdate { p, params, ema }, &[ema]) else { return };
        assert!(g[0].iter().chain(&cpu[0]).all(|v| v.is_nan()), "len {len}: NaN in, NaN out");
    }
}
