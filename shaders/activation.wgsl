// activation.wgsl: element-wise activations and their backward passes.
//
// The forward activations are also fused into matmul_forward's epilogue (same functions, from
// common.wgsl); these standalone entry points apply them to any buffer.
//
//   relu_forward        y = max(x, 0)
//   leaky_relu_forward  y = x > 0 ? x : slope * x
//   sigmoid_forward     y = 1 / (1 + e^-x)          (stable: never exp of a positive number)
//   tanh_forward        y = tanh(clamp(x, -15, 15))
//   *_backward          dz = dy * f'(z), with f'(z) written in terms of the output y:
//                       relu: y > 0; leaky: y > 0 ? 1 : slope; sigmoid: y (1 - y); tanh: 1 - y^2
//
// Bindings (one layout for all entry points; every tensor is a flat array of p.len elements,
// each at its own element offset):
//   0 uniform EwParams
//   1 storage read   x (forward) or y (backward), at p.in_off
//   2 storage read   dy (backward only), at p.dy_off
//   3 storage rw     y (forward) or dz (backward), at p.out_off
//
// Indices (the family runs without naga's runtime checks): every access is offset + i with
// i < p.len, guarded by the kernel; the host checks that each offset + len lies inside its buffer
// before the call is recorded.

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
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn forward(i: u32, act: u32) {
    if (i < p.len) {
        dst[p.out_off + i] = activate(src[p.in_off + i], act, p.slope);
    }
}

fn backward(i: u32, act: u32) {
    if (i < p.len) {
        dst[p.out_off + i] = dy[p.dy_off + i] * activation_grad(src[p.in_off + i], act, p.slope);
    }
}

@compute @workgroup_size(256)
fn relu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    forward(linear_index(wg, nwg, li), ACT_RELU);
}

@compute @workgroup_size(256)
fn leaky_relu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    forward(linear_index(wg, nwg, li), ACT_LEAKY_RELU);
}

@compute @workgroup_size(256)
fn sigmoid_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    forward(linear_index(wg, nwg, li), ACT_SIGMOID);
}

@compute @workgroup_size(256)
fn tanh_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    forward(linear_index(wg, nwg, li), ACT_TANH);
}

@compute @workgroup_size(256)
fn relu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    backward(linear_index(wg, nwg, li), ACT_RELU);
}

@compute @workgroup_size(256)
fn leaky_relu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) li: u32) {
    backward(linear_index(wg, nwg, li), ACT_LEAKY_RELU);
}

@compute @workgroup_size(256)
fn sigmoid_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    backward(linear_index(wg, nwg, li), ACT_SIGMOID);
}

@compute @workgroup_size(256)
fn tanh_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    backward(linear_index(wg, nwg, li), ACT_TANH);
}
