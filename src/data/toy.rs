//! Toy 2-D data sets for judging mode collapse, from the PacGAN paper (Lin et al., "PacGAN: The
//! power of two samples in generative adversarial networks", NeurIPS 2018): `ring8` (8
//! Gaussians on the unit circle, std 0.01) and `grid25` (25 Gaussians on a 5x5 grid, std 0.05).
//! Their metrics are in `crate::eval::toy`.

use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::Result;
use crate::rng;

/// Points in a toy data set built by `train --toy`.
pub const TOY_SAMPLES: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Toy {
    /// 8 Gaussians on a circle of radius 1, std 0.01.
    Ring8,
    /// 25 Gaussians at (i, j), i, j in {-4, -2, 0, 2, 4}, std 0.05.
    Grid25,
}

impl Toy {
    pub fn name(&self) -> &'static str {
        match self {
            Toy::Ring8 => "ring8",
            Toy::Grid25 => "grid25",
        }
    }

    /// The mode centres.
    pub fn modes(&self) -> Vec<(f32, f32)> {
        match self {
            Toy::Ring8 => (0..8)
                .map(|i| {
                    let a = std::f64::consts::TAU * i as f64 / 8.0;
                    (a.cos() as f32, a.sin() as f32)
                })
                .collect(),
            Toy::Grid25 => {
                let c = [-4.0f32, -2.0, 0.0, 2.0, 4.0];
                c.iter().flat_map(|&x| c.iter().map(move |&y| (x, y))).collect()
            }
        }
    }

    /// The standard deviation of every mode (both axes).
    pub fn std(&self) -> f32 {
        match self {
            Toy::Ring8 => 0.01,
            Toy::Grid25 => 0.05,
        }
    }

    /// `n` points: point i picks its mode uniformly from Philox counter (i, 0, 0, PURPOSE_TOY) and
    /// adds Gaussian noise from counters (q, 1, 0, PURPOSE_TOY); the same on every backend.
    pub fn dataset(&self, seed: u64, n: usize) -> Result<Dataset> {
        let modes = self.modes();
        let k = modes.len() as u64;
        let key = rng::seed_words(seed);
        let mut noise = vec![0f32; 2 * n];
        rng::normals(key, 1, 0, rng::PURPOSE_TOY, &mut noise);
        let s = self.std();
        let mut v = Vec::with_capacity(2 * n);
        for i in 0..n {
            let w = rng::philox4x32([i as u32, 0, 0, rng::PURPOSE_TOY], key)[0];
            let (x, y) = modes[((w as u64 * k) >> 32) as usize];
            v.push(x + s * noise[2 * i]);
            v.push(y + s * noise[2 * i + 1]);
        }
        Dataset::from_f32(n, 2, v)
    }
}
