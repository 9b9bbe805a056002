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
//                           (b = 0 when p.no_bias: a layer without one, e.g. before batch norm),
//                           then the dropout after the layer when p.drop.rate > 0: y * scale
//                           where kept, else 0 (DropMask, common.wgsl): matmul_forward_dropout,
//                           the same kernel with the step bound (binding 7) to key the mask
//   matmul_backward_input   dx[m,k] = sum_n dz[m,n] w[n,k]                 (dz w)
//   matmul_backward_weight  dw[n,k] = sum_m dz[m,n] x[m,k]  (+= if p.accumulate)   (dz^T x)
//   bias_backward           db[n]   = sum_m dz[m,n]         (+= if p.accumulate)   column sum
//   matmul_backward         a linear layer's whole backward pass in one dispatch, from dy, the
//                           gradient of its output y = act(z):
//                             dz = dy * act'(y)   (act' from y, as activation.wgsl; computed as
//                                                  each dy is loaded, never stored; act = ACT,
//                                                  the identity when the next layer already
//                                                  made dz, see below)
//                             PART_WEIGHT: dw (+)= dz^T x, and db (+)= column sums of dz unless
//                                          p.no_bias
//                             PART_INPUT:  dx = (dz w) * act_in'(x), then masked by the dropout
//                                          below the layer (p.drop, when rate > 0: the mask
//                                          is its own adjoint, so the layer below receives
//                                          the gradient the dropout dispatch would have made):
//                                          matmul_backward_dropout, with the step bound
//                           where act_in is the activation of the layer before, whose output x
//                           is: its derivative is applied here, once per dx value as it is
//                           stored, so that the layer before receives its dz and loads it as it
//                           is (ACT = identity) rather than applying act' on every load
//                           (ACT_IN = identity when there is no such layer). The same
//                           operations, in the same order, as activation_backward,
//                           matmul_backward_weight, bias_backward and matmul_backward_input on
//                           stored values. The grid is flat: the dw tiles, then the db groups
//                           (256 columns each), then the dx tiles; each workgroup finds its part
//                           and tile from its index. ACT and ACT_IN are pipeline constants (one
//                           pipeline per pair), so no branch on them runs inside the loops.
//
// Bindings (the first four entry points share one layout):
//   0 uniform MatmulParams
//   1 storage read   a: x (forward) or dz (backward); dy (matmul_backward)
//   2 storage read   c: w (forward, backward_input, matmul_backward) or x (backward_weight);
//                       unused by bias_backward
//   3 storage rw     out: y, dx, or the network's flat gradient buffer (dw, db)
//   4 storage read   act_out: y at p.y_off (matmul_backward; dy's layout)
//   5 storage read   layer_in: x at p.x_off (matmul_backward)
//   6 storage rw     dx_out: dx at p.dx_off (matmul_backward)
//   7 uniform TrainState (matmul_forward_dropout, matmul_backward_dropout: .step keys the masks;
//                      the other entry points do not bind it, so their layouts are unchanged)
// matmul_backward binds every slot: a part it does not compute has its slots filled with
// buffers of the other part (so a layer with no dx binds its gradient buffer at 6 as well as at
// 3), and ACT = identity binds dy at 4; those slots are never touched.
// Each matrix sits at an element offset inside its binding (p.a_off, p.c_off, p.out_off, p.bias_off),
// so one flat buffer holds all of a network's weights and biases.
//
// Register blocking: each invocation computes a 4x4 block of outputs in four vec4 accumulators,
// unrolled by hand (on lavapipe, Mesa 22, loops over a private array ran 4x slower: the array
// lived in memory), and no workgroup memory (slower than plain loops on lavapipe).
// Reads past the matrix edge are clamped to the last row/column and their results discarded.
// Index guards (the family runs without naga's bounds checks): every read index is clamped into
// [offset, offset + rows x cols) of its operand, every write sits behind m < M, n < N, k < K
// (or n < N for the column sums), and the host checks before recording any call that those
// spans lie inside their buffers (`ir::Kernel::spans`).

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
    drop: DropMask,  // dropout fused: matmul_forward(_tiled) masks y as stored, matmul_backward dx
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> act_out: array<f32>;
@group(0) @binding(5) var<storage, read> layer_in: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx_out: array<f32>;
@group(0) @binding(7) var<uniform> state: TrainState;

