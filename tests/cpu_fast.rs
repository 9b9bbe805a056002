//! The CPU backend's fast paths against the reference twins they stand in for. No GPU needed.

mod common;

use common::uniform;
use shadergan::ir::Pool;
use shadergan::ir::TrainState;
use shadergan::kernels::adam::{adam_step, adam_step_threaded, AdamParams};
use shadergan::kernels::matmul::{fast, twin as ops, MatmulParams};
use shadergan::kernels::tolerance::{compare, tolerance};

fn pool() -> Pool {
    Pool::new(2)
}

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
            fast::matmul_forward(&pool(), &p, &x, &w, &mut a);
            ops::matmul_forward(&p, &x, &w, &mut b);
            compare("matmul_forward", &a, &b, tolerance("matmul")).unwrap();
        }
        let dz = uniform(m * n, 3, -1.0, 1.0);
        let w = uniform(n * k, 4, -1.0, 1.0);
        let x = uniform(m * k, 5, -1.0, 1.0);
        let p = MatmulParams { m: m as u32, n: n as u32, k: k as u32, ..Default::default() };
        let (mut a, mut b) = (vec![0.0; m * k], vec![0.0; m * k]);
        fast::matmul_backward_input(&pool(), &p, &dz, &w, &mut a);
        ops::matmul_backward_input(&p, &dz, &w, &mut b);
        compare("matmul_backward_input", &a, &b, tolerance("matmul")).unwrap();
        for accumulate in [0, 1] {
            let p = MatmulParams { accumulate, ..p };
            let init = uniform(n * k, 6, -1.0, 1.0);
            let (mut a, mut b) = (init.clone(), init);
            fast::matmul_backward_weight(&pool(), &p, &dz, &x, &mut a);
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
        adam_step_threaded(&pool(), &p, &state, &mut pa, &grads, &mut ma);
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
    // With c_in >= 8 the input gradient runs as one GEMM per output phase; (k 2, stride 3) leaves
    // positions no tap reaches.
    let convs = [
        (1, 1, 1, 1, 1, 1, 1, 0),
        (2, 3, 7, 5, 4, 3, 1, 1),
        (3, 2, 9, 9, 5, 4, 2, 1),
        (2, 4, 8, 8, 3, 5, 3, 2),
        (2, 9, 7, 6, 5, 4, 2, 1),
        (2, 8, 5, 5, 3, 3, 1, 1),
        (1, 10, 9, 9, 4, 5, 3, 2),
        (2, 8, 7, 7, 3, 2, 3, 0),
        (3, 16, 14, 14, 9, 4, 2, 1),
        // c_in a multiple of 32: the weight gradient reads a channels-last copy of x in place.
        (2, 32, 7, 6, 9, 4, 2, 1),
        (1, 64, 5, 5, 3, 3, 1, 1),
    ];
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
            cfast::conv2d_forward(&pool(), &f, &x, &[&[0.0; 3][..], &wb].concat(), &mut a);
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
            cfast::conv2d_backward_input(&pool(), &bi, &dy, &wb, &mut a);
            twin::conv2d_backward_input(&bi, &dy, &wb, &mut b);
            compare("conv2d_backward_input", &a, &b, tolerance("conv2d")).unwrap();
            let bw = shadergan::kernels::conv::ConvParams { y_off: 1, x_off: 2, w_off: 4, accumulate: acc, ..p };
            let (mut a, mut b) = (init.clone(), init);
            cfast::conv2d_backward_weight(&pool(), &bw, &dy, &x, &mut a);
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
    cfast::conv2d_backward_input(&pool(), &p, &z, &w, &mut a);
    twin::conv2d_backward_input(&p, &z, &w, &mut b);
    compare("conv_transpose2d forward", &a, &b, tolerance("conv2d")).unwrap();
}

