//! A per-class scale and shift (class_affine.wgsl): conditional batch norm's second half, after a
//! batch norm without an affine of its own (SNGAN's and BigGAN's G). y = act(x_hat gamma[y_b] +
//! beta[y_b]) per channel of an NCHW tensor, the activation fused, and its gradients (dz = dy
//! act'(y) as dy is loaded, y recomputed from x_hat and the tables; gamma's and beta's per class,
//! in batch order: no atomics). Formulas, bindings and layouts in the WGSL header.

use super::activation::{activate, activation_grad};
use super::embedding::class_index;
use super::{Entry, Family, Slot};
use crate::ir::kernel::groups_1d;
use crate::ir::{BufId, Host, Kernel, Res, Span, UniformLayout};

crate::uniform! {
    /// `ClassAffineParams` in class_affine.wgsl: an (n, c, s) tensor (s = h w, 1 after a linear
    /// layer), C classes; gamma and beta (C, c) at `gamma_off` and `beta_off` of the parameters
    /// (their gradients at the same offsets of the gradient buffer).
    pub struct ClassAffineParams {
        pub n: u32,
        pub c: u32,
        pub s: u32,
        pub classes: u32,
        pub labels_off: u32,
        pub x_off: u32,
        pub y_off: u32,
        pub dy_off: u32,
        pub dx_off: u32,
        pub gamma_off: u32,
        pub beta_off: u32,
        /// class_affine_backward: dgamma, dbeta += v instead of = v.
        pub accumulate: u32,
        /// class_affine_backward: [`PART_PARAMS`] | [`PART_INPUT`] (set by [`ClassAffineBackward`]).
        pub parts: u32,
        /// The activation (code) after the affine: forward applies it, backward applies its
        /// derivative to dy, at y recomputed from x_hat (0, the identity: neither).
        pub act: u32,
        pub slope: f32,
        pub _pad0: u32,
    }
}

/// class_affine_backward writes dgamma and dbeta.
pub const PART_PARAMS: u32 = 1;
/// class_affine_backward writes dx.
pub const PART_INPUT: u32 = 2;

impl ClassAffineParams {
    /// Elements of the (n, c, s) tensor.
    pub fn len(&self) -> usize {
        self.n as usize * self.c as usize * self.s as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values of each table the kernels may read (a label always names a row: at least one).
    fn table_len(&self) -> usize {
        self.classes.max(1) as usize * self.c as usize
    }

    /// y of element i, as the forward computes it.
    fn y_at(&self, labels: &[f32], x: &[f32], params: &[f32], i: usize) -> f32 {
        let t = self.table_at(labels, i);
        let z = x[self.x_off as usize + i] * params[self.gamma_off as usize + t] + params[self.beta_off as usize + t];
        activate(z, self.act, self.slope)
    }

    /// dz of element i: dy, times act'(y) with an activation, y recomputed from x_hat and the
    /// tables (`dz_at` in the WGSL: the forward's expression, so the forward's value).
    fn dz_at(&self, labels: &[f32], x: &[f32], params: &[f32], dy: &[f32], i: usize) -> f32 {
        let g = dy[self.dy_off as usize + i];
        if self.act == 0 {
            return g;
        }
        g * activation_grad(self.y_at(labels, x, params, i), self.act, self.slope)
    }

    /// The (class, channel) entry of gamma and beta for element i (`table_at` in the WGSL).
    fn table_at(&self, labels: &[f32], i: usize) -> usize {
        let (c, s) = (self.c as usize, self.s as usize);
        let b = i / (c * s);
        class_index(labels[self.labels_off as usize + b], self.classes) * c + (i / s) % c
    }
}

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

pub const FAMILY: Family = Family {
    name: "class_affine",
    wgsl: include_str!("../../shaders/class_affine.wgsl"),
    f16: false,
    unchecked: false,
    entries: &[
        Entry { name: "class_affine_forward", slots: &[U(0), R(1), R(2), R(3), RW(5)] },
        Entry { name: "class_affine_backward", slots: &[U(0), R(1), R(2), R(3), R(4), RW(5), RW(6)] },
    ],
    uniforms: &[ClassAffineParams::INFO],
};

fn bytes(p: &ClassAffineParams) -> Option<Vec<u8>> {
    Some(bytemuck::bytes_of(p).to_vec())
}

/// y = act(x_hat gamma[y_b] + beta[y_b]) (`class_affine_forward`).
#[derive(Clone, Debug)]
pub struct ClassAffineForward {
    pub p: ClassAffineParams,
    pub labels: BufId,
    /// x_hat, batch norm's output.
    pub x: BufId,
    /// The parameters (gamma, beta).
    pub params: BufId,
    pub out: BufId,
}

impl Kernel for ClassAffineForward {
    fn entry(&self) -> &'static str {
        "class_affine_forward"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        let b = Res::Buf;
        vec![(1, b(self.labels)), (2, b(self.x)), (3, b(self.params)), (5, b(self.out))]
    }
    fn flops(&self) -> f64 {
        2.0 * self.p.len() as f64
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.len())
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        vec![
            Span::read(self.labels, p.labels_off, p.n as usize),
            Span::read(self.x, p.x_off, p.len()),
            Span::read(self.params, p.gamma_off, p.table_len()),
            Span::read(self.params, p.beta_off, p.table_len()),
            Span::write(self.out, p.y_off, p.len()),
        ]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, labels, x, params) = (&self.p, self.labels, self.x, self.params);
        host.with_out(self.out, |b, y| class_affine_forward(p, &b[labels], &b[x], &b[params], y))
    }
}

