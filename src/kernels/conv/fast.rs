//! The CPU backend's fast convolutions: the twins' contracts (`twin.rs`) as GEMMs on the pool's
//! sgemm (`compute::gemm`), the im2col taps packed straight into its panels (no column matrix
//! for the forward pass and the weight gradient). Another summation order than the twins', so
//! results differ from them in the last bits (tests/cpu_fast.rs checks them against the twins),
//! but fixed by the shape: the same bits for any thread count.
//!
//! With K = c_in kh kw, P = h_out w_out and the whole batch side by side (column b P + q is
//! output position q of image b):
//!   forward          y (c_out, n P)  = w (c_out, K) cols (K, n P) (+ bias per row), stored
//!                    straight into NCHW through column offsets
//!   backward_input   cols (K, n P) = w^T (K, c_out) dy (c_out, n P), then col2im adds each
//!                    image's taps into dx (a task per image)
//!   backward_weight  dw (c_out, K)  (+)= dy (c_out, n P) cols^T (n P, K)
//! where cols[(ci, i, j), (b, oh, ow)] = x[b, ci, oh s - pad + i, ow s - pad + j], 0 in padding.

use std::cell::RefCell;

use super::twin;
use super::ConvParams;
use crate::compute::gemm::{gemm, BSrc, Bias, Epilogue, Mat, Out, NR};
use crate::compute::Pool;

thread_local! {
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static DY: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PLANE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static OFFS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// A thread-local scratch vector of at least `len` (contents unspecified).
fn with_scratch<T: Copy + Default, R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<T>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    key.with(|cell| {
        let mut v = cell.borrow_mut();
        if v.len() < len {
            v.resize(len, T::default());
        }
        f(&mut v[..len])
    })
}

#[derive(Clone, Copy)]
struct Geometry {
    k: usize,
    p: usize,
    np: usize,
    x_plane: usize,
    h_in: usize,
    w_in: usize,
    w_out: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
}

fn geometry(p: &ConvParams) -> Geometry {
    let k = (p.c_in * p.kh * p.kw) as usize;
    let pp = (p.h_out * p.w_out) as usize;
    Geometry {
        k,
        p: pp,
        np: p.n as usize * pp,
        x_plane: (p.c_in * p.h_in * p.w_in) as usize,
        h_in: p.h_in as usize,
        w_in: p.w_in as usize,
        w_out: p.w_out as usize,
        kh: p.kh as usize,
        kw: p.kw as usize,
        stride: p.stride as usize,
        pad: p.pad as usize,
    }
}

impl Geometry {
    /// (image offset in x, top row, left column) of output column `col` (b P + q), padded.
    fn origin(&self, col: usize) -> (usize, isize, isize) {
        let (b, q) = (col / self.p, col % self.p);
        let (oh, ow) = (q / self.w_out, q % self.w_out);
        (
            b * self.x_plane,
            (oh * self.stride) as isize - self.pad as isize,
            (ow * self.stride) as isize - self.pad as isize,
        )
    }

    /// x at tap (ci, i, j) of an origin, 0 in padding.
    #[inline(always)]
    fn tap(&self, x: &[f32], (img, top, left): (usize, isize, isize), ci: usize, i: usize, j: usize) -> f32 {
        let (ih, iw) = (top + i as isize, left + j as isize);
        if ih < 0 || iw < 0 || ih >= self.h_in as isize || iw >= self.w_in as isize {
            return 0.0;
        }
        x[img + (ci * self.h_in + ih as usize) * self.w_in + iw as usize]
    }

    /// The im2col panel of columns j0..j0 + NR (K rows): dst[kk NR + jj].
    fn pack_cols(&self, x: &[f32], j0: usize, dst: &mut [f32]) {
        let cols = self.np.saturating_sub(j0).min(NR);
        if cols < NR {
            dst.iter_mut().for_each(|v| *v = 0.0);
        }
        let mut origin = [(0usize, 0isize, 0isize); NR];
        for (jj, o) in origin.iter_mut().enumerate().take(cols) {
            *o = self.origin(j0 + jj);
        }
        let mut kk = 0;
        for ci in 0..self.k / (self.kh * self.kw) {
            for i in 0..self.kh {
                for j in 0..self.kw {
                    let row = &mut dst[kk * NR..kk * NR + cols];
                    for (v, &o) in row.iter_mut().zip(&origin) {
                        *v = self.tap(x, o, ci, i, j);
                    }
                    kk += 1;
                }
            }
        }
    }

