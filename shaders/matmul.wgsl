// matmul.wgsl: the linear layers of both networks, forward and backward.
//
// Layouts (row-major everywhere; a weight is (out, in) like torch.nn.Linear):
//   x  : (M, K)  activations, M = batch rows, K = in features
//   w  : (N, K)  weight, N = out features, inside a network's flat parameter buffer
//   b  : (N)     bias, in the same flat buffer
//   y  : (M, N)  output
//   dz : (M, N)  gradient of the loss with respect to the layer's pre-activation z = x w^T + b
//
// Entry points:
//   matmul_forward          y[m,n]  = act(sum_k x[m,k] w[n,k] + b[n])     bias + activation fused
//   matmul_backward_input   dx[m,k] = sum_n dz[m,n] w[n,k]                 (dz w)
//   matmul_backward_weight  dw[n,k] = sum_m dz[m,n] x[m,k]  (+= if p.accumulate)   (dz^T x)
//   bias_backward           db[n]   = sum_m dz[m,n]         (+= if p.accumulate)   column sum
//
// Bindings (all four entry points share one layout):
//   0 uniform MatmulParams
//   1 storage read   a: x (forward) or dz (backward)
//   2 storage read   c: w (forward, backward_input) or x (backward_weight); unused by bias_backward
//   3 storage rw     out: y, dx, or the network's flat gradient buffer (dw, db)
// Each matrix sits at an element offset inside its binding (p.a_off, p.c_off, p.out_off, p.bias_off),
// so one flat buffer holds all of a network's weights and biases.
//
// Register blocking: each invocation computes a 4x4 block of outputs, accumulating in registers
// (no workgroup memory: on lavapipe tiling through workgroup memory was slower than this).
// Reads past the matrix edge are clamped to the last row/column and their results discarded.

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    act: u32,
    a_off: u32,     // element offset of the first matrix in binding 1
    c_off: u32,     // element offset of the second matrix in binding 2
    out_off: u32,   // element offset of the output in binding 3 (dw for backward_weight)
    bias_off: u32,  // forward: bias in binding 2; bias_backward: db in binding 3
    slope: f32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// Forward: a = x (M, K), c = w (N, K). Invocation (gx, gy) owns rows 4gy.., columns 4gx...
@compute @workgroup_size(16, 16)
fn matmul_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n0 = gid.x * 4u;
    let m0 = gid.y * 4u;
    if (m0 >= p.m || n0 >= p.n) {
        return;
    }
    var xrow: array<u32, 4>;
    var wrow: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) {
        xrow[i] = p.a_off + min(m0 + i, p.m - 1u) * p.k;
        wrow[i] = p.c_off + min(n0 + i, p.n - 1u) * p.k;
    }
    var acc: array<vec4<f32>, 4>;
    for (var kk = 0u; kk < p.k; kk++) {
        let wv = vec4<f32>(c[wrow[0] + kk], c[wrow[1] + kk], c[wrow[2] + kk], c[wrow[3] + kk]);
        for (var i = 0u; i < 4u; i++) {
            acc[i] += a[xrow[i] + kk] * wv;
        }
    }
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + j;
        if (n >= p.n) {
            break;
        }
        let bias = c[p.bias_off + n];
        for (var i = 0u; i < 4u; i++) {
            let m = m0 + i;
            if (m < p.m) {
                out[p.out_off + m * p.n + n] = activate(acc[i][j] + bias, p.act, p.slope);
            }
        }
    }
}

// dx = dz w: a = dz (M, N), c = w (N, K), out = dx (M, K). Invocation owns rows 4gy.., cols 4gx..
@compute @workgroup_size(16, 16)
fn matmul_backward_input(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k0 = gid.x * 4u;
    let m0 = gid.y * 4u;
    if (m0 >= p.m || k0 >= p.k) {
        return;
    }
    var kcol: array<u32, 4>;
    var dzrow: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) {
        kcol[i] = min(k0 + i, p.k - 1u);
        dzrow[i] = p.a_off + min(m0 + i, p.m - 1u) * p.n;
    }
    var acc: array<vec4<f32>, 4>;
    for (var n = 0u; n < p.n; n++) {
        let wbase = p.c_off + n * p.k;
        let wv = vec4<f32>(c[wbase + kcol[0]], c[wbase + kcol[1]], c[wbase + kcol[2]], c[wbase + kcol[3]]);
        for (var i = 0u; i < 4u; i++) {
            acc[i] += a[dzrow[i] + n] * wv;
        }
    }
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + i;
        if (m >= p.m) {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let kk = k0 + j;
            if (kk < p.k) {
                out[p.out_off + m * p.k + kk] = acc[i][j];
            }
        }
    }
}

// dw = dz^T x: a = dz (M, N), c = x (M, K), out = grads, dw (N, K) at p.out_off.
@compute @workgroup_size(16, 16)
fn matmul_backward_weight(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k0 = gid.x * 4u;
    let n0 = gid.y * 4u;
    if (n0 >= p.n || k0 >= p.k) {
        return;
    }
    var kcol: array<u32, 4>;
    var ncol: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) {
        kcol[i] = min(k0 + i, p.k - 1u);
        ncol[i] = min(n0 + i, p.n - 1u);
    }
    var acc: array<vec4<f32>, 4>;
    for (var m = 0u; m < p.m; m++) {
        let xbase = p.c_off + m * p.k;
        let dzbase = p.a_off + m * p.n;
        let xv = vec4<f32>(c[xbase + kcol[0]], c[xbase + kcol[1]], c[xbase + kcol[2]], c[xbase + kcol[3]]);
        for (var i = 0u; i < 4u; i++) {
            acc[i] += a[dzbase + ncol[i]] * xv;
        }
    }
    for (var i = 0u; i < 4u; i++) {
        let n = n0 + i;
        if (n >= p.n) {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let kk = k0 + j;
            if (kk < p.k) {
                let idx = p.out_off + n * p.k + kk;
                out[idx] = select(acc[i][j], out[idx] + acc[i][j], p.accumulate != 0u);
            }
        }
    }
}

// db = column sums of dz: a = dz (M, N), out = grads, db (N) at p.bias_off. One invocation per n.
@compute @workgroup_size(256)
fn bias_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let n = linear_index(wg, nwg, li);
    if (n >= p.n) {
        return;
    }
    var s = 0.0;
    for (var m = 0u; m < p.m; m++) {
        s += a[p.a_off + m * p.n + n];
    }
    let idx = p.bias_off + n;
    out[idx] = select(s, out[idx] + s, p.accumulate != 0u);
}
