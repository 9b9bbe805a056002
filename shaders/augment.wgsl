// augment.wgsl: DiffAugment (Zhao et al. 2020, mit-han-lab/data-efficient-gans,
// DiffAugment_pytorch.py), the differentiable augmentation D sees on real and fake images alike
// (`--augment color,translation,cutout`). Per image, in this order (the policy's bits say which
// run; an image is channel planes, C x H x W):
//   colour       a = x + (r0 - 1/2)                    brightness
//                s = (a - mean_c(a)) (2 r1) + mean_c(a)  saturation (mean over the pixel's channels)
//                y = (s - M) (r2 + 1/2) + M             contrast (M: mean of s over the image)
//   translation  y[c, i, j] = y[c, i + tx, j + ty], 0 where that lies outside the image;
//                tx, ty uniform integers in [-sh, sh], [-sw, sw] (sh = int(H / 8 + 1/2))
//   cutout       y[c, i, j] = 0 for lo_i <= i < lo_i + ch and lo_j <= j < lo_j + cw, where
//                lo_i = oi - ch / 2, oi uniform in [0, H + 1 - ch % 2) (ch = int(H / 2 + 1/2));
//                the square is cut off at the image's edges, as the reference's clamp does.
// The draws r0..r2, tx, ty, oi, oj of image `img` come from two Philox blocks,
// philox4x32((2 img + b, pass, step, PURPOSE_AUGMENT), seed) for b = 0, 1: fresh each training
// step (the step counter in TrainState) and each pass through D (the pass number), so both
// backends draw the same, and the backward pass redraws what its forward pass drew.
// Integers are a word modulo the range (bias below 1e-8 for these ranges).
//
//   augment_forward   out = aug(x)      (flags 0: a copy, D in eval mode)
//   augment_backward  out = aug^T(dy):  g1 = dy moved back by the translation, 0 where it was cut
//                     out or came from outside; with colour, with G = mean of g1 over the image,
//                     g2 = k g1 + (1 - k) G, dx = (2 r1) g2 + (1 - 2 r1) mean_c(g2)
//                     (brightness passes the gradient through). Linear in dy: it needs no saved
//                     activations.
//
// Bindings:
//   0 uniform AugmentParams p
//   1 uniform TrainState state (the step counter)
//   2 storage read  x    (images, C, H, W) at p.x_off: the images, or dy for the backward pass
//   3 storage rw    out  (images, C, H, W) at p.out_off: the augmented images, or dx
//
// One workgroup of 256 invocations per image (img = wg.y nwg.x + wg.x; workgroups past
// p.images return at once, uniformly); each invocation takes pixels strided by 256, then a
// fixed-order tree sums the image's total (contrast), in the order the CPU twin mirrors. Every
// index is inside its image: source pixels are checked against H and W before they are read.

const COLOR: u32 = 1u;
const TRANSLATION: u32 = 2u;
const CUTOUT: u32 = 4u;
const PURPOSE_AUGMENT: u32 = 6u;
const INV_2_24: f32 = 5.9604645e-8;

struct AugmentParams {
    images: u32,
    channels: u32,
    height: u32,
    width: u32,
    flags: u32,
    pass_id: u32,
    seed_lo: u32,
    seed_hi: u32,
    x_off: u32,
    out_off: u32,
    shift_h: u32,
    shift_w: u32,
    cut_h: u32,
    cut_w: u32,
    inv_c: f32,
    inv_n: f32,
}

@group(0) @binding(0) var<uniform> p: AugmentParams;
@group(0) @binding(1) var<uniform> state: TrainState;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 256>;

struct Draws {
    bright: f32,
    sat: f32,
    contrast: f32,
    tx: i32,
    ty: i32,
    cut_i: i32,
    cut_j: i32,
}

fn unit(w: u32) -> f32 {
    return f32(w >> 8u) * INV_2_24;
}

fn draws(img: u32) -> Draws {
    let key = vec2<u32>(p.seed_lo, p.seed_hi);
    let a = philox4x32(vec4<u32>(2u * img, p.pass_id, state.step, PURPOSE_AUGMENT), key);
    let b = philox4x32(vec4<u32>(2u * img + 1u, p.pass_id, state.step, PURPOSE_AUGMENT), key);
    var d: Draws;
    d.bright = unit(a.x) - 0.5;
    d.sat = unit(a.y) * 2.0;
    d.contrast = unit(a.z) + 0.5;
    d.tx = 0;
    d.ty = 0;
    if ((p.flags & TRANSLATION) != 0u) {
        d.tx = i32(a.w % (2u * p.shift_h + 1u)) - i32(p.shift_h);
        d.ty = i32(b.x % (2u * p.shift_w + 1u)) - i32(p.shift_w);
    }
    d.cut_i = i32(b.y % (p.height + 1u - p.cut_h % 2u)) - i32(p.cut_h / 2u);
    d.cut_j = i32(b.z % (p.width + 1u - p.cut_w % 2u)) - i32(p.cut_w / 2u);
    return d;
}

