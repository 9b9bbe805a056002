//! The projection discriminator's class term (projection.wgsl; Miyato & Koyama 2018): the logit
//! plus <E[y], phi(x)>, and its gradients with respect to phi and to the class embedding E (a
//! per-class sum in batch order: no atomics). Formulas, bindings and layouts in the WGSL header.

use super::activation::activation_grad;
use super::embedding::class_index;
use super::{Entry, Family, Slot};
use crate::ir::kernel::groups_1d;
use crate::ir::{BufId, Host, Kernel, Res, Span, UniformLayout};

crate::uniform! {
    /// `ProjectionParams` in projection.wgsl: B rows of K features phi, C classes; E (and dE) at
    /// `embed_off`, phi at `phi_off`, its gradient at `dphi_off`, the logits (and their
    /// gradient) at `logit_off`.
    pub struct ProjectionParams {
        pub rows: u32,
        pub dim: u32,
        pub classes: u32,
        pub labels_off: u32,
        pub embed_off: u32,
        pub phi_off: u32,
        pub logit_off: u32,
        pub dphi_off: u32,
        /// projection_backward: dE += v instead of = v.
        pub accumulate: u32,
        /// projection_backward: [`PART_PARAMS`] | [`PART_INPUT`] (set by [`ProjectionBackward`]).
        pub parts: u32,
        /// projection_backward: the activation (code) that made phi, whose derivative scales
        /// the term's gradient of phi (the identity when phi's gradient is not folded).
        pub act: u32,
        pub slope: f32,
    }
}

/// projection_backward writes dE.
pub const PART_PARAMS: u32 = 1;
/// projection_backward adds to dphi.
pub const PART_INPUT: u32 = 2;

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

pub const FAMILY: Family = Family {
    name: "projection",
    wgsl: include_str!("../../shaders/projection.wgsl"),
    f16: false,
    unchecked: false,
    entries: &[
        Entry { name: "projection_forward", slots: &[U(0), R(1), R(2), R(3), RW(5)] },
        Entry { name: "projection_backward", slots: &[U(0), R(1), R(2), R(3), R(4), RW(5), RW(6)] },
    ],
    uniforms: &[ProjectionParams::INFO],
};

fn bytes(p: &ProjectionParams) -> Option<Vec<u8>> {
    Some(bytemuck::bytes_of(p).to_vec())
}

impl ProjectionParams {
    fn table_len(&self) -> usize {
        self.classes.max(1) as usize * self.dim as usize
    }

    fn features_len(&self) -> usize {
        self.rows as usize * self.dim as usize
    }
}

/// logit[b] += <E[y_b], phi[b]> (`projection_forward`), after the linear head wrote the logit.
#[derive(Clone, Debug)]
pub struct ProjectionForward {
    pub p: ProjectionParams,
    pub labels: BufId,
    /// The parameters, E at `p.embed_off`.
    pub embed: BufId,
    pub phi: BufId,
    pub logits: BufId,
}

impl Kernel for ProjectionForward {
    fn entry(&self) -> &'static str {
        "projection_forward"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        let b = Res::Buf;
        vec![(1, b(self.labels)), (2, b(self.embed)), (3, b(self.phi)), (5, b(self.logits))]
    }
    fn flops(&self) -> f64 {
        2.0 * self.p.features_len() as f64
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.rows as usize)
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        vec![
            Span::read(self.labels, p.labels_off, p.rows as usize),
            Span::read(self.embed, p.embed_off, p.table_len()),
            Span::read(self.phi, p.phi_off, p.features_len()),
            Span::write(self.logits, p.logit_off, p.rows as usize),
        ]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, labels, embed, phi) = (&self.p, self.labels, self.embed, self.phi);
        host.with_out(self.logits, |b, logits| projection_forward(p, &b[labels], &b[embed], &b[phi], logits))
    }
}

/// `projection_forward`: logit[logit_off + b] += sum_k E[y_b, k] phi[b, k], the sum from 0 in
/// order of k.
pub fn projection_forward(p: &ProjectionParams, labels: &[f32], embed: &[f32], phi: &[f32], logits: &mut [f32]) {
    let dim = p.dim as usize;
    for b in 0..p.rows as usize {
        let e = p.embed_off as usize + class_index(labels[p.labels_off as usize + b], p.classes) * dim;
        let x = p.phi_off as usize + b * dim;
        let mut acc = 0f32;
        for k in 0..dim {
            acc += embed[e + k] * phi[x + k];
        }
        let at = p.logit_off as usize + b;
        logits[at] += acc;
    }
}

