//! Batch normalisation (norm.wgsl), per channel of an NCHW tensor (per feature of a linear
//! layer's output: c = features, s = 1): training mode from the batch's statistics, which it
//! saves for the backward pass and folds into the running statistics; eval mode from the running
//! statistics; the backward pass in one call (parameters and input). Each may end in an
//! activation (y = act(batch norm), its derivative applied to dy) and run over several groups
//! of rows with statistics of their own (D's reals and fakes in one call). Every sum in a fixed
//! order the twins follow; no atomics. Formulas and bindings in the WGSL header.

use super::conv::twin::lane_tree_sum;
use super::conv::LANES;
use super::norm_fast as fast;
use super::{Entry, Family, Slot};
use crate::ir::kernel::groups_1d;
use crate::ir::{BufId, Host, Kernel, Res, Span, UniformLayout};

crate::uniform! {
    /// `NormParams` in norm.wgsl: one batch-norm call over an (n, c, s) tensor, s = h w (1 for a
    /// linear layer). Build it with [`NormParams::new`], which fills `inv_m` and `unbias`, then set
    /// the offsets (norm.wgsl's header says which binding each lives in).
    pub struct NormParams {
        pub n: u32,
        pub c: u32,
        pub s: u32,
        pub x_off: u32,
        pub y_off: u32,
        pub dy_off: u32,
        pub dx_off: u32,
        pub gamma_off: u32,
        pub beta_off: u32,
        /// running_mean, in the state binding.
        pub mean_off: u32,
        /// running_var, in the state binding.
        pub var_off: u32,
        /// The saved statistics, 3c values in the saved binding: mean, inv_std, gamma per channel.
        pub save_off: u32,
        pub dgamma_off: u32,
        pub dbeta_off: u32,
        pub eps: f32,
        pub momentum: f32,
        /// 1 / (n s).
        pub inv_m: f32,
        /// (n s) / (n s - 1), the unbiased variance's factor; 1 when n s = 1 (where PyTorch errors).
        pub unbias: f32,
        /// forward: update running_mean and running_var (a GAN's G step may run D without it).
        pub update_running: u32,
        /// backward: dgamma, dbeta += v instead of = v.
        pub accumulate: u32,
        /// The activation (code) after the normalisation: forward and eval apply it, backward
        /// applies its derivative to dy (the identity when dy is already the gradient before it).
        pub act: u32,
        pub slope: f32,
        /// Batches of `n` rows, one after the other, each with its own statistics (0 or 1: one).
        pub groups: u32,
        /// backward: [`PART_PARAMS`] | [`PART_INPUT`] (set by [`BatchNormBackward`]).
        pub parts: u32,
        /// 1: no affine of its own, gamma 1 and beta 0 (PyTorch's `affine=False`; the first half
        /// of conditional batch norm): gamma_off and beta_off are not read, and the backward pass
        /// writes no dgamma or dbeta.
        pub no_affine: u32,
        pub _pad0: u32,
        pub _pad1: u32,
        pub _pad2: u32,
    }
}

/// batch_norm_backward writes dgamma and dbeta.
pub const PART_PARAMS: u32 = 1;
/// batch_norm_backward writes dx.
pub const PART_INPUT: u32 = 2;

impl NormParams {
    /// A call over (n, c, s) with PyTorch's defaults (eps 1e-5, momentum 0.1), updating the
    /// running statistics, every offset 0. Panics when a channel has no elements.
    pub fn new(n: u32, c: u32, s: u32) -> Self {
        let m = n * s;
        assert!(m >= 1 && c >= 1, "batch norm over (n {n}, c {c}, s {s}): no elements");
        // Computed here, once, so that both backends multiply by the same correctly rounded value.
        let inv_m = 1.0 / m as f32;
        let unbias = if m > 1 { m as f32 / (m - 1) as f32 } else { 1.0 };
        NormParams { n, c, s, eps: 1e-5, momentum: 0.1, inv_m, unbias, update_running: 1, ..Default::default() }
    }

    /// (gamma, beta) of channel ch: the parameters', or (1, 0) without an affine.
    pub fn gamma_beta(&self, params: &[f32], ch: usize) -> (f32, f32) {
        if self.no_affine != 0 {
            return (1.0, 0.0);
        }
        (params[self.gamma_off as usize + ch], params[self.beta_off as usize + ch])
    }

