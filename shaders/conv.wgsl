// conv.wgsl: 2-D convolution (and, by role swaps, 2-D transposed convolution), forward and backward.
//
// Layouts (NCHW, row-major, like PyTorch):
//   x  : (n, c_in, h_in, w_in)       element (b, ci, ih, iw) at x_off + ((b c_in + ci) h_in + ih) w_in + iw
//   w  : (c_out, c_in, kh, kw)       like torch.nn.Conv2d, inside a network's flat parameter buffer
//   b  : (c_out)                     bias, in the same flat buffer (per c_in for conv2d_backward_input)
//   y  : (n, c_out, h_out, w_out)    h_out = (h_in + 2 pad - kh) / stride + 1 (same for w)
// The offsets are named by shape, not by role: x_off locates the tensor of x's shape (x or dx),
// y_off the tensor of y's shape (y or dy), w_off w or dw, bias_off b or db; each in the binding
// the entry point reads or writes it through (listed below).
//
// Entry points, for the ordinary conv2d y = conv(x, w) + b (s = stride, q = pad):
//   conv2d_forward          y[b,co,oh,ow]  = (has_bias ? bias[co] : 0) +
//                                            sum_{ci,i,j} x[b,ci,oh s-q+i,ow s-q+j] w[co,ci,i,j]
//                           (taps outside the input are padding: 0)
//   conv2d_backward_input   dx[b,ci,ih,iw] = (has_bias ? bias[ci] : 0) +
//                                            sum_{co,i,j} dy[b,co,oh,ow] w[co,ci,i,j]
//                           over the taps with ih+q-i = oh s, 0 <= oh < h_out (same for w)
//   conv2d_backward_weight  dw[co,ci,i,j]  = sum_{b,oh,ow} dy[b,co,oh,ow] x[b,ci,oh s-q+i,ow s-q+j]
//   conv2d_backward_bias    db[ch]         = sum_{b,h,w} g[b,ch,h,w]
//                           bias_side 0: g = dy, ch < c_out, (h, w) < (h_out, w_out), at y_off
//                           bias_side 1: g = dx-shaped, ch < c_in, (h, w) < (h_in, w_in), at x_off
// Every entry writes out = v, or out += v when p.accumulate != 0 (gradients summed over uses).
// Sums run in a fixed order, the same as the CPU twins in conv_kernels.rs: forward ci, i, j;
// backward_input co, i, j; backward_weight b, oh, ow; the bias sum as below.
//
// conv_transpose2d (torch.nn.ConvTranspose2d(C_in_t, C_out_t, k, s, q), weight (C_in_t, C_out_t,
// kh, kw), no output_padding) is conv2d's adjoint, so it needs no kernels of its own. Fill the
// params as a conv2d with c_out = C_in_t, c_in = C_out_t, h_out = the transpose's input size
// and h_in = its output size (H_in_t - 1) s - 2q + kh (ConvParams::transpose_* builds them):
//   transpose forward        = conv2d_backward_input  (dy := the transpose's input X_t, at y_off;
//                              dx := its output Y_t, at x_off; has_bias: its bias, per C_out_t)
//   transpose input grad     = conv2d_forward, has_bias 0 (x := dY_t at x_off, y := dX_t at y_off)
//   transpose weight grad    = conv2d_backward_weight (dy := X_t at y_off, x := dY_t at x_off)
//   transpose bias grad      = conv2d_backward_bias, bias_side 1 (g := dY_t at x_off)
//
// Bindings (one layout for all entry points, as matmul.wgsl):
//   0 uniform ConvParams
//   1 storage read   a: forward x (x_off); backward_input and backward_weight dy (y_off);
//                       backward_bias g (y_off or x_off, by bias_side)
//   2 storage read   c: forward and backward_input w (w_off) and bias (bias_off, read only when
//                       has_bias); backward_weight x (x_off); unused by backward_bias
//   3 storage rw     out: forward y (y_off); backward_input dx (x_off); backward_weight dw
//                       (w_off); backward_bias db (bias_off)
//   4 storage read   aux (forward, backward_input): GRAD_ACT's argument at aux_off, in the
//                       output's layout (the layer's input x, whose gradient the output is); the
//                       a buffer again when GRAD_ACT is the identity (never read then)
//
// Epilogue (forward, backward_input): the output is act(v) with ACT, the layer's activation
// (a conv2d's forward, a conv_transpose2d's forward), or v act'(aux) with GRAD_ACT, the
// activation of the layer before (an input gradient that the layer before takes as its dz):
// the activation layer's kernels fused, with the same arithmetic.
//
// Dispatch: conv2d_forward, conv2d_backward_input, conv2d_backward_weight run one invocation per
// output element (a direct "gather": no atomics, every output written by one invocation),
// workgroups of 256, as a 1-D problem of n c_out h_out w_out, n c_in h_in w_in and
// c_out c_in kh kw invocations, split into an (x, y) grid of at most 65,535 per dimension
// (linear_index in common.wgsl). conv2d_backward_bias runs one workgroup of 256 per channel, the
// channel index being the workgroup's linear index in the same kind of grid. Invocations past
// the end return before writing.
//
// Indices (the family runs without naga's runtime checks): each invocation returns past its
// output count (o < n c_out h_out w_out, n c_in h_in w_in, c_out c_in kh kw; a workgroup past
// the channels for the bias sum), so its output element and its (b, ci, co, i, j) lie inside
// their tensors; every input tap is read only after its padded row and column are checked to
// lie inside the input (ihp - pad < h_in, iwp - pad < w_in, oh < h_out, ow < w_out); the bias is
// read at a channel below its count; aux at aux_off + o. The host checks before any call is
// recorded that each tensor's span lies inside its buffer (the launchers' spans).
//
// The bias sum, in the order the twin follows: the channel's elements e = b S + s (S = h w, the
// element at off + (b C + ch) S + s) are split over 256 lanes; lane l adds e = l, l+256, l+512...
// in order, starting from 0; then a tree: for stride 128, 64, ..., 1, partial[l] += partial[l +
// stride] for l < stride. db = partial[0].

