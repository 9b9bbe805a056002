//! Spectral normalisation (`--d-norm spectral`, Miyato et al. 2018) as a network-level weight
//! transform, the way `torch.nn.utils.parametrizations.spectral_norm` holds it:
//! - a normalised layer (linear or convolution) keeps its raw weight W under PyTorch's name
//!   `parametrizations.weight.original` and the power iteration's u (m) and v (n) as state
//!   (`parametrizations.weight.0._u`, `._v`), W read as an m x n matrix (m output features or
//!   channels);
//! - the layers read a copy of the network's parameters, `{net}.params.sn`, in which each such
//!   weight is W / sigma(W) and every other tensor a plain copy; it is rebuilt after each Adam
//!   step of the network with one power iteration ([`refresh`] with `update`), and after the host
//!   writes weights (a new run, a restore) from the stored v alone, which reproduces the stored u
//!   bit for bit;
//! - the gradient the layers write is the gradient of W / sigma; [`backward`] turns it into the
//!   gradient of W (u and v held constant), once per update, after every pass has added its part.
//!
//! The kernels are in `kernels::spectral` (spectral.wgsl), with their CPU twins.

use super::layer::{InitKey, TensorSpec};
use super::net::Net;
use crate::ir::{BufId, Buffers, Op};
use crate::kernels::loss::NO_SLOT;
use crate::kernels::spectral::{
    initial_vectors, SpectralBackward, SpectralGradDot, SpectralMatvec, SpectralNormalize, SpectralParams,
    SpectralScale,
};
use crate::rng;

/// The names PyTorch's parametrization gives the raw weight and the power-iteration vectors.
pub const WEIGHT: &str = "parametrizations.weight.original";
pub const U: &str = "parametrizations.weight.0._u";
pub const V: &str = "parametrizations.weight.0._v";

/// The weight's name in a layer, normalised or not.
pub fn weight_name(spectral: bool) -> &'static str {
    if spectral {
        WEIGHT
    } else {
        "weight"
    }
}

/// u and v of an m x n weight.
pub fn state_specs(m: usize, n: usize) -> Vec<TensorSpec> {
    vec![TensorSpec::new(U, &[m]), TensorSpec::new(V, &[n])]
}

/// u and v before training: normalised normals (their own Philox purpose, keyed like the layer's
/// weights), then 15 power iterations on the initial weight `w` (m x n), as PyTorch starts them.
pub fn init_state(key: InitKey, w: &[f32], m: usize, n: usize, state: &mut [f32]) {
    let mut draws = vec![0f32; m + n];
    rng::normals(rng::seed_words(key.seed), key.index, key.net, rng::PURPOSE_SPECTRAL, &mut draws);
    let (u, v) = state.split_at_mut(m);
    initial_vectors(&w[..m * n], m, n, &draws[..m], &draws[m..], u, &mut v[..n]);
}

/// One normalised weight of a network: where W, u and v live, and its part of the scratch
/// buffer (sigma, then c = sum(G W_sn), then a raw vector of max(m, n)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpectralTensor {
    pub w_off: usize,
    pub rows: usize,
    pub cols: usize,
    pub u_off: usize,
    pub v_off: usize,
    pub scratch_off: usize,
}

impl SpectralTensor {
    fn sigma_slot(&self) -> u32 {
        self.scratch_off as u32
    }
    fn dot_slot(&self) -> u32 {
        self.scratch_off as u32 + 1
    }
    fn raw_off(&self) -> u32 {
        self.scratch_off as u32 + 2
    }
    fn len(&self) -> usize {
        self.rows * self.cols
    }
    fn scratch_len(&self) -> usize {
        2 + self.rows.max(self.cols)
    }
}

/// The normalised weights of `net`, in buffer order.
pub fn tensors(net: &Net) -> Vec<SpectralTensor> {
    let mut out = vec![];
    let mut scratch_off = 0;
    for l in &net.layers {
        for w in l.layer.spectral_weights() {
            let u_off = l.state_off + w.state_off;
            let (rows, cols) = (w.rows, w.cols);
            let t = SpectralTensor {
                w_off: l.param_off + w.param_off,
                rows,
                cols,
                u_off,
                v_off: u_off + rows,
                scratch_off,
            };
            scratch_off += t.scratch_len();
            out.push(t);
        }
    }
    out
}

