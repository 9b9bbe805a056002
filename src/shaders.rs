//! The WGSL registry: every kernel family's source, and every entry point with the bindings it
//! uses. Each family file is compiled with `common.wgsl` prepended (WGSL has no imports).

/// Helpers shared by every family: activations, stable sigmoid, hashing, Philox.
pub const COMMON: &str = include_str!("../shaders/common.wgsl");

/// (family, source) of every kernel family, one file each under `shaders/`.
pub const FAMILIES: &[(&str, &str)] = &[
    ("matmul", include_str!("../shaders/matmul.wgsl")),
    ("activation", include_str!("../shaders/activation.wgsl")),
    ("loss", include_str!("../shaders/loss.wgsl")),
    ("adam", include_str!("../shaders/adam.wgsl")),
    ("random", include_str!("../shaders/random.wgsl")),
    ("ema", include_str!("../shaders/ema.wgsl")),
];

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
    ("adam_step", "adam", &[U(0), RW(1), R(2), RW(3), U(4)]),
    ("adam_tick", "adam", &[U(0), RW(5)]),
    ("step_tick", "adam", &[RW(5)]),
    ("noise_normal", "random", &[U(0), U(1), RW(3)]),
    ("gather_u8", "random", &[U(0), U(1), R(2), RW(3)]),
    ("gather_f32", "random", &[U(0), U(1), R(2), RW(3)]),
    ("dropout", "random", &[U(0), U(1), RW(3)]),
    ("ema_update", "ema", &[U(0), R(1), RW(3)]),
];

/// The full source of a family: common helpers, then the family's own file.
pub fn source(family: &str) -> Option<String> {
    FAMILIES.iter().find(|(name, _)| *name == family).map(|(_, src)| format!("{COMMON}\n{src}"))
}

/// (family, bindings) of an entry point.
pub fn entry(name: &str) -> Option<(&'static str, &'static [Slot])> {
    ENTRIES.iter().find(|(e, _, _)| *e == name).map(|&(_, f, s)| (f, s))
}
