//! Spectral normalisation of D's weights (spectral.wgsl, `--d-norm spectral`): one power
//! iteration per D update, the normalised weights the layers read, and the gradient through
//! sigma with u and v held constant, as `torch.nn.utils.parametrizations.spectral_norm` does.
//! Every reduction runs in the WGSL's order (256 strided partial sums, then a tree), so the twins
//! round like the kernels.

use super::loss::NO_SLOT;
use super::{Entry, Family, Slot};
use crate::ir::kernel::groups_1d;
use crate::ir::{BufId, Host, Kernel, Res, Span, UniformLayout};

crate::uniform! {
    /// `SpectralParams` in spectral.wgsl (each entry point's use of the fields is in its header).
    pub struct SpectralParams {
        pub outs: u32,
        pub inner: u32,
        pub row_stride: u32,
        pub col_stride: u32,
        pub w_off: u32,
        pub x_off: u32,
        pub out_off: u32,
        pub len: u32,
        pub sigma_slot: u32,
        pub dot_slot: u32,
        pub u_off: u32,
        pub v_off: u32,
    }
}

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

pub const FAMILY: Family = Family {
    name: "spectral",
    wgsl: include_str!("../../shaders/spectral.wgsl"),
    f16: false,
    unchecked: false,
    entries: &[
        Entry { name: "spectral_matvec", slots: &[U(0), R(1), R(2), RW(3)] },
        Entry { name: "spectral_normalize", slots: &[U(0), RW(3), RW(4)] },
        Entry { name: "spectral_scale", slots: &[U(0), R(1), R(2), RW(3)] },
        Entry { name: "spectral_grad_dot", slots: &[U(0), R(1), R(2), RW(3)] },
        Entry { name: "spectral_backward", slots: &[U(0), R(1), R(2), RW(3)] },
    ],
    uniforms: &[SpectralParams::INFO],
};

/// F.normalize's floor under a vector's norm.
pub const NORM_EPS: f32 = 1e-12;

const LANES: usize = 256;

/// The WGSL's `tree_sum`: partial sums of lanes strided over `n` terms, then a binary tree.
fn lane_sum(n: usize, term: impl Fn(usize) -> f32) -> f32 {
    let mut partial = [0f32; LANES];
    for (lane, acc) in partial.iter_mut().enumerate() {
        let mut i = lane;
        while i < n {
            *acc += term(i);
            i += LANES;
        }
    }
    let mut stride = LANES / 2;
    while stride > 0 {
        for lane in 0..stride {
            partial[lane] += partial[lane + stride];
        }
        stride /= 2;
    }
    partial[0]
}

fn uniform_bytes(p: &SpectralParams) -> Option<Vec<u8>> {
    Some(bytemuck::bytes_of(p).to_vec())
}

/// `out` = W x (or W^T x, by the strides) for one weight matrix: a raw power-iteration vector.
#[derive(Clone, Debug)]
pub struct SpectralMatvec {
    pub p: SpectralParams,
    pub w: BufId,
    pub x: BufId,
    pub out: BufId,
}

impl Kernel for SpectralMatvec {
    fn entry(&self) -> &'static str {
        "spectral_matvec"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        uniform_bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.w)), (2, Res::Buf(self.x)), (3, Res::Buf(self.out))]
    }
    fn workgroups(&self) -> [u32; 3] {
        let g = (self.p.outs as usize).max(1);
        if g <= 65_535 {
            [g as u32, 1, 1]
        } else {
            [65_535, g.div_ceil(65_535) as u32, 1]
        }
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        let (outs, inner) = (p.outs as usize, p.inner as usize);
        let last = (outs.max(1) - 1) * p.row_stride as usize + (inner.max(1) - 1) * p.col_stride as usize;
        let w_len = if outs == 0 || inner == 0 { 0 } else { last + 1 };
        vec![
            Span::read(self.w, p.w_off, w_len),
            Span::read(self.x, p.x_off, inner),
            Span::write(self.out, p.out_off, outs),
        ]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, w, x) = (&self.p, self.w, self.x);
        host.with_out(self.out, |b, out| spectral_matvec(p, &b[w], &b[x], out))
    }
}

