//! The CPU backend's fast convolutions: the twins' contracts (`twin.rs`) as GEMMs on the pool's
//! sgemm (`kernels::gemm`), the im2col taps packed straight into its panels (no column matrix
//! for the forward pass and the weight gradient). Another summation order than the twins', so
//! results differ from them in the last bits (tests/cpu_fast.rs checks them against the twins),
//! but fixed by the shape: the same bits for any thread count.
//!
//! With K = c_in kh kw, P = h_out w_out and the whole batch side by side (column b P + q is
//! output position q of image b):
//!   forward          y (c_out, n P)  = w (c_out, K) cols (K, n P) (+ bias per row), stored
//!                    straight into NCHW through column offsets
//!   backward_input   one GEMM per output phase (the positions of dx that the same taps
//!                    reach): dx_phase (c_in, n T T') = w_phase (c_in, taps c_out) dy_taps
//!                    (taps c_out, n T T'), dy's taps packed into B panels as runs of its rows
//!                    (stride 1 within a phase), stored into NCHW dx through column offsets;
//!                    with fewer than 8 input channels, cols (K, n P) = w^T dy, then col2im
//!                    adds each image's taps into dx (a task per image)
//!   backward_weight  dw (c_out, K)  (+)= dy (c_out, n P) cols^T (n P, K)
//! where cols[(ci, i, j), (b, oh, ow)] = x[b, ci, oh s - pad + i, ow s - pad + j], 0 in padding.

use std::cell::RefCell;

use super::twin;
use super::ConvParams;
use crate::ir::Pool;
use crate::kernels::gemm::{gemm, gemm_a, transpose, ASrc, BSrc, Bias, Epilogue, Mat, Out, NR};
use crate::kernels::scratch::HighWater;

/// No source (a tap in the padding).
const NONE: usize = usize::MAX;

thread_local! {
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static XCL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PLANE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static OFFS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    static TAPS: RefCell<Vec<[usize; NR]>> = const { RefCell::new(Vec::new()) };
    static PHASE: RefCell<PhaseScratch> = const { RefCell::new(PhaseScratch::new()) };
}

// Each scratch's high-water mark over every thread (kernels::scratch).
static COLS_MARK: HighWater = HighWater::new();
static XCL_MARK: HighWater = HighWater::new();
static PLANE_MARK: HighWater = HighWater::new();
static OFFS_MARK: HighWater = HighWater::new();
static TAPS_MARK: HighWater = HighWater::new();
/// The most taps (kh x kw) `pack_cols` keeps on the stack.
const STACK_TAPS: usize = 25;
/// PhaseScratch's: col_off, wph.
static PHASE_MARKS: [HighWater; 2] = [const { HighWater::new() }; 2];

/// The column offsets and weights of one output phase of `conv2d_backward_input`, kept per
/// thread so that a training step allocates nothing once the first has run.
struct PhaseScratch {
    col_off: Vec<usize>,
    wph: Vec<f32>,
}

impl PhaseScratch {
    const fn new() -> Self {
        PhaseScratch { col_off: vec![], wph: vec![] }
    }
}

