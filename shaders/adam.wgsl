// adam.wgsl: Adam with bias correction over a network's whole flat parameter buffer.
//
//   adam_step  for every parameter i (the update of torch.optim.Adam, same operation order):
//                m = beta1 m + (1 - beta1) g
//                v = beta2 v + (1 - beta2) g^2
//                p -= (lr_t / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//              t is this update's count: the optimizer's counter in TrainState (updates of
//              earlier steps) + p.earlier (its updates earlier in this step) + 1, and beta^t is
//              the running power in TrainState times beta, p.earlier + 1 times: the same f32
//              multiplications, in the same order, that step_tick makes at the end of the step.
//              lr_t = lr, or with a linear decay (decay_inv > 0), for the step whose counter
//              (steps completed before it) is s: lr * min(1, (decay_end - min(s, decay_end)) * decay_inv)
//
//   step_tick  (1 invocation) the last dispatch of a training step: step += 1, and each
//              optimizer's counter and running powers advanced by its updates in the step
//              (p.d_updates, p.g_updates: one f32 multiplication per update, so the host and
//              the CPU twin compute the same powers). Noise and batch gather key on `step`, so the
//              host never writes it during training. The counters advance here rather than in a
//              dispatch before each update: one dispatch per step instead of one per update.
//
// Bindings:
//   adam_step: 0 uniform AdamParams
//              1 storage rw     params (len)   a network's flat parameters
//              2 storage read   grads  (len)   their gradients, same layout
//              3 storage rw     moments (2 len) m in [0, len), v in [len, 2 len)
//              4 uniform        TrainState (the GPU-resident step state, read-only here)
//   step_tick: 0 uniform AdamParams (d_updates, g_updates, beta1, beta2), 5 storage rw TrainState
// p.net selects which optimizer's counters in TrainState are used (0 = D, 1 = G).
// Indices (the family runs without naga's runtime checks): adam_step returns for i >= p.len, and
// the host checks that params, grads and moments hold len, len and 2 len values; step_tick
// touches only the fixed-size TrainState.

struct AdamParams {
    len: u32,
    net: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    decay_end: u32,
    decay_inv: f32,
    earlier: u32,
    d_updates: u32,   // step_tick only
    g_updates: u32,   // step_tick only
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: AdamParams;
@group(0) @binding(1) var<storage, read_write> params: array<f32>;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> moments: array<f32>;
@group(0) @binding(4) var<uniform> state: TrainState;
@group(0) @binding(5) var<storage, read_write> state_rw: TrainState;

@compute @workgroup_size(1)
fn step_tick() {
    state_rw.step += 1u;
    for (var i = 0u; i < p.d_updates; i++) {
        state_rw.t_d += 1u;
        state_rw.pows.x *= p.beta1;
        state_rw.pows.y *= p.beta2;
    }
    for (var i = 0u; i < p.g_updates; i++) {
        state_rw.t_g += 1u;
        state_rw.pows.z *= p.beta1;
        state_rw.pows.w *= p.beta2;
    }
}

@compute @workgroup_size(256)
fn adam_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let i = linear_index(wg, nwg, li);
    if (i >= p.len) {
        return;
    }
    var pw = select(state.pows.zw, state.pows.xy, p.net == 0u);
    for (var u = 0u; u <= p.earlier; u++) {
        pw.x *= p.beta1;
        pw.y *= p.beta2;
    }
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
