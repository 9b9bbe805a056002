//! The conv2d / conv_transpose2d / batch-norm CPU twins (`shadergan::conv_kernels`):
//! a. against naive f64 implementations written straight from the formulas, at awkward shapes;
//! b. backward twins against central differences of an f64 forward (L = sum(r y));
//! c. naga: conv.wgsl and norm.wgsl parse and validate, list exactly the registered entry points
//!    and bindings, and declare their uniforms field for field like the Rust structs;
//! d. every tensor sits between NaN guards (inputs and outputs) and outputs start as NaN, so a
//!    twin that skips an element, or reads or writes outside its tensor, fails.
//! Where a GPU adapter exists (lavapipe in CI), `gpu::` also runs the WGSL kernels against the twins.
//!
//! Self-contained on purpose: it uses only `conv_kernels`, naga and wgpu, not the rest of the crate.

use shadergan::conv_kernels::*;

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
        "conv2d_forward" => conv2d_forward(&call.p, a, c, out),
        "conv2d_backward_input" => conv2d_backward_input(&call.p, a, c, out),
        "conv2d_backward_weight" => conv2d_backward_weight(&call.p, a, c, out),
        "conv2d_backward_bias" => conv2d_backward_bias(&call.p, a, out),
        e => panic!("{e}"),
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
            entry: "conv2d_backward_input",
            p: ConvParams { y_off: a, w_off: c[0], bias_off: c[1], has_bias: 1, x_off: o, ..p },
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
    /// running_mean, running_var, saved stats (binding 4).
    state: Packed,
}

impl Bn {
    fn new(n: usize, c: usize, s: usize, x: &[f32], gamma: &[f32], beta: &[f32], running: (&[f32], &[f32])) -> Self {
        let x = Packed::new(&[x]);
        let params = Packed::new(&[gamma, beta]);
        let state = Packed::new(&[running.0, running.1, &vec![f32::NAN; 3 * c]]);
        let p = NormParams {
            x_off: x.off(0),
            gamma_off: params.off(0),
            beta_off: params.off(1),
            mean_off: state.off(0),
            var_off: state.off(1),
            save_off: state.off(2),
            ..NormParams::new(n as u32, c as u32, s as u32)
        };
        Bn { p, x, params, state }
    }

    fn len(&self) -> usize {
        self.x.lens[0]
    }

