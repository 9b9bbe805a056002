//! matmul_forward for real GPUs (matmul_tiled.wgsl): tiles staged in workgroup memory, as
//! tfjs-backend-webgpu and ONNX Runtime's WebGPU provider build theirs, with the tile size a
//! pipeline constant picked by shape; and the rule that picks it or the register-blocked
//! matmul_forward (lavapipe's kernel) by the adapter's class. The GPU executor asks every op for
//! its variant on the device (`ir::Kernel::gpu_variant`) when it compiles a section; the CPU
//! runs the same twins for both, so the choice changes nothing there, nor any dispatch count.
//!
//! # Which kernel
//!
//! `SHADERGAN_KERNELS` (read once; [`with_kernels`] on one thread for tests and `bench`):
//! - `auto` (the default): on an adapter that emulates a GPU on the CPU (lavapipe's llvmpipe,
//!   WARP), the register-blocked kernels every family was tuned with there (workgroup memory
//!   made them 2-3x slower on lavapipe: conv/mod.rs has the measurements); on any other adapter
//!   the tiled kernel, its tile the largest of 64, 32 and 16 that still gives the product
//!   [`TARGET_WORKGROUPS`] workgroups, else 16.
//! - `register`: the register-blocked kernels everywhere.
//! - `tiled64`, `tiled32`, `tiled16`: the tiled kernel with that tile, everywhere.
//!
//! The target is a guess from the anchors' designs (a GPU wants several workgroups per compute
//! unit; an H100 has 132): which tile wins at which shape is **not yet measured** on a GPU;
//! `bench --matmul` compares the four kernels at the models' shapes in one run.

use std::cell::Cell;
use std::sync::OnceLock;

use super::{bytes, MatmulForward, MatmulParams};
use crate::ir::kernel::{groups_flat, DeviceClass};
use crate::ir::{BufId, Host, Kernel, Op, Res, Span};

/// The workgroup count below which a tile is too large for the product.
pub const TARGET_WORKGROUPS: usize = 256;

/// Which matmul kernel the GPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// By the adapter's class and the shape (the module header).
    Auto,
    /// matmul.wgsl's register-blocked kernels.
    Register,
    /// matmul_tiled.wgsl with tiles of 4 WG x 4 WG (WG 16, 8 or 4).
    Tiled(u32),
}

impl Kernels {
    pub fn parse(s: &str) -> Option<Kernels> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Some(Kernels::Auto),
            "register" | "lavapipe" => Some(Kernels::Register),
            "tiled64" => Some(Kernels::Tiled(16)),
            "tiled32" => Some(Kernels::Tiled(8)),
            "tiled16" => Some(Kernels::Tiled(4)),
            _ => None,
        }
    }

    /// "auto", "register", "tiled64", ...
    pub fn name(self) -> String {
        match self {
            Kernels::Auto => "auto".into(),
            Kernels::Register => "register".into(),
            Kernels::Tiled(wg) => format!("tiled{}", 4 * wg),
        }
    }
}

thread_local! {
    static FORCED: Cell<Option<Kernels>> = const { Cell::new(None) };
}

/// Runs `f` with every section compiled on this thread using `k`, whatever SHADERGAN_KERNELS
/// says; the previous choice comes back afterwards, even on a panic.
pub fn with_kernels<R>(k: Kernels, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Kernels>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(FORCED.with(|c| c.replace(Some(k))));
    f()
}

/// The choice in force: [`with_kernels`]'s, else SHADERGAN_KERNELS's (an unknown value is
/// reported once on stderr and read as auto), else auto.
pub fn kernels() -> Kernels {
    static ENV: OnceLock<Kernels> = OnceLock::new();
    FORCED.with(|c| c.get()).unwrap_or_else(|| {
        *ENV.get_or_init(|| match std::env::var("SHADERGAN_KERNELS") {
            Err(_) => Kernels::Auto,
            Ok(v) => Kernels::parse(&v).unwrap_or_else(|| {
                eprintln!(
                    "warning: SHADERGAN_KERNELS={v} is not auto, register, tiled64, tiled32 or tiled16; using auto"
                );
                Kernels::Auto
            }),
        })
    })
}

/// Workgroups of the tiled kernel with tiles of 4 wg x 4 wg.
pub fn tiles(p: &MatmulParams, wg: u32) -> usize {
    let t = 4 * wg as usize;
    (p.m as usize).div_ceil(t) * (p.n as usize).div_ceil(t)
}

/// The tile for a product on a GPU: the largest that gives [`TARGET_WORKGROUPS`], else 16 x 16.
pub fn auto_tile(p: &MatmulParams) -> u32 {
    [16, 8].into_iter().find(|&wg| tiles(p, wg) >= TARGET_WORKGROUPS).unwrap_or(4)
}

/// The kernel `matmul_forward` runs as on `device` under the choice in force: None for the
/// register-blocked one, else the tiled one's WG.
pub fn forward_tile(p: &MatmulParams, device: DeviceClass) -> Option<u32> {
    match kernels() {
        Kernels::Register => None,
        Kernels::Tiled(wg) => Some(wg),
        Kernels::Auto if device.cpu_emulated => None,
        Kernels::Auto => Some(auto_tile(p)),
    }
}

/// y = act(x w^T + b) tiled through workgroup memory (matmul_tiled.wgsl), tiles of 4 wg x 4 wg:
/// [`MatmulForward`]'s contract, params and spans; its CPU side is MatmulForward's.
#[derive(Clone, Debug)]
pub struct MatmulForwardTiled {
    pub p: MatmulParams,
    pub a: BufId,
    pub c: BufId,
    pub out: BufId,
    /// Invocations per workgroup side: 16, 8 or 4 (tiles of 64, 32 or 16).
    pub wg: u32,
}

impl MatmulForwardTiled {
    fn register(&self) -> MatmulForward {
        MatmulForward { p: self.p, a: self.a, c: self.c, out: self.out }
    }
}

impl Kernel for MatmulForwardTiled {
    fn entry(&self) -> &'static str {
        if self.p.drop.on() {
            "matmul_forward_tiled_dropout"
        } else {
            "matmul_forward_tiled"
        }
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn constants(&self) -> Vec<(&'static str, f64)> {
        vec![("WG_X", self.wg as f64), ("WG_Y", self.wg as f64)]
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        self.register().bindings()
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_flat(tiles(&self.p, self.wg))
    }
    fn flops(&self) -> f64 {
        self.register().flops()
    }
    fn spans(&self) -> Vec<Span> {
        self.register().spans()
    }
    fn run_cpu(&self, host: &mut Host) {
        self.register().run_cpu(host)
    }
}

/// `MatmulForward`'s variant on `device` (`ir::Kernel::gpu_variant`).
pub fn forward_variant(op: &MatmulForward, device: DeviceClass) -> Option<Op> {
    let wg = forward_tile(&op.p, device)?;
    Some(MatmulForwardTiled { p: op.p, a: op.a, c: op.c, out: op.out, wg }.into())
}
