//! What one sliced Wasserstein evaluation costs (eval/swd.rs): the real side (once per run) and
//! one evaluation of N generated images, at 32x32 and 64x64 RGB, N = 2048 (README, "Judging
//! colour images"). `cargo run --release --example swd_cost [-- THREADS]`.

use std::time::Instant;

use shadergan::data::{Dataset, ImageShape};
use shadergan::eval::swd::{sample_count, Reference};

fn main() {
    if let Some(t) = std::env::args().nth(1).and_then(|a| a.parse().ok()) {
        shadergan::ir::pool::set_default_threads(t);
    }
    println!("threads: {}", shadergan::ir::pool::default_threads());
    for size in [32, 64] {
        let shape = ImageShape { channels: 3, height: size, width: size };
        let n_real = 4096;
        // Smooth random images: a product of per-image sinusoids, in [0, 1].
        let values: Vec<u8> = (0..n_real * shape.values())
            .map(|i| {
                let (img, px) = (i / shape.values(), i % (size * size));
                let (y, x) = ((px / size) as f32, (px % size) as f32);
                let f = 0.05 + (img % 17) as f32 * 0.02;
                (127.5 + 120.0 * (f * x + img as f32).sin() * (f * 1.3 * y).cos()) as u8
            })
            .collect();
        let data = Dataset::from_u8_images(n_real, shape, values).unwrap();
        let n = sample_count(n_real);
        let t = Instant::now();
        let r = Reference::new(&data, 0, n).unwrap();
        let t_ref = t.elapsed().as_secs_f64();
        let fake: Vec<f32> = (0..n * shape.values()).map(|i| ((i * 2_654_435_761) % 1000) as f32 / 1000.0).collect();
        let t = Instant::now();
        let d = r.distances(&fake);
        let t_eval = t.elapsed().as_secs_f64();
        println!(
            "{size}x{size} RGB, N = {n}: real side (with the floor) {t_ref:.2} s, one evaluation {t_eval:.2} s (SWD {:.1}, floor {:.2})",
            d.mean,
            r.floor().mean
        );
    }
}