    /// Training-mode forward: y (the running stats and saved stats land in self.state).
    fn forward(&mut self, update_running: bool) -> Vec<f32> {
        let mut y = Packed::nan(&[self.len()]);
        let p = NormParams { y_off: y.off(0), update_running: update_running as u32, ..self.p };
        batch_norm_forward(&p, &self.x.buf, &self.params.buf, &mut y.buf, &mut self.state.buf);
        y.assert_guards("batch_norm_forward y");
        self.state.assert_guards("batch_norm_forward state");
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
        batch_norm_backward_input(&p, &self.x.buf, &dy.buf, &mut dx.buf, &self.state.buf);
        batch_norm_backward_params(&p, &self.x.buf, &dy.buf, &mut grads.buf, &self.state.buf);
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
    let saved = bn.state.get(2).to_vec();
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
        let saved = bn.state.get(2);
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
    for case in CONV_CASES {
        let g = geo(case);
        let shape = g.shape();
        let cover = |call: ConvCall, n: usize| {
            let [x, y, z] = call.workgroups();
            assert!(x <= 65_535 && y <= 65_535 && z == 1);
            assert!((x * y) as usize * LANES >= n, "{}: {x}x{y} workgroups for {n}", call.entry);
        };
        cover(shape.forward(0, 0, None, 0), g.y_len());
        cover(shape.backward_input(0, 0, 0, false), g.x_len());
        cover(shape.backward_weight(0, 0, 0, false), g.w_len());
        cover(shape.backward_bias(0, 0, false), g.c_out * LANES);
    }
    let big = Conv2dShape { n: 64, c_in: 3, h_in: 64, w_in: 64, c_out: 64, kh: 4, kw: 4, stride: 2, pad: 1 };
    // 64 * 64 * 32 * 32 outputs = 4,194,304: 16,384 workgroups in one row.
    assert_eq!(big.forward(0, 0, None, 0).workgroups(), [16_384, 1, 1]);
    assert_eq!(big.backward_bias(0, 0, false).workgroups(), [64, 1, 1]);
    let t = ConvTranspose2dShape { n: 64, c_in: 128, h_in: 16, w_in: 16, c_out: 64, kh: 4, kw: 4, stride: 2, pad: 1 };
    // The transpose's output (64, 64, 32, 32) is the dx side of its conv2d view; its bias sum
    // runs one workgroup per output channel.
    assert_eq!(t.forward(0, 0, None, 0).workgroups(), [16_384, 1, 1]);
    assert_eq!(t.backward_bias(0, 0, false).workgroups(), [64, 1, 1]);
    assert_eq!(NormParams::new(64, 512, 16).workgroups("batch_norm_forward"), [512, 1, 1]);
    assert_eq!(NormParams::new(64, 512, 16).workgroups("batch_norm_eval"), [2048, 1, 1]);
}

#[test]
fn transpose_builders_swap_the_roles() {
    let t = ConvTranspose2dShape { n: 2, c_in: 8, h_in: 4, w_in: 5, c_out: 3, kh: 4, kw: 4, stride: 2, pad: 1 };
    assert_eq!(t.out_hw(), (8, 10));
    let f = t.forward(10, 20, Some(30), 40);
    assert_eq!(f.entry, "conv2d_backward_input");
    let p = f.p;
    assert_eq!((p.c_out, p.h_out, p.w_out, p.c_in, p.h_in, p.w_in), (8, 4, 5, 3, 8, 10));
    assert_eq!((p.y_off, p.w_off, p.bias_off, p.has_bias, p.x_off), (10, 20, 30, 1, 40));
    let bi = t.backward_input(10, 20, 40, true);
    assert_eq!(bi.entry, "conv2d_forward");
    assert_eq!((bi.p.x_off, bi.p.w_off, bi.p.y_off, bi.p.has_bias, bi.p.accumulate), (10, 20, 40, 0, 1));
    let bw = t.backward_weight(10, 40, 50, false);
    assert_eq!(bw.entry, "conv2d_backward_weight");
    assert_eq!((bw.p.y_off, bw.p.x_off, bw.p.w_off), (10, 40, 50));
    let bb = t.backward_bias(40, 60, true);
    assert_eq!(bb.entry, "conv2d_backward_bias");
    assert_eq!((bb.p.bias_side, bb.p.x_off, bb.p.bias_off, bb.p.accumulate), (BIAS_SIDE_INPUT, 40, 60, 1));
}

// ---------------------------------------------------------------- c. naga

const COMMON_WGSL: &str = include_str!("../shaders/common.wgsl");

fn source(family: &str) -> String {
    let src = match family {
        "conv" => CONV_WGSL,
        "norm" => NORM_WGSL,
        f => panic!("{f}"),
    };
    // As shaders::source: common helpers first (WGSL has no imports).
    format!("{COMMON_WGSL}\n{src}")
}

fn parse_and_validate(family: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let src = source(family);
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{family}.wgsl does not parse:\n{}", e.emit_to_string(&src)));
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{family}.wgsl does not validate:\n{}", e.emit_to_string(&src)));
    (module, info)
}

#[test]
fn conv_and_norm_parse_and_validate() {
    for family in ["conv", "norm"] {
        parse_and_validate(family);
    }
}

#[test]
fn entry_points_and_bindings_match_the_tables() {
    for family in ["conv", "norm"] {
        let (module, info) = parse_and_validate(family);
        let listed: Vec<&str> = ENTRIES.iter().filter(|(_, f)| *f == family).map(|(e, _)| *e).collect();
        let present: Vec<&str> = module.entry_points.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(present, listed, "{family}.wgsl entry points vs ENTRIES");
        for (i, ep) in module.entry_points.iter().enumerate() {
            assert_eq!(ep.workgroup_size, [LANES as u32, 1, 1], "{}: workgroup size", ep.name);
            let ep_info = info.get_entry_point(i);
            let mut used = vec![];
            for (handle, var) in module.global_variables.iter() {
                if ep_info[handle].is_empty() {
                    continue;
                }
                let Some(binding) = &var.binding else { continue };
                assert_eq!(binding.group, 0, "{}: bind group", ep.name);
                let access = match var.space {
                    naga::AddressSpace::Uniform => Access::Uniform,
                    naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => {
                        Access::ReadWrite
                    }
                    naga::AddressSpace::Storage { .. } => Access::Read,
                    _ => continue,
                };
                used.push((binding.binding, access));
            }
            used.sort_by_key(|s| s.0);
            let want =
                BINDINGS.iter().find(|(e, _)| *e == ep.name).unwrap_or_else(|| panic!("{} not in BINDINGS", ep.name)).1;
            assert_eq!(used, want, "{}: bindings used vs BINDINGS", ep.name);
            let storage = want.iter().filter(|(_, a)| *a != Access::Uniform).count();
            assert!(storage <= 4, "{}: more than 4 storage bindings (downlevel limit)", ep.name);
        }
    }
    assert_eq!(BINDINGS.len(), ENTRIES.len());
}

#[test]
fn shader_files_have_header_comments() {
    for (family, src) in [("conv", CONV_WGSL), ("norm", NORM_WGSL)] {
        assert!(src.starts_with(&format!("// {family}.wgsl:")), "{family}.wgsl needs a header comment");
        assert!(src.contains("Bindings"), "{family}.wgsl header must describe its bindings");
    }
}

/// The WGSL name of a field's Rust type.
trait WgslType {
    const NAME: &'static str;
}
impl WgslType for u32 {
    const NAME: &'static str = "u32";
}
impl WgslType for f32 {
    const NAME: &'static str = "f32";
}
fn wgsl_type<T: WgslType>(_: &T) -> &'static str {
    T::NAME
}