    /// The panel of cols^T (n P rows, K columns) for taps j0..j0 + NR: dst[col NR + jj].
    fn pack_rows(&self, x: &[f32], j0: usize, dst: &mut [f32]) {
        let taps = self.k.saturating_sub(j0).min(NR);
        if taps < NR {
            dst.iter_mut().for_each(|v| *v = 0.0);
        }
        let mut tap = [(0usize, 0usize, 0usize); NR];
        for (jj, t) in tap.iter_mut().enumerate().take(taps) {
            let kk = j0 + jj;
            *t = (kk / (self.kh * self.kw), (kk / self.kw) % self.kh, kk % self.kw);
        }
        for col in 0..self.np {
            let o = self.origin(col);
            let row = &mut dst[col * NR..col * NR + taps];
            for (v, &(ci, i, j)) in row.iter_mut().zip(&tap) {
                *v = self.tap(x, o, ci, i, j);
            }
        }
    }
}

/// (c, n P) with image b in columns [b P, (b + 1) P), from (n, c, P); a task per channel block.
fn to_channel_major(pool: &Pool, t: &[f32], n: usize, c: usize, pp: usize, out: &mut [f32]) {
    let ptr = out.as_mut_ptr() as usize;
    pool.run(c, &|ch| {
        // SAFETY: row ch of out (n P values), written by this task only.
        let row = unsafe { std::slice::from_raw_parts_mut((ptr as *mut f32).add(ch * n * pp), n * pp) };
        for b in 0..n {
            row[b * pp..(b + 1) * pp].copy_from_slice(&t[(b * c + ch) * pp..][..pp]);
        }
    });
}

/// The NCHW offset of column b P + q of a (c, n P) result with c channels: b c P + q.
fn nchw_offsets(n: usize, c: usize, pp: usize, offs: &mut [usize]) {
    for b in 0..n {
        for q in 0..pp {
            offs[b * pp + q] = b * c * pp + q;
        }
    }
}

pub fn conv2d_forward(pool: &Pool, p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (g, n, c_out) = (geometry(p), p.n as usize, p.c_out as usize);
    let w = Mat::new(c, p.w_off as usize, g.k, 1);
    let x = &a[p.x_off as usize..][..n * g.x_plane];
    let y = &mut out[p.y_off as usize..][..n * c_out * g.p];
    let bias = if p.has_bias != 0 { Bias::Row(&c[p.bias_off as usize..][..c_out]) } else { Bias::None };
    let epi = Epilogue { bias, accumulate: p.accumulate != 0, act: 0, slope: 0.0 };
    let pack = |j0: usize, dst: &mut [f32]| g.pack_cols(x, j0, dst);
    with_scratch(&OFFS, g.np, |offs| {
        nchw_offsets(n, c_out, g.p, offs);
        gemm(pool, c_out, g.np, g.k, w, BSrc::Pack(&pack), Out { data: y, rs: g.p, col_off: Some(offs) }, epi);
    });
}

