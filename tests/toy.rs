//! A short run on a 2-D ring of Gaussians moves the generator's samples toward the data: the mean
//! distance from a generated point to its nearest mode drops, on both backends.

mod common;

use std::sync::Arc;

use common::{cpu_trainer, gpu_trainer};
use shadergan::data::Dataset;
use shadergan::{rng, TrainConfig, TrainOptions, Trainer};

const MODES: usize = 8;
const RADIUS: f32 = 2.0;

fn mode(k: usize) -> (f32, f32) {
    let a = std::f32::consts::TAU * k as f32 / MODES as f32;
    (RADIUS * a.cos(), RADIUS * a.sin())
}

fn ring(n: usize) -> Arc<Dataset> {
    let mut noise = vec![0f32; 2 * n];
    rng::normals(rng::seed_words(5), 0, 0, 9, &mut noise);
    let mut v = Vec::with_capacity(2 * n);
    for i in 0..n {
        let (x, y) = mode(i % MODES);
        v.push(x + 0.05 * noise[2 * i]);
        v.push(y + 0.05 * noise[2 * i + 1]);
    }
    Arc::new(Dataset::from_f32(n, 2, v).unwrap())
}

/// Mean distance of G's samples (fixed latents) to the nearest mode.
fn mode_distance(t: &mut dyn Trainer) -> f32 {
    let latent = t.config().model.latent_dim;
    let mut z = vec![0f32; 512 * latent];
    rng::normals(rng::seed_words(1), 0, 0, rng::PURPOSE_SAMPLES, &mut z);
    let pts = t.sample(&z).unwrap();
    let total: f32 = pts
        .chunks(2)
        .map(|p| {
            (0..MODES)
                .map(|k| {
                    let (mx, my) = mode(k);
                    ((p[0] - mx).powi(2) + (p[1] - my).powi(2)).sqrt()
                })
                .fold(f32::INFINITY, f32::min)
        })
        .sum();
    total / 512.0
}

fn config(data: &Dataset) -> TrainConfig {
    let mut cfg = TrainOptions {
        latent_dim: Some(8),
        g_hidden: vec![64, 64],
        d_hidden: vec![64, 64],
        batch_size: Some(64),
        seed: 3,
        ..Default::default()
    }
    .resolve(data)
    .unwrap();
    cfg.lr = 1e-3;
    cfg
}

fn check(t: &mut dyn Trainer, steps: u32) {
    let before = mode_distance(t);
    t.train(steps).unwrap();
    let after = mode_distance(t);
    eprintln!("{:?}: mean distance to the nearest mode {before:.3} -> {after:.3}", t.backend());
    assert!(after < 0.75 * before, "{:?}: {before} -> {after}", t.backend());
}

#[test]
fn cpu_generator_moves_toward_the_ring() {
    let data = ring(2048);
    let cfg = config(&data);
    assert_eq!(cfg.model.g_output, shadergan::kernels::activation::Activation::Identity, "unbounded data");
    let mut t = cpu_trainer(&cfg, &data, false);
    check(&mut t, 1000);
}

#[test]
fn gpu_generator_moves_toward_the_ring() {
    let data = ring(2048);
    let cfg = config(&data);
    let Some(mut t) = gpu_trainer(&cfg, &data) else { return };
    check(&mut t, 1000);
}
