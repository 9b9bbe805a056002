//! What the sliced Wasserstein distance (src/eval/swd/) costs: the real side (once per run) and
//! one evaluation of N generated images, at 28x28 gray, 32x32 and 64x64 RGB, N = 2048, in wall
//! and CPU seconds (README, "Judging colour images").
//! `cargo run --release --example swd_cost [-- THREADS]`.

use std::time::Instant;

/// CPU seconds this process has used (user + system, all threads), from /proc/self/stat (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

use shadergan::data::{Dataset, ImageShape};
use shadergan::eval::swd::{sample_count, Reference};

fn main() {
    if let Some(t) = std::env::args().nth(1).and_then(|a| a.parse().ok()) {
        shadergan::ir::pool::set_default_threads(t);
    }
    println!("threads: {}", shadergan::ir::pool::default_threads());
    for (channels, size) in [(1, 28), (3, 32), (3, 64)] {
        let shape = ImageShape { channels, height: size, width: size };
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
        let (t, c) = (Instant::now(), cpu_seconds());
        let r = Reference::new(&data, 0, n).unwrap();
        let (t_ref, c_ref) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
        let fake: Vec<f32> = (0..n * shape.values()).map(|i| ((i * 2_654_435_761) % 1000) as f32 / 1000.0).collect();
        let (t, c) = (Instant::now(), cpu_seconds());
        let d = r.distances(&fake);
        let (t_eval, c_eval) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
        println!(
            "{}, N = {n}: real side (with the floor) {t_ref:.2} s ({c_ref:.2} CPU s), one \
             evaluation {t_eval:.2} s ({c_eval:.2} CPU s) (SWD {:.1}, floor {:.2})",
            shape.describe(),
            d.mean,
            r.floor().mean
        );
    }
}