struct ConvParams {
    n: u32,
    c_in: u32,
    h_in: u32,
    w_in: u32,
    c_out: u32,
    h_out: u32,
    w_out: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    x_off: u32,       // the (n, c_in, h_in, w_in) tensor: x or dx
    w_off: u32,       // the (c_out, c_in, kh, kw) tensor: w or dw
    y_off: u32,       // the (n, c_out, h_out, w_out) tensor: y or dy
    bias_off: u32,    // bias (forward: c_out values; backward_input: c_in values) or db
    has_bias: u32,    // forward, backward_input: add the bias at bias_off in binding 2
    accumulate: u32,  // out += v instead of out = v
    bias_side: u32,   // backward_bias: 0 sums a y-shaped g (c_out channels), 1 an x-shaped one
    act: u32,        // forward, backward_input: the activation ACT applied to the output (code)
    slope: f32,      // its slope
    grad_act: u32,   // forward, backward_input: GRAD_ACT, whose derivative at aux scales the output
    grad_slope: f32, // its slope
    aux_off: u32,    // aux (binding 4): GRAD_ACT's argument, in the output's layout
    groups: u32,     // the CPU twins sum weight and bias gradients per group of n / groups images
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;

// The output activation of conv2d_forward* and conv2d_backward_input* (an Activation code: a
// layer's own activation, fused), and the activation whose derivative at aux scales their
// output instead (the layer before's, whose dz the input gradient then is); one pipeline per
// pair, the identity for neither.
override ACT: u32 = 0u;
override GRAD_ACT: u32 = 0u;

var<workgroup> partial: array<f32, 256>;

// out[idx] = v, or += v when accumulating.
fn store(idx: u32, v: f32) {
    out[idx] = select(v, out[idx] + v, p.accumulate != 0u);
}

// The epilogue of the forward and the input gradient: output element `rel` of the tensor at
// out[base..]: act(v), or v act'(aux[aux_off + rel]), then stored.
fn store_out(base: u32, rel: u32, v: f32) {
    var r = activate(v, ACT, p.slope);
    if (GRAD_ACT != ACT_IDENTITY) {
        r *= activation_grad(aux[p.aux_off + rel], GRAD_ACT, p.grad_slope);
    }
    store(base + rel, r);
}

// Index of this workgroup in a 1-D run of workgroups dispatched as a 2-D grid.
fn workgroup_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}

// y = conv(x, w) + b: a = x, c = w and b, out = y. One invocation per y element.
@compute @workgroup_size(256)
fn conv2d_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let o = linear_index(wg, nwg, li);
    if (o >= p.n * p.c_out * p.h_out * p.w_out) {
        return;
    }
    let ow = o % p.w_out;
    let oh = (o / p.w_out) % p.h_out;
    let co = (o / (p.w_out * p.h_out)) % p.c_out;
    let b = o / (p.w_out * p.h_out * p.c_out);
    var acc = 0.0;
    for (var ci = 0u; ci < p.c_in; ci++) {
        let x_plane = p.x_off + (b * p.c_in + ci) * p.h_in * p.w_in;
        let w_base = p.w_off + (co * p.c_in + ci) * p.kh * p.kw;
        for (var i = 0u; i < p.kh; i++) {
            // Padded row oh s + i is input row oh s + i - pad when that lies in [0, h_in).
            let ihp = oh * p.stride + i;
            if (ihp < p.pad || ihp >= p.h_in + p.pad) {
                continue;
            }
            let x_row = x_plane + (ihp - p.pad) * p.w_in;
            for (var j = 0u; j < p.kw; j++) {
                let iwp = ow * p.stride + j;
                if (iwp < p.pad || iwp >= p.w_in + p.pad) {
                    continue;
                }
                acc += a[x_row + iwp - p.pad] * c[w_base + i * p.kw + j];
            }
        }
    }
    if (p.has_bias != 0u) {
        acc += c[p.bias_off + co];
    }
    store_out(p.y_off, o, acc);
}

