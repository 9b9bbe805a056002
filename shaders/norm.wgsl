// norm.wgsl: batch normalisation (torch.nn.BatchNorm2d / BatchNorm1d), training and eval mode.
//
// Layout: x is (n, c, s), NCHW flattened with s = h w: element (b, ch, sp) at
// off + (b c + ch) s + sp. A linear layer's batch norm over (n, f) is the same with c = f, s = 1.
// Every channel ch is normalised over its m = n s elements, indexed e = b s + sp.
//
// Groups: with p.groups = G > 1 the tensor holds G batches of p.n rows one after the other (D's
// reals, then its fakes), each normalised with its own statistics, as G separate calls would
// (group g's elements at each offset + g n c s, its saved statistics at save_off + 3 g c; the
// running statistics folded group after group, in order). G = 0 reads as 1.
//
// Activation: the forward and eval entry points end in act (the pipeline constant ACT, an
// Activation code, p.slope its slope): y = act(gamma x_hat + beta), the layer's activation fused
// (one dispatch instead of two); batch_norm_backward takes dy of that y and applies act'(y) as
// it loads dy (ACT = identity when the next layer already did, or there is no activation).
//
// Entry points (training mode uses the batch's statistics, eval mode the running ones):
//   batch_norm_forward          mean  = sum(x) inv_m
//                               var   = sum((x - mean)^2) inv_m   (biased; a second pass over x,
//                                       not E[x^2] - mean^2, which cancels catastrophically)
//                               inv_std = inverseSqrt(var + eps)
//                               y = act(gamma ((x - mean) inv_std) + beta)
//                               saves mean, inv_std and gamma of the channel for the backward;
//                               if update_running: running_mean = (1 - mom) running_mean + mom mean,
//                               running_var = (1 - mom) running_var + mom (var unbias)
//   batch_norm_backward         dz = dy act'(y)   (as each dy is loaded; never stored)
//                               x_hat = (x - mean) inv_std (saved mean and inv_std)
//                               PART_PARAMS: dgamma (+)= sum(dz x_hat), dbeta (+)= sum(dz)
//                               PART_INPUT:  dx = (gamma inv_std) ((dz - sum(dz) inv_m) - x_hat sum(dz x_hat) inv_m)
//                               (saved gamma: the backward of the forward that ran); one
//                               workgroup per channel computes the two sums once and writes
//                               dgamma, dbeta and dx from them (the CPU twins
//                               batch_norm_backward_params and batch_norm_backward_input compute
//                               the same sums in the same order)
//   batch_norm_eval             y = act(gamma ((x - running_mean) inverseSqrt(running_var + eps)) + beta)
// Without an affine (p.no_affine = 1, PyTorch's affine=False: conditional batch norm's first half,
// before class_affine.wgsl) gamma is 1 and beta 0 in every formula, gamma_off and beta_off are not
// read, and the backward pass is called without PART_PARAMS (there is no dgamma or dbeta).
// inv_m = 1 / m and unbias = m / (m - 1) are params computed on the host (NormParams::new), so
// that they are one correctly rounded value on every backend (WGSL's division is not). For m = 1
// unbias is 1 (PyTorch refuses training batch norm on one value per channel; here the variance
// is 0, y = beta, dx = 0, and the running variance decays towards 0 instead of dividing by 0).
// The GPU computes 1/sqrt with inverseSqrt (not correctly rounded: Vulkan allows 2 ulp); the CPU
// twin computes 1.0 / (var + eps).sqrt() in f32, hence a tolerance on inv_std and all after it.
//
// Bindings:
//   0 uniform NormParams
//   1 storage read   a: x, at x_off (every entry point)
//   2 storage read   c: forward, eval: the network's flat parameters, gamma at gamma_off and beta
//                       at beta_off (c values each; not read when p.no_affine); backward: dy
//                       at dy_off
//   3 storage rw     out: forward, eval: y at y_off; backward: the flat gradient buffer, dgamma
//                       at dgamma_off, dbeta at dbeta_off
//   4 storage rw     state (forward, eval): the network's non-trainable state, running_mean at
//                       mean_off and running_var at var_off (c values each; forward updates them
//                       if update_running, eval reads them). Not trained, so it is not the
//                       parameter buffer that Adam updates.
//   5 storage rw     saved (forward, backward): this pass's statistics at save_off: mean
//                       [0, c), inv_std [c, 2c), gamma [2c, 3c), per group (forward writes them,
//                       backward reads them); a scratch buffer of the pass, so that the passes
//                       of one step each keep their own.
//   6 storage read   bn_out (batch_norm_backward): y = act(...) at y_off, dy's layout (dy bound
//                       again when ACT is the identity: never read then)
//   7 storage rw     dx_out (batch_norm_backward): dx at dx_off (the gradient buffer bound again
//                       when there is no PART_INPUT: never written then)
//   batch_norm_backward binds out (3) to dx's buffer when there is no PART_PARAMS (never written).
//
// Indices (the family runs without naga's runtime checks): every channel index is below p.c
// (workgroups past it return), every element index is element(off + g n c s, ch, e) with
// e < n s and g < groups (eval: o < groups n c s), inside the spans the host checks
// (`ir::Kernel::spans`) before recording the call; the saved statistics at save_off + 3 g c + ch
// (+ c, + 2c) and the running ones at mean_off + ch, var_off + ch; partial[] by the lane < 256.
//
// Dispatch: forward and backward run one workgroup of 256 per channel (c workgroups, as a 1-D
// run split into an (x, y) grid of at most 65,535 per dimension); eval one invocation per
// element (n c s invocations, workgroups of 256, linear_index in common.wgsl).
//
// Fixed-order sums (the CPU twin follows them exactly): lane l of the channel's workgroup adds
// the terms e = l, l + 256, l + 512, ... in order, starting from 0; then a tree: for stride 128,
// 64, ..., 1, partial[l] += partial[l + stride] for l < stride; the sum is partial[0].

