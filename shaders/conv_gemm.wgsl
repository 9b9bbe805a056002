// conv_gemm.wgsl: conv2d's forward, input gradient and weight gradient as tiled implicit GEMMs
// (the im2col matrix is never stored: each element is computed from x or dy as it is loaded).
// Same math, params, layouts and bindings as conv.wgsl's direct kernels; src/kernels/conv picks
// one of the two per call (conv/mod.rs: the selection rule and the measurements behind it).
//
// Layouts (NCHW, as conv.wgsl): x (n, c_in, h_in, w_in) at x_off, w (c_out, c_in, kh, kw) at
// w_off, y (n, c_out, h_out, w_out) at y_off; s = stride, q = pad, K = c_in kh kw,
// P = h_out w_out, k = (ci kh + i) kw + j (w's own order), col = b P + oh w_out + ow.
//
// Entry points (conv_transpose2d runs on them by the role swaps of conv.wgsl's header):
//   conv2d_forward_tiled          Y (c_out, n P) = W (c_out, K) cols (K, n P) (+ bias[co])
//                                 cols[k, col] = x[b, ci, oh s-q+i, ow s-q+j] (0 in padding)
//   conv2d_backward_input_tiled   dx[b,ci,ih,iw] = (has_bias ? bias[ci] : 0) +
//                                   sum over co, i, j with ih+q-i = oh s, 0 <= oh < h_out (same
//                                   for w) of dy[b,co,oh,ow] w[co,ci,i,j]
//                                 a GEMM dX (c_in, positions) = W^T (c_in, c_out kh kw) dYcols,
//                                 split by the output's parity class (ih mod s, iw mod s): inside
//                                 a class every position takes the same taps i = (ih+q) mod s,
//                                 + s, ... (2 x 2 of 4 x 4 at DCGAN's (4, 2, 1)), so its inner
//                                 dimension is c_out ceil(kh/s) ceil(kw/s), not c_out kh kw
//   conv2d_backward_weight_tiled  dW (c_out, K) (+)= dY (c_out, n P) cols^T (n P, K)
// Every entry writes out = v, or out += v when p.accumulate != 0.
//
// Bindings (conv.wgsl's layout):
//   0 uniform ConvParams
//   1 storage read   a: forward x (x_off); backward_input and backward_weight dy (y_off)
//   2 storage read   c: forward and backward_input w (w_off) and bias (bias_off, read only when
//                       has_bias); backward_weight x (x_off)
//   3 storage rw     out: forward y (y_off); backward_input dx (x_off); backward_weight dw (w_off)
//   4 storage read   aux (forward, backward_input): GRAD_ACT's argument (conv.wgsl's epilogue)
//
// Tiling. Each invocation owns a 4x4 block of outputs (4 GEMM rows x 4 GEMM columns) in four
// vec4 accumulators, unrolled by hand as in matmul.wgsl (loops over private arrays spill to
// memory on lavapipe). A workgroup of 256 invocations (forward: rows = output channels, columns
// = the n P output positions; backward_input: rows = input channels, columns = the positions of
// one parity class) is split into g row groups of 256 / g invocations, g the least power of two
// with 4 g >= rows, at most 16 (row_groups): a tile of 4 g rows x 4 (256 / g) columns, so 64 x 64
// from 64 channels up and 4 x 1024 at one to four channels (no invocation computes a row that
// does not exist). Invocation l takes rows 4 (l / span) + 0..3 and columns l mod span + r span,
// r = 0..3, span = 256 / g: neighbouring invocations touch neighbouring columns.
// backward_weight's workgroup is 64 x 4: 64 owners of 4x4 blocks (rows = output channels,
// columns = taps k; g at most 8: 32 x 32 tiles from 32 channels up, 4 x 256 at one to four)
// times 4 slices of the long inner dimension n P, summed at the end in workgroup memory. No
// other workgroup memory: the operands are read straight from the storage buffers (conv/mod.rs
// has the measurements).
//
// Dispatch: the tiles of a call are numbered t = wg.y nwg.x + wg.x (at most 65,535 workgroups
// per dimension: the host splits them into an (x, y) grid as groups_1d does); workgroups past
// the last tile return at once, and so do invocations whose block lies wholly past the matrix's
// edge, except in backward_weight, whose idle owners sum nothing and still meet its barrier
// (every return before a barrier is uniform over the workgroup).
//   forward          tiles = ceil(c_out / 4g) ceil(n P / (4 span)); t = row tile * column tiles
//                    + column tile
//   backward_input   tiles = min(s, h_in) min(s, w_in) ceil(c_in / 4g) ceil(n U V / (4 span)),
//                    U = ceil(h_in / s), V = ceil(w_in / s) (the classes that hold a position);
//                    t = (class row tiles + row tile) column tiles + column tile, class =
//                    (ih mod s) min(s, w_in) + (iw mod s); column u = b U V + uh V + uw is the
//                    position (ih, iw) = (ih mod s + s uh, iw mod s + s uw), dropped when outside;
//                    each block loops only over the taps that reach a dy element from one of
//                    its columns (at a 1x1 -> 4x4 layer one of the 16)
//   backward_weight  tiles = ceil(c_out / 4g) ceil(K / (4 span)), span = 64 / g
//
// Sum order (fixed, the same whatever the scheduling; no atomics):
//   forward          k = 0, 1, ..., K-1 (ci, i, j), then + bias: the twin's and conv.wgsl's order
//   backward_input   co ascending, then the class's taps i, then j ascending, then + bias: the
//                    twin's order (conv.wgsl takes the same taps in the same order)
//   backward_weight  the columns n P split into 4 chunks of C = ceil(n P / 4): slice z sums
//                    col = z C .. min((z+1) C, n P) - 1 ascending from 0; dw = ((s0 + s1) + s2)
//                    + s3. The twin sums col ascending in one run: another order (tolerance
//                    "conv2d_backward_weight_tiled")
// A tap in the padding, or a block entry past the matrix edge, contributes a product with an
// exact 0 (0 x w), which leaves a finite sum unchanged; such entries are never written.
//
// Bounds (the family is compiled without naga's runtime checks): the host checks before any
// call is recorded that [x_off, x_off + n c_in h_in w_in), [w_off, w_off + c_out K),
// [y_off, y_off + n c_out P) and, with has_bias, the bias span lie inside their buffers (the
// launchers' spans). Every read below is of one of these forms:
//   - GEMM rows and columns clamped to their last valid value (min(r, rows - 1), likewise for
//     columns), so a block's channel, image b < n and position are those of a real element,
//     and the loop indices (ci < c_in, k < K, co < c_out, taps i < kh, j < kw, col < n P) stay
//     below their bounds: w[co, k] = w_off + co K + k < w_off + c_out K and the like;
//   - an index used only where the tap is inside the tensor (b < n, ci < c_in, 0 <= ih < h_in,
//     0 <= iw < w_in, or the same for dy), replaced by the tensor's first element (x_off or
//     y_off) elsewhere: select(first, index, inside), and the loaded value by 0;
//   - bias[co] for co < c_out (ci < c_in), read only when has_bias.
// Every write is guarded by row < rows and column < columns, so it lands inside y, dx or dw;
// the epilogue reads aux at aux_off + the written element's place in its tensor, inside the
// aux span the host checks.
// Workgroup memory (backward_weight) is indexed by (slice - 1) 16 + e < 48 times 64 plus the
// owner index < 64: below 3072.

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
    x_off: u32,
    w_off: u32,
    y_off: u32,
    bias_off: u32,
    has_bias: u32,
    accumulate: u32,
    bias_side: u32,
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

