//! GEMMs that read an operand in place through offsets (implicit GEMMs for the convolutions):
//! A by rows of segments (`gemm_gather`), B by rows (`gemm_gather_b`).

use super::*;

/// A B read in place row by row: B(kk, q NR + jj) = data[row_off[kk] + panel_off[q] + jj], so
/// each row of a panel is NR consecutive values somewhere in `data` (a convolution's
/// channels-last input at one tap: no im2col copy).
#[derive(Clone, Copy)]
pub struct GatherB<'a> {
    pub data: &'a [f32],
    pub row_off: &'a [usize],
    pub panel_off: &'a [usize],
}

/// C = epilogue(A B) with A packed by `pack_a` and B read in place through `b` (n a multiple of
/// NR), with the AVX-512 kernel: the same chains of fused multiply-adds as `gemm` (each element
/// one chain over k in order), so the same bits. One band of rows per thread; nothing is packed
/// but each task's own rows of A. The CPU must have AVX-512F (callers check `isa()`).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub fn gemm_gather_b(pool: &Pool, m: usize, n: usize, k: usize, pack_a: PackAFn, b: GatherB, out: Out, epi: Epilogue) {
    // The CPU's, not the forced kernel (tests force others while this runs).
    assert!(std::is_x86_feature_detected!("avx512f"), "gemm_gather_b: AVX-512 only");
    assert!(n.is_multiple_of(NR) && b.panel_off.len() >= n / NR && b.row_off.len() >= k, "gemm_gather_b: B's offsets");
    if m == 0 || n == 0 || k == 0 {
        assert!(k > 0 || m == 0 || n == 0, "gemm_gather_b: k = 0");
        return;
    }
    let reach = b.row_off[..k].iter().max().copied().unwrap_or(0) + b.panel_off.iter().max().copied().unwrap_or(0) + NR;
    assert!(reach <= b.data.len(), "gemm_gather_b: B reaches {reach} of {}", b.data.len());
    let col_off = out.col_off;
    let max_col = col_off.map_or(n - 1, |c| c[..n].iter().copied().max().unwrap_or(0));
    assert!((m - 1) * out.rs + max_col < out.data.len(), "gemm_gather_b: the output is too short");
    if let Bias::Col(bias) = epi.bias {
        assert!(bias.len() >= n);
    }
    if let Bias::Row(bias) = epi.bias {
        assert!(bias.len() >= m);
    }
    let o = OutPtr { ptr: out.data.as_mut_ptr(), rs: out.rs };
    let mp = m.div_ceil(MR);
    let tasks = mp.min(pool.threads().max(1));
    pool.run(tasks, &|t| {
        let ps = t * mp / tasks..(t + 1) * mp / tasks;
        TASK_PACK.with(|cell| {
            let mut pa = cell.borrow_mut();
            let pa = TASK_PACK_MARK.at_least(&mut pa, ps.len() * MR * k, 0.0);
            for (p, dst) in ps.clone().zip(pa.chunks_mut(MR * k)) {
                pack_a(p * MR, dst);
            }
            // k in blocks of KC, each tile's sum carried from block to block in `acc` (the
            // same chain of fused multiply-adds, paused): a block's A panels and B rows stay
            // in cache across the tiles.
            let (np, rows) = (n / NR, ps.len());
            ACC.with(|cell| {
                let mut acc = cell.borrow_mut();
                let acc = ACC_MARK.refill(&mut acc, rows * np, [[0f32; NR]; MR]);
                for k0 in (0..k).step_by(KC) {
                    let kc = (k - k0).min(KC);
                    for q in 0..np {
                        // SAFETY: every row of panel q lies inside b.data (checked above).
                        let bq = unsafe { b.data.as_ptr().add(b.panel_off[q]) };
                        for r in 0..rows {
                            // SAFETY: AVX-512F (asserted); panel r of pa holds k MR values.
                            unsafe {
                                let a = pa.as_ptr().add(r * MR * k + k0 * MR);
                                kernel_avx512_rows(kc, a, bq, &b.row_off[k0..k0 + kc], &mut acc[q * rows + r]);
                            }
                        }
                    }
                }
                for q in 0..np {
                    for (r, p) in ps.clone().enumerate() {
                        store_tile(&acc[q * rows + r], p * MR, q * NR, m, n, o, col_off, &epi);
                    }
                }
            });
        });
    });
}

/// The k block of `gemm_gather_b`.
const KC: usize = 256;

thread_local! {
    /// `gemm_gather_b`'s tiles in progress.
    static ACC: RefCell<Vec<[[f32; NR]; MR]>> = const { RefCell::new(Vec::new()) };
}

static ACC_MARK: HighWater = HighWater::new();