struct NormParams {
    n: u32,
    c: u32,
    s: u32,              // spatial size h w (1 for a linear layer's features)
    x_off: u32,          // x in binding 1
    y_off: u32,          // y in binding 3 (forward, eval), in binding 6 (backward)
    dy_off: u32,         // dy in binding 2 (backward)
    dx_off: u32,         // dx in binding 7 (backward)
    gamma_off: u32,      // gamma in binding 2 (forward, eval)
    beta_off: u32,       // beta in binding 2 (forward, eval)
    mean_off: u32,       // running_mean in binding 4
    var_off: u32,        // running_var in binding 4
    save_off: u32,       // saved [mean | inv_std | gamma], 3c values in binding 5
    dgamma_off: u32,     // dgamma in binding 3 (backward)
    dbeta_off: u32,      // dbeta in binding 3 (backward)
    eps: f32,            // added to the variance (PyTorch: 1e-5)
    momentum: f32,       // running-statistics momentum (PyTorch: 0.1)
    inv_m: f32,          // 1 / (n s)
    unbias: f32,         // (n s) / (n s - 1), 1 when n s = 1
    update_running: u32, // forward: update the running statistics
    accumulate: u32,     // backward: dgamma += v, dbeta += v instead of = v
    act: u32,            // the Activation code of ACT (the twins read it here)
    slope: f32,          // its slope (leaky ReLU)
    groups: u32,         // batches of n rows with their own statistics (0 or 1: one)
    parts: u32,          // batch_norm_backward: PART_PARAMS | PART_INPUT
    no_affine: u32,      // 1: gamma 1, beta 0, gamma_off and beta_off not read (affine=False)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: NormParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;
@group(0) @binding(5) var<storage, read_write> saved: array<f32>;
@group(0) @binding(6) var<storage, read> bn_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx_out: array<f32>;

// The activation after the normalisation (an Activation code; one pipeline per value).
override ACT: u32 = 0u;

const PART_PARAMS: u32 = 1u;
const PART_INPUT: u32 = 2u;

var<workgroup> partial: array<vec2<f32>, 256>;

// Index of this workgroup in a 1-D run of workgroups dispatched as a 2-D grid.
fn workgroup_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}

// Element e = b s + sp of channel ch in a tensor at off.
fn element(off: u32, ch: u32, e: u32) -> u32 {
    return off + ((e / p.s) * p.c + ch) * p.s + e % p.s;
}

