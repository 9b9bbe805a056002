//! spectral.wgsl (spectral normalisation's power iteration, scaling and gradient) against its CPU
//! twins at awkward shapes, with NaN-filled outputs; the gradient formula against f64 finite
//! differences of sum(G * W / (u^T W v)), u and v held constant.

use crate::common::harness::{ew_inputs, Case, SHAPES};
use crate::common::uniform;
use shadergan::kernels::loss::NO_SLOT;
use shadergan::kernels::spectral::*;

/// (rows m, columns n) of weight matrices: ones, around 64, the 7x33x65 family, a short wide
/// logit layer (64x64's conv5 is 1 x 8192) and a tall one.
fn matrices() -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = SHAPES.iter().map(|&(m, n, _)| (m, n)).collect();
    v.extend([(1, 8192), (300, 7), (64, 1024)]);
    v
}

#[test]
fn spectral_matvec_matches_cpu_both_ways() {
    for (m, n) in matrices() {
        let w = ew_inputs((m * n + 3) as usize, m * 7 + n);
        for transpose in [false, true] {
            let (outs, inner) = if transpose { (n, m) } else { (m, n) };
            let (row_stride, col_stride) = if transpose { (1, n) } else { (n, 1) };
            let mut c = Case::new();
            let wb = c.input("W", w.clone());
            let x = c.input("x", uniform(inner as usize + 2, m + 3 * n, -2.0, 2.0));
            let out = c.output("out", outs as usize + 5);
            let p = SpectralParams {
                outs,
                inner,
                row_stride,
                col_stride,
                w_off: 3,
                x_off: 2,
                out_off: 5,
                ..Default::default()
            };
            c.check_from(SpectralMatvec { p, w: wb, x, out }, &[out], 5, &format!("{m}x{n} transposed {transpose}"));
        }
    }
}

#[test]
fn spectral_normalize_matches_cpu_and_writes_sigma() {
    for len in [1u32, 63, 64, 65, 7 * 33 * 65] {
        for sigma in [true, false] {
            let mut c = Case::new();
            let mut raw = vec![f32::NAN; 4];
            raw.extend(uniform(len as usize, len, -3.0, 3.0));
            // The scratch: sigma's slot 1, the raw vector from 4 (slots 0, 2, 3 stay NaN).
            raw[1] = f32::NAN;
            let scratch = c.input("scratch", raw);
            let out = c.output("out", len as usize + 1);
            let p = SpectralParams {
                len,
                x_off: 4,
                out_off: 1,
                sigma_slot: if sigma { 1 } else { NO_SLOT },
                ..Default::default()
            };
            let what = format!("len {len}, sigma {sigma}");
            c.check_from(SpectralNormalize { p, out, scratch }, &[out], 1, &what);
            let Some(r) = c.run(SpectralNormalize { p, out, scratch }, &[scratch]) else { return };
            let (g, cpu) = (r.gpu[0][1], r.cpu[0][1]);
            if sigma {
                let t = shadergan::kernels::tolerance::tolerance("spectral_normalize");
                shadergan::kernels::tolerance::compare("sigma", &[g], &[cpu], t).unwrap();
                assert!(cpu > 0.0, "{what}: sigma {cpu}");
            } else {
                assert!(g.is_nan() && cpu.is_nan(), "{what}: wrote sigma without a slot");
            }
        }
    }
    // A zero vector stays zero (F.normalize's eps), with norm 0.
    let mut scratch = vec![0.0; 5];
    let mut out = vec![f32::NAN; 3];
    let p = SpectralParams { len: 3, x_off: 2, sigma_slot: 0, ..Default::default() };
    spectral_normalize(&p, &mut scratch, &mut out);
    assert_eq!((out, scratch[0]), (vec![0.0; 3], 0.0));
}

#[test]
fn spectral_scale_and_copy_match_cpu() {
    for len in [1usize, 63, 64, 65, 7 * 33 * 65] {
        for slot in [0, NO_SLOT] {
            let mut c = Case::new();
            let w = c.input("W", ew_inputs(len + 2, len as u32));
            let scratch = c.input("scratch", vec![3.7, 1.0]);
            let out = c.output("out", len + 1);
            let p = SpectralParams { len: len as u32, w_off: 2, out_off: 1, sigma_slot: slot, ..Default::default() };
            c.check_from(SpectralScale { p, w, scratch, out }, &[out], 1, &format!("len {len}, slot {slot}"));
        }
    }
}

