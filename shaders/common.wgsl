// common.wgsl: helpers prepended to every kernel family by src/kernels/mod.rs (no bindings here).
//
// - Numerically stable sigmoid and softplus: never exp() of a positive argument, so no overflow
//   at any input (+-300 included).
// - Activation codes, shared with the host (kernels::activation::Activation):
//   0 identity, 1 relu, 2 leaky_relu (slope from the caller), 3 sigmoid, 4 tanh.
// - 1-D dispatch indexing: the host splits large dispatches into (x, y) workgroup grids so that
//   no dimension exceeds 65,535 workgroups; `linear_index` undoes that split.
// - Integer hashing (lowbias32) and Philox-4x32-10, bit-identical to src/rng.rs.
// - TrainState, the step state shared by adam.wgsl and random.wgsl.
// - class_index: a class label (an f32 holding the class index) as a row of a per-class table.
// - Dropout's mask (rng::dropout_key, rng::dropout_keep) and DropMask, the mask a linear layer
//   applies in its epilogue (matmul.wgsl, matmul_tiled.wgsl, head.wgsl) instead of a dropout
//   dispatch of its own (random.wgsl's `dropout`, which uses the same functions).

// The GPU-resident training state (ir::TrainState on the host): the step counter that keys
// noise and batch order, and Adam's step counts and running powers. 8 words.
struct TrainState {
    step: u32,
    t_d: u32,
    t_g: u32,
    _pad: u32,
    // (beta1^t, beta2^t) of D in xy, of G in zw
    pows: vec4<f32>,
}

const ACT_IDENTITY: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_LEAKY_RELU: u32 = 2u;
const ACT_SIGMOID: u32 = 3u;
const ACT_TANH: u32 = 4u;

// 1 / (1 + e^-z), computed from e^-|z| <= 1 so that it cannot overflow.
fn sigmoid(z: f32) -> f32 {
    let e = exp(-abs(z));
    let s = 1.0 / (1.0 + e);
    return select(e * s, s, z >= 0.0);
}

// log(1 + x) for x in [0, 1], accurate for tiny x (WGSL has no log1p).
fn log1p_small(x: f32) -> f32 {
    if (x < 1e-4) {
        return x - 0.5 * x * x;
    }
    return log(1.0 + x);
}

// tanh, clamped so that no implementation can overflow inside it (tanh(15) is 1 in f32).
fn tanh_safe(z: f32) -> f32 {
    return tanh(clamp(z, -15.0, 15.0));
}

fn activate(z: f32, act: u32, slope: f32) -> f32 {
    switch act {
        case 1u: { return max(z, 0.0); }
        case 2u: { return select(z * slope, z, z > 0.0); }
        case 3u: { return sigmoid(z); }
        case 4u: { return tanh_safe(z); }
        default: { return z; }
    }
}

// d act / dz written in terms of the activation's *output* y (all five allow it).
fn activation_grad(y: f32, act: u32, slope: f32) -> f32 {
    switch act {
        case 1u: { return select(0.0, 1.0, y > 0.0); }
        case 2u: { return select(slope, 1.0, y > 0.0); }
        case 3u: { return y * (1.0 - y); }
        case 4u: { return 1.0 - y * y; }
        default: { return 1.0; }
    }
}

// Index of this invocation in a 1-D problem dispatched as a 2-D grid of 256-wide workgroups.
fn linear_index(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * 256u + local;
}

// The class a label names, for tables of max(classes, 1) rows (embedding.wgsl, projection.wgsl,
// class_affine.wgsl; kernels::embedding::class_index on the host): a label is a class index
// stored as an f32; it is truncated toward zero and clamped to [0, classes - 1], so a label out
// of range or not an integer reads a row of the table, never past it. NaN and negative labels
// (sign bit set) read row 0, decided on the bits so that no float comparison with a NaN is
// involved.
fn class_index(label: f32, classes: u32) -> u32 {
    let last = max(classes, 1u) - 1u;
    let bits = bitcast<u32>(label);
    if ((bits & 0x7fffffffu) > 0x7f800000u || (bits >> 31u) != 0u) {
        return 0u;
    }
    return min(u32(min(label, f32(last))), last);
}

// The dropout mask a kernel applies as it stores a value, instead of a dropout dispatch
// (nn::Net fuses a Linear and the Dropout after it; kernels::random::DropMask on the host). The
// rows form groups of `rows` (reals, then fakes: the groups of nn::Io), group g keyed by stream
// `stream + g stride`, as separate `dropout` calls per group are; element i of a group is
// (row within the group) x features + column. rate = 0: no mask (nothing is read).
struct DropMask {
    rate: f32,
    scale: f32,   // 1 / (1 - rate)
    rows: u32,    // rows per group
    stream: u32,  // group 0's stream (pass x 256 + salt)
    stride: u32,  // stream step from one group to the next
    seed_lo: u32,
    seed_hi: u32,
    _pad: u32,
}

// The key of dropout draw `stream` at `step` (rng::dropout_key).
fn dropout_key(seed_lo: u32, seed_hi: u32, step: u32, stream: u32) -> u32 {
    return hash32(seed_lo ^ hash32(seed_hi ^ hash32(step ^ hash32(stream + 0x85EBCA6Bu))));
}

// Whether element i survives a draw with `key` at `rate` (rng::dropout_keep: 24 bits as a
// uniform in [0, 1), kept when >= rate).
fn dropout_keep(key: u32, i: u32, rate: f32) -> bool {
    return f32(hash32(i ^ key) >> 8u) * 5.9604644775390625e-8 >= rate;
}

// v after the mask `d` at row `row`, column `col` of `features` columns: v * scale where kept,
// else 0 (the `dropout` kernel's select); v itself when d.rate = 0.
fn drop_masked(d: DropMask, step: u32, row: u32, col: u32, features: u32, v: f32) -> f32 {
    if (d.rate <= 0.0) {
        return v;
    }
    let g = row / d.rows;
    let key = dropout_key(d.seed_lo, d.seed_hi, step, d.stream + g * d.stride);
    let keep = dropout_keep(key, (row - g * d.rows) * features + col, d.rate);
    return select(0.0, v * d.scale, keep);
}

fn hash32(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

// High and low 32 bits of a 32x32 -> 64-bit product (WGSL has no mulhi).
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    let lo = (mid << 16u) | (ll & 0xffffu);
    return vec2<u32>(hi, lo);
}

// Philox-4x32-10 (Salmon et al., SC'11): counter c, key k -> four random words.
fn philox4x32(c_in: vec4<u32>, k_in: vec2<u32>) -> vec4<u32> {
    var c = c_in;
    var k = k_in;
    for (var r = 0u; r < 10u; r++) {
        let p0 = mul_wide(0xD2511F53u, c.x);
        let p1 = mul_wide(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
        k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}
