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
