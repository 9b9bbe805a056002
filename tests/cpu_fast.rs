//! The CPU backend's fast paths against the reference twins they stand in for. No GPU needed.

mod common;

use common::uniform;
use shadergan::ir::TrainState;
use shadergan::kernels::adam::{adam_step, adam_step_threaded, AdamParams};
use shadergan::kernels::matmul::{fast, twin as ops, MatmulParams};
use shadergan::kernels::tolerance::{compare, tolerance};

#[test]
fn fast_matmuls_match_the_reference() {
    for (m, n, k) in [(1, 1, 1), (63, 64, 65), (7, 33, 65), (128, 256, 784)] {
        for act in 0..5 {
            let x = uniform(m * k + 3, 1, -1.0, 1.0);
            let w = uniform(n * k + n + 5, 2, -1.0, 1.0);
            let p = MatmulParams {
                m: m as u32,
                n: n as u32,
                k: k as u32,
                act,
                a_off: 3,
                c_off: 5,
                bias_off: (5 + n * k) as u32,
                slope: 0.2,
                ..Default::default()
            };
            let (mut a, mut b) = (vec![0.0; m * n], vec![0.0; m * n]);
            fast::matmul_forward(&p, &x, &w, &mut a);
            ops::matmul_forward(&p, &x, &w, &mut b);
            compare("matmul_forward", &a, &b, tolerance("matmul")).unwrap();
        }
        let dz = uniform(m * n, 3, -1.0, 1.0);
        let w = uniform(n * k, 4, -1.0, 1.0);
        let x = uniform(m * k, 5, -1.0, 1.0);
        let p = MatmulParams { m: m as u32, n: n as u32, k: k as u32, ..Default::default() };
        let (mut a, mut b) = (vec![0.0; m * k], vec![0.0; m * k]);
        fast::matmul_backward_input(&p, &dz, &w, &mut a);
        ops::matmul_backward_input(&p, &dz, &w, &mut b);
        compare("matmul_backward_input", &a, &b, tolerance("matmul")).unwrap();
        for accumulate in [0, 1] {
            let p = MatmulParams { accumulate, ..p };
            let init = uniform(n * k, 6, -1.0, 1.0);
            let (mut a, mut b) = (init.clone(), init);
            fast::matmul_backward_weight(&p, &dz, &x, &mut a);
            ops::matmul_backward_weight(&p, &dz, &x, &mut b);
            compare("matmul_backward_weight", &a, &b, tolerance("matmul")).unwrap();
        }
    }
}

#[test]
fn threaded_adam_is_bit_identical_to_the_reference() {
    for len in [1usize, 65, 200_003] {
        let state = TrainState::at(0, 3, 3, 0.5, 0.999);
        let p =
            AdamParams { len: len as u32, net: 1, lr: 2e-4, beta1: 0.5, beta2: 0.999, eps: 1e-8, ..Default::default() };
        let params = uniform(len, 1, -1.0, 1.0);
        let grads = uniform(len, 2, -1e-2, 1e-2);
        let mut mv = uniform(len, 3, -1e-2, 1e-2);
        mv.extend(uniform(len, 4, 0.0, 1e-4));
        let (mut pa, mut ma) = (params.clone(), mv.clone());
        let (mut pb, mut mb) = (params, mv);
        adam_step_threaded(&p, &state, &mut pa, &grads, &mut ma);
        adam_step(&p, &state, &mut pb, &grads, &mut mb);
        assert_eq!(pa, pb);
        assert_eq!(ma, mb);
    }
}

#[test]
fn fast_convolutions_match_the_twins() {
    use shadergan::kernels::conv::{fast as cfast, twin, Conv2dShape, ConvTranspose2dShape};
    // (n, c_in, h_in, w_in, c_out, k, stride, pad): odd sizes, padding, DCGAN's (4, 2, 1) and the
    // 1x1-input first layer of G as a transpose.
    let convs =
        [(1, 1, 1, 1, 1, 1, 1, 0), (2, 3, 7, 5, 4, 3, 1, 1), (3, 2, 9, 9, 5, 4, 2, 1), (2, 4, 8, 8, 3, 5, 3, 2)];
    for (n, c_in, h, w, c_out, k, stride, pad) in convs {
        let shape = Conv2dShape { n, c_in, h_in: h, w_in: w, c_out, kh: k, kw: k, stride, pad };
        let p = shape.params();
        let (xl, yl, wl) = (p.x_len(), p.y_len(), p.w_len());
        let x = uniform(xl + 2, 1, -1.0, 1.0);
        let wb = uniform(wl + c_out as usize + 3, 2, -1.0, 1.0);
        let dy = uniform(yl + 1, 3, -1.0, 1.0);
        for acc in [0u32, 1] {
            let init = uniform(xl.max(yl).max(wl) + 4, 4, -1.0, 1.0);
            let f = shadergan::kernels::conv::ConvParams {
                x_off: 2,
                w_off: 3,
                bias_off: 3 + wl as u32,
                has_bias: 1,
                y_off: 1,
                accumulate: acc,
                ..p
            };
            let (mut a, mut b) = (init.clone(), init.clone());
            cfast::conv2d_forward(&f, &x, &[&[0.0; 3][..], &wb].concat(), &mut a);
            twin::conv2d_forward(&f, &x, &[&[0.0; 3][..], &wb].concat(), &mut b);
            compare("conv2d_forward", &a, &b, tolerance("conv2d")).unwrap();
            let bi = shadergan::kernels::conv::ConvParams {
                y_off: 1,
                w_off: 0,
                x_off: 2,
                has_bias: 0,
                accumulate: acc,
                ..p
            };
            let (mut a, mut b) = (init.clone(), init.clone());
            cfast::conv2d_backward_input(&bi, &dy, &wb, &mut a);
            twin::conv2d_backward_input(&bi, &dy, &wb, &mut b);
            compare("conv2d_backward_input", &a, &b, tolerance("conv2d")).unwrap();
            let bw = shadergan::kernels::conv::ConvParams { y_off: 1, x_off: 2, w_off: 4, accumulate: acc, ..p };
            let (mut a, mut b) = (init.clone(), init);
            cfast::conv2d_backward_weight(&bw, &dy, &x, &mut a);
            twin::conv2d_backward_weight(&bw, &dy, &x, &mut b);
            compare("conv2d_backward_weight", &a, &b, tolerance("conv2d")).unwrap();
        }
    }
    // G's first layer: a transpose from 1x1 to 4x4 (through conv2d_backward_input).
    let t = ConvTranspose2dShape { n: 3, c_in: 6, h_in: 1, w_in: 1, c_out: 5, kh: 4, kw: 4, stride: 1, pad: 0 };
    let call = t.forward(0, 0, None, 0);
    let p = call.p;
    let (z, w) = (uniform(p.y_len(), 5, -1.0, 1.0), uniform(p.w_len(), 6, -1.0, 1.0));
    let (mut a, mut b) = (vec![f32::NAN; p.x_len()], vec![f32::NAN; p.x_len()]);
    cfast::conv2d_backward_input(&p, &z, &w, &mut a);
    twin::conv2d_backward_input(&p, &z, &w, &mut b);
    compare("conv_transpose2d forward", &a, &b, tolerance("conv2d")).unwrap();
}
