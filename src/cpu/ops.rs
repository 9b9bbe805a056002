//! The CPU twins of the WGSL kernels: plain, readable loops with the kernels' names, taking the
//! same parameter structs and the same flat buffers with the same offsets. They are the oracle
//! for every GPU kernel (tests/kernels.rs) and the reference for the faster CPU trainer paths.

use crate::params::{
    AdamParams, EmaParams, EwParams, LossParams, MatmulParams, RandomParams, TrainState, XentParams, NO_SLOT,
};
use crate::rng;

/// The largest finite f16.
pub const F16_MAX: f32 = 65504.0;

/// Clamps to f16's finite range: the f16 kernels saturate before they convert, so that no
/// out-of-range conversion (implementation-defined on GPUs) happens.
pub fn saturate_f16(v: f32) -> f32 {
    v.clamp(-F16_MAX, F16_MAX)
}

/// An f16 store as the f16 kernels do it: saturate, then round to nearest even. Every value of an
/// f16 buffer on the CPU backend went through this.
pub fn round_f16(v: f32) -> f32 {
    half::f16::from_f32(saturate_f16(v)).to_f32()
}

/// `round_f16` on every value of a slice, through half's vectorised slice conversions (F16C
/// where the CPU has it): the same rounding, many times faster than one value at a time.
pub fn round_f16_slice(values: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    let mut tmp = [half::f16::ZERO; 1024];
    for chunk in values.chunks_mut(1024) {
        chunk.iter_mut().for_each(|v| *v = saturate_f16(*v));
        let t = &mut tmp[..chunk.len()];
        t.convert_from_f32_slice(chunk);
        t.convert_to_f32_slice(chunk);
    }
}

/// `cast_to_f16` / `cast_to_f32` in activation_f16.wgsl: a copy between offsets; the executor
/// rounds the output when it is an f16 buffer.
pub fn cast(p: &EwParams, x: &[f32], out: &mut [f32]) {
    let (i, o, n) = (p.in_off as usize, p.out_off as usize, p.len as usize);
    out[o..o + n].copy_from_slice(&x[i..i + n]);
}

/// 1 / (1 + e^-z) without overflow: exp() only ever sees -|z|.
pub fn sigmoid(z: f32) -> f32 {
    let e = (-z.abs()).exp();
    let s = 1.0 / (1.0 + e);
    if z >= 0.0 {
        s
    } else {
        e * s
    }
}

/// log(1 + x) for x in [0, 1] (`log1p_small` in common.wgsl).
pub fn log1p_small(x: f32) -> f32 {
    if x < 1e-4 {
        x - 0.5 * x * x
    } else {
        (1.0 + x).ln()
    }
}

pub fn tanh_safe(z: f32) -> f32 {
    z.clamp(-15.0, 15.0).tanh()
}

/// `activate` in common.wgsl; `act` is an [`crate::model::Activation`] code.
pub fn activate(z: f32, act: u32, slope: f32) -> f32 {
    match act {
        1 => z.max(0.0),
        2 => {
            if z > 0.0 {
                z
            } else {
                z * slope
            }
        }
        3 => sigmoid(z),
        4 => tanh_safe(z),
        _ => z,
    }
}

/// `activation_grad` in common.wgsl: the derivative in terms of the output y.
pub fn activation_grad(y: f32, act: u32, slope: f32) -> f32 {
    match act {
        1 => (y > 0.0) as u8 as f32,
        2 => {
            if y > 0.0 {
                1.0
            } else {
                slope
            }
        }
        3 => y * (1.0 - y),
        4 => 1.0 - y * y,
        _ => 1.0,
    }
}

/// y[m,n] = act(sum_k x[m,k] w[n,k] + b[n]); a = x, c = w and b.
pub fn matmul_forward(p: &MatmulParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let (a_off, c_off, out_off, bias_off) =
        (p.a_off as usize, p.c_off as usize, p.out_off as usize, p.bias_off as usize);
    for i in 0..m {
        let x = &a[a_off + i * k..a_off + (i + 1) * k];
        for j in 0..n {
            let w = &c[c_off + j * k..c_off + (j + 1) * k];
            let mut acc = 0f32;
            for kk in 0..k {
                acc += x[kk] * w[kk];
            }
            out[out_off + i * n + j] = activate(acc + c[bias_off + j], p.act, p.slope);
        }
    }
}

/// dx[m,k] = sum_n dz[m,n] w[n,k]; a = dz, c = w.
pub fn matmul_backward_input(p: &MatmulParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let (a_off, c_off, out_off) = (p.a_off as usize, p.c_off as usize, p.out_off as usize);
    for i in 0..m {
        for kk in 0..k {
            let mut acc = 0f32;
            for j in 0..n {
                acc += a[a_off + i * n + j] * c[c_off + j * k + kk];
            }
            out[out_off + i * k + kk] = acc;
        }
    }
}

