// ema.wgsl: an exponential moving average of a network's flat parameter buffer (Yazici et al.
// 2019, "The unusual effectiveness of averaging in GAN training"), dispatched after G's Adam
// step when --g-ema BETA > 0. Sampling and evaluation then run G with the averaged weights.
//
//   ema_update  for every parameter i:
//                 ema[i] = beta * ema[i] + (1 - beta) * params[i]
//               No bias correction: the trainer starts ema as a copy of the initial weights.
//
// Bindings:
//   ema_update: 0 uniform   EmaParams
//               1 storage read  params (len)  the network's current (just updated) parameters
//               3 storage rw    ema    (len)  their running average, same layout
//
// Indices (the family runs without naga's runtime checks): i < p.len, guarded by the kernel; the
// host checks that both buffers hold len values before the call is recorded.

struct EmaParams {
    len: u32,
    beta: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: EmaParams;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> ema: array<f32>;

@compute @workgroup_size(256)
fn ema_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = linear_index(wg, nwg, li);
    if (i >= p.len) {
        return;
    }
    ema[i] = p.beta * ema[i] + (1.0 - p.beta) * params[i];
}