// matmul_backward's activations (Activation codes: 0 identity, ..., 4 tanh): its own, applied
// to dy as it is loaded, and the one before it, applied to dx as it is stored.
override ACT: u32 = 0u;
override ACT_IN: u32 = 0u;

const PART_WEIGHT: u32 = 1u;
const PART_INPUT: u32 = 2u;

// Forward: a = x (M, K), c = w (N, K). Invocation (gx, gy) owns rows 4gy.., columns 4gx...
// The 4x4 block is unrolled by hand into four vec4 accumulators so that it stays in registers.
@compute @workgroup_size(16, 16)
fn matmul_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    forward_block(gid, 0u);
}

// matmul_forward with the dropout after the layer fused (p.drop.rate > 0): the same products,
// each y then masked as it is stored, keyed by the step (binding 7).
@compute @workgroup_size(16, 16)
fn matmul_forward_dropout(@builtin(global_invocation_id) gid: vec3<u32>) {
    forward_block(gid, state.step);
}

// The 4x4 block of y of invocation gid; `step` keys p.drop's mask (unread when its rate is 0).
fn forward_block(gid: vec3<u32>, step: u32) {
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
        let wv = vec4<f32>(c[w0 + kk], c[w1 + kk], c[w2 + kk], c[w3 + kk]);
        acc0 += a[x0 + kk] * wv;
        acc1 += a[x1 + kk] * wv;
        acc2 += a[x2 + kk] * wv;
        acc3 += a[x3 + kk] * wv;
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + j;
        if (n >= p.n) {
            break;
        }
        var bias = 0.0;
        if (p.no_bias == 0u) {
            bias = c[p.bias_off + n];
        }
        for (var i = 0u; i < 4u; i++) {
            let m = m0 + i;
            if (m < p.m) {
                let y = activate(acc[i][j] + bias, p.act, p.slope);
                out[p.out_off + m * p.n + n] = drop_masked(p.drop, step, m, n, p.n, y);
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
        let wv = vec4<f32>(c[wb + k0], c[wb + k1], c[wb + k2], c[wb + k3]);
        acc0 += a[d0 + n] * wv;
        acc1 += a[d1 + n] * wv;
        acc2 += a[d2 + n] * wv;
        acc3 += a[d3 + n] * wv;
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
        let xv = vec4<f32>(c[xb + k0], c[xb + k1], c[xb + k2], c[xb + k3]);
        acc0 += a[db + n0] * xv;
        acc1 += a[db + n1] * xv;
        acc2 += a[db + n2] * xv;
        acc3 += a[db + n3] * xv;
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

// dz of element i (row m, column n: i = m N + n) of the (M, N) gradient: dy * act'(y).
fn dz_at(i: u32) -> f32 {
    let g = a[p.a_off + i];
    if (ACT == ACT_IDENTITY) {
        return g;
    }
    return g * activation_grad(act_out[p.y_off + i], ACT, p.slope);
}

// dw[n0.., k0..] (+)= dz^T x for a 4x4 block, summed over m in order (as matmul_backward_weight).
fn weight_block(k0: u32, n0: u32) {
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
        let xb = p.x_off + m * p.k;
        let row = m * p.n;
        let xv = vec4<f32>(layer_in[xb + k0], layer_in[xb + k1], layer_in[xb + k2], layer_in[xb + k3]);
        acc0 += dz_at(row + n0) * xv;
        acc1 += dz_at(row + n1) * xv;
        acc2 += dz_at(row + n2) * xv;
        acc3 += dz_at(row + n3) * xv;
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
                out[idx] = select(acc[i][j], out[idx] + acc[i][j], p.accumulate != 0u);
            }
        }
    }
}