/// The buffers of a network with normalised weights: the weights its layers read and the
/// power iteration's scratch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpectralBufs {
    pub weights: BufId,
    pub scratch: BufId,
}

/// Allocates them, when `net` has normalised weights.
pub fn alloc(net: &Net, bufs: &mut Buffers) -> Option<SpectralBufs> {
    let last = *tensors(net).last()?;
    let weights = bufs.f32(format!("{}.params.sn", net.name), net.params_len);
    let scratch = bufs.f32(format!("{}.sn.scratch", net.name), last.scratch_off + last.scratch_len());
    Some(SpectralBufs { weights, scratch })
}

/// Rebuilds the weights the layers read from `params`: with `update`, one power iteration first
/// (v from u, then u from v); without, u and sigma from the stored v only.
pub fn refresh(ops: &mut Vec<Op>, net: &Net, params: BufId, state: BufId, sn: SpectralBufs, update: bool) {
    let all = tensors(net);
    let mut copied_to = 0;
    for t in &all {
        copy(ops, params, sn, copied_to, t.w_off);
        let (m, n) = (t.rows as u32, t.cols as u32);
        let base = SpectralParams { w_off: t.w_off as u32, sigma_slot: NO_SLOT, ..Default::default() };
        if update {
            let p = SpectralParams {
                outs: n,
                inner: m,
                row_stride: 1,
                col_stride: n,
                x_off: t.u_off as u32,
                out_off: t.raw_off(),
                ..base
            };
            ops.push(SpectralMatvec { p, w: params, x: state, out: sn.scratch }.into());
            let p = SpectralParams { len: n, x_off: t.raw_off(), out_off: t.v_off as u32, ..base };
            ops.push(SpectralNormalize { p, out: state, scratch: sn.scratch }.into());
        }
        let p = SpectralParams {
            outs: m,
            inner: n,
            row_stride: n,
            col_stride: 1,
            x_off: t.v_off as u32,
            out_off: t.raw_off(),
            ..base
        };
        ops.push(SpectralMatvec { p, w: params, x: state, out: sn.scratch }.into());
        let p =
            SpectralParams { len: m, x_off: t.raw_off(), out_off: t.u_off as u32, sigma_slot: t.sigma_slot(), ..base };
        ops.push(SpectralNormalize { p, out: state, scratch: sn.scratch }.into());
        let p = SpectralParams { len: t.len() as u32, out_off: t.w_off as u32, sigma_slot: t.sigma_slot(), ..base };
        ops.push(SpectralScale { p, w: params, scratch: sn.scratch, out: sn.weights }.into());
        copied_to = t.w_off + t.len();
    }
    copy(ops, params, sn, copied_to, net.params_len);
}

/// The parameters in [from, to) copied unchanged into the weights the layers read.
fn copy(ops: &mut Vec<Op>, params: BufId, sn: SpectralBufs, from: usize, to: usize) {
    if to > from {
        let p = SpectralParams {
            len: (to - from) as u32,
            w_off: from as u32,
            out_off: from as u32,
            sigma_slot: NO_SLOT,
            ..Default::default()
        };
        ops.push(SpectralScale { p, w: params, scratch: sn.scratch, out: sn.weights }.into());
    }
}

/// Turns the gradient of each W / sigma in `grads` into the gradient of W.
pub fn backward(ops: &mut Vec<Op>, net: &Net, grads: BufId, state: BufId, sn: SpectralBufs) {
    for t in tensors(net) {
        let p = SpectralParams {
            len: t.len() as u32,
            inner: t.cols as u32,
            w_off: t.w_off as u32,
            x_off: t.w_off as u32,
            out_off: t.w_off as u32,
            sigma_slot: t.sigma_slot(),
            dot_slot: t.dot_slot(),
            u_off: t.u_off as u32,
            v_off: t.v_off as u32,
            ..Default::default()
        };
        ops.push(SpectralGradDot { p, g: grads, w_sn: sn.weights, scratch: sn.scratch }.into());
        ops.push(SpectralBackward { p, state, scratch: sn.scratch, g: grads }.into());
    }
}
