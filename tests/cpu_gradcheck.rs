//! The CPU reference's gradients against central finite differences of the losses computed in
//! f64 by an independent forward pass (written here from the formulas, on purpose: it is the
//! oracle, so it shares nothing with the kernels but the networks' tensor table). No GPU needed.

mod common;

use std::sync::Arc;

use shadergan::config::model::DNorm;
use shadergan::config::train::Loss;
use shadergan::config::TrainConfig;
use shadergan::data::Dataset;
use shadergan::kernels::activation::{Activation, LEAKY_SLOPE};
use shadergan::nn::Net;
use shadergan::rng;
use shadergan::{TrainOptions, Trainer};

/// A linear layer of a network as the f64 forward reads it.
#[derive(Clone, Copy)]
struct Layer {
    fan_in: usize,
    fan_out: usize,
    activation: Activation,
    w_off: usize,
    b_off: usize,
}

/// The linear layers of an MLP, from its tensor table: `hidden` after each but the last (a
/// conditional model's class embeddings, `embed.weight`, left out).
fn layers(net: &Net, hidden: Activation, output: Activation) -> Vec<Layer> {
    let t: Vec<_> = net.tensors().into_iter().filter(|t| !t.name.starts_with("embed.")).collect();
    let n = t.len() / 2;
    (0..n)
        .map(|i| Layer {
            fan_in: t[2 * i].shape[1],
            fan_out: t[2 * i].shape[0],
            activation: if i + 1 == n { output } else { hidden },
            w_off: t[2 * i].off,
            b_off: t[2 * i + 1].off,
        })
        .collect()
}

fn act64(z: f64, a: Activation) -> f64 {
    match a {
        Activation::Identity => z,
        Activation::Relu => z.max(0.0),
        Activation::LeakyRelu => {
            if z > 0.0 {
                z
            } else {
                LEAKY_SLOPE as f64 * z
            }
        }
        Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        Activation::Tanh => z.tanh(),
    }
}

/// Dropout as the trainer applies it to D's hidden outputs: (seed, pass, rate, first row).
type Drop = Option<(u64, u32, f32, usize)>;

/// Forward pass of an MLP in f64: input (rows, in) -> output (rows, out).
fn mlp(layout: &[Layer], p: &[f64], x: &[f64], rows: usize) -> Vec<f64> {
    mlp_drop(layout, p, x, rows, None)
}

fn mlp_drop(layout: &[Layer], p: &[f64], x: &[f64], rows: usize, drop: Drop) -> Vec<f64> {
    mlp_phi(layout, p, x, rows, drop).1
}

/// [`mlp_drop`], also returning the last layer's input (a projection D's phi).
fn mlp_phi(layout: &[Layer], p: &[f64], x: &[f64], rows: usize, drop: Drop) -> (Vec<f64>, Vec<f64>) {
    let mut h = x.to_vec();
    let mut phi = vec![];
    let n_layers = layout.len();
    for (li, l) in layout.iter().enumerate() {
        let mut y = vec![0.0; rows * l.fan_out];
        for r in 0..rows {
            for o in 0..l.fan_out {
                let mut s = p[l.b_off + o];
                for i in 0..l.fan_in {
                    s += h[r * l.fan_in + i] * p[l.w_off + o * l.fan_in + i];
                }
                y[r * l.fan_out + o] = act64(s, l.activation);
                if let (Some((seed, pass, rate, row0)), true) = (drop, li + 1 < n_layers) {
                    // Step 0's mask of this layer; element index over the whole pass's rows.
                    let key = rng::dropout_key(seed, 0, pass * 256 + li as u32);
                    let i = ((row0 + r) * l.fan_out + o) as u32;
                    let keep = rng::dropout_keep(key, i, rate);
                    y[r * l.fan_out + o] *= if keep { (1.0 / (1.0 - rate)) as f64 } else { 0.0 };
                }
            }
        }
        phi = std::mem::replace(&mut h, y);
    }
    (phi, h)
}

/// Mean BCE-with-logits against label y.
fn bce(z: &[f64], y: f64) -> f64 {
    z.iter().map(|&z| z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()).sum::<f64>() / z.len() as f64
}

