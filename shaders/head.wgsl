// head.wgsl: a discriminator's one-logit linear head, its loss and the head's backward pass in
// one dispatch, where D ends in a linear layer with one output and no activation (the MLP's
// last layer). It replaces three dispatches of the old sequence: matmul_forward (n = 1) ->
// bce_logits or hinge_logits (loss.wgsl) -> matmul_backward of the head.
//
//   logit_head  For the rows i < p.m of x (m, k), the head's weight w (1, k) and bias b:
//                 z_i  = sum_k x[i,k] w[k] + b                  (b = 0 when p.no_bias)
//                 loss_i, dz_i and the statistics exactly as loss.wgsl's bce_logits
//                 (p.hinge = 0) or hinge_logits (p.hinge = 1, p.hinge_margin as there): rows
//                 [0, n_first) label_first, scale_first, the rest label_second, scale_second;
//                 stats[slot_loss] = scale_first sum_first(loss) + scale_second
//                 sum_second(loss), the means of sigmoid(z) per group at the prob slots
//                 PART_WEIGHT: dw[k] (+)= sum_i dz_i x[i,k], db (+)= sum_i dz_i (rows in order;
//                              db unless p.no_bias; += if p.accumulate)
//                 PART_INPUT:  dx[i,k] = (dz_i w[k]) act_in'(x[i,k])   (act_in: the activation
//                              that made x, from its output as activation.wgsl; identity: none),
//                              then the mask of the dropout below the head (p.drop, when its
//                              rate > 0, entry logit_head_dropout; the mask is its own adjoint)
//               z and dz are stored as the separate kernels store them, both in one binding
//               (z at p.z_off, dz at p.dz_off, apart), so that the call needs six storage
//               bindings, what lavapipe (and WebGPU's default limits' 8) allow. The CPU twin runs
//               the three old kernels' twins in order (kernels::head), so the CPU's bits are
//               those of the old sequence; the GPU sums in its own fixed order (below).
//
// Bindings (slots of a part that is off are bound to another of the call's writable buffers
// and never touched, as matmul_backward does):
//   0 uniform HeadParams
//   1 storage read   x     (m, k) row-major at p.x_off: the head's input
//   2 storage read   w     the network's (read) parameters: w (k) at p.w_off, b at p.b_off
//   3 storage rw     grads the network's gradient buffer: dw (k) at p.dw_off, db at p.db_off
//   4 storage rw     logits: z (m) at p.z_off, their gradient dz (m) at p.dz_off (not overlapping)
//   5 storage rw     dx    (m, k) at p.dx_off
//   6 storage rw     stats (4) [d_loss, g_loss, d_real, d_fake]; slots p.slot_loss,
//                    p.slot_prob_first, p.slot_prob_second (NO_SLOT = do not write)
//   7 uniform TrainState (logit_head_dropout only: .step keys the dropout mask)
//
// One workgroup of 256 invocations; dispatch exactly (1, 1, 1). Phase 1: invocation li takes the
// rows li, li + 256, ...: its logits (sum over k in order), loss and dz, and the partial sums of
// the statistics, which a tree in workgroup memory reduces in a fixed order (as loss.wgsl).
// A storage and a workgroup barrier make every dz visible to the whole workgroup. Phase 2:
// invocation li sums dw for the columns li, li + 256, ... over the rows in order; invocation 0
// sums db. Phase 3: dx element by element, strided by 256. Index guards: every loop index is
// below p.m, p.k or p.m p.k, and the host checks before recording any call that each span
// (`ir::Kernel::spans`) lies inside its buffer; naga's runtime checks stay on.
// p.groups is read by the CPU twin only (its weight sums run group by group, as two passes
// would); the GPU sums all rows at once, as matmul_backward does.

const NO_SLOT: u32 = 0xffffffffu;
const PART_WEIGHT: u32 = 1u;
const PART_INPUT: u32 = 2u;

struct HeadParams {
    m: u32,
    k: u32,
    x_off: u32,
    w_off: u32,
    b_off: u32,
    no_bias: u32,
    z_off: u32,
    dz_off: u32,
    dw_off: u32,
    db_off: u32,
    dx_off: u32,
    accumulate: u32,
    parts: u32,
    act_in: u32,
    slope_in: f32,
    hinge: u32,
    hinge_margin: u32,
    n_first: u32,
    label_first: f32,
    label_second: f32,
    scale_first: f32,
    scale_second: f32,
    slot_loss: u32,
    slot_prob_first: u32,
    slot_prob_second: u32,
    groups: u32,
    _pad0: u32,
    _pad1: u32,
    drop: DropMask,   // the dropout below the head, applied to dx as it is stored (rate 0: none)
}

