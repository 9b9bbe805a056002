// adam.wgsl: Adam with bias correction over a network's whole flat parameter buffer.
//
//   adam_tick  (1 invocation) t += 1; beta1^t and beta2^t kept as running products, so the
//              host and the CPU twin compute them with the same f32 multiplications.
//   adam_step  for every parameter i (the update of torch.optim.Adam, same operation order):
//                m = beta1 m + (1 - beta1) g
//                v = beta2 v + (1 - beta2) g^2
//                p -= (lr_t / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//              lr_t = lr, or with a linear decay (decay_inv > 0), for the step whose counter
//              (steps completed before it) is s: lr * min(1, (decay_end - min(s, decay_end)) * decay_inv)
//
//   step_tick  (1 invocation) step += 1: the last dispatch of a training step. Noise and batch
//              gather key on `step`, so the host never writes it during training.
//
// Bindings:
//   adam_step: 0 uniform AdamParams
//              1 storage rw     params (len)   a network's flat parameters
//              2 storage read   grads  (len)   their gradients, same layout
//              3 storage rw     moments (2 len) m in [0, len), v in [len, 2 len)
//              4 uniform        TrainState (the GPU-resident step state, read-only here)
//   adam_tick: 0 uniform AdamParams, 5 storage rw TrainState
//   step_tick: 5 storage rw TrainState
// p.net selects which optimizer's counters in TrainState are used (0 = D, 1 = G).

struct AdamParams {
    len: u32,
    net: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    decay_end: u32,
    decay_inv: f32,
}

@group(0) @binding(0) var<uniform> p: AdamParams;
@group(0) @binding(1) var<storage, read_write> params: array<f32>;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> moments: array<f32>;
@group(0) @binding(4) var<uniform> state: TrainState;
@group(0) @binding(5) var<storage, read_write> state_rw: TrainState;

@compute @workgroup_size(1)
fn adam_tick() {
    if (p.net == 0u) {
        state_rw.t_d += 1u;
        state_rw.pows.x *= p.beta1;
        state_rw.pows.y *= p.beta2;
    } else {
        state_rw.t_g += 1u;
        state_rw.pows.z *= p.beta1;
        state_rw.pows.w *= p.beta2;
    }
}

@compute @workgroup_size(1)
fn step_tick() {
    state_rw.step += 1u;
}

@compute @workgroup_size(256)
fn adam_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let i = linear_index(wg, nwg, li);
    if (i >= p.len) {
        return;
    }
    let pw = select(state.pows.zw, state.pows.xy, p.net == 0u);
    let bias1 = 1.0 - pw.x;
    let bias2 = 1.0 - pw.y;
    let g = grads[i];
    let m = p.beta1 * moments[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * moments[p.len + i] + (1.0 - p.beta2) * g * g;
    moments[i] = m;
    moments[p.len + i] = v;
    var lr = p.lr;
    if (p.decay_inv > 0.0) {
        lr = p.lr * min(1.0, f32(p.decay_end - min(state.step, p.decay_end)) * p.decay_inv);
    }
    let step_size = lr / bias1;
    let denom = sqrt(v) / sqrt(bias2) + p.eps;
    params[i] -= step_size * (m / denom);
}
