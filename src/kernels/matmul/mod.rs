//! The linear layers' kernels (matmul.wgsl, matmul_f16.wgsl): forward with bias and activation
//! fused, the input and weight gradients, and the bias gradient. Layouts in the WGSL header:
//! x (M, K), w (N, K) like torch.nn.Linear, y (M, N), each at an element offset of its binding.

pub mod fast;
pub mod tiled;
pub mod twin;

pub use tiled::MatmulForwardTiled;

use super::activation::Activation;
use super::random::DropMask;
use super::{Entry, Family, Slot};
use crate::ir::kernel::{groups_1d, groups_flat};
use crate::ir::{BufId, Host, Kernel, Res, Span, UniformLayout};

crate::uniform! {
    /// `MatmulParams` in matmul.wgsl and matmul_f16.wgsl.
    pub struct MatmulParams {
        pub m: u32,
        pub n: u32,
        pub k: u32,
        /// An [`Activation`] code (forward only).
        pub act: u32,
        pub a_off: u32,
        pub c_off: u32,
        pub out_off: u32,
        pub bias_off: u32,
        pub slope: f32,
        pub accumulate: u32,
        /// forward: 1 = no bias (nothing is read at `bias_off`).
        pub no_bias: u32,
        /// matmul_backward: the activation (code) of the layer before, whose output x is: dx is
        /// scaled by its derivative at x as it is stored.
        pub act_in: u32,
        /// matmul_backward: y (the activation's output, in dy's layout) in binding 4.
        pub y_off: u32,
        /// matmul_backward: x in binding 5.
        pub x_off: u32,
        /// matmul_backward: dx in binding 6.
        pub dx_off: u32,
        /// matmul_backward: [`PART_WEIGHT`] | [`PART_INPUT`] (set by [`MatmulBackward`]).
        pub parts: u32,
        /// matmul_backward: `act_in`'s slope.
        pub slope_in: f32,
        /// matmul_backward on the CPU: dw and db summed per group of m / groups rows, each
        /// added to the ones before (the order of separate passes; 0 or 1: one). The GPU sums
        /// all rows at once.
        pub groups: u32,
        pub _pad2: u32,
        pub _pad3: u32,
        /// The dropout fused into the call (off: none): matmul_forward masks y as it stores it
        /// (the dropout after the layer), matmul_backward masks dx (the dropout below it); the
        /// `_dropout` entry points, which bind the training state for the step.
        pub drop: DropMask,
    }
}

/// matmul_backward computes dw (and db unless `no_bias`).
pub const PART_WEIGHT: u32 = 1;
/// matmul_backward computes dx.
pub const PART_INPUT: u32 = 2;

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

const ABC: &[Slot] = &[U(0), R(1), R(2), RW(3)];
const BACKWARD: &[Slot] = &[U(0), R(1), R(2), RW(3), R(4), R(5), RW(6)];
const BACKWARD_DROPOUT: &[Slot] = &[U(0), R(1), R(2), RW(3), R(4), R(5), RW(6), U(7)];

pub const FAMILY: Family = Family {
    name: "matmul",
    wgsl: include_str!("../../../shaders/matmul.wgsl"),
    f16: false,
    // Every read is clamped into its matrix and every write guarded; the spans are checked on
    // the host before any call is recorded. Without naga's checks the inner loops run faster.
    unchecked: true,
    entries: &[
        Entry { name: "matmul_forward", slots: ABC },
        Entry { name: "matmul_backward_input", slots: ABC },
        Entry { name: "matmul_backward_weight", slots: ABC },
        Entry { name: "bias_backward", slots: &[U(0), R(1), RW(3)] },
        Entry { name: "matmul_backward", slots: BACKWARD },
        Entry { name: "matmul_forward_dropout", slots: &[U(0), R(1), R(2), RW(3), U(7)] },
        Entry { name: "matmul_backward_dropout", slots: BACKWARD_DROPOUT },
    ],
    uniforms: &[MatmulParams::INFO],
};

