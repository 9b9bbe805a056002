//! The conditional DCGAN's gradients (`--conditional --arch dcgan`) on the CPU reference against
//! central finite differences of the losses computed in f64 by an independent forward pass,
//! written here from PyTorch's definitions (Linear, ConvTranspose2d, Conv2d, BatchNorm2d in
//! training mode, BatchNorm2d(affine=False) + per-class nn.Embedding gamma and beta, the
//! projection head): every parameter of G and D of a tiny 28x28 model, class tables included.
//! It shares nothing with the kernels but the networks' tensor table. No GPU needed.

mod common;

use std::sync::Arc;

use shadergan::config::model::Arch;
use shadergan::config::TrainConfig;
use shadergan::data::Dataset;
use shadergan::kernels::activation::{Activation, LEAKY_SLOPE};
use shadergan::nn::Net;
use shadergan::rng;
use shadergan::{TrainOptions, Trainer};

fn act64(z: f64, a: Activation) -> f64 {
    match a {
        Activation::Identity => z,
        Activation::Relu => z.max(0.0),
        Activation::LeakyRelu if z > 0.0 => z,
        Activation::LeakyRelu => LEAKY_SLOPE as f64 * z,
        Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        Activation::Tanh => z.tanh(),
    }
}

/// A tensor's offset in its network's parameters, by name.
fn off(net: &Net, name: &str) -> usize {
    net.tensors().into_iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no tensor {name}")).off
}

/// Activations (rows, c, h, w), NCHW.
#[derive(Clone)]
struct T {
    v: Vec<f64>,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
}

impl T {
    fn at(&self, b: usize, c: usize, y: usize, x: usize) -> f64 {
        self.v[((b * self.c + c) * self.h + y) * self.w + x]
    }
}

/// nn.Linear without bias (weight (out, in) at `w`), plus a bias at `bias` when given; the
/// output read as (out, 1, 1) or reshaped by the caller.
fn linear(p: &[f64], w: usize, bias: Option<usize>, x: &T, out: usize) -> T {
    let fan_in = x.c * x.h * x.w;
    let mut v = vec![0.0; x.n * out];
    for b in 0..x.n {
        for o in 0..out {
            let row = &x.v[b * fan_in..(b + 1) * fan_in];
            let dot: f64 = row.iter().enumerate().map(|(i, &xi)| xi * p[w + o * fan_in + i]).sum();
            v[b * out + o] = dot + bias.map_or(0.0, |bo| p[bo + o]);
        }
    }
    T { v, n: x.n, c: out, h: 1, w: 1 }
}

/// nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False): weight (c_in, c_out, 4, 4).
fn deconv(p: &[f64], w: usize, x: &T, c_out: usize) -> T {
    let (h, wd) = (2 * x.h, 2 * x.w);
    let mut y = T { v: vec![0.0; x.n * c_out * h * wd], n: x.n, c: c_out, h, w: wd };
    for b in 0..x.n {
        for ci in 0..x.c {
            for iy in 0..x.h {
                for ix in 0..x.w {
                    let xv = x.at(b, ci, iy, ix);
                    for co in 0..c_out {
                        for ky in 0..4 {
                            for kx in 0..4 {
                                let (oy, ox) = ((iy * 2 + ky) as i64 - 1, (ix * 2 + kx) as i64 - 1);
                                if oy < 0 || ox < 0 || oy >= h as i64 || ox >= wd as i64 {
                                    continue;
                                }
                                let wv = p[w + ((ci * c_out + co) * 4 + ky) * 4 + kx];
                                y.v[((b * c_out + co) * h + oy as usize) * wd + ox as usize] += xv * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

/// nn.Conv2d(c_in, c_out, 4, 2, 1): weight (c_out, c_in, 4, 4), bias at `bias` when given.
fn conv(p: &[f64], w: usize, bias: Option<usize>, x: &T, c_out: usize) -> T {
    let (h, wd) = (x.h / 2, x.w / 2);
    let mut y = T { v: vec![0.0; x.n * c_out * h * wd], n: x.n, c: c_out, h, w: wd };
    for b in 0..x.n {
        for co in 0..c_out {
            for oy in 0..h {
                for ox in 0..wd {
                    let mut s = bias.map_or(0.0, |bo| p[bo + co]);
                    for ci in 0..x.c {
                        for ky in 0..4 {
                            for kx in 0..4 {
                                let (iy, ix) = ((oy * 2 + ky) as i64 - 1, (ox * 2 + kx) as i64 - 1);
                                if iy < 0 || ix < 0 || iy >= x.h as i64 || ix >= x.w as i64 {
                                    continue;
                                }
                                s += x.at(b, ci, iy as usize, ix as usize) * p[w + ((co * x.c + ci) * 4 + ky) * 4 + kx];
                            }
                        }
                    }
                    y.v[((b * c_out + co) * h + oy) * wd + ox] = s;
                }
            }
        }
    }
    y
}

/// Training-mode batch norm over the batch's statistics (biased variance, eps 1e-5), then
/// act(x_hat gamma + beta), gamma and beta of element (b, ch) from `affine`.
fn batch_norm(x: &T, act: Activation, affine: impl Fn(usize, usize) -> (f64, f64)) -> T {
    let (s, m) = (x.h * x.w, (x.n * x.h * x.w) as f64);
    let mut y = x.clone();
    for ch in 0..x.c {
        let idx = |b: usize, e: usize| (b * x.c + ch) * s + e;
        let elems = || (0..x.n).flat_map(move |b| (0..s).map(move |e| (b, e)));
        let mean = elems().map(|(b, e)| x.v[idx(b, e)]).sum::<f64>() / m;
        let var = elems().map(|(b, e)| (x.v[idx(b, e)] - mean).powi(2)).sum::<f64>() / m;
        let inv_std = 1.0 / (var + 1e-5).sqrt();
        for (b, e) in elems() {
            let (gamma, beta) = affine(b, ch);
            y.v[idx(b, e)] = act64((x.v[idx(b, e)] - mean) * inv_std * gamma + beta, act);
        }
    }
    y
}

/// Conditional batch norm: BatchNorm2d(c, affine=False), then gamma[y_b] and beta[y_b] from
/// the (C, c) tables `NAME.gamma.weight` and `NAME.beta.weight`.
fn cond_bn(net: &Net, p: &[f64], name: &str, x: &T, labels: &[usize], act: Activation) -> T {
    let (g, be, c) = (off(net, &format!("{name}.gamma.weight")), off(net, &format!("{name}.beta.weight")), x.c);
    batch_norm(x, act, |b, ch| (p[g + labels[b] * c + ch], p[be + labels[b] * c + ch]))
}

/// The 28x28 conditional G: [embed(y); z], [hidden, bn_hidden,] fc to (c0, 7, 7), bn1, deconv1, bn2,
/// deconv2 and the output activation.
fn g_forward(cfg: &TrainConfig, net: &Net, p: &[f64], z: &[f64], labels: &[usize]) -> T {
    let m = &cfg.model;
    let n = labels.len();
    // [embed(y); z] per row, as nn.Embedding then torch.cat.
    let (e, k) = (off(net, "embed.weight"), m.classes);
    let v = (0..n).flat_map(|r| {
        (0..k).map(move |i| p[e + labels[r] * k + i]).chain(z[r * m.latent_dim..][..m.latent_dim].iter().copied())
    });
    let mut h = T { v: v.collect(), n, c: k + m.latent_dim, h: 1, w: 1 };
    if m.g_fc_hidden > 0 {
        h = linear(p, off(net, "hidden.weight"), None, &h, m.g_fc_hidden);
        h = cond_bn(net, p, "bn_hidden", &h, labels, m.g_activation);
    }
    let c0 = 2 * m.g_channels;
    h = linear(p, off(net, "fc.weight"), None, &h, c0 * 49);
    (h.c, h.h, h.w) = (c0, 7, 7);
    h = cond_bn(net, p, "bn1", &h, labels, m.g_activation);
    h = deconv(p, off(net, "deconv1.weight"), &h, c0 / 2);
    h = cond_bn(net, p, "bn2", &h, labels, m.g_activation);
    h = deconv(p, off(net, "deconv2.weight"), &h, 1);
    h.v.iter_mut().for_each(|v| *v = act64(*v, m.g_output));
    h
}

/// The 28x28 projection D on one group of rows (its own batch statistics): conv1 + act,
/// conv2, bn2 + act, [hidden, bn_hidden + act,] then logit = w phi + b + <E[y], phi>.
fn d_forward(cfg: &TrainConfig, net: &Net, p: &[f64], x: &T, labels: &[usize]) -> Vec<f64> {
    let m = &cfg.model;
    let act = m.d_activation;
    let mut h = conv(p, off(net, "conv1.weight"), None, x, m.d_channels);
    h.v.iter_mut().for_each(|v| *v = act64(*v, act));
    h = conv(p, off(net, "conv2.weight"), None, &h, 2 * m.d_channels);
    let (w, b) = (off(net, "bn2.weight"), off(net, "bn2.bias"));
    h = batch_norm(&h, act, |_, ch| (p[w + ch], p[b + ch]));
    if m.d_fc_hidden > 0 {
        h = linear(p, off(net, "hidden.weight"), None, &h, m.d_fc_hidden);
        let (w, b) = (off(net, "bn_hidden.weight"), off(net, "bn_hidden.bias"));
        h = batch_norm(&h, act, |_, ch| (p[w + ch], p[b + ch]));
    }
    let k = h.c * h.h * h.w;
    let logits = linear(p, off(net, "fc.weight"), Some(off(net, "fc.bias")), &h, 1).v;
    let e = off(net, "embed.weight");
    (0..x.n).map(|r| logits[r] + (0..k).map(|i| p[e + labels[r] * k + i] * h.v[r * k + i]).sum::<f64>()).collect()
}

/// Mean BCE-with-logits against label y.
fn bce(z: &[f64], y: f64) -> f64 {
    z.iter().map(|&z| z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()).sum::<f64>() / z.len() as f64
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// One step at learning rate 0 on the CPU reference; its G and D gradients against central
/// differences of the f64 losses of the same inputs (noise, the fakes' drawn classes, the
/// batch's real rows and their classes).
fn check(cfg: TrainConfig, data: Arc<Dataset>) {
    let b = cfg.batch_size;
    let mut zero_lr = cfg.clone();
    zero_lr.lr = 0.0;
    let mut t = common::cpu_trainer(&zero_lr, &data, true);
    let start = t.snapshot().unwrap();
    t.train(1).unwrap();
    let d_grad = t.exec.read(t.program.d.grads).unwrap();
    let g_grad = t.exec.read(t.program.g.grads).unwrap();
    let st = t.stats().unwrap();

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
    let real = T {
        v: rows
            .iter()
            .flat_map(|&row| (0..data.dim).map(move |c| (row, c)))
            // The bytes, as the trainer scales them (`get` reads a byte as v / 255).
            .map(|(row, c)| ((data.get(row, c) * 255.0).round() * cfg.data_scale + cfg.data_shift) as f64)
            .collect(),
        n: b,
        c: 1,
        h: 28,
        w: 28,
    };
    let (zd, zg) = (to64(&zd), to64(&zg));
    let (g_net, d_net) = (&t.program.g_net, &t.program.d_net);
    let (gp, dp) = (to64(&start.g.params), to64(&start.d.params));
    let real_label = cfg.real_label as f64;
    let fake_d = g_forward(&cfg, g_net, &gp, &zd, &yd);
    let d_loss = |dp: &[f64], fake: &T| {
        bce(&d_forward(&cfg, d_net, dp, &real, &y_real), real_label) + bce(&d_forward(&cfg, d_net, dp, fake, &yd), 0.0)
    };
    let d_loss_of = |dp: &[f64]| d_loss(dp, &fake_d);
    let g_loss = |gp: &[f64]| bce(&d_forward(&cfg, d_net, &dp, &g_forward(&cfg, g_net, gp, &zg, &yg), &yg), 1.0);
    // The oracle's losses are the step's (to f32 rounding): the same inputs in the same places.
    let close_loss = |a: f32, b: f64| ((a as f64) - b).abs() < 1e-5;
    assert!(close_loss(st.d_loss, d_loss_of(&dp)) && close_loss(st.g_loss, g_loss(&gp)), "{st:?}");
    // A ReLU kink of G within h of a parameter's value makes the central difference average two
    // slopes (seen once in ~1,800 parameters at h = 1e-6); such a parameter is checked again at
    // h = 1e-8, inside the kink (f64 round-off there is ~1e-8, far below the tolerance).
    let central = |loss: &dyn Fn(&[f64]) -> f64, p: &mut Vec<f64>, i: usize, h: f64| {
        let orig = p[i];
        p[i] = orig + h;
        let up = loss(p);
        p[i] = orig - h;
        let down = loss(p);
        p[i] = orig;
        (up - down) / (2.0 * h)
    };
    let close = |a: f64, numeric: f64| (a - numeric).abs() <= 2e-5 + 2e-3 * numeric.abs();
    for (name, params, analytic, loss) in [
        ("D", &dp, &d_grad, &d_loss_of as &dyn Fn(&[f64]) -> f64),
        ("G", &gp, &g_grad, &g_loss as &dyn Fn(&[f64]) -> f64),
    ] {
        let mut p = params.clone();
        for (i, &a) in analytic.iter().enumerate() {
            let a = a as f64;
            let numeric = central(loss, &mut p, i, 1e-6);
            if close(a, numeric) {
                continue;
            }
            let fine = central(loss, &mut p, i, 1e-8);
            assert!(
                close(a, fine),
                "conditional DCGAN {name} parameter {i}: analytic {a} vs finite difference {numeric} (h 1e-6), \
                 {fine} (h 1e-8); {:?}, fc-hidden {}",
                cfg.model.g_activation,
                cfg.model.g_fc_hidden
            );
        }
    }
}

/// 10 labelled 28x28 images of 3 classes.
fn data() -> Arc<Dataset> {
    let (n, dim) = (10usize, 784usize);
    let bytes: Vec<u8> = (0..n * dim).map(|i| ((i * 37 + i / 97) % 251) as u8).collect();
    let shape = shadergan::data::ImageShape { channels: 1, height: 28, width: 28 };
    let mut d = Dataset::from_u8_images(n, shape, bytes).unwrap();
    d.classes = Some(shadergan::data::labels::ClassLabels {
        ids: (0..n).map(|i| (i * 2 % 3) as u8).collect(),
        names: shadergan::data::labels::index_names(3),
    });
    Arc::new(d)
}

/// Every parameter of a tiny conditional DCGAN at 28x28 (G's conditional batch norms' gamma and
/// beta tables, D's projection head and class embedding), without and with the hidden linear
/// layers (`bn_hidden` conditional in G, plain in D), G in ReLU (the DCGAN's) and leaky ReLU.
#[test]
fn conditional_dcgan_gradients_match_finite_differences() {
    let data = data();
    for (fc_hidden, g_act) in [(0, Activation::Relu), (5, Activation::Relu), (5, Activation::LeakyRelu)] {
        let mut cfg = TrainOptions {
            arch: Some(Arch::Dcgan),
            g_channels: 2,
            d_channels: 2,
            latent_dim: Some(3),
            batch_size: Some(4),
            g_activation: Some(g_act),
            g_fc_hidden: Some(fc_hidden),
            d_fc_hidden: Some(fc_hidden),
            conditional: true,
            seed: 11,
            ..Default::default()
        }
        .resolve_with_classes(&data, None, Some(&data.classes.as_ref().unwrap().names))
        .unwrap();
        cfg.g_ema = 0.0;
        assert_eq!((cfg.model.pack, cfg.d_steps), (1, 1));
        check(cfg, data.clone());
    }
}