// Whether output pixel (i, j) is kept: not cut out, and its source (i + tx, j + ty) inside.
fn kept(d: Draws, i: i32, j: i32) -> bool {
    if ((p.flags & CUTOUT) != 0u) {
        let in_i = i >= d.cut_i && i < d.cut_i + i32(p.cut_h);
        let in_j = j >= d.cut_j && j < d.cut_j + i32(p.cut_w);
        if (in_i && in_j) {
            return false;
        }
    }
    let si = i + d.tx;
    let sj = j + d.ty;
    return si >= 0 && si < i32(p.height) && sj >= 0 && sj < i32(p.width);
}

// The fixed-order tree over the 256 partial sums; every invocation returns the total.
fn tree_sum(li: u32, v: f32) -> f32 {
    partial[li] = v;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (li < stride) {
            partial[li] += partial[li + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

// The mean of a + bright over the channels of pixel q of the image at `base`.
fn pixel_mean(base: u32, q: u32, hw: u32, bright: f32) -> f32 {
    var t = 0.0;
    for (var c = 0u; c < p.channels; c++) {
        t += x[base + c * hw + q] + bright;
    }
    return t * p.inv_c;
}

@compute @workgroup_size(256)
fn augment_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let img = wg.y * nwg.x + wg.x;
    if (img >= p.images) {
        return;
    }
    let hw = p.height * p.width;
    let base = p.x_off + img * p.channels * hw;
    let obase = p.out_off + img * p.channels * hw;
    let d = draws(img);
    let color = (p.flags & COLOR) != 0u;
    // The contrast's mean M of the saturated image, over every channel and pixel.
    var acc = 0.0;
    if (color) {
        for (var q = li; q < hw; q += 256u) {
            let m = pixel_mean(base, q, hw, d.bright);
            var t = 0.0;
            for (var c = 0u; c < p.channels; c++) {
                t += (x[base + c * hw + q] + d.bright - m) * d.sat + m;
            }
            acc += t;
        }
    }
    let big_m = tree_sum(li, acc) * p.inv_n;
    for (var q = li; q < hw; q += 256u) {
        let i = i32(q / p.width);
        let j = i32(q % p.width);
        if (!kept(d, i, j)) {
            for (var c = 0u; c < p.channels; c++) {
                out[obase + c * hw + q] = 0.0;
            }
            continue;
        }
        let src = u32(i + d.tx) * p.width + u32(j + d.ty);
        var m = 0.0;
        if (color) {
            m = pixel_mean(base, src, hw, d.bright);
        }
        for (var c = 0u; c < p.channels; c++) {
            var v = x[base + c * hw + src];
            if (color) {
                let s = (v + d.bright - m) * d.sat + m;
                v = (s - big_m) * d.contrast + big_m;
            }
            out[obase + c * hw + q] = v;
        }
    }
}

// g1 at source pixel (si, sj), channel c: dy at the output pixel it moved to, if that was kept.
fn moved_back(d: Draws, base: u32, c: u32, si: i32, sj: i32, hw: u32) -> f32 {
    let i = si - d.tx;
    let j = sj - d.ty;
    if (i < 0 || i >= i32(p.height) || j < 0 || j >= i32(p.width) || !kept(d, i, j)) {
        return 0.0;
    }
    return x[base + c * hw + u32(i) * p.width + u32(j)];
}

@compute @workgroup_size(256)
fn augment_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let img = wg.y * nwg.x + wg.x;
    if (img >= p.images) {
        return;
    }
    let hw = p.height * p.width;
    let base = p.x_off + img * p.channels * hw;
    let obase = p.out_off + img * p.channels * hw;
    let d = draws(img);
    let color = (p.flags & COLOR) != 0u;
    var acc = 0.0;
    if (color) {
        for (var q = li; q < hw; q += 256u) {
            let si = i32(q / p.width);
            let sj = i32(q % p.width);
            var t = 0.0;
            for (var c = 0u; c < p.channels; c++) {
                t += moved_back(d, base, c, si, sj, hw);
            }
            acc += t;
        }
    }
    let big_g = tree_sum(li, acc) * p.inv_n;
    for (var q = li; q < hw; q += 256u) {
        let si = i32(q / p.width);
        let sj = i32(q % p.width);
        if (!color) {
            for (var c = 0u; c < p.channels; c++) {
                out[obase + c * hw + q] = moved_back(d, base, c, si, sj, hw);
            }
            continue;
        }
        // The channels' mean of g2 first, then each channel's gradient.
        var t = 0.0;
        for (var c = 0u; c < p.channels; c++) {
            t += moved_back(d, base, c, si, sj, hw) * d.contrast + (1.0 - d.contrast) * big_g;
        }
        let g2_mean = t * p.inv_c;
        for (var c = 0u; c < p.channels; c++) {
            let g2 = moved_back(d, base, c, si, sj, hw) * d.contrast + (1.0 - d.contrast) * big_g;
            out[obase + c * hw + q] = g2 * d.sat + (1.0 - d.sat) * g2_mean;
        }
    }
}