/// dw[n,k] (+)= sum_m dz[m,n] x[m,k]; a = dz, c = x, out = the flat gradient buffer.
pub fn matmul_backward_weight(p: &MatmulParams, a: &[f32], c: &[f32], out: &mut [f32]) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let (a_off, c_off, out_off) = (p.a_off as usize, p.c_off as usize, p.out_off as usize);
    for j in 0..n {
        for kk in 0..k {
            let mut acc = 0f32;
            for i in 0..m {
                acc += a[a_off + i * n + j] * c[c_off + i * k + kk];
            }
            let o = &mut out[out_off + j * k + kk];
            *o = if p.accumulate != 0 { *o + acc } else { acc };
        }
    }
}

/// db[n] (+)= sum_m dz[m,n]; a = dz, out = the flat gradient buffer at bias_off.
pub fn bias_backward(p: &MatmulParams, a: &[f32], out: &mut [f32]) {
    let (m, n) = (p.m as usize, p.n as usize);
    for j in 0..n {
        let mut s = 0f32;
        for i in 0..m {
            s += a[p.a_off as usize + i * n + j];
        }
        let o = &mut out[p.bias_off as usize + j];
        *o = if p.accumulate != 0 { *o + s } else { s };
    }
}

/// y = act(x) element-wise (`relu_forward`, `sigmoid_forward`, ... by `act`).
pub fn activation_forward(act: u32, p: &EwParams, x: &[f32], y: &mut [f32]) {
    for i in 0..p.len as usize {
        y[p.out_off as usize + i] = activate(x[p.in_off as usize + i], act, p.slope);
    }
}

/// dz = dy * f'(y) element-wise (`relu_backward`, ... by `act`).
pub fn activation_backward(act: u32, p: &EwParams, y: &[f32], dy: &[f32], dz: &mut [f32]) {
    for i in 0..p.len as usize {
        let g = activation_grad(y[p.in_off as usize + i], act, p.slope);
        dz[p.out_off as usize + i] = dy[p.dy_off as usize + i] * g;
    }
}

/// Binary cross-entropy on logits, loss and gradient fused (see loss.wgsl). The sums are taken
/// in the kernel's order (256 strided partial sums, then a tree) so that both sides round alike.
pub fn bce_logits(p: &LossParams, z: &[f32], dz: &mut [f32], stats: &mut [f32]) {
    const LANES: usize = 256;
    let mut partial = [[0f32; 4]; LANES];
    for (lane, acc) in partial.iter_mut().enumerate() {
        let mut i = lane;
        while i < p.rows as usize {
            let zi = z[p.z_off as usize + i];
            let first = (i as u32) < p.n_first;
            let (y, scale) = if first { (p.label_first, p.scale_first) } else { (p.label_second, p.scale_second) };
            let s = sigmoid(zi);
            let loss = zi.max(0.0) - zi * y + log1p_small((-zi.abs()).exp());
            dz[p.dz_off as usize + i] = (s - y) * scale;
            if first {
                acc[0] += loss;
                acc[2] += s;
            } else {
                acc[1] += loss;
                acc[3] += s;
            }
            i += LANES;
        }
    }
    let mut stride = LANES / 2;
    while stride > 0 {
        for lane in 0..stride {
            let upper = partial[lane + stride];
            for (acc, v) in partial[lane].iter_mut().zip(upper) {
                *acc += v;
            }
        }
        stride /= 2;
    }
    let t = partial[0];
    let n_second = p.rows - p.n_first.min(p.rows);
    let mut put = |slot: u32, v: f32| {
        if slot != NO_SLOT {
            stats[slot as usize] = v;
        }
    };
    put(p.slot_loss, p.scale_first * t[0] + p.scale_second * t[1]);
    put(p.slot_prob_first, t[2] / p.n_first.max(1) as f32);
    put(p.slot_prob_second, t[3] / n_second.max(1) as f32);
}

