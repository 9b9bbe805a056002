// loss.wgsl: D's and G's losses on logits, loss and gradient in one fused pass (`--loss`).
//
//   bce_logits  For logits z (rows) and labels y:
//                 loss_i = max(z_i, 0) - z_i y_i + log(1 + e^-|z_i|)     (never log(sigmoid))
//                 dz_i   = (sigmoid(z_i) - y_i) * scale_i
//               Rows [0, n_first) get label label_first and scale scale_first, rows
//               [n_first, rows) label_second and scale_second. The scales are 1/count, so
//               loss = scale_first * sum_first(loss_i) + scale_second * sum_second(loss_i) is
//               the D loss (mean BCE on real + mean BCE on fake) or the G loss (mean BCE, label 1).
//               It also writes the means of sigmoid(z) over each group (D(x) and D(G(z))).
//
//   hinge_logits  The hinge loss (SNGAN, BigGAN): the groups' labels are signs y = +1 (real)
//               or -1 (fake). With p.hinge_margin = 1 (D's loss):
//                 loss_i = max(0, 1 - y_i z_i)
//                 dz_i   = -y_i * scale_i where 1 - y_i z_i > 0, else 0   (relu'(0) = 0, as PyTorch)
//               With p.hinge_margin = 0 (G's loss, -D(G(z)) with y = +1):
//                 loss_i = -y_i z_i,   dz_i = -y_i * scale_i
//               The loss sum and the sigmoid means are written as for bce_logits (D's logits are
//               not probabilities under the hinge loss; the means of sigmoid(z) are still logged
//               so that metrics.csv keeps its columns).
//
// Bindings:
//   0 uniform LossParams
//   1 storage read   z     (rows) logits, at p.z_off
//   2 storage rw     dz    (rows) gradient of the loss with respect to z, at p.dz_off
//   3 storage rw     stats (4) [d_loss, g_loss, d_real, d_fake]; writes slots p.slot_loss,
//                    p.slot_prob_first, p.slot_prob_second (NO_SLOT = do not write)
//
// One workgroup of 256 invocations: each sums a strided share of the rows, then a tree reduction
// in workgroup memory (the CPU twins sum in the same order). Dispatch exactly (1, 1, 1). Every
// index is below p.rows, checked by the loop; the host checks the spans against the buffers.

const NO_SLOT: u32 = 0xffffffffu;

struct LossParams {
    rows: u32,
    n_first: u32,
    label_first: f32,
    label_second: f32,
    scale_first: f32,
    scale_second: f32,
    z_off: u32,
    dz_off: u32,
    slot_loss: u32,
    slot_prob_first: u32,
    slot_prob_second: u32,
    hinge_margin: u32,
}

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> dz: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;

// x: loss sum over first group, y: loss sum over second, z: sigmoid sum first, w: sigmoid sum second
var<workgroup> partial: array<vec4<f32>, 256>;

@compute @workgroup_size(256)
fn bce_logits(@builtin(local_invocation_index) li: u32) {
    var acc = vec4<f32>(0.0);
    for (var i = li; i < p.rows; i += 256u) {
        let zi = z[p.z_off + i];
        let first = i < p.n_first;
        let y = select(p.label_second, p.label_first, first);
        let scale = select(p.scale_second, p.scale_first, first);
        let s = sigmoid(zi);
        let loss = max(zi, 0.0) - zi * y + log1p_small(exp(-abs(zi)));
        dz[p.dz_off + i] = (s - y) * scale;
        if (first) {
            acc += vec4<f32>(loss, 0.0, s, 0.0);
        } else {
            acc += vec4<f32>(0.0, loss, 0.0, s);
        }
    }
    reduce_and_write(li, acc);
}

// Sums the invocations' partial sums in a fixed tree order and writes the asked-for statistics.
fn reduce_and_write(li: u32, acc: vec4<f32>) {
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
        let n_second = p.rows - min(p.n_first, p.rows);
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

@compute @workgroup_size(256)
fn hinge_logits(@builtin(local_invocation_index) li: u32) {
    var acc = vec4<f32>(0.0);
    for (var i = li; i < p.rows; i += 256u) {
        let zi = z[p.z_off + i];
        let first = i < p.n_first;
        let y = select(p.label_second, p.label_first, first);
        let scale = select(p.scale_second, p.scale_first, first);
        let s = sigmoid(zi);
        var loss = -y * zi;
        var g = -y * scale;
        if (p.hinge_margin != 0u) {
            let m = 1.0 - y * zi;
            loss = max(m, 0.0);
            g = select(0.0, g, m > 0.0);
        }
        dz[p.dz_off + i] = g;
        if (first) {
            acc += vec4<f32>(loss, 0.0, s, 0.0);
        } else {
            acc += vec4<f32>(0.0, loss, 0.0, s);
        }
    }
    reduce_and_write(li, acc);
}