/// matmul_forward tiled through workgroup memory, for real GPUs (`tiled.rs`).
pub const FAMILY_TILED: Family = Family {
    name: "matmul_tiled",
    wgsl: include_str!("../../../shaders/matmul_tiled.wgsl"),
    f16: false,
    // Every read is clamped into its matrix and every write guarded (the WGSL header), and the
    // spans are checked on the host before any call is recorded.
    unchecked: true,
    entries: &[
        Entry { name: "matmul_forward_tiled", slots: ABC },
        Entry { name: "matmul_forward_tiled_dropout", slots: &[U(0), R(1), R(2), RW(3), U(7)] },
    ],
    uniforms: &[MatmulParams::INFO],
};

/// f16 storage: f16 buffers at slots 1-3, f32 ones at 5-7.
pub const FAMILY_F16: Family = Family {
    name: "matmul_f16",
    wgsl: include_str!("../../../shaders/matmul_f16.wgsl"),
    f16: true,
    unchecked: true,
    entries: &[
        Entry { name: "matmul_forward_f16", slots: &[U(0), R(1), R(2), RW(3)] },
        Entry { name: "matmul_backward_input_f16", slots: &[U(0), R(5), R(2), RW(7)] },
        Entry { name: "matmul_backward_weight_f16", slots: &[U(0), R(5), R(2), RW(7)] },
    ],
    uniforms: &[MatmulParams::INFO],
};

impl MatmulParams {
    /// `matmul_forward` of a linear layer on `rows` rows: weight (out, in) at `w_off` and bias at
    /// `b_off` of the same buffer, then `act`.
    pub fn linear(rows: usize, fan_in: usize, fan_out: usize, act: Activation, w_off: usize, b_off: usize) -> Self {
        MatmulParams {
            m: rows as u32,
            n: fan_out as u32,
            k: fan_in as u32,
            act: act.code(),
            c_off: w_off as u32,
            bias_off: b_off as u32,
            slope: act.slope(),
            ..Default::default()
        }
    }

    fn mnk(&self) -> (usize, usize, usize) {
        (self.m as usize, self.n as usize, self.k as usize)
    }
}

/// Workgroups of 16x16 invocations, each owning a 4x4 block: 64x64 outputs per workgroup.
fn tiles(cols: u32, rows: u32) -> [u32; 3] {
    [cols.div_ceil(64).max(1), rows.div_ceil(64).max(1), 1]
}

pub(crate) fn bytes(p: &MatmulParams) -> Option<Vec<u8>> {
    Some(bytemuck::bytes_of(p).to_vec())
}

/// y = act(x w^T + b): a = x, c = w (and b at `p.bias_off`), out = y.
#[derive(Clone, Debug)]
pub struct MatmulForward {
    pub p: MatmulParams,
    pub a: BufId,
    pub c: BufId,
    pub out: BufId,
}

impl Kernel for MatmulForward {
    fn entry(&self) -> &'static str {
        if self.p.drop.on() {
            "matmul_forward_dropout"
        } else {
            "matmul_forward"
        }
    }
    fn entry_f16(&self) -> Option<&'static str> {
        (!self.p.drop.on()).then_some("matmul_forward_f16")
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        let mut b = vec![(1, Res::Buf(self.a)), (2, Res::Buf(self.c)), (3, Res::Buf(self.out))];
        b.extend(self.p.drop.state_binding());
        b
    }
    fn flops(&self) -> f64 {
        let (m, n, k) = self.p.mnk();
        2.0 * (m * n * k) as f64
    }
    fn workgroups(&self) -> [u32; 3] {
        tiles(self.p.n, self.p.m)
    }
    fn spans(&self) -> Vec<Span> {
        let (p, (m, n, k)) = (&self.p, self.p.mnk());
        vec![
            Span::read(self.a, p.a_off, m * k),
            Span::read(self.c, p.c_off, n * k),
            Span::read(self.c, p.bias_off, if p.no_bias != 0 { 0 } else { n }),
            Span::write(self.out, p.out_off, m * n),
        ]
    }
    fn gpu_variant(&self, device: crate::ir::kernel::DeviceClass) -> Option<crate::ir::Op> {
        tiled::forward_variant(self, device)
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, a, c, fast, pool, state) = (&self.p, self.a, self.c, host.fast, host.pool, *host.state);
        host.with_out(self.out, |b, o| {
            if fast {
                fast::matmul_forward(pool, p, &b[a], &b[c], o)
            } else {
                twin::matmul_forward(p, &b[a], &b[c], o)
            }
            // Then the dropout after the layer, as its own call would (twin order).
            p.drop.apply(&state, p.m as usize, p.n as usize, p.out_off as usize, o);
        })
    }
}