/// Every fast path on fixed inputs at awkward shapes, on `pool`: their outputs in one list.
/// The threaded noise and the row-by-row bias gradient are the twins' own sums: bit for bit, on
/// 1, 2 and 3 threads, at lengths around their pieces and blocks.
#[test]
fn threaded_noise_and_bias_gradient_are_the_twins_bit_for_bit() {
    use shadergan::kernels::random::{noise_normal, noise_normal_threaded, RandomParams};
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for threads in [1, 2, 3] {
        let pool = Pool::new(threads);
        for len in [1usize, 63, 2048, 2049, 16_387] {
            let state = TrainState::at(17, 3, 3, 0.5, 0.999);
            let p =
                RandomParams { len: len as u32, stream: 2, seed_lo: 9, seed_hi: 1, out_off: 5, ..Default::default() };
            let (mut a, mut b) = (vec![f32::NAN; len + 7], vec![f32::NAN; len + 7]);
            noise_normal_threaded(&pool, &p, &state, &mut a);
            noise_normal(&p, &state, &mut b);
            assert_eq!(bits(&a), bits(&b), "noise, {len} values, {threads} threads");
        }
        for (m, n) in [(1, 1), (63, 65), (7, 33), (65, 257), (512, 256), (256, 784), (3, 1000)] {
            let dz = uniform(m * n + 3, 13, -1.0, 1.0);
            for accumulate in [0, 1] {
                let p =
                    MatmulParams { m: m as u32, n: n as u32, a_off: 3, bias_off: 2, accumulate, ..Default::default() };
                let init = uniform(n + 2, 14, -1.0, 1.0);
                let (mut a, mut b) = (init.clone(), init);
                fast::bias_backward(&pool, &p, &dz, &mut a);
                ops::bias_backward(&p, &dz, &mut b);
                assert_eq!(bits(&a), bits(&b), "bias gradient {m}x{n}, accumulate {accumulate}, {threads} threads");
            }
        }
    }
}

fn every_fast_path(pool: &Pool) -> Vec<Vec<f32>> {
    use shadergan::kernels::activation::{activation_backward_fast, activation_forward_fast, EwParams};
    use shadergan::kernels::conv::{fast as cfast, Conv2dShape, ConvParams};
    use shadergan::kernels::norm::NormParams;
    use shadergan::kernels::norm_fast;
    let mut outs = vec![];
    // Matmuls, including a weight gradient whose k (the batch) is split into chunks.
    for (m, n, k) in [(1, 1, 1), (63, 64, 65), (7, 33, 65), (130, 257, 784), (5000, 7, 20)] {
        let x = uniform(m * k, 1, -1.0, 1.0);
        let w = uniform(n * k + n, 2, -1.0, 1.0);
        let dz = uniform(m * n, 3, -1.0, 1.0);
        for act in 0..5 {
            let p = MatmulParams {
                m: m as u32,
                n: n as u32,
                k: k as u32,
                act,
                bias_off: (n * k) as u32,
                slope: 0.2,
                ..Default::default()
            };
            let mut y = vec![f32::NAN; m * n];
            fast::matmul_forward(pool, &p, &x, &w, &mut y);
            outs.push(y);
        }
        let p = MatmulParams { m: m as u32, n: n as u32, k: k as u32, accumulate: 1, ..Default::default() };
        let mut dx = vec![f32::NAN; m * k];
        fast::matmul_backward_input(pool, &p, &dz, &w, &mut dx);
        let mut dw = uniform(n * k, 4, -1.0, 1.0);
        fast::matmul_backward_weight(pool, &p, &dz, &x, &mut dw);
        outs.extend([dx, dw]);
    }
    let convs = [(3, 16, 14, 9, 4, 2, 1), (2, 3, 9, 5, 4, 2, 1), (2, 8, 7, 3, 2, 3, 0), (2, 32, 7, 9, 4, 2, 1)];
    for (n, c_in, h, c_out, k, stride, pad) in convs {
        let shape = Conv2dShape { n, c_in, h_in: h, w_in: h, c_out, kh: k, kw: k, stride, pad };
        let p = ConvParams { has_bias: 1, bias_off: shape.params().w_len() as u32, ..shape.params() };
        let x = uniform(p.x_len(), 5, -1.0, 1.0);
        let wb = uniform(p.w_len() + c_out.max(c_in) as usize, 6, -1.0, 1.0);
        let dy = uniform(p.y_len(), 7, -1.0, 1.0);
        let (mut y, mut dx, mut dw) = (vec![0.0; p.y_len()], vec![0.0; p.x_len()], vec![0.0; p.w_len()]);
        cfast::conv2d_forward(pool, &p, &x, &wb, &mut y);
        cfast::conv2d_backward_input(pool, &p, &dy, &wb, &mut dx);
        cfast::conv2d_backward_weight(pool, &ConvParams { accumulate: 1, ..p }, &dy, &x, &mut dw);
        outs.extend([y, dx, dw]);
    }
    for (n, c, s) in [(3, 5, 49), (2, 7, 1), (64, 3, 17)] {
        let p = NormParams { gamma_off: 0, beta_off: c, mean_off: 0, var_off: c, ..NormParams::new(n, c, s) };
        let len = p.len();
        let x = uniform(len, 8, -2.0, 3.0);
        let dy = uniform(len, 9, -1.0, 1.0);
        let params = uniform(2 * c as usize, 10, 0.5, 1.5);
        let (mut y, mut state, mut saved) = (vec![0.0; len], vec![0.5; 2 * c as usize], vec![0.0; 3 * c as usize]);
        norm_fast::batch_norm_forward(pool, &p, &x, &params, &mut y, &mut state, &mut saved);
        let p = NormParams { dgamma_off: 0, dbeta_off: c, ..p };
        let (mut g, mut dx) = (vec![0.0; 2 * c as usize], vec![0.0; len]);
        norm_fast::batch_norm_backward_params(pool, &p, &x, &dy, &mut g, &saved);
        norm_fast::batch_norm_backward_input(pool, &p, &x, &dy, &mut dx, &saved);
        outs.extend([y, state, saved, g, dx]);
    }
    let len = 70_001;
    let (x, dy) = (uniform(len, 11, -3.0, 3.0), uniform(len, 12, -1.0, 1.0));
    for act in 1..5 {
        let p = EwParams { len: len as u32, slope: 0.2, ..Default::default() };
        let (mut y, mut dz) = (vec![0.0; len], vec![0.0; len]);
        activation_forward_fast(pool, act, &p, &x, &mut y);
        activation_backward_fast(pool, act, &p, &y, &dy, &mut dz);
        outs.extend([y, dz]);
    }
    outs
}

