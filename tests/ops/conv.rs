//! conv.wgsl and norm.wgsl: their CPU twins against naive f64 implementations written from the
//! formulas (awkward shapes, extreme values), the backward twins against central differences of
//! an f64 forward, every tensor between NaN guards (so a twin that skips an element or touches
//! one outside its tensor fails); then the WGSL kernels against the twins through the harness.

use std::sync::Arc;

use crate::common::harness::Case;
use shadergan::data::Dataset;
use shadergan::ir::Kernel;
use shadergan::kernels::conv::twin::*;
use shadergan::kernels::conv::*;
use shadergan::kernels::norm::*;
use shadergan::kernels::tolerance::{compare, tolerance};
use shadergan::{TrainConfig, Trainer};

// ---------------------------------------------------------------- inputs and buffers

/// splitmix64: deterministic test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }

    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// NaNs before, between and after the tensors of a packed buffer.
const GUARD: usize = 5;

/// A flat buffer holding tensors at element offsets, each between NaN guards.
struct Packed {
    buf: Vec<f32>,
    offs: Vec<usize>,
    lens: Vec<usize>,
}

impl Packed {
    fn new(parts: &[&[f32]]) -> Self {
        let mut buf = vec![f32::NAN; GUARD];
        let (mut offs, mut lens) = (vec![], vec![]);
        for part in parts {
            offs.push(buf.len());
            lens.push(part.len());
            buf.extend_from_slice(part);
            buf.extend(std::iter::repeat_n(f32::NAN, GUARD));
        }
        Packed { buf, offs, lens }
    }

    /// An output buffer: tensors of these lengths, all NaN.
    fn nan(lens: &[usize]) -> Self {
        let parts: Vec<Vec<f32>> = lens.iter().map(|&n| vec![f32::NAN; n]).collect();
        Packed::new(&parts.iter().map(|v| v.as_slice()).collect::<Vec<_>>())
    }

    fn off(&self, i: usize) -> u32 {
        self.offs[i] as u32
    }

    fn get(&self, i: usize) -> &[f32] {
        &self.buf[self.offs[i]..self.offs[i] + self.lens[i]]
    }

    /// Every element outside the tensors is still NaN (nothing was written out of bounds).
    fn assert_guards(&self, name: &str) {
        for (k, v) in self.buf.iter().enumerate() {
            let inside = self.offs.iter().zip(&self.lens).any(|(&o, &n)| k >= o && k < o + n);
            assert!(inside || v.is_nan(), "{name}: wrote {v} outside its tensors, at {k}");
        }
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// |got - want| <= rel |want| + abs_of_max max|want| for every element (NaN always fails).
fn check(name: &str, got: &[f32], want: &[f64], rel: f64, abs_of_max: f64) {
    check_abs(name, got, want, rel, abs_of_max * max_abs(want));
}

/// |got - want| <= rel |want| + abs for every element (NaN always fails).
fn check_abs(name: &str, got: &[f32], want: &[f64], rel: f64, abs: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let abs = abs + 1e-30;
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let excess = if err.is_nan() { f64::INFINITY } else { err - (abs + rel * w.abs()) };
        if excess > 0.0 && worst.is_none_or(|(_, e)| excess > e) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, _)) = worst {
        panic!("{name}: worst at {i}: got {} want {} (rel {rel}, abs {abs})", got[i], want[i]);
    }
}

/// Central differences of f at x, one coordinate at a time.
fn numeric_grad(f: impl Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    let mut p = x.to_vec();
    (0..x.len())
        .map(|k| {
            p[k] = x[k] + h;
            let up = f(&p);
            p[k] = x[k] - h;
            let down = f(&p);
            p[k] = x[k];
            (up - down) / (2.0 * h)
        })
        .collect()
}

fn dot(r: &[f64], y: &[f64]) -> f64 {
    r.iter().zip(y).map(|(a, b)| a * b).sum()
}

// ---------------------------------------------------------------- f64 references

/// An ordinary conv2d's geometry, the output size computed here from the formula.
#[derive(Clone, Copy, Debug)]
struct Geo {
    n: usize,
    c_in: usize,
    h_in: usize,
    w_in: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    s: usize,
    p: usize,
    h_out: usize,
    w_out: usize,
}

impl Geo {
    /// From (n, c_in, h_in, w_in, c_out, kh, kw, stride, pad).
    fn new(&[n, c_in, h_in, w_in, c_out, kh, kw, s, p]: &[usize; 9]) -> Self {
        let h_out = (h_in + 2 * p - kh) / s + 1;
        let w_out = (w_in + 2 * p - kw) / s + 1;
        Geo { n, c_in, h_in, w_in, c_out, kh, kw, s, p, h_out, w_out }
    }

    fn shape(&self) -> Conv2dShape {
        let u = |v: usize| v as u32;
        Conv2dShape {
            n: u(self.n),
            c_in: u(self.c_in),
            h_in: u(self.h_in),
            w_in: u(self.w_in),
            c_out: u(self.c_out),
            kh: u(self.kh),
            kw: u(self.kw),
            stride: u(self.s),
            pad: u(self.p),
        }
    }

    fn x_len(&self) -> usize {
        self.n * self.c_in * self.h_in * self.w_in
    }
    fn y_len(&self) -> usize {
        self.n * self.c_out * self.h_out * self.w_out
    }
    fn w_len(&self) -> usize {
        self.c_out * self.c_in * self.kh * self.kw
    }
    fn xi(&self, b: usize, c: usize, h: usize, w: usize) -> usize {
        ((b * self.c_in + c) * self.h_in + h) * self.w_in + w
    }
    fn yi(&self, b: usize, c: usize, h: usize, w: usize) -> usize {
        ((b * self.c_out + c) * self.h_out + h) * self.w_out + w
    }
    fn wi(&self, co: usize, ci: usize, i: usize, j: usize) -> usize {
        ((co * self.c_in + ci) * self.kh + i) * self.kw + j
    }

    /// The input coordinate output position o reads through tap k, if inside the input.
    fn tap(&self, o: usize, k: usize, size: usize) -> Option<usize> {
        let v = (o * self.s + k) as isize - self.p as isize;
        (v >= 0 && (v as usize) < size).then_some(v as usize)
    }
}

/// y[b,co,oh,ow] = bias[co] + sum_{ci,i,j} x[b,ci,oh s-p+i,ow s-p+j] w[co,ci,i,j].
fn ref_conv2d(g: &Geo, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let mut y = vec![0.0; g.y_len()];
    for b in 0..g.n {
        for co in 0..g.c_out {
            for oh in 0..g.h_out {
                for ow in 0..g.w_out {
                    let mut acc = bias.map_or(0.0, |bb| bb[co]);
                    for ci in 0..g.c_in {
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                if let (Some(ih), Some(iw)) = (g.tap(oh, i, g.h_in), g.tap(ow, j, g.w_in)) {
                                    acc += x[g.xi(b, ci, ih, iw)] * w[g.wi(co, ci, i, j)];
                                }
                            }
                        }
                    }
                    y[g.yi(b, co, oh, ow)] = acc;
                }
            }
        }
    }
    y
}

/// dx[b,ci,ih,iw] = bias[ci] + sum over (co,i,j) with ih+p-i = oh s, 0 <= oh < h_out (and the
/// same for w) of dy[b,co,oh,ow] w[co,ci,i,j].
fn ref_conv2d_backward_input(g: &Geo, dy: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let mut dx = vec![0.0; g.x_len()];
    let out_of = |pos: usize, k: usize, out_size: usize| -> Option<usize> {
        let t = (pos + g.p) as isize - k as isize;
        (t >= 0 && (t as usize).is_multiple_of(g.s) && (t as usize / g.s) < out_size).then(|| t as usize / g.s)
    };
    for b in 0..g.n {
        for ci in 0..g.c_in {
            for ih in 0..g.h_in {
                for iw in 0..g.w_in {
                    let mut acc = bias.map_or(0.0, |bb| bb[ci]);
                    for co in 0..g.c_out {
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                if let (Some(oh), Some(ow)) = (out_of(ih, i, g.h_out), out_of(iw, j, g.w_out)) {
                                    acc += dy[g.yi(b, co, oh, ow)] * w[g.wi(co, ci, i, j)];
                                }
                            }
                        }
                    }
                    dx[g.xi(b, ci, ih, iw)] = acc;
                }
            }
        }
    }
    dx
}

/// dw[co,ci,i,j] = sum_{b,oh,ow} dy[b,co,oh,ow] x[b,ci,oh s-p+i,ow s-p+j].
fn ref_conv2d_backward_weight(g: &Geo, dy: &[f64], x: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; g.w_len()];
    for co in 0..g.c_out {
        for ci in 0..g.c_in {
            for i in 0..g.kh {
                for j in 0..g.kw {
                    let mut acc = 0.0;
                    for b in 0..g.n {
                        for oh in 0..g.h_out {
                            for ow in 0..g.w_out {
                                if let (Some(ih), Some(iw)) = (g.tap(oh, i, g.h_in), g.tap(ow, j, g.w_in)) {
                                    acc += dy[g.yi(b, co, oh, ow)] * x[g.xi(b, ci, ih, iw)];
                                }
                            }
                        }
                    }
                    dw[g.wi(co, ci, i, j)] = acc;
                }
            }
        }
    }
    dw
}

/// Per-channel sums of an (n, c, s) tensor.
fn ref_channel_sums(t: &[f64], n: usize, c: usize, s: usize) -> Vec<f64> {
    (0..c).map(|ch| (0..n).flat_map(|b| (0..s).map(move |k| (b * c + ch) * s + k)).map(|i| t[i]).sum()).collect()
}

/// A ConvTranspose2d layer in PyTorch's terms (weight (c_in, c_out, kh, kw)).
#[derive(Clone, Copy, Debug)]
struct TGeo {
    n: usize,
    c_in: usize,
    h_in: usize,
    w_in: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    s: usize,
    p: usize,
    h_out: usize,
    w_out: usize,
}

impl TGeo {
    /// From (n, c_in, h_in, w_in, c_out, kh, kw, stride, pad).
    fn new(&[n, c_in, h_in, w_in, c_out, kh, kw, s, p]: &[usize; 9]) -> Self {
        let h_out = (h_in - 1) * s + kh - 2 * p;
        let w_out = (w_in - 1) * s + kw - 2 * p;
        TGeo { n, c_in, h_in, w_in, c_out, kh, kw, s, p, h_out, w_out }
    }