// backward_weight's partial sums of slices 1..3: 3 slices x 16 block entries x 64 owners.
var<workgroup> slices: array<f32, 3072>;

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

fn tile_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}

fn ceil_div(x: u32, d: u32) -> u32 {
    return (x + d - 1u) / d;
}

// Row groups of a tile for a GEMM of `rows` rows: the least power of two g with 4 g >= rows, at
// most `most` (so a layer with few channels gets short, wide tiles instead of idle rows).
fn row_groups(rows: u32, most: u32) -> u32 {
    let need = ceil_div(rows, 4u);
    if (need <= 1u) {
        return 1u;
    }
    return min(1u << (32u - countLeadingZeros(need - 1u)), most);
}

// One GEMM column of the forward: where output column `col` reads x.
struct FwdCol {
    x_base: u32,  // x_off + b c_in h_in w_in: image b's first element
    ihs: u32,     // oh s: the padded input row of tap i = 0
    iws: u32,     // ow s
    y_idx: u32,   // y_off + b c_out P + oh w_out + ow: the output of row (channel) 0
}

fn fwd_col(col: u32, cols: u32) -> FwdCol {
    let cc = min(col, cols - 1u);
    let plane = p.h_out * p.w_out;
    let b = cc / plane;
    let pos = cc % plane;
    let oh = pos / p.w_out;
    let ow = pos % p.w_out;
    return FwdCol(p.x_off + b * p.c_in * p.h_in * p.w_in, oh * p.stride, ow * p.stride,
                  p.y_off + b * p.c_out * plane + pos);
}

