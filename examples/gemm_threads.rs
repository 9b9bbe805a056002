//! Times the CPU sgemm at the benchmark model's batch-256 shapes on 1 and 2 threads, and the
//! pool's round trip. `cargo run --release --example gemm_threads`.
use shadergan::ir::Pool;
use shadergan::kernels::gemm::{gemm, BSrc, Epilogue, Mat, Out};
use std::time::Instant;

fn time_gemm(pool: &Pool, m: usize, n: usize, k: usize, ta: bool) -> f64 {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.01).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.01).collect();
    let mut c = vec![0f32; m * n];
    let am = if ta { Mat::new(&a, 0, 1, m) } else { Mat::new(&a, 0, k, 1) };
    let reps = (2e9 / (2.0 * (m * n * k) as f64)).max(5.0) as usize;
    let bm = BSrc::Mat(Mat::new(&b, 0, n, 1));
    let mut call = || gemm(pool, m, n, k, am, bm, Out { data: &mut c, rs: n, col_off: None }, Epilogue::PLAIN);
    (0..3).for_each(|_| call());
    let t = Instant::now();
    (0..reps).for_each(|_| call());
    let s = t.elapsed().as_secs_f64() / reps as f64;
    2.0 * (m * n * k) as f64 / s / 1e9
}

fn main() {
    let p1 = Pool::new(1);
    let p2 = Pool::new(2);
    let shapes = [
        (256, 256, 64, false),
        (256, 256, 256, false),
        (256, 784, 256, false),
        (256, 256, 784, false),
        (256, 784, 256, true),
        (784, 256, 256, true),
        (256, 256, 256, true),
        (64, 256, 784, false),
        (512, 256, 784, false),
    ];
    for &(m, n, k, ta) in &shapes {
        let g1 = time_gemm(&p1, m, n, k, ta);
        let g2 = time_gemm(&p2, m, n, k, ta);
        println!("{m:>4}x{n:>4}x{k:>4} ta={ta:<5} 1t {g1:6.1} GFLOP/s  2t {g2:6.1}  ratio {:.2}", g2 / g1);
    }
    let t = Instant::now();
    let n = 100_000;
    for _ in 0..n {
        p2.run(2, &|_| {});
    }
    println!("pool round trip (2 threads, back to back): {:.2} us", t.elapsed().as_secs_f64() / n as f64 * 1e6);
    let mut tot = 0.0;
    for _ in 0..200 {
        let t0 = Instant::now();
        while t0.elapsed().as_micros() < 500 {}
        let t = Instant::now();
        p2.run(2, &|_| {});
        tot += t.elapsed().as_secs_f64();
    }
    println!("pool round trip after 500 us idle: {:.2} us", tot / 200.0 * 1e6);
}
