//! activation.wgsl and activation_f16.wgsl (activations, their f16 backward passes, the casts)
//! against their CPU twins, and the f16 store both backends share.

use crate::common::harness::{ew_inputs, wide_values, Case, LENS};
use crate::common::uniform;
use shadergan::ir::DType::{F16, F32};
use shadergan::kernels::activation::*;

const ACTS: &[Activation] = &[Activation::Relu, Activation::LeakyRelu, Activation::Sigmoid, Activation::Tanh];

#[test]
fn activations_forward_match_cpu() {
    for &act in &ACTS[1..] {
        for &len in LENS {
            let mut c = Case::new();
            let x = c.input("x", ew_inputs(len + 1, len as u32));
            let y = c.output("y", len);
            let p = EwParams { len: len as u32, slope: act.slope(), in_off: 1, ..Default::default() };
            c.check(ActivationForward { act, p, x, out: y }, &[y], &format!("{act:?} len {len}"));
        }
    }
}

#[test]
fn activations_backward_match_cpu() {
    for &act in &ACTS[1..] {
        for &len in LENS {
            let mut c = Case::new();
            // y must be a possible output of the activation.
            let ys: Vec<f32> = ew_inputs(len, 3).iter().map(|&z| activate(z, act.code(), act.slope())).collect();
            let y = c.input("y", ys);
            let dy = c.input("dy", uniform(len + 2, 5, -1.0, 1.0));
            let dz = c.output("dz", len);
            let p = EwParams { len: len as u32, slope: act.slope(), dy_off: 2, ..Default::default() };
            c.check(ActivationBackward { act, p, y, dy, out: dz }, &[dz], &format!("{act:?} len {len}"));
        }
    }
}

#[test]
fn large_elementwise_dispatch_is_split_and_covers_every_element() {
    // More than 65,535 workgroups of 256: the host splits the grid into two dimensions.
    let len = 65_536 * 256 + 5;
    let mut c = Case::new();
    let x = c.input("x", uniform(len, 1, -1.0, 1.0));
    let y = c.output("y", len);
    let p = EwParams { len: len as u32, ..Default::default() };
    c.check(ActivationForward { act: Activation::Relu, p, x, out: y }, &[y], "relu 16.8M");
}

#[test]
fn sigmoid_never_overflows() {
    use shadergan::kernels::activation::sigmoid;
    assert_eq!(sigmoid(300.0), 1.0);
    assert_eq!(sigmoid(-300.0), 0.0);
    assert!((sigmoid(-30.0) - 9.357623e-14).abs() < 1e-19);
    assert!((sigmoid(30.0) - 1.0).abs() < 1e-7);
}

#[test]
fn activations_backward_f16_match_cpu() {
    for &act in &ACTS[1..] {
        for &len in LENS {
            let mut c = Case::new();
            // y: a possible f16 output of the activation.
            let ys: Vec<f32> = uniform(len + 1, 3, -8.0, 8.0)
                .iter()
                .map(|&z| round_f16(activate(z, act.code(), act.slope())))
                .collect();
            let y = c.input_as("D.fc1.out", F16, ys);
            let dy = c.input_as("dy", F32, uniform(len + 2, 5, -1e-3, 1e-3));
            let dz = c.output_as("dz", F32, len);
            let p = EwParams { len: len as u32, slope: act.slope(), in_off: 1, dy_off: 2, ..Default::default() };
            c.check_from(ActivationBackward { act, p, y, dy, out: dz }, &[dz], 0, &format!("{act:?} len {len}"));
        }
    }
}

#[test]
fn casts_match_cpu_exactly() {
    for &len in LENS {
        let mut c = Case::new();
        let src = c.input_as("G.params", F32, wide_values(len + 3, len as u32));
        let half = c.output_as("G.params.f16", F16, len + 1);
        let to16 = EwParams { len: len as u32, in_off: 3, out_off: 1, ..Default::default() };
        c.check_from(Cast { p: to16, x: src, out: half, to_f16: true }, &[half], 1, &format!("to f16, len {len}"));
        // f16 -> f32 is exact: the f16 input was rounded on upload, on both sides alike.
        let mut c2 = Case::new();
        let h = c2.input_as("D.fc3.out", F16, wide_values(len + 1, len as u32 + 7));
        let back2 = c2.output_as("D.logits", F32, len + 2);
        let to32 = EwParams { len: len as u32, in_off: 1, out_off: 2, ..Default::default() };
        c2.check_from(Cast { p: to32, x: h, out: back2, to_f16: false }, &[back2], 2, &format!("to f32, len {len}"));
    }
}

#[test]
fn round_f16_saturates_and_rounds_to_nearest_even() {
    assert_eq!(round_f16(1e5), 65504.0);
    assert_eq!(round_f16(-1e9), -65504.0);
    assert_eq!(round_f16(1.0 + 1.0 / 4096.0), 1.0); // half an ulp below a tie: down
    assert_eq!(round_f16(1.0 + 3.0 / 2048.0), 1.0 + 2.0 / 1024.0); // a tie: to even
    assert_eq!(round_f16(6e-8), 5.9604645e-8); // the smallest subnormal
    assert_eq!(round_f16(1e-9), 0.0);
}

#[test]
fn round_f16_slice_equals_round_f16_value_by_value() {
    let mut v = wide_values(5000, 1);
    v.extend([1e-7, -3e-8, 65519.0, 65520.0, -65536.0, f32::MAX, f32::MIN_POSITIVE, 1.0 + 3.0 / 2048.0]);
    let want: Vec<f32> = v.iter().map(|&x| round_f16(x)).collect();
    shadergan::kernels::activation::round_f16_slice(&mut v);
    assert_eq!(v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
}