/// (name, byte offset, type) of each field, from the Rust struct.
macro_rules! rust_fields {
    ($t:ty; $($f:ident),*) => {{
        let z = <$t>::default();
        vec![$((stringify!($f).to_string(), std::mem::offset_of!($t, $f) as u32, wgsl_type(&z.$f))),*]
    }};
}

/// (name, byte offset, type) of each member of the WGSL struct `name`, and its size.
fn wgsl_fields(family: &str, name: &str) -> (Vec<(String, u32, &'static str)>, u32) {
    let (module, _) = parse_and_validate(family);
    let (_, ty) = module.types.iter().find(|(_, t)| t.name.as_deref() == Some(name)).expect("struct");
    let naga::TypeInner::Struct { members, span } = &ty.inner else { panic!("{name} is not a struct") };
    let scalar = |m: &naga::StructMember| match module.types[m.ty].inner {
        naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Uint, width: 4 }) => "u32",
        naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Float, width: 4 }) => "f32",
        ref t => panic!("{name}: member of type {t:?}"),
    };
    (members.iter().map(|m| (m.name.clone().unwrap(), m.offset, scalar(m))).collect(), *span)
}

#[test]
fn uniform_structs_mirror_the_wgsl_field_for_field() {
    let rust = rust_fields!(ConvParams; n, c_in, h_in, w_in, c_out, h_out, w_out, kh, kw, stride, pad, x_off, w_off,
        y_off, bias_off, has_bias, accumulate, bias_side, _pad0, _pad1);
    let (wgsl, span) = wgsl_fields("conv", "ConvParams");
    assert_eq!(rust, wgsl, "ConvParams fields");
    assert_eq!(span as usize, std::mem::size_of::<ConvParams>());
    let rust = rust_fields!(NormParams; n, c, s, x_off, y_off, dy_off, dx_off, gamma_off, beta_off, mean_off, var_off,
        save_off, dgamma_off, dbeta_off, eps, momentum, inv_m, unbias, update_running, accumulate);
    let (wgsl, span) = wgsl_fields("norm", "NormParams");
    assert_eq!(rust, wgsl, "NormParams fields");
    assert_eq!(span as usize, std::mem::size_of::<NormParams>());
    assert_eq!(std::mem::size_of::<ConvParams>() % 16, 0);
    assert_eq!(std::mem::size_of::<NormParams>() % 16, 0);
}

// ---------------------------------------------------------------- the WGSL kernels vs the twins

