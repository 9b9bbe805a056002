//! The micro-kernels: an MR x NR tile of sums over k, with AVX-512, AVX2 or portable code (the
//! same chains of fused multiply-adds, so the same bits).

use super::*;

/// acc = sum over kk < k of the packed panels' outer products, each element one FMA chain.
/// (k, packed A panel, B panel, B's row stride: NR packed, or a row-major B's own, acc).
pub(super) type Kernel = unsafe fn(usize, *const f32, *const f32, usize, &mut [[f32; NR]; MR]);

/// A kernel that continues the sums already in acc (the same chains, carried through memory
/// from one block of k to the next): (k, packed A panel, B panel, B's row stride, acc).
pub(super) type KernelAcc = unsafe fn(usize, *const f32, *const f32, usize, &mut [[f32; NR]; MR]);

/// The continuing kernel for an ISA without the fused AVX-512 path.
pub(super) fn kernel_acc_for(isa: Isa) -> KernelAcc {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => kernel_avx2_acc,
        _ => kernel_portable_acc,
    }
}

pub(super) fn kernel_for(isa: Isa) -> Kernel {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => kernel_avx512,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => kernel_avx2,
        _ => kernel_portable,
    }
}

/// One k step of the AVX-512 kernels: c[i] += a[i] (b0, b1) for the tile's MR rows, a a packed
/// column of A. A macro, so that every kernel's loop keeps it inline.
macro_rules! rank1_avx512 {
    ($c:expr, $a:expr, $b0:expr, $b1:expr) => {{
        let a = $a;
        for (i, ci) in $c.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*a.add(i));
            ci[0] = _mm512_fmadd_ps(ai, $b0, ci[0]);
            ci[1] = _mm512_fmadd_ps(ai, $b1, ci[1]);
        }
    }};
}
pub(super) use rank1_avx512;

/// SAFETY (all kernels): pa holds k MR floats and pb k NR floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn kernel_avx512(k: usize, pa: *const f32, pb: *const f32, ldb: usize, acc: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    let mut c = [[_mm512_setzero_ps(); 2]; MR];
    for kk in 0..k {
        let b0 = _mm512_loadu_ps(pb.add(kk * ldb));
        let b1 = _mm512_loadu_ps(pb.add(kk * ldb + 16));
        rank1_avx512!(c, pa.add(kk * MR), b0, b1);
    }
    for (row, ci) in acc.iter_mut().zip(&c) {
        _mm512_storeu_ps(row.as_mut_ptr(), ci[0]);
        _mm512_storeu_ps(row.as_mut_ptr().add(16), ci[1]);
    }
}

/// The AVX-512 kernel storing its tile (rows x cols of it) into C at `c` (row stride ldc)
/// through the epilogue: v = sum (+ bias), old + v if accumulating, then ReLU or leaky ReLU
/// (sigmoid and tanh are applied by the caller afterwards): `store_full_row`'s operations.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kernel_avx512_fused(
    k: usize,
    pa: *const f32,
    pb: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    i0: usize,
    j0: usize,
    epi: &Epilogue,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for kk in 0..k {
        let b0 = _mm512_loadu_ps(pb.add(kk * ldb));
        let b1 = _mm512_loadu_ps(pb.add(kk * ldb + 16));
        rank1_avx512!(acc, pa.add(kk * MR), b0, b1);
    }
    let mask = |h: usize| -> __mmask16 {
        let n = cols.saturating_sub(16 * h).min(16);
        if n == 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    };
    let masks = [mask(0), mask(1)];
    let zero = _mm512_setzero_ps();
    let slope = _mm512_set1_ps(epi.slope);
    for (i, ci) in acc.iter().enumerate().take(rows) {
        let row = c.add(i * ldc);
        for h in 0..2 {
            let mk = masks[h];
            if mk == 0 {
                continue;
            }
            let mut v = ci[h];
            match epi.bias {
                Bias::None => {}
                Bias::Col(b) => v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, b.as_ptr().add(j0 + 16 * h))),
                Bias::Row(b) => v = _mm512_add_ps(v, _mm512_set1_ps(b[i0 + i])),
            }
            if epi.accumulate {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, row.add(16 * h)));
            }
            v = match epi.act {
                1 => _mm512_max_ps(v, zero),
                2 => {
                    let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, zero);
                    _mm512_mask_blend_ps(pos, _mm512_mul_ps(v, slope), v)
                }
                _ => v,
            };
            _mm512_mask_storeu_ps(row.add(16 * h), mk, v);
        }
    }
}

