//! The linear layers' kernels (matmul.wgsl, matmul_f16.wgsl): forward with bias and activation
//! fused, the input and weight gradients, and the bias gradient. Layouts in the WGSL header:
//! x (M, K), w (N, K) like torch.nn.Linear, y (M, N), each at an element offset of its binding.

pub mod fast;
pub mod twin;

use super::activation::Activation;
use super::{Entry, Family, Slot};
use crate::ir::kernel::groups_1d;
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
        pub _pad1: u32,
    }
}

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

const ABC: &[Slot] = &[U(0), R(1), R(2), RW(3)];

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

fn bytes(p: &MatmulParams) -> Option<Vec<u8>> {
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
        "matmul_forward"
    }
    fn entry_f16(&self) -> Option<&'static str> {
        Some("matmul_forward_f16")
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.a)), (2, Res::Buf(self.c)), (3, Res::Buf(self.out))]
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
    fn run_cpu(&self, host: &mut Host) {
        let (p, a, c, fast, pool) = (&self.p, self.a, self.c, host.fast, host.pool);
        host.with_out(self.out, |b, o| {
            if fast {
                fast::matmul_forward(pool, p, &b[a], &b[c], o)
            } else {
                twin::matmul_forward(p, &b[a], &b[c], o)
            }
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
