//! Packing A and B into the micro-kernel's panels, and the blocked transpose.

use super::*;

/// Packs every A and B panel, in tasks of a few panels each.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_all(pool: &Pool, m: usize, n: usize, k: usize, a: &ASrc, b: &BSrc, pa: &mut [f32], pb: &mut [f32]) {
    let (mp, np, k1) = (m.div_ceil(MR), n.div_ceil(NR), k.max(1));
    // Panels per task: about 16k floats each.
    let a_per = (16384 / (MR * k1)).max(1);
    let b_per = (16384 / (NR * k1)).max(1);
    let (ta, tb) = (mp.div_ceil(a_per), np.div_ceil(b_per));
    let (pa_ptr, pb_ptr) = (OutPtr { ptr: pa.as_mut_ptr(), rs: 0 }, OutPtr { ptr: pb.as_mut_ptr(), rs: 0 });
    let run = |t: usize| {
        if t < ta {
            for p in t * a_per..((t + 1) * a_per).min(mp) {
                // SAFETY: panel p of the packed A buffer, written by this task only.
                let dst = unsafe { std::slice::from_raw_parts_mut(pa_ptr.get().add(p * MR * k), MR * k) };
                fill_a(a, p * MR, m, k, dst);
            }
        } else {
            let t = t - ta;
            for q in t * b_per..((t + 1) * b_per).min(np) {
                if direct(b, q, n).is_some() {
                    continue;
                }
                // SAFETY: panel q of the packed B buffer, written by this task only.
                let dst = unsafe { std::slice::from_raw_parts_mut(pb_ptr.get().add(q * NR * k), NR * k) };
                match b {
                    BSrc::Mat(bm) => pack_b(bm, q * NR, n, k, dst),
                    BSrc::Pack(f) => f(q * NR, dst),
                }
            }
        }
    };
    if ta + tb == 1 || (mp * MR + np * NR) * k1 < 32768 {
        (0..ta + tb).for_each(run);
    } else {
        pool.run(ta + tb, &run);
    }
}

/// The packed panel of A's rows i0..i0 + MR, from the matrix or its packer.
pub(super) fn fill_a(a: &ASrc, i0: usize, m: usize, k: usize, dst: &mut [f32]) {
    match a {
        ASrc::Mat(a) => pack_a(a, i0, m, k, dst),
        ASrc::Pack(f) => f(i0, dst),
    }
}

/// dst[kk MR + ii] = A(i0 + ii, kk), 0 past m.
pub(super) fn pack_a(a: &Mat, i0: usize, m: usize, k: usize, dst: &mut [f32]) {
    let rows = (m - i0).min(MR);
    if rows < MR {
        dst.iter_mut().for_each(|v| *v = 0.0);
    }
    if a.cs == 1 {
        for ii in 0..rows {
            let src = &a.data[a.off + (i0 + ii) * a.rs..][..k];
            for (kk, &v) in src.iter().enumerate() {
                dst[kk * MR + ii] = v;
            }
        }
    } else if a.rs == 1 {
        for kk in 0..k {
            let src = &a.data[a.off + i0 + kk * a.cs..][..rows];
            dst[kk * MR..kk * MR + rows].copy_from_slice(src);
        }
    } else {
        for kk in 0..k {
            for ii in 0..rows {
                dst[kk * MR + ii] = a.at(i0 + ii, kk);
            }
        }
    }
}

/// dst[kk NR + jj] = B(kk, j0 + jj), 0 past n.
pub fn pack_b(b: &Mat, j0: usize, n: usize, k: usize, dst: &mut [f32]) {
    let cols = (n - j0).min(NR);
    if cols < NR {
        dst.iter_mut().for_each(|v| *v = 0.0);
    }
    if b.cs == 1 {
        for kk in 0..k {
            let src = &b.data[b.off + kk * b.rs + j0..][..cols];
            dst[kk * NR..kk * NR + cols].copy_from_slice(src);
        }
    } else if b.rs == 1 && cols == NR && isa() == Isa::Avx512 && b.cs * 16 < i32::MAX as usize {
        // SAFETY: the CPU has AVX-512F; the panel's columns lie inside B (checked in `gemm`).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            pack_b_transposed_avx512(b, j0, k, dst)
        }
    } else if b.rs == 1 {
        // A transpose, in blocks of 16 rows so that the rows written stay in L1.
        for k0 in (0..k).step_by(16) {
            let k1 = (k0 + 16).min(k);
            for jj in 0..cols {
                let src = &b.data[b.off + (j0 + jj) * b.cs + k0..][..k1 - k0];
                for (kk, &v) in src.iter().enumerate() {
                    dst[(k0 + kk) * NR + jj] = v;
                }
            }
        }
    } else {
        for kk in 0..k {
            for jj in 0..cols {
                dst[kk * NR + jj] = b.at(kk, j0 + jj);
            }
        }
    }
}

