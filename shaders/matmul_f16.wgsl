// matmul_f16.wgsl: the linear layers at --precision f16: f16 storage, f32 arithmetic.
//
// The same contracts, layouts, offsets and register blocking as matmul.wgsl (read its header);
// only the storage types differ. Operands stored in f16 are widened to f32 as they are loaded,
// every product and sum is f32 (four vec4<f32> accumulators), and only matmul_forward's output
// is rounded to f16, once, after bias and activation, saturating at +-65504 (the largest f16) so
// that no implementation-defined out-of-range conversion happens; src/kernels/activation.rs `round_f16`
// stores the same way. bias_backward needs no variant: it reads and writes only f32 gradients.
//
//   matmul_forward_f16          y (f16) = act(x (f16) w^T (f16) + b (f16))
//   matmul_backward_input_f16   dx (f32) = dz (f32) w (f16)
//   matmul_backward_weight_f16  dw (f32) (+)= dz^T (f32) x (f16)
//
// Bindings: an f16 buffer binds at its role's slot as in matmul.wgsl (1 a, 2 c, 3 out), an f32
// buffer at that slot + 4 (GpuProgram picks the slot from the buffer's dtype). Each entry point
// uses three storage bindings:
//   0 uniform MatmulParams
//   1 storage read   a16:   x (forward)
//   2 storage read   c16:   w (forward, backward_input: the network's "*.params.f16" copy) or
//                           x (backward_weight)
//   3 storage rw     out16: y (forward)
//   5 storage read   a32:   dz (backward)
//   7 storage rw     out32: dx, or the network's flat f32 gradient buffer (dw)

// No `enable f16;` here: it must precede every declaration, common.wgsl's included, so
// src/kernels/mod.rs puts it first for the families marked f16.

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    act: u32,
    a_off: u32,
    c_off: u32,
    out_off: u32,
    bias_off: u32,
    slope: f32,
    accumulate: u32,
    no_bias: u32,   // forward: 1 = the layer has no bias (nothing read at bias_off)
    act_in: u32,    // matmul_backward: the activation that made x (its derivative scales dx)
    y_off: u32,     // matmul_backward: y (the activation's output, dy's layout) in binding 4
    x_off: u32,     // matmul_backward: x in binding 5
    dx_off: u32,    // matmul_backward: dx in binding 6
    parts: u32,     // matmul_backward: PART_WEIGHT (dw, and db unless no_bias) | PART_INPUT (dx)
    slope_in: f32,  // matmul_backward: act_in's slope (leaky ReLU)
    groups: u32,    // matmul_backward: the CPU twin sums dw and db per group of m / groups rows
    _pad2: u32,
    _pad3: u32,
    drop: DropMask,  // matmul.wgsl's fused dropout; unused at f16 (never fused there)
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a16: array<f16>;
@group(0) @binding(2) var<storage, read> c16: array<f16>;
@group(0) @binding(3) var<storage, read_write> out16: array<f16>;
@group(0) @binding(5) var<storage, read> a32: array<f32>;
@group(0) @binding(7) var<storage, read_write> out32: array<f32>;

const F16_MAX: f32 = 65504.0;

