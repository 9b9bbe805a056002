//! Two threads on GEMMs, three ways, in one process: the pool splitting each GEMM (as a training
//! step does), the pool on an input nobody writes, and two threads each running a serial GEMM of
//! its own on data of its own (nothing shared). `cargo run --release --example gemm_chain`.
use shadergan::ir::Pool;
use shadergan::kernels::gemm::{gemm, BSrc, Epilogue, Mat, Out};
use std::time::Instant;

const M: usize = 64;
const N: usize = 256;
const REPS: usize = 20000;

fn gflops(reps: usize, secs: f64) -> f64 {
    2.0 * (M * N * N * reps) as f64 / secs / 1e9
}

/// `REPS` GEMMs y = x w on `pool`; with `chain` each one's output is the next one's input.
fn on_pool(pool: &Pool, chain: bool) -> f64 {
    let w: Vec<f32> = (0..N * N).map(|i| ((i % 13) as f32 - 6.0) * 0.004).collect();
    let fixed: Vec<f32> = (0..M * N).map(|i| (i % 7) as f32 * 0.01).collect();
    let (mut x, mut y) = (fixed.clone(), vec![0f32; M * N]);
    let t = Instant::now();
    for _ in 0..REPS {
        let input = if chain { &x[..] } else { &fixed[..] };
        let o = Out { data: &mut y[..], rs: N, col_off: None };
        gemm(pool, M, N, N, Mat::new(input, 0, N, 1), BSrc::Mat(Mat::new(&w, 0, N, 1)), o, Epilogue::PLAIN);
        std::mem::swap(&mut x, &mut y);
    }
    gflops(REPS, t.elapsed().as_secs_f64())
}

fn main() {
    let pool = Pool::new(2);
    let chained = on_pool(&pool, true);
    let fixed = on_pool(&pool, false);
    // Each thread its own one-thread pool and its own data: nothing shared but the process.
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| on_pool(&Pool::new(1), true));
        }
    });
    let apart = 2.0 * gflops(REPS, t.elapsed().as_secs_f64());
    println!("GFLOP/s with 2 threads: pool chained {chained:.0}, pool on a fixed input {fixed:.0}, apart {apart:.0}");
}
