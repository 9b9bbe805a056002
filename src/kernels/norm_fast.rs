//! The CPU backend's fast batch norm: the twins' formulas (`norm.rs`) channel by channel, a task
//! per channel on the pool. A channel's values are `n` contiguous planes of `s` values in NCHW,
//! so they are read plane by plane with no index arithmetic per element, and its sums are taken
//! in an order of its own (16 running lanes over each plane's full chunks of 16, the planes'
//! leftovers in a 17th, in plane order; then the lanes pairwise), fixed by the shape: the same
//! bits for any thread count. Everything else is the twins' arithmetic, operation for operation.

use super::norm::NormParams;
use crate::ir::Pool;

const LANES: usize = 16;

fn lanes_pair(lanes: &mut [[f32; LANES]; 2]) -> impl Iterator<Item = (&mut f32, &mut f32)> {
    let [a, b] = lanes;
    a.iter_mut().zip(b.iter_mut())
}

/// Fixed-order sums of f over a channel's planes (two sums at once).
#[inline(always)]
fn channel_sums(n: usize, s: usize, c: usize, off: usize, ch: usize, f: impl Fn(usize) -> [f32; 2]) -> [f32; 2] {
    let mut lanes = [[0f32; LANES]; 2];
    let mut tail = [0f32; 2];
    for b in 0..n {
        let base = off + (b * c + ch) * s;
        let full = s / LANES * LANES;
        for q in (0..full).step_by(LANES) {
            for (l, (a, b)) in lanes_pair(&mut lanes).enumerate() {
                let t = f(base + q + l);
                *a += t[0];
                *b += t[1];
            }
        }
        for e in base + full..base + s {
            let t = f(e);
            tail[0] += t[0];
            tail[1] += t[1];
        }
    }
    let mut out = [0f32; 2];
    for (o, (lane, t)) in out.iter_mut().zip(lanes.iter_mut().zip(tail)) {
        let mut w = LANES / 2;
        while w > 0 {
            for l in 0..w {
                lane[l] += lane[l + w];
            }
            w /= 2;
        }
        *o = lane[0] + t;
    }
    out
}

/// Runs `f(ch, out)` for every channel, a task each; `out` is the whole of a buffer the tasks
/// write in disjoint places (each channel's own elements).
fn per_channel(pool: &Pool, c: usize, out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    let (ptr, len) = (out.as_mut_ptr() as usize, out.len());
    pool.run(c, &|ch| {
        // SAFETY: task ch writes only channel ch's elements (and per-channel slots).
        let out = unsafe { std::slice::from_raw_parts_mut(ptr as *mut f32, len) };
        f(ch, out)
    });
}

fn inv_std_of(var: f32, eps: f32) -> f32 {
    1.0 / (var + eps).sqrt()
}

fn store(out: &mut f32, v: f32, accumulate: u32) {
    *out = if accumulate != 0 { *out + v } else { v };
}

/// `batch_norm_forward`'s contract.
pub fn batch_norm_forward(
    pool: &Pool,
    p: &NormParams,
    x: &[f32],
    params: &[f32],
    y: &mut [f32],
    state: &mut [f32],
    saved: &mut [f32],
) {
    STATS.with(|cell| {
        let mut stats = cell.borrow_mut();
        let stats = STATS_MARK.refill(&mut stats, p.c as usize, [0.0; 2]);
        forward_with(pool, p, x, params, y, state, saved, stats);
    });
}

thread_local! {
    /// Each channel's (mean, variance), kept so that a step allocates nothing.
    static STATS: std::cell::RefCell<Vec<[f32; 2]>> = const { std::cell::RefCell::new(Vec::new()) };
}

static STATS_MARK: crate::kernels::scratch::HighWater = crate::kernels::scratch::HighWater::new();

