// random_f16.wgsl: dropout on an f16 activation buffer (--precision f16, D's hidden outputs in
// the forward pass; the backward pass masks the f32 gradient with random.wgsl's `dropout`).
//
//   dropout_f16  out[i] = keep(i) ? f16(f32(out[i]) * p.scale) : 0 for i < p.len, in place, with
//                the mask of random.wgsl's `dropout` (same key, same hash, same threshold), so
//                the forward and backward passes drop the same units. The product is f32 and
//                rounded once to f16 (saturating at +-65504), as src/kernels/activation.rs `round_f16`.
//
// Bindings:
//   0 uniform  RandomParams (random.wgsl's, field for field: stream = the mask's salt,
//              scale = 1 / (1 - rate), shift = the rate)
//   1 uniform  TrainState (only .step is read)
//   3 storage rw  out16, at element offset p.out_off

// (`enable f16;` is put first by src/kernels/mod.rs.)

struct RandomParams {
    len: u32,
    stream: u32,
    seed_lo: u32,
    seed_hi: u32,
    out_off: u32,
    rows: u32,
    dim: u32,
    n: u32,
    steps_per_epoch: u32,
    half_bits: u32,
    scale: f32,
    shift: f32,
    sub_steps: u32,
    sub_index: u32,
    src_stride: u32,
    src_col: u32,
    row_lo: u32,
    row_hi: u32,
    streams: u32,    // noise_normal, random_labels: consecutive streams from p.stream, p.len values each (0: one)
    classes: u32,    // random_labels: labels in [0, classes)
    group: u32,      // random_labels: consecutive samples sharing one label (0: 1)
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: RandomParams;
@group(0) @binding(1) var<uniform> state: TrainState;
@group(0) @binding(3) var<storage, read_write> out16: array<f16>;

const INV_2_24: f32 = 5.9604644775390625e-8;
const F16_MAX: f32 = 65504.0;

@compute @workgroup_size(256)
fn dropout_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let i = linear_index(wg, nwg, li);
    if (i >= p.len) {
        return;
    }
    let keep = dropout_keep(dropout_key(p.seed_lo, p.seed_hi, state.step, p.stream), i, p.shift);
    let v = f32(out16[p.out_off + i]) * p.scale;
    out16[p.out_off + i] = select(f16(0.0), f16(clamp(v, -F16_MAX, F16_MAX)), keep);
}
