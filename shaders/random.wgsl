// random.wgsl: counter-based randomness, keyed by (seed, step), so that no host work and no
// stored RNG state is needed per step; src/rng.rs computes the same bits on the CPU.
//
//   noise_normal  out[k len + i] ~ N(0, 1), i < p.len, for each of p.streams streams k (stream
//                 number p.stream + k: the noise of every update of a step in one dispatch).
//                 Philox-4x32-10 with key (seed_lo, seed_hi) and
//                 counter (i / 4, step, stream, 0) gives four words; Box-Muller turns words
//                 (0, 1) into normals 4q, 4q+1 (cos, sin) and words (2, 3) into 4q+2, 4q+3:
//                 u1 = ((w_a >> 8) + 1) / 2^24 in (0, 1], u2 = (w_b >> 8) / 2^24 in [0, 1),
//                 r = sqrt(-2 ln u1), z = (r cos 2 pi u2, r sin 2 pi u2).
//                 With p.dim > 0 the values are rows of p.dim placed in wider rows: value i goes
//                 to row i / dim, column p.src_col + i % dim of rows of p.src_stride values (a
//                 conditional G's input, whose other columns hold the class embedding), and each
//                 stream spans len / dim * src_stride values; p.dim = 0 packs them (out_off +
//                 k len + i).
//   gather_u8     out[r, c] = data[idx(r), src_col + c] * scale + shift, c < dim, for a batch of
//   gather_f32    p.rows rows, with data (N, src_stride or dim) the resident data set (u8 packed
//                 four to a word, little-endian; or f32), bound one chunk at a time: the binding
//                 holds rows [row_lo, row_hi) (row_hi = 0: all N rows), and a dispatch writes only
//                 the batch rows whose idx(r) falls in it, leaving the others as they are. A data
//                 set over one storage binding is gathered by one dispatch per chunk, which
//                 together write every row once: the same batch, bit for bit, as one binding
//                 (src/ir/data.rs). idx(r) is the batch order: with the batch counter
//                 t = step * sub_steps + sub_index (several D updates per step each get a batch),
//                 epoch e = t / steps_per_epoch, position q = (t % steps_per_epoch) * rows + r,
//                 idx = perm_e(q), where perm_e is a
//                 keyed 4-round Feistel permutation of [0, N) (cycle walking over the next even
//                 power of two): every sample once per epoch, a new order every epoch.
//
//   random_labels out[k len + i] = f32(class), i < p.len, for each of p.streams streams k (0: one),
//                 stream p.stream + k: the class labels of a fake batch (conditional GANs). Samples
//                 share their label in consecutive groups of p.group (0 reads as 1; PacGAN's packs):
//                 g = i / group, w = word g % 4 of Philox-4x32-10 with key (seed_lo, seed_hi) and
//                 counter (g / 4, step, stream, PURPOSE_LABELS), class = the high word of
//                 w p.classes (Lemire's multiply-shift: uniform on [0, classes) up to a bias below
//                 classes / 2^32). Integers only: the same bits on every backend.
//   dropout       out[i] = keep(i) ? out[i] * p.scale : 0 for i < p.len, in place. keep(i) is
//                 unit(hash32(i ^ key)) >= rate, key = hash of (seed, step, salt = p.stream), and
//                 p.shift holds the rate. The same call on the gradient is the backward pass
//                 (the mask multiplication is its own adjoint), so no mask is stored.
//
// Bindings:
//   0 uniform  RandomParams
//   1 uniform  TrainState (only .step is read)
//   2 storage read  data (gather only): one chunk of the data set, rows [row_lo, row_hi) from its
//                   start, array<u32>: packed bytes or the bits of f32 values
//   3 storage rw    out, at element offset p.out_off: noise (len), batch (rows, dim), labels
//                   (len), or the activations (or their gradient) dropout masks

