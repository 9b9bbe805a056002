//! The CPU twins of matmul.wgsl: plain loops with the kernels' names, on the same flat buffers
//! and offsets. The oracle for the GPU kernels and for the fast paths in `fast.rs`.

use super::MatmulParams;
use crate::kernels::activation::activate;

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
            let bias = if p.no_bias != 0 { 0.0 } else { c[bias_off + j] };
            out[out_off + i * n + j] = activate(acc + bias, p.act, p.slope);
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

thread_local! {
    /// matmul_backward's dz, per thread (see `kernels::scratch`).
    static DZ: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}
static DZ_MARK: crate::kernels::scratch::HighWater = crate::kernels::scratch::HighWater::new();

/// `matmul_backward`: dz = dy * act'(y) (the `activation_backward` twin, or its fast path, into
/// per-thread scratch; dy itself for the identity), then from it dw, db and dx exactly as
/// `matmul_backward_weight`, `bias_backward` and `matmul_backward_input` compute them (their
/// fast paths when `host.fast`), in that order, and dx scaled by act_in'(x) as
/// `activation_backward` would: the bits of the four kernels on stored values.
pub fn matmul_backward(op: &super::MatmulBackward, host: &mut crate::ir::Host) {
    use crate::kernels::activation::{dz_into_scratch, Activation};
    let p = op.params();
    let (fast, pool, len, state) = (host.fast, host.pool, (p.m * p.n) as usize, *host.state);
    let (dy, y, w, x) = (op.dy, op.y, op.w, op.x);
    DZ.with(|cell| {
        let mut scratch = cell.borrow_mut();
        let run = |b: &[Vec<f32>], grads: Option<&mut [f32]>, dx: Option<&mut [f32]>, scratch: &mut Vec<f32>| {
            let (dz, a_off): (&[f32], u32) = if p.act == Activation::Identity.code() {
                (&b[dy], p.a_off)
            } else {
                let (yv, dyv) = ((&b[y][..], p.y_off), (&b[dy][..], p.a_off));
                (dz_into_scratch(pool, fast, (p.act, p.slope), yv, dyv, len, &DZ_MARK, scratch), 0)
            };
            if let Some(g) = grads {
                // Per group of rows: the sums of separate passes, added in order.
                let groups = p.groups.max(1);
                let rows = p.m / groups;
                for k in 0..groups {
                    let q = MatmulParams {
                        m: rows,
                        a_off: a_off + k * rows * p.n,
                        c_off: p.x_off + k * rows * p.k,
                        accumulate: (p.accumulate != 0 || k > 0) as u32,
                        ..p
                    };
                    if fast {
                        super::fast::matmul_backward_weight(pool, &q, dz, &b[x], g);
                    } else {
                        matmul_backward_weight(&q, dz, &b[x], g);
                    }
                    if p.no_bias == 0 {
                        if fast {
                            super::fast::bias_backward(pool, &q, dz, g);
                        } else {
                            bias_backward(&q, dz, g);
                        }
                    }
                }
            }
            if let Some(dx) = dx {
                let q = MatmulParams { a_off, out_off: p.dx_off, accumulate: 0, ..p };
                if fast {
                    super::fast::matmul_backward_input(pool, &q, dz, &b[w], dx);
                } else {
                    matmul_backward_input(&q, dz, &b[w], dx);
                }
                let (o, len) = (p.dx_off as usize, (p.m * p.k) as usize);
                crate::kernels::activation::scale_by_grad(
                    p.act_in,
                    p.slope_in,
                    &b[x][p.x_off as usize..][..len],
                    &mut dx[o..o + len],
                );
                // Then the dropout below the layer, as its own call on dx would (twin order).
                p.drop.apply(&state, p.m as usize, p.k as usize, o, dx);
            }
        };
        match (op.grads, op.dx) {
            (Some(g), Some(d)) => host.with_outs(g, d, |b, g, d| run(b, Some(g), Some(d), &mut scratch)),
            (Some(g), None) => host.with_out(g, |b, g| run(b, Some(g), None, &mut scratch)),
            (None, Some(d)) => host.with_out(d, |b, d| run(b, None, Some(d), &mut scratch)),
            (None, None) => {}
        }
    });
}