#[test]
fn spectral_grad_dot_and_backward_match_cpu() {
    for (m, n) in matrices() {
        let len = (m * n) as usize;
        let mut c = Case::new();
        let g = c.input("G", ew_inputs(len + 1, m + n));
        let w_sn = c.input("W_sn", uniform(len + 2, 3 * m + n, -1.0, 1.0));
        let scratch = c.output("scratch", 2);
        let p = SpectralParams { len: len as u32, x_off: 1, w_off: 2, dot_slot: 1, ..Default::default() };
        c.check_from(SpectralGradDot { p, g, w_sn, scratch }, &[scratch], 1, &format!("{m}x{n}"));

        let mut c = Case::new();
        let mut st = vec![0.0; 3];
        st.extend(uniform(m as usize, m, -1.0, 1.0));
        st.extend(uniform(n as usize, n + 11, -1.0, 1.0));
        let state = c.input("state", st);
        let scratch = c.input("scratch", vec![1.7, -0.3]);
        let mut gv = vec![f32::NAN];
        gv.extend(ew_inputs(len, m * 3 + n));
        let g = c.input("G", gv);
        let p = SpectralParams {
            len: len as u32,
            inner: n,
            out_off: 1,
            sigma_slot: 0,
            dot_slot: 1,
            u_off: 3,
            v_off: 3 + m,
            ..Default::default()
        };
        c.check_from(SpectralBackward { p, state, scratch, g }, &[g], 1, &format!("{m}x{n}"));
    }
}

/// The gradient through W / sigma(W), sigma = u^T W v with u and v constant, by central
/// differences in f64, against the twins' sum(G W_sn) and (G - c u v^T) / sigma.
#[test]
fn spectral_backward_matches_f64_finite_differences() {
    for (m, n) in [(1usize, 5usize), (4, 3), (6, 9)] {
        let w = uniform(m * n, (m * 10 + n) as u32, -1.0, 1.0);
        let up = uniform(m, 5, -1.0, 1.0);
        let vp = uniform(n, 6, -1.0, 1.0);
        // Unit u and v from a power iteration, as training keeps them.
        let (mut u, mut v) = (vec![0f32; m], vec![0f32; n]);
        initial_vectors(&w, m, n, &up, &vp, &mut u, &mut v);
        let g_up = uniform(m * n, 77, -2.0, 2.0);
        let sigma64 = |w: &[f64]| {
            (0..m).map(|i| (0..n).map(|j| u[i] as f64 * w[i * n + j] * v[j] as f64).sum::<f64>()).sum::<f64>()
        };
        let loss = |w: &[f64]| {
            let s = sigma64(w);
            w.iter().zip(&g_up).map(|(&wi, &gi)| gi as f64 * wi / s).sum::<f64>()
        };
        // The twins' gradient: sigma, W_sn, c, then the backward.
        let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
        let sigma = sigma64(&w64) as f32;
        let w_sn: Vec<f32> = w.iter().map(|&x| x / sigma).collect();
        let mut scratch = vec![sigma, 0.0];
        let p = SpectralParams {
            len: (m * n) as u32,
            inner: n as u32,
            dot_slot: 1,
            u_off: 0,
            v_off: m as u32,
            ..Default::default()
        };
        spectral_grad_dot(&p, &g_up, &w_sn, &mut scratch);
        let state: Vec<f32> = u.iter().chain(&v).copied().collect();
        let mut grad = g_up.clone();
        spectral_backward(&p, &state, &scratch, &mut grad);
        let h = 1e-6;
        let mut wp = w64.clone();
        for i in 0..m * n {
            let orig = wp[i];
            wp[i] = orig + h;
            let hi = loss(&wp);
            wp[i] = orig - h;
            let lo = loss(&wp);
            wp[i] = orig;
            let numeric = (hi - lo) / (2.0 * h);
            let a = grad[i] as f64;
            assert!((a - numeric).abs() <= 1e-4 + 1e-3 * numeric.abs(), "{m}x{n} [{i}]: analytic {a} vs {numeric}");
        }
    }
}

/// The power iteration converges to the largest singular value: a diagonal matrix's is its
/// largest entry, and W_sn's is then 1.
#[test]
fn initial_vectors_find_the_largest_singular_value() {
    let (m, n) = (3usize, 4usize);
    let mut w = vec![0f32; m * n];
    for (i, d) in [0.5f32, -3.0, 2.0].into_iter().enumerate() {
        w[i * n + i] = d;
    }
    let (mut u, mut v) = (vec![0f32; m], vec![0f32; n]);
    initial_vectors(&w, m, n, &[0.3, 0.5, -0.2], &[0.1, 0.4, 0.2, 0.3], &mut u, &mut v);
    let mut raw = vec![0f32; m + 1];
    let p = SpectralParams {
        outs: m as u32,
        inner: n as u32,
        row_stride: n as u32,
        col_stride: 1,
        out_off: 1,
        ..Default::default()
    };
    spectral_matvec(&p, &w, &v, &mut raw);
    let sigma = raw[1..].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((sigma - 3.0).abs() < 1e-4, "sigma {sigma}");
}
