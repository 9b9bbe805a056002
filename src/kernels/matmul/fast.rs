//! The CPU backend's fast matmuls: the twins' contracts on `matrixmultiply`'s blocked, threaded
//! sgemm (another summation order, so results differ from the twins in the last bits). The twins
//! stay the oracle; tests/cpu_fast.rs checks these against them.

use super::MatmulParams;
use crate::kernels::activation::activate;

/// C (m x n, row stride rsc) = alpha A B + beta C with arbitrary strides.
#[allow(clippy::too_many_arguments)]
fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
    rsc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    // Bounds: the last element each operand touches must be inside its slice.
    assert!(m == 0 || k == 0 || (m - 1) * rsa + (k - 1) * csa < a.len());
    assert!(k == 0 || (k - 1) * rsb + (n - 1) * csb < b.len());
    assert!((m - 1) * rsc + n - 1 < c.len());
    // SAFETY: the asserts above keep every access of sgemm inside the three slices.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            1,
        );
    }
}

pub fn matmul_forward(p: &MatmulParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let y = &mut out[p.out_off as usize..p.out_off as usize + m * n];
    sgemm(m, k, n, &a[p.a_off as usize..], (k, 1), &c[p.c_off as usize..], (1, k), 0.0, y, n);
    if p.no_bias != 0 {
        y.iter_mut().for_each(|v| *v = activate(*v + 0.0, p.act, p.slope));
        return;
    }
    let bias = &c[p.bias_off as usize..p.bias_off as usize + n];
    for row in y.chunks_mut(n) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v = activate(*v + b, p.act, p.slope);
        }
    }
}

pub fn matmul_backward_input(p: &MatmulParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let dx = &mut out[p.out_off as usize..p.out_off as usize + m * k];
    sgemm(m, n, k, &a[p.a_off as usize..], (n, 1), &c[p.c_off as usize..], (k, 1), 0.0, dx, k);
}

pub fn matmul_backward_weight(p: &MatmulParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let dw = &mut out[p.out_off as usize..p.out_off as usize + n * k];
    let beta = if p.accumulate != 0 { 1.0 } else { 0.0 };
    sgemm(n, m, k, &a[p.a_off as usize..], (1, n), &c[p.c_off as usize..], (k, 1), beta, dw, k);
}
