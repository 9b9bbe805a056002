//! The CPU backend's fast convolutions: the twins' contracts (`twin.rs`) on im2col and
//! `matrixmultiply`'s sgemm (another summation order, so results differ from the twins in the
//! last bits; tests/cpu_fast.rs checks them against the twins).
//!
//! With K = c_in kh kw, P = h_out w_out and the whole batch side by side, `cols` (K, n P) holds
//! the taps of x (im2col: cols[(ci, i, j), (b, oh, ow)] = x[b, ci, oh s - q + i, ow s - q + j], 0
//! in padding), and dy is viewed as (c_out, n P). Then each pass is one large sgemm, which
//! threads well:
//!   forward          y (c_out, n P)  = w (c_out, K) cols (+ bias)
//!   backward_input   cols = w^T (K, c_out) dy (c_out, n P), then col2im adds the taps into dx
//!   backward_weight  dw (c_out, K)  += dy (c_out, n P) cols^T (n P, K)

use super::twin;
use super::ConvParams;

struct Geometry {
    k: usize,
    p: usize,
    x_plane: usize,
}

fn geometry(p: &ConvParams) -> Geometry {
    let k = (p.c_in * p.kh * p.kw) as usize;
    let pp = (p.h_out * p.w_out) as usize;
    Geometry { k, p: pp, x_plane: (p.c_in * p.h_in * p.w_in) as usize }
}

/// The input position that output `o` with tap `t` reads along one axis, or None in padding.
fn tap(o: u32, t: u32, p: &ConvParams, size: u32) -> Option<usize> {
    let padded = o * p.stride + t;
    (padded >= p.pad && padded < size + p.pad).then(|| (padded - p.pad) as usize)
}

/// cols (K, n P) from the batch `x` (n, c_in, h_in, w_in): image b in columns [b P, (b + 1) P).
fn im2col(p: &ConvParams, x: &[f32], cols: &mut [f32]) {
    let (h_in, w_in, g) = (p.h_in as usize, p.w_in as usize, geometry(p));
    let np = p.n as usize * g.p;
    for b in 0..p.n as usize {
        let image = &x[b * g.x_plane..(b + 1) * g.x_plane];
        let mut row = 0;
        for ci in 0..p.c_in as usize {
            let plane = &image[ci * h_in * w_in..(ci + 1) * h_in * w_in];
            for i in 0..p.kh {
                for j in 0..p.kw {
                    let out = &mut cols[row * np + b * g.p..][..g.p];
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
}

/// Adds the taps of cols (K, n P) into the batch `dx` (n, c_in, h_in, w_in), zeroed first.
fn col2im(p: &ConvParams, cols: &[f32], dx: &mut [f32]) {
    let (h_in, w_in, g) = (p.h_in as usize, p.w_in as usize, geometry(p));
    let np = p.n as usize * g.p;
    dx.iter_mut().for_each(|v| *v = 0.0);
    for b in 0..p.n as usize {
        let image = &mut dx[b * g.x_plane..(b + 1) * g.x_plane];
        let mut row = 0;
        for ci in 0..p.c_in as usize {
            let plane = &mut image[ci * h_in * w_in..(ci + 1) * h_in * w_in];
            for i in 0..p.kh {
                for j in 0..p.kw {
                    let src = &cols[row * np + b * g.p..][..g.p];
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
}

/// C (m x n, row-major, row stride n) = A (m x k) B (k x n) + beta C, A and B with their strides.
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

/// (c, n P) with image b in columns [b P, (b + 1) P), from or to (n, c, P).
fn to_channel_major(t: &[f32], n: usize, c: usize, pp: usize, out: &mut [f32]) {
    for b in 0..n {
        for ch in 0..c {
            out[ch * n * pp + b * pp..][..pp].copy_from_slice(&t[(b * c + ch) * pp..][..pp]);
        }
    }
}

fn store(out: &mut f32, v: f32, accumulate: bool) {
    *out = if accumulate { *out + v } else { v };
}

pub fn conv2d_forward(p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (g, n, c_out) = (geometry(p), p.n as usize, p.c_out as usize);
    let np = n * g.p;
    let w = &c[p.w_off as usize..p.w_off as usize + c_out * g.k];
    let mut cols = vec![0f32; g.k * np];
    im2col(p, &a[p.x_off as usize..][..n * g.x_plane], &mut cols);
    let mut y = vec![0f32; c_out * np];
    gemm(c_out, g.k, np, w, (g.k, 1), &cols, (np, 1), 0.0, &mut y);
    let y_out = &mut out[p.y_off as usize..][..n * c_out * g.p];
    for co in 0..c_out {
        let bias = if p.has_bias != 0 { c[p.bias_off as usize + co] } else { 0.0 };
        for b in 0..n {
            let src = &y[co * np + b * g.p..][..g.p];
            for (o, &v) in y_out[(b * c_out + co) * g.p..][..g.p].iter_mut().zip(src) {
                store(o, v + bias, p.accumulate != 0);
            }
        }
    }
}

pub fn conv2d_backward_input(p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (g, n, c_out) = (geometry(p), p.n as usize, p.c_out as usize);
    let np = n * g.p;
    let w = &c[p.w_off as usize..p.w_off as usize + c_out * g.k];
    let mut dy = vec![0f32; c_out * np];
    to_channel_major(&a[p.y_off as usize..][..n * c_out * g.p], n, c_out, g.p, &mut dy);
    // cols (K, n P) = w^T (K, c_out) dy (c_out, n P): w read with swapped strides.
    let mut cols = vec![0f32; g.k * np];
    gemm(g.k, c_out, np, w, (1, g.k), &dy, (np, 1), 0.0, &mut cols);
    let mut dx = vec![0f32; n * g.x_plane];
    col2im(p, &cols, &mut dx);
    let plane = (p.h_in * p.w_in) as usize;
    let dx_out = &mut out[p.x_off as usize..][..n * g.x_plane];
    for (i, (o, &v)) in dx_out.iter_mut().zip(&dx).enumerate() {
        let bias = if p.has_bias != 0 { c[p.bias_off as usize + (i / plane) % p.c_in as usize] } else { 0.0 };
        store(o, v + bias, p.accumulate != 0);
    }
}

pub fn conv2d_backward_weight(p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (g, n, c_out) = (geometry(p), p.n as usize, p.c_out as usize);
    let np = n * g.p;
    let mut cols = vec![0f32; g.k * np];
    im2col(p, &c[p.x_off as usize..][..n * g.x_plane], &mut cols);
    let mut dy = vec![0f32; c_out * np];
    to_channel_major(&a[p.y_off as usize..][..n * c_out * g.p], n, c_out, g.p, &mut dy);
    // dw (c_out, K) (+)= dy (c_out, n P) cols^T (n P, K).
    let dw = &mut out[p.w_off as usize..p.w_off as usize + c_out * g.k];
    let beta = if p.accumulate != 0 { 1.0 } else { 0.0 };
    gemm(c_out, np, g.k, &dy, (np, 1), &cols, (1, np), beta, dw);
}

/// The bias gradient has no fast path: its fixed-order sums are cheap next to the convolutions.
pub fn conv2d_backward_bias(p: &ConvParams, a: &[f32], out: &mut [f32]) {
    twin::conv2d_backward_bias(p, a, out)
}