/// A thread-local scratch vector of at least `len` (contents unspecified).
fn with_scratch<T: Copy + Default, R>(
    (key, mark): (&'static std::thread::LocalKey<RefCell<Vec<T>>>, &HighWater),
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    key.with(|cell| f(mark.at_least(&mut cell.borrow_mut(), len, T::default())))
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
    /// (image offset in x, top row, left column) of output columns col0, col0 + 1, ... (b P +
    /// q, padded): counters stepped along, no divisions per column.
    fn origins(&self, col0: usize) -> impl Iterator<Item = (usize, isize, isize)> + '_ {
        let (mut b, q) = (col0 / self.p, col0 % self.p);
        let (mut oh, mut ow) = (q / self.w_out, q % self.w_out);
        let h_out = self.p / self.w_out;
        std::iter::from_fn(move || {
            let o = (
                b * self.x_plane,
                (oh * self.stride) as isize - self.pad as isize,
                (ow * self.stride) as isize - self.pad as isize,
            );
            ow += 1;
            if ow == self.w_out {
                (ow, oh) = (0, oh + 1);
                if oh == h_out {
                    (oh, b) = (0, b + 1);
                }
            }
            Some(o)
        })
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
        // On the stack for kernels up to 5 x 5: a pool thread that first packs a panel late in
        // a run (after stealing one) then allocates nothing.
        let taps = self.kh * self.kw;
        if taps <= STACK_TAPS {
            let mut src = [[NONE; NR]; STACK_TAPS];
            return self.pack_cols_with(x, j0, &mut src[..taps], dst);
        }
        TAPS.with(|cell| {
            let mut held = cell.borrow_mut();
            let src = TAPS_MARK.at_least(&mut held, self.kh * self.kw, [NONE; NR]);
            self.pack_cols_with(x, j0, src, dst);
        });
    }

    /// `pack_cols` with `src` (a row of NR per tap (i, j)) set to, per tap and column, the
    /// offset in x of channel 0's value, or NONE (padding, or a column past the end).
    fn pack_cols_with(&self, x: &[f32], j0: usize, src: &mut [[usize; NR]], dst: &mut [f32]) {
        let cols = self.np.saturating_sub(j0).min(NR);
        let plane = self.h_in * self.w_in;
        let mut origins = self.origins(j0);
        #[allow(clippy::needless_range_loop)] // jj indexes the second dimension of src
        for jj in 0..NR {
            if jj >= cols {
                src.iter_mut().for_each(|t| t[jj] = NONE);
                continue;
            }
            let (img, top, left) = origins.next().expect("endless");
            for i in 0..self.kh {
                let ih = top + i as isize;
                let inside = ih >= 0 && ih < self.h_in as isize;
                for j in 0..self.kw {
                    let iw = left + j as isize;
                    src[i * self.kw + j][jj] = if inside && iw >= 0 && iw < self.w_in as isize {
                        img + ih as usize * self.w_in + iw as usize
                    } else {
                        NONE
                    };
                }
            }
        }
        let mut kk = 0;
        for ci in 0..self.k / src.len() {
            let xc = &x[ci * plane..];
            for offs in src.iter() {
                let out = &mut dst[kk * NR..(kk + 1) * NR];
                for (o, &off) in out.iter_mut().zip(offs) {
                    *o = if off == NONE { 0.0 } else { xc[off] };
                }
                kk += 1;
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
        let mut rel = [0usize; NR];
        for (r, &(ci, i, j)) in rel.iter_mut().zip(&tap).take(taps) {
            *r = (ci * self.h_in + i) * self.w_in + j;
        }
        let (h, w) = (self.h_in as isize, self.w_in as isize);
        let (kh, kw) = (self.kh as isize, self.kw as isize);
        for (col, o @ (img, top, left)) in self.origins(0).take(self.np).enumerate() {
            let row = &mut dst[col * NR..col * NR + taps];
            if top >= 0 && left >= 0 && top + kh <= h && left + kw <= w {
                // Every tap inside the image: no checks.
                let base = img + top as usize * self.w_in + left as usize;
                for (v, &r) in row.iter_mut().zip(&rel) {
                    *v = x[base + r];
                }
            } else {
                for (v, &(ci, i, j)) in row.iter_mut().zip(&tap) {
                    *v = self.tap(x, o, ci, i, j);
                }
            }
        }
    }
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
    with_scratch((&OFFS, &OFFS_MARK), g.np, |offs| {
        nchw_offsets(n, c_out, g.p, offs);
        gemm(pool, c_out, g.np, g.k, w, BSrc::Pack(&pack), Out { data: y, rs: g.p, col_off: Some(offs) }, epi);
    });
}

pub fn conv2d_backward_input(pool: &Pool, p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let taps = p.kh.div_ceil(p.stride) * p.kw.div_ceil(p.stride);
    if (p.c_in as usize) < crate::kernels::gemm::MR || taps > 16 {
        // Too few rows for the phase GEMMs (or too many taps per phase): one GEMM into a column
        // matrix, then col2im.
        return backward_input_cols(pool, p, a, c, out);
    }
    let g = geometry(p);
    let dy = &a[p.y_off as usize..][..p.n as usize * p.c_out as usize * g.p];
    let dx = &mut out[p.x_off as usize..][..p.n as usize * g.x_plane];
    // Output phase (ph, pw): the positions with (ih + pad) % s = ph (and likewise for iw),
    // which only the taps i = ph + s u (j = pw + s v) reach, from dy at (t - u, t' - v),
    // where ih = s t + ph - pad. Each phase is one GEMM, k ordered (u, v, co):
    //   dx_phase (c_in, n T T') = w_phase (c_in, U V c_out) dy_taps (U V c_out, n T T'),
    // dy's taps packed straight from NCHW into the B panels (runs of a row), the product
    // stored into NCHW dx through column offsets and the epilogue (bias, accumulate). Every
    // position of dx is in exactly one phase.
    for ph in 0..g.stride {
        for pw in 0..g.stride {
            backward_input_phase(pool, p, &g, dy, c, (ph, pw), dx);
        }
    }
}

/// One output phase's GEMM of [`conv2d_backward_input`]: its weights (A), dy's taps packed
/// into B panels per task, the product stored into its positions of dx.
fn backward_input_phase(
    pool: &Pool,
    p: &ConvParams,
    g: &Geometry,
    dy: &[f32],
    c: &[f32],
    (ph, pw): (usize, usize),
    dx: &mut [f32],
) {
    let (n, c_in, c_out, s) = (p.n as usize, p.c_in as usize, p.c_out as usize, g.stride);
    let (th_lo, th_n) = phase_positions(ph, g.pad, s, g.h_in);
    let (tw_lo, tw_n) = phase_positions(pw, g.pad, s, g.w_in);
    if th_n == 0 || tw_n == 0 {
        return;
    }
    // Tap i = ph + s u for u < nu, j = pw + s v for v < nv.
    let (nu, nv) = (g.kh.saturating_sub(ph).div_ceil(s), g.kw.saturating_sub(pw).div_ceil(s));
    let kt = nu * nv * c_out;
    let cols = n * th_n * tw_n;
    let (h_out, w_out) = (g.p / g.w_out, g.w_out);
    let plane = g.h_in * g.w_in;
    PHASE.with(|cell| {
        let scratch = &mut *cell.borrow_mut();
        // Column (b, th, tw) of the phase goes to dx[b, ., s th + ph - pad, s tw + pw - pad].
        let col_off = PHASE_MARKS[0].emptied(&mut scratch.col_off, cols);
        for b in 0..n {
            for th in th_lo..th_lo + th_n {
                for tw in tw_lo..tw_lo + tw_n {
                    let (ih, iw) = (s * th + ph - g.pad, s * tw + pw - g.pad);
                    col_off.push(b * c_in * plane + ih * g.w_in + iw);
                }
            }
        }
        // w_phase (ci, (u, v, co)) = w[co, ci, ph + s u, pw + s v], stored k-major (a row of
        // c_in per k), which packs into A's panels by plain copies.
        let wph = PHASE_MARKS[1].refill(&mut scratch.wph, kt.max(1) * c_in, 0.0);
        for (uv, (u, v)) in (0..nu).flat_map(|u| (0..nv).map(move |v| (u, v))).enumerate() {
            let (i, j) = (ph + s * u, pw + s * v);
            for co in 0..c_out {
                let row = &mut wph[(uv * c_out + co) * c_in..][..c_in];
                for (ci, o) in row.iter_mut().enumerate() {
                    *o = c[p.w_off as usize + ((co * c_in + ci) * g.kh + i) * g.kw + j];
                }
            }
        }
        let wm = Mat::new(wph, 0, 1, c_in);
        // B panel of columns j0..j0 + NR: dst[((u nv + v) c_out + co) NR + jj] = dy[b, co, th
        // - u, tw - v] (0 outside dy), the columns cut into runs of one (b, th) row.
        let pack = |j0: usize, dst: &mut [f32]| {
            let live = cols.saturating_sub(j0).min(NR);
            let mut jj = 0;
            while jj < live {
                let (bt, tw_i) = ((j0 + jj) / tw_n, (j0 + jj) % tw_n);
                let (b, th) = (bt / th_n, th_lo + bt % th_n);
                let run = (tw_n - tw_i).min(live - jj);
                let tw0 = tw_lo + tw_i;
                for u in 0..nu {
                    for v in 0..nv {
                        // dy columns tw0 - v .. + run, those inside [0, w_out) at lo..hi.
                        let lo = v.saturating_sub(tw0).min(run);
                        let hi = (w_out + v).saturating_sub(tw0).min(run).max(lo);
                        let row_in = th >= u && th - u < h_out;
                        for co in 0..c_out {
                            let kk = (u * nv + v) * c_out + co;
                            let d = &mut dst[kk * NR + jj..][..run];
                            if !row_in {
                                d.fill(0.0);
                                continue;
                            }
                            let src = &dy[((b * c_out + co) * h_out + th - u) * w_out..][..w_out];
                            d[..lo].fill(0.0);
                            d[lo..hi].copy_from_slice(&src[tw0 + lo - v..tw0 + hi - v]);
                            d[hi..].fill(0.0);
                        }
                    }
                }
                jj += run;
            }
            if live < NR {
                for row in dst[..kt * NR].chunks_exact_mut(NR) {
                    row[live..].fill(0.0);
                }
            }
        };
        let bias = (p.has_bias != 0).then(|| Bias::Row(&c[p.bias_off as usize..][..c_in]));
        let epi = Epilogue { bias: bias.unwrap_or(Bias::None), accumulate: p.accumulate != 0, act: 0, slope: 0.0 };
        let o = Out { data: dx, rs: plane, col_off: Some(col_off) };
        gemm(pool, c_in, cols, kt, wm, BSrc::Pack(&pack), o, epi);
    });
}

/// dyp (n, hpad, wpad, c) = dy (n, c, h, w) channels last, with `pad_lo` zero rows and columns
/// before each image's h x w and zeros after (planes of pp = hpad wpad positions): a task per
/// image. Channels last, the weight gradient reads each tap's channels as consecutive values.
fn pad_channels_last(
    pool: &Pool,
    dy: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    (pad_lo, wpad, pp): (usize, usize, usize),
    dyp: &mut [f32],
) {
    let ptr = dyp.as_mut_ptr() as usize;
    pool.run(n, &|b| {
        // SAFETY: image b of dyp (pp c values), written by this task only.
        let img = unsafe { std::slice::from_raw_parts_mut((ptr as *mut f32).add(b * pp * c), pp * c) };
        // Zeros where nothing is copied: the rows above and below, the columns either side.
        let (top, bottom) = (pad_lo * wpad * c, (pad_lo + h) * wpad * c);
        img[..top].fill(0.0);
        img[bottom..].fill(0.0);
        for row in img[top..bottom].chunks_exact_mut(wpad * c) {
            row[..pad_lo * c].fill(0.0);
            row[(pad_lo + w) * c..].fill(0.0);
        }
        let src = &dy[b * c * h * w..][..c * h * w];
        with_scratch((&PLANE, &PLANE_MARK), h * w * c, |tmp| {
            // (c, h w) -> (h w, c), then each row of w positions into its place.
            transpose(src, h * w, tmp, c, c, h * w);
            for oh in 0..h {
                let at = ((oh + pad_lo) * wpad + pad_lo) * c;
                img[at..at + w * c].copy_from_slice(&tmp[oh * w * c..][..w * c]);
            }
        });
    });
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
    // B (c_out, n P) = dy (n, c_out, P): a panel's columns within one image are a run of each
    // channel's plane.
    let pack = |j0: usize, dst: &mut [f32]| {
        let cols = g.np.saturating_sub(j0).min(NR);
        if cols < NR {
            dst.iter_mut().for_each(|v| *v = 0.0);
        }
        let mut jj = 0;
        while jj < cols {
            let (b, q) = ((j0 + jj) / g.p, (j0 + jj) % g.p);
            let run = (g.p - q).min(cols - jj);
            let src = &dy[b * c_out * g.p + q..];
            for co in 0..c_out {
                dst[co * NR + jj..co * NR + jj + run].copy_from_slice(&src[co * g.p..co * g.p + run]);
            }
            jj += run;
        }
    };
    let bias = (p.has_bias != 0).then(|| &c[p.bias_off as usize..][..c_in]);
    let dx = &mut out[p.x_off as usize..][..n * g.x_plane];
    with_scratch((&COLS, &COLS_MARK), g.k * g.np, |cols| {
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
            with_scratch((&PLANE, &PLANE_MARK), g.x_plane, |acc| {
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
    let dy = &a[p.y_off as usize..][..n * c_out * g.p];
    let dw = &mut out[p.w_off as usize..p.w_off as usize + c_out * g.k];
    let epi = Epilogue { accumulate: p.accumulate != 0, ..Epilogue::PLAIN };
    let c_in = p.c_in as usize;
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::gemm::isa() == crate::kernels::gemm::Isa::Avx512
        && c_in.is_multiple_of(NR)
        && !splits_k(c_out, g.k, g.np)
    {
        return backward_weight_channels_last(pool, &g, (n, c_in, c_out), x, dy, dw, epi);
    }
    // dw (c_out, K) (+)= dy (c_out, n P) cols^T (n P, K).
    let pack = |j0: usize, dst: &mut [f32]| g.pack_rows(x, j0, dst);
    let pack_a = |i0: usize, dst: &mut [f32]| pack_dy_rows(dy, (n, c_out, g.p), i0, dst);
    let o = Out { data: dw, rs: g.k, col_off: None };
    gemm_a(pool, c_out, g.k, g.np, ASrc::Pack(&pack_a), BSrc::Pack(&pack), o, epi);
}

/// The packed A panel of channels i0..i0 + MR of dy (n, c, P) read as (c, n P): dst[(b P + q)
/// MR + ii] = dy[b, i0 + ii, q], 0 past c.
fn pack_dy_rows(dy: &[f32], (n, c, pp): (usize, usize, usize), i0: usize, dst: &mut [f32]) {
    use crate::kernels::gemm::MR;
    const Q: usize = 16;
    let rows = (c - i0).min(MR);
    for b in 0..n {
        let out = &mut dst[b * pp * MR..][..pp * MR];
        let src = |ii: usize| &dy[(b * c + i0 + ii) * pp..][..pp];
        // Blocks of Q positions through a fixed-size tile, which the compiler keeps in registers.
        let full = pp / Q * Q;
        for q0 in (0..full).step_by(Q) {
            let mut t = [[0f32; Q]; MR];
            for (ii, row) in t.iter_mut().enumerate().take(rows) {
                row.copy_from_slice(&src(ii)[q0..q0 + Q]);
            }
            let o: &mut [f32; Q * MR] = (&mut out[q0 * MR..(q0 + Q) * MR]).try_into().expect("a block");
            for qq in 0..Q {
                for ii in 0..MR {
                    o[qq * MR + ii] = t[ii][qq];
                }
            }
        }
        for q in full..pp {
            for ii in 0..MR {
                out[q * MR + ii] = if ii < rows { src(ii)[q] } else { 0.0 };
            }
        }
    }
}

/// Whether `gemm` would cut k into chunks for this weight gradient (its bits then differ).
fn splits_k(c_out: usize, k_taps: usize, np: usize) -> bool {
    use crate::kernels::gemm::{K_CHUNK, MR};
    c_out.div_ceil(MR) * k_taps.div_ceil(NR) < 4 && np >= 4 * K_CHUNK
}

/// `conv2d_backward_weight` for c_in a multiple of NR, without im2col: x copied channels last
/// and padded, so that for one tap (i, j) the NR channels of a B panel at output position
/// (b, oh, ow) are NR consecutive values, read in place (`gemm_gather_b`). The panels run over
/// (tap, channel block) and their columns are stored to dw's (ci, i, j) through column
/// offsets; k runs over (b, oh, ow) as in the im2col path, so the bits are the same.
#[cfg(target_arch = "x86_64")]
fn backward_weight_channels_last(
    pool: &Pool,
    g: &Geometry,
    (n, c_in, c_out): (usize, usize, usize),
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    epi: Epilogue,
) {
    use crate::kernels::gemm::{gemm_gather_b, GatherB};
    let (s, h_out) = (g.stride, g.p / g.w_out);
    let hp = (s * (h_out - 1) + g.kh).max(g.h_in + g.pad);
    let wp = (s * (g.w_out - 1) + g.kw).max(g.w_in + g.pad);
    let (taps, blocks) = (g.kh * g.kw, c_in / NR);
    with_scratch((&XCL, &XCL_MARK), n * hp * wp * c_in, |xcl| {
        pad_channels_last(pool, x, (n, c_in, g.h_in, g.w_in), (g.pad, wp, hp * wp), xcl);
        with_scratch((&OFFS, &OFFS_MARK), g.np + g.k + taps * blocks, |offs| {
            let (row_off, rest) = offs.split_at_mut(g.np);
            let (col_off, panel_off) = rest.split_at_mut(g.k);
            for (kk, r) in row_off.iter_mut().enumerate() {
                let (b, q) = (kk / g.p, kk % g.p);
                let (oh, ow) = (q / g.w_out, q % g.w_out);
                *r = ((b * hp + s * oh) * wp + s * ow) * c_in;
            }
            // Panel (tap, block): column jj is channel block NR + jj at that tap.
            for tap in 0..taps {
                let (i, j) = (tap / g.kw, tap % g.kw);
                for block in 0..blocks {
                    panel_off[tap * blocks + block] = (i * wp + j) * c_in + block * NR;
                    for jj in 0..NR {
                        col_off[(tap * blocks + block) * NR + jj] = (block * NR + jj) * taps + tap;
                    }
                }
            }
            let pack_a = |i0: usize, dst: &mut [f32]| pack_dy_rows(dy, (n, c_out, g.p), i0, dst);
            let gb = GatherB { data: xcl, row_off, panel_off };
            let o = Out { data: dw, rs: g.k, col_off: Some(col_off) };
            gemm_gather_b(pool, c_out, g.k, g.np, &pack_a, gb, o, epi);
        });
    });
}

/// The bias gradient has no fast path: its fixed-order sums are cheap next to the convolutions.
pub fn conv2d_backward_bias(p: &ConvParams, a: &[f32], out: &mut [f32]) {
    twin::conv2d_backward_bias(p, a, out)
}