/// A full panel of a column-major B (B(kk, j) = data[off + j cs + kk]): 16 x 16 blocks
/// transposed in registers, the last rows (k mod 16) one by one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn pack_b_transposed_avx512(b: &Mat, j0: usize, k: usize, dst: &mut [f32]) {
    assert!(dst.len() >= k * NR);
    assert!(b.off + (j0 + NR - 1) * b.cs + k - 1 < b.data.len());
    let src = b.data.as_ptr().add(b.off + j0 * b.cs);
    let full = k / 16 * 16;
    for h in 0..2 {
        let cols = src.add(16 * h * b.cs);
        for k0 in (0..full).step_by(16) {
            transpose16_avx512(cols.add(k0), b.cs, dst.as_mut_ptr().add(k0 * NR + 16 * h), NR);
        }
        for kk in full..k {
            for j in 0..16 {
                dst[kk * NR + 16 * h + j] = *cols.add(j * b.cs + kk);
            }
        }
    }
}

/// dst[j dst_rs + i] = src[i src_rs + j] for i, j < 16: a 16 x 16 block transposed in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transpose16_avx512(src: *const f32, src_rs: usize, dst: *mut f32, dst_rs: usize) {
    use std::arch::x86_64::*;
    let r: [__m512; 16] = std::array::from_fn(|j| _mm512_loadu_ps(src.add(j * src_rs)));
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, c) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, c)
        } else {
            _mm512_unpackhi_ps(a, c)
        }
    });
    // u[4 g + c] lane L: column 4 L + c of rows 4 g .. 4 g + 3.
    let u: [__m512; 16] = std::array::from_fn(|i| {
        let (g, c) = (i / 4, i % 4);
        let (a, d) = (_mm512_castps_pd(t[4 * g + (c / 2)]), _mm512_castps_pd(t[4 * g + 2 + (c / 2)]));
        _mm512_castpd_ps(if c % 2 == 0 { _mm512_unpacklo_pd(a, d) } else { _mm512_unpackhi_pd(a, d) })
    });
    let v: [__m512; 16] = std::array::from_fn(|i| {
        let (half, c) = (i / 8, i % 8);
        let (a, d) = (u[8 * half + c % 4], u[8 * half + 4 + c % 4]);
        if c < 4 {
            _mm512_shuffle_f32x4::<0x88>(a, d)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, d)
        }
    });
    for c in 0..16 {
        let (a, d) = (v[c % 8], v[8 + c % 8]);
        let out = if c < 8 { _mm512_shuffle_f32x4::<0x88>(a, d) } else { _mm512_shuffle_f32x4::<0xdd>(a, d) };
        _mm512_storeu_ps(dst.add(c * dst_rs), out);
    }
}

/// dst[j dst_rs + i] = src[i src_rs + j] for i < rows, j < cols: 16 x 16 blocks transposed in
/// registers where the CPU has AVX-512, the edges one value at a time.
pub fn transpose(src: &[f32], src_rs: usize, dst: &mut [f32], dst_rs: usize, rows: usize, cols: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        (rows - 1) * src_rs + cols <= src.len() && (cols - 1) * dst_rs + rows <= dst.len(),
        "transpose: out of bounds"
    );
    let (mut r16, mut c16) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx512 {
        (r16, c16) = (rows / 16 * 16, cols / 16 * 16);
        for i0 in (0..r16).step_by(16) {
            for j0 in (0..c16).step_by(16) {
                // SAFETY: AVX-512F; the block lies inside both slices (checked above).
                unsafe {
                    transpose16_avx512(
                        src.as_ptr().add(i0 * src_rs + j0),
                        src_rs,
                        dst.as_mut_ptr().add(j0 * dst_rs + i0),
                        dst_rs,
                    )
                };
            }
        }
    }
    for i in 0..rows {
        let js = if i < r16 { c16..cols } else { 0..cols };
        for j in js {
            dst[j * dst_rs + i] = src[i * src_rs + j];
        }
    }
}
