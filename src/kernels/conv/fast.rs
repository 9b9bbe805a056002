//! The CPU backend's fast convolutions: the twins' contracts (`twin.rs`) on im2col and
//! `matrixmultiply`'s sgemm (another summation order, so results differ from the twins in the
//! last bits; tests/cpu_fast.rs checks them against the twins).
//!
//! Per image b, with K = c_in kh kw and P = h_out w_out, `cols` (K, P) holds the taps of x
//! (im2col: cols[(ci, i, j), (oh, ow)] = x[b, ci, oh s - q + i, ow s - q + j], 0 in padding):
//!   forward          y[b] (c_out, P)  = w (c_out, K) cols (+ bias)
//!   backward_input   cols = w^T (K, c_out) dy[b] (c_out, P), then col2im adds the taps into dx[b]
//!   backward_weight  dw (c_out, K)    += dy[b] (c_out, P) cols^T (P, K), summed over b

use super::twin;
use super::ConvParams;

struct Geometry {
    k: usize,
    p: usize,
    x_plane: usize,
    y_plane: usize,
}

fn geometry(p: &ConvParams) -> Geometry {
    let k = (p.c_in * p.kh * p.kw) as usize;
    let pp = (p.h_out * p.w_out) as usize;
    Geometry { k, p: pp, x_plane: (p.c_in * p.h_in * p.w_in) as usize, y_plane: (p.c_out as usize) * pp }
}

/// The input position that output `o` with tap `t` reads along one axis, or None in padding.
fn tap(o: u32, t: u32, p: &ConvParams, size: u32) -> Option<usize> {
    let padded = o * p.stride + t;
    (padded >= p.pad && padded < size + p.pad).then(|| (padded - p.pad) as usize)
}

/// cols (K, P) from image `x` (c_in, h_in, w_in).
fn im2col(p: &ConvParams, x: &[f32], cols: &mut [f32]) {
    let (h_in, w_in, pp) = (p.h_in as usize, p.w_in as usize, (p.h_out * p.w_out) as usize);
    let mut row = 0;
    for ci in 0..p.c_in as usize {
        let plane = &x[ci * h_in * w_in..(ci + 1) * h_in * w_in];
        for i in 0..p.kh {
            for j in 0..p.kw {
                let out = &mut cols[row * pp..(row + 1) * pp];
                let mut q = 0;
                for oh in 0..p.h_out {
                    let ih = tap(oh, i, p, p.h_in);
                    for ow in 0..p.w_out {
                        out[q] = match (ih, tap(ow, j, p, p.w_in)) {
                            (Some(ih), Some(iw)) => plane[ih * w_in + iw],
                            _ => 0.0,
                        };
                        q += 1;
                    }
                }
                row += 1;
            }
        }
    }
}

/// Adds the taps of cols (K, P) into image `dx` (c_in, h_in, w_in).
fn col2im(p: &ConvParams, cols: &[f32], dx: &mut [f32]) {
    let (h_in, w_in, pp) = (p.h_in as usize, p.w_in as usize, (p.h_out * p.w_out) as usize);
    let mut row = 0;
    for ci in 0..p.c_in as usize {
        let plane = &mut dx[ci * h_in * w_in..(ci + 1) * h_in * w_in];
        for i in 0..p.kh {
            for j in 0..p.kw {
                let src = &cols[row * pp..(row + 1) * pp];
                let mut q = 0;
                for oh in 0..p.h_out {
                    let ih = tap(oh, i, p, p.h_in);
                    for ow in 0..p.w_out {
                        if let (Some(ih), Some(iw)) = (ih, tap(ow, j, p, p.w_in)) {
                            plane[ih * w_in + iw] += src[q];
                        }
                        q += 1;
                    }
                }
                row += 1;
            }
        }
    }
}

/// C (m x n, row-major, row stride n) = A (m x k) B (k x n) + beta C, each with its strides.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(k == 0 || (m - 1) * rsa + (k - 1) * csa < a.len());
    assert!(k == 0 || (k - 1) * rsb + (n - 1) * csb < b.len());
    assert!(m * n <= c.len());
    // SAFETY: the asserts keep every access of sgemm inside the three slices.
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
            n as isize,
            1,
        );
    }
}

fn store(out: &mut [f32], v: &[f32], accumulate: bool) {
    if accumulate {
        out.iter_mut().zip(v).for_each(|(o, v)| *o += v);
    } else {
        out.copy_from_slice(v);
    }
}

pub fn conv2d_forward(p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let g = geometry(p);
    let w = &c[p.w_off as usize..p.w_off as usize + p.c_out as usize * g.k];
    let mut cols = vec![0f32; g.k * g.p];
    let mut y = vec![0f32; g.y_plane];
    for b in 0..p.n as usize {
        let x = &a[p.x_off as usize + b * g.x_plane..][..g.x_plane];
        im2col(p, x, &mut cols);
        gemm(p.c_out as usize, g.k, g.p, w, (g.k, 1), &cols, (g.p, 1), 0.0, &mut y);
        if p.has_bias != 0 {
            for (co, row) in y.chunks_mut(g.p).enumerate() {
                let bias = c[p.bias_off as usize + co];
                row.iter_mut().for_each(|v| *v += bias);
            }
        }
        store(&mut out[p.y_off as usize + b * g.y_plane..][..g.y_plane], &y, p.accumulate != 0);
    }
}

pub fn conv2d_backward_input(p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let g = geometry(p);
    let w = &c[p.w_off as usize..p.w_off as usize + p.c_out as usize * g.k];
    let mut cols = vec![0f32; g.k * g.p];
    let mut dx = vec![0f32; g.x_plane];
    for b in 0..p.n as usize {
        let dy = &a[p.y_off as usize + b * g.y_plane..][..g.y_plane];
        // cols (K, P) = w^T (K, c_out) dy (c_out, P): w read with swapped strides.
        gemm(g.k, p.c_out as usize, g.p, w, (1, g.k), dy, (g.p, 1), 0.0, &mut cols);
        dx.iter_mut().for_each(|v| *v = 0.0);
        col2im(p, &cols, &mut dx);
        if p.has_bias != 0 {
            let plane = (p.h_in * p.w_in) as usize;
            for (ci, row) in dx.chunks_mut(plane).enumerate() {
                let bias = c[p.bias_off as usize + ci];
                row.iter_mut().for_each(|v| *v += bias);
            }
        }
        store(&mut out[p.x_off as usize + b * g.x_plane..][..g.x_plane], &dx, p.accumulate != 0);
    }
}

pub fn conv2d_backward_weight(p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let g = geometry(p);
    let len = p.c_out as usize * g.k;
    let dw = &mut out[p.w_off as usize..p.w_off as usize + len];
    if p.accumulate == 0 {
        dw.iter_mut().for_each(|v| *v = 0.0);
    }
    let mut cols = vec![0f32; g.k * g.p];
    for b in 0..p.n as usize {
        let x = &c[p.x_off as usize + b * g.x_plane..][..g.x_plane];
        let dy = &a[p.y_off as usize + b * g.y_plane..][..g.y_plane];
        im2col(p, x, &mut cols);
        // dw (c_out, K) += dy (c_out, P) cols^T (P, K).
        gemm(p.c_out as usize, g.p, g.k, dy, (g.p, 1), &cols, (1, g.p), 1.0, dw);
    }
}

/// The bias gradient has no fast path: its fixed-order sums are cheap next to the convolutions.
pub fn conv2d_backward_bias(p: &ConvParams, a: &[f32], out: &mut [f32]) {
    twin::conv2d_backward_bias(p, a, out)
}