// db[n] (+)= sum_m dz[m, n], in order (as bias_backward).
fn bias_column(n: u32) {
    if (n >= p.n) {
        return;
    }
    var s = 0.0;
    for (var m = 0u; m < p.m; m++) {
        s += dz_at(m * p.n + n);
    }
    let idx = p.bias_off + n;
    out[idx] = select(s, out[idx] + s, p.accumulate != 0u);
}

// dx[m0.., k0..] = (dz w) act_in'(x) for a 4x4 block, summed over n in order (as
// matmul_backward_input), then scaled as activation_backward would, then p.drop's mask (keyed
// by `step`; unread when its rate is 0).
fn input_block(k0: u32, m0: u32, step: u32) {
    if (m0 >= p.m || k0 >= p.k) {
        return;
    }
    let k1 = min(k0 + 1u, p.k - 1u);
    let k2 = min(k0 + 2u, p.k - 1u);
    let k3 = min(k0 + 3u, p.k - 1u);
    let r0 = m0 * p.n;
    let r1 = min(m0 + 1u, p.m - 1u) * p.n;
    let r2 = min(m0 + 2u, p.m - 1u) * p.n;
    let r3 = min(m0 + 3u, p.m - 1u) * p.n;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var n = 0u; n < p.n; n++) {
        let wb = p.c_off + n * p.k;
        let wv = vec4<f32>(c[wb + k0], c[wb + k1], c[wb + k2], c[wb + k3]);
        acc0 += dz_at(r0 + n) * wv;
        acc1 += dz_at(r1 + n) * wv;
        acc2 += dz_at(r2 + n) * wv;
        acc3 += dz_at(r3 + n) * wv;
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
                var v = acc[i][j];
                if (ACT_IN != ACT_IDENTITY) {
                    v *= activation_grad(layer_in[p.x_off + m * p.k + kk], ACT_IN, p.slope_in);
                }
                dx_out[p.dx_off + m * p.k + kk] = drop_masked(p.drop, step, m, kk, p.k, v);
            }
        }
    }
}

// Workgroups of 16x16 invocations; the flat grid (workgroup index wg.y nwg.x + wg.x) holds
// the dw tiles of 64 x 64 (k, n), then the db groups, then the dx tiles of 64 x 64 (k, m).
@compute @workgroup_size(16, 16)
fn matmul_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    backward_grid(wg.y * nwg.x + wg.x, lid, li, 0u);
}

// matmul_backward with the mask of the dropout below the layer applied to dx as it is stored
// (p.drop.rate > 0), keyed by the step (binding 7).
@compute @workgroup_size(16, 16)
fn matmul_backward_dropout(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    backward_grid(wg.y * nwg.x + wg.x, lid, li, state.step);
}

// Workgroup `flat` of matmul_backward's grid: its part and tile, then that tile's work.
fn backward_grid(flat: u32, lid: vec3<u32>, li: u32, step: u32) {
    var g = flat;
    let tiles_k = (p.k + 63u) / 64u;
    if ((p.parts & PART_WEIGHT) != 0u) {
        let tiles = tiles_k * ((p.n + 63u) / 64u);
        if (g < tiles) {
            weight_block(((g % tiles_k) * 16u + lid.x) * 4u, ((g / tiles_k) * 16u + lid.y) * 4u);
            return;
        }
        g -= tiles;
        if (p.no_bias == 0u) {
            let groups = (p.n + 255u) / 256u;
            if (g < groups) {
                bias_column(g * 256u + li);
                return;
            }
            g -= groups;
        }
    }
    if ((p.parts & PART_INPUT) != 0u) {
        let tiles = tiles_k * ((p.m + 63u) / 64u);
        if (g < tiles) {
            input_block(((g % tiles_k) * 16u + lid.x) * 4u, ((g / tiles_k) * 16u + lid.y) * 4u, step);
        }
    }
}
