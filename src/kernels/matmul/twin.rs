//! The CPU twins of matmul.wgsl: plain loops with the kernels' names, on the same flat buffers
//! and offsets. The oracle for the GPU kernels and for the fast paths in `fast.rs`.

use super::MatmulParams;
use crate::kernels::activation::activate;

/// y[m,n] = act(sum_k x[m,k] w[n,k] + b[n]); a = x, c = w and b.
pub fn matmul_forward(p: &MatmulParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let (a_off, c_off, out_off, bias_off) =
        (p.a_off as usize, p.c_off as usize, p.out_off as usize, p.bias_off as usize);
    for i in 0..m {
        let x = &a[a_off + i * k..a_off + (i + 1) * k];
        for j in 0..n {
            let w = &c[c_off + j * k..c_off + (j + 1) * k];
            let mut acc = 0f32;
            for kk in 0..k {
                acc += x[kk] * w[kk];
            }
            let bias = if p.no_bias != 0 { 0.0 } else { c[bias_off + j] };
            out[out_off + i * n + j] = activate(acc + bias, p.act, p.slope);
        }
    }
}

/// dx[m,k] = sum_n dz[m,n] w[n,k]; a = dz, c = w.
pub fn matmul_backward_input(p: &MatmulParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let (a_off, c_off, out_off) = (p.a_off as usize, p.c_off as usize, p.out_off as usize);
    for i in 0..m {
        for kk in 0..k {
            let mut acc = 0f32;
            for j in 0..n {
                acc += a[a_off + i * n + j] * c[c_off + j * k + kk];
            }
            out[out_off + i * k + kk] = acc;
        }
    }
}

/// dw[n,k] (+)= sum_m dz[m,n] x[m,k]; a = dz, c = x, out = the flat gradient buffer.
pub fn matmul_backward_weight(p: &MatmulParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let (a_off, c_off, out_off) = (p.a_off as usize, p.c_off as usize, p.out_off as usize);
    for j in 0..n {
        for kk in 0..k {
            let mut acc = 0f32;
            for i in 0..m {
                acc += a[a_off + i * n + j] * c[c_off + i * k + kk];
            }
            let o = &mut out[out_off + j * k + kk];
            *o = if p.accumulate != 0 { *o + acc } else { acc };
        }
    }
}

/// db[n] (+)= sum_m dz[m,n]; a = dz, out = the flat gradient buffer at bias_off.
pub fn bias_backward(p: &MatmulParams, a: &[f32], out: &mut [f32]) {
    let (m, n) = (p.m as usize, p.n as usize);
    for j in 0..n {
        let mut s = 0f32;
        for i in 0..m {
            s += a[p.a_off as usize + i * n + j];
        }
        let o = &mut out[p.bias_off as usize + j];
        *o = if p.accumulate != 0 { *o + s } else { s };
    }
}
