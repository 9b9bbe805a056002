// activation_f16.wgsl: element-wise kernels on f16 buffers (--precision f16): the casts between
// f32 and f16 buffers, and the activations' backward passes reading an f16 output.
//
//   cast_to_f16          dst16[out_off + i] = f16(src32[in_off + i]), saturating at +-65504
//                        (the f16 weight copies, G's noise, the real batch into D.input)
//   cast_to_f32          dst32[out_off + i] = f32(src16[in_off + i])       (exact: D's logits)
//   *_backward_f16       dst32 = dy32 * f'(y), y = f32(src16) the activation's f16 output,
//                        f' as in activation.wgsl; gradients stay f32 (see src/programs/gan.rs)
// The forward activations need no entry: they are fused into matmul_forward_f16.
// Arithmetic is f32; a store into f16 rounds to nearest even, as src/kernels/activation.rs `round_f16`.
//
// Bindings (an f16 buffer at its role's slot, an f32 buffer at that slot + 4, as in
// matmul_f16.wgsl; all at element offsets):
//   0 uniform EwParams
//   1 storage read   src16: y (backward) or x (cast_to_f32), at p.in_off
//   3 storage rw     dst16: out of cast_to_f16, at p.out_off
//   5 storage read   src32: x of cast_to_f16, at p.in_off
//   6 storage read   dy32:  dy (backward), at p.dy_off
//   7 storage rw     dst32: dz (backward) or out of cast_to_f32, at p.out_off

// (`enable f16;` is put first by src/kernels/mod.rs.)

struct EwParams {
    len: u32,
    slope: f32,
    in_off: u32,
    dy_off: u32,
    out_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: EwParams;
@group(0) @binding(1) var<storage, read> src16: array<f16>;
@group(0) @binding(3) var<storage, read_write> dst16: array<f16>;
@group(0) @binding(5) var<storage, read> src32: array<f32>;
@group(0) @binding(6) var<storage, read> dy32: array<f32>;
@group(0) @binding(7) var<storage, read_write> dst32: array<f32>;

const F16_MAX: f32 = 65504.0;

@compute @workgroup_size(256)
fn cast_to_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let i = linear_index(wg, nwg, li);
    if (i < p.len) {
        dst16[p.out_off + i] = f16(clamp(src32[p.in_off + i], -F16_MAX, F16_MAX));
    }
}

@compute @workgroup_size(256)
fn cast_to_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let i = linear_index(wg, nwg, li);
    if (i < p.len) {
        dst32[p.out_off + i] = f32(src16[p.in_off + i]);
    }
}

fn backward(i: u32, act: u32) {
    if (i < p.len) {
        dst32[p.out_off + i] = dy32[p.dy_off + i] * activation_grad(f32(src16[p.in_off + i]), act, p.slope);
    }
}

@compute @workgroup_size(256)
fn relu_backward_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    backward(linear_index(wg, nwg, li), ACT_RELU);
}

@compute @workgroup_size(256)
fn leaky_relu_backward_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) li: u32) {
    backward(linear_index(wg, nwg, li), ACT_LEAKY_RELU);
}

@compute @workgroup_size(256)
fn sigmoid_backward_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) li: u32) {
    backward(linear_index(wg, nwg, li), ACT_SIGMOID);
}

@compute @workgroup_size(256)
fn tanh_backward_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    backward(linear_index(wg, nwg, li), ACT_TANH);
}