/// The bits the fast paths promise: the same outputs for any thread count.
#[test]
fn fast_paths_give_the_same_bits_on_1_2_and_3_threads() {
    let one = every_fast_path(&Pool::new(1));
    for threads in [2, 3] {
        let more = every_fast_path(&Pool::new(threads));
        assert_eq!(one.len(), more.len());
        for (i, (a, b)) in one.iter().zip(&more).enumerate() {
            let same = a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "output {i} differs between 1 and {threads} threads");
        }
    }
}

#[test]
fn fast_batch_norm_and_activations_match_the_twins() {
    use shadergan::kernels::activation::{
        activation_backward, activation_backward_fast, activation_forward, activation_forward_fast, EwParams,
    };
    use shadergan::kernels::norm::{self, NormParams};
    use shadergan::kernels::norm_fast;
    let pool = pool();
    for (n, c, s) in [(1, 1, 1), (3, 5, 49), (2, 7, 1), (64, 3, 17), (5, 2, 196)] {
        let p = NormParams {
            gamma_off: 1,
            beta_off: 1 + c,
            mean_off: 2,
            var_off: 2 + c,
            x_off: 3,
            y_off: 1,
            dy_off: 2,
            dx_off: 4,
            save_off: 1,
            dgamma_off: 3,
            dbeta_off: 3 + c,
            ..NormParams::new(n, c, s)
        };
        let (len, c) = (p.len(), c as usize);
        let x = uniform(len + 3, 8, -2.0, 3.0);
        let dy = uniform(len + 2, 9, -1.0, 1.0);
        let params = uniform(2 * c + 1, 10, 0.5, 1.5);
        let run = |fast: bool| {
            let (mut y, mut state, mut saved) = (vec![0.0; len + 1], vec![0.5; 2 * c + 2], vec![0.0; 3 * c + 1]);
            let mut g = uniform(2 * c + 3, 11, -1.0, 1.0);
            let mut dx = vec![0.0; len + 4];
            if fast {
                norm_fast::batch_norm_forward(&pool, &p, &x, &params, &mut y, &mut state, &mut saved);
                norm_fast::batch_norm_backward_params(&pool, &p, &x, &dy, &mut g, &saved);
                norm_fast::batch_norm_backward_input(&pool, &p, &x, &dy, &mut dx, &saved);
            } else {
                norm::batch_norm_forward(&p, &x, &params, &mut y, &mut state, &mut saved);
                norm::batch_norm_backward_params(&p, &x, &dy, &mut g, &saved);
                norm::batch_norm_backward_input(&p, &x, &dy, &mut dx, &saved);
            }
            [y, state, saved, g, dx]
        };
        for (name, a, b) in ["y", "running", "saved", "dgamma dbeta", "dx"]
            .iter()
            .zip(run(true))
            .zip(run(false))
            .map(|((n, a), b)| (n, a, b))
        {
            compare(&format!("batch_norm {name} ({n}, {c}, {s})"), &a, &b, tolerance("batch_norm")).unwrap();
        }
    }
    for len in [1usize, 65, 70_001] {
        let (x, dy) = (uniform(len + 3, 11, -30.0, 30.0), uniform(len + 1, 12, -1.0, 1.0));
        for act in 1..5 {
            let p = EwParams { len: len as u32, slope: 0.2, in_off: 3, dy_off: 1, out_off: 2, ..Default::default() };
            let (mut a, mut b) = (vec![f32::NAN; len + 2], vec![f32::NAN; len + 2]);
            activation_forward_fast(&pool, act, &p, &x, &mut a);
            activation_forward(act, &p, &x, &mut b);
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            let p = EwParams { in_off: 2, ..p };
            let (mut da, mut db) = (vec![f32::NAN; len + 2], vec![f32::NAN; len + 2]);
            activation_backward_fast(&pool, act, &p, &a, &dy, &mut da);
            activation_backward(act, &p, &a, &dy, &mut db);
            assert_eq!(
                da.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                db.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}

/// Whole training steps: the same seed gives the same bits on 1, 2 and 3 threads (MLP and the
/// convolutional model, wide enough for the phase GEMMs).
#[test]
fn training_gives_the_same_bits_on_1_2_and_3_threads() {
    use shadergan::backend::cpu::CpuExecutor;
    use shadergan::config::model::Arch;
    use shadergan::data::{DataValues, Dataset};
    use shadergan::programs::gan::GanProgram;
    use shadergan::{GanTrainer, TrainOptions, Trainer};
    let (n, size) = (40usize, 28usize);
    let bytes: Vec<u8> = uniform(n * size * size, 13, 0.0, 255.0).iter().map(|&v| v as u8).collect();
    let mut data = Dataset::from_u8(n, size * size, bytes).unwrap();
    data.sample_shape = vec![size, size];
    let data = std::sync::Arc::new(data);
    let mlp = TrainOptions {
        batch_size: Some(16),
        seed: 5,
        g_hidden: vec![40, 70],
        d_hidden: vec![70, 40],
        ..Default::default()
    };
    let dcgan = TrainOptions {
        arch: Some(Arch::Dcgan),
        g_channels: 8,
        d_channels: 8,
        latent_dim: Some(8),
        batch_size: Some(8),
        seed: 5,
        ..Default::default()
    };
    for opts in [mlp, dcgan] {
        let cfg = opts.resolve(&data).unwrap();
        let run = |threads: usize| {
            let p = GanProgram::build(&cfg, data.n, matches!(data.values, DataValues::U8(_)));
            let exec = CpuExecutor::new(&p.bufs, Some(data.clone())).threads(threads);
            let mut t = GanTrainer::new(cfg.clone(), p, Box::new(exec)).unwrap();
            t.train(3).unwrap();
            t.snapshot().unwrap()
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(run(threads) == one, "{:?}: {threads} threads changed the bits", cfg.model.arch);
        }
    }
}

/// The AVX-512, AVX2 and portable kernels give the same bits (each element one FMA chain in the
/// same order), as far as this CPU has them.
#[test]
fn every_kernel_gives_the_same_bits() {
    use shadergan::kernels::gemm::{force_isa, isa, Isa};
    let best = isa();
    let pool = pool();
    let want = every_fast_path(&pool);
    let mut others = vec![Isa::Portable];
    if best == Isa::Avx512 {
        others.push(Isa::Avx2);
    }
    for other in others {
        force_isa(Some(other));
        let got = every_fast_path(&pool);
        force_isa(None);
        for (i, (a, b)) in want.iter().zip(&got).enumerate() {
            let same = a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "output {i} differs between {best:?} and {other:?}");
        }
    }
}

/// The blocked transpose (16 x 16 blocks in registers on AVX-512, edges one by one) moves every
/// value, and only those, at awkward shapes and strides, on every kernel this CPU has.
#[test]
fn transpose_moves_every_value_at_awkward_shapes() {
    use shadergan::kernels::gemm::{force_isa, isa, transpose, Isa};
    let isas = if isa() == Isa::Avx512 { vec![None, Some(Isa::Portable)] } else { vec![None] };
    for forced in isas {
        force_isa(forced);
        for (rows, cols) in [(1, 1), (1, 17), (15, 16), (16, 16), (17, 33), (64, 49), (33, 65)] {
            let (src_rs, dst_rs) = (cols + 3, rows + 5);
            let src = uniform(rows * src_rs, 7, -1.0, 1.0);
            let mut dst = vec![f32::NAN; cols * dst_rs];
            transpose(&src, src_rs, &mut dst, dst_rs, rows, cols);
            for j in 0..cols {
                for i in 0..dst_rs {
                    let got = dst[j * dst_rs + i];
                    if i < rows {
                        assert_eq!(got.to_bits(), src[i * src_rs + j].to_bits(), "{rows}x{cols} at ({i}, {j})");
                    } else {
                        assert!(got.is_nan(), "{rows}x{cols}: wrote past the rows at ({i}, {j})");
                    }
                }
            }
        }
        force_isa(None);
    }
}