/// The AVX-512 micro-kernel with row kk of B at b + row_off[kk], adding to the sums in acc.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_avx512_rows(k: usize, pa: *const f32, b: *const f32, row_off: &[usize], acc: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    let mut c = acc.map(|row| [_mm512_loadu_ps(row.as_ptr()), _mm512_loadu_ps(row.as_ptr().add(16))]);
    for (kk, &off) in row_off[..k].iter().enumerate() {
        let b0 = _mm512_loadu_ps(b.add(off));
        let b1 = _mm512_loadu_ps(b.add(off + 16));
        rank1_avx512!(c, pa.add(kk * MR), b0, b1);
    }
    for (row, ci) in acc.iter_mut().zip(&c) {
        _mm512_storeu_ps(row.as_mut_ptr(), ci[0]);
        _mm512_storeu_ps(row.as_mut_ptr().add(16), ci[1]);
    }
}

/// A read straight from memory (an implicit GEMM: no packed copy of A): row i of A, over k, is
/// `segs` segments of `seg_len` values each, value kk of segment s at
/// data[row_base[i] + seg_shift[s] + kk stride]. (A convolution's taps: a segment per tap, its
/// values the channels.)
#[derive(Clone, Copy)]
pub struct GatherA<'a> {
    pub data: &'a [f32],
    pub row_base: &'a [usize],
    pub seg_shift: &'a [usize],
    pub seg_len: usize,
    pub stride: usize,
}

/// Where the implicit GEMM's output goes: element (i, j) at row_off[i] + j cs.
pub struct ScatterOut<'a> {
    pub data: &'a mut [f32],
    pub row_off: &'a [usize],
    pub cs: usize,
}

/// C (m x n) = epilogue(A B) with A read through `a` (see [`GatherA`]) and B (k x n, k =
/// segments x seg_len) packed as by [`gemm`]. Every element is one FMA chain over k in order
/// (segment by segment), whatever the kernel or the thread count.
pub fn gemm_gather(pool: &Pool, m: usize, n: usize, a: GatherA, b: BSrc, out: ScatterOut, epi: Epilogue) {
    let k = a.seg_shift.len() * a.seg_len;
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.row_base.len() >= m && out.row_off.len() >= m, "gemm_gather: a row offset per row");
    if k > 0 {
        let last = a.row_base[..m].iter().max().copied().unwrap_or(0)
            + a.seg_shift.iter().max().copied().unwrap_or(0)
            + (a.seg_len - 1) * a.stride;
        assert!(last < a.data.len(), "gemm_gather: A reaches {last} of {}", a.data.len());
    }
    let last_out = out.row_off[..m].iter().max().copied().unwrap_or(0) + (n - 1) * out.cs;
    assert!(last_out < out.data.len(), "gemm_gather: the output is too short");
    match epi.bias {
        Bias::Col(bias) => assert!(bias.len() >= n),
        Bias::Row(bias) => assert!(bias.len() >= m),
        Bias::None => {}
    }
    if let BSrc::Mat(bm) = &b {
        bm.check(k, n, "B");
    }
    let np = n.div_ceil(NR);
    let mp = m.div_ceil(MR);
    let o = OutPtr { ptr: out.data.as_mut_ptr(), rs: out.cs };
    let row_off = out.row_off;
    PACK.with(|cell| {
        let need = np * NR * k.max(1);
        let mut pack = cell.borrow_mut();
        let pb = PACK_MARK.at_least(&mut pack, need, 0.0);
        let pbp = OutPtr { ptr: pb.as_mut_ptr(), rs: 0 };
        let pack_q = |q: usize| {
            // SAFETY: panel q of the packed B buffer, written by this task only.
            let dst = unsafe { std::slice::from_raw_parts_mut(pbp.get().add(q * NR * k), NR * k) };
            match b {
                BSrc::Mat(bm) => pack_b(&bm, q * NR, n, k, dst),
                BSrc::Pack(f) => f(q * NR, dst),
            }
        };
        if np == 1 {
            pack_q(0);
        } else {
            pool.run(np, &pack_q);
        }
        let pb = ConstPtr(pb.as_ptr());
        let wide = isa() == Isa::Avx512;
        // Tasks of 4 row panels by every column panel.
        let rb = 4;
        pool.run(mp.div_ceil(rb), &|t| {
            for p in t * rb..((t + 1) * rb).min(mp) {
                let i0 = p * MR;
                let rows = (m - i0).min(MR);
                let mut base = [a.row_base[i0]; MR];
                base[..rows].copy_from_slice(&a.row_base[i0..i0 + rows]);
                for q in 0..np {
                    let mut acc = [[0f32; NR]; MR];
                    for (s, &shift) in a.seg_shift.iter().enumerate() {
                        let pbs = unsafe { pb.get().add(q * NR * k + s * a.seg_len * NR) };
                        let ptrs = base.map(|r| unsafe { a.data.as_ptr().add(r + shift) });
                        // SAFETY: every row's reads were checked against A's length above, and
                        // the packed B segment holds seg_len NR floats.
                        unsafe {
                            if wide {
                                #[cfg(target_arch = "x86_64")]
                                gather_kernel_avx512(a.seg_len, &ptrs, a.stride, pbs, &mut acc);
                            } else {
                                gather_kernel_portable(a.seg_len, &ptrs, a.stride, pbs, &mut acc);
                            }
                        }
                    }
                    store_scatter(&acc, i0, q * NR, m, n, o, row_off, &epi);
                }
            }
        });
    });
}