/// The term's gradients (`projection_backward`): dE (+)= into `grads` when given (the D step),
/// dphi += into `dphi` when given (onto the head's gradient of phi).
#[derive(Clone, Debug)]
pub struct ProjectionBackward {
    pub p: ProjectionParams,
    pub labels: BufId,
    /// The parameters, E at `p.embed_off`.
    pub embed: BufId,
    pub phi: BufId,
    pub dlogits: BufId,
    /// The network's gradient buffer (dE at `p.embed_off`).
    pub grads: Option<BufId>,
    pub dphi: Option<BufId>,
}

impl ProjectionBackward {
    /// The params with `parts` set from the outputs given.
    pub fn params(&self) -> ProjectionParams {
        let parts = super::backward_parts(self.grads.is_some(), self.dphi.is_some());
        ProjectionParams { parts, ..self.p }
    }
}

impl Kernel for ProjectionBackward {
    fn entry(&self) -> &'static str {
        "projection_backward"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.params())
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        let b = Res::Buf;
        let one = self.grads.or(self.dphi).expect("projection_backward writes dE or dphi");
        vec![
            (1, b(self.labels)),
            (2, b(self.embed)),
            (3, b(self.phi)),
            (4, b(self.dlogits)),
            (5, b(self.grads.unwrap_or(one))),
            (6, b(self.dphi.unwrap_or(one))),
        ]
    }
    fn unused_slots(&self) -> Vec<u32> {
        [(5, self.grads.is_none()), (6, self.dphi.is_none())].into_iter().filter(|t| t.1).map(|t| t.0).collect()
    }
    /// dphi: about 3 per value; dE: a product and a sum per matching (b, k).
    fn flops(&self) -> f64 {
        5.0 * self.p.features_len() as f64
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.rows.max(self.p.classes) as usize * self.p.dim as usize)
    }
    fn spans(&self) -> Vec<Span> {
        let p = &self.p;
        let mut s = vec![
            Span::read(self.labels, p.labels_off, p.rows as usize),
            Span::read(self.phi, p.phi_off, p.features_len()),
            Span::read(self.dlogits, p.logit_off, p.rows as usize),
        ];
        if let Some(g) = self.grads {
            s.push(Span::write(g, p.embed_off, p.classes as usize * p.dim as usize));
        }
        if let Some(d) = self.dphi {
            s.push(Span::read(self.embed, p.embed_off, p.table_len()));
            s.push(Span::write(d, p.dphi_off, p.features_len()));
        }
        s
    }
    fn run_cpu(&self, host: &mut Host) {
        let p = self.params();
        let (labels, embed, phi, dlogits) = (self.labels, self.embed, self.phi, self.dlogits);
        if let Some(d) = self.dphi {
            host.with_out(d, |b, dphi| {
                projection_backward_input(&p, &b[labels], &b[embed], &b[phi], &b[dlogits], dphi)
            });
        }
        if let Some(g) = self.grads {
            host.with_out(g, |b, grads| projection_backward_params(&p, &b[labels], &b[phi], &b[dlogits], grads));
        }
    }
}

/// `projection_backward`'s PART_INPUT: dphi[dphi_off + b K + k] += (dlogit[b] E[y_b, k])
/// act'(phi[b, k]).
pub fn projection_backward_input(
    p: &ProjectionParams,
    labels: &[f32],
    embed: &[f32],
    phi: &[f32],
    dlogits: &[f32],
    dphi: &mut [f32],
) {
    let dim = p.dim as usize;
    for b in 0..p.rows as usize {
        let e = p.embed_off as usize + class_index(labels[p.labels_off as usize + b], p.classes) * dim;
        let d = dlogits[p.logit_off as usize + b];
        for k in 0..dim {
            let i = b * dim + k;
            let g = d * embed[e + k];
            let at = p.dphi_off as usize + i;
            dphi[at] += g * activation_grad(phi[p.phi_off as usize + i], p.act, p.slope);
        }
    }
}

/// `projection_backward`'s PART_PARAMS: dE[embed_off + c K + k] (+)= sum over b ascending with
/// y_b = c of dlogit[b] phi[b, k], each sum from 0 in batch order.
pub fn projection_backward_params(
    p: &ProjectionParams,
    labels: &[f32],
    phi: &[f32],
    dlogits: &[f32],
    grads: &mut [f32],
) {
    let (dim, classes) = (p.dim as usize, p.classes as usize);
    let class_of = |b: usize| class_index(labels[p.labels_off as usize + b], p.classes);
    for c in 0..classes {
        for k in 0..dim {
            let mut acc = 0f32;
            for b in (0..p.rows as usize).filter(|&b| class_of(b) == c) {
                acc += dlogits[p.logit_off as usize + b] * phi[p.phi_off as usize + b * dim + k];
            }
            let at = p.embed_off as usize + c * dim + k;
            grads[at] = if p.accumulate != 0 { grads[at] + acc } else { acc };
        }
    }
}