/// `class_affine_forward`: y[y_off + i] = act(x[x_off + i] gamma[t] + beta[t]), t = y_b c + ch.
pub fn class_affine_forward(p: &ClassAffineParams, labels: &[f32], x: &[f32], params: &[f32], y: &mut [f32]) {
    for i in 0..p.len() {
        y[p.y_off as usize + i] = p.y_at(labels, x, params, i);
    }
}

/// The backward pass (`class_affine_backward`): dgamma and dbeta (+)= into `grads` when given,
/// dx = into `dx` when given. x = x_hat, the forward's input.
#[derive(Clone, Debug)]
pub struct ClassAffineBackward {
    pub p: ClassAffineParams,
    pub labels: BufId,
    pub x: BufId,
    /// The parameters (gamma).
    pub params: BufId,
    pub dy: BufId,
    /// The network's gradient buffer (dgamma at `p.gamma_off`, dbeta at `p.beta_off`).
    pub grads: Option<BufId>,
    pub dx: Option<BufId>,
}

impl ClassAffineBackward {
    /// The params with `parts` set from the outputs given.
    pub fn params(&self) -> ClassAffineParams {
        let parts = super::backward_parts(self.grads.is_some(), self.dx.is_some());
        ClassAffineParams { parts, ..self.p }
    }
}

impl Kernel for ClassAffineBackward {
    fn entry(&self) -> &'static str {
        "class_affine_backward"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.params())
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        let b = Res::Buf;
        let one = self.grads.or(self.dx).expect("class_affine_backward writes dgamma or dx");
        vec![
            (1, b(self.labels)),
            (2, b(self.x)),
            (3, b(self.params)),
            (4, b(self.dy)),
            (5, b(self.grads.unwrap_or(one))),
            (6, b(self.dx.unwrap_or(one))),
        ]
    }
    fn unused_slots(&self) -> Vec<u32> {
        [(5, self.grads.is_none()), (6, self.dx.is_none())].into_iter().filter(|t| t.1).map(|t| t.0).collect()
    }
    /// dx: one product per element; the sums: three per element.
    fn flops(&self) -> f64 {
        4.0 * self.p.len() as f64
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.len().max(self.p.classes as usize * self.p.c as usize))
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        let mut s = vec![Span::read(self.labels, p.labels_off, p.n as usize), Span::read(self.dy, p.dy_off, p.len())];
        if p.act != 0 {
            // Both parts recompute y from x_hat and the tables.
            s.extend([
                Span::read(self.x, p.x_off, p.len()),
                Span::read(self.params, p.gamma_off, p.table_len()),
                Span::read(self.params, p.beta_off, p.table_len()),
            ]);
        }
        if let Some(g) = self.grads {
            let len = p.classes as usize * p.c as usize;
            s.extend([
                Span::read(self.x, p.x_off, p.len()),
                Span::write(g, p.gamma_off, len),
                Span::write(g, p.beta_off, len),
            ]);
        }
        if let Some(dx) = self.dx {
            s.extend([Span::read(self.params, p.gamma_off, p.table_len()), Span::write(dx, p.dx_off, p.len())]);
        }
        s
    }
    fn run_cpu(&self, host: &mut Host) {
        let p = self.params();
        let (labels, x, params, dy) = (self.labels, self.x, self.params, self.dy);
        if let Some(d) = self.dx {
            host.with_out(d, |b, dx| class_affine_backward_input(&p, &b[labels], &b[x], &b[params], &b[dy], dx));
        }
        if let Some(g) = self.grads {
            host.with_out(g, |b, grads| class_affine_backward_params(&p, &b[labels], &b[x], &b[params], &b[dy], grads));
        }
    }
}

/// `class_affine_backward`'s PART_INPUT: dx[dx_off + i] = dz_i gamma[t], dz_i = dy[dy_off + i]
/// act'(y_i), y_i = act(x_hat_i gamma[t] + beta[t]) recomputed (x is not read without an
/// activation).
pub fn class_affine_backward_input(
    p: &ClassAffineParams,
    labels: &[f32],
    x: &[f32],
    params: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    for i in 0..p.len() {
        let dz = p.dz_at(labels, x, params, dy, i);
        dx[p.dx_off as usize + i] = dz * params[p.gamma_off as usize + p.table_at(labels, i)];
    }
}

/// `class_affine_backward`'s PART_PARAMS: dgamma[k, ch] (+)= sum of dz x and dbeta[k, ch] (+)=
/// sum of dz over the elements of channel ch of the samples of class k, batch order then
/// spatial order, each sum from 0 (dz as in [`class_affine_backward_input`]).
pub fn class_affine_backward_params(
    p: &ClassAffineParams,
    labels: &[f32],
    x: &[f32],
    params: &[f32],
    dy: &[f32],
    grads: &mut [f32],
) {
    let (c, s) = (p.c as usize, p.s as usize);
    let x_off = p.x_off as usize;
    let class_of = |b: usize| class_index(labels[p.labels_off as usize + b], p.classes);
    for i in 0..p.classes as usize * c {
        let (k, ch) = (i / c, i % c);
        let (mut sum_dy_x, mut sum_dy) = (0f32, 0f32);
        for b in (0..p.n as usize).filter(|&b| class_of(b) == k) {
            let row = (b * c + ch) * s;
            for sp in 0..s {
                let g = p.dz_at(labels, x, params, dy, row + sp);
                sum_dy_x += g * x[x_off + row + sp];
                sum_dy += g;
            }
        }
        let (gi, bi) = (p.gamma_off as usize + i, p.beta_off as usize + i);
        if p.accumulate != 0 {
            // The WGSL's old + sum (IEEE addition commutes exactly).
            sum_dy_x += grads[gi];
            sum_dy += grads[bi];
        }
        grads[gi] = sum_dy_x;
        grads[bi] = sum_dy;
    }
}