/// One tile through the epilogue into element (i, j) at row_off[i] + j cs.
#[allow(clippy::too_many_arguments)]
pub(super) fn store_scatter(
    acc: &[[f32; NR]; MR],
    i0: usize,
    j0: usize,
    m: usize,
    n: usize,
    o: OutPtr,
    row_off: &[usize],
    epi: &Epilogue,
) {
    let (rows, cols) = ((m - i0).min(MR), (n - j0).min(NR));
    if o.rs == 1 {
        // Each row's columns are consecutive: stored as a row-major tile.
        for (ii, row) in acc.iter().enumerate().take(rows) {
            // SAFETY: row i0 + ii's columns j0..j0 + cols (checked in `gemm_gather`), written by
            // this task only.
            let dst = unsafe { std::slice::from_raw_parts_mut(o.ptr.add(row_off[i0 + ii] + j0), cols) };
            store_row(&row[..cols], dst, i0 + ii, j0, epi);
        }
        return;
    }
    for (ii, row) in acc.iter().enumerate().take(rows) {
        let (i, base) = (i0 + ii, row_off[i0 + ii]);
        // SAFETY (the loads and stores below): element (i, j0 + jj) of the output, checked in
        // `gemm_gather`, written by this task only.
        if cols == NR {
            let mut tmp = [0f32; NR];
            if epi.accumulate {
                for (jj, t) in tmp.iter_mut().enumerate() {
                    *t = unsafe { *o.ptr.add(base + (j0 + jj) * o.rs) };
                }
            }
            store_full_row(row, &mut tmp, i, j0, epi);
            for (jj, &v) in tmp.iter().enumerate() {
                unsafe { *o.ptr.add(base + (j0 + jj) * o.rs) = v };
            }
        } else {
            for (jj, &v) in row.iter().enumerate().take(cols) {
                unsafe {
                    let p = o.ptr.add(base + (j0 + jj) * o.rs);
                    *p = epi.apply(v, i, j0 + jj, *p);
                }
            }
        }
    }
}

/// acc += sum over kk < len of A(i, kk) B(kk, :), A(i, kk) = *rows[i].add(kk stride).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_kernel_avx512(
    len: usize,
    rows: &[*const f32; MR],
    stride: usize,
    pb: *const f32,
    acc: &mut [[f32; NR]; MR],
) {
    use std::arch::x86_64::*;
    let mut c = [[_mm512_setzero_ps(); 2]; MR];
    for (ci, row) in c.iter_mut().zip(acc.iter()) {
        ci[0] = _mm512_loadu_ps(row.as_ptr());
        ci[1] = _mm512_loadu_ps(row.as_ptr().add(16));
    }
    let mut off = 0;
    for kk in 0..len {
        let b0 = _mm512_loadu_ps(pb.add(kk * NR));
        let b1 = _mm512_loadu_ps(pb.add(kk * NR + 16));
        for (ci, r) in c.iter_mut().zip(rows) {
            let ai = _mm512_set1_ps(*r.add(off));
            ci[0] = _mm512_fmadd_ps(ai, b0, ci[0]);
            ci[1] = _mm512_fmadd_ps(ai, b1, ci[1]);
        }
        off += stride;
    }
    for (row, ci) in acc.iter_mut().zip(&c) {
        _mm512_storeu_ps(row.as_mut_ptr(), ci[0]);
        _mm512_storeu_ps(row.as_mut_ptr().add(16), ci[1]);
    }
}

unsafe fn gather_kernel_portable(
    len: usize,
    rows: &[*const f32; MR],
    stride: usize,
    pb: *const f32,
    acc: &mut [[f32; NR]; MR],
) {
    for kk in 0..len {
        let b = std::slice::from_raw_parts(pb.add(kk * NR), NR);
        for (row, r) in acc.iter_mut().zip(rows) {
            let ai = *r.add(kk * stride);
            for (c, &bj) in row.iter_mut().zip(b) {
                *c = fma(ai, bj, *c);
            }
        }
    }
}
