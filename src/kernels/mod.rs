//! The kernel families: one WGSL file each under `shaders/`, one Rust module each here holding
//! the family's uniform structs, one launcher struct per entry point (the [`Kernel`] that records
//! it) and the CPU twins, under the same names as the WGSL entry points. [`FAMILIES`] is the
//! registry the GPU executor compiles from and the tests validate.
//!
//! Adding a family: its WGSL file, its module here (uniforms with `uniform!`, launchers, twins),
//! one line in [`FAMILIES`], and its test file under tests/ops/.
//!
//! [`Kernel`]: crate::ir::Kernel

pub mod activation;
pub mod adam;
pub mod augment;
pub mod class_affine;
pub mod conv;
pub mod ema;
pub mod embedding;
pub mod gemm;
pub mod head;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod norm_fast;
pub mod projection;
pub mod random;
pub mod scratch;
pub mod spectral;
pub mod tolerance;
pub mod xent;

use crate::ir::{TrainState, UniformInfo, UniformLayout};

/// Helpers shared by every family: activations, stable sigmoid, hashing, Philox, TrainState.
pub const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// How an entry point uses one binding slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Uniform(u32),
    Read(u32),
    ReadWrite(u32),
}

impl Slot {
    pub fn binding(self) -> u32 {
        match self {
            Slot::Uniform(b) | Slot::Read(b) | Slot::ReadWrite(b) => b,
        }
    }
}

/// An entry point and the bindings it uses.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub name: &'static str,
    pub slots: &'static [Slot],
}

/// One WGSL file and what it holds.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub wgsl: &'static str,
    /// f16 storage (`--precision f16`): compiled with `enable f16;` on a device with
    /// SHADER_F16; an f16 buffer binds at its role's slot, an f32 one at slot + [`F32_SLOT_SHIFT`].
    pub f16: bool,
    /// Compiled without naga's runtime bounds checks. Only for families whose kernels clamp
    /// every read and guard every write; the executor also checks every op's spans on the host.
    pub unchecked: bool,
    pub entries: &'static [Entry],
    /// The uniform structs its WGSL declares (checked against it by tests/shaders.rs).
    pub uniforms: &'static [UniformInfo],
}

/// The most storage buffers any entry point binds (matmul_backward: dy, w, the gradients, y, x,
/// dx). The GPU context asks the device for this many per shader stage (every Vulkan, Metal
/// and DX12 device offers at least eight; WebGPU's default is eight).
pub const MAX_STORAGE_BINDINGS: u32 = 6;

/// Where an f16 family binds an f32 buffer: its role's slot plus this.
pub const F32_SLOT_SHIFT: u32 = 4;

/// Every kernel family.
pub const FAMILIES: &[&Family] = &[
    &matmul::FAMILY,
    &matmul::FAMILY_F16,
    &matmul::FAMILY_TILED,
    &activation::FAMILY,
    &activation::FAMILY_F16,
    &loss::FAMILY,
    &head::FAMILY,
    &xent::FAMILY,
    &adam::FAMILY,
    &random::FAMILY,
    &random::FAMILY_F16,
    &ema::FAMILY,
    &conv::FAMILY,
    &conv::FAMILY_GEMM,
    &norm::FAMILY,
    &spectral::FAMILY,
    &augment::FAMILY,
    &embedding::FAMILY,
    &projection::FAMILY,
    &class_affine::FAMILY,
];

/// Structs declared in common.wgsl, prepended to every family.
pub const COMMON_UNIFORMS: &[UniformInfo] = &[TrainState::INFO, random::DropMask::INFO];

pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.name == name)
}

/// The full source of a family: common helpers, then its own file (f16 families: `enable f16;`
/// before both, as it must precede every declaration).
pub fn source(f: &Family) -> String {
    let enable = if f.f16 { "enable f16;\n" } else { "" };
    format!("{enable}{COMMON}\n{}", f.wgsl)
}

/// The family and bindings of an entry point.
pub fn entry(name: &str) -> Option<(&'static Family, &'static Entry)> {
    FAMILIES.iter().find_map(|f| f.entries.iter().find(|e| e.name == name).map(|e| (*f, e)))
}

/// The `parts` bits of a backward kernel that writes its parameters' gradient (bit 1) and its
/// input's gradient (bit 2) only when given a buffer for each (batch_norm_backward,
/// class_affine_backward, projection_backward: each family's PART_PARAMS and PART_INPUT).
pub fn backward_parts(params: bool, input: bool) -> u32 {
    (params as u32) | ((input as u32) << 1)
}