@group(0) @binding(0) var<uniform> p: HeadParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> grads: array<f32>;
@group(0) @binding(4) var<storage, read_write> logits: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;
@group(0) @binding(7) var<uniform> state: TrainState;

// x: loss sum over the first group, y: over the second, z: sigmoid sum first, w: second
var<workgroup> partial: array<vec4<f32>, 256>;

// The logit of row i: the dot product in k order, then the bias (matmul_forward's order).
fn logit(i: u32) -> f32 {
    var s = 0.0;
    let row = p.x_off + i * p.k;
    for (var kk = 0u; kk < p.k; kk++) {
        s += x[row + kk] * w[p.w_off + kk];
    }
    if (p.no_bias == 0u) {
        s += w[p.b_off];
    }
    return s;
}

// (loss_i, dz_i) of logit zi with label y and scale: bce_logits' or hinge_logits' formulas.
fn loss_and_grad(zi: f32, y: f32, scale: f32) -> vec2<f32> {
    if (p.hinge == 0u) {
        let loss = max(zi, 0.0) - zi * y + log1p_small(exp(-abs(zi)));
        return vec2<f32>(loss, (sigmoid(zi) - y) * scale);
    }
    var loss = -y * zi;
    var g = -y * scale;
    if (p.hinge_margin != 0u) {
        let m = 1.0 - y * zi;
        loss = max(m, 0.0);
        g = select(0.0, g, m > 0.0);
    }
    return vec2<f32>(loss, g);
}

// Sums the invocations' partial statistics in a fixed tree order and writes the asked-for ones
// (loss.wgsl's reduce_and_write).
fn reduce_stats(li: u32, acc: vec4<f32>) {
    partial[li] = acc;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (li < stride) {
            partial[li] += partial[li + stride];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        let t = partial[0];
        let n_second = p.m - min(p.n_first, p.m);
        if (p.slot_loss != NO_SLOT) {
            stats[p.slot_loss] = p.scale_first * t.x + p.scale_second * t.y;
        }
        if (p.slot_prob_first != NO_SLOT) {
            stats[p.slot_prob_first] = t.z / f32(max(p.n_first, 1u));
        }
        if (p.slot_prob_second != NO_SLOT) {
            stats[p.slot_prob_second] = t.w / f32(max(n_second, 1u));
        }
    }
}

fn add_or_store(o: u32, v: f32) {
    grads[o] = select(v, grads[o] + v, p.accumulate != 0u);
}

@compute @workgroup_size(256)
fn logit_head(@builtin(local_invocation_index) li: u32) {
    head(li, 0u);
}

// logit_head with the mask of the dropout below the head applied to dx as it is stored
// (p.drop.rate > 0), keyed by the step (binding 7).
@compute @workgroup_size(256)
fn logit_head_dropout(@builtin(local_invocation_index) li: u32) {
    head(li, state.step);
}

// The whole call, by invocation li; `step` keys p.drop's mask (unread when its rate is 0).
fn head(li: u32, step: u32) {
    var acc = vec4<f32>(0.0);
    for (var i = li; i < p.m; i += 256u) {
        let zi = logit(i);
        let first = i < p.n_first;
        let y = select(p.label_second, p.label_first, first);
        let scale = select(p.scale_second, p.scale_first, first);
        let lg = loss_and_grad(zi, y, scale);
        logits[p.z_off + i] = zi;
        logits[p.dz_off + i] = lg.y;
        let s = sigmoid(zi);
        if (first) {
            acc += vec4<f32>(lg.x, 0.0, s, 0.0);
        } else {
            acc += vec4<f32>(0.0, lg.x, 0.0, s);
        }
    }
    // Every dz written above is visible to every invocation after this barrier.
    storageBarrier();
    reduce_stats(li, acc);

    if ((p.parts & PART_WEIGHT) != 0u) {
        for (var kk = li; kk < p.k; kk += 256u) {
            var s = 0.0;
            for (var i = 0u; i < p.m; i++) {
                s += logits[p.dz_off + i] * x[p.x_off + i * p.k + kk];
            }
            add_or_store(p.dw_off + kk, s);
        }
        if (li == 0u && p.no_bias == 0u) {
            var s = 0.0;
            for (var i = 0u; i < p.m; i++) {
                s += logits[p.dz_off + i];
            }
            add_or_store(p.db_off, s);
        }
    }
    if ((p.parts & PART_INPUT) != 0u) {
        let len = p.m * p.k;
        for (var e = li; e < len; e += 256u) {
            let i = e / p.k;
            var v = logits[p.dz_off + i] * w[p.w_off + e - i * p.k];
            if (p.act_in != ACT_IDENTITY) {
                v *= activation_grad(x[p.x_off + e], p.act_in, p.slope_in);
            }
            dx[p.dx_off + e] = drop_masked(p.drop, step, i, e - i * p.k, p.k, v);
        }
    }
}