    /// The spans of gamma and beta in the parameters `c` (none without an affine).
    fn affine_spans(&self, c: BufId) -> Vec<Span> {
        if self.no_affine != 0 {
            return vec![];
        }
        let n = self.c as usize;
        vec![Span::read(c, self.gamma_off, n), Span::read(c, self.beta_off, n)]
    }

    /// Elements per channel.
    pub fn m(&self) -> usize {
        (self.n * self.s) as usize
    }

    /// Elements of the (n, c, s) tensor of one group.
    pub fn len(&self) -> usize {
        (self.n * self.c * self.s) as usize
    }

    /// Groups (batches with their own statistics): at least 1.
    pub fn group_count(&self) -> usize {
        self.groups.max(1) as usize
    }

    /// Elements of all groups' tensors.
    pub fn total_len(&self) -> usize {
        self.group_count() * self.len()
    }

    /// The call on group `g` alone: every tensor offset moved to its rows, its saved statistics
    /// at their place, and dgamma/dbeta added to the groups' before it.
    pub fn group(&self, g: usize) -> NormParams {
        let sh = (g * self.len()) as u32;
        NormParams {
            x_off: self.x_off + sh,
            y_off: self.y_off + sh,
            dy_off: self.dy_off + sh,
            dx_off: self.dx_off + sh,
            save_off: self.save_off + (3 * g) as u32 * self.c,
            accumulate: (self.accumulate != 0 || g > 0) as u32,
            groups: 1,
            ..*self
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One workgroup of 256 per channel.
    fn per_channel(&self) -> [u32; 3] {
        groups_1d(self.c as usize * LANES)
    }
}

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

pub const FAMILY: Family = Family {
    name: "norm",
    wgsl: include_str!("../../shaders/norm.wgsl"),
    f16: false,
    // Every index is guarded by the kernel itself (the WGSL header says how) and every span
    // is checked on the host before a call is recorded: compiled without naga's runtime checks.
    unchecked: true,
    entries: &[
        Entry { name: "batch_norm_forward", slots: &[U(0), R(1), R(2), RW(3), RW(4), RW(5)] },
        Entry { name: "batch_norm_backward", slots: &[U(0), R(1), R(2), RW(3), RW(5), R(6), RW(7)] },
        Entry { name: "batch_norm_eval", slots: &[U(0), R(1), R(2), RW(3), RW(4)] },
    ],
    uniforms: &[NormParams::INFO],
};

fn bytes(p: &NormParams) -> Option<Vec<u8>> {
    Some(bytemuck::bytes_of(p).to_vec())
}

/// Training mode: a = x, c = the parameters (gamma, beta), out = y = act(batch norm), state =
/// the running statistics, saved = this pass's statistics (3c per group).
#[derive(Clone, Debug)]
pub struct BatchNormForward {
    pub p: NormParams,
    pub a: BufId,
    pub c: BufId,
    pub out: BufId,
    pub state: BufId,
    pub saved: BufId,
}

impl Kernel for BatchNormForward {
    fn entry(&self) -> &'static str {
        "batch_norm_forward"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn constants(&self) -> Vec<(&'static str, f64)> {
        vec![("ACT", self.p.act as f64)]
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        let b = Res::Buf;
        vec![(1, b(self.a)), (2, b(self.c)), (3, b(self.out)), (4, b(self.state)), (5, b(self.saved))]
    }
    /// Two passes of statistics and the normalisation: about 8 per element.
    fn flops(&self) -> f64 {
        8.0 * self.p.total_len() as f64
    }
    fn workgroups(&self) -> [u32; 3] {
        self.p.per_channel()
    }
    fn spans(&self) -> Vec<Span> {
        let (p, c) = (&self.p, self.p.c as usize);
        let mut s = p.affine_spans(self.c);
        s.extend([
            Span::read(self.a, p.x_off, p.total_len()),
            Span::write(self.out, p.y_off, p.total_len()),
            Span::write(self.state, p.mean_off, c),
            Span::write(self.state, p.var_off, c),
            Span::write(self.saved, p.save_off, 3 * c * p.group_count()),
        ]);
        s
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, a, c, fast, pool) = (&self.p, self.a, self.c, host.fast, host.pool);
        host.with_many([self.out, self.state, self.saved], |b, [y, state, saved]| {
            for g in 0..p.group_count() {
                let q = p.group(g);
                if fast {
                    fast::batch_norm_forward(pool, &q, &b[a], &b[c], y, state, saved)
                } else {
                    batch_norm_forward(&q, &b[a], &b[c], y, state, saved)
                }
            }
            let y = &mut y[p.y_off as usize..][..p.total_len()];
            super::activation::activate_in_place(p.act, p.slope, y);
        })
    }
}

/// Eval mode: a = x, c = the parameters, out = y = act(batch norm), state = the running
/// statistics (read).
#[derive(Clone, Debug)]
pub struct BatchNormEval {
    pub p: NormParams,
    pub a: BufId,
    pub c: BufId,
    pub out: BufId,
    pub state: BufId,
}

impl Kernel for BatchNormEval {
    fn entry(&self) -> &'static str {
        "batch_norm_eval"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn constants(&self) -> Vec<(&'static str, f64)> {
        vec![("ACT", self.p.act as f64)]
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        let b = Res::Buf;
        vec![(1, b(self.a)), (2, b(self.c)), (3, b(self.out)), (4, b(self.state))]
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.total_len())
    }
    fn spans(&self) -> Vec<Span> {
        let (p, c) = (&self.p, self.p.c as usize);
        let mut s = p.affine_spans(self.c);
        s.extend([
            Span::read(self.a, p.x_off, p.total_len()),
            Span::write(self.out, p.y_off, p.total_len()),
            Span::read(self.state, p.mean_off, c),
            Span::read(self.state, p.var_off, c),
        ]);
        s
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, a, c, state) = (&self.p, self.a, self.c, self.state);
        host.with_out(self.out, |b, y| {
            let q = NormParams { n: p.n * p.group_count() as u32, groups: 1, ..*p };
            batch_norm_eval(&q, &b[a], &b[c], y, &b[state]);
            super::activation::activate_in_place(p.act, p.slope, &mut y[p.y_off as usize..][..p.total_len()]);
        })
    }
}