struct RandomParams {
    len: u32,              // noise: number of values; gather: rows * dim
    stream: u32,           // noise: which of the step's noise draws (0 = D step, 1 = G step)
    seed_lo: u32,
    seed_hi: u32,
    out_off: u32,
    rows: u32,             // gather: batch rows
    dim: u32,              // gather: features per sample; noise: values per row (0: packed)
    n: u32,                // gather: samples in the data set
    steps_per_epoch: u32,  // gather: floor(n / rows)
    half_bits: u32,        // gather: Feistel half width, 2 * half_bits >= bits(n - 1)
    scale: f32,            // gather: value = raw * scale + shift; dropout: 1 / (1 - rate)
    shift: f32,            // dropout: the rate
    sub_steps: u32,        // gather: D updates per step (0 = 1); counter = step * sub_steps + sub_index
    sub_index: u32,
    src_stride: u32,       // gather: values per data row (0 = dim); noise: per output row
    src_col: u32,          // gather: first column read from each data row; noise: written
    row_lo: u32,           // gather: the first data row the bound chunk holds
    row_hi: u32,           // gather: one past its last (0 = n: the whole data set)
    streams: u32,    // noise_normal, random_labels: consecutive streams from p.stream, p.len values each (0: one)
    classes: u32,    // random_labels: labels in [0, classes)
    group: u32,      // random_labels: consecutive samples sharing one label (0: 1)
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: RandomParams;
@group(0) @binding(1) var<uniform> state: TrainState;
@group(0) @binding(2) var<storage, read> data: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const TWO_PI: f32 = 6.283185307179586;
const INV_2_24: f32 = 5.9604644775390625e-8;
const PURPOSE_LABELS: u32 = 7u; // rng::PURPOSE_LABELS

@compute @workgroup_size(256)
fn noise_normal(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    // Quads (Philox blocks) per stream; invocation t makes quad q of stream k.
    let quads = (p.len + 3u) / 4u;
    let t = linear_index(wg, nwg, li);
    let k = t / quads;
    let q = t % quads;
    if (k >= max(p.streams, 1u)) {
        return;
    }
    let w = philox4x32(vec4<u32>(q, state.step, p.stream + k, 0u), vec2<u32>(p.seed_lo, p.seed_hi));
    let base = p.out_off + k * noise_span();
    for (var h = 0u; h < 2u; h++) {
        let u1 = f32((w[2u * h] >> 8u) + 1u) * INV_2_24;
        let u2 = f32(w[2u * h + 1u] >> 8u) * INV_2_24;
        let r = sqrt(-2.0 * log(u1));
        let theta = TWO_PI * u2;
        let i = q * 4u + 2u * h;
        if (i < p.len) {
            out[base + noise_place(i)] = r * cos(theta);
        }
        if (i + 1u < p.len) {
            out[base + noise_place(i + 1u)] = r * sin(theta);
        }
    }
}

// Where noise value i of a stream goes from the stream's start (see noise_normal).
fn noise_place(i: u32) -> u32 {
    if (p.dim == 0u) {
        return i;
    }
    return (i / p.dim) * p.src_stride + p.src_col + i % p.dim;
}

// The values one stream spans.
fn noise_span() -> u32 {
    if (p.dim == 0u) {
        return p.len;
    }
    return (p.len / p.dim) * p.src_stride;
}

@compute @workgroup_size(256)
fn random_labels(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let t = linear_index(wg, nwg, li);
    if (p.len == 0u || t >= p.len * max(p.streams, 1u)) {
        return;
    }
    let k = t / p.len;
    let i = t % p.len;
    let g = i / max(p.group, 1u);
    let w = philox4x32(vec4<u32>(g / 4u, state.step, p.stream + k, PURPOSE_LABELS), vec2<u32>(p.seed_lo, p.seed_hi));
    out[p.out_off + t] = f32(mul_wide(w[g % 4u], p.classes).x);
}

// Round key r of epoch e's permutation.
fn feistel_key(epoch: u32, r: u32) -> u32 {
    return hash32(p.seed_lo ^ hash32(p.seed_hi ^ hash32(epoch ^ hash32(r + 0x9E3779B9u))));
}

// perm_e(q): a bijection of [0, n), by cycle walking a Feistel network on 2 * half_bits bits.
fn permute(q: u32, epoch: u32) -> u32 {
    let mask = (1u << p.half_bits) - 1u;
    let k = vec4<u32>(feistel_key(epoch, 0u), feistel_key(epoch, 1u), feistel_key(epoch, 2u),
                      feistel_key(epoch, 3u));
    var x = q;
    loop {
        var left = x >> p.half_bits;
        var right = x & mask;
        for (var r = 0u; r < 4u; r++) {
            let next = left ^ (hash32(right ^ k[r]) & mask);
            left = right;
            right = next;
        }
        x = (left << p.half_bits) | right;
        if (x < p.n) {
            break;
        }
    }
    return x;
}

fn batch_row_source(r: u32) -> u32 {
    let t = state.step * max(p.sub_steps, 1u) + p.sub_index;
    let epoch = t / p.steps_per_epoch;
    let q = (t % p.steps_per_epoch) * p.rows + r;
    return permute(q, epoch);
}

fn row_stride() -> u32 {
    return select(p.src_stride, p.dim, p.src_stride == 0u);
}

// One past the last row of the bound chunk.
fn row_end() -> u32 {
    return select(p.row_hi, p.n, p.row_hi == 0u);
}

// One invocation per output element: x = column, y = batch row (dispatch ceil(dim/64) x rows).
@compute @workgroup_size(64)
fn gather_u8(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let r = gid.y;
    if (c >= p.dim || r >= p.rows) {
        return;
    }
    let src = batch_row_source(r);
    if (src < p.row_lo || src >= row_end()) {
        return;
    }
    let byte = (src - p.row_lo) * row_stride() + p.src_col + c;
    let raw = (data[byte >> 2u] >> ((byte & 3u) * 8u)) & 0xffu;
    out[p.out_off + r * p.dim + c] = f32(raw) * p.scale + p.shift;
}

@compute @workgroup_size(64)
fn gather_f32(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let r = gid.y;
    if (c >= p.dim || r >= p.rows) {
        return;
    }
    let src = batch_row_source(r);
    if (src < p.row_lo || src >= row_end()) {
        return;
    }
    out[p.out_off + r * p.dim + c] = bitcast<f32>(data[(src - p.row_lo) * row_stride() + p.src_col + c]) * p.scale + p.shift;
}

@compute @workgroup_size(256)
fn dropout(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let i = linear_index(wg, nwg, li);
    if (i >= p.len) {
        return;
    }
    let keep = dropout_keep(dropout_key(p.seed_lo, p.seed_hi, state.step, p.stream), i, p.shift);
    let v = out[p.out_off + i];
    out[p.out_off + i] = select(0.0, v * p.scale, keep);
}