/// Softmax cross-entropy on logits, loss and gradient fused (see xent.wgsl); the sums in the
/// kernel's order (256 strided partial sums, then a tree).
pub fn softmax_xent(p: &XentParams, z: &[f32], labels: &[f32], dz: &mut [f32], stats: &mut [f32]) {
    const LANES: usize = 256;
    let classes = p.classes as usize;
    let mut partial = [[0f32; 2]; LANES];
    for (lane, acc) in partial.iter_mut().enumerate() {
        let mut r = lane;
        while r < p.rows as usize {
            let row = &z[p.z_off as usize + r * classes..][..classes];
            let y = labels[p.label_off as usize + r] as usize;
            let (mut m, mut arg) = (row[0], 0);
            for (j, &v) in row.iter().enumerate().skip(1) {
                if v > m {
                    (m, arg) = (v, j);
                }
            }
            let sum: f32 = row.iter().map(|&v| (v - m).exp()).sum();
            let lse = m + sum.ln();
            let out = &mut dz[p.dz_off as usize + r * classes..][..classes];
            for (j, (d, &v)) in out.iter_mut().zip(row).enumerate() {
                *d = ((v - lse).exp() - if j == y { 1.0 } else { 0.0 }) * p.scale;
            }
            acc[0] += lse - row[y];
            acc[1] += if arg == y { 1.0 } else { 0.0 };
            r += LANES;
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
    if p.slot_loss != NO_SLOT {
        stats[p.slot_loss as usize] = p.scale * partial[0][0];
    }
    if p.slot_acc != NO_SLOT {
        stats[p.slot_acc as usize] = partial[0][1] / p.rows.max(1) as f32;
    }
}

/// t += 1 and the running powers beta^t of one optimizer (net 0 = D, 1 = G).
pub fn adam_tick(state: &mut TrainState, net: u32, beta1: f32, beta2: f32) {
    if net == 0 {
        state.t_d += 1;
        state.pows[0] *= beta1;
        state.pows[1] *= beta2;
    } else {
        state.t_g += 1;
        state.pows[2] *= beta1;
        state.pows[3] *= beta2;
    }
}

pub fn step_tick(state: &mut TrainState) {
    state.step += 1;
}

/// `ema_update`: ema = beta * ema + (1 - beta) * params over the first `p.len` values.
pub fn ema_update(p: &EmaParams, params: &[f32], ema: &mut [f32]) {
    let len = p.len as usize;
    for (e, &w) in ema[..len].iter_mut().zip(&params[..len]) {
        *e = p.beta * *e + (1.0 - p.beta) * w;
    }
}

/// One Adam update over a flat parameter buffer; `moments` holds m then v.
pub fn adam_step(p: &AdamParams, state: &TrainState, params: &mut [f32], grads: &[f32], moments: &mut [f32]) {
    let (m, v) = moments.split_at_mut(p.len as usize);
    adam_update(p, state, params, grads, m, v);
}

/// The update of `adam_step` on the first `p.len` elements of separate m and v slices.
pub fn adam_update(
    p: &AdamParams,
    state: &TrainState,
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let len = p.len as usize;
    let (b1pow, b2pow) = if p.net == 0 { (state.pows[0], state.pows[1]) } else { (state.pows[2], state.pows[3]) };
    let bias1 = 1.0 - b1pow;
    let bias2 = 1.0 - b2pow;
    let step_size = p.lr_at(state.step) / bias1;
    let sqrt_bias2 = bias2.sqrt();
    for i in 0..len {
        let g = grads[i];
        let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
        let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        let denom = vi.sqrt() / sqrt_bias2 + p.eps;
        params[i] -= step_size * (mi / denom);
    }
}

/// Standard normal noise keyed by (seed, step, stream): `noise_normal` in random.wgsl.
pub fn noise_normal(p: &RandomParams, state: &TrainState, out: &mut [f32]) {
    let off = p.out_off as usize;
    let key = [p.seed_lo, p.seed_hi];
    rng::normals(key, state.step, p.stream, rng::PURPOSE_NOISE, &mut out[off..off + p.len as usize]);
}

/// Batch rows in this step's order, scaled: `gather_u8` in random.wgsl.
pub fn gather_u8(p: &RandomParams, state: &TrainState, data: &[u8], out: &mut [f32]) {
    let dim = p.dim as usize;
    for r in 0..p.rows {
        let src = rng::batch_row_source(p.seed(), p.batch_counter(state.step), r, p.rows, p.n) as usize
            * p.row_stride() as usize
            + p.src_col as usize;
        let dst = p.out_off as usize + r as usize * dim;
        for c in 0..dim {
            out[dst + c] = data[src + c] as f32 * p.scale + p.shift;
        }
    }
}

/// `gather_f32` in random.wgsl.
pub fn gather_f32(p: &RandomParams, state: &TrainState, data: &[f32], out: &mut [f32]) {
    let dim = p.dim as usize;
    for r in 0..p.rows {
        let src = rng::batch_row_source(p.seed(), p.batch_counter(state.step), r, p.rows, p.n) as usize
            * p.row_stride() as usize
            + p.src_col as usize;
        let dst = p.out_off as usize + r as usize * dim;
        for c in 0..dim {
            out[dst + c] = data[src + c] * p.scale + p.shift;
        }
    }
}

/// Dropout in place with a mask keyed by (seed, step, salt): `dropout` in random.wgsl. Also the
/// backward pass, applied to the gradient.
pub fn dropout(p: &RandomParams, state: &TrainState, out: &mut [f32]) {
    let key = rng::dropout_key(p.seed(), state.step, p.stream);
    let off = p.out_off as usize;
    for (i, v) in out[off..off + p.len as usize].iter_mut().enumerate() {
        *v = if rng::dropout_keep(key, i as u32, p.shift) { *v * p.scale } else { 0.0 };
    }
}