/// The backward pass (`batch_norm_backward`): from dy, the gradient of y = act(batch norm),
/// with dz = dy act'(y) (`p.act`; the identity when dy already is dz): dgamma and dbeta (+)=
/// into `grads` when given, dx = into `dx` when given. a = x, saved = the forward pass's
/// statistics; y at `y_off` of `y`.
#[derive(Clone, Debug)]
pub struct BatchNormBackward {
    pub p: NormParams,
    pub a: BufId,
    pub dy: BufId,
    pub y: BufId,
    pub saved: BufId,
    pub grads: Option<BufId>,
    pub dx: Option<BufId>,
}

impl BatchNormBackward {
    /// The params with `parts` set from the outputs given.
    pub fn params(&self) -> NormParams {
        let parts = super::backward_parts(self.grads.is_some(), self.dx.is_some());
        NormParams { parts, ..self.p }
    }

    fn identity(&self) -> bool {
        self.p.act == super::activation::Activation::Identity.code()
    }
}

impl Kernel for BatchNormBackward {
    fn entry(&self) -> &'static str {
        "batch_norm_backward"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.params())
    }
    fn constants(&self) -> Vec<(&'static str, f64)> {
        vec![("ACT", self.p.act as f64)]
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        let b = Res::Buf;
        let one = self.grads.or(self.dx).expect("batch_norm_backward writes dgamma or dx");
        vec![
            (1, b(self.a)),
            (2, b(self.dy)),
            (3, b(self.grads.unwrap_or(one))),
            (5, b(self.saved)),
            (6, b(if self.identity() { self.dy } else { self.y })),
            (7, b(self.dx.unwrap_or(one))),
        ]
    }
    fn unused_slots(&self) -> Vec<u32> {
        [(3, self.grads.is_none()), (7, self.dx.is_none())].into_iter().filter(|t| t.1).map(|t| t.0).collect()
    }
    /// The two sums and dx: about 10 per element.
    fn flops(&self) -> f64 {
        10.0 * self.p.total_len() as f64
    }
    fn workgroups(&self) -> [u32; 3] {
        self.p.per_channel()
    }
    fn spans(&self) -> Vec<Span> {
        let (p, c) = (&self.p, self.p.c as usize);
        let mut s = vec![
            Span::read(self.a, p.x_off, p.total_len()),
            Span::read(self.dy, p.dy_off, p.total_len()),
            Span::read(self.saved, p.save_off, 3 * c * p.group_count()),
        ];
        if !self.identity() {
            s.push(Span::read(self.y, p.y_off, p.total_len()));
        }
        if let Some(g) = self.grads {
            s.push(Span::write(g, p.dgamma_off, c));
            s.push(Span::write(g, p.dbeta_off, c));
        }
        if let Some(dx) = self.dx {
            s.push(Span::write(dx, p.dx_off, p.total_len()));
        }
        s
    }
    fn run_cpu(&self, host: &mut Host) {
        backward_cpu(self, host)
    }
}