/// dx = dz w: a = dz, c = w, out = dx.
#[derive(Clone, Debug)]
pub struct MatmulBackwardInput {
    pub p: MatmulParams,
    pub a: BufId,
    pub c: BufId,
    pub out: BufId,
}

impl Kernel for MatmulBackwardInput {
    fn entry(&self) -> &'static str {
        "matmul_backward_input"
    }
    fn entry_f16(&self) -> Option<&'static str> {
        Some("matmul_backward_input_f16")
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.a)), (2, Res::Buf(self.c)), (3, Res::Buf(self.out))]
    }
    fn flops(&self) -> f64 {
        let (m, n, k) = self.p.mnk();
        2.0 * (m * n * k) as f64
    }
    fn workgroups(&self) -> [u32; 3] {
        tiles(self.p.k, self.p.m)
    }
    fn spans(&self) -> Vec<Span> {
        let (p, (m, n, k)) = (&self.p, self.p.mnk());
        vec![
            Span::read(self.a, p.a_off, m * n),
            Span::read(self.c, p.c_off, n * k),
            Span::write(self.out, p.out_off, m * k),
        ]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, a, c, fast, pool) = (&self.p, self.a, self.c, host.fast, host.pool);
        host.with_out(self.out, |b, o| {
            if fast {
                fast::matmul_backward_input(pool, p, &b[a], &b[c], o)
            } else {
                twin::matmul_backward_input(p, &b[a], &b[c], o)
            }
        })
    }
}

/// dw (+)= dz^T x: a = dz, c = x, out = the flat gradient buffer (dw at `p.out_off`).
#[derive(Clone, Debug)]
pub struct MatmulBackwardWeight {
    pub p: MatmulParams,
    pub a: BufId,
    pub c: BufId,
    pub out: BufId,
}

impl Kernel for MatmulBackwardWeight {
    fn entry(&self) -> &'static str {
        "matmul_backward_weight"
    }
    fn entry_f16(&self) -> Option<&'static str> {
        Some("matmul_backward_weight_f16")
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.a)), (2, Res::Buf(self.c)), (3, Res::Buf(self.out))]
    }
    fn flops(&self) -> f64 {
        let (m, n, k) = self.p.mnk();
        2.0 * (m * n * k) as f64
    }
    fn workgroups(&self) -> [u32; 3] {
        tiles(self.p.k, self.p.n)
    }
    fn spans(&self) -> Vec<Span> {
        let (p, (m, n, k)) = (&self.p, self.p.mnk());
        vec![
            Span::read(self.a, p.a_off, m * n),
            Span::read(self.c, p.c_off, m * k),
            Span::write(self.out, p.out_off, n * k),
        ]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, a, c, fast, pool) = (&self.p, self.a, self.c, host.fast, host.pool);
        host.with_out(self.out, |b, o| {
            if fast {
                fast::matmul_backward_weight(pool, p, &b[a], &b[c], o)
            } else {
                twin::matmul_backward_weight(p, &b[a], &b[c], o)
            }
        })
    }
}

/// db (+)= column sums of dz: a = dz, out = the flat gradient buffer (db at `p.bias_off`).
#[derive(Clone, Debug)]
pub struct BiasBackward {
    pub p: MatmulParams,
    pub a: BufId,
    pub out: BufId,
}

impl Kernel for BiasBackward {
    fn entry(&self) -> &'static str {
        "bias_backward"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.a)), (3, Res::Buf(self.out))]
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.n as usize)
    }
    fn spans(&self) -> Vec<Span> {
        let (p, (m, n, _)) = (&self.p, self.p.mnk());
        vec![Span::read(self.a, p.a_off, m * n), Span::write(self.out, p.bias_off, n)]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, a, fast, pool) = (&self.p, self.a, host.fast, host.pool);
        host.with_out(self.out, |b, o| {
            if fast {
                fast::bias_backward(pool, p, &b[a], o)
            } else {
                twin::bias_backward(p, &b[a], o)
            }
        })
    }
}