pub fn conv2d_backward_input(pool: &Pool, p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    if (p.c_in as usize) < crate::compute::gemm::MR {
        // Too few rows for the phase GEMMs' panels: one GEMM into a column matrix, then col2im.
        return backward_input_cols(pool, p, a, c, out);
    }
    let (g, n, c_in, c_out) = (geometry(p), p.n as usize, p.c_in as usize, p.c_out as usize);
    let (h_out, s) = (g.p / g.w_out, g.stride);
    let dy = &a[p.y_off as usize..][..n * c_out * g.p];
    let dx = &mut out[p.x_off as usize..][..n * g.x_plane];
    let bias = if p.has_bias != 0 { Bias::Row(&c[p.bias_off as usize..][..c_in]) } else { Bias::None };
    let epi = Epilogue { bias, accumulate: p.accumulate != 0, act: 0, slope: 0.0 };
    let plane = g.h_in * g.w_in;
    // Output phase (ph, pw): the positions with (ih + pad) % s = ph (and likewise for iw), which
    // only the taps i = ph + s u (j = pw + s v) reach, from dy at (t - u, t' - v), where
    // ih = s t + ph - pad. Each phase is one GEMM:
    //   dx_phase (c_in, n T T') = w_phase (c_in, c_out U V) dy_taps (c_out U V, n T T').
    for ph in 0..s {
        for pw in 0..s {
            let (th_lo, th_n) = phase_positions(ph, g.pad, s, g.h_in);
            let (tw_lo, tw_n) = phase_positions(pw, g.pad, s, g.w_in);
            if th_n == 0 || tw_n == 0 {
                continue;
            }
            let us: Vec<usize> = (ph..g.kh).step_by(s).collect();
            let vs: Vec<usize> = (pw..g.kw).step_by(s).collect();
            let kt = c_out * us.len() * vs.len();
            let cols_n = n * th_n * tw_n;
            with_scratch(&PLANE, c_in * kt.max(1), |wp| {
                // w_phase (c_in, (co, u, v)) = w[co, ci, ph + s u, pw + s v].
                for ci in 0..c_in {
                    let mut r = ci * kt;
                    for co in 0..c_out {
                        for &i in &us {
                            for &j in &vs {
                                wp[r] = c[p.w_off as usize + ((co * c_in + ci) * g.kh + i) * g.kw + j];
                                r += 1;
                            }
                        }
                    }
                }
                let pack = |j0: usize, dst: &mut [f32]| {
                    let cols = cols_n.saturating_sub(j0).min(NR);
                    dst.iter_mut().for_each(|v| *v = 0.0);
                    let (nu, nv) = (us.len(), vs.len());
                    for jj in 0..cols {
                        let col = j0 + jj;
                        let (b, t) = (col / (th_n * tw_n), col % (th_n * tw_n));
                        let (th, tw) = (th_lo + t / tw_n, tw_lo + t % tw_n);
                        let img = b * c_out * g.p;
                        for u in 0..nu {
                            let Some(oh) = th.checked_sub(u).filter(|&o| o < h_out) else { continue };
                            for v in 0..nv {
                                let Some(ow) = tw.checked_sub(v).filter(|&o| o < g.w_out) else { continue };
                                let src = &dy[img + oh * g.w_out + ow..];
                                let mut row = u * nv + v;
                                for co in 0..c_out {
                                    dst[row * NR + jj] = src[co * g.p];
                                    row += nu * nv;
                                }
                            }
                        }
                    }
                };
                with_scratch(&OFFS, cols_n, |offs| {
                    for (col, o) in offs.iter_mut().enumerate() {
                        let (b, t) = (col / (th_n * tw_n), col % (th_n * tw_n));
                        let ih = s * (th_lo + t / tw_n) + ph - g.pad;
                        let iw = s * (tw_lo + t % tw_n) + pw - g.pad;
                        *o = b * g.x_plane + ih * g.w_in + iw;
                    }
                    let wm = Mat::new(wp, 0, kt, 1);
                    let o = Out { data: &mut *dx, rs: plane, col_off: Some(offs) };
                    gemm(pool, c_in, cols_n, kt, wm, BSrc::Pack(&pack), o, epi);
                });
            });
        }
    }
}

/// (first t, count) of the positions x = s t + phase - pad inside [0, size).
fn phase_positions(phase: usize, pad: usize, s: usize, size: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(phase).div_ceil(s);
    let hi = (size + pad).saturating_sub(phase).div_ceil(s);
    (lo, hi.saturating_sub(lo))
}