/// `spectral_matvec`: out[o] = sum_k w[w_off + o row_stride + k col_stride] x[x_off + k].
pub fn spectral_matvec(p: &SpectralParams, w: &[f32], x: &[f32], out: &mut [f32]) {
    let (w_off, x_off) = (p.w_off as usize, p.x_off as usize);
    let (rs, cs) = (p.row_stride as usize, p.col_stride as usize);
    for o in 0..p.outs as usize {
        out[p.out_off as usize + o] = lane_sum(p.inner as usize, |k| w[w_off + o * rs + k * cs] * x[x_off + k]);
    }
}

/// A raw vector (in the scratch, `aux`) normalised into `out`; its norm into the sigma slot.
#[derive(Clone, Debug)]
pub struct SpectralNormalize {
    pub p: SpectralParams,
    pub out: BufId,
    pub scratch: BufId,
}

impl Kernel for SpectralNormalize {
    fn entry(&self) -> &'static str {
        "spectral_normalize"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        uniform_bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(3, Res::Buf(self.out)), (4, Res::Buf(self.scratch))]
    }
    fn workgroups(&self) -> [u32; 3] {
        [1, 1, 1]
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        let mut s =
            vec![Span::read(self.scratch, p.x_off, p.len as usize), Span::write(self.out, p.out_off, p.len as usize)];
        if p.sigma_slot != NO_SLOT {
            s.push(Span::write(self.scratch, p.sigma_slot, 1));
        }
        s
    }
    fn run_cpu(&self, host: &mut Host) {
        let p = &self.p;
        host.with_outs(self.out, self.scratch, |_, out, scratch| spectral_normalize(p, scratch, out))
    }
}

/// `spectral_normalize`: out = raw / max(||raw||, 1e-12), raw = scratch[x_off..][..len]; the
/// norm into scratch[sigma_slot] unless NO_SLOT.
pub fn spectral_normalize(p: &SpectralParams, scratch: &mut [f32], out: &mut [f32]) {
    let (x_off, len) = (p.x_off as usize, p.len as usize);
    let norm = lane_sum(len, |i| scratch[x_off + i] * scratch[x_off + i]).sqrt();
    let denom = norm.max(NORM_EPS);
    for i in 0..len {
        out[p.out_off as usize + i] = scratch[x_off + i] / denom;
    }
    if p.sigma_slot != NO_SLOT {
        scratch[p.sigma_slot as usize] = norm;
    }
}

/// The weights the layers read: W / sigma (or a copy, without a sigma slot).
#[derive(Clone, Debug)]
pub struct SpectralScale {
    pub p: SpectralParams,
    pub w: BufId,
    pub scratch: BufId,
    pub out: BufId,
}

impl Kernel for SpectralScale {
    fn entry(&self) -> &'static str {
        "spectral_scale"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        uniform_bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.w)), (2, Res::Buf(self.scratch)), (3, Res::Buf(self.out))]
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.len as usize)
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        let mut s = vec![Span::read(self.w, p.w_off, p.len as usize), Span::write(self.out, p.out_off, p.len as usize)];
        if p.sigma_slot != NO_SLOT {
            s.push(Span::read(self.scratch, p.sigma_slot, 1));
        }
        s
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, w, scratch) = (&self.p, self.w, self.scratch);
        host.with_out(self.out, |b, out| spectral_scale(p, &b[w], &b[scratch], out))
    }
}

/// `spectral_scale`: out[out_off + i] = w[w_off + i] / sigma (sigma 1 without a slot).
pub fn spectral_scale(p: &SpectralParams, w: &[f32], scratch: &[f32], out: &mut [f32]) {
    let s = if p.sigma_slot == NO_SLOT { 1.0 } else { scratch[p.sigma_slot as usize] };
    let (w_off, out_off) = (p.w_off as usize, p.out_off as usize);
    for i in 0..p.len as usize {
        out[out_off + i] = w[w_off + i] / s;
    }
}

/// c = sum(G * W_sn) into the scratch's dot slot.
#[derive(Clone, Debug)]
pub struct SpectralGradDot {
    pub p: SpectralParams,
    pub g: BufId,
    pub w_sn: BufId,
    pub scratch: BufId,
}

