//! The CPU backend's fast matmuls: the twins' contracts on the pool's sgemm
//! (`kernels::gemm`: packed panels, one fused multiply-add chain over k per element, bias and
//! activation applied as the tile is stored). Another summation order than the twins', so results
//! differ from them in the last bits, but the same bits for any thread count. The twins stay the
//! oracle; tests/cpu_fast.rs checks these against them.

use super::MatmulParams;
use crate::ir::Pool;
use crate::kernels::gemm::{gemm, BSrc, Bias, Epilogue, Mat, Out};

pub fn matmul_forward(pool: &Pool, p: &MatmulParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let y = &mut out[p.out_off as usize..p.out_off as usize + m * n];
    let bias = if p.no_bias != 0 { Bias::None } else { Bias::Col(&c[p.bias_off as usize..p.bias_off as usize + n]) };
    let epi = Epilogue { bias, accumulate: false, act: p.act, slope: p.slope };
    // x (m, k) row-major; w^T: B(kk, j) = w[j k + kk].
    let (x, w) = (Mat::new(a, p.a_off as usize, k, 1), Mat::new(c, p.c_off as usize, 1, k));
    gemm(pool, m, n, k, x, BSrc::Mat(w), Out { data: y, rs: n, col_off: None }, epi);
}

pub fn matmul_backward_input(pool: &Pool, p: &MatmulParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let dx = &mut out[p.out_off as usize..p.out_off as usize + m * k];
    // dz (m, n) w (n, k).
    let (dz, w) = (Mat::new(a, p.a_off as usize, n, 1), Mat::new(c, p.c_off as usize, k, 1));
    gemm(pool, m, k, n, dz, BSrc::Mat(w), Out { data: dx, rs: k, col_off: None }, Epilogue::PLAIN);
}

pub fn matmul_backward_weight(pool: &Pool, p: &MatmulParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let dw = &mut out[p.out_off as usize..p.out_off as usize + n * k];
    let epi = Epilogue { accumulate: p.accumulate != 0, ..Epilogue::PLAIN };
    // dz^T (n, m): A(j, row) = dz[row n + j]; x (m, k) row-major.
    let (dzt, x) = (Mat::new(a, p.a_off as usize, 1, n), Mat::new(c, p.c_off as usize, k, 1));
    gemm(pool, n, k, m, dzt, BSrc::Mat(x), Out { data: dw, rs: k, col_off: None }, epi);
}

/// The bias gradient, column sums of dz (m, n): the twin's sums (each column from 0, rows in
/// order, plain adds) taken row by row over blocks of columns, so each row is read as it lies in
/// memory instead of one column at a time. A task per block of columns: the same bits as the
/// twin on any thread count.
pub fn bias_backward(pool: &Pool, p: &MatmulParams, a: &[f32], out: &mut [f32]) {
    const BLOCK: usize = 256; // columns per task
    let (m, n) = (p.m as usize, p.n as usize);
    let dz = &a[p.a_off as usize..][..m * n];
    let db = &mut out[p.bias_off as usize..][..n];
    let accumulate = p.accumulate != 0;
    let block = |j0: usize, db: &mut [f32]| {
        let mut sums = [0f32; BLOCK];
        let sums = &mut sums[..db.len()];
        for row in dz.chunks_exact(n) {
            sums.iter_mut().zip(&row[j0..j0 + db.len()]).for_each(|(s, &v)| *s += v);
        }
        for (o, &s) in db.iter_mut().zip(sums.iter()) {
            *o = if accumulate { *o + s } else { s };
        }
    };
    if m * n < 1 << 14 || n <= BLOCK {
        return db.chunks_mut(BLOCK).enumerate().for_each(|(t, d)| block(t * BLOCK, d));
    }
    let ptr = db.as_mut_ptr() as usize;
    pool.run(n.div_ceil(BLOCK), &|t| {
        let (j0, j1) = (t * BLOCK, ((t + 1) * BLOCK).min(n));
        // SAFETY: columns j0..j1 of the bias gradient, written by this task only.
        block(j0, unsafe { std::slice::from_raw_parts_mut((ptr as *mut f32).add(j0), j1 - j0) });
    });
}