/// Where a GPU adapter exists (lavapipe in CI): each WGSL kernel on the same packed, NaN-guarded
/// buffers as its twin, compared element for element (guards included) under [`TOLERANCES`].
/// Bind group layouts come from [`BINDINGS`], the device has wgpu's downlevel limits as the
/// crate's, so a binding table or limit mistake fails here too.
mod gpu {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    pub struct Gpu {
        device: wgpu::Device,
        queue: wgpu::Queue,
        pipelines: RefCell<HashMap<&'static str, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>>,
    }

    /// The adapter (WGPU_ADAPTER_NAME's, else the first), or None when there is none; with
    /// SHADERGAN_REQUIRE_GPU=1 (CI) a missing adapter fails instead.
    pub fn open() -> Option<Gpu> {
        let required = std::env::var("SHADERGAN_REQUIRE_GPU").is_ok_and(|v| v == "1");
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let want = std::env::var("WGPU_ADAPTER_NAME").unwrap_or_default().to_lowercase();
        let Some(adapter) = adapters.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&want)) else {
            assert!(!required, "SHADERGAN_REQUIRE_GPU=1 but no GPU adapter");
            eprintln!("SKIPPED (no GPU adapter; CI sets SHADERGAN_REQUIRE_GPU=1)");
            return None;
        };
        let desc = wgpu::DeviceDescriptor {
            label: Some("conv_kernels test"),
            required_limits: wgpu::Limits::downlevel_defaults(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).expect("device");
        eprintln!("GPU adapter: {}", adapter.get_info().name);
        Some(Gpu { device, queue, pipelines: RefCell::new(HashMap::new()) })
    }

    fn family_of(entry: &str) -> &'static str {
        ENTRIES.iter().find(|(e, _)| *e == entry).expect("listed entry").1
    }

    fn slots_of(entry: &str) -> (&'static str, &'static [(u32, Access)]) {
        BINDINGS.iter().find(|(e, _)| *e == entry).map(|&(e, s)| (e, s)).expect("listed entry")
    }

    impl Gpu {
        fn pipeline(&self, entry: &str) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
            let (entry, slots) = slots_of(entry);
            let mut cache = self.pipelines.borrow_mut();
            cache
                .entry(entry)
                .or_insert_with(|| {
                    let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
                    let src = source(family_of(entry));
                    let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(entry),
                        source: wgpu::ShaderSource::Wgsl(src.into()),
                    });
                    let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
                        .iter()
                        .map(|&(binding, access)| wgpu::BindGroupLayoutEntry {
                            binding,
                            visibility: wgpu::ShaderStages::COMPUTE,
                            ty: wgpu::BindingType::Buffer {
                                ty: match access {
                                    Access::Uniform => wgpu::BufferBindingType::Uniform,
                                    Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                                    Access::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                                },
                                has_dynamic_offset: false,
                                min_binding_size: None,
                            },
                            count: None,
                        })
                        .collect();
                    let bgl = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                        label: Some(entry),
                        entries: &entries,
                    });
                    let layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                        label: Some(entry),
                        bind_group_layouts: &[Some(&bgl)],
                        immediate_size: 0,
                    });
                    let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry),
                        layout: Some(&layout),
                        module: &module,
                        entry_point: Some(entry),
                        compilation_options: Default::default(),
                        cache: None,
                    });
                    if let Some(e) = pollster::block_on(scope.pop()) {
                        panic!("compiling {entry}: {e}");
                    }
                    (pipeline, bgl)
                })
                .clone()
        }

        fn buffer(&self, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: size.max(16).next_multiple_of(4),
                usage,
                mapped_at_creation: false,
            })
        }

        /// Runs `entry` once with `uniform` at slot 0 and `bufs` (slot, contents) at theirs, in
        /// `groups` workgroups; returns every buffer's contents afterwards.
        pub fn run(&self, entry: &str, uniform: &[u8], bufs: &[(u32, &[f32])], groups: [u32; 3]) -> Vec<Vec<f32>> {
            let (pipeline, bgl) = self.pipeline(entry);
            let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let u = self.buffer(uniform.len() as u64, wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST);
            self.queue.write_buffer(&u, 0, uniform);
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
            let storage: Vec<wgpu::Buffer> = bufs
                .iter()
                .map(|(_, v)| {
                    let b = self.buffer(4 * v.len() as u64, usage);
                    self.queue.write_buffer(&b, 0, bytemuck::cast_slice(v));
                    b
                })
                .collect();
            let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: u.as_entire_binding() }];
            for ((slot, _), b) in bufs.iter().zip(&storage) {
                entries.push(wgpu::BindGroupEntry { binding: *slot, resource: b.as_entire_binding() });
            }
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(entry),
                layout: &bgl,
                entries: &entries,
            });
            let mut enc = self.device.create_command_encoder(&Default::default());
            {
                let mut pass =
                    enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(entry), timestamp_writes: None });
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
            }
            let staging: Vec<(wgpu::Buffer, u64)> = bufs
                .iter()
                .zip(&storage)
                .map(|((_, v), b)| {
                    let size = 4 * v.len() as u64;
                    let s = self.buffer(size, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
                    enc.copy_buffer_to_buffer(b, 0, &s, 0, size);
                    (s, size)
                })
                .collect();
            let index = self.queue.submit([enc.finish()]);
            for (s, size) in &staging {
                s.map_async(wgpu::MapMode::Read, 0..*size, |r| r.expect("map"));
            }
            self.device.poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None }).expect("poll");
            if let Some(e) = pollster::block_on(scope.pop()) {
                panic!("running {entry}: {e}");
            }
            staging
                .iter()
                .map(|(s, size)| {
                    let out = bytemuck::cast_slice(&s.get_mapped_range(0..*size).expect("mapped")).to_vec();
                    s.unmap();
                    out
                })
                .collect()
        }
    }

    /// The tolerance of `name` in [`TOLERANCES`] (the longest matching prefix).
    fn tolerance(name: &str) -> (f32, f32) {
        let (_, rel, abs) = TOLERANCES
            .iter()
            .filter(|(k, _, _)| name.starts_with(k))
            .max_by_key(|(k, _, _)| k.len())
            .unwrap_or_else(|| panic!("no tolerance for {name}"));
        (*rel, *abs)
    }

    /// GPU vs twin, whole buffers (guards included: NaN must match NaN), as check::compare.
    fn compare(what: &str, entry: &str, gpu: &[f32], cpu: &[f32]) {
        let (rel, abs) = tolerance(entry);
        assert_eq!(gpu.len(), cpu.len());
        let mut worst: Option<(usize, f32)> = None;
        for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
            let ok =
                if g.is_nan() || c.is_nan() { g.is_nan() && c.is_nan() } else { (g - c).abs() <= abs + rel * c.abs() };
            let excess = if g.is_finite() && c.is_finite() { (g - c).abs() } else { f32::INFINITY };
            if !ok && worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
        if let Some((i, _)) = worst {
            panic!("{what} ({entry}): worst at {i}: gpu {} vs cpu {} (rel {rel}, abs {abs})", gpu[i], cpu[i]);
        }
    }

    /// One conv call on both sides: a, c packed inputs, out the output buffer's initial contents.
    fn conv_both(gpu: &Gpu, what: &str, call: &ConvCall, a: &[f32], c: &[f32], out: &[f32]) {
        let mut cpu_out = out.to_vec();
        run_conv_twin(call, a, c, &mut cpu_out);
        let uses_c = call.entry != "conv2d_backward_bias";
        let bufs: Vec<(u32, &[f32])> = if uses_c { vec![(1, a), (2, c), (3, out)] } else { vec![(1, a), (3, out)] };
        let got = gpu.run(call.entry, bytemuck::bytes_of(&call.p), &bufs, call.workgroups());
        compare(what, call.entry, got.last().unwrap(), &cpu_out);
    }

    #[test]
    fn conv_kernels_match_their_twins() {
        let Some(gpu) = open() else { return };
        let mut rng = Rng(10);
        for case in CONV_CASES {
            let g = geo(case);
            let shape = g.shape();
            let what = format!("{g:?}");
            let x = Packed::new(&[&rng.vec(g.x_len(), -1.0, 1.0)]);
            let wb = Packed::new(&[&rng.vec(g.w_len(), -1.0, 1.0), &rng.vec(g.c_out, -1.0, 1.0)]);
            let dy = Packed::new(&[&rng.vec(g.y_len(), -1.0, 1.0)]);
            let dx_init = Packed::new(&[&rng.vec(g.x_len(), -1.0, 1.0)]);
            let dwb_init = Packed::new(&[&rng.vec(g.w_len(), -1.0, 1.0), &rng.vec(g.c_out, -1.0, 1.0)]);
            let y_out = Packed::nan(&[g.y_len()]);
            for bias in [None, Some(wb.off(1))] {
                conv_both(
                    &gpu,
                    &what,
                    &shape.forward(x.off(0), wb.off(0), bias, y_out.off(0)),
                    &x.buf,
                    &wb.buf,
                    &y_out.buf,
                );
            }
            for acc in [false, true] {
                let dx_out = if acc { dx_init.buf.clone() } else { Packed::nan(&[g.x_len()]).buf };
                let dwb_out = if acc { dwb_init.buf.clone() } else { Packed::nan(&[g.w_len(), g.c_out]).buf };
                let call = shape.backward_input(dy.off(0), wb.off(0), dx_init.off(0), acc);
                conv_both(&gpu, &what, &call, &dy.buf, &wb.buf, &dx_out);
                let call = shape.backward_weight(dy.off(0), x.off(0), dwb_init.off(0), acc);
                conv_both(&gpu, &what, &call, &dy.buf, &x.buf, &dwb_out);
                let call = shape.backward_bias(dy.off(0), dwb_init.off(1), acc);
                conv_both(&gpu, &what, &call, &dy.buf, &[], &dwb_out);
            }
        }
    }

    #[test]
    fn conv_transpose2d_calls_match_their_twins() {
        let Some(gpu) = open() else { return };
        let mut rng = Rng(11);
        for case in TRANSPOSE_CASES {
            let t = tgeo(case);
            let shape = t.shape();
            let what = format!("{t:?}");
            let x = Packed::new(&[&rng.vec(t.x_len(), -1.0, 1.0)]);
            let wb = Packed::new(&[&rng.vec(t.w_len(), -1.0, 1.0), &rng.vec(t.c_out, -1.0, 1.0)]);
            let dy = Packed::new(&[&rng.vec(t.y_len(), -1.0, 1.0)]);
            let y_out = Packed::nan(&[t.y_len()]);
            for bias in [None, Some(wb.off(1))] {
                conv_both(
                    &gpu,
                    &what,
                    &shape.forward(x.off(0), wb.off(0), bias, y_out.off(0)),
                    &x.buf,
                    &wb.buf,
                    &y_out.buf,
                );
            }
            let dx_init = Packed::new(&[&rng.vec(t.x_len(), -1.0, 1.0)]);
            let dwb_init = Packed::new(&[&rng.vec(t.w_len(), -1.0, 1.0), &rng.vec(t.c_out, -1.0, 1.0)]);
            for acc in [false, true] {
                let dx_out = if acc { dx_init.buf.clone() } else { Packed::nan(&[t.x_len()]).buf };
                let dwb_out = if acc { dwb_init.buf.clone() } else { Packed::nan(&[t.w_len(), t.c_out]).buf };
                let call = shape.backward_input(dy.off(0), wb.off(0), dx_init.off(0), acc);
                conv_both(&gpu, &what, &call, &dy.buf, &wb.buf, &dx_out);
                let call = shape.backward_weight(x.off(0), dy.off(0), dwb_init.off(0), acc);
                conv_both(&gpu, &what, &call, &x.buf, &dy.buf, &dwb_out);
                let call = shape.backward_bias(dy.off(0), dwb_init.off(1), acc);
                conv_both(&gpu, &what, &call, &dy.buf, &[], &dwb_out);
            }
        }
    }

    /// Every batch-norm entry on both sides, state carried from the forward to the backward.
    fn batch_norm_both(gpu: &Gpu, n: usize, c: usize, s: usize, x: &[f32], rng: &mut Rng) {
        let what = format!("batch norm n {n} c {c} s {s}");
        let len = n * c * s;
        let (gamma, beta) = (rng.vec(c, 0.5, 2.0), rng.vec(c, -1.0, 1.0));
        let (rm, rv) = (rng.vec(c, -1.0, 1.0), rng.vec(c, 0.5, 2.0));
        let mut bn = Bn::new(n, c, s, x, &gamma, &beta, (&rm, &rv));
        let dy = Packed::new(&[&rng.vec(len, -1.0, 1.0)]);
        let y = Packed::nan(&[len]);
        let dx_init = Packed::new(&[&rng.vec(len, -1.0, 1.0)]);
        let grads_init = Packed::new(&[&rng.vec(c, -1.0, 1.0), &rng.vec(c, -1.0, 1.0)]);
        let state0 = bn.state.buf.clone();
        for update in [true, false] {
            let p = NormParams { y_off: y.off(0), update_running: update as u32, ..bn.p };
            let mut cpu_y = y.buf.clone();
            let mut cpu_state = state0.clone();
            batch_norm_forward(&p, &bn.x.buf, &bn.params.buf, &mut cpu_y, &mut cpu_state);
            let entry = "batch_norm_forward";
            let bufs = [(1, &bn.x.buf[..]), (2, &bn.params.buf[..]), (3, &y.buf[..]), (4, &state0[..])];
            let got = gpu.run(entry, bytemuck::bytes_of(&p), &bufs, p.workgroups(entry));
            compare(&format!("{what} y"), entry, &got[2], &cpu_y);
            compare(&format!("{what} state"), entry, &got[3], &cpu_state);
            // Carry on from the twin's state so that the backward sides start equal.
            bn.state.buf = cpu_state;
        }
        let p = NormParams { y_off: y.off(0), ..bn.p };
        let entry = "batch_norm_eval";
        let mut cpu_y = y.buf.clone();
        batch_norm_eval(&p, &bn.x.buf, &bn.params.buf, &mut cpu_y, &bn.state.buf);
        let bufs = [(1, &bn.x.buf[..]), (2, &bn.params.buf[..]), (3, &y.buf[..]), (4, &bn.state.buf[..])];
        let got = gpu.run(entry, bytemuck::bytes_of(&p), &bufs, p.workgroups(entry));
        compare(&format!("{what} eval y"), entry, &got[2], &cpu_y);
        compare(&format!("{what} eval state"), entry, &got[3], &bn.state.buf);
        for acc in [false, true] {
            let dx = if acc { dx_init.buf.clone() } else { Packed::nan(&[len]).buf };
            let grads = if acc { grads_init.buf.clone() } else { Packed::nan(&[c, c]).buf };
            let p = NormParams {
                dy_off: dy.off(0),
                dx_off: dx_init.off(0),
                dgamma_off: grads_init.off(0),
                dbeta_off: grads_init.off(1),
                accumulate: acc as u32,
                ..bn.p
            };
            let (mut cpu_dx, mut cpu_grads) = (dx.clone(), grads.clone());
            batch_norm_backward_input(&p, &bn.x.buf, &dy.buf, &mut cpu_dx, &bn.state.buf);
            batch_norm_backward_params(&p, &bn.x.buf, &dy.buf, &mut cpu_grads, &bn.state.buf);
            for (entry, out, cpu_out) in
                [("batch_norm_backward_input", &dx, &cpu_dx), ("batch_norm_backward_params", &grads, &cpu_grads)]
            {
                let bufs = [(1, &bn.x.buf[..]), (2, &dy.buf[..]), (3, &out[..]), (4, &bn.state.buf[..])];
                let got = gpu.run(entry, bytemuck::bytes_of(&p), &bufs, p.workgroups(entry));
                compare(&format!("{what} acc={acc}"), entry, &got[2], cpu_out);
                compare(&format!("{what} acc={acc} state"), entry, &got[3], &bn.state.buf);
            }
        }
    }

    #[test]
    fn batch_norm_kernels_match_their_twins() {
        let Some(gpu) = open() else { return };
        let mut rng = Rng(12);
        for &[n, c, s] in BN_CASES {
            let x = rng.vec(n * c * s, -2.0, 3.0);
            batch_norm_both(&gpu, n, c, s, &x, &mut rng);
        }
        // Extreme inputs and a constant channel.
        let x = rng.vec(2 * 3 * 300, -1e4, 1e4);
        batch_norm_both(&gpu, 2, 3, 300, &x, &mut rng);
        batch_norm_both(&gpu, 4, 2, 5, &[7.0; 40], &mut rng);
    }
}