/// A linear layer's backward pass in one dispatch (`matmul_backward`): from dy, the gradient of
/// its output y = act(x w^T + b), with dz = dy * act'(y) computed as dy is loaded: dw (+)= dz^T x
/// and db (+)= the column sums of dz into `grads` (when given; db unless `p.no_bias`), and
/// dx = (dz w) * act_in'(x) (when `dx` is given). Offsets: dy `a_off`, y `y_off`, w `c_off`, x
/// `x_off`, dw `out_off`, db `bias_off`, dx `dx_off`; `p.act`, `p.slope` the activation applied
/// on load (the identity when dy is already dz), `p.act_in`, `p.slope_in` the one applied to dx.
#[derive(Clone, Debug)]
pub struct MatmulBackward {
    pub p: MatmulParams,
    pub dy: BufId,
    pub y: BufId,
    pub w: BufId,
    pub x: BufId,
    pub grads: Option<BufId>,
    pub dx: Option<BufId>,
}

impl MatmulBackward {
    /// The params with `parts` set from the outputs given.
    pub fn params(&self) -> MatmulParams {
        let parts = if self.grads.is_some() { PART_WEIGHT } else { 0 } | if self.dx.is_some() { PART_INPUT } else { 0 };
        MatmulParams { parts, ..self.p }
    }

    fn identity(&self) -> bool {
        self.p.act == Activation::Identity.code()
    }

    /// Workgroups of each part, in grid order: dw tiles, db groups, dx tiles.
    fn part_groups(&self) -> [usize; 3] {
        let (m, n, k) = self.p.mnk();
        let tiles = |cols: usize, rows: usize| cols.div_ceil(64) * rows.div_ceil(64);
        let w = self.grads.is_some();
        [
            if w { tiles(k, n) } else { 0 },
            if w && self.p.no_bias == 0 { n.div_ceil(256) } else { 0 },
            if self.dx.is_some() { tiles(k, m) } else { 0 },
        ]
    }
}

impl Kernel for MatmulBackward {
    fn entry(&self) -> &'static str {
        if self.p.drop.on() {
            "matmul_backward_dropout"
        } else {
            "matmul_backward"
        }
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.params())
    }
    fn constants(&self) -> Vec<(&'static str, f64)> {
        vec![("ACT", self.p.act as f64), ("ACT_IN", self.p.act_in as f64)]
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        let one = self.grads.or(self.dx).expect("matmul_backward computes dw or dx");
        let mut b = vec![
            (1, Res::Buf(self.dy)),
            (2, Res::Buf(self.w)),
            (3, Res::Buf(self.grads.unwrap_or(one))),
            (4, Res::Buf(if self.identity() { self.dy } else { self.y })),
            (5, Res::Buf(self.x)),
            (6, Res::Buf(self.dx.unwrap_or(one))),
        ];
        b.extend(self.p.drop.state_binding());
        b
    }
    fn unused_slots(&self) -> Vec<u32> {
        [(3, self.grads.is_none()), (6, self.dx.is_none())].into_iter().filter(|t| t.1).map(|t| t.0).collect()
    }
    fn flops(&self) -> f64 {
        let (m, n, k) = self.p.mnk();
        let parts = self.grads.is_some() as usize + self.dx.is_some() as usize;
        (2 * m * n * k * parts + m * n) as f64
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_flat(self.part_groups().iter().sum())
    }
    fn spans(&self) -> Vec<Span> {
        let (p, (m, n, k)) = (&self.p, self.p.mnk());
        let mut s = vec![Span::read(self.dy, p.a_off, m * n)];
        if !self.identity() {
            s.push(Span::read(self.y, p.y_off, m * n));
        }
        if self.grads.is_some() || (self.dx.is_some() && p.act_in != Activation::Identity.code()) {
            s.push(Span::read(self.x, p.x_off, m * k));
        }
        if let Some(g) = self.grads {
            s.push(Span::write(g, p.out_off, n * k));
            if p.no_bias == 0 {
                s.push(Span::write(g, p.bias_off, n));
            }
        }
        if let Some(dx) = self.dx {
            s.push(Span::read(self.w, p.c_off, n * k));
            s.push(Span::write(dx, p.dx_off, m * k));
        }
        s
    }
    fn run_cpu(&self, host: &mut Host) {
        twin::matmul_backward(self, host)
    }
}