// dx = conv's adjoint applied to dy (+ a per-c_in bias): a = dy, c = w and b, out = dx.
// One invocation per dx element; it gathers the taps (oh, i) with oh s + i = ih + pad.
@compute @workgroup_size(256)
fn conv2d_backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) li: u32) {
    let o = linear_index(wg, nwg, li);
    if (o >= p.n * p.c_in * p.h_in * p.w_in) {
        return;
    }
    let iw = o % p.w_in;
    let ih = (o / p.w_in) % p.h_in;
    let ci = (o / (p.w_in * p.h_in)) % p.c_in;
    let b = o / (p.w_in * p.h_in * p.c_in);
    let ihp = ih + p.pad;
    let iwp = iw + p.pad;
    var acc = 0.0;
    for (var co = 0u; co < p.c_out; co++) {
        let dy_plane = p.y_off + (b * p.c_out + co) * p.h_out * p.w_out;
        let w_base = p.w_off + (co * p.c_in + ci) * p.kh * p.kw;
        // Only kernel rows i = ihp (mod stride), i <= ihp, reach this row from an output row.
        for (var i = ihp % p.stride; i < p.kh && i <= ihp; i += p.stride) {
            let oh = (ihp - i) / p.stride;
            if (oh >= p.h_out) {
                continue;
            }
            for (var j = iwp % p.stride; j < p.kw && j <= iwp; j += p.stride) {
                let ow = (iwp - j) / p.stride;
                if (ow >= p.w_out) {
                    continue;
                }
                acc += a[dy_plane + oh * p.w_out + ow] * c[w_base + i * p.kw + j];
            }
        }
    }
    if (p.has_bias != 0u) {
        acc += c[p.bias_off + ci];
    }
    store_out(p.x_off, o, acc);
}

// dw = sum over the batch and output positions of dy times the input tap: a = dy, c = x,
// out = dw. One invocation per dw element, summing b, then oh, then ow.
@compute @workgroup_size(256)
fn conv2d_backward_weight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) li: u32) {
    let o = linear_index(wg, nwg, li);
    if (o >= p.c_out * p.c_in * p.kh * p.kw) {
        return;
    }
    let j = o % p.kw;
    let i = (o / p.kw) % p.kh;
    let ci = (o / (p.kw * p.kh)) % p.c_in;
    let co = o / (p.kw * p.kh * p.c_in);
    var acc = 0.0;
    for (var b = 0u; b < p.n; b++) {
        let dy_plane = p.y_off + (b * p.c_out + co) * p.h_out * p.w_out;
        let x_plane = p.x_off + (b * p.c_in + ci) * p.h_in * p.w_in;
        for (var oh = 0u; oh < p.h_out; oh++) {
            let ihp = oh * p.stride + i;
            if (ihp < p.pad || ihp >= p.h_in + p.pad) {
                continue;
            }
            let x_row = x_plane + (ihp - p.pad) * p.w_in;
            for (var ow = 0u; ow < p.w_out; ow++) {
                let iwp = ow * p.stride + j;
                if (iwp < p.pad || iwp >= p.w_in + p.pad) {
                    continue;
                }
                acc += a[dy_plane + oh * p.w_out + ow] * c[x_row + iwp - p.pad];
            }
        }
    }
    store(p.w_off + o, acc);
}

// db[ch] = sum of g over batch and space: a = g, out = db. One workgroup of 256 per channel,
// 256 strided partial sums then a tree (the order in the header).
@compute @workgroup_size(256)
fn conv2d_backward_bias(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) li: u32) {
    let ch = workgroup_index(wg, nwg);
    let input_side = p.bias_side != 0u;
    let channels = select(p.c_out, p.c_in, input_side);
    // ch is the same for the whole workgroup, so this return keeps the barriers uniform.
    if (ch >= channels) {
        return;
    }
    let plane = select(p.h_out * p.w_out, p.h_in * p.w_in, input_side);
    let base = select(p.y_off, p.x_off, input_side) + ch * plane;
    var acc = 0.0;
    for (var e = li; e < p.n * plane; e += 256u) {
        acc += a[base + (e / plane) * channels * plane + e % plane];
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
        store(p.bias_off + ch, partial[0]);
    }
}
