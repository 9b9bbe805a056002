//! The CPU twins of conv.wgsl: plain loops with the entry points' names, on the same flat buffers
//! at the same offsets (argument order = binding order), every sum in the kernel's order.

use super::{ConvParams, LANES};

/// out[idx] = v, or += v when accumulating (`store` in both shaders).
fn store(out: &mut [f32], idx: usize, v: f32, accumulate: u32) {
    out[idx] = if accumulate != 0 { out[idx] + v } else { v };
}

/// The input index that padded coordinate `padded` (= output position * stride + tap) reads, or
/// None where it falls in the padding.
fn unpad(padded: u32, pad: u32, size: u32) -> Option<u32> {
    (padded >= pad && padded < size + pad).then(|| padded - pad)
}

/// y = conv(x, w) + b (`conv2d_forward`): a = x, c = w and b, out = y. Sums ci, i, j in order.
pub fn conv2d_forward(p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (h_in, w_in, kh, kw) = (p.h_in as usize, p.w_in as usize, p.kh as usize, p.kw as usize);
    let mut o = p.y_off as usize;
    for b in 0..p.n {
        for co in 0..p.c_out {
            for oh in 0..p.h_out {
                for ow in 0..p.w_out {
                    let mut acc = 0f32;
                    for ci in 0..p.c_in {
                        let x_plane = p.x_off as usize + ((b * p.c_in + ci) as usize) * h_in * w_in;
                        let w_base = p.w_off as usize + ((co * p.c_in + ci) as usize) * kh * kw;
                        for i in 0..p.kh {
                            let Some(ih) = unpad(oh * p.stride + i, p.pad, p.h_in) else { continue };
                            for j in 0..p.kw {
                                let Some(iw) = unpad(ow * p.stride + j, p.pad, p.w_in) else { continue };
                                acc += a[x_plane + ih as usize * w_in + iw as usize]
                                    * c[w_base + i as usize * kw + j as usize];
                            }
                        }
                    }
                    if p.has_bias != 0 {
                        acc += c[p.bias_off as usize + co as usize];
                    }
                    store(out, o, acc, p.accumulate);
                    o += 1;
                }
            }
        }
    }
}

/// The (tap, output position) pairs that reach input position `pos` (unpadded) along one axis:
/// tap k with pos + pad - k = out * stride, 0 <= out < out_size; taps ascending.
fn taps_reaching(pos: u32, pad: u32, stride: u32, k: u32, out_size: u32) -> impl Iterator<Item = (u32, u32)> {
    let padded = pos + pad;
    (padded % stride..k.min(padded + 1))
        .step_by(stride as usize)
        .map(move |tap| (tap, (padded - tap) / stride))
        .filter(move |&(_, out)| out < out_size)
}

/// dx = conv^T(dy, w) (+ b per c_in) (`conv2d_backward_input`): a = dy, c = w and b, out = dx.
/// Sums co, i, j in order. Also conv_transpose2d's forward.
pub fn conv2d_backward_input(p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (h_out, w_out, kh, kw) = (p.h_out as usize, p.w_out as usize, p.kh as usize, p.kw as usize);
    let mut o = p.x_off as usize;
    for b in 0..p.n {
        for ci in 0..p.c_in {
            for ih in 0..p.h_in {
                for iw in 0..p.w_in {
                    let mut acc = 0f32;
                    for co in 0..p.c_out {
                        let dy_plane = p.y_off as usize + ((b * p.c_out + co) as usize) * h_out * w_out;
                        let w_base = p.w_off as usize + ((co * p.c_in + ci) as usize) * kh * kw;
                        for (i, oh) in taps_reaching(ih, p.pad, p.stride, p.kh, p.h_out) {
                            for (j, ow) in taps_reaching(iw, p.pad, p.stride, p.kw, p.w_out) {
                                acc += a[dy_plane + oh as usize * w_out + ow as usize]
                                    * c[w_base + i as usize * kw + j as usize];
                            }
                        }
                    }
                    if p.has_bias != 0 {
                        acc += c[p.bias_off as usize + ci as usize];
                    }
                    store(out, o, acc, p.accumulate);
                    o += 1;
                }
            }
        }
    }
}

/// dw (+)= sum_{b,oh,ow} dy x-tap (`conv2d_backward_weight`): a = dy, c = x, out = dw.
/// Sums b, oh, ow in order. Also conv_transpose2d's weight gradient (dy := X, x := dY).
pub fn conv2d_backward_weight(p: &ConvParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (h_in, w_in, h_out, w_out) = (p.h_in as usize, p.w_in as usize, p.h_out as usize, p.w_out as usize);
    let mut o = p.w_off as usize;
    for co in 0..p.c_out {
        for ci in 0..p.c_in {
            for i in 0..p.kh {
                for j in 0..p.kw {
                    let mut acc = 0f32;
                    for b in 0..p.n {
                        let dy_plane = p.y_off as usize + ((b * p.c_out + co) as usize) * h_out * w_out;
                        let x_plane = p.x_off as usize + ((b * p.c_in + ci) as usize) * h_in * w_in;
                        for oh in 0..p.h_out {
                            let Some(ih) = unpad(oh * p.stride + i, p.pad, p.h_in) else { continue };
                            for ow in 0..p.w_out {
                                let Some(iw) = unpad(ow * p.stride + j, p.pad, p.w_in) else { continue };
                                acc += a[dy_plane + oh as usize * w_out + ow as usize]
                                    * c[x_plane + ih as usize * w_in + iw as usize];
                            }
                        }
                    }
                    store(out, o, acc, p.accumulate);
                    o += 1;
                }
            }
        }
    }
}

/// db[ch] (+)= sum of g over batch and space (`conv2d_backward_bias`): a = g, out = db.
/// `bias_side` picks g's shape; the sum in the kernel's lane/tree order.
pub fn conv2d_backward_bias(p: &ConvParams, a: &[f32], out: &mut [f32]) {
    let (channels, plane, g_off) = p.bias_side_shape();
    for ch in 0..channels {
        let base = g_off + ch * plane;
        let [sum, _] =
            lane_tree_sum(p.n as usize * plane, |e| [a[base + (e / plane) * channels * plane + e % plane], 0.0]);
        store(out, p.bias_off as usize + ch, sum, p.accumulate);
    }
}

/// A workgroup's fixed-order sum of `terms` terms (two sums at once): lane l adds terms l,
/// l + 256, ... in order from 0, then a tree halves the 256 partials (stride 128, 64, ..., 1).
pub fn lane_tree_sum(terms: usize, term: impl Fn(usize) -> [f32; 2]) -> [f32; 2] {
    let mut partial = [[0f32; 2]; LANES];
    for (lane, acc) in partial.iter_mut().enumerate() {
        for e in (lane..terms).step_by(LANES) {
            let t = term(e);
            acc[0] += t[0];
            acc[1] += t[1];
        }
    }
    let mut stride = LANES / 2;
    while stride > 0 {
        for lane in 0..stride {
            let upper = partial[lane + stride];
            partial[lane][0] += upper[0];
            partial[lane][1] += upper[1];
        }
        stride /= 2;
    }
    partial[0]
}
