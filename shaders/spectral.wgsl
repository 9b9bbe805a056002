// spectral.wgsl: spectral normalisation of D's weights (`--d-norm spectral`; Miyato et al. 2018),
// as torch.nn.utils.parametrizations.spectral_norm computes it. A weight W is read as a matrix
// of m rows (output features or channels) by n columns (the rest: c_in kh kw for a convolution)
// in its row-major layout; u (m) and v (n) are the persistent power-iteration vectors.
//
//   One power iteration (after each Adam step of D), then the weights the layers read:
//     v = normalize(W^T u)           spectral_matvec (W^T u into raw), spectral_normalize
//     u = normalize(W v)             spectral_matvec (W v into raw),   spectral_normalize
//     sigma = ||W v||                (= u^T W v, PyTorch's form, in exact arithmetic)
//     W_sn = W / sigma               spectral_scale
//   where normalize(x) = x / max(||x||, 1e-12) (F.normalize). After a restore only the second
//   half runs (u, sigma from the stored v), which gives the stored u's bits again.
//
//   The gradient, u and v held constant (dsigma/dW = u v^T): with G = dL/dW_sn,
//     c = sum(G * W_sn)              spectral_grad_dot
//     dL/dW = (G - c u v^T) / sigma  spectral_backward, in place over G
//
// Bindings: 0 uniform SpectralParams p, 1 storage read a, 2 storage read b, 3 storage rw out,
// 4 storage rw aux (spectral_normalize only). Every offset and length comes from p; every index
// is below a length the loops check, so the host's span checks cover every access.
//   spectral_matvec     a = W, b = x, out = the raw vector:
//     out[p.out_off + o] = sum_{k < p.inner} a[p.w_off + o p.row_stride + k p.col_stride] b[p.x_off + k]
//     for o < p.outs; one workgroup per o (2-D grid past 65,535: o = wg.y nwg.x + wg.x), 256
//     strided partial sums then a tree, the order the twin mirrors.
//   spectral_normalize  out = u or v (D's state), aux = the scratch holding the raw vector:
//     norm = sqrt(sum_i aux[p.x_off + i]^2) for i < p.len;
//     out[p.out_off + i] = aux[p.x_off + i] / max(norm, 1e-12);
//     aux[p.sigma_slot] = norm unless p.sigma_slot is NO_SLOT. One workgroup.
//   spectral_scale      a = W, b = the scratch (sigma), out = the weights the layers read:
//     out[p.out_off + i] = a[p.w_off + i] / s for i < p.len, s = b[p.sigma_slot], or 1 (a copy,
//     for the tensors that are not normalised) when p.sigma_slot is NO_SLOT. 1-D.
//   spectral_grad_dot   a = G (D's gradient buffer), b = W_sn, out = the scratch:
//     out[p.dot_slot] = sum_i a[p.x_off + i] b[p.w_off + i] for i < p.len. One workgroup.
//   spectral_backward   a = D's state (u, v), b = the scratch (sigma, c), out = G, in place:
//     out[p.out_off + i] = (out[p.out_off + i] - c u[i / p.inner] v[i % p.inner]) / sigma for
//     i < p.len (= m n; p.inner = n), u at p.u_off and v at p.v_off of a,
//     sigma = b[p.sigma_slot], c = b[p.dot_slot]. 1-D.
//   1-D entry points run 256 invocations per workgroup over a 2-D grid (linear_index).

const NO_SLOT: u32 = 0xffffffffu;

struct SpectralParams {
    outs: u32,
    inner: u32,
    row_stride: u32,
    col_stride: u32,
    w_off: u32,
    x_off: u32,
    out_off: u32,
    len: u32,
    sigma_slot: u32,
    dot_slot: u32,
    u_off: u32,
    v_off: u32,
}

@group(0) @binding(0) var<uniform> p: SpectralParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> aux: array<f32>;

var<workgroup> partial: array<f32, 256>;

// The fixed-order tree over the 256 partial sums; every invocation returns the total.
fn tree_sum(li: u32, v: f32) -> f32 {
    partial[li] = v;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (li < stride) {
            partial[li] += partial[li + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

// --- spectral_matvec ---------------------------------------------------------------------------

@compute @workgroup_size(256)
fn spectral_matvec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let o = wg.y * nwg.x + wg.x;
    // Uniform per workgroup, so the early return keeps the barriers in uniform control flow.
    if (o >= p.outs) {
        return;
    }
    var acc = 0.0;
    for (var k = li; k < p.inner; k += 256u) {
        acc += a[p.w_off + o * p.row_stride + k * p.col_stride] * b[p.x_off + k];
    }
    let total = tree_sum(li, acc);
    if (li == 0u) {
        out[p.out_off + o] = total;
    }
}

// --- spectral_normalize ------------------------------------------------------------------------

@compute @workgroup_size(256)
fn spectral_normalize(@builtin(local_invocation_index) li: u32) {
    var acc = 0.0;
    for (var i = li; i < p.len; i += 256u) {
        let x = aux[p.x_off + i];
        acc += x * x;
    }
    let norm = sqrt(tree_sum(li, acc));
    let denom = max(norm, 1e-12);
    for (var i = li; i < p.len; i += 256u) {
        out[p.out_off + i] = aux[p.x_off + i] / denom;
    }
    if (li == 0u && p.sigma_slot != NO_SLOT) {
        aux[p.sigma_slot] = norm;
    }
}

// --- spectral_scale ----------------------------------------------------------------------------

@compute @workgroup_size(256)
fn spectral_scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let i = linear_index(wg, nwg, li);
    if (i >= p.len) {
        return;
    }
    var s = 1.0;
    if (p.sigma_slot != NO_SLOT) {
        s = b[p.sigma_slot];
    }
    out[p.out_off + i] = a[p.w_off + i] / s;
}

// --- spectral_grad_dot -------------------------------------------------------------------------

@compute @workgroup_size(256)
fn spectral_grad_dot(@builtin(local_invocation_index) li: u32) {
    var acc = 0.0;
    for (var i = li; i < p.len; i += 256u) {
        acc += a[p.x_off + i] * b[p.w_off + i];
    }
    let total = tree_sum(li, acc);
    if (li == 0u) {
        out[p.dot_slot] = total;
    }
}

// --- spectral_backward -------------------------------------------------------------------------

@compute @workgroup_size(256)
fn spectral_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let i = linear_index(wg, nwg, li);
    if (i >= p.len) {
        return;
    }
    let sigma = b[p.sigma_slot];
    let c = b[p.dot_slot];
    let cu = c * a[p.u_off + i / p.inner];
    out[p.out_off + i] = (out[p.out_off + i] - cu * a[p.v_off + i % p.inner]) / sigma;
}