// x at padded row ihp of plane `plane_base` and padded column iwp; 0 in the padding.
fn x_tap(row_base: u32, row_ok: bool, iwp: u32) -> f32 {
    let ok = row_ok && iwp >= p.pad && iwp < p.w_in + p.pad;
    return select(0.0, a[select(p.x_off, row_base + iwp - p.pad, ok)], ok);
}

// Y = W cols (+ bias): a = x, c = w and bias, out = y. Tile: 64 output channels x 64 columns.
@compute @workgroup_size(256)
fn conv2d_forward_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) li: u32) {
    let cols = p.n * p.h_out * p.w_out;
    let g = row_groups(p.c_out, 16u);
    let span = 256u / g;
    let col_tiles = ceil_div(cols, 4u * span);
    let t = tile_index(wg, nwg);
    if (t >= ceil_div(p.c_out, 4u * g) * col_tiles) {
        return;
    }
    let row0 = (t / col_tiles) * 4u * g + 4u * (li / span);
    let col0 = (t % col_tiles) * 4u * span + li % span;
    // A block wholly past the matrix's edge has nothing to write (no barrier follows).
    if (row0 >= p.c_out || col0 >= cols) {
        return;
    }
    let kk = p.c_in * p.kh * p.kw;
    // Weight rows of channels row0..row0+3, clamped to the last channel.
    let w0 = p.w_off + min(row0, p.c_out - 1u) * kk;
    let w1 = p.w_off + min(row0 + 1u, p.c_out - 1u) * kk;
    let w2 = p.w_off + min(row0 + 2u, p.c_out - 1u) * kk;
    let w3 = p.w_off + min(row0 + 3u, p.c_out - 1u) * kk;
    let q0 = fwd_col(col0, cols);
    let q1 = fwd_col(col0 + span, cols);
    let q2 = fwd_col(col0 + 2u * span, cols);
    let q3 = fwd_col(col0 + 3u * span, cols);
    let hw = p.h_in * p.w_in;
    // acc_r: column col0 + r span, rows row0..row0+3 in its lanes.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var k = 0u;
    for (var ci = 0u; ci < p.c_in; ci++) {
        let plane = ci * hw;
        for (var i = 0u; i < p.kh; i++) {
            let ih0 = q0.ihs + i;
            let ih1 = q1.ihs + i;
            let ih2 = q2.ihs + i;
            let ih3 = q3.ihs + i;
            let ok0 = ih0 >= p.pad && ih0 < p.h_in + p.pad;
            let ok1 = ih1 >= p.pad && ih1 < p.h_in + p.pad;
            let ok2 = ih2 >= p.pad && ih2 < p.h_in + p.pad;
            let ok3 = ih3 >= p.pad && ih3 < p.h_in + p.pad;
            // Row bases (meaningless where !ok, and then unused).
            let r0 = q0.x_base + plane + (ih0 - p.pad) * p.w_in;
            let r1 = q1.x_base + plane + (ih1 - p.pad) * p.w_in;
            let r2 = q2.x_base + plane + (ih2 - p.pad) * p.w_in;
            let r3 = q3.x_base + plane + (ih3 - p.pad) * p.w_in;
            for (var j = 0u; j < p.kw; j++) {
                let wv = vec4<f32>(c[w0 + k], c[w1 + k], c[w2 + k], c[w3 + k]);
                acc0 += x_tap(r0, ok0, q0.iws + j) * wv;
                acc1 += x_tap(r1, ok1, q1.iws + j) * wv;
                acc2 += x_tap(r2, ok2, q2.iws + j) * wv;
                acc3 += x_tap(r3, ok3, q3.iws + j) * wv;
                k++;
            }
        }
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    let ys = array<u32, 4>(q0.y_idx, q1.y_idx, q2.y_idx, q3.y_idx);
    let plane_out = p.h_out * p.w_out;
    for (var e = 0u; e < 4u; e++) {
        let co = row0 + e;
        if (co >= p.c_out) {
            break;
        }
        var bias = 0.0;
        if (p.has_bias != 0u) {
            bias = c[p.bias_off + co];
        }
        for (var r = 0u; r < 4u; r++) {
            if (col0 + r * span < cols) {
                store_out(p.y_off, ys[r] + co * plane_out - p.y_off, acc[r][e] + bias);
            }
        }
    }
}

// One GEMM column of the input gradient: a dx position of the tile's parity class.
struct BwdCol {
    ok: bool,     // the position lies inside dx (and in the batch)
    dy_base: u32, // y_off + b c_out h_out w_out: image b's first dy element
    oh0: u32,     // the dy row of the class's first tap: (ih + q - tap0_h) / s
    ow0: u32,
    dx_idx: u32,  // x_off + b c_in h_in w_in + ih w_in + iw: the output of row (channel) 0
}

fn bwd_col(col: u32, cols: u32, ch: u32, cw: u32, u: u32, v: u32, tap_h: u32, tap_w: u32) -> BwdCol {
    let cc = min(col, cols - 1u);
    let b = cc / (u * v);
    let pos = cc % (u * v);
    let ih = ch + p.stride * (pos / v);
    let iw = cw + p.stride * (pos % v);
    let ok = col < cols && ih < p.h_in && iw < p.w_in;
    // ih + q = tap_h (mod s) and tap_h <= ih + q, so the division is exact.
    return BwdCol(ok, p.y_off + b * p.c_out * p.h_out * p.w_out, (ih + p.pad - tap_h) / p.stride,
                  (iw + p.pad - tap_w) / p.stride, p.x_off + b * p.c_in * p.h_in * p.w_in + ih * p.w_in + iw);
}

// The first tap number whose dy row oh0 - m is below `size`: oh0 - min(oh0, size - 1).
fn tap_lo(oh0: u32, size: u32) -> u32 {
    return oh0 - min(oh0, size - 1u);
}

// Taps of a class along one axis: first + m s < k for m < taps(first, k).
fn taps(first: u32, k: u32) -> u32 {
    return select(0u, ceil_div(k - first, p.stride), first < k);
}

// dy at row `oh` (valid when oh_ok) and column `ow` of plane `row_base - oh w_out`; 0 outside.
fn dy_tap(row_base: u32, oh_ok: bool, ow: u32) -> f32 {
    let ok = oh_ok && ow < p.w_out;
    return select(0.0, a[select(p.y_off, row_base + ow, ok)], ok);
}

// dx = W^T dy-cols (+ bias per c_in), one parity class per tile: a = dy, c = w and bias,
// out = dx. Tile: 64 input channels x 64 positions of the class.
@compute @workgroup_size(256)
fn conv2d_backward_input_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) li: u32) {
    let s = p.stride;
    let u = ceil_div(p.h_in, s);
    let v = ceil_div(p.w_in, s);
    let cols = p.n * u * v;
    let g = row_groups(p.c_in, 16u);
    let span = 256u / g;
    let col_tiles = ceil_div(cols, 4u * span);
    let row_tiles = ceil_div(p.c_in, 4u * g);
    // Parity classes that hold a position: ih mod s < min(s, h_in), likewise for w.
    let classes_w = min(s, p.w_in);
    let t = tile_index(wg, nwg);
    if (t >= min(s, p.h_in) * classes_w * row_tiles * col_tiles) {
        return;
    }
    let cls = t / (row_tiles * col_tiles);
    let rest = t % (row_tiles * col_tiles);
    let ch = cls / classes_w;
    let cw = cls % classes_w;
    // The class's first taps: i = (ih + q) mod s for every ih = ch (mod s).
    let tap_h = (ch + p.pad) % s;
    let tap_w = (cw + p.pad) % s;
    let row0 = (rest / col_tiles) * 4u * g + 4u * (li / span);
    let col0 = (rest % col_tiles) * 4u * span + li % span;
    // A block wholly past the matrix's edge has nothing to write (no barrier follows).
    if (row0 >= p.c_in || col0 >= cols) {
        return;
    }
    let khw = p.kh * p.kw;
    // w[co, ci, i, j] = w_off + (co c_in + ci) kh kw + i kw + j: rows ci = row0..row0+3, clamped.
    let w0 = p.w_off + min(row0, p.c_in - 1u) * khw;
    let w1 = p.w_off + min(row0 + 1u, p.c_in - 1u) * khw;
    let w2 = p.w_off + min(row0 + 2u, p.c_in - 1u) * khw;
    let w3 = p.w_off + min(row0 + 3u, p.c_in - 1u) * khw;
    let q0 = bwd_col(col0, cols, ch, cw, u, v, tap_h, tap_w);
    let q1 = bwd_col(col0 + span, cols, ch, cw, u, v, tap_h, tap_w);
    let q2 = bwd_col(col0 + 2u * span, cols, ch, cw, u, v, tap_h, tap_w);
    let q3 = bwd_col(col0 + 3u * span, cols, ch, cw, u, v, tap_h, tap_w);
    // The taps m (i = tap_h + m s) that reach a dy row from one of the four columns: column r
    // takes m in [oh0_r - min(oh0_r, h_out - 1), oh0_r]; the others contribute nothing, so the
    // loops skip them (at a 1x1 -> 4x4 layer, 15 of the 16 taps).
    let m_lo = min(min(tap_lo(q0.oh0, p.h_out), tap_lo(q1.oh0, p.h_out)),
                   min(tap_lo(q2.oh0, p.h_out), tap_lo(q3.oh0, p.h_out)));
    let m_end = min(max(max(q0.oh0, q1.oh0), max(q2.oh0, q3.oh0)) + 1u, taps(tap_h, p.kh));
    let n_lo = min(min(tap_lo(q0.ow0, p.w_out), tap_lo(q1.ow0, p.w_out)),
                   min(tap_lo(q2.ow0, p.w_out), tap_lo(q3.ow0, p.w_out)));
    let n_end = min(max(max(q0.ow0, q1.ow0), max(q2.ow0, q3.ow0)) + 1u, taps(tap_w, p.kw));
    let plane_dy = p.h_out * p.w_out;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var co = 0u; co < p.c_out; co++) {
        let w_co = co * p.c_in * khw;
        let dy_co = co * plane_dy;
        // Tap number m along h: i = tap_h + m s reads dy row oh0 - m (valid while < h_out; the
        // subtraction wraps past 0 to a value >= h_out, which the check rejects too).
        for (var m = m_lo; m < m_end; m++) {
            let i = tap_h + m * s;
            let oh0 = q0.oh0 - m;
            let oh1 = q1.oh0 - m;
            let oh2 = q2.oh0 - m;
            let oh3 = q3.oh0 - m;
            let ok0 = q0.ok && oh0 < p.h_out;
            let ok1 = q1.ok && oh1 < p.h_out;
            let ok2 = q2.ok && oh2 < p.h_out;
            let ok3 = q3.ok && oh3 < p.h_out;
            let r0 = q0.dy_base + dy_co + oh0 * p.w_out;
            let r1 = q1.dy_base + dy_co + oh1 * p.w_out;
            let r2 = q2.dy_base + dy_co + oh2 * p.w_out;
            let r3 = q3.dy_base + dy_co + oh3 * p.w_out;
            for (var n = n_lo; n < n_end; n++) {
                let tap = w_co + i * p.kw + tap_w + n * s;
                let wv = vec4<f32>(c[w0 + tap], c[w1 + tap], c[w2 + tap], c[w3 + tap]);
                acc0 += dy_tap(r0, ok0, q0.ow0 - n) * wv;
                acc1 += dy_tap(r1, ok1, q1.ow0 - n) * wv;
                acc2 += dy_tap(r2, ok2, q2.ow0 - n) * wv;
                acc3 += dy_tap(r3, ok3, q3.ow0 - n) * wv;
            }
        }
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    let oks = array<bool, 4>(q0.ok, q1.ok, q2.ok, q3.ok);
    let dxs = array<u32, 4>(q0.dx_idx, q1.dx_idx, q2.dx_idx, q3.dx_idx);
    let plane_dx = p.h_in * p.w_in;
    for (var e = 0u; e < 4u; e++) {
        let ci = row0 + e;
        if (ci >= p.c_in) {
            break;
        }
        var bias = 0.0;
        if (p.has_bias != 0u) {
            bias = c[p.bias_off + ci];
        }
        for (var r = 0u; r < 4u; r++) {
            if (oks[r]) {
                store_out(p.x_off, dxs[r] + ci * plane_dx - p.x_off, acc[r][e] + bias);
            }
        }
    }
}

