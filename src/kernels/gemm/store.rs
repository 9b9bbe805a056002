//! Storing a finished tile through the epilogue.

use super::*;

/// Stores one MR x NR tile through the epilogue (rows and columns past m, n dropped).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn store_tile(
    acc: &[[f32; NR]; MR],
    i0: usize,
    j0: usize,
    m: usize,
    n: usize,
    o: OutPtr,
    col_off: Option<&[usize]>,
    epi: &Epilogue,
) {
    let (rows, cols) = ((m - i0).min(MR), (n - j0).min(NR));
    for (ii, row) in acc.iter().enumerate().take(rows) {
        let i = i0 + ii;
        match col_off {
            None => {
                // SAFETY: row i, columns j0..j0 + cols of the output (checked in `gemm`), written
                // by this task only.
                let dst = unsafe { std::slice::from_raw_parts_mut(o.ptr.add(i * o.rs + j0), cols) };
                store_row(&row[..cols], dst, i, j0, epi);
            }
            Some(offs) if offs[j0 + cols - 1] == offs[j0] + cols - 1 => {
                // The columns are contiguous in the output (one image's run): as row-major.
                // SAFETY: as above, through the column offsets.
                let dst = unsafe { std::slice::from_raw_parts_mut(o.ptr.add(i * o.rs + offs[j0]), cols) };
                store_row(&row[..cols], dst, i, j0, epi);
            }
            Some(offs) if cols == NR => {
                // Scattered columns: the epilogue on a copy, then plain stores.
                let offs = &offs[j0..j0 + NR];
                let base = i * o.rs;
                let mut tmp = [0f32; NR];
                if epi.accumulate {
                    // SAFETY: as above, through the column offsets.
                    tmp.iter_mut().zip(offs).for_each(|(t, &c)| *t = unsafe { *o.ptr.add(base + c) });
                }
                store_full_row(row, &mut tmp, i, j0, epi);
                for (&v, &c) in tmp.iter().zip(offs) {
                    // SAFETY: as above.
                    unsafe { *o.ptr.add(base + c) = v };
                }
            }
            Some(offs) => {
                for (jj, &v) in row.iter().enumerate().take(cols) {
                    // SAFETY: as above, through the column offsets.
                    unsafe {
                        let p = o.ptr.add(i * o.rs + offs[j0 + jj]);
                        *p = epi.apply(v, i, j0 + jj, *p);
                    }
                }
            }
        }
    }
}

/// One row of a tile through the epilogue, in loops the compiler vectorizes.
#[inline(always)]
pub(super) fn store_row(src: &[f32], dst: &mut [f32], i: usize, j0: usize, epi: &Epilogue) {
    if let (Ok(src), Ok(dst)) = (<&[f32; NR]>::try_from(src), <&mut [f32; NR]>::try_from(&mut *dst)) {
        return store_full_row(src, dst, i, j0, epi);
    }
    let n = src.len();
    let mut v = [0f32; NR];
    v[..n].copy_from_slice(src);
    match epi.bias {
        Bias::None => {}
        Bias::Col(b) => v[..n].iter_mut().zip(&b[j0..j0 + n]).for_each(|(x, b)| *x += b),
        Bias::Row(b) => v[..n].iter_mut().for_each(|x| *x += b[i]),
    }
    if epi.accumulate {
        v[..n].iter_mut().zip(dst.iter()).for_each(|(x, o)| *x += o);
    }
    match epi.act {
        0 => dst.copy_from_slice(&v[..n]),
        1 => dst.iter_mut().zip(&v[..n]).for_each(|(o, &x)| *o = x.max(0.0)),
        2 => dst.iter_mut().zip(&v[..n]).for_each(|(o, &x)| *o = if x > 0.0 { x } else { x * epi.slope }),
        act => dst.iter_mut().zip(&v[..n]).for_each(|(o, &x)| *o = activate_fast(x, act, epi.slope)),
    }
}

/// `store_row` of a whole NR-wide row, with fixed lengths the compiler keeps in registers.
#[inline(always)]
pub(super) fn store_full_row(src: &[f32; NR], dst: &mut [f32; NR], i: usize, j0: usize, epi: &Epilogue) {
    let mut v = *src;
    match epi.bias {
        Bias::None => {}
        Bias::Col(b) => {
            let b: &[f32; NR] = b[j0..j0 + NR].try_into().expect("NR values");
            v.iter_mut().zip(b).for_each(|(x, b)| *x += b)
        }
        Bias::Row(b) => v.iter_mut().for_each(|x| *x += b[i]),
    }
    if epi.accumulate {
        v.iter_mut().zip(dst.iter()).for_each(|(x, o)| *x += o);
    }
    match epi.act {
        0 => *dst = v,
        1 => dst.iter_mut().zip(&v).for_each(|(o, &x)| *o = x.max(0.0)),
        2 => dst.iter_mut().zip(&v).for_each(|(o, &x)| *o = if x > 0.0 { x } else { x * epi.slope }),
        act => dst.iter_mut().zip(&v).for_each(|(o, &x)| *o = activate_fast(x, act, epi.slope)),
    }
}
