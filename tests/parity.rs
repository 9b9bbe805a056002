//! Whole training steps: the GPU trainer against the CPU trainer from the same seed, and each
//! backend against itself (same seed -> same bits).

mod common;

use std::sync::Arc;

use common::{gpu_trainer, image_data, uniform};
use shadergan::config::TrainConfig;
use shadergan::data::Dataset;
use shadergan::kernels::activation::Activation;
use shadergan::kernels::tolerance::{compare, tolerance};
use shadergan::programs::trainer::NetSnapshot;
use shadergan::{GanTrainer, Snapshot, TrainOptions, Trainer};

fn config(data: &Dataset, g_act: Activation, d_act: Activation, g_out: Option<Activation>) -> TrainConfig {
    TrainOptions {
        latent_dim: Some(8),
        g_hidden: vec![31],
        d_hidden: vec![33, 17],
        g_activation: Some(g_act),
        d_activation: Some(d_act),
        g_output: g_out,
        batch_size: Some(16),
        seed: 1234,
        ..Default::default()
    }
    .resolve(data)
    .unwrap()
}

fn cpu_trainer(cfg: &TrainConfig, data: &Arc<Dataset>) -> GanTrainer {
    common::cpu_trainer(cfg, data, false)
}

fn assert_snapshots_close(what: &str, g: &Snapshot, c: &Snapshot) {
    let t = tolerance("train_10_steps");
    assert_eq!(g.state, c.state, "{what}: step state");
    for (name, gv, cv) in [
        ("G params", &g.g.params, &c.g.params),
        ("D params", &g.d.params, &c.d.params),
        ("G moments", &g.g.moments, &c.g.moments),
        ("D moments", &g.d.moments, &c.d.moments),
    ] {
        compare(name, gv, cv, t).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    assert_eq!(g.g_ema.is_some(), c.g_ema.is_some(), "{what}: G weight average kept on one backend only");
    if let (Some(ge), Some(ce)) = (&g.g_ema, &c.g_ema) {
        compare("G weight average", ge, ce, t).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

#[test]
fn gpu_and_cpu_agree_over_ten_steps() {
    let data = image_data();
    let variants = [
        (Activation::Relu, Activation::Relu, None, 1.0),
        (Activation::LeakyRelu, Activation::LeakyRelu, Some(Activation::Tanh), 0.9),
    ];
    for (i, (g_act, d_act, g_out, real_label)) in variants.into_iter().enumerate() {
        let mut cfg = config(&data, g_act, d_act, g_out);
        cfg.real_label = real_label;
        cfg.model.pack = 1 + i * 3; // 1, then PacGAN4
        cfg.d_dropout = 0.3 * i as f32; // none, then 0.3 in D
        cfg.d_steps = 1 + i; // then two D updates per step
        cfg.g_ema = 0.9 * i as f32; // then G's weight average, which sampling then uses
        cfg.lr_decay = 0.8 * i as f32; // then the learning rate decays over steps 2..12
        let cfg = cfg.with_run_length(12);
        let what = format!(
            "G {g_act:?}/{:?}, D {d_act:?}, real label {real_label}, pack {}, dropout {}, d-steps {}, g-ema {}, \
             lr-decay {}",
            cfg.model.g_output, cfg.model.pack, cfg.d_dropout, cfg.d_steps, cfg.g_ema, cfg.lr_decay
        );
        let mut cpu = cpu_trainer(&cfg, &data);
        let Some(mut gpu) = gpu_trainer(&cfg, &data) else { return };
        // Same seed: bit-identical starting weights on both backends.
        assert_eq!(gpu.snapshot().unwrap(), cpu.snapshot().unwrap(), "{what}: initial state");
        let t = tolerance("train_10_steps");
        for step in 1..=10 {
            cpu.train(1).unwrap();
            gpu.train(1).unwrap();
            let (gs, cs) = (gpu.stats().unwrap(), cpu.stats().unwrap());
            assert_eq!(gs.step, step);
            let g = [gs.d_loss, gs.g_loss, gs.d_real, gs.d_fake];
            let c = [cs.d_loss, cs.g_loss, cs.d_real, cs.d_fake];
            compare("losses", &g, &c, t).unwrap_or_else(|e| panic!("{what}, step {step}: {e}"));
        }
        assert_snapshots_close(&what, &gpu.snapshot().unwrap(), &cpu.snapshot().unwrap());
        // Sampling G agrees too.
        let z = uniform(5 * 8, 9, -2.0, 2.0);
        compare("sample", &gpu.sample(&z).unwrap(), &cpu.sample(&z).unwrap(), t)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

/// The largest |a - b| over two parameter vectors.
fn max_step(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn d_lr_gives_d_its_own_rate_on_both_backends() {
    // Adam's first step moves a weight by lr * m / (sqrt(v) + eps) = lr * g / (|g| + eps): by
    // almost exactly its rate wherever the gradient is not tiny. So one step shows each net's rate.
    let data = image_data();
    let mut cfg = config(&data, Activation::LeakyRelu, Activation::LeakyRelu, Some(Activation::Tanh));
    (cfg.lr, cfg.d_lr) = (1e-4, Some(1e-2));
    assert_eq!(cfg.d_lr(), 1e-2);
    let mut trainers: Vec<Box<dyn Trainer>> = vec![Box::new(cpu_trainer(&cfg, &data))];
    if let Some(g) = gpu_trainer(&cfg, &data) {
        trainers.push(Box::new(g));
    }
    for t in &mut trainers {
        let name = format!("{:?}", t.backend());
        let before = t.snapshot().unwrap();
        t.train(1).unwrap();
        let after = t.snapshot().unwrap();
        let (g, d) = (max_step(&before.g.params, &after.g.params), max_step(&before.d.params, &after.d.params));
        assert!((0.99e-4..=1.0001e-4).contains(&g), "{name}: G moved by {g}, its rate is 1e-4");
        assert!((0.99e-2..=1.0001e-2).contains(&d), "{name}: D moved by {d}, its rate is 1e-2");
    }
}

#[test]
fn lr_decay_reaches_zero_at_the_end_on_both_backends() {
    let data = image_data();
    let mut cfg = config(&data, Activation::LeakyRelu, Activation::LeakyRelu, Some(Activation::Tanh));
    cfg.lr_decay = 0.5;
    let cfg = cfg.with_run_length(6);
    assert_eq!(cfg.lr_decay_steps(), 3);
    let mut trainers: Vec<Box<dyn Trainer>> = vec![Box::new(cpu_trainer(&cfg, &data))];
    if let Some(g) = gpu_trainer(&cfg, &data) {
        trainers.push(Box::new(g));
    }
    for t in &mut trainers {
        let name = format!("{:?}", t.backend());
        // Steps 0..3 train at the full rate, 3, 4, 5 at 1, 2/3 and 1/3 of it, then nothing moves.
        let mut seen = vec![t.snapshot().unwrap()];
        for _ in 0..8 {
            t.train(1).unwrap();
            seen.push(t.snapshot().unwrap());
        }
        for s in 0..6 {
            assert_ne!(seen[s].g.params, seen[s + 1].g.params, "{name}: step {s} must move G");
            assert_ne!(seen[s].d.params, seen[s + 1].d.params, "{name}: step {s} must move D");
        }
        for s in 6..8 {
            assert_eq!(seen[s].g.params, seen[s + 1].g.params, "{name}: step {s} is past the decay's end");
            assert_eq!(seen[s].d.params, seen[s + 1].d.params, "{name}: step {s} is past the decay's end");
        }
    }
}

#[test]
fn same_seed_gives_identical_bits_on_each_backend() {
    let data = image_data();
    let cfg = config(&data, Activation::Relu, Activation::Relu, None);
    let run_cpu = || {
        let mut t = cpu_trainer(&cfg, &data);
        t.train(5).unwrap();
        t.snapshot().unwrap()
    };
    assert_eq!(run_cpu(), run_cpu());
    let mut other = cfg.clone();
    other.seed += 1;
    let mut t = cpu_trainer(&other, &data);
    t.train(5).unwrap();
    assert_ne!(t.snapshot().unwrap().g.params, run_cpu().g.params, "the seed must matter");

    let run_gpu = || {
        let mut t = gpu_trainer(&cfg, &data)?;
        t.train(5).unwrap();
        Some(t.snapshot().unwrap())
    };
    if let (Some(a), Some(b)) = (run_gpu(), run_gpu()) {
        assert_eq!(a, b, "GPU runs from one seed differ");
    }
}

#[test]
fn g_ema_averages_g_and_sampling_uses_it() {
    let data = image_data();
    let mut cfg = config(&data, Activation::Relu, Activation::Relu, None);
    cfg.g_ema = 0.5;
    let mut plain_cfg = cfg.clone();
    plain_cfg.g_ema = 0.0;
    let mut t = cpu_trainer(&cfg, &data);
    let mut plain = cpu_trainer(&plain_cfg, &data);
    // Starts as a copy of G; the average does not change training itself.
    let s0 = t.snapshot().unwrap();
    assert_eq!(s0.g_ema.as_ref(), Some(&s0.g.params));
    let w0 = s0.g.params.clone();
    t.train(1).unwrap();
    plain.train(1).unwrap();
    let s1 = t.snapshot().unwrap();
    let p1 = plain.snapshot().unwrap();
    assert_eq!((&s1.g.params, &s1.d.params), (&p1.g.params, &p1.d.params));
    let want: Vec<f32> = w0.iter().zip(&s1.g.params).map(|(a, b)| 0.5 * a + 0.5 * b).collect();
    assert_eq!(s1.g_ema.as_ref(), Some(&want));
    // Sampling runs the averaged weights: a trainer whose G is the average samples the same.
    let z = uniform(5 * 8, 9, -2.0, 2.0);
    let mut avg = cpu_trainer(&plain_cfg, &data);
    let g = NetSnapshot { params: want, ..p1.g.clone() };
    avg.restore(&Snapshot { g, g_ema: None, ..p1.clone() }).unwrap();
    assert_eq!(t.sample(&z).unwrap(), avg.sample(&z).unwrap());
    assert_ne!(t.sample(&z).unwrap(), plain.sample(&z).unwrap());
    // Restoring a snapshot carries the average; GPU agrees with CPU from the same snapshot.
    let mut r = cpu_trainer(&cfg, &data);
    r.restore(&s1).unwrap();
    assert_eq!(r.snapshot().unwrap(), s1);
    if let Some(mut g) = gpu_trainer(&cfg, &data) {
        g.restore(&s1).unwrap();
        assert_eq!(g.snapshot().unwrap(), s1);
        compare("sample", &g.sample(&z).unwrap(), &r.sample(&z).unwrap(), tolerance("train_10_steps")).unwrap();
    }
}

#[test]
fn steps_in_one_submit_equal_steps_one_by_one() {
    let data = image_data();
    let cfg = config(&data, Activation::Relu, Activation::Relu, None);
    let Some(mut a) = gpu_trainer(&cfg, &data) else { return };
    let Some(mut b) = gpu_trainer(&cfg, &data) else { return };
    a.train(40).unwrap(); // two submits of up to 32 steps
    for _ in 0..40 {
        b.train(1).unwrap();
    }
    assert_eq!(a.snapshot().unwrap(), b.snapshot().unwrap());
}

/// A conditional GAN (G's class embedding, D's projection head, labels gathered with the data
/// and drawn for the fakes on the device): 10 steps on GPU and CPU agree, plainly and with two D
/// updates a step, dropout, G's weight average, the hinge loss and spectral normalisation; and
/// sampling with given classes agrees.
#[test]
fn conditional_gpu_and_cpu_agree_over_ten_steps() {
    let mut d = (*image_data()).clone();
    let classes = 7;
    let names = shadergan::data::labels::index_names(classes);
    let ids = (0..d.n).map(|i| (i * 3 % classes) as u8).collect();
    d.classes = Some(shadergan::data::labels::ClassLabels { ids, names: names.clone() });
    let data = Arc::new(d);
    for extras in [false, true] {
        let opts = TrainOptions {
            latent_dim: Some(8),
            g_hidden: vec![31],
            d_hidden: vec![33, 17],
            batch_size: Some(16),
            seed: 4321,
            conditional: true,
            d_dropout: Some(if extras { 0.3 } else { 0.0 }),
            d_steps: if extras { 2 } else { 1 },
            g_ema: Some(if extras { 0.9 } else { 0.0 }),
            loss: extras.then_some(shadergan::config::train::Loss::Hinge),
            d_norm: extras.then_some(shadergan::config::model::DNorm::Spectral),
            ..Default::default()
        };
        let cfg = opts.resolve_with_classes(&data, None, Some(&names)).unwrap();
        let what = format!("conditional, extras {extras}");
        let mut cpu = cpu_trainer(&cfg, &data);
        let Some(mut gpu) = gpu_trainer(&cfg, &data) else { return };
        assert_eq!(gpu.snapshot().unwrap(), cpu.snapshot().unwrap(), "{what}: initial state");
        let t = tolerance("train_10_steps");
        for step in 1..=10 {
            cpu.train(1).unwrap();
            gpu.train(1).unwrap();
            let (gs, cs) = (gpu.stats().unwrap(), cpu.stats().unwrap());
            let g = [gs.d_loss, gs.g_loss, gs.d_real, gs.d_fake];
            let c = [cs.d_loss, cs.g_loss, cs.d_real, cs.d_fake];
            compare("losses", &g, &c, t).unwrap_or_else(|e| panic!("{what}, step {step}: {e}"));
        }
        assert_snapshots_close(&what, &gpu.snapshot().unwrap(), &cpu.snapshot().unwrap());
        let z = uniform(9 * 8, 9, -2.0, 2.0);
        let asked: Vec<u32> = (0..9).map(|i| (i * 5 % classes) as u32).collect();
        let (gy, cy) = (gpu.sample_classes(&z, &asked).unwrap(), cpu.sample_classes(&z, &asked).unwrap());
        compare("sample", &gy, &cy, t).unwrap_or_else(|e| panic!("{what}: {e}"));
        // The class matters: the same z asked for another class gives another sample.
        let other: Vec<u32> = asked.iter().map(|y| (y + 1) % classes as u32).collect();
        assert_ne!(cpu.sample_classes(&z, &other).unwrap(), cy, "{what}");
        assert!(cpu.sample_classes(&z, &[classes as u32; 9]).is_err(), "class {classes} does not exist");
    }
}