/// `conv2d_backward_input` through a column matrix and col2im (for few input channels).
fn backward_input_cols(pool: &Pool, p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (g, n, c_out, c_in) = (geometry(p), p.n as usize, p.c_out as usize, p.c_in as usize);
    // w^T (K, c_out): A(kk, co) = w[co K + kk].
    let wt = Mat::new(c, p.w_off as usize, 1, g.k);
    let dy = &a[p.y_off as usize..][..n * c_out * g.p];
    let pack = |j0: usize, dst: &mut [f32]| {
        let cols = g.np.saturating_sub(j0).min(NR);
        if cols < NR {
            dst.iter_mut().for_each(|v| *v = 0.0);
        }
        for jj in 0..cols {
            let (b, q) = ((j0 + jj) / g.p, (j0 + jj) % g.p);
            let src = &dy[b * c_out * g.p + q..];
            for co in 0..c_out {
                dst[co * NR + jj] = src[co * g.p];
            }
        }
    };
    let bias = (p.has_bias != 0).then(|| &c[p.bias_off as usize..][..c_in]);
    let dx = &mut out[p.x_off as usize..][..n * g.x_plane];
    with_scratch(&COLS, g.k * g.np, |cols| {
        gemm(
            pool,
            g.k,
            g.np,
            c_out,
            wt,
            BSrc::Pack(&pack),
            Out { data: cols, rs: g.np, col_off: None },
            Epilogue::PLAIN,
        );
        let (cols, dx_ptr) = (&*cols, dx.as_mut_ptr() as usize);
        let plane = g.h_in * g.w_in;
        pool.run(n, &|b| {
            // SAFETY: image b of dx, written by this task only.
            let img = unsafe { std::slice::from_raw_parts_mut((dx_ptr as *mut f32).add(b * g.x_plane), g.x_plane) };
            with_scratch(&PLANE, g.x_plane, |acc| {
                col2im_image(&g, cols, b, acc);
                for (e, (o, &v)) in img.iter_mut().zip(acc.iter()).enumerate() {
                    let v = match bias {
                        Some(bias) => v + bias[e / plane],
                        None => v,
                    };
                    *o = if p.accumulate != 0 { *o + v } else { v };
                }
            });
        });
    });
}

/// Adds the taps of image b's columns of cols (K, n P) into acc (c_in, h_in, w_in), zeroed
/// first, tap by tap in (ci, i, j) order.
fn col2im_image(g: &Geometry, cols: &[f32], b: usize, acc: &mut [f32]) {
    acc.iter_mut().for_each(|v| *v = 0.0);
    let (s, pad) = (g.stride, g.pad);
    // Output columns ow whose tap j lands inside the row: 0 <= ow s + j - pad < w_in.
    let range = |j: usize, size: usize, outs: usize| {
        let lo = pad.saturating_sub(j).div_ceil(s);
        let hi = ((size + pad).saturating_sub(j)).div_ceil(s).min(outs);
        (lo, hi.max(lo))
    };
    let h_out = g.p / g.w_out;
    let mut kk = 0;
    for ci in 0..g.k / (g.kh * g.kw) {
        let plane = &mut acc[ci * g.h_in * g.w_in..][..g.h_in * g.w_in];
        for i in 0..g.kh {
            let (oh_lo, oh_hi) = range(i, g.h_in, h_out);
            for j in 0..g.kw {
                let (ow_lo, ow_hi) = range(j, g.w_in, g.w_out);
                let src = &cols[kk * g.np + b * g.p..][..g.p];
                for oh in oh_lo..oh_hi {
                    let ih = oh * s + i - pad;
                    let row = &mut plane[ih * g.w_in..][..g.w_in];
                    let srow = &src[oh * g.w_out..][..g.w_out];
                    for ow in ow_lo..ow_hi {
                        row[ow * s + j - pad] += srow[ow];
                    }
                }
                kk += 1;
            }
        }
    }
}

pub fn conv2d_backward_weight(pool: &Pool, p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (g, n, c_out) = (geometry(p), p.n as usize, p.c_out as usize);
    let x = &c[p.x_off as usize..][..n * g.x_plane];
    let dw = &mut out[p.w_off as usize..p.w_off as usize + c_out * g.k];
    let epi = Epilogue { accumulate: p.accumulate != 0, ..Epilogue::PLAIN };
    let pack = |j0: usize, dst: &mut [f32]| g.pack_rows(x, j0, dst);
    with_scratch(&DY, c_out * g.np, |dy| {
        to_channel_major(pool, &a[p.y_off as usize..][..n * c_out * g.p], n, c_out, g.p, dy);
        // dw (c_out, K) (+)= dy (c_out, n P) cols^T (n P, K).
        let dy = Mat::new(dy, 0, g.np, 1);
        gemm(pool, c_out, g.k, g.np, dy, BSrc::Pack(&pack), Out { data: dw, rs: g.k, col_off: None }, epi);
    });
}

/// The bias gradient has no fast path: its fixed-order sums are cheap next to the convolutions.
pub fn conv2d_backward_bias(p: &ConvParams, a: &[f32], out: &mut [f32]) {
    twin::conv2d_backward_bias(p, a, out)
}
