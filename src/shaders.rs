//! The WGSL registry: every kernel family's source, and every entry point with the bindings it
//! uses. Each family file is compiled with `common.wgsl` prepended (WGSL has no imports).

/// Helpers shared by every family: activations, stable sigmoid, hashing, Philox.
pub const COMMON: &str = include_str!("../shaders/common.wgsl");

/// (family, source) of every kernel family, one file each under `shaders/`.
pub const FAMILIES: &[(&str, &str)] = &[
    ("matmul", include_str!("../shaders/matmul.wgsl")),
    ("activation", include_str!("../shaders/activation.wgsl")),
    ("loss", include_str!("../shaders/loss.wgsl")),
    ("xent", include_str!("../shaders/xent.wgsl")),
    ("adam", include_str!("../shaders/adam.wgsl")),
    ("random", include_str!("../shaders/random.wgsl")),
    ("matmul_f16", include_str!("../shaders/matmul_f16.wgsl")),
    ("activation_f16", include_str!("../shaders/activation_f16.wgsl")),
    ("random_f16", include_str!("../shaders/random_f16.wgsl")),
    ("ema", include_str!("../shaders/ema.wgsl")),
];

/// Families with f16 storage (`--precision f16`): compiled with `enable f16;` first (it must
/// precede every declaration), on a device with wgpu's SHADER_F16. In them an f16 buffer binds
/// at its role's slot and an f32 buffer at that slot + [`F32_SLOT_SHIFT`].
pub const F16_FAMILIES: &[&str] = &["matmul_f16", "activation_f16", "random_f16"];

/// Where an f16 family binds an f32 buffer: its role's slot plus this.
pub const F32_SLOT_SHIFT: u32 = 4;

/// True for a family in [`F16_FAMILIES`].
pub fn is_f16_family(family: &str) -> bool {
    F16_FAMILIES.contains(&family)
}

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

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

const MATMUL: &[Slot] = &[U(0), R(1), R(2), RW(3)];
const EW_FORWARD: &[Slot] = &[U(0), R(1), RW(3)];
const EW_BACKWARD: &[Slot] = &[U(0), R(1), R(2), RW(3)];
/// y (f16) at 1, dy (f32) at 6, dz (f32) at 7.
const EW_BACKWARD_F16: &[Slot] = &[U(0), R(1), R(6), RW(7)];

/// (entry point, family, bindings) of every kernel.
pub const ENTRIES: &[(&str, &str, &[Slot])] = &[
    ("matmul_forward", "matmul", MATMUL),
    ("matmul_backward_input", "matmul", MATMUL),
    ("matmul_backward_weight", "matmul", MATMUL),
    ("bias_backward", "matmul", &[U(0), R(1), RW(3)]),
    ("relu_forward", "activation", EW_FORWARD),
    ("leaky_relu_forward", "activation", EW_FORWARD),
    ("sigmoid_forward", "activation", EW_FORWARD),
    ("tanh_forward", "activation", EW_FORWARD),
    ("relu_backward", "activation", EW_BACKWARD),
    ("leaky_relu_backward", "activation", EW_BACKWARD),
    ("sigmoid_backward", "activation", EW_BACKWARD),
    ("tanh_backward", "activation", EW_BACKWARD),
    ("bce_logits", "loss", &[U(0), R(1), RW(2), RW(3)]),
    ("softmax_xent", "xent", &[U(0), R(1), R(2), RW(3), RW(4)]),
    ("adam_step", "adam", &[U(0), RW(1), R(2), RW(3), U(4)]),
    ("adam_tick", "adam", &[U(0), RW(5)]),
    ("step_tick", "adam", &[RW(5)]),
    ("noise_normal", "random", &[U(0), U(1), RW(3)]),
    ("gather_u8", "random", &[U(0), U(1), R(2), RW(3)]),
    ("gather_f32", "random", &[U(0), U(1), R(2), RW(3)]),
    ("dropout", "random", &[U(0), U(1), RW(3)]),
    // --precision f16: f16 buffers at slots 1-3, f32 ones at 5-7 (F32_SLOT_SHIFT).
    ("matmul_forward_f16", "matmul_f16", &[U(0), R(1), R(2), RW(3)]),
    ("matmul_backward_input_f16", "matmul_f16", &[U(0), R(5), R(2), RW(7)]),
    ("matmul_backward_weight_f16", "matmul_f16", &[U(0), R(5), R(2), RW(7)]),
    ("cast_to_f16", "activation_f16", &[U(0), R(5), RW(3)]),
    ("cast_to_f32", "activation_f16", &[U(0), R(1), RW(7)]),
    ("relu_backward_f16", "activation_f16", EW_BACKWARD_F16),
    ("leaky_relu_backward_f16", "activation_f16", EW_BACKWARD_F16),
    ("sigmoid_backward_f16", "activation_f16", EW_BACKWARD_F16),
    ("tanh_backward_f16", "activation_f16", EW_BACKWARD_F16),
    ("dropout_f16", "random_f16", &[U(0), U(1), RW(3)]),
    ("ema_update", "ema", &[U(0), R(1), RW(3)]),
];

/// The full source of a family: common helpers, then the family's own file (f16 families:
/// `enable f16;` before both).
pub fn source(family: &str) -> Option<String> {
    let enable = if is_f16_family(family) { "enable f16;\n" } else { "" };
    FAMILIES.iter().find(|(name, _)| *name == family).map(|(_, src)| format!("{enable}{COMMON}\n{src}"))
}

/// (family, bindings) of an entry point.
pub fn entry(name: &str) -> Option<(&'static str, &'static [Slot])> {
    ENTRIES.iter().find(|(e, _, _)| *e == name).map(|&(_, f, s)| (f, s))
}