// The tree over the 256 lanes' partial sums (two at once); every lane gets the totals.
fn workgroup_sum(li: u32, v: vec2<f32>) -> vec2<f32> {
    partial[li] = v;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (li < stride) {
            partial[li] += partial[li + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    // Every lane has read the total before the next sum overwrites partial.
    workgroupBarrier();
    return total;
}

fn group_count() -> u32 {
    return max(p.groups, 1u);
}

// Where group g starts, in elements, from each tensor's offset.
fn group_shift(g: u32) -> u32 {
    return g * p.n * p.c * p.s;
}

// The channel's batch mean (lane-strided sums of x, then the tree); group shift sh.
fn batch_mean(li: u32, ch: u32, sh: u32) -> f32 {
    var acc = 0.0;
    for (var e = li; e < p.n * p.s; e += 256u) {
        acc += a[element(p.x_off + sh, ch, e)];
    }
    return workgroup_sum(li, vec2<f32>(acc, 0.0)).x * p.inv_m;
}

// The channel's biased batch variance about `mean`, as a second pass.
fn batch_var(li: u32, ch: u32, mean: f32, sh: u32) -> f32 {
    var acc = 0.0;
    for (var e = li; e < p.n * p.s; e += 256u) {
        let d = a[element(p.x_off + sh, ch, e)] - mean;
        acc += d * d;
    }
    return workgroup_sum(li, vec2<f32>(acc, 0.0)).x * p.inv_m;
}

// (gamma, beta) of channel ch: the parameters' (binding 2, forward and eval only), or (1, 0)
// without an affine (p.no_affine), when gamma_off and beta_off are not read.
fn gamma_beta(ch: u32) -> vec2<f32> {
    if (p.no_affine != 0u) {
        return vec2<f32>(1.0, 0.0);
    }
    return vec2<f32>(c[p.gamma_off + ch], c[p.beta_off + ch]);
}

// Training mode: a = x, c = parameters (gamma, beta), out = y, state = running stats, saved =
// this pass's statistics. One workgroup per channel, its groups one after the other.
@compute @workgroup_size(256)
fn batch_norm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let ch = workgroup_index(wg, nwg);
    // ch is the same for the whole workgroup, so this return keeps the barriers uniform.
    if (ch >= p.c) {
        return;
    }
    let gb = gamma_beta(ch);
    let gamma = gb.x;
    let beta = gb.y;
    for (var g = 0u; g < group_count(); g++) {
        let sh = group_shift(g);
        let mean = batch_mean(li, ch, sh);
        let variance = batch_var(li, ch, mean, sh);
        let inv_std = inverseSqrt(variance + p.eps);
        for (var e = li; e < p.n * p.s; e += 256u) {
            let x_hat = (a[element(p.x_off + sh, ch, e)] - mean) * inv_std;
            out[element(p.y_off + sh, ch, e)] = activate(gamma * x_hat + beta, ACT, p.slope);
        }
        if (li == 0u) {
            let save = p.save_off + 3u * p.c * g;
            saved[save + ch] = mean;
            saved[save + p.c + ch] = inv_std;
            saved[save + 2u * p.c + ch] = gamma;
            if (p.update_running != 0u) {
                let keep = 1.0 - p.momentum;
                state[p.mean_off + ch] = keep * state[p.mean_off + ch] + p.momentum * mean;
                state[p.var_off + ch] = keep * state[p.var_off + ch] + p.momentum * (variance * p.unbias);
            }
        }
    }
}

// Eval mode: a = x, c = parameters (gamma, beta), out = y, state = running stats (read only).
// One invocation per element.
@compute @workgroup_size(256)
fn batch_norm_eval(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let o = linear_index(wg, nwg, li);
    if (o >= group_count() * p.n * p.c * p.s) {
        return;
    }
    let ch = (o / p.s) % p.c;
    let inv_std = inverseSqrt(state[p.var_off + ch] + p.eps);
    let x_hat = (a[p.x_off + o] - state[p.mean_off + ch]) * inv_std;
    let gb = gamma_beta(ch);
    out[p.y_off + o] = activate(gb.x * x_hat + gb.y, ACT, p.slope);
}

// dz = dy act'(y) of element e of channel ch (group shift sh): dy itself for the identity.
fn dz_of(ch: u32, e: u32, sh: u32) -> f32 {
    let g = c[element(p.dy_off + sh, ch, e)];
    if (ACT == ACT_IDENTITY) {
        return g;
    }
    return g * activation_grad(bn_out[element(p.y_off + sh, ch, e)], ACT, p.slope);
}

// (sum(dz), sum(dz x_hat)) of the channel in group shift sh, x_hat from the saved statistics.
fn backward_sums_dz(li: u32, ch: u32, sh: u32, mean: f32, inv_std: f32) -> vec2<f32> {
    var acc = vec2<f32>(0.0);
    for (var e = li; e < p.n * p.s; e += 256u) {
        let dz = dz_of(ch, e, sh);
        let x_hat = (a[element(p.x_off + sh, ch, e)] - mean) * inv_std;
        acc += vec2<f32>(dz, dz * x_hat);
    }
    return workgroup_sum(li, acc);
}

// The whole backward pass: a = x, c = dy, out = the flat gradient buffer (dgamma, dbeta),
// saved = the pass's statistics, bn_out = y, dx_out = dx. One workgroup per channel, its groups
// one after the other (dgamma, dbeta of group g > 0 added to group 0's).
@compute @workgroup_size(256)
fn batch_norm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) li: u32) {
    let ch = workgroup_index(wg, nwg);
    if (ch >= p.c) {
        return;
    }
    for (var g = 0u; g < group_count(); g++) {
        let sh = group_shift(g);
        let save = p.save_off + 3u * p.c * g;
        let mean = saved[save + ch];
        let inv_std = saved[save + p.c + ch];
        let sums = backward_sums_dz(li, ch, sh, mean, inv_std);
        if ((p.parts & PART_PARAMS) != 0u && li == 0u) {
            let add = p.accumulate != 0u || g > 0u;
            out[p.dgamma_off + ch] = select(sums.y, out[p.dgamma_off + ch] + sums.y, add);
            out[p.dbeta_off + ch] = select(sums.x, out[p.dbeta_off + ch] + sums.x, add);
        }
        if ((p.parts & PART_INPUT) != 0u) {
            let scale = saved[save + 2u * p.c + ch] * inv_std;
            let mean_dz = sums.x * p.inv_m;
            let mean_dz_xhat = sums.y * p.inv_m;
            for (var e = li; e < p.n * p.s; e += 256u) {
                let dz = dz_of(ch, e, sh);
                let x_hat = (a[element(p.x_off + sh, ch, e)] - mean) * inv_std;
                dx_out[element(p.dx_off + sh, ch, e)] = scale * ((dz - mean_dz) - x_hat * mean_dz_xhat);
            }
        }
    }
}