/// AVX2: the MR x NR tile as four 4 x 16 quarters (16 registers), each the same FMA chains.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn kernel_avx2(k: usize, pa: *const f32, pb: *const f32, ldb: usize, acc: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    for i0 in [0, 4] {
        for j0 in [0, 16] {
            let mut c = [[_mm256_setzero_ps(); 2]; 4];
            for kk in 0..k {
                let b0 = _mm256_loadu_ps(pb.add(kk * ldb + j0));
                let b1 = _mm256_loadu_ps(pb.add(kk * ldb + j0 + 8));
                let a = pa.add(kk * MR + i0);
                for (i, ci) in c.iter_mut().enumerate() {
                    let ai = _mm256_set1_ps(*a.add(i));
                    ci[0] = _mm256_fmadd_ps(ai, b0, ci[0]);
                    ci[1] = _mm256_fmadd_ps(ai, b1, ci[1]);
                }
            }
            for (i, ci) in c.iter().enumerate() {
                _mm256_storeu_ps(acc[i0 + i].as_mut_ptr().add(j0), ci[0]);
                _mm256_storeu_ps(acc[i0 + i].as_mut_ptr().add(j0 + 8), ci[1]);
            }
        }
    }
}

/// `kernel_avx2` continuing the sums in acc, the tile cut as BLIS's Zen kernels cut theirs:
/// rows 0..6 by two halves of 16 columns (12 accumulators, 2 loads of B and 6 broadcasts per
/// 12 FMAs: more chains in flight than the 8 of a 4 x 16 quarter), then rows 6..8 by all 32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn kernel_avx2_acc(k: usize, pa: *const f32, pb: *const f32, ldb: usize, acc: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    for j0 in [0, 16] {
        let mut c = [[_mm256_setzero_ps(); 2]; 6];
        for (i, ci) in c.iter_mut().enumerate() {
            ci[0] = _mm256_loadu_ps(acc[i].as_ptr().add(j0));
            ci[1] = _mm256_loadu_ps(acc[i].as_ptr().add(j0 + 8));
        }
        for kk in 0..k {
            let b0 = _mm256_loadu_ps(pb.add(kk * ldb + j0));
            let b1 = _mm256_loadu_ps(pb.add(kk * ldb + j0 + 8));
            let a = pa.add(kk * MR);
            for (i, ci) in c.iter_mut().enumerate() {
                let ai = _mm256_set1_ps(*a.add(i));
                ci[0] = _mm256_fmadd_ps(ai, b0, ci[0]);
                ci[1] = _mm256_fmadd_ps(ai, b1, ci[1]);
            }
        }
        for (i, ci) in c.iter().enumerate() {
            _mm256_storeu_ps(acc[i].as_mut_ptr().add(j0), ci[0]);
            _mm256_storeu_ps(acc[i].as_mut_ptr().add(j0 + 8), ci[1]);
        }
    }
    let mut c = [[_mm256_setzero_ps(); 4]; 2];
    for (i, ci) in c.iter_mut().enumerate() {
        for (h, v) in ci.iter_mut().enumerate() {
            *v = _mm256_loadu_ps(acc[6 + i].as_ptr().add(8 * h));
        }
    }
    for kk in 0..k {
        let b = pb.add(kk * ldb);
        let bs =
            [_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)), _mm256_loadu_ps(b.add(16)), _mm256_loadu_ps(b.add(24))];
        let a = pa.add(kk * MR + 6);
        for (i, ci) in c.iter_mut().enumerate() {
            let ai = _mm256_set1_ps(*a.add(i));
            for (v, &bh) in ci.iter_mut().zip(&bs) {
                *v = _mm256_fmadd_ps(ai, bh, *v);
            }
        }
    }
    for (i, ci) in c.iter().enumerate() {
        for (h, v) in ci.iter().enumerate() {
            _mm256_storeu_ps(acc[6 + i].as_mut_ptr().add(8 * h), *v);
        }
    }
}

/// `kernel_portable` continuing the sums in acc.
pub(super) unsafe fn kernel_portable_acc(
    k: usize,
    pa: *const f32,
    pb: *const f32,
    ldb: usize,
    acc: &mut [[f32; NR]; MR],
) {
    for kk in 0..k {
        let a = std::slice::from_raw_parts(pa.add(kk * MR), MR);
        let b = std::slice::from_raw_parts(pb.add(kk * ldb), NR);
        for (row, &ai) in acc.iter_mut().zip(a) {
            for (c, &bj) in row.iter_mut().zip(b) {
                *c = fma(ai, bj, *c);
            }
        }
    }
}

pub(super) unsafe fn kernel_portable(k: usize, pa: *const f32, pb: *const f32, ldb: usize, acc: &mut [[f32; NR]; MR]) {
    *acc = [[0.0; NR]; MR];
    for kk in 0..k {
        let a = std::slice::from_raw_parts(pa.add(kk * MR), MR);
        let b = std::slice::from_raw_parts(pb.add(kk * ldb), NR);
        for (row, &ai) in acc.iter_mut().zip(a) {
            for (c, &bj) in row.iter_mut().zip(b) {
                *c = fma(ai, bj, *c);
            }
        }
    }
}
