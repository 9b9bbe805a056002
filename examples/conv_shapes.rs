//! Times the CPU backend's fast convolutions at the DCGAN's shapes (batch 64), each path on its
//! own, in GFLOP/s: the 28x28 model's, or with SIZE 32 or 64 those of PyTorch's examples/dcgan
//! on colour images. `cargo run --release --example conv_shapes [-- THREADS [SIZE]]`.
use shadergan::ir::Pool;
use shadergan::kernels::conv::{fast, Conv2dShape};
use std::time::Instant;

/// This thread's CPU time in seconds (Linux: /proc/thread-self/schedstat), else 0.
fn thread_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    stat.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()).unwrap_or(0.0) * 1e-9
}

fn main() {
    let threads = std::env::args().nth(1).and_then(|t| t.parse().ok()).unwrap_or(2);
    let size: u32 = std::env::args().nth(2).and_then(|t| t.parse().ok()).unwrap_or(28);
    let pool = Pool::new(threads);
    // (what, c_in, h_in, c_out): D's convolutions (and, as transposes, G's in the other order).
    let shapes: Vec<(String, u32, u32, u32)> = match size {
        28 => vec![("1 -> 64, 28x28".into(), 1, 28, 64), ("64 -> 128, 14x14".into(), 64, 14, 128)],
        _ => {
            let mut v = vec![(format!("3 -> 64, {size}x{size}"), 3, size, 64)];
            let (mut c, mut h) = (64, size / 2);
            while h > 4 {
                v.push((format!("{c} -> {}, {h}x{h}", 2 * c), c, h, 2 * c));
                (c, h) = (2 * c, h / 2);
            }
            v
        }
    };
    for (what, c_in, h, c_out) in shapes {
        let shape = Conv2dShape { n: 64, c_in, h_in: h, w_in: h, c_out, kh: 4, kw: 4, stride: 2, pad: 1 };
        let p = shape.params();
        let x: Vec<f32> = (0..p.x_len()).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
        let w: Vec<f32> = (0..p.w_len()).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.02).collect();
        let dy: Vec<f32> = (0..p.y_len()).map(|i| ((i * 3 % 17) as f32 - 8.0) * 0.05).collect();
        let (mut y, mut dx, mut dw) = (vec![0f32; p.y_len()], vec![0f32; p.x_len()], vec![0f32; p.w_len()]);
        let flop = 2.0 * (p.y_len() * p.w_len() / c_out as usize) as f64;
        // With one thread (which runs the tasks itself) the time is also this thread's CPU time,
        // which other processes on a shared machine do not inflate.
        let time = |f: &mut dyn FnMut()| {
            (0..3).for_each(|_| f());
            let reps = 20;
            let (t, cpu0) = (Instant::now(), thread_cpu_s());
            (0..reps).for_each(|_| f());
            let s = t.elapsed().as_secs_f64() / reps as f64;
            let s = if threads == 1 { (thread_cpu_s() - cpu0) / reps as f64 } else { s };
            format!("{:6.3} ms {:6.1} GFLOP/s", s * 1e3, flop / s / 1e9)
        };
        let fw = time(&mut || fast::conv2d_forward(&pool, &p, &x, &w, &mut y));
        let bi = time(&mut || fast::conv2d_backward_input(&pool, &p, &dy, &w, &mut dx));
        let bw = time(&mut || fast::conv2d_backward_weight(&pool, &p, &dy, &x, &mut dw));
        println!("{what} ({threads} threads): forward {fw} | input gradient {bi} | weight gradient {bw}");
    }
}
