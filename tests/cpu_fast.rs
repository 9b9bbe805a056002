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
