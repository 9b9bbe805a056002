// embedding.wgsl: a learned class embedding (conditional GANs): a table of C rows of K values, one
// row per class; a batch's rows looked up by their labels, and the table's gradient.
//
// Labels: B f32 values at p.labels_off of `labels`, each a class index as a float (the batch
// gather writes the data's labels so, random_labels in random.wgsl the fakes'). y_b =
// class_index(labels[p.labels_off + b], C) (common.wgsl): truncated toward zero and clamped to
// [0, C - 1], so a label out of range, not an integer or NaN reads a row of the table, never past
// it. The table is row-major (C, K) at p.table_off; its gradient has the same layout at the same
// offset of the gradient buffer (which mirrors the parameters' layout).
//
// The activation side is rows of s = p.act_stride values (0 reads as K) from p.act_off, the K
// embedding values at columns [p.act_col, p.act_col + K) of each row: with s > K, the embedding
// fills its columns of a wider row (G's input concat(embed(y), z), written in place, no copy).
// a(b, k) = p.act_off + b s + p.act_col + k.
//
//   embedding_forward   dst[a(b, k)] = src[p.table_off + y_b K + k]            for b < B, k < K
//                       src = the table (the network's parameters), dst = the activations.
//                       One invocation per (b, k), i = b K + k.
//   embedding_backward  dtable[p.table_off + c K + k] (+)= sum over b = 0, 1, ..., B - 1 with
//                       y_b = c of dout[a(b, k)]                              for c < C, k < K
//                       src = dout, dst = the gradient buffer. One invocation per (c, k),
//                       i = c K + k, adds its class's rows in batch order starting from 0 (no
//                       atomics: bit-reproducible; a class absent from the batch gets exactly 0),
//                       then stores the sum, or adds it to what is there when p.accumulate (a
//                       second pass of the same step, as every parameter gradient).
//   Both run 256 invocations per workgroup over a 2-D grid (linear_index in common.wgsl).
//
// Bindings:
//   0 uniform EmbeddingParams
//   1 storage read  labels (B values at p.labels_off)
//   2 storage read  src: forward the table, backward dout
//   3 storage rw    dst: forward the activations, backward the gradient buffer
//
// Indices: every invocation returns unless i < B K (forward) or i < C K (backward); y_b < C by
// class_index; so every access lies in the spans the host checks (`ir::Kernel::spans`) before
// the call is recorded. Compiled with naga's runtime checks all the same.

struct EmbeddingParams {
    rows: u32,        // B
    dim: u32,         // K
    classes: u32,     // C
    labels_off: u32,
    table_off: u32,   // the table (forward) or its gradient (backward)
    act_off: u32,     // row 0 of the activation side
    act_stride: u32,  // values per activation row (0 = dim)
    act_col: u32,     // the embedding's first column in each row
    accumulate: u32,  // backward: dtable += v instead of = v
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: EmbeddingParams;
@group(0) @binding(1) var<storage, read> labels: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn act_at(b: u32, k: u32) -> u32 {
    return p.act_off + b * select(p.act_stride, p.dim, p.act_stride == 0u) + p.act_col + k;
}

@compute @workgroup_size(256)
fn embedding_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let i = linear_index(wg, nwg, li);
    if (i >= p.rows * p.dim) {
        return;
    }
    let b = i / p.dim;
    let k = i % p.dim;
    let y = class_index(labels[p.labels_off + b], p.classes);
    dst[act_at(b, k)] = src[p.table_off + y * p.dim + k];
}

@compute @workgroup_size(256)
fn embedding_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let i = linear_index(wg, nwg, li);
    if (i >= p.classes * p.dim) {
        return;
    }
    let c = i / p.dim;
    let k = i % p.dim;
    var acc = 0.0;
    for (var b = 0u; b < p.rows; b++) {
        if (class_index(labels[p.labels_off + b], p.classes) == c) {
            acc += src[act_at(b, k)];
        }
    }
    let at = p.table_off + i;
    if (p.accumulate != 0u) {
        acc = dst[at] + acc;
    }
    dst[at] = acc;
}
