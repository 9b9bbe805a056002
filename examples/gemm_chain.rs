//! Two threads on a chain of GEMMs whose input the previous GEMM wrote (as in a training step)
//! against the same GEMMs on an input nobody writes. `cargo run --release --example gemm_chain`.
use shadergan::ir::Pool;
use shadergan::kernels::gemm::{gemm, BSrc, Epilogue, Mat, Out};
use std::time::Instant;

fn main() {
    let pool = Pool::new(2);
    let (m, n) = (64usize, 256usize);
    let w: Vec<f32> = (0..n * n).map(|i| ((i % 13) as f32 - 6.0) * 0.004).collect();
    let mut x: Vec<f32> = (0..m * n).map(|i| (i % 7) as f32 * 0.01).collect();
    let mut y = vec![0f32; m * n];
    let fixed = x.clone();
    let reps = 20000;
    let run = |chain: bool, x: &mut Vec<f32>, y: &mut Vec<f32>| {
        let t = Instant::now();
        for _ in 0..reps {
            let input = if chain { &x[..] } else { &fixed[..] };
            let o = Out { data: &mut y[..], rs: n, col_off: None };
            gemm(&pool, m, n, n, Mat::new(input, 0, n, 1), BSrc::Mat(Mat::new(&w, 0, n, 1)), o, Epilogue::PLAIN);
            std::mem::swap(x, y);
        }
        2.0 * (m * n * n * reps) as f64 / t.elapsed().as_secs_f64() / 1e9
    };
    let c = run(true, &mut x, &mut y);
    let f = run(false, &mut x, &mut y);
    println!("chained {c:.0} GFLOP/s, fixed input {f:.0} GFLOP/s");
}