    fn shape(&self) -> ConvTranspose2dShape {
        let u = |v: usize| v as u32;
        ConvTranspose2dShape {
            n: u(self.n),
            c_in: u(self.c_in),
            h_in: u(self.h_in),
            w_in: u(self.w_in),
            c_out: u(self.c_out),
            kh: u(self.kh),
            kw: u(self.kw),
            stride: u(self.s),
            pad: u(self.p),
        }
    }

    fn x_len(&self) -> usize {
        self.n * self.c_in * self.h_in * self.w_in
    }
    fn y_len(&self) -> usize {
        self.n * self.c_out * self.h_out * self.w_out
    }
    fn w_len(&self) -> usize {
        self.c_in * self.c_out * self.kh * self.kw
    }
}

/// PyTorch's definition, as a scatter: every input pixel X[b,ci,h,w] adds X W[ci,co,i,j] to
/// Y[b,co,h s-p+i,w s-p+j] (where that lies inside Y); plus bias[co]. Independent of conv2d.
fn ref_conv_transpose2d(t: &TGeo, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let mut y = vec![0.0; t.y_len()];
    for b in 0..t.n {
        for co in 0..t.c_out {
            for k in 0..t.h_out * t.w_out {
                y[(b * t.c_out + co) * t.h_out * t.w_out + k] = bias.map_or(0.0, |bb| bb[co]);
            }
        }
        for ci in 0..t.c_in {
            for h in 0..t.h_in {
                for wq in 0..t.w_in {
                    let xv = x[((b * t.c_in + ci) * t.h_in + h) * t.w_in + wq];
                    for co in 0..t.c_out {
                        for i in 0..t.kh {
                            for j in 0..t.kw {
                                let oy = (h * t.s + i) as isize - t.p as isize;
                                let ox = (wq * t.s + j) as isize - t.p as isize;
                                if oy < 0 || ox < 0 || oy as usize >= t.h_out || ox as usize >= t.w_out {
                                    continue;
                                }
                                let wv = w[((ci * t.c_out + co) * t.kh + i) * t.kw + j];
                                y[((b * t.c_out + co) * t.h_out + oy as usize) * t.w_out + ox as usize] += xv * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

/// Training-mode batch norm in f64: (y, batch mean, biased batch variance).
fn ref_batch_norm(
    n: usize,
    c: usize,
    s: usize,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let m = (n * s) as f64;
    let idx = |ch: usize| (0..n).flat_map(move |b| (0..s).map(move |k| (b * c + ch) * s + k));
    let mut y = vec![0.0; x.len()];
    let (mut means, mut vars) = (vec![], vec![]);
    for ch in 0..c {
        let mean = idx(ch).map(|i| x[i]).sum::<f64>() / m;
        let var = idx(ch).map(|i| (x[i] - mean).powi(2)).sum::<f64>() / m;
        for i in idx(ch) {
            y[i] = gamma[ch] * (x[i] - mean) / (var + eps).sqrt() + beta[ch];
        }
        means.push(mean);
        vars.push(var);
    }
    (y, means, vars)
}

/// The analytic backward of training-mode batch norm in f64: (dx, dgamma, dbeta).
fn ref_batch_norm_backward(
    n: usize,
    c: usize,
    s: usize,
    x: &[f64],
    dy: &[f64],
    gamma: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (_, means, vars) = ref_batch_norm(n, c, s, x, gamma, gamma, eps);
    let m = (n * s) as f64;
    let idx = |ch: usize| (0..n).flat_map(move |b| (0..s).map(move |k| (b * c + ch) * s + k));
    let mut dx = vec![0.0; x.len()];
    let (mut dgamma, mut dbeta) = (vec![], vec![]);
    for ch in 0..c {
        let inv_std = 1.0 / (vars[ch] + eps).sqrt();
        let x_hat = |i: usize| (x[i] - means[ch]) * inv_std;
        let sum_dy: f64 = idx(ch).map(|i| dy[i]).sum();
        let sum_dy_xhat: f64 = idx(ch).map(|i| dy[i] * x_hat(i)).sum();
        for i in idx(ch) {
            dx[i] = gamma[ch] * inv_std * (dy[i] - sum_dy / m - x_hat(i) * sum_dy_xhat / m);
        }
        dgamma.push(sum_dy_xhat);
        dbeta.push(sum_dy);
    }
    (dx, dgamma, dbeta)
}

// ---------------------------------------------------------------- running a conv call

/// The twin of `call.entry` on buffers (a, c, out), the bindings 1-3.
fn run_conv_twin(call: &ConvCall, a: &[f32], c: &[f32], out: &mut [f32]) {
    match call.entry {
        ConvEntry::Forward => conv2d_forward(&call.p, a, c, out),
        ConvEntry::BackwardInput => conv2d_backward_input(&call.p, a, c, out),
        ConvEntry::BackwardWeight => conv2d_backward_weight(&call.p, a, c, out),
        ConvEntry::BackwardBias => conv2d_backward_bias(&call.p, a, out),
    }
}

/// Runs a conv call on the twin: inputs packed with guards, the output tensor of `out_len`
/// pre-filled with `init` (NaN when None); returns the output tensor, after checking the guards.
fn twin_conv(
    name: &str,
    call: impl Fn(u32, &[u32], u32) -> ConvCall,
    a: &[f32],
    c: &[&[f32]],
    out_len: usize,
    init: Option<&[f32]>,
) -> Vec<f32> {
    let a = Packed::new(&[a]);
    let c = Packed::new(c);
    let mut out = match init {
        Some(v) => Packed::new(&[v]),
        None => Packed::nan(&[out_len]),
    };
    let c_offs: Vec<u32> = (0..c.offs.len()).map(|i| c.off(i)).collect();
    let call = call(a.off(0), &c_offs, out.off(0));
    run_conv_twin(&call, &a.buf, &c.buf, &mut out.buf);
    out.assert_guards(name);
    out.get(0).to_vec()
}

const TWIN_REL: f64 = 1e-5;
const TWIN_ABS: f64 = 1e-5;

/// (n, c_in, h_in, w_in, c_out, kh, kw, stride, pad) of ordinary conv2d layers.
const CONV_CASES: &[[usize; 9]] = &[
    [1, 1, 1, 1, 1, 1, 1, 1, 0], // 1x1 image, 1x1 kernel
    [1, 3, 1, 1, 2, 3, 3, 1, 1], // 1x1 image inside padding
    [2, 3, 7, 7, 5, 3, 3, 1, 1],
    [1, 7, 5, 9, 3, 4, 4, 2, 1], // DCGAN's (4, 2, 1) down on an odd size
    [3, 1, 8, 8, 7, 4, 4, 2, 1], // DCGAN's (4, 2, 1) down
    [2, 2, 4, 4, 3, 4, 4, 1, 0], // DCGAN's last D layer: 4x4 -> 1x1
    [2, 3, 9, 5, 1, 5, 5, 3, 2],
    [1, 2, 6, 6, 3, 5, 5, 2, 2],
    [1, 1, 2, 2, 1, 4, 4, 2, 1], // kernel as large as the padded input
    [2, 3, 7, 5, 2, 3, 1, 1, 0], // rectangular kernel
    [1, 2, 7, 7, 2, 1, 1, 3, 0], // stride > kernel: input pixels no output reads
    [1, 3, 5, 5, 2, 2, 2, 3, 2], // outputs that see only padding
];

/// (n, c_in, h_in, w_in, c_out, kh, kw, stride, pad) of ConvTranspose2d layers (PyTorch terms).
const TRANSPOSE_CASES: &[[usize; 9]] = &[
    [1, 4, 1, 1, 3, 4, 4, 1, 0], // DCGAN's first G layer: 1x1 -> 4x4
    [2, 3, 4, 4, 2, 4, 4, 2, 1], // DCGAN's (4, 2, 1) up: 4x4 -> 8x8
    [1, 1, 1, 1, 1, 1, 1, 1, 0],
    [2, 3, 3, 5, 2, 3, 3, 2, 1], // -> 5x9
    [1, 2, 2, 2, 1, 5, 5, 3, 2], // -> 4x4
    [1, 7, 3, 3, 3, 4, 4, 2, 1], // -> 6x6
    [2, 1, 5, 9, 7, 3, 1, 1, 1], // rectangular kernel -> 5x7
    [1, 2, 3, 3, 2, 2, 2, 3, 0], // stride > kernel: output pixels only the bias reaches
];

fn geo(c: &[usize; 9]) -> Geo {
    Geo::new(c)
}

fn tgeo(c: &[usize; 9]) -> TGeo {
    TGeo::new(c)
}

// ---------------------------------------------------------------- a. conv2d twins vs f64

fn conv2d_twins_match(g: &Geo, rng: &mut Rng, x_range: f32) {
    let shape = g.shape();
    let name = format!("{g:?}");
    assert_eq!(shape.out_hw(), (g.h_out as u32, g.w_out as u32), "{name}: output size");
    let x = rng.vec(g.x_len(), -x_range, x_range);
    let w = rng.vec(g.w_len(), -1.0, 1.0);
    let b = rng.vec(g.c_out, -1.0, 1.0);
    let dy = rng.vec(g.y_len(), -1.0, 1.0);
    let (x64, w64, b64, dy64) = (f64s(&x), f64s(&w), f64s(&b), f64s(&dy));

    for with_bias in [false, true] {
        let y = twin_conv(
            &name,
            |a, c, o| shape.forward(a, c[0], with_bias.then_some(c[1]), o),
            &x,
            &[&w, &b],
            g.y_len(),
            None,
        );
        let want = ref_conv2d(g, &x64, &w64, with_bias.then_some(b64.as_slice()));
        check(&format!("conv2d_forward bias={with_bias} {name}"), &y, &want, TWIN_REL, TWIN_ABS);
    }

    // The backward twins, overwriting (NaN-filled outputs) and accumulating onto `init`.
    let init_x = rng.vec(g.x_len(), -1.0, 1.0);
    let init_w = rng.vec(g.w_len(), -1.0, 1.0);
    let init_b = rng.vec(g.c_out, -1.0, 1.0);
    let plus = |init: &[f32], v: &[f64]| -> Vec<f64> { init.iter().zip(v).map(|(&i, &v)| i as f64 + v).collect() };
    let want_dx = ref_conv2d_backward_input(g, &dy64, &w64, None);
    let want_dw = ref_conv2d_backward_weight(g, &dy64, &x64);
    let want_db = ref_channel_sums(&dy64, g.n, g.c_out, g.h_out * g.w_out);
    for acc in [false, true] {
        let (ix, iw, ib) =
            if acc { (Some(&init_x[..]), Some(&init_w[..]), Some(&init_b[..])) } else { (None, None, None) };
        let dx = twin_conv(&name, |a, c, o| shape.backward_input(a, c[0], o, acc), &dy, &[&w], g.x_len(), ix);
        let dw = twin_conv(&name, |a, c, o| shape.backward_weight(a, c[0], o, acc), &dy, &[&x], g.w_len(), iw);
        let db = twin_conv(&name, |a, _, o| shape.backward_bias(a, o, acc), &dy, &[], g.c_out, ib);
        let (wx, ww, wb) = if acc {
            (plus(&init_x, &want_dx), plus(&init_w, &want_dw), plus(&init_b, &want_db))
        } else {
            (want_dx.clone(), want_dw.clone(), want_db.clone())
        };
        check(&format!("conv2d_backward_input acc={acc} {name}"), &dx, &wx, TWIN_REL, TWIN_ABS);
        check(&format!("conv2d_backward_weight acc={acc} {name}"), &dw, &ww, TWIN_REL, TWIN_ABS);
        check(&format!("conv2d_backward_bias acc={acc} {name}"), &db, &wb, TWIN_REL, TWIN_ABS);
    }
}

#[test]
fn conv2d_twins_match_f64_references() {
    let mut rng = Rng(1);
    for case in CONV_CASES {
        conv2d_twins_match(&geo(case), &mut rng, 1.0);
    }
}

#[test]
fn conv2d_twins_match_f64_references_at_extreme_values() {
    let mut rng = Rng(2);
    for case in &CONV_CASES[2..5] {
        conv2d_twins_match(&geo(case), &mut rng, 1e4);
    }
}

#[test]
fn conv2d_backward_input_adds_a_per_input_channel_bias() {
    // The transpose's forward uses it; checked directly here against the formula.
    let mut rng = Rng(3);
    let g = geo(&CONV_CASES[3]);
    let (dy, w, b) = (rng.vec(g.y_len(), -1.0, 1.0), rng.vec(g.w_len(), -1.0, 1.0), rng.vec(g.c_in, -1.0, 1.0));
    let p = g.shape().params();
    let got = twin_conv(
        "bias per c_in",
        |a, c, o| ConvCall {
            entry: ConvEntry::BackwardInput,
            p: ConvParams { y_off: a, w_off: c[0], bias_off: c[1], has_bias: 1, x_off: o, ..p },
            aux: None,
        },
        &dy,
        &[&w, &b],
        g.x_len(),
        None,
    );
    let want = ref_conv2d_backward_input(&g, &f64s(&dy), &f64s(&w), Some(&f64s(&b)));
    check("conv2d_backward_input with bias", &got, &want, TWIN_REL, TWIN_ABS);
}

// ---------------------------------------------------------------- a. conv_transpose2d via builders

/// The transpose's forward (on conv2d_backward_input) against PyTorch's scatter definition.
fn transpose_forward(t: &TGeo, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    let shape = t.shape();
    let bias = b.unwrap_or(&[]);
    twin_conv(&format!("{t:?}"), |a, c, o| shape.forward(a, c[0], b.map(|_| c[1]), o), x, &[w, bias], t.y_len(), None)
}

#[test]
fn conv_transpose2d_forward_matches_pytorchs_definition() {
    let mut rng = Rng(4);
    for case in TRANSPOSE_CASES {
        let t = tgeo(case);
        assert_eq!(t.shape().out_hw(), (t.h_out as u32, t.w_out as u32), "{t:?}: output size");
        let x = rng.vec(t.x_len(), -1.0, 1.0);
        let w = rng.vec(t.w_len(), -1.0, 1.0);
        let b = rng.vec(t.c_out, -1.0, 1.0);
        for bias in [None, Some(b.as_slice())] {
            let got = transpose_forward(&t, &x, &w, bias);
            let b64 = bias.map(f64s);
            let want = ref_conv_transpose2d(&t, &f64s(&x), &f64s(&w), b64.as_deref());
            check(&format!("conv_transpose2d forward bias={} {t:?}", bias.is_some()), &got, &want, TWIN_REL, TWIN_ABS);
        }
    }
}

// ---------------------------------------------------------------- b. finite differences

const FD_STEP: f64 = 1e-3;

#[test]
fn conv2d_backward_twins_match_finite_differences() {
    let mut rng = Rng(5);
    for case in [[2, 3, 5, 5, 2, 3, 3, 1, 1], [1, 2, 7, 6, 3, 4, 4, 2, 1], [2, 1, 5, 4, 2, 2, 3, 3, 2]] {
        let g = geo(&case);
        let shape = g.shape();
        let (x, w, b, r) = (
            rng.vec(g.x_len(), -1.0, 1.0),
            rng.vec(g.w_len(), -1.0, 1.0),
            rng.vec(g.c_out, -1.0, 1.0),
            rng.vec(g.y_len(), -1.0, 1.0),
        );
        let (x64, w64, b64, r64) = (f64s(&x), f64s(&w), f64s(&b), f64s(&r));
        let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&r64, &ref_conv2d(&g, x, w, Some(b)));
        let fd_dx = numeric_grad(|v| loss(v, &w64, &b64), &x64, FD_STEP);
        let fd_dw = numeric_grad(|v| loss(&x64, v, &b64), &w64, FD_STEP);
        let fd_db = numeric_grad(|v| loss(&x64, &w64, v), &b64, FD_STEP);
        // dL/dy = r.
        let dx = twin_conv("fd", |a, c, o| shape.backward_input(a, c[0], o, false), &r, &[&w], g.x_len(), None);
        let dw = twin_conv("fd", |a, c, o| shape.backward_weight(a, c[0], o, false), &r, &[&x], g.w_len(), None);
        let db = twin_conv("fd", |a, _, o| shape.backward_bias(a, o, false), &r, &[], g.c_out, None);
        check(&format!("conv2d dx vs fd {g:?}"), &dx, &fd_dx, 1e-4, 1e-5);
        check(&format!("conv2d dw vs fd {g:?}"), &dw, &fd_dw, 1e-4, 1e-5);
        check(&format!("conv2d db vs fd {g:?}"), &db, &fd_db, 1e-4, 1e-5);
    }
}

#[test]
fn conv_transpose2d_backward_twins_match_finite_differences() {
    let mut rng = Rng(6);
    for case in [[2, 3, 4, 4, 2, 4, 4, 2, 1], [1, 2, 1, 1, 3, 4, 4, 1, 0], [2, 2, 3, 2, 3, 3, 2, 3, 1]] {
        let t = tgeo(&case);
        let shape = t.shape();
        let (x, w, b, r) = (
            rng.vec(t.x_len(), -1.0, 1.0),
            rng.vec(t.w_len(), -1.0, 1.0),
            rng.vec(t.c_out, -1.0, 1.0),
            rng.vec(t.y_len(), -1.0, 1.0),
        );
        let (x64, w64, b64, r64) = (f64s(&x), f64s(&w), f64s(&b), f64s(&r));
        let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&r64, &ref_conv_transpose2d(&t, x, w, Some(b)));
        let fd_dx = numeric_grad(|v| loss(v, &w64, &b64), &x64, FD_STEP);
        let fd_dw = numeric_grad(|v| loss(&x64, v, &b64), &w64, FD_STEP);
        let fd_db = numeric_grad(|v| loss(&x64, &w64, v), &b64, FD_STEP);
        // The role-swapped calls, as the layer code will make them: dL/dY = r.
        let dx = twin_conv("fd", |a, c, o| shape.backward_input(a, c[0], o, false), &r, &[&w], t.x_len(), None);
        let dw = twin_conv("fd", |a, c, o| shape.backward_weight(a, c[0], o, false), &x, &[&r], t.w_len(), None);
        let db = twin_conv("fd", |a, _, o| shape.backward_bias(a, o, false), &r, &[], t.c_out, None);
        check(&format!("conv_transpose2d dX vs fd {t:?}"), &dx, &fd_dx, 1e-4, 1e-5);
        check(&format!("conv_transpose2d dW vs fd {t:?}"), &dw, &fd_dw, 1e-4, 1e-5);
        check(&format!("conv_transpose2d db vs fd {t:?}"), &db, &fd_db, 1e-4, 1e-5);
        // Accumulating onto earlier gradients.
        let (ix, iw, ib) = (rng.vec(t.x_len(), -1.0, 1.0), rng.vec(t.w_len(), -1.0, 1.0), rng.vec(t.c_out, -1.0, 1.0));
        let plus = |init: &[f32], v: &[f64]| -> Vec<f64> { init.iter().zip(v).map(|(&i, &v)| i as f64 + v).collect() };
        let dx = twin_conv("fd", |a, c, o| shape.backward_input(a, c[0], o, true), &r, &[&w], t.x_len(), Some(&ix));
        let dw = twin_conv("fd", |a, c, o| shape.backward_weight(a, c[0], o, true), &x, &[&r], t.w_len(), Some(&iw));
        let db = twin_conv("fd", |a, _, o| shape.backward_bias(a, o, true), &r, &[], t.c_out, Some(&ib));
        check(&format!("conv_transpose2d dX += {t:?}"), &dx, &plus(&ix, &fd_dx), 1e-4, 1e-5);
        check(&format!("conv_transpose2d dW += {t:?}"), &dw, &plus(&iw, &fd_dw), 1e-4, 1e-5);
        check(&format!("conv_transpose2d db += {t:?}"), &db, &plus(&ib, &fd_db), 1e-4, 1e-5);
    }
}

// ---------------------------------------------------------------- batch norm: running the twins

/// The buffers of one batch-norm layer, as the bindings hold them.
struct Bn {
    p: NormParams,
    x: Packed,
    /// gamma, beta (binding 2 of forward and eval).
    params: Packed,
    /// running_mean, running_var (binding 4).
    state: Packed,
    /// The pass's saved statistics (binding 5).
    saved: Packed,
}

impl Bn {
    fn new(n: usize, c: usize, s: usize, x: &[f32], gamma: &[f32], beta: &[f32], running: (&[f32], &[f32])) -> Self {
        let x = Packed::new(&[x]);
        let params = Packed::new(&[gamma, beta]);
        let state = Packed::new(&[running.0, running.1]);
        let saved = Packed::nan(&[3 * c]);
        let p = NormParams {
            x_off: x.off(0),
            gamma_off: params.off(0),
            beta_off: params.off(1),
            mean_off: state.off(0),
            var_off: state.off(1),
            save_off: saved.off(0),
            ..NormParams::new(n as u32, c as u32, s as u32)
        };
        Bn { p, x, params, state, saved }
    }

    fn len(&self) -> usize {
        self.x.lens[0]
    }

    /// Training-mode forward: y (the running stats and saved stats land in self.state).
    fn forward(&mut self, update_running: bool) -> Vec<f32> {
        let mut y = Packed::nan(&[self.len()]);
        let p = NormParams { y_off: y.off(0), update_running: update_running as u32, ..self.p };
        batch_norm_forward(&p, &self.x.buf, &self.params.buf, &mut y.buf, &mut self.state.buf, &mut self.saved.buf);
        y.assert_guards("batch_norm_forward y");
        self.state.assert_guards("batch_norm_forward state");
        self.saved.assert_guards("batch_norm_forward saved");
        y.get(0).to_vec()
    }

    fn eval(&self) -> Vec<f32> {
        let mut y = Packed::nan(&[self.len()]);
        let p = NormParams { y_off: y.off(0), ..self.p };
        batch_norm_eval(&p, &self.x.buf, &self.params.buf, &mut y.buf, &self.state.buf);
        y.assert_guards("batch_norm_eval y");
        y.get(0).to_vec()
    }

    /// (dx, dgamma, dbeta) for dy, after a forward; accumulating onto `init` = (dx, dgamma, dbeta).
    fn backward(&self, dy: &[f32], init: Option<(&[f32], &[f32], &[f32])>) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let c = self.p.c as usize;
        let dy = Packed::new(&[dy]);
        let (mut dx, mut grads) = match init {
            Some((dx, dg, db)) => (Packed::new(&[dx]), Packed::new(&[dg, db])),
            None => (Packed::nan(&[self.len()]), Packed::nan(&[c, c])),
        };
        let p = NormParams {
            dy_off: dy.off(0),
            dx_off: dx.off(0),
            dgamma_off: grads.off(0),
            dbeta_off: grads.off(1),
            accumulate: init.is_some() as u32,
            ..self.p
        };
        batch_norm_backward_input(&p, &self.x.buf, &dy.buf, &mut dx.buf, &self.saved.buf);
        batch_norm_backward_params(&p, &self.x.buf, &dy.buf, &mut grads.buf, &self.saved.buf);
        dx.assert_guards("batch_norm_backward_input dx");
        grads.assert_guards("batch_norm_backward_params grads");
        (dx.get(0).to_vec(), grads.get(0).to_vec(), grads.get(1).to_vec())
    }
}

/// How much rounding the mean (relative to the data's magnitude) is magnified by 1/std: the
/// scale of the f32 twin's unavoidable error in x_hat.
fn bn_condition(n: usize, c: usize, s: usize, x: &[f64], eps: f64) -> f64 {
    let (_, _, vars) = ref_batch_norm(n, c, s, x, &vec![1.0; c], &vec![0.0; c], eps);
    let x_max = max_abs(x).max(1e-30);
    vars.iter().map(|v| x_max / (v + eps).sqrt()).fold(1.0, f64::max)
}

/// (n, c, s) of batch-norm layers: linear (s = 1), s > 256, c = 65, m = 1, m > 256 strided.
const BN_CASES: &[[usize; 3]] =
    &[[4, 3, 1], [1, 1, 1], [1, 3, 1], [2, 65, 3], [2, 3, 300], [3, 1, 700], [1, 3, 513], [64, 2, 1]];

fn batch_norm_twins_match(n: usize, c: usize, s: usize, x: &[f32], rng: &mut Rng) {
    let name = format!("batch norm n {n} c {c} s {s}");
    let eps = 1e-5;
    let gamma = rng.vec(c, 0.5, 2.0);
    let beta = rng.vec(c, -1.0, 1.0);
    let rm = rng.vec(c, -1.0, 1.0);
    let rv = rng.vec(c, 0.5, 2.0);
    let dy = rng.vec(x.len(), -1.0, 1.0);
    let (x64, g64, b64, dy64) = (f64s(x), f64s(&gamma), f64s(&beta), f64s(&dy));
    let cond = bn_condition(n, c, s, &x64, eps);
    let tol = 64.0 * f32::EPSILON as f64 * cond;

    let mut bn = Bn::new(n, c, s, x, &gamma, &beta, (&rm, &rv));
    let y = bn.forward(true);
    let (want_y, means, vars) = ref_batch_norm(n, c, s, &x64, &g64, &b64, eps);
    check(&format!("{name}: y"), &y, &want_y, TWIN_REL, tol);
    let saved = bn.saved.get(0).to_vec();
    // The mean's error: a few ulp of the data's magnitude.
    let x_max = max_abs(&x64);
    check_abs(&format!("{name}: saved mean"), &saved[..c], &means, 0.0, 16.0 * f32::EPSILON as f64 * x_max);
    let inv_std: Vec<f64> = vars.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    check(&format!("{name}: saved inv_std"), &saved[c..2 * c], &inv_std, 1e-4, 0.0);
    assert_eq!(&saved[2 * c..], &gamma[..], "{name}: saved gamma");

    // Running statistics: momentum 0.1, the unbiased variance (factor m / (m - 1); 1 at m = 1).
    let m = (n * s) as f64;
    let unbias = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
    let want_rm: Vec<f64> = (0..c).map(|k| 0.9 * rm[k] as f64 + 0.1 * means[k]).collect();
    let want_rv: Vec<f64> = (0..c).map(|k| 0.9 * rv[k] as f64 + 0.1 * vars[k] * unbias).collect();
    check(&format!("{name}: running mean"), bn.state.get(0), &want_rm, 1e-5, tol);
    check(&format!("{name}: running var"), bn.state.get(1), &want_rv, 1e-4, 1e-6);

    // Without update_running the running statistics stay bit for bit; y is the same.
    let before = bn.state.buf.clone();
    let y_again = bn.forward(false);
    assert_eq!(
        y_again.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(bn.state.get(0), &before[bn.state.offs[0]..][..c], "{name}: running mean changed");
    assert_eq!(bn.state.get(1), &before[bn.state.offs[1]..][..c], "{name}: running var changed");

    // Backward, overwriting and accumulating.
    let (want_dx, want_dg, want_db) = ref_batch_norm_backward(n, c, s, &x64, &dy64, &g64, eps);
    let (dx, dg, db) = bn.backward(&dy, None);
    check(&format!("{name}: dx"), &dx, &want_dx, TWIN_REL, tol);
    check(&format!("{name}: dgamma"), &dg, &want_dg, TWIN_REL, tol);
    check(&format!("{name}: dbeta"), &db, &want_db, TWIN_REL, TWIN_ABS);
    let (ix, ig, ib) = (rng.vec(x.len(), -1.0, 1.0), rng.vec(c, -1.0, 1.0), rng.vec(c, -1.0, 1.0));
    let (dx2, dg2, db2) = bn.backward(&dy, Some((&ix, &ig, &ib)));
    let plus =
        |init: &[f32], got: &[f32]| -> Vec<f64> { init.iter().zip(got).map(|(&i, &g)| i as f64 + g as f64).collect() };
    check(&format!("{name}: dx accumulated"), &dx2, &plus(&ix, &dx), 1e-6, 1e-6);
    check(&format!("{name}: dgamma accumulated"), &dg2, &plus(&ig, &dg), 1e-6, 1e-6);
    check(&format!("{name}: dbeta accumulated"), &db2, &plus(&ib, &db), 1e-6, 1e-6);

    // Eval mode, with the running statistics just written.
    let (rm1, rv1) = (f64s(bn.state.get(0)), f64s(bn.state.get(1)));
    let want_eval: Vec<f64> = (0..x.len())
        .map(|i| {
            let ch = (i / s) % c;
            g64[ch] * (x64[i] - rm1[ch]) / (rv1[ch] + eps).sqrt() + b64[ch]
        })
        .collect();
    let x_max_eval = (0..c).map(|k| x_max.max(rm1[k].abs()) / (rv1[k] + eps).sqrt()).fold(1.0, f64::max);
    check(&format!("{name}: eval"), &bn.eval(), &want_eval, TWIN_REL, 64.0 * f32::EPSILON as f64 * x_max_eval);
}

#[test]
fn batch_norm_twins_match_f64_references() {
    let mut rng = Rng(7);
    for &[n, c, s] in BN_CASES {
        let x = rng.vec(n * c * s, -2.0, 3.0);
        batch_norm_twins_match(n, c, s, &x, &mut rng);
    }
}

#[test]
fn batch_norm_twins_match_f64_references_at_extreme_values() {
    let mut rng = Rng(8);
    for &[n, c, s] in &BN_CASES[3..6] {
        // +-1e4 inputs, and inputs of mean 1e4 and spread 1 (where E[x^2] - mean^2 would fail).
        let x = rng.vec(n * c * s, -1e4, 1e4);
        batch_norm_twins_match(n, c, s, &x, &mut rng);
        let x: Vec<f32> = rng.vec(n * c * s, -1.0, 1.0).iter().map(|v| 1e4 + v).collect();
        batch_norm_twins_match(n, c, s, &x, &mut rng);
    }
}

#[test]
fn batch_norm_of_a_constant_channel_or_one_value_is_finite() {
    // m = 1 (one value per channel) and constant channels: variance 0, so inv_std = 1/sqrt(eps).
    for (n, c, s, value) in [(1, 3, 1, 2.5f32), (4, 2, 5, 7.0), (2, 1, 300, -1e4)] {
        let len = n * c * s;
        let x = vec![value; len];
        let gamma = vec![1.5; c];
        let beta = vec![0.25; c];
        let mut bn = Bn::new(n, c, s, &x, &gamma, &beta, (&vec![0.0; c], &vec![1.0; c]));
        let y = bn.forward(true);
        let dy: Vec<f32> = (0..len).map(|i| (i % 7) as f32 - 3.0).collect();
        let (dx, dg, db) = bn.backward(&dy, None);
        let all = [&y, &dx, &dg, &db, &bn.state.get(0).to_vec(), &bn.state.get(1).to_vec()];
        assert!(all.iter().all(|v| v.iter().all(|x| x.is_finite())), "{n} {c} {s}: not finite");
        let saved = bn.saved.get(0);
        let mean_err = 4.0 * f32::EPSILON * value.abs();
        for ch in 0..c {
            assert!((saved[ch] - value).abs() <= mean_err, "mean {} of a constant {value}", saved[ch]);
            let inv_std = saved[c + ch] as f64;
            assert!((inv_std * 1e-5f64.sqrt() - 1.0).abs() < 1e-3, "inv_std {inv_std} at variance ~0");
        }
        // y = beta up to the mean's rounding (an ulp of the value, magnified by 1/sqrt(eps)).
        let y_err = 1.5 * mean_err * 1e5f32.sqrt();
        assert!(y.iter().all(|v| (v - 0.25).abs() <= y_err), "y of a constant channel: {y:?}");
        // Running variance: 0.9 * 1 + 0.1 * ~0 (no division by m - 1 = 0 at m = 1).
        assert!(bn.state.get(1).iter().all(|v| (v - 0.9).abs() < 1e-6), "running var {:?}", bn.state.get(1));
        if n * s == 1 {
            assert!(dx.iter().all(|&v| v == 0.0), "dx at m = 1: {dx:?}");
            assert!(dg.iter().all(|&v| v == 0.0), "dgamma at m = 1: {dg:?}");
            assert_eq!(db, dy, "dbeta at m = 1");
        }
    }
}

#[test]
fn batch_norm_backward_twins_match_finite_differences() {
    let mut rng = Rng(9);
    let eps = 1e-5;
    for [n, c, s] in [[3, 2, 5], [4, 3, 1], [2, 1, 300]] {
        let len = n * c * s;
        let (x, gamma, beta, r) =
            (rng.vec(len, -2.0, 3.0), rng.vec(c, 0.5, 2.0), rng.vec(c, -1.0, 1.0), rng.vec(len, -1.0, 1.0));
        let (x64, g64, b64, r64) = (f64s(&x), f64s(&gamma), f64s(&beta), f64s(&r));
        let loss = |x: &[f64], g: &[f64], b: &[f64]| dot(&r64, &ref_batch_norm(n, c, s, x, g, b, eps).0);
        let h = 1e-5;
        let fd_dx = numeric_grad(|v| loss(v, &g64, &b64), &x64, h);
        let fd_dg = numeric_grad(|v| loss(&x64, v, &b64), &g64, h);
        let fd_db = numeric_grad(|v| loss(&x64, &g64, v), &b64, h);
        let mut bn = Bn::new(n, c, s, &x, &gamma, &beta, (&vec![0.0; c], &vec![1.0; c]));
        bn.forward(true);
        let (dx, dg, db) = bn.backward(&r, None);
        let name = format!("batch norm fd n {n} c {c} s {s}");
        check(&format!("{name}: dx"), &dx, &fd_dx, 1e-3, 1e-4);
        check(&format!("{name}: dgamma"), &dg, &fd_dg, 1e-3, 1e-4);
        check(&format!("{name}: dbeta"), &db, &fd_db, 1e-3, 1e-4);
    }
}

// ---------------------------------------------------------------- params, sizes, workgroups

#[test]
fn workgroups_cover_every_output() {
    for case in CONV_CASES.iter().chain(TILED_CASES) {
        let g = geo(case);
        let shape = g.shape();
        let cover = |call: ConvCall, n: usize| {
            let [x, y, z] = call.op_as(Variant::Direct, 0, 1, 2).workgroups();
            assert!(x <= 65_535 && y <= 65_535 && z == 1);
            assert!((x * y) as usize * LANES >= n, "{:?}: {x}x{y} workgroups for {n}", call.entry);
        };
        cover(shape.forward(0, 0, None, 0), g.y_len());
        cover(shape.backward_input(0, 0, 0, false), g.x_len());
        cover(shape.backward_weight(0, 0, 0, false), g.w_len());
        cover(shape.backward_bias(0, 0, false), g.c_out * LANES);
        // The tiled kernels: every tile has a workgroup, and the tiles cover every output.
        let tiles = |call: ConvCall, want: usize| {
            let [x, y, z] = call.op_as(Variant::Tiled, 0, 1, 2).workgroups();
            assert!(x <= 65_535 && y <= 65_535 && z == 1);
            assert!((x * y) as usize >= want, "{:?}: {x}x{y} workgroups for {want} tiles", call.entry);
        };
        let p = shape.params();
        let ((tr, tc), (wr, wc)) = (p.forward_tile(), p.backward_weight_tile());
        assert!(tr * tc == 4 * 4 * 256 && wr * wc == 4 * 4 * 64 && tr <= 64 && wr <= 32, "{case:?}");
        assert!(tr >= g.c_out.min(64) && wr >= g.c_out.min(32), "{case:?}: tiles of channels that exist");
        assert_eq!(p.forward_tiles(), g.c_out.div_ceil(tr) * (g.n * g.h_out * g.w_out).div_ceil(tc));
        tiles(shape.forward(0, 0, None, 0), p.forward_tiles());
        let s = g.s;
        let classes = s.min(g.h_in) * s.min(g.w_in);
        let positions = g.n * g.h_in.div_ceil(s) * g.w_in.div_ceil(s);
        assert!(classes * positions >= g.n * g.h_in * g.w_in, "{case:?}: parity classes cover dx");
        let (ir, ic) = p.backward_input_tile();
        assert_eq!(p.backward_input_tiles(), classes * g.c_in.div_ceil(ir) * positions.div_ceil(ic));
        tiles(shape.backward_input(0, 0, 0, false), p.backward_input_tiles());
        assert_eq!(p.backward_weight_tiles(), g.c_out.div_ceil(wr) * (g.c_in * g.kh * g.kw).div_ceil(wc));
        tiles(shape.backward_weight(0, 0, 0, false), p.backward_weight_tiles());
    }
    // Tiles by channel count: 64 x 64 from 64 channels up, short and wide below.
    assert_eq!(tiled::tile_shape(1, 256, 16), (4, 1024));
    assert_eq!(tiled::tile_shape(3, 256, 16), (4, 1024));
    assert_eq!(tiled::tile_shape(7, 256, 16), (8, 512));
    assert_eq!(tiled::tile_shape(33, 256, 16), (64, 64));
    assert_eq!(tiled::tile_shape(65, 256, 16), (64, 64));
    assert_eq!(tiled::tile_shape(1, 64, 8), (4, 256));
    assert_eq!(tiled::tile_shape(128, 64, 8), (32, 32));
    let big = Conv2dShape { n: 64, c_in: 3, h_in: 64, w_in: 64, c_out: 64, kh: 4, kw: 4, stride: 2, pad: 1 };
    let direct = |call: ConvCall| call.op_as(Variant::Direct, 0, 1, 2).workgroups();
    // 64 * 64 * 32 * 32 outputs = 4,194,304: 16,384 workgroups in one row.
    assert_eq!(direct(big.forward(0, 0, None, 0)), [16_384, 1, 1]);
    assert_eq!(direct(big.backward_bias(0, 0, false)), [64, 1, 1]);
    // Tiled: 1 x 1024 tiles of 64 channels x 64 columns (65,536 columns).
    assert_eq!(big.forward(0, 0, None, 0).op_as(Variant::Tiled, 0, 1, 2).workgroups(), [1024, 1, 1]);
    let t = ConvTranspose2dShape { n: 64, c_in: 128, h_in: 16, w_in: 16, c_out: 64, kh: 4, kw: 4, stride: 2, pad: 1 };
    // The transpose's output (64, 64, 32, 32) is the dx side of its conv2d view; its bias sum
    // runs one workgroup per output channel.
    assert_eq!(direct(t.forward(0, 0, None, 0)), [16_384, 1, 1]);
    assert_eq!(direct(t.backward_bias(0, 0, false)), [64, 1, 1]);
    // Tiled: 4 parity classes x 1 channel tile x 256 tiles of 64 positions (64 x 16 x 16 each).
    assert_eq!(t.forward(0, 0, None, 0).op_as(Variant::Tiled, 0, 1, 2).workgroups(), [1024, 1, 1]);
    // The weight gradient's tiles of 32 x 32: (128 / 32) x (64 * 16 / 32).
    assert_eq!(t.backward_weight(0, 0, 0, false).op_as(Variant::Tiled, 0, 1, 2).workgroups(), [128, 1, 1]);
    let p = NormParams::new(64, 512, 16);
    assert_eq!(BatchNormForward { p, a: 0, c: 1, out: 2, state: 3, saved: 4 }.workgroups(), [512, 1, 1]);
    assert_eq!(BatchNormEval { p, a: 0, c: 1, out: 2, state: 3 }.workgroups(), [2048, 1, 1]);
}

#[test]
fn transpose_builders_swap_the_roles() {
    let t = ConvTranspose2dShape { n: 2, c_in: 8, h_in: 4, w_in: 5, c_out: 3, kh: 4, kw: 4, stride: 2, pad: 1 };
    assert_eq!(t.out_hw(), (8, 10));
    let f = t.forward(10, 20, Some(30), 40);
    assert_eq!(f.entry, ConvEntry::BackwardInput);
    let p = f.p;
    assert_eq!((p.c_out, p.h_out, p.w_out, p.c_in, p.h_in, p.w_in), (8, 4, 5, 3, 8, 10));
    assert_eq!((p.y_off, p.w_off, p.bias_off, p.has_bias, p.x_off), (10, 20, 30, 1, 40));
    let bi = t.backward_input(10, 20, 40, true);
    assert_eq!(bi.entry, ConvEntry::Forward);
    assert_eq!((bi.p.x_off, bi.p.w_off, bi.p.y_off, bi.p.has_bias, bi.p.accumulate), (10, 20, 40, 0, 1));
    let bw = t.backward_weight(10, 40, 50, false);
    assert_eq!(bw.entry, ConvEntry::BackwardWeight);
    assert_eq!((bw.p.y_off, bw.p.x_off, bw.p.w_off), (10, 40, 50));
    let bb = t.backward_bias(40, 60, true);
    assert_eq!(bb.entry, ConvEntry::BackwardBias);
    assert_eq!((bb.p.bias_side, bb.p.x_off, bb.p.bias_off, bb.p.accumulate), (BIAS_SIDE_INPUT, 40, 60, 1));
}

// ---------------------------------------------------------------- the WGSL kernels vs the twins

/// One conv call on both backends, on the direct or the tiled kernel: a (binding 1), c (binding
/// 2: w, then b), out starting as NaN or, when accumulating, as `init`.
fn conv_both(what: &str, v: Variant, call: ConvCall, a: &[f32], c: &[f32], out_len: usize, init: Option<&[f32]>) {
    let mut case = Case::new();
    let (ab, cb) = (case.input("a", a.to_vec()), case.input("c", c.to_vec()));
    let out = match init {
        Some(v) => case.input("out", v.to_vec()),
        None => case.output("out", out_len),
    };
    let op = call.op_as(v, ab, cb, out);
    let tiled = op.entry().ends_with("_tiled");
    assert_eq!(tiled, v == Variant::Tiled && call.entry != ConvEntry::BackwardBias, "{what}: runs {}", op.entry());
    case.check(op, &[out], what);
}

/// Every conv2d call of these layers on `v`'s kernels, overwriting and accumulating; the
/// forward and the input gradient with a bias.
fn conv_calls_match(v: Variant, cases: &[[usize; 9]], rng: &mut Rng) {
    for case in cases {
        let g = geo(case);
        let shape = g.shape();
        let (x, w, b, dy) = (
            rng.vec(g.x_len(), -1.0, 1.0),
            rng.vec(g.w_len(), -1.0, 1.0),
            rng.vec(g.c_out.max(g.c_in), -1.0, 1.0),
            rng.vec(g.y_len(), -1.0, 1.0),
        );
        let wb: Vec<f32> = w.iter().chain(&b).copied().collect();
        let what = format!("{v:?} {case:?}");
        for acc in [false, true] {
            let init = |n: usize| acc.then(|| vec![0.25f32; n]);
            let mut f = shape.forward(0, 0, Some(w.len() as u32), 0);
            f.p.accumulate = acc as u32;
            conv_both(&format!("forward acc={acc} {what}"), v, f, &x, &wb, g.y_len(), init(g.y_len()).as_deref());
            let mut bi = shape.backward_input(0, 0, 0, acc);
            (bi.p.has_bias, bi.p.bias_off) = (acc as u32, w.len() as u32);
            let what_bi = format!("backward_input acc={acc} bias={acc} {what}");
            conv_both(&what_bi, v, bi, &dy, &wb, g.x_len(), init(g.x_len()).as_deref());
            let bw = shape.backward_weight(0, 0, 0, acc);
            conv_both(
                &format!("backward_weight acc={acc} {what}"),
                v,
                bw,
                &dy,
                &x,
                g.w_len(),
                init(g.w_len()).as_deref(),
            );
            let bb = shape.backward_bias(0, 0, acc);
            conv_both(
                &format!("backward_bias acc={acc} {what}"),
                v,
                bb,
                &dy,
                &[0.0],
                g.c_out,
                init(g.c_out).as_deref(),
            );
        }
    }
}

/// Every conv_transpose2d call of these layers through the builders, on `v`'s kernels.
fn conv_transpose_calls_match(v: Variant, cases: &[[usize; 9]], rng: &mut Rng) {
    for case in cases {
        let t = tgeo(case);
        let shape = t.shape();
        let (x, w, b, dy) = (
            rng.vec(t.x_len(), -1.0, 1.0),
            rng.vec(t.w_len(), -1.0, 1.0),
            rng.vec(t.c_out, -1.0, 1.0),
            rng.vec(t.y_len(), -1.0, 1.0),
        );
        let wb: Vec<f32> = w.iter().chain(&b).copied().collect();
        let what = format!("{v:?} transpose {case:?}");
        let f = shape.forward(0, 0, Some(w.len() as u32), 0);
        conv_both(&format!("forward {what}"), v, f, &x, &wb, t.y_len(), None);
        let bi = shape.backward_input(0, 0, 0, false);
        conv_both(&format!("backward_input {what}"), v, bi, &dy, &w, t.x_len(), None);
        let bw = shape.backward_weight(0, 0, 0, true);
        conv_both(&format!("backward_weight acc {what}"), v, bw, &x, &dy, t.w_len(), Some(&vec![0.5; t.w_len()]));
        let bb = shape.backward_bias(0, 0, false);
        conv_both(&format!("backward_bias {what}"), v, bb, &dy, &[0.0], t.c_out, None);
    }
}

#[test]
fn conv_kernels_match_their_twins_on_the_gpu() {
    conv_calls_match(Variant::Direct, CONV_CASES, &mut Rng(21));
}

#[test]
fn conv_transpose2d_calls_match_their_twins_on_the_gpu() {
    conv_transpose_calls_match(Variant::Direct, TRANSPOSE_CASES, &mut Rng(22));
}

/// (n, c_in, h_in, w_in, c_out, kh, kw, stride, pad): shapes for the tiled kernels' edges:
/// channel counts around the 64-wide tiles (1, 3, 7, 65, 129), strides up to 3 with every
/// parity class, batches 1 and 7.
const TILED_CASES: &[[usize; 9]] = &[
    [7, 65, 5, 5, 3, 3, 3, 1, 1],   // c_in 65 (two row tiles of dx), batch 7
    [1, 3, 9, 9, 65, 5, 5, 2, 2],   // c_out 65, kernel 5, stride 2, pad 2
    [7, 7, 11, 10, 7, 4, 4, 2, 1],  // DCGAN's (4, 2, 1) down on odd sizes
    [2, 65, 6, 6, 65, 1, 1, 3, 0],  // kernel 1, stride 3: inputs no output reads
    [1, 1, 1, 1, 65, 1, 1, 1, 0],   // 1x1 image
    [3, 65, 4, 4, 7, 4, 4, 1, 0],   // 4x4 -> 1x1 (DCGAN's last D layer)
    [1, 3, 13, 7, 66, 3, 3, 3, 2],  // stride 3, pad 2: 9 parity classes
    [2, 70, 3, 3, 129, 3, 3, 1, 2], // three row tiles, pad 2 > the overlap
];

/// ConvTranspose2d layers (PyTorch's terms) for the tiled kernels.
const TILED_TRANSPOSE_CASES: &[[usize; 9]] = &[
    [7, 65, 3, 3, 3, 4, 4, 2, 1], // DCGAN's (4, 2, 1) up, 65 in
    [1, 3, 5, 4, 65, 5, 5, 3, 2], // stride 3, 65 out
    [2, 7, 7, 7, 1, 4, 4, 2, 1],  // one output channel (DCGAN's image layer)
    [1, 65, 1, 1, 7, 4, 4, 1, 0], // DCGAN's first G layer: 1x1 -> 4x4
];

#[test]
fn tiled_conv_kernels_match_the_twins_on_the_gpu() {
    let mut rng = Rng(24);
    conv_calls_match(Variant::Tiled, CONV_CASES, &mut rng);
    conv_calls_match(Variant::Tiled, TILED_CASES, &mut rng);
}

#[test]
fn tiled_conv_transpose2d_calls_match_the_twins_on_the_gpu() {
    let mut rng = Rng(25);
    conv_transpose_calls_match(Variant::Tiled, TRANSPOSE_CASES, &mut rng);
    conv_transpose_calls_match(Variant::Tiled, TILED_TRANSPOSE_CASES, &mut rng);
}

#[test]
fn conv_kernels_match_the_twins_at_extreme_values_on_the_gpu() {
    // Inputs of +-1e4 through the forward and the input gradient of both variants, whose sums
    // run in the twins' order (padding taps must add an exact 0, whatever the weights). The
    // tiled weight gradient's chunked sum is checked at unit scale only: its reassociation error
    // grows with the values summed, which its tolerance does not scale with.
    let mut rng = Rng(28);
    for v in [Variant::Direct, Variant::Tiled] {
        for case in CONV_CASES[2..5].iter().chain(&TILED_CASES[..3]) {
            let g = geo(case);
            let shape = g.shape();
            let (x, w, dy) =
                (rng.vec(g.x_len(), -1e4, 1e4), rng.vec(g.w_len(), -1.0, 1.0), rng.vec(g.y_len(), -1e4, 1e4));
            let what = format!("{v:?} {case:?}, +-1e4");
            conv_both(&format!("forward {what}"), v, shape.forward(0, 0, None, 0), &x, &w, g.y_len(), None);
            let bi = shape.backward_input(0, 0, 0, false);
            conv_both(&format!("backward_input {what}"), v, bi, &dy, &w, g.x_len(), None);
        }
    }
}

#[test]
fn tiled_conv_kernels_match_the_twins_at_dcgan_shapes() {
    // 28x28 at batch 8: D's conv2 Conv(64 -> 128, 14 -> 7) (also G's deconv1 seen as a conv2d)
    // and conv1 Conv(1 -> 64, 28 -> 14); G's ConvT(128 -> 64, 7 -> 14) and ConvT(64 -> 1, 14 -> 28).
    let mut rng = Rng(26);
    for v in [Variant::Tiled, Variant::Direct] {
        conv_calls_match(v, &[[8, 64, 14, 14, 128, 4, 4, 2, 1], [8, 1, 28, 28, 64, 4, 4, 2, 1]], &mut rng);
        conv_transpose_calls_match(v, &[[8, 128, 7, 7, 64, 4, 4, 2, 1], [8, 64, 14, 14, 1, 4, 4, 2, 1]], &mut rng);
    }
}

#[test]
fn tiled_conv_kernels_handle_more_than_65535_tiles() {
    // A 1x1 kernel at stride 300 on 300x300 pixels: dx has 90,000 parity classes of one position
    // each (only class (0, 0) has a tap; the others get the bias alone), so its tiled input
    // gradient runs 90,000 tiles, dispatched as a 2-D grid.
    let g = geo(&[1, 1, 300, 300, 1, 1, 1, 300, 0]);
    let shape = g.shape();
    let mut bi = shape.backward_input(0, 0, 0, false);
    assert_eq!(bi.p.backward_input_tiles(), 90_000);
    assert_eq!(bi.op_as(Variant::Tiled, 0, 1, 2).workgroups(), [65_535, 2, 1]);
    (bi.p.has_bias, bi.p.bias_off) = (1, 1);
    conv_both("backward_input, 2-D grid", Variant::Tiled, bi, &[0.75], &[-2.0, 0.5], g.x_len(), None);
    // The forward's and the weight gradient's grids split the same way (computed only: their
    // tensors would need hundreds of MB): 65,568 tiles of 64 x 64, and 256 x 256 of 32 x 32.
    let wide = Conv2dShape { n: 1, c_in: 64, h_in: 2049, w_in: 2048, c_out: 64, kh: 1, kw: 1, stride: 1, pad: 0 };
    assert_eq!(wide.forward(0, 0, None, 0).op_as(Variant::Tiled, 0, 1, 2).workgroups(), [65_535, 2, 1]);
    let huge = Conv2dShape { n: 1, c_in: 512, h_in: 4, w_in: 4, c_out: 8192, kh: 4, kw: 4, stride: 1, pad: 0 };
    assert_eq!(huge.backward_weight(0, 0, 0, false).op_as(Variant::Tiled, 0, 1, 2).workgroups(), [65_535, 2, 1]);
}

// ---------------------------------------------------------------- timings (by hand)

/// The conv2d views of every DCGAN layer at 28x28 (g = d = 64, one channel) and 64x64 (g = d =
/// 64, three channels, nz 100): (name, [c_in, h_in, w_in, c_out, k, stride, pad]). A ConvT layer
/// runs as the conv2d whose adjoint it is (its forward is that conv2d's backward_input, its input
/// gradient that conv2d's forward), so D's conv I and G's matching deconv share a view.
const DCGAN_VIEWS: &[(&str, [usize; 7])] = &[
    ("28: D.conv1 / G.deconv2", [1, 28, 28, 64, 4, 2, 1]),
    ("28: D.conv2 / G.deconv1", [64, 14, 14, 128, 4, 2, 1]),
    ("64: D.conv1 / G.deconv5", [3, 64, 64, 64, 4, 2, 1]),
    ("64: D.conv2 / G.deconv4", [64, 32, 32, 128, 4, 2, 1]),
    ("64: D.conv3 / G.deconv3", [128, 16, 16, 256, 4, 2, 1]),
    ("64: D.conv4 / G.deconv2", [256, 8, 8, 512, 4, 2, 1]),
    ("64: D.conv5", [512, 4, 4, 1, 4, 1, 0]),
    ("64: G.deconv1", [512, 4, 4, 100, 4, 1, 0]),
];

/// GPU time of one call (ms, the least of `reps` runs, from timestamp queries) and its output.
fn time_call(
    ctx: &Arc<shadergan::backend::gpu::GpuContext>,
    op: shadergan::ir::Op,
    inputs: [&[f32]; 2],
    out_len: usize,
    reps: usize,
) -> (f64, Vec<f32>) {
    use shadergan::backend::gpu::GpuExecutor;
    use shadergan::backend::Executor;
    use shadergan::ir::BufSpec;
    let specs = [BufSpec::f32("a", inputs[0].len()), BufSpec::f32("c", inputs[1].len()), BufSpec::f32("out", out_len)];
    let mut g = GpuExecutor::new(ctx.clone(), &specs, None).unwrap();
    g.write(0, inputs[0]).unwrap();
    g.write(1, inputs[1]).unwrap();
    g.write(2, &vec![0.0; out_len]).unwrap();
    let section = g.add_section(std::slice::from_ref(&op)).unwrap();
    let out = {
        g.run(section, 1).unwrap();
        g.read(2).unwrap()
    };
    let best =
        (0..reps).map(|_| g.profile(section).unwrap().expect("timestamp queries")[0].1).fold(f64::INFINITY, f64::min);
    (best * 1e3, out)
}

/// The direct and tiled kernels of every DCGAN layer view at batch 64 (SHADERGAN_CONV_BATCH),
/// timed on this adapter (the least of SHADERGAN_CONV_REPS runs, default 3), the tiled outputs
/// checked against the direct ones. Prints a table and each call's rule choice; asserts nothing
/// about time. On lavapipe the figures only indicate: it runs the shaders on the CPU. The table
/// in src/kernels/conv/mod.rs comes from here.
///   cargo test --release --test ops -- --ignored --nocapture conv_timings
#[test]
#[ignore = "a timing table for a person (lavapipe figures behind the conv rule); asserts nothing about time"]
fn conv_timings_at_dcgan_shapes() {
    let Some(ctx) = crate::common::gpu() else { return };
    let n: usize = std::env::var("SHADERGAN_CONV_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let reps: usize = std::env::var("SHADERGAN_CONV_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    println!("{}, batch {n}, least of {reps} runs, ms", ctx.summary.describe());
    println!("{:<26} {:<16} {:>10} {:>10} {:>7}  auto", "layer view", "pass", "direct", "tiled", "d/t");
    let mut rng = Rng(99);
    for &(name, [c_in, h, w, c_out, k, s, pad]) in DCGAN_VIEWS {
        let g = geo(&[n, c_in, h, w, c_out, k, k, s, pad]);
        let shape = g.shape();
        let (x, wt, dy) = (rng.vec(g.x_len(), -1.0, 1.0), rng.vec(g.w_len(), -1.0, 1.0), rng.vec(g.y_len(), -1.0, 1.0));
        let calls = [
            ("forward", shape.forward(0, 0, None, 0), [&x[..], &wt[..]], g.y_len()),
            ("backward_input", shape.backward_input(0, 0, 0, false), [&dy[..], &wt[..]], g.x_len()),
            ("backward_weight", shape.backward_weight(0, 0, 0, false), [&dy[..], &x[..]], g.w_len()),
        ];
        for (pass, call, inputs, out_len) in calls {
            let (td, yd) = time_call(&ctx, call.op_as(Variant::Direct, 0, 1, 2), inputs, out_len, reps);
            let tiled = call.op_as(Variant::Tiled, 0, 1, 2);
            let entry = tiled.entry();
            let (tt, yt) = time_call(&ctx, tiled, inputs, out_len, reps);
            // The weight gradient's chunked sum of n h_out w_out products differs from the direct
            // run by a reassociation: about sqrt(terms) ulps of the partial sums (~ the result).
            let mut tol = tolerance(entry);
            if call.entry == ConvEntry::BackwardWeight {
                let terms = (n * g.h_out * g.w_out) as f32;
                let top = yd.iter().fold(0f32, |m, v| m.max(v.abs()));
                tol.abs = tol.abs.max(4.0 * f32::EPSILON * terms.sqrt() * top);
            }
            compare(entry, &yt, &yd, tol).unwrap_or_else(|e| panic!("{name} {pass}: tiled vs direct: {e}"));
            let auto = select(Mode::Auto, call.entry, &call.p);
            println!("{name:<26} {pass:<16} {td:>10.2} {tt:>10.2} {:>7.2}  {auto:?}", td / tt);
        }
    }
}

// ---------------------------------------------------------------- DCGAN training on the tiled path

/// `n` images of `channels` x `size` x `size` bytes with some structure (as tests/parity_dcgan.rs).
fn dcgan_images(n: usize, channels: usize, size: usize) -> Arc<Dataset> {
    let dim = channels * size * size;
    let noise = crate::common::uniform(n * dim, 9, 0.0, 1.0);
    let bytes: Vec<u8> = (0..n * dim)
        .map(|i| {
            let (s, p) = (i / dim, i % dim);
            let (y, x) = ((p / size) % size, p % size);
            let ink = (x as i64 - size as i64 / 2).abs() < 2 + (s % 3) as i64 || y == s % size;
            (if ink { 180.0 + 75.0 * noise[i] } else { 40.0 * noise[i] }) as u8
        })
        .collect();
    let shape = shadergan::data::ImageShape { channels, height: size, width: size };
    Arc::new(Dataset::from_u8_images(n, shape, bytes).unwrap())
}

fn dcgan_config(data: &Dataset, width: usize, g_ema: f32) -> TrainConfig {
    shadergan::TrainOptions {
        arch: Some(shadergan::config::model::Arch::Dcgan),
        g_channels: width,
        d_channels: width,
        latent_dim: Some(8),
        batch_size: Some(8),
        seed: 77,
        g_ema: Some(g_ema),
        // The example's rate and no packing: parity, not the defaults, is under test (at the
        // defaults' 8e-4 the backends' rounding differences grow faster over the steps).
        lr: Some(2e-4),
        pack: Some(1),
        // The convolutions are under test: without the hidden linear layers of 16 x width
        // (their batch norm over 8 rows, then Adam, amplifies the backends' rounding past the
        // table's tolerance at width 64; tests/parity_dcgan.rs checks them at small widths).
        g_fc_hidden: Some(0),
        d_fc_hidden: Some(0),
        ..Default::default()
    }
    .resolve(data)
    .unwrap()
}

/// The conv entry points of the training step a program built in `mode` runs on the GPU.
fn conv_entries(cfg: &TrainConfig, data: &Dataset, mode: Mode) -> Vec<&'static str> {
    let program = with_mode(mode, || shadergan::programs::gan::GanProgram::build(cfg, data.n, true));
    let mut e: Vec<&'static str> =
        program.train_step.iter().map(|op| op.entry()).filter(|e| e.starts_with("conv2d")).collect();
    e.sort();
    e.dedup();
    e
}

/// GPU and CPU trainers built in `mode` agree after `steps` steps (parameters, running
/// statistics, Adam's moments, losses, eval-mode samples), as in tests/parity_dcgan.rs.
fn dcgan_parity(what: &str, cfg: &TrainConfig, data: &Arc<Dataset>, mode: Mode, steps: u32) {
    let mut cpu = with_mode(mode, || crate::common::cpu_trainer(cfg, data, false));
    let Some(mut gpu) = with_mode(mode, || crate::common::gpu_trainer(cfg, data)) else { return };
    assert_eq!(gpu.snapshot().unwrap(), cpu.snapshot().unwrap(), "{what}: initial state");
    for _ in 0..steps {
        cpu.train(1).unwrap();
        gpu.train(1).unwrap();
    }
    let t = tolerance("train_10_steps");
    let (gs, cs) = (gpu.stats().unwrap(), cpu.stats().unwrap());
    compare(what, &[gs.d_loss, gs.g_loss, gs.d_real, gs.d_fake], &[cs.d_loss, cs.g_loss, cs.d_real, cs.d_fake], t)
        .unwrap();
    let (g, c) = (gpu.snapshot().unwrap(), cpu.snapshot().unwrap());
    assert_eq!(g.state, c.state, "{what}: step state");
    for (name, gv, cv) in [
        ("G params", &g.g.params, &c.g.params),
        ("D params", &g.d.params, &c.d.params),
        ("G running stats", &g.g.state, &c.g.state),
        ("D running stats", &g.d.state, &c.d.state),
        ("G moments", &g.g.moments, &c.g.moments),
        ("G average's stats", &g.g_ema_state, &c.g_ema_state),
    ] {
        compare(name, gv, cv, t).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    let z = crate::common::uniform(5 * 8, 3, -2.0, 2.0);
    compare("samples", &gpu.sample(&z).unwrap(), &cpu.sample(&z).unwrap(), t).unwrap_or_else(|e| panic!("{what}: {e}"));
}

#[test]
fn dcgan_training_agrees_on_gpu_and_cpu_with_the_tiled_kernels_forced() {
    // tests/parity_dcgan.rs's narrow models (4 channels), every conv call forced onto the tiled
    // kernels through the selection hook.
    for (channels, size, ema) in [(1, 28, 0.0), (3, 32, 0.9), (1, 64, 0.0)] {
        let data = dcgan_images(24, channels, size);
        let cfg = dcgan_config(&data, 4, ema);
        let tiled = [
            "conv2d_backward_bias",
            "conv2d_backward_input_tiled",
            "conv2d_backward_weight_tiled",
            "conv2d_forward_tiled",
        ];
        let entries = conv_entries(&cfg, &data, Mode::Tiled);
        // conv2d_backward_bias only where a layer has a bias (D's last at 32 and 64 has none).
        assert!(entries.iter().all(|e| tiled.contains(e)) && entries.len() >= 3, "{size}: {entries:?}");
        dcgan_parity(&format!("tiled, {channels}x{size}x{size}, g-ema {ema}"), &cfg, &data, Mode::Tiled, 4);
    }
}

#[test]
fn dcgan_training_agrees_on_gpu_and_cpu_with_the_default_rule() {
    // The 28x28 model at its default widths (64), where the rule picks the tiled kernels for
    // some calls (checked), and the direct ones where forced.
    let data = dcgan_images(24, 1, 28);
    let cfg = dcgan_config(&data, 64, 0.9);
    let auto = conv_entries(&cfg, &data, Mode::Auto);
    assert!(auto.iter().any(|e| e.ends_with("_tiled")), "the rule picks no tiled kernel: {auto:?}");
    assert!(conv_entries(&cfg, &data, Mode::Direct).iter().all(|e| !e.ends_with("_tiled")));
    dcgan_parity("28x28, width 64, auto", &cfg, &data, Mode::Auto, 3);
}

#[test]
fn the_rule_picks_the_tiled_kernels_at_dcgan_layers_but_the_smallest() {
    // The measured rule (src/kernels/conv/mod.rs) at batch 64: tiled at every layer view's three
    // passes, but for D's last layer's forward (64 outputs).
    for &(name, [c_in, h, w, c_out, k, s, pad]) in DCGAN_VIEWS {
        let shape = geo(&[64, c_in, h, w, c_out, k, k, s, pad]).shape();
        for call in
            [shape.forward(0, 0, None, 0), shape.backward_input(0, 0, 0, false), shape.backward_weight(0, 0, 0, false)]
        {
            let want = if name == "64: D.conv5" && call.entry == ConvEntry::Forward {
                Variant::Direct
            } else {
                Variant::Tiled
            };
            assert_eq!(auto_variant(call.entry, &call.p), want, "{name} {:?}", call.entry);
            assert_eq!(select(Mode::Auto, call.entry, &call.p), want);
            assert_eq!(select(Mode::Direct, call.entry, &call.p), Variant::Direct);
            assert_eq!(select(Mode::Tiled, call.entry, &call.p), Variant::Tiled);
        }
        assert_eq!(select(Mode::Tiled, ConvEntry::BackwardBias, &shape.params()), Variant::Direct);
    }
    // At batch 8 D's last weight gradient sums 8 products per output: direct.
    let last = geo(&[8, 512, 4, 4, 1, 4, 4, 1, 0]).shape().backward_weight(0, 0, 0, false);
    assert_eq!(gemm_size(last.entry, &last.p), (8192, 8));
    assert_eq!(auto_variant(last.entry, &last.p), Variant::Direct);
    // The input gradient's inner dimension counts one parity class's taps: 128 x 2 x 2.
    let up = geo(&[64, 64, 14, 14, 128, 4, 4, 2, 1]).shape().backward_input(0, 0, 0, false);
    assert_eq!(gemm_size(up.entry, &up.p), (64 * 64 * 14 * 14, 512));
}

#[test]
fn the_selection_hook_overrides_the_rule_on_its_thread_only() {
    let shape = Conv2dShape { n: 8, c_in: 64, h_in: 14, w_in: 14, c_out: 128, kh: 4, kw: 4, stride: 2, pad: 1 };
    let call = shape.forward(0, 0, None, 0);
    assert_eq!(Mode::parse("Tiled"), Some(Mode::Tiled));
    assert_eq!(Mode::parse(" direct\n"), Some(Mode::Direct));
    assert_eq!(Mode::parse("auto"), Some(Mode::Auto));
    assert_eq!(Mode::parse("gemm"), None);
    let outer = mode();
    with_mode(Mode::Tiled, || {
        assert_eq!(call.variant(), Variant::Tiled);
        assert_eq!(call.op(0, 1, 2).entry(), "conv2d_forward_tiled");
        // The bias gradient has only the direct kernel.
        assert_eq!(shape.backward_bias(0, 0, false).op(0, 1, 2).entry(), "conv2d_backward_bias");
        with_mode(Mode::Direct, || assert_eq!(call.op(0, 1, 2).entry(), "conv2d_forward"));
        assert_eq!(mode(), Mode::Tiled, "the inner mode ended with its closure");
        // Another thread keeps the process's mode.
        std::thread::spawn(move || assert_eq!(mode(), outer)).join().unwrap();
    });
    assert_eq!(mode(), outer);
    let r = std::panic::catch_unwind(|| with_mode(Mode::Tiled, || panic!("inside")));
    assert!(r.is_err());
    assert_eq!(mode(), outer, "the mode comes back after a panic");
}

// ---------------------------------------------------------------- the fused epilogue

/// The forward and the input gradient (a conv_transpose2d's forward and input gradient too)
/// with their epilogue, on both variants: the output activation (ACT), and the derivative of the
/// layer before's activation at aux (GRAD_ACT), each against the twin, whose epilogue is the
/// activation kernels' arithmetic. aux is a real activation output (ReLU's zeros included).
#[test]
fn conv_epilogues_match_cpu() {
    use crate::common::harness::Both;
    use shadergan::kernels::activation::{activate, Activation};
    let acts = [Activation::Relu, Activation::LeakyRelu, Activation::Sigmoid, Activation::Tanh];
    let mut rng = Rng(23);
    for (ci, case) in TILED_CASES.iter().take(4).enumerate() {
        let g = geo(case);
        let shape = g.shape();
        for v in [Variant::Direct, Variant::Tiled] {
            for (k, &act) in acts.iter().enumerate() {
                let what = format!("{v:?} {case:?} {act:?}");
                let (x, w, b, dy) = (
                    rng.vec(g.x_len(), -1.0, 1.0),
                    rng.vec(g.w_len(), -1.0, 1.0),
                    rng.vec(g.c_out.max(g.c_in), -1.0, 1.0),
                    rng.vec(g.y_len(), -1.0, 1.0),
                );
                let wb: Vec<f32> = w.iter().chain(&b).copied().collect();
                let grad_act = acts[(ci + k + 1) % acts.len()];
                let z = rng.vec(g.x_len().max(g.y_len()) + 3, -2.0, 2.0);
                let aux: Vec<f32> = z.iter().map(|&v| activate(v, grad_act.code(), grad_act.slope())).collect();
                // Forward ending in act; input gradient scaled by grad_act' at aux (offset 3).
                let calls = [
                    ("forward act", shape.forward(0, 0, Some(w.len() as u32), 0).activated(act), &x, g.y_len()),
                    ("backward_input grad", shape.backward_input(0, 0, 0, false), &dy, g.x_len()),
                    ("forward grad", shape.forward(0, 0, None, 0), &x, g.y_len()),
                    ("backward_input act", shape.backward_input(0, 0, 0, false).activated(act), &dy, g.x_len()),
                ];
                for (name, call, input, out_len) in calls {
                    let mut c = Case::new();
                    let (ab, cb, auxb) =
                        (c.input("a", input.clone()), c.input("c", wb.clone()), c.input("aux", aux.clone()));
                    let out = c.output("out", out_len);
                    let call = if name.ends_with("grad") { call.scaled_by_grad(grad_act, auxb, 3) } else { call };
                    let op = call.op_as(v, ab, cb, out);
                    let entry = c.entry(&op);
                    let Some(Both { gpu, cpu, .. }) = c.run(op, &[out]) else { return };
                    assert!(cpu[0].iter().all(|v| !v.is_nan()), "{what} {name}: twin left NaN");
                    compare(entry, &gpu[0], &cpu[0], tolerance(entry)).unwrap_or_else(|e| panic!("{what} {name}: {e}"));
                }
            }
        }
    }
}
