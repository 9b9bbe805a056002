// xent.wgsl: softmax cross-entropy on logits, loss and gradient in one fused pass (the digit
// classifier's loss; `shadergan classifier train`).
//
//   softmax_xent  For logits z (rows, classes) and integer labels y (rows):
//                   lse_r  = m_r + log(sum_j exp(z_rj - m_r)),  m_r = max_j z_rj  (never overflows)
//                   loss_r = lse_r - z_r,y_r
//                   dz_rj  = (exp(z_rj - lse_r) - [j == y_r]) * scale
//                 loss = scale * sum_r loss_r (scale = 1 / rows: the mean), and the accuracy:
//                 the share of rows whose first largest logit is at the label.
//
// Bindings:
//   0 uniform  XentParams
//   1 storage read  z      (rows, classes) row-major logits (row = sample), at p.z_off
//   2 storage read  labels (rows) class index of each row stored as f32 (0.0, 1.0, ...), at
//                   p.label_off; the host checks they are integers below `classes`
//   3 storage rw    dz     (rows, classes) row-major gradient of the loss, at p.dz_off
//   4 storage rw    stats  writes slots p.slot_loss and p.slot_acc (NO_SLOT = do not write)
//
// One workgroup of 256 invocations: each handles rows li, li + 256, ..., then a tree reduction
// in workgroup memory. Dispatch exactly (1, 1, 1).

const NO_SLOT: u32 = 0xffffffffu;

struct XentParams {
    rows: u32,
    classes: u32,
    z_off: u32,
    label_off: u32,
    dz_off: u32,
    scale: f32,
    slot_loss: u32,
    slot_acc: u32,
}

@group(0) @binding(0) var<uniform> p: XentParams;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read_write> dz: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;

// x: loss sum, y: correct rows
var<workgroup> partial: array<vec2<f32>, 256>;

@compute @workgroup_size(256)
fn softmax_xent(@builtin(local_invocation_index) li: u32) {
    var acc = vec2<f32>(0.0);
    for (var r = li; r < p.rows; r += 256u) {
        let base = p.z_off + r * p.classes;
        let y = u32(labels[p.label_off + r]);
        var m = z[base];
        var arg = 0u;
        for (var j = 1u; j < p.classes; j++) {
            let v = z[base + j];
            if (v > m) {
                m = v;
                arg = j;
            }
        }
        var sum = 0.0;
        for (var j = 0u; j < p.classes; j++) {
            sum += exp(z[base + j] - m);
        }
        let lse = m + log(sum);
        for (var j = 0u; j < p.classes; j++) {
            let prob = exp(z[base + j] - lse);
            dz[p.dz_off + r * p.classes + j] = (prob - select(0.0, 1.0, j == y)) * p.scale;
        }
        acc += vec2<f32>(lse - z[base + y], select(0.0, 1.0, arg == y));
    }
    partial[li] = acc;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (li < stride) {
            partial[li] += partial[li + stride];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        if (p.slot_loss != NO_SLOT) {
            stats[p.slot_loss] = p.scale * partial[0].x;
        }
        if (p.slot_acc != NO_SLOT) {
            stats[p.slot_acc] = partial[0].y / f32(max(p.rows, 1u));
        }
    }
}