impl Kernel for SpectralGradDot {
    fn entry(&self) -> &'static str {
        "spectral_grad_dot"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        uniform_bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.g)), (2, Res::Buf(self.w_sn)), (3, Res::Buf(self.scratch))]
    }
    fn workgroups(&self) -> [u32; 3] {
        [1, 1, 1]
    }
    fn spans(&self) -> Vec<Span> {
        let (p, n) = (&self.p, self.p.len as usize);
        vec![
            Span::read(self.g, p.x_off, n),
            Span::read(self.w_sn, p.w_off, n),
            Span::write(self.scratch, p.dot_slot, 1),
        ]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, g, w) = (&self.p, self.g, self.w_sn);
        host.with_out(self.scratch, |b, scratch| spectral_grad_dot(p, &b[g], &b[w], scratch))
    }
}

/// `spectral_grad_dot`: scratch[dot_slot] = sum_i g[x_off + i] w_sn[w_off + i].
pub fn spectral_grad_dot(p: &SpectralParams, g: &[f32], w_sn: &[f32], scratch: &mut [f32]) {
    let (g_off, w_off) = (p.x_off as usize, p.w_off as usize);
    scratch[p.dot_slot as usize] = lane_sum(p.len as usize, |i| g[g_off + i] * w_sn[w_off + i]);
}

/// dL/dW = (G - c u v^T) / sigma, in place over G.
#[derive(Clone, Debug)]
pub struct SpectralBackward {
    pub p: SpectralParams,
    pub state: BufId,
    pub scratch: BufId,
    pub g: BufId,
}

impl Kernel for SpectralBackward {
    fn entry(&self) -> &'static str {
        "spectral_backward"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        uniform_bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.state)), (2, Res::Buf(self.scratch)), (3, Res::Buf(self.g))]
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.len as usize)
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        let (n, rows) = (p.inner as usize, (p.len / p.inner.max(1)) as usize);
        vec![
            Span::read(self.state, p.u_off, rows),
            Span::read(self.state, p.v_off, n),
            Span::read(self.scratch, p.sigma_slot, 1),
            Span::read(self.scratch, p.dot_slot, 1),
            Span::write(self.g, p.out_off, p.len as usize),
        ]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, state, scratch) = (&self.p, self.state, self.scratch);
        host.with_out(self.g, |b, g| spectral_backward(p, &b[state], &b[scratch], g))
    }
}

/// `spectral_backward`: g[out_off + i] = (g - c u[i / n] v[i % n]) / sigma.
pub fn spectral_backward(p: &SpectralParams, state: &[f32], scratch: &[f32], g: &mut [f32]) {
    let (sigma, c) = (scratch[p.sigma_slot as usize], scratch[p.dot_slot as usize]);
    let (n, u, v) = (p.inner as usize, p.u_off as usize, p.v_off as usize);
    for i in 0..p.len as usize {
        let cu = c * state[u + i / n];
        let at = p.out_off as usize + i;
        g[at] = (g[at] - cu * state[v + i % n]) / sigma;
    }
}

/// u and v before training, as PyTorch starts them: normalised standard normals (`u0`, `v0`,
/// drawn by the caller), then 15 power iterations on the initial weight (m x n, row-major),
/// computed by the twins above so both backends start from the same bits.
pub fn initial_vectors(w: &[f32], m: usize, n: usize, u0: &[f32], v0: &[f32], u: &mut [f32], v: &mut [f32]) {
    let norm = |x: &[f32], out: &mut [f32]| {
        let mut scratch = x.to_vec();
        let p = SpectralParams { len: x.len() as u32, sigma_slot: NO_SLOT, ..Default::default() };
        spectral_normalize(&p, &mut scratch, out);
    };
    norm(u0, u);
    norm(v0, v);
    let (mut raw_n, mut raw_m) = (vec![0f32; n], vec![0f32; m]);
    let wt =
        SpectralParams { outs: n as u32, inner: m as u32, row_stride: 1, col_stride: n as u32, ..Default::default() };
    let wv =
        SpectralParams { outs: m as u32, inner: n as u32, row_stride: n as u32, col_stride: 1, ..Default::default() };
    for _ in 0..15 {
        spectral_matvec(&wt, w, u, &mut raw_n);
        norm(&raw_n, v);
        spectral_matvec(&wv, w, v, &mut raw_m);
        norm(&raw_m, u);
    }
}