/// The loss of D's logits `z` against label `y` (1 real, 0 fake) under `--loss`, or G's (`g`).
fn loss_of(loss: Loss, z: &[f64], y: f64, g: bool) -> f64 {
    let mean = |f: &dyn Fn(f64) -> f64| z.iter().map(|&z| f(z)).sum::<f64>() / z.len() as f64;
    match (loss, g) {
        (Loss::Bce, _) => bce(z, y),
        (Loss::Hinge, true) => mean(&|z| -z),
        (Loss::Hinge, false) if y > 0.0 => mean(&|z| (1.0 - z).max(0.0)),
        (Loss::Hinge, false) => mean(&|z| (1.0 + z).max(0.0)),
    }
}

/// D's parameters with each spectrally normalised weight W replaced by W / (u^T W v), u and v
/// read from D's state (held constant, as the gradient treats them).
fn spectral(net: &Net, params: &[f64], state: &[f32]) -> Vec<f64> {
    let mut p = params.to_vec();
    for t in shadergan::nn::spectral::tensors(net) {
        let (m, n) = (t.rows, t.cols);
        let w = &params[t.w_off..t.w_off + m * n];
        let sigma: f64 = (0..m)
            .map(|i| (0..n).map(|j| state[t.u_off + i] as f64 * w[i * n + j] * state[t.v_off + j] as f64).sum::<f64>())
            .sum();
        for k in 0..m * n {
            p[t.w_off + k] = w[k] / sigma;
        }
    }
    p
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn check(cfg: TrainConfig, data: Arc<Dataset>) {
    let b = cfg.batch_size;
    let mut zero_lr = cfg.clone();
    zero_lr.lr = 0.0; // Adam then leaves the weights alone, and the gradients stay readable.
    let mut t = common::cpu_trainer(&zero_lr, &data, true);
    let start = t.snapshot().unwrap();
    t.train(1).unwrap();
    // With spectral normalisation the D step reads u and v as they started; the G step after the
    // D update's power iteration.
    let after = t.snapshot().unwrap();
    assert_eq!(t.snapshot().unwrap().g.params, start.g.params);
    let d_grad = t.exec.read(t.program.d.grads).unwrap();
    let g_grad = t.exec.read(t.program.g.grads).unwrap();

    // The step's inputs, from the same seeded sources.
    let key = rng::seed_words(cfg.seed);
    let latent = cfg.model.latent_dim;
    let mut zd = vec![0f32; b * latent];
    let mut zg = vec![0f32; b * latent];
    rng::normals(key, 0, rng::STREAM_D, rng::PURPOSE_NOISE, &mut zd);
    rng::normals(key, 0, rng::STREAM_G, rng::PURPOSE_NOISE, &mut zg);
    let real: Vec<f64> = (0..b as u32)
        .flat_map(|r| {
            let row = rng::batch_row_source(cfg.seed, 0, r, b as u32, data.n as u32) as usize;
            (0..data.dim).map(move |c| (row, c))
        })
        .map(|(row, c)| (data.get(row, c) * cfg.data_scale + cfg.data_shift) as f64)
        .collect();
    let (zd, zg) = (to64(&zd), to64(&zg));
    let m = &cfg.model;
    let gl = layers(&t.program.g_net, m.g_activation, m.g_output);
    let dl = layers(&t.program.d_net, m.d_activation, Activation::Identity);
    let gp = to64(&start.g.params);
    let dp = to64(&start.d.params);

    // PacGAN: D reads `pack` consecutive samples as one row.
    let db = b / cfg.model.pack;
    let real_label = cfg.real_label as f64;
    let rate = cfg.d_dropout;
    let drop = |pass: u32, row0: usize| (rate > 0.0).then_some((cfg.seed, pass, rate, row0));
    let sn = cfg.model.d_norm == DNorm::Spectral;
    let d_net = &t.program.d_net;
    let d_weights = |dp: &[f64], state: &[f32]| if sn { spectral(d_net, dp, state) } else { dp.to_vec() };
    let loss = cfg.loss;
    let d_loss = |dp: &[f64]| {
        let dp = d_weights(dp, &start.d.state);
        let fake = mlp(&gl, &gp, &zd, b);
        // One D pass over [real; fake]: the fake rows' mask indices follow the real rows'.
        loss_of(loss, &mlp_drop(&dl, &dp, &real, db, drop(0, 0)), real_label, false)
            + loss_of(loss, &mlp_drop(&dl, &dp, &fake, db, drop(0, db)), 0.0, false)
    };
    let dp_g = d_weights(&dp, &after.d.state);
    let g_loss = |gp: &[f64]| loss_of(loss, &mlp_drop(&dl, &dp_g, &mlp(&gl, gp, &zg, b), db, drop(1, 0)), 1.0, true);

    let h = 1e-6;
    for (name, params, analytic, loss) in
        [("D", &dp, &d_grad, &d_loss as &dyn Fn(&[f64]) -> f64), ("G", &gp, &g_grad, &g_loss as &dyn Fn(&[f64]) -> f64)]
    {
        let mut p = params.clone();
        for i in 0..p.len() {
            let orig = p[i];
            p[i] = orig + h;
            let up = loss(&p);
            p[i] = orig - h;
            let down = loss(&p);
            p[i] = orig;
            let numeric = (up - down) / (2.0 * h);
            let a = analytic[i] as f64;
            assert!(
                (a - numeric).abs() <= 2e-5 + 2e-3 * numeric.abs(),
                "{name} parameter {i} ({:?}): analytic {a} vs finite difference {numeric}",
                cfg.model
            );
        }
    }
}

fn data() -> Arc<Dataset> {
    let vals: Vec<f32> = (0..9 * 5).map(|i| ((i * 37 % 101) as f32) / 100.0).collect();
    Arc::new(Dataset::from_f32(9, 5, vals).unwrap())
}

#[test]
fn gradients_match_finite_differences() {
    let data = data();
    let combos = [
        (Activation::Relu, Activation::Relu, Some(Activation::Sigmoid)),
        (Activation::LeakyRelu, Activation::LeakyRelu, Some(Activation::Tanh)),
        (Activation::Tanh, Activation::Sigmoid, Some(Activation::Identity)),
    ];
    for (i, (g_act, d_act, g_out)) in combos.into_iter().enumerate() {
        let mut cfg = TrainOptions {
            latent_dim: Some(3),
            g_hidden: vec![4],
            d_hidden: vec![6, 4],
            g_activation: Some(g_act),
            d_activation: Some(d_act),
            g_output: g_out,
            batch_size: Some(3),
            seed: 99,
            ..Default::default()
        }
        .resolve(&data)
        .unwrap();
        if i == 1 {
            // Also PacGAN packing and one-sided label smoothing.
            cfg.batch_size = 6;
            cfg.model.pack = 2;
            cfg.real_label = 0.9;
            cfg.d_dropout = 0.3;
        }
        check(cfg, data.clone());
    }
}

/// The same check with the hinge loss, and with D's weights spectrally normalised (the gradient
/// of W through W / sigma(W), u and v held constant), with PacGAN packing and dropout.
#[test]
fn hinge_and_spectral_norm_gradients_match_finite_differences() {
    let data = data();
    for (loss, d_norm) in
        [(Loss::Hinge, None), (Loss::Bce, Some(DNorm::Spectral)), (Loss::Hinge, Some(DNorm::Spectral))]
    {
        let mut cfg = TrainOptions {
            latent_dim: Some(3),
            g_hidden: vec![4],
            d_hidden: vec![6, 4],
            g_activation: Some(Activation::LeakyRelu),
            d_activation: Some(Activation::LeakyRelu),
            g_output: Some(Activation::Tanh),
            batch_size: Some(6),
            pack: Some(2),
            d_dropout: Some(0.3),
            loss: Some(loss),
            d_norm,
            seed: 5,
            ..Default::default()
        }
        .resolve(&data)
        .unwrap();
        cfg.g_ema = 0.0;
        check(cfg, data.clone());
    }
}

/// A conditional model's f64 forward passes: G reads concat(E_G[y], z); D's logit gets
/// <E_D[y], phi> added (the projection head), with E_D spectrally normalised when D is.
struct Conditional {
    classes: usize,
    g_embed: usize,
    d_embed: usize,
}

impl Conditional {
    fn of(g: &Net, d: &Net, classes: usize) -> Self {
        let off = |n: &Net| n.tensors().into_iter().find(|t| t.name.starts_with("embed.")).expect("an embedding").off;
        Conditional { classes, g_embed: off(g), d_embed: off(d) }
    }

    fn g(&self, gl: &[Layer], gp: &[f64], z: &[f64], labels: &[usize]) -> Vec<f64> {
        let (e, latent) = (self.classes, z.len() / labels.len());
        let input: Vec<f64> = labels
            .iter()
            .enumerate()
            .flat_map(|(r, &y)| {
                let embed = gp[self.g_embed + y * e..self.g_embed + (y + 1) * e].to_vec();
                embed.into_iter().chain(z[r * latent..(r + 1) * latent].iter().copied())
            })
            .collect();
        mlp(gl, gp, &input, labels.len())
    }

    fn d(&self, dl: &[Layer], dp: &[f64], x: &[f64], labels: &[usize], drop: Drop) -> Vec<f64> {
        let (phi, mut logits) = mlp_phi(dl, dp, x, labels.len(), drop);
        let k = phi.len() / labels.len();
        for (r, &y) in labels.iter().enumerate() {
            let e = &dp[self.d_embed + y * k..self.d_embed + (y + 1) * k];
            logits[r] += e.iter().zip(&phi[r * k..(r + 1) * k]).map(|(a, b)| a * b).sum::<f64>();
        }
        logits
    }
}

/// [`check`] for a conditional model: the fakes' classes from the labels stream of each update,
/// the reals' from the data.
fn check_conditional(cfg: TrainConfig, data: Arc<Dataset>) {
    let b = cfg.batch_size;
    let mut zero_lr = cfg.clone();
    zero_lr.lr = 0.0;
    let mut t = common::cpu_trainer(&zero_lr, &data, true);
    let start = t.snapshot().unwrap();
    t.train(1).unwrap();
    let after = t.snapshot().unwrap();
    let d_grad = t.exec.read(t.program.d.grads).unwrap();
    let g_grad = t.exec.read(t.program.g.grads).unwrap();

    let key = rng::seed_words(cfg.seed);
    let (latent, classes) = (cfg.model.latent_dim, cfg.model.classes);
    let (mut zd, mut zg) = (vec![0f32; b * latent], vec![0f32; b * latent]);
    rng::normals(key, 0, rng::STREAM_D, rng::PURPOSE_NOISE, &mut zd);
    rng::normals(key, 0, rng::STREAM_G, rng::PURPOSE_NOISE, &mut zg);
    let fake_labels = |stream: u32| -> Vec<usize> {
        (0..b as u32).map(|i| rng::random_class(key, 0, stream, i, classes as u32) as usize).collect()
    };
    let (yd, yg) = (fake_labels(rng::STREAM_D), fake_labels(rng::STREAM_G));
    let rows: Vec<usize> =
        (0..b as u32).map(|r| rng::batch_row_source(cfg.seed, 0, r, b as u32, data.n as u32) as usize).collect();
    let ids = &data.classes.as_ref().unwrap().ids;
    let y_real: Vec<usize> = rows.iter().map(|&r| ids[r] as usize).collect();
    let real: Vec<f64> = rows
        .iter()
        .flat_map(|&row| (0..data.dim).map(move |c| (row, c)))
        .map(|(row, c)| (data.get(row, c) * cfg.data_scale + cfg.data_shift) as f64)
        .collect();
    let (zd, zg) = (to64(&zd), to64(&zg));
    let m = &cfg.model;
    let gl = layers(&t.program.g_net, m.g_activation, m.g_output);
    let dl = layers(&t.program.d_net, m.d_activation, Activation::Identity);
    let c = Conditional::of(&t.program.g_net, &t.program.d_net, classes);
    let (gp, dp) = (to64(&start.g.params), to64(&start.d.params));
    let (rate, loss, real_label) = (cfg.d_dropout, cfg.loss, cfg.real_label as f64);
    let drop = |pass: u32, row0: usize| (rate > 0.0).then_some((cfg.seed, pass, rate, row0));
    let sn = cfg.model.d_norm == DNorm::Spectral;
    let d_net = &t.program.d_net;
    let d_weights = |dp: &[f64], state: &[f32]| if sn { spectral(d_net, dp, state) } else { dp.to_vec() };
    let d_loss = |dp: &[f64]| {
        let dp = d_weights(dp, &start.d.state);
        let fake = c.g(&gl, &gp, &zd, &yd);
        loss_of(loss, &c.d(&dl, &dp, &real, &y_real, drop(0, 0)), real_label, false)
            + loss_of(loss, &c.d(&dl, &dp, &fake, &yd, drop(0, b)), 0.0, false)
    };
    let dp_g = d_weights(&dp, &after.d.state);
    let g_loss = |gp: &[f64]| loss_of(loss, &c.d(&dl, &dp_g, &c.g(&gl, gp, &zg, &yg), &yg, drop(1, 0)), 1.0, true);
    // The embeddings' rows of classes no sample drew get exactly 0 (but through sigma, under
    // spectral normalisation, every row of D's has a gradient).
    let plain = [true, !sn];
    for ((name, grad, off, k), _) in
        [("G", &g_grad, c.g_embed, classes), ("D", &d_grad, c.d_embed, dl.last().unwrap().fan_in)]
            .into_iter()
            .zip(plain)
            .filter(|(_, plain)| *plain)
    {
        let drawn: Vec<usize> = if name == "G" {
            yd.iter().chain(&yg).copied().collect()
        } else {
            yd.iter().chain(&y_real).copied().collect()
        };
        for class in (0..classes).filter(|y| !drawn.contains(y)) {
            assert!(grad[off + class * k..off + (class + 1) * k].iter().all(|&g| g == 0.0), "{name}: class {class}");
        }
    }
    let h = 1e-6;
    for (name, params, analytic, loss) in
        [("D", &dp, &d_grad, &d_loss as &dyn Fn(&[f64]) -> f64), ("G", &gp, &g_grad, &g_loss as &dyn Fn(&[f64]) -> f64)]
    {
        let mut p = params.clone();
        for i in 0..p.len() {
            let orig = p[i];
            p[i] = orig + h;
            let up = loss(&p);
            p[i] = orig - h;
            let down = loss(&p);
            p[i] = orig;
            let numeric = (up - down) / (2.0 * h);
            let a = analytic[i] as f64;
            assert!(
                (a - numeric).abs() <= 2e-5 + 2e-3 * numeric.abs(),
                "conditional {name} parameter {i}: analytic {a} vs finite difference {numeric} ({:?}, {:?})",
                cfg.model.d_norm,
                cfg.loss
            );
        }
    }
}

/// A conditional GAN (G's class embedding, D's projection head) end to end: every parameter of
/// both networks, embeddings included, with dropout, the hinge loss and spectral norm (which
/// normalises the projection's embedding too).
#[test]
fn conditional_gradients_match_finite_differences() {
    let vals: Vec<f32> = (0..12 * 5).map(|i| ((i * 37 % 101) as f32) / 100.0).collect();
    let mut d = Dataset::from_f32(12, 5, vals).unwrap();
    let classes = 4;
    d.classes = Some(shadergan::data::labels::ClassLabels {
        ids: (0..12).map(|i| (i * 5 % classes) as u8).collect(),
        names: shadergan::data::labels::index_names(classes),
    });
    let data = Arc::new(d);
    for (loss, d_norm, dropout) in [
        (Loss::Bce, None, 0.0),
        (Loss::Bce, None, 0.3),
        (Loss::Hinge, Some(DNorm::Spectral), 0.3),
        (Loss::Bce, Some(DNorm::Spectral), 0.0),
    ] {
        let mut cfg = TrainOptions {
            latent_dim: Some(3),
            g_hidden: vec![4],
            d_hidden: vec![6, 4],
            g_activation: Some(Activation::LeakyRelu),
            d_activation: Some(Activation::LeakyRelu),
            g_output: Some(Activation::Tanh),
            batch_size: Some(5),
            d_dropout: Some(dropout),
            loss: Some(loss),
            d_norm,
            conditional: true,
            seed: 7,
            ..Default::default()
        }
        .resolve_with_classes(&data, None, Some(&data.classes.as_ref().unwrap().names))
        .unwrap();
        cfg.g_ema = 0.0;
        check_conditional(cfg, data.clone());
    }
}