// One GEMM column of the weight gradient: the tap k = (ci, i, j) of dw.
struct WCol {
    plane: u32,  // ci h_in w_in
    i: u32,
    j: u32,
}

fn w_col(k: u32, kk: u32) -> WCol {
    let kc = min(k, kk - 1u);
    return WCol((kc / (p.kh * p.kw)) * p.h_in * p.w_in, (kc / p.kw) % p.kh, kc % p.kw);
}

// The x tap of column `k` at output position (oh, ow) of image base `x_base`; 0 in padding.
fn x_at(x_base: u32, k: WCol, oh: u32, ow: u32) -> f32 {
    let ihp = oh * p.stride + k.i;
    let iwp = ow * p.stride + k.j;
    let ok = ihp >= p.pad && ihp < p.h_in + p.pad && iwp >= p.pad && iwp < p.w_in + p.pad;
    return select(0.0, c[select(p.x_off, x_base + k.plane + (ihp - p.pad) * p.w_in + iwp - p.pad, ok)], ok);
}

// dw (+)= dY cols^T: a = dy, c = x, out = dw. Tile: 32 output channels x 32 taps, the inner
// dimension n P in 4 slices (lid.z) summed in a fixed order at the end.
@compute @workgroup_size(64, 1, 4)
fn conv2d_backward_weight_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_id) lid: vec3<u32>) {
    let kk = p.c_in * p.kh * p.kw;
    let g = row_groups(p.c_out, 8u);
    let span = 64u / g;
    let col_tiles = ceil_div(kk, 4u * span);
    let t = tile_index(wg, nwg);
    // t is the same for the whole workgroup, so this return keeps the barrier uniform.
    if (t >= ceil_div(p.c_out, 4u * g) * col_tiles) {
        return;
    }
    let owner = lid.x;
    let row0 = (t / col_tiles) * 4u * g + 4u * (owner / span);
    let col0 = (t % col_tiles) * 4u * span + owner % span;
    let plane = p.h_out * p.w_out;
    // dy[b, co, oh, ow] = y_off + (b c_out + co) P + oh w_out + ow: rows co = row0.., clamped.
    let d0 = p.y_off + min(row0, p.c_out - 1u) * plane;
    let d1 = p.y_off + min(row0 + 1u, p.c_out - 1u) * plane;
    let d2 = p.y_off + min(row0 + 2u, p.c_out - 1u) * plane;
    let d3 = p.y_off + min(row0 + 3u, p.c_out - 1u) * plane;
    let k0 = w_col(col0, kk);
    let k1 = w_col(col0 + span, kk);
    let k2 = w_col(col0 + 2u * span, kk);
    let k3 = w_col(col0 + 3u * span, kk);
    // This slice's columns of dY: [lo, hi) of n P, in order.
    let total = p.n * plane;
    let chunk = ceil_div(total, 4u);
    let lo = min(lid.z * chunk, total);
    // A block wholly past dw's edge sums nothing (but still meets the barrier below).
    let idle = row0 >= p.c_out || col0 >= kk;
    let hi = select(min(lo + chunk, total), lo, idle);
    var b = lo / plane;
    var oh = (lo % plane) / p.w_out;
    var ow = lo % p.w_out;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var col = lo; col < hi; col++) {
        let dy_b = b * p.c_out * plane + oh * p.w_out + ow;
        let dv = vec4<f32>(a[d0 + dy_b], a[d1 + dy_b], a[d2 + dy_b], a[d3 + dy_b]);
        let x_base = p.x_off + b * p.c_in * p.h_in * p.w_in;
        acc0 += x_at(x_base, k0, oh, ow) * dv;
        acc1 += x_at(x_base, k1, oh, ow) * dv;
        acc2 += x_at(x_base, k2, oh, ow) * dv;
        acc3 += x_at(x_base, k3, oh, ow) * dv;
        ow++;
        if (ow == p.w_out) {
            ow = 0u;
            oh++;
            if (oh == p.h_out) {
                oh = 0u;
                b++;
            }
        }
    }
    // Slices 1..3 leave their blocks in workgroup memory; slice 0 adds them in order.
    if (lid.z > 0u) {
        let base = (lid.z - 1u) * 16u;
        for (var r = 0u; r < 4u; r++) {
            let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3)[r];
            for (var e = 0u; e < 4u; e++) {
                slices[(base + r * 4u + e) * 64u + owner] = acc[e];
            }
        }
    }
    workgroupBarrier();
    if (lid.z > 0u) {
        return;
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var e = 0u; e < 4u; e++) {
        let co = row0 + e;
        if (co >= p.c_out) {
            break;
        }
        for (var r = 0u; r < 4u; r++) {
            let k = col0 + r * span;
            if (k < kk) {
                let at = (r * 4u + e) * 64u + owner;
                let v = ((acc[r][e] + slices[at]) + slices[1024u + at]) + slices[2048u + at];
                store(p.w_off + co * kk + k, v);
            }
        }
    }
}
