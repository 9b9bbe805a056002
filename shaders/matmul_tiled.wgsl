// matmul_tiled.wgsl: matmul_forward for real GPUs, tiled through workgroup memory in the style
// of tfjs-backend-webgpu's matmul_packed_webgpu.ts and ONNX Runtime's WebGPU MatMul: a workgroup
// of WG_X x WG_Y invocations computes a (4 WG_Y) x (4 WG_X) tile of y, each invocation a 4x4
// block in four named vec4 accumulators; the K dimension is walked in slices of TILE_K = 32,
// each slice of x and w staged in workgroup memory by all invocations with coalesced loads
// (consecutive invocations read consecutive k) and read back as vec4s.
//
//   matmul_forward_tiled   y[m,n] = act(sum_k x[m,k] w[n,k] + b[n])   (matmul.wgsl's contract:
//                          same params, layouts, offsets, bindings; b = 0 when p.no_bias)
//
// Tile sizes are pipeline constants (one pipeline each): WG_X = WG_Y = 16 gives 64 x 64 tiles
// (large products), 8 gives 32 x 32 (tfjs and ORT's default), 4 gives 16 x 16 (short, wide
// products such as batch 64 x 256, which 64 x 64 tiles would cut into a handful of workgroups
// on a GPU with a hundred compute units). src/kernels/matmul/tiled.rs picks them by shape.
//
// Sum order: k ascending, slice after slice, each product added to its accumulator: the twin's
// order (matmul/twin.rs); entries of a slice past K are exact zeros (0 x 0), which leave a finite
// sum unchanged. Then + bias, then the activation, then the fused dropout mask (p.drop), as
// matmul_forward.
//
// Bindings (matmul.wgsl's layout):
//   0 uniform MatmulParams
//   1 storage read   a: x (M, K) at p.a_off
//   2 storage read   c: w (N, K) at p.c_off, and b (N) at p.bias_off unless p.no_bias
//   3 storage rw     out: y (M, N) at p.out_off
//   7 uniform TrainState (matmul_forward_tiled_dropout only: .step keys the dropout mask)
//
// Indices (the family runs without naga's runtime checks): every global read is of row
// min(r, rows - 1) and column min(k, K - 1) of its operand (its value replaced by 0 when r or k
// lies past the edge), so it stays inside [offset, offset + rows K); the bias at n < N; every
// write behind m < M and n < N. The host checks each operand's span against its buffer before
// recording the call. Workgroup memory is indexed by k < TILE_K and row or column < 64.
//
// Dispatch: a flat grid of ceil(M / (4 WG_Y)) ceil(N / (4 WG_X)) workgroups, numbered
// t = wg.y nwg.x + wg.x; those past the last tile return at once (uniformly, before any barrier).

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
    no_bias: u32,
    act_in: u32,
    y_off: u32,
    x_off: u32,
    dx_off: u32,
    parts: u32,
    slope_in: f32,
    groups: u32,
    _pad2: u32,
    _pad3: u32,
    drop: DropMask,  // dropout fused: matmul_forward(_tiled) masks y as stored, matmul_backward dx
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<uniform> state: TrainState;

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
const TILE_K: u32 = 32u;

// Slices of x and w, k-major, as vec4s along m (x) and n (w): up to 64 rows each.
var<workgroup> sub_x: array<vec4<f32>, 512>;
var<workgroup> sub_w: array<vec4<f32>, 512>;

// x[r, k] of the operand at `off` with `rows` rows of p.k values; 0 past either edge.
fn load(buf_is_x: bool, off: u32, rows: u32, r: u32, k: u32) -> f32 {
    let inside = r < rows && k < p.k;
    let idx = off + min(r, rows - 1u) * p.k + min(k, p.k - 1u);
    var v = 0.0;
    if (buf_is_x) {
        v = a[idx];
    } else {
        v = c[idx];
    }
    return select(0.0, v, inside);
}

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_forward_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    forward_tile(wg.y * nwg.x + wg.x, lid, li, 0u);
}

// matmul_forward_tiled with the dropout after the layer fused (p.drop.rate > 0), keyed by the
// step (binding 7), as matmul.wgsl's matmul_forward_dropout.
@compute @workgroup_size(WG_X, WG_Y)
fn matmul_forward_tiled_dropout(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    forward_tile(wg.y * nwg.x + wg.x, lid, li, state.step);
}

// Tile `t` of the flat grid; `step` keys p.drop's mask (unread when its rate is 0).
fn forward_tile(t: u32, lid: vec3<u32>, li: u32, step: u32) {
    let tile_m = 4u * WG_Y;
    let tile_n = 4u * WG_X;
    let tiles_n = (p.n + tile_n - 1u) / tile_n;
    if (t >= tiles_n * ((p.m + tile_m - 1u) / tile_m)) {
        return;
    }
    let m0 = (t / tiles_n) * tile_m;
    let n0 = (t % tiles_n) * tile_n;
    let threads = WG_X * WG_Y;
    // This invocation's block: rows m0 + 4 lid.y + 0..3, columns n0 + 4 lid.x + 0..3.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let slices = (p.k + TILE_K - 1u) / TILE_K;
    for (var s = 0u; s < slices; s++) {
        let k0 = s * TILE_K;
        // Stage the slice: element e = row * TILE_K + kk of each operand's tile, invocation li
        // taking e = li, li + threads, ...: consecutive invocations read consecutive k.
        for (var e = li; e < tile_m * TILE_K; e += threads) {
            let row = e / TILE_K;
            let kk = e % TILE_K;
            sub_x[kk * 16u + row / 4u][row % 4u] = load(true, p.a_off, p.m, m0 + row, k0 + kk);
        }
        for (var e = li; e < tile_n * TILE_K; e += threads) {
            let row = e / TILE_K;
            let kk = e % TILE_K;
            sub_w[kk * 16u + row / 4u][row % 4u] = load(false, p.c_off, p.n, n0 + row, k0 + kk);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let xv = sub_x[kk * 16u + lid.y];
            let wv = sub_w[kk * 16u + lid.x];
            acc0 += xv.x * wv;
            acc1 += xv.y * wv;
            acc2 += xv.z * wv;
            acc3 += xv.w * wv;
        }
        workgroupBarrier();
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + 4u * lid.x + j;
        if (n >= p.n) {
            break;
        }
        var bias = 0.0;
        if (p.no_bias == 0u) {
            bias = c[p.bias_off + n];
        }
        for (var i = 0u; i < 4u; i++) {
            let m = m0 + 4u * lid.y + i;
            if (m < p.m) {
                let y = activate(acc[i][j] + bias, p.act, p.slope);
                out[p.out_off + m * p.n + n] = drop_masked(p.drop, step, m, n, p.n, y);
            }
        }
    }
}