#[allow(clippy::too_many_arguments)]
fn forward_with(
    pool: &Pool,
    p: &NormParams,
    x: &[f32],
    params: &[f32],
    y: &mut [f32],
    state: &mut [f32],
    saved: &mut [f32],
    stats: &mut [[f32; 2]],
) {
    let (n, c, s) = (p.n as usize, p.c as usize, p.s as usize);
    let stats_ptr = stats.as_mut_ptr() as usize;
    per_channel(pool, c, y, |ch, y| {
        let mean = channel_sums(n, s, c, p.x_off as usize, ch, |e| [x[e], 0.0])[0] * p.inv_m;
        let sq = channel_sums(n, s, c, p.x_off as usize, ch, |e| {
            let d = x[e] - mean;
            [d * d, 0.0]
        })[0];
        let var = sq * p.inv_m;
        let inv_std = inv_std_of(var, p.eps);
        let (gamma, beta) = p.gamma_beta(params, ch);
        for b in 0..n {
            let xs = &x[p.x_off as usize + (b * c + ch) * s..][..s];
            let ys = &mut y[p.y_off as usize + (b * c + ch) * s..][..s];
            for (o, &v) in ys.iter_mut().zip(xs) {
                *o = gamma * ((v - mean) * inv_std) + beta;
            }
        }
        // SAFETY: slot ch of `stats`, written by this task only.
        unsafe { *(stats_ptr as *mut [f32; 2]).add(ch) = [mean, var] };
    });
    let save = p.save_off as usize;
    for (ch, &[mean, var]) in stats.iter().enumerate() {
        saved[save + ch] = mean;
        saved[save + c + ch] = inv_std_of(var, p.eps);
        saved[save + 2 * c + ch] = p.gamma_beta(params, ch).0;
        if p.update_running != 0 {
            let keep = 1.0 - p.momentum;
            let (rm, rv) = (p.mean_off as usize + ch, p.var_off as usize + ch);
            state[rm] = keep * state[rm] + p.momentum * mean;
            state[rv] = keep * state[rv] + p.momentum * (var * p.unbias);
        }
    }
}

fn saved_stats(p: &NormParams, saved: &[f32], ch: usize) -> (f32, f32, f32) {
    let (save, c) = (p.save_off as usize, p.c as usize);
    (saved[save + ch], saved[save + c + ch], saved[save + 2 * c + ch])
}

/// (sum(dy), sum(dy x_hat)) of channel ch. dy and x share the layout (offsets differ).
fn backward_sums(p: &NormParams, x: &[f32], dy: &[f32], ch: usize, mean: f32, inv_std: f32) -> [f32; 2] {
    let (n, c, s) = (p.n as usize, p.c as usize, p.s as usize);
    let shift = p.dy_off as isize - p.x_off as isize;
    channel_sums(n, s, c, p.x_off as usize, ch, |e| {
        let g = dy[(e as isize + shift) as usize];
        let x_hat = (x[e] - mean) * inv_std;
        [g, g * x_hat]
    })
}

/// `batch_norm_backward_params`'s contract.
pub fn batch_norm_backward_params(
    pool: &Pool,
    p: &NormParams,
    x: &[f32],
    dy: &[f32],
    grads: &mut [f32],
    saved: &[f32],
) {
    per_channel(pool, p.c as usize, grads, |ch, grads| {
        let (mean, inv_std, _) = saved_stats(p, saved, ch);
        let [sum_dy, sum_dy_xhat] = backward_sums(p, x, dy, ch, mean, inv_std);
        store(&mut grads[p.dgamma_off as usize + ch], sum_dy_xhat, p.accumulate);
        store(&mut grads[p.dbeta_off as usize + ch], sum_dy, p.accumulate);
    });
}

/// `batch_norm_backward_input`'s contract.
pub fn batch_norm_backward_input(pool: &Pool, p: &NormParams, x: &[f32], dy: &[f32], dx: &mut [f32], saved: &[f32]) {
    let (n, c, s) = (p.n as usize, p.c as usize, p.s as usize);
    per_channel(pool, c, dx, |ch, dx| {
        let (mean, inv_std, gamma) = saved_stats(p, saved, ch);
        let scale = gamma * inv_std;
        let [sum_dy, sum_dy_xhat] = backward_sums(p, x, dy, ch, mean, inv_std);
        let (mean_dy, mean_dy_xhat) = (sum_dy * p.inv_m, sum_dy_xhat * p.inv_m);
        for b in 0..n {
            let xs = &x[p.x_off as usize + (b * c + ch) * s..][..s];
            let gs = &dy[p.dy_off as usize + (b * c + ch) * s..][..s];
            let ds = &mut dx[p.dx_off as usize + (b * c + ch) * s..][..s];
            for ((o, &v), &g) in ds.iter_mut().zip(xs).zip(gs) {
                let x_hat = (v - mean) * inv_std;
                store(o, scale * ((g - mean_dy) - x_hat * mean_dy_xhat), p.accumulate);
            }
        }
    });
}
