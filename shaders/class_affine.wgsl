// class_affine.wgsl: a per-class scale and shift, the second half of conditional batch norm
// (SNGAN's and BigGAN's G: batch norm without an affine of its own, then gamma and beta looked up
// by the sample's class), ending in the layer's activation (p.act, an Activation code, p.slope
// its slope; 0, the identity: none).
//
// Layout: x (x_hat, batch norm's output), y and their gradients are (n, c, s), NCHW flattened
// with s = h w (1 after a linear layer): element (b, ch, sp) at off + (b c + ch) s + sp, as
// norm.wgsl. gamma and beta are row-major (C, c) in the parameters, at p.gamma_off and
// p.beta_off: class k's values for channel ch at off + k c + ch; their gradients at the same
// offsets of the gradient buffer (the parameters' layout). Labels: n f32 values at p.labels_off,
// each a class index as a float; y_b = class_index(labels[p.labels_off + b], C) (common.wgsl):
// truncated toward zero and clamped to [0, C - 1], never past the tables.
//
//   class_affine_forward   y[b, ch, sp] = act(x[b, ch, sp] gamma[y_b, ch] + beta[y_b, ch])
//                          One invocation per element i < n c s.
//   class_affine_backward  dz[b, ch, sp] = dy[b, ch, sp] act'(y[b, ch, sp]) as dy is loaded,
//                          y recomputed by the forward's expression from x_hat, gamma and beta
//                          (never stored; dz is dy itself without an activation)
//                          PART_INPUT:  dx[b, ch, sp] = dz[b, ch, sp] gamma[y_b, ch]
//                          PART_PARAMS: dgamma[k, ch] (+)= sum over b = 0, 1, ..., n - 1 with
//                                       y_b = k, and within b over sp = 0, 1, ..., s - 1, of
//                                       dz[b, ch, sp] x[b, ch, sp];
//                                       dbeta[k, ch] (+)= the same sum of dz[b, ch, sp]
//                          Each sum runs from 0 in that order (no atomics: bit-reproducible; a
//                          class absent from the batch gets exactly 0), then is stored, or added
//                          to what is there when p.accumulate (a second pass of the same step).
//                          One invocation per i < max(n c s, C c): the dx of element i when
//                          i < n c s, the (k, ch) = (i / c, i % c) sums when i < C c.
//   Both run 256 invocations per workgroup over a 2-D grid (linear_index in common.wgsl).
//
// Bindings:
//   0 uniform ClassAffineParams
//   1 storage read  labels (n values at p.labels_off)
//   2 storage read  x: x_hat at p.x_off
//   3 storage read  params: gamma at p.gamma_off, beta at p.beta_off (C c values each)
//   4 storage read  dy (backward), at p.dy_off
//   5 storage rw    out: forward y at p.y_off; backward the gradient buffer, dgamma at
//                   p.gamma_off and dbeta at p.beta_off (PART_PARAMS)
//   6 storage rw    dx (backward, PART_INPUT), at p.dx_off
//   class_affine_backward binds out (5) to dx's buffer without PART_PARAMS and dx (6) to the
//   gradient buffer without PART_INPUT: never written then.
//
// Indices: every invocation returns unless i < n c s (forward) or i < max(n c s, C c)
// (backward), and each part writes only below its own bound; y_b < C by class_index; so every
// access lies in the spans the host checks (`ir::Kernel::spans`) before the call is recorded.
// Compiled with naga's runtime checks all the same.

struct ClassAffineParams {
    n: u32,
    c: u32,
    s: u32,           // spatial size h w (1 after a linear layer)
    classes: u32,     // C
    labels_off: u32,
    x_off: u32,       // x_hat in binding 2
    y_off: u32,       // y in binding 5 (forward)
    dy_off: u32,      // dy in binding 4 (backward)
    dx_off: u32,      // dx in binding 6 (backward)
    gamma_off: u32,   // gamma in binding 3; dgamma in binding 5 (backward)
    beta_off: u32,    // beta in binding 3; dbeta in binding 5 (backward)
    accumulate: u32,  // backward: dgamma, dbeta += v instead of = v
    parts: u32,       // backward: PART_PARAMS | PART_INPUT
    act: u32,         // the Activation code after the affine (0: identity)
    slope: f32,       // its slope (leaky ReLU)
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: ClassAffineParams;
@group(0) @binding(1) var<storage, read> labels: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> params: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

const PART_PARAMS: u32 = 1u;
const PART_INPUT: u32 = 2u;

// y of element i, as class_affine_forward computes it.
fn y_at(i: u32) -> f32 {
    let t = table_at(i);
    return activate(x[p.x_off + i] * params[p.gamma_off + t] + params[p.beta_off + t], p.act, p.slope);
}

// dz of element i: dy, times act'(y) with an activation (y recomputed: no binding of its own,
// which would make 7 storage buffers, past the 6 that some devices allow per stage).
fn dz_at(i: u32) -> f32 {
    let g = dy[p.dy_off + i];
    if (p.act == 0u) {
        return g;
    }
    return g * activation_grad(y_at(i), p.act, p.slope);
}

// The (class, channel) entry of gamma and beta for element i.
fn table_at(i: u32) -> u32 {
    let b = i / (p.c * p.s);
    let ch = (i / p.s) % p.c;
    return class_index(labels[p.labels_off + b], p.classes) * p.c + ch;
}

@compute @workgroup_size(256)
fn class_affine_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) li: u32) {
    let i = linear_index(wg, nwg, li);
    if (i >= p.n * p.c * p.s) {
        return;
    }
    out[p.y_off + i] = y_at(i);
}

@compute @workgroup_size(256)
fn class_affine_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) li: u32) {
    let i = linear_index(wg, nwg, li);
    if ((p.parts & PART_INPUT) != 0u && i < p.n * p.c * p.s) {
        dx[p.dx_off + i] = dz_at(i) * params[p.gamma_off + table_at(i)];
    }
    if ((p.parts & PART_PARAMS) != 0u && i < p.classes * p.c) {
        let k = i / p.c;
        let ch = i % p.c;
        var sum_dy_x = 0.0;
        var sum_dy = 0.0;
        for (var b = 0u; b < p.n; b++) {
            if (class_index(labels[p.labels_off + b], p.classes) != k) {
                continue;
            }
            let row = (b * p.c + ch) * p.s;
            for (var sp = 0u; sp < p.s; sp++) {
                let g = dz_at(row + sp);
                sum_dy_x += g * x[p.x_off + row + sp];
                sum_dy += g;
            }
        }
        if (p.accumulate != 0u) {
            sum_dy_x = out[p.gamma_off + i] + sum_dy_x;
            sum_dy = out[p.beta_off + i] + sum_dy;
        }
        out[p.gamma_off + i] = sum_dy_x;
        out[p.beta_off + i] = sum_dy;
    }
}
