//! G's exponential moving average of weights (ema.wgsl, `--g-ema`).

use super::{Entry, Family, Slot};
use crate::ir::kernel::groups_1d;
use crate::ir::{BufId, Host, Kernel, Res, Span, UniformLayout};

crate::uniform! {
    /// `EmaParams` in ema.wgsl.
    pub struct EmaParams {
        pub len: u32,
        /// ema = beta * ema + (1 - beta) * params.
        pub beta: f32,
        pub _pad0: u32,
        pub _pad1: u32,
    }
}

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

pub const FAMILY: Family = Family {
    name: "ema",
    wgsl: include_str!("../../shaders/ema.wgsl"),
    f16: false,
    // Every index is guarded by the kernel itself (the WGSL header says how) and every span
    // is checked on the host before a call is recorded: compiled without naga's runtime checks.
    unchecked: true,
    entries: &[Entry { name: "ema_update", slots: &[U(0), R(1), RW(3)] }],
    uniforms: &[EmaParams::INFO],
};

/// `ema` = beta `ema` + (1 - beta) `params` over the first `p.len` values.
#[derive(Clone, Debug)]
pub struct EmaUpdate {
    pub p: EmaParams,
    pub params: BufId,
    pub ema: BufId,
}

impl Kernel for EmaUpdate {
    fn entry(&self) -> &'static str {
        "ema_update"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        Some(bytemuck::bytes_of(&self.p).to_vec())
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.params)), (3, Res::Buf(self.ema))]
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.len as usize)
    }
    fn spans(&self) -> Vec<Span> {
        let n = self.p.len as usize;
        vec![Span::read(self.params, 0, n), Span::write(self.ema, 0, n)]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, params) = (&self.p, self.params);
        host.with_out(self.ema, |b, o| ema_update(p, &b[params], o))
    }
}

/// `ema_update`: ema = beta * ema + (1 - beta) * params over the first `p.len` values.
pub fn ema_update(p: &EmaParams, params: &[f32], ema: &mut [f32]) {
    let len = p.len as usize;
    for (e, &w) in ema[..len].iter_mut().zip(&params[..len]) {
        *e = p.beta * *e + (1.0 - p.beta) * w;
    }
}
