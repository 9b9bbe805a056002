//! Times the CPU backend's fast convolutions at the 28x28 DCGAN's shapes (batch 64), each path
//! on its own, in GFLOP/s. `cargo run --release --example conv_shapes [-- THREADS]`.
use shadergan::ir::Pool;
use shadergan::kernels::conv::{fast, Conv2dShape};
use std::time::Instant;

fn main() {
    let threads = std::env::args().nth(1).and_then(|t| t.parse().ok()).unwrap_or(2);
    let pool = Pool::new(threads);
    // (what, c_in, h_in, c_out): D's first layer (and G's last as a transpose), D's second (and
    // G's first transpose).
    for (what, c_in, h, c_out) in [("1 -> 64, 28x28", 1, 28, 64), ("64 -> 128, 14x14", 64, 14, 128)] {
        let shape = Conv2dShape { n: 64, c_in, h_in: h, w_in: h, c_out, kh: 4, kw: 4, stride: 2, pad: 1 };
        let p = shape.params();
        let x: Vec<f32> = (0..p.x_len()).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
        let w: Vec<f32> = (0..p.w_len()).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.02).collect();
        let dy: Vec<f32> = (0..p.y_len()).map(|i| ((i * 3 % 17) as f32 - 8.0) * 0.05).collect();
        let (mut y, mut dx, mut dw) = (vec![0f32; p.y_len()], vec![0f32; p.x_len()], vec![0f32; p.w_len()]);
        let flop = 2.0 * (p.y_len() * p.w_len() / c_out as usize) as f64;
        let time = |f: &mut dyn FnMut()| {
            (0..3).for_each(|_| f());
            let reps = 20;
            let t = Instant::now();
            (0..reps).for_each(|_| f());
            let s = t.elapsed().as_secs_f64() / reps as f64;
            format!("{:6.3} ms {:6.1} GFLOP/s", s * 1e3, flop / s / 1e9)
        };
        let fw = time(&mut || fast::conv2d_forward(&pool, &p, &x, &w, &mut y));
        let bi = time(&mut || fast::conv2d_backward_input(&pool, &p, &dy, &w, &mut dx));
        let bw = time(&mut || fast::conv2d_backward_weight(&pool, &p, &dy, &x, &mut dw));
        println!("{what} ({threads} threads): forward {fw} | input gradient {bi} | weight gradient {bw}");
    }
}