thread_local! {
    /// batch_norm_backward's dz, per thread (see `kernels::scratch`).
    static DZ: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}
static DZ_MARK: super::scratch::HighWater = super::scratch::HighWater::new();

/// `batch_norm_backward`'s twin: dz = dy act'(y) (the `activation_backward` twin or its fast
/// path) into per-thread scratch, then per group `batch_norm_backward_params` and
/// `batch_norm_backward_input` on it (or their fast paths): the bits of the activation's and
/// batch norm's separate kernels.
fn backward_cpu(op: &BatchNormBackward, host: &mut Host) {
    use super::activation::dz_into_scratch;
    let p = op.params();
    let (fast, pool, len) = (host.fast, host.pool, p.total_len());
    let (x, dy, y, saved) = (op.a, op.dy, op.y, op.saved);
    DZ.with(|cell| {
        let mut scratch = cell.borrow_mut();
        let run =
            |b: &[Vec<f32>], mut grads: Option<&mut [f32]>, mut dx: Option<&mut [f32]>, scratch: &mut Vec<f32>| {
                let (dz, dy_off): (&[f32], u32) = if op.identity() {
                    (&b[dy], p.dy_off)
                } else {
                    let (yv, dyv) = ((&b[y][..], p.y_off), (&b[dy][..], p.dy_off));
                    (dz_into_scratch(pool, fast, (p.act, p.slope), yv, dyv, len, &DZ_MARK, scratch), 0)
                };
                for g in 0..p.group_count() {
                    let q = NormParams { dy_off, ..p }.group(g);
                    if let Some(grads) = grads.as_deref_mut() {
                        if fast {
                            fast::batch_norm_backward_params(pool, &q, &b[x], dz, grads, &b[saved])
                        } else {
                            batch_norm_backward_params(&q, &b[x], dz, grads, &b[saved])
                        }
                    }
                    if let Some(dx) = dx.as_deref_mut() {
                        let q = NormParams { accumulate: 0, ..q };
                        if fast {
                            fast::batch_norm_backward_input(pool, &q, &b[x], dz, dx, &b[saved])
                        } else {
                            batch_norm_backward_input(&q, &b[x], dz, dx, &b[saved])
                        }
                    }
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

// The CPU twins.

/// out[idx] = v, or += v when accumulating (`store` in norm.wgsl).
fn store(out: &mut [f32], idx: usize, v: f32, accumulate: u32) {
    out[idx] = if accumulate != 0 { out[idx] + v } else { v };
}

/// Element e = b s + sp of channel ch in a tensor at `off` (`element` in norm.wgsl).
fn element(p: &NormParams, off: u32, ch: usize, e: usize) -> usize {
    let (c, s) = (p.c as usize, p.s as usize);
    off as usize + ((e / s) * c + ch) * s + e % s
}

/// 1 / sqrt(var + eps) in f32 (the GPU: inverseSqrt, within a few ulp of this).
fn inv_std_of(var: f32, eps: f32) -> f32 {
    1.0 / (var + eps).sqrt()
}

/// (mean, biased variance) of channel ch, in the kernel's order.
fn batch_stats(p: &NormParams, x: &[f32], ch: usize) -> (f32, f32) {
    let m = p.m();
    let mean = lane_tree_sum(m, |e| [x[element(p, p.x_off, ch, e)], 0.0])[0] * p.inv_m;
    let sq = lane_tree_sum(m, |e| {
        let d = x[element(p, p.x_off, ch, e)] - mean;
        [d * d, 0.0]
    });
    (mean, sq[0] * p.inv_m)
}

/// Training-mode batch norm (`batch_norm_forward`): a = x, c = parameters (gamma, beta),
/// out = y, state = running statistics (updated if `update_running`), saved = the pass's
/// statistics.
pub fn batch_norm_forward(
    p: &NormParams,
    x: &[f32],
    params: &[f32],
    y: &mut [f32],
    state: &mut [f32],
    saved: &mut [f32],
) {
    let c = p.c as usize;
    for ch in 0..c {
        let (mean, var) = batch_stats(p, x, ch);
        let inv_std = inv_std_of(var, p.eps);
        let (gamma, beta) = p.gamma_beta(params, ch);
        for e in 0..p.m() {
            let x_hat = (x[element(p, p.x_off, ch, e)] - mean) * inv_std;
            y[element(p, p.y_off, ch, e)] = gamma * x_hat + beta;
        }
        let save = p.save_off as usize;
        saved[save + ch] = mean;
        saved[save + c + ch] = inv_std;
        saved[save + 2 * c + ch] = gamma;
        if p.update_running != 0 {
            let keep = 1.0 - p.momentum;
            let (rm, rv) = (p.mean_off as usize + ch, p.var_off as usize + ch);
            state[rm] = keep * state[rm] + p.momentum * mean;
            state[rv] = keep * state[rv] + p.momentum * (var * p.unbias);
        }
    }
}

/// The saved (mean, inv_std, gamma) of channel ch.
fn saved_stats(p: &NormParams, saved: &[f32], ch: usize) -> (f32, f32, f32) {
    let (save, c) = (p.save_off as usize, p.c as usize);
    (saved[save + ch], saved[save + c + ch], saved[save + 2 * c + ch])
}

/// (sum(dy), sum(dy x_hat)) of channel ch, in the kernel's order.
fn backward_sums(p: &NormParams, x: &[f32], dy: &[f32], ch: usize, mean: f32, inv_std: f32) -> [f32; 2] {
    lane_tree_sum(p.m(), |e| {
        let g = dy[element(p, p.dy_off, ch, e)];
        let x_hat = (x[element(p, p.x_off, ch, e)] - mean) * inv_std;
        [g, g * x_hat]
    })
}

/// dgamma (+)= sum(dy x_hat), dbeta (+)= sum(dy) (`batch_norm_backward_params`): a = x, c = dy,
/// out = the flat gradient buffer, saved = the pass's statistics.
pub fn batch_norm_backward_params(p: &NormParams, x: &[f32], dy: &[f32], grads: &mut [f32], saved: &[f32]) {
    for ch in 0..p.c as usize {
        let (mean, inv_std, _) = saved_stats(p, saved, ch);
        let [sum_dy, sum_dy_xhat] = backward_sums(p, x, dy, ch, mean, inv_std);
        store(grads, p.dgamma_off as usize + ch, sum_dy_xhat, p.accumulate);
        store(grads, p.dbeta_off as usize + ch, sum_dy, p.accumulate);
    }
}

/// dx (+)= gamma inv_std (dy - mean(dy) - x_hat mean(dy x_hat)) (`batch_norm_backward_input`):
/// a = x, c = dy, out = dx, saved = the pass's statistics (gamma included).
pub fn batch_norm_backward_input(p: &NormParams, x: &[f32], dy: &[f32], dx: &mut [f32], saved: &[f32]) {
    for ch in 0..p.c as usize {
        let (mean, inv_std, gamma) = saved_stats(p, saved, ch);
        let scale = gamma * inv_std;
        let [sum_dy, sum_dy_xhat] = backward_sums(p, x, dy, ch, mean, inv_std);
        let (mean_dy, mean_dy_xhat) = (sum_dy * p.inv_m, sum_dy_xhat * p.inv_m);
        for e in 0..p.m() {
            let g = dy[element(p, p.dy_off, ch, e)];
            let x_hat = (x[element(p, p.x_off, ch, e)] - mean) * inv_std;
            store(dx, element(p, p.dx_off, ch, e), scale * ((g - mean_dy) - x_hat * mean_dy_xhat), p.accumulate);
        }
    }
}

/// Eval-mode batch norm (`batch_norm_eval`): a = x, c = parameters (gamma, beta), out = y,
/// state = the running statistics (read only).
pub fn batch_norm_eval(p: &NormParams, x: &[f32], params: &[f32], y: &mut [f32], state: &[f32]) {
    let (c, s) = (p.c as usize, p.s as usize);
    for o in 0..p.n as usize * c * s {
        let ch = (o / s) % c;
        let inv_std = inv_std_of(state[p.var_off as usize + ch], p.eps);
        let x_hat = (x[p.x_off as usize + o] - state[p.mean_off as usize + ch]) * inv_std;
        let (gamma, beta) = p.gamma_beta(params, ch);
        y[p.y_off as usize + o] = gamma * x_hat + beta;
    }
}
