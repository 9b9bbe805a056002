// projection.wgsl: the projection discriminator's class term (Miyato & Koyama 2018, "cGANs with
// Projection Discriminator"): D(x, y) = head(phi(x)) + <E[y], phi(x)>, where phi(x) is D's last
// hidden features (K per sample) and E a learned (C, K) class embedding. The linear head writes
// the logit first; projection_forward adds the inner product to it, and projection_backward adds
// the term's gradient to phi's, which the head's backward wrote first.
//
// Labels: B f32 values at p.labels_off, each a class index as a float; y_b =
// class_index(labels[p.labels_off + b], C) (common.wgsl): truncated toward zero and clamped to
// [0, C - 1], never past the table. E is row-major (C, K) at p.embed_off of the parameters; its
// gradient dE at the same offset of the gradient buffer (the parameters' layout). phi and its
// gradient are row-major (B, K) at p.phi_off and p.dphi_off; the logit and its gradient B
// values at p.logit_off.
//
//   projection_forward   logit[b] += sum_k E[y_b, k] phi[b, k]            for b < B
//                        the sum from 0 over k = 0, 1, ..., K - 1 in order (as matmul_forward's
//                        dot products), then added to the logit. One invocation per b.
//   projection_backward  PART_INPUT:  dphi[b, k] += (dlogit[b] E[y_b, k]) act'(phi[b, k])
//                                                                         for b < B, k < K
//                        PART_PARAMS: dE[c, k] (+)= sum over b = 0, 1, ..., B - 1 with y_b = c
//                                     of dlogit[b] phi[b, k]            for c < C, k < K
//                        act' is the derivative of the activation p.act (p.slope its slope) that
//                        made phi, in terms of its output (activation_grad in common.wgsl): where
//                        the head's backward already scaled phi's gradient by it (D's layers fold
//                        the activation's derivative into the next layer's backward), the term
//                        must be scaled too; the identity (code 0) multiplies by exactly 1.
//                        dE's sums run from 0 in batch order (no atomics: bit-reproducible; a
//                        class absent from the batch gets exactly 0), then are stored, or added
//                        to what is there when p.accumulate (a second pass of the same step).
//                        One invocation per i < max(B, C) K: the dphi of (b, k) = (i / K, i % K)
//                        when i < B K, the dE of (c, k) = (i / K, i % K) when i < C K.
//   Both run 256 invocations per workgroup over a 2-D grid (linear_index in common.wgsl).
//
// Bindings:
//   0 uniform ProjectionParams
//   1 storage read  labels (B values at p.labels_off)
//   2 storage read  embed: the parameters, E at p.embed_off
//   3 storage read  phi, at p.phi_off
//   4 storage read  dlogit (backward), at p.logit_off
//   5 storage rw    out: forward the logits at p.logit_off; backward the gradient buffer, dE at
//                   p.embed_off (PART_PARAMS)
//   6 storage rw    dphi (backward, PART_INPUT), at p.dphi_off
//   projection_backward binds out (5) to dphi's buffer without PART_PARAMS and dphi (6) to the
//   gradient buffer without PART_INPUT: never written then.
//
// Indices: every invocation returns unless b < B (forward) or i < max(B, C) K (backward), and
// each part writes only below its own bound; y_b < C by class_index; so every access lies in the
// spans the host checks (`ir::Kernel::spans`) before the call is recorded. Compiled with naga's
// runtime checks all the same.

struct ProjectionParams {
    rows: u32,        // B
    dim: u32,         // K
    classes: u32,     // C
    labels_off: u32,
    embed_off: u32,   // E (forward) and dE (backward)
    phi_off: u32,
    logit_off: u32,   // the logits (forward) or their gradient (backward)
    dphi_off: u32,
    accumulate: u32,  // backward: dE += v instead of = v
    parts: u32,       // backward: PART_PARAMS | PART_INPUT
    act: u32,         // backward: the activation that made phi (an Activation code)
    slope: f32,       // its slope (leaky ReLU)
}

@group(0) @binding(0) var<uniform> p: ProjectionParams;
@group(0) @binding(1) var<storage, read> labels: array<f32>;
@group(0) @binding(2) var<storage, read> embed: array<f32>;
@group(0) @binding(3) var<storage, read> phi: array<f32>;
@group(0) @binding(4) var<storage, read> dlogit: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> dphi: array<f32>;

const PART_PARAMS: u32 = 1u;
const PART_INPUT: u32 = 2u;

fn label_of(b: u32) -> u32 {
    return class_index(labels[p.labels_off + b], p.classes);
}

@compute @workgroup_size(256)
fn projection_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let b = linear_index(wg, nwg, li);
    if (b >= p.rows) {
        return;
    }
    let e = p.embed_off + label_of(b) * p.dim;
    let x = p.phi_off + b * p.dim;
    var acc = 0.0;
    for (var k = 0u; k < p.dim; k++) {
        acc += embed[e + k] * phi[x + k];
    }
    out[p.logit_off + b] = out[p.logit_off + b] + acc;
}

@compute @workgroup_size(256)
fn projection_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) li: u32) {
    let i = linear_index(wg, nwg, li);
    if ((p.parts & PART_INPUT) != 0u && i < p.rows * p.dim) {
        let b = i / p.dim;
        let k = i % p.dim;
        let g = dlogit[p.logit_off + b] * embed[p.embed_off + label_of(b) * p.dim + k];
        let at = p.dphi_off + i;
        dphi[at] = dphi[at] + g * activation_grad(phi[p.phi_off + i], p.act, p.slope);
    }
    if ((p.parts & PART_PARAMS) != 0u && i < p.classes * p.dim) {
        let c = i / p.dim;
        let k = i % p.dim;
        var acc = 0.0;
        for (var b = 0u; b < p.rows; b++) {
            if (label_of(b) == c) {
                acc += dlogit[p.logit_off + b] * phi[p.phi_off + b * p.dim + k];
            }
        }
        let at = p.embed_off + i;
        if (p.accumulate != 0u) {
            acc = out[at] + acc;
        }
        out[at] = acc;
    }
}