@compute @workgroup_size(16, 16)
fn matmul_forward_f16(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n0 = gid.x * 4u;
    let m0 = gid.y * 4u;
    if (m0 >= p.m || n0 >= p.n) {
        return;
    }
    let x0 = p.a_off + m0 * p.k;
    let x1 = p.a_off + min(m0 + 1u, p.m - 1u) * p.k;
    let x2 = p.a_off + min(m0 + 2u, p.m - 1u) * p.k;
    let x3 = p.a_off + min(m0 + 3u, p.m - 1u) * p.k;
    let w0 = p.c_off + n0 * p.k;
    let w1 = p.c_off + min(n0 + 1u, p.n - 1u) * p.k;
    let w2 = p.c_off + min(n0 + 2u, p.n - 1u) * p.k;
    let w3 = p.c_off + min(n0 + 3u, p.n - 1u) * p.k;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < p.k; kk++) {
        let wv = vec4<f32>(vec4<f16>(c16[w0 + kk], c16[w1 + kk], c16[w2 + kk], c16[w3 + kk]));
        acc0 += f32(a16[x0 + kk]) * wv;
        acc1 += f32(a16[x1 + kk]) * wv;
        acc2 += f32(a16[x2 + kk]) * wv;
        acc3 += f32(a16[x3 + kk]) * wv;
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + j;
        if (n >= p.n) {
            break;
        }
        var bias = 0.0;
        if (p.no_bias == 0u) {
            bias = f32(c16[p.bias_off + n]);
        }
        for (var i = 0u; i < 4u; i++) {
            let m = m0 + i;
            if (m < p.m) {
                let y = activate(acc[i][j] + bias, p.act, p.slope);
                out16[p.out_off + m * p.n + n] = f16(clamp(y, -F16_MAX, F16_MAX));
            }
        }
    }
}

// dx = dz w: a32 = dz (M, N), c16 = w (N, K), out32 = dx (M, K).
@compute @workgroup_size(16, 16)
fn matmul_backward_input_f16(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k0 = gid.x * 4u;
    let m0 = gid.y * 4u;
    if (m0 >= p.m || k0 >= p.k) {
        return;
    }
    let k1 = min(k0 + 1u, p.k - 1u);
    let k2 = min(k0 + 2u, p.k - 1u);
    let k3 = min(k0 + 3u, p.k - 1u);
    let d0 = p.a_off + m0 * p.n;
    let d1 = p.a_off + min(m0 + 1u, p.m - 1u) * p.n;
    let d2 = p.a_off + min(m0 + 2u, p.m - 1u) * p.n;
    let d3 = p.a_off + min(m0 + 3u, p.m - 1u) * p.n;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var n = 0u; n < p.n; n++) {
        let wb = p.c_off + n * p.k;
        let wv = vec4<f32>(vec4<f16>(c16[wb + k0], c16[wb + k1], c16[wb + k2], c16[wb + k3]));
        acc0 += a32[d0 + n] * wv;
        acc1 += a32[d1 + n] * wv;
        acc2 += a32[d2 + n] * wv;
        acc3 += a32[d3 + n] * wv;
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + i;
        if (m >= p.m) {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let kk = k0 + j;
            if (kk < p.k) {
                out32[p.out_off + m * p.k + kk] = acc[i][j];
            }
        }
    }
}

// dw = dz^T x: a32 = dz (M, N), c16 = x (M, K), out32 = grads, dw (N, K) at p.out_off.
@compute @workgroup_size(16, 16)
fn matmul_backward_weight_f16(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k0 = gid.x * 4u;
    let n0 = gid.y * 4u;
    if (n0 >= p.n || k0 >= p.k) {
        return;
    }
    let k1 = min(k0 + 1u, p.k - 1u);
    let k2 = min(k0 + 2u, p.k - 1u);
    let k3 = min(k0 + 3u, p.k - 1u);
    let n1 = min(n0 + 1u, p.n - 1u);
    let n2 = min(n0 + 2u, p.n - 1u);
    let n3 = min(n0 + 3u, p.n - 1u);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var m = 0u; m < p.m; m++) {
        let xb = p.c_off + m * p.k;
        let db = p.a_off + m * p.n;
        let xv = vec4<f32>(vec4<f16>(c16[xb + k0], c16[xb + k1], c16[xb + k2], c16[xb + k3]));
        acc0 += a32[db + n0] * xv;
        acc1 += a32[db + n1] * xv;
        acc2 += a32[db + n2] * xv;
        acc3 += a32[db + n3] * xv;
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let n = n0 + i;
        if (n >= p.n) {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let kk = k0 + j;
            if (kk < p.k) {
                let idx = p.out_off + n * p.k + kk;
                out32[idx] = select(acc[i][j], out32[idx] + acc[i][j], p.accumulate != 0u);
            }
        }
    }
}
