//! Activations (activation.wgsl) and, at f16 storage, their backward passes and the casts
//! between f32 and f16 buffers (activation_f16.wgsl). Also the f16 store both backends share:
//! saturate to f16's finite range, then round to nearest even.

use serde::{Deserialize, Serialize};

use super::{Entry, Family, Slot};
use crate::ir::kernel::groups_1d;
use crate::ir::{BufId, Host, Kernel, Res, Span, UniformLayout};

/// Activation after a layer. The numeric codes are shared with the WGSL (`common.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    Identity,
    Relu,
    LeakyRelu,
    Sigmoid,
    Tanh,
}

/// Slope of leaky ReLU for negative inputs.
pub const LEAKY_SLOPE: f32 = 0.2;

impl Activation {
    /// The code `activate` in common.wgsl switches on.
    pub fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
            Activation::LeakyRelu => 2,
            Activation::Sigmoid => 3,
            Activation::Tanh => 4,
        }
    }

    /// The negative-side slope the kernels take (leaky ReLU's; 0 for the others).
    pub fn slope(self) -> f32 {
        if self == Activation::LeakyRelu {
            LEAKY_SLOPE
        } else {
            0.0
        }
    }

    /// The flag's spelling (`leaky-relu`).
    pub fn flag_name(self) -> String {
        clap::ValueEnum::to_possible_value(&self).map_or(format!("{self:?}"), |p| p.get_name().to_string())
    }

    fn entries(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Activation::Identity => ("identity_forward", "identity_backward", "identity_backward_f16"),
            Activation::Relu => ("relu_forward", "relu_backward", "relu_backward_f16"),
            Activation::LeakyRelu => ("leaky_relu_forward", "leaky_relu_backward", "leaky_relu_backward_f16"),
            Activation::Sigmoid => ("sigmoid_forward", "sigmoid_backward", "sigmoid_backward_f16"),
            Activation::Tanh => ("tanh_forward", "tanh_backward", "tanh_backward_f16"),
        }
    }
}

crate::uniform! {
    /// `EwParams` in activation.wgsl and activation_f16.wgsl.
    pub struct EwParams {
        pub len: u32,
        pub slope: f32,
        pub in_off: u32,
        pub dy_off: u32,
        pub out_off: u32,
        pub _pad0: u32,
        pub _pad1: u32,
        pub _pad2: u32,
    }
}

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

const FORWARD: &[Slot] = &[U(0), R(1), RW(3)];
const BACKWARD: &[Slot] = &[U(0), R(1), R(2), RW(3)];
/// y (f16) at 1, dy (f32) at 6, dz (f32) at 7.
const BACKWARD_F16: &[Slot] = &[U(0), R(1), R(6), RW(7)];

pub const FAMILY: Family = Family {
    name: "activation",
    wgsl: include_str!("../../shaders/activation.wgsl"),
    f16: false,
    // Every index is guarded by the kernel itself (the WGSL header says how) and every span
    // is checked on the host before a call is recorded: compiled without naga's runtime checks.
    unchecked: true,
    entries: &[
        Entry { name: "relu_forward", slots: FORWARD },
        Entry { name: "leaky_relu_forward", slots: FORWARD },
        Entry { name: "sigmoid_forward", slots: FORWARD },
        Entry { name: "tanh_forward", slots: FORWARD },
        Entry { name: "relu_backward", slots: BACKWARD },
        Entry { name: "leaky_relu_backward", slots: BACKWARD },
        Entry { name: "sigmoid_backward", slots: BACKWARD },
        Entry { name: "tanh_backward", slots: BACKWARD },
    ],
    uniforms: &[EwParams::INFO],
};

pub const FAMILY_F16: Family = Family {
    name: "activation_f16",
    wgsl: include_str!("../../shaders/activation_f16.wgsl"),
    f16: true,
    unchecked: false,
    entries: &[
        Entry { name: "cast_to_f16", slots: &[U(0), R(5), RW(3)] },
        Entry { name: "cast_to_f32", slots: &[U(0), R(1), RW(7)] },
        Entry { name: "relu_backward_f16", slots: BACKWARD_F16 },
        Entry { name: "leaky_relu_backward_f16", slots: BACKWARD_F16 },
        Entry { name: "sigmoid_backward_f16", slots: BACKWARD_F16 },
        Entry { name: "tanh_backward_f16", slots: BACKWARD_F16 },
    ],
    uniforms: &[EwParams::INFO],
};

fn bytes(p: &EwParams) -> Option<Vec<u8>> {
    Some(bytemuck::bytes_of(p).to_vec())
}

/// y = act(x) element-wise.
#[derive(Clone, Debug)]
pub struct ActivationForward {
    pub act: Activation,
    pub p: EwParams,
    pub x: BufId,
    pub out: BufId,
}

impl Kernel for ActivationForward {
    fn entry(&self) -> &'static str {
        self.act.entries().0
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.x)), (3, Res::Buf(self.out))]
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.len as usize)
    }
    fn spans(&self) -> Vec<Span> {
        let n = self.p.len as usize;
        vec![Span::read(self.x, self.p.in_off, n), Span::write(self.out, self.p.out_off, n)]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (act, p, x, fast, pool) = (self.act, &self.p, self.x, host.fast, host.pool);
        host.with_out(self.out, |b, o| {
            if fast {
                activation_forward_fast(pool, act.code(), p, &b[x], o)
            } else {
                activation_forward(act.code(), p, &b[x], o)
            }
        })
    }
}

/// dz = dy * f'(y) element-wise, the derivative read from the activation's output y.
#[derive(Clone, Debug)]
pub struct ActivationBackward {
    pub act: Activation,
    pub p: EwParams,
    pub y: BufId,
    pub dy: BufId,
    pub out: BufId,
}

impl Kernel for ActivationBackward {
    fn entry(&self) -> &'static str {
        self.act.entries().1
    }
    fn entry_f16(&self) -> Option<&'static str> {
        Some(self.act.entries().2)
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.y)), (2, Res::Buf(self.dy)), (3, Res::Buf(self.out))]
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.len as usize)
    }
    fn spans(&self) -> Vec<Span> {
        let (p, n) = (&self.p, self.p.len as usize);
        vec![Span::read(self.y, p.in_off, n), Span::read(self.dy, p.dy_off, n), Span::write(self.out, p.out_off, n)]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (act, p, y, dy, fast, pool) = (self.act, &self.p, self.y, self.dy, host.fast, host.pool);
        host.with_out(self.out, |b, o| {
            if fast {
                activation_backward_fast(pool, act.code(), p, &b[y], &b[dy], o)
            } else {
                activation_backward(act.code(), p, &b[y], &b[dy], o)
            }
        })
    }
}

/// out[out_off + i] = x[in_off + i] for i < len, from an f32 buffer to an f16 one (`to_f16`) or
/// back (`cast_to_f16` / `cast_to_f32`).
#[derive(Clone, Debug)]
pub struct Cast {
    pub p: EwParams,
    pub x: BufId,
    pub out: BufId,
    pub to_f16: bool,
}

impl Kernel for Cast {
    fn entry(&self) -> &'static str {
        if self.to_f16 {
            "cast_to_f16"
        } else {
            "cast_to_f32"
        }
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        vec![(1, Res::Buf(self.x)), (3, Res::Buf(self.out))]
    }
    fn workgroups(&self) -> [u32; 3] {
        groups_1d(self.p.len as usize)
    }
    fn spans(&self) -> Vec<Span> {
        let n = self.p.len as usize;
        vec![Span::read(self.x, self.p.in_off, n), Span::write(self.out, self.p.out_off, n)]
    }
    fn run_cpu(&self, host: &mut Host) {
        let (p, x) = (&self.p, self.x);
        host.with_out(self.out, |b, o| cast(p, &b[x], o))
    }
}

// The CPU twins.

/// e^x for x <= 0, in plain f32 arithmetic (no library call, so that a loop of it vectorizes,
/// with the same bits on every CPU): x = n ln 2 + r with n an integer (rounded by the 1.5 2^23
/// trick) and |r| <= ln 2 / 2 (ln 2 in two parts, Cody and Waite), e^r by its Taylor series to
/// r^7 / 7! (truncation under 6e-9 relative), times 2^n from the exponent bits. Within 2 ulp of
/// the correctly rounded value; below -87 (e^x < 1.7e-38, near the smallest normal f32) it is 0.
#[inline(always)]
pub fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4; // 355 / 512: n LN2_HI is exact for the n here
    const LN2_LO: f32 = -2.121_944_4e-4; // ln 2 - LN2_HI
    const ROUND: f32 = 12_582_912.0; // 1.5 2^23
    let xc = x.clamp(-87.0, 0.0);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p * r + c;
    }
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < -87.0 {
        0.0
    } else {
        p * scale
    }
}

/// 1 / (1 + e^-z) without overflow: exp() only ever sees -|z|.
pub fn sigmoid(z: f32) -> f32 {
    let e = (-z.abs()).exp();
    let s = 1.0 / (1.0 + e);
    if z >= 0.0 {
        s
    } else {
        e * s
    }
}

/// `sigmoid` with [`exp_neg`] for the exponential: no library call, so the CPU fast paths'
/// loops of it vectorize. Within a few ulp of `sigmoid` (the twins keep the library's exp,
/// which runs from 0.1.0's checkpoints bit for bit; tests/compat.rs).
#[inline(always)]
pub fn sigmoid_fast(z: f32) -> f32 {
    let e = exp_neg(-z.abs());
    let s = 1.0 / (1.0 + e);
    if z >= 0.0 {
        s
    } else {
        e * s
    }
}

pub fn tanh_safe(z: f32) -> f32 {
    z.clamp(-15.0, 15.0).tanh()
}

/// `activate` in common.wgsl; `act` is an [`Activation`] code.
pub fn activate(z: f32, act: u32, slope: f32) -> f32 {
    match act {
        1 => z.max(0.0),
        2 => {
            if z > 0.0 {
                z
            } else {
                z * slope
            }
        }
        3 => sigmoid(z),
        4 => tanh_safe(z),
        _ => z,
    }
}

/// `activate` for the CPU fast paths: the same but for the sigmoid ([`sigmoid_fast`]).
#[inline(always)]
pub fn activate_fast(z: f32, act: u32, slope: f32) -> f32 {
    if act == 3 {
        sigmoid_fast(z)
    } else {
        activate(z, act, slope)
    }
}

/// `activation_grad` in common.wgsl: the derivative in terms of the output y.
pub fn activation_grad(y: f32, act: u32, slope: f32) -> f32 {
    match act {
        1 => (y > 0.0) as u8 as f32,
        2 => {
            if y > 0.0 {
                1.0
            } else {
                slope
            }
        }
        3 => y * (1.0 - y),
        4 => 1.0 - y * y,
        _ => 1.0,
    }
}

/// y = act(x) element-wise (`relu_forward`, `sigmoid_forward`, ... by `act`).
pub fn activation_forward(act: u32, p: &EwParams, x: &[f32], y: &mut [f32]) {
    for i in 0..p.len as usize {
        y[p.out_off as usize + i] = activate(x[p.in_off as usize + i], act, p.slope);
    }
}

/// dz = dy * f'(y) element-wise (`relu_backward`, ... by `act`).
/// dz = dy act'(y) for `len` values at `y_off` and `dy_off`, into `scratch` (grown under
/// `mark`), as `activation_backward` (or, with `fast`, its pooled twin) computes it: for the
/// twins of the fused kernels that apply an activation's derivative as they load dy.
#[allow(clippy::too_many_arguments)]
pub fn dz_into_scratch<'s>(
    pool: &crate::ir::Pool,
    fast: bool,
    (act, slope): (u32, f32),
    (y, y_off): (&[f32], u32),
    (dy, dy_off): (&[f32], u32),
    len: usize,
    mark: &crate::kernels::scratch::HighWater,
    scratch: &'s mut Vec<f32>,
) -> &'s [f32] {
    let e = EwParams { len: len as u32, slope, in_off: y_off, dy_off, ..Default::default() };
    let dz = mark.at_least(scratch, len, 0.0);
    if fast {
        activation_backward_fast(pool, act, &e, y, dy, dz)
    } else {
        activation_backward(act, &e, y, dy, dz)
    }
    dz
}

pub fn activation_backward(act: u32, p: &EwParams, y: &[f32], dy: &[f32], dz: &mut [f32]) {
    for i in 0..p.len as usize {
        let g = activation_grad(y[p.in_off as usize + i], act, p.slope);
        dz[p.out_off as usize + i] = dy[p.dy_off as usize + i] * g;
    }
}

/// g[i] = g[i] * act'(y[i]): `activation_backward`'s product (the same one rounding), in place;
/// nothing for the identity.
pub fn scale_by_grad(act: u32, slope: f32, y: &[f32], g: &mut [f32]) {
    #[inline(always)]
    fn each(y: &[f32], g: &mut [f32], grad: impl Fn(f32) -> f32) {
        for (o, &v) in g.iter_mut().zip(y) {
            *o *= grad(v);
        }
    }
    match act {
        0 => {}
        1 => each(y, g, |v| activation_grad(v, 1, slope)),
        2 => each(y, g, |v| activation_grad(v, 2, slope)),
        3 => each(y, g, |v| activation_grad(v, 3, slope)),
        4 => each(y, g, |v| activation_grad(v, 4, slope)),
        _ => each(y, g, |v| activation_grad(v, act, slope)),
    }
}

/// y = act(y) in place, element by element with the per-element rules of
/// `activation_forward_fast` (the same bits as `activation_forward`); nothing for the identity.
pub fn activate_in_place(act: u32, slope: f32, y: &mut [f32]) {
    match act {
        0 => {}
        1 => y.iter_mut().for_each(|v| *v = v.max(0.0)),
        2 => y.iter_mut().for_each(|v| *v = if *v > 0.0 { *v } else { *v * slope }),
        _ => y.iter_mut().for_each(|v| *v = activate(*v, act, slope)),
    }
}

/// Elements per task of the fast element-wise paths (a split by size alone).
const EW_CHUNK: usize = 1 << 14;

/// `f(lo, hi, out)` over chunks of `len` outputs across the pool; `out` is the whole output
/// buffer, of which task t writes only [off + lo, off + hi).
fn ew_chunks(pool: &crate::ir::Pool, len: usize, out: &mut [f32], f: impl Fn(usize, usize, &mut [f32]) + Sync) {
    let (tasks, chunk) = crate::ir::pool::chunks(len, EW_CHUNK, usize::MAX);
    let (ptr, n) = (out.as_mut_ptr() as usize, out.len());
    pool.run(tasks, &|t| {
        // SAFETY: task t writes only its own chunk of the output.
        let out = unsafe { std::slice::from_raw_parts_mut(ptr as *mut f32, n) };
        f(t * chunk, ((t + 1) * chunk).min(len), out)
    });
}

/// `activation_forward` in chunks across the pool: the same function per element, so the same
/// bits.
pub fn activation_forward_fast(pool: &crate::ir::Pool, act: u32, p: &EwParams, x: &[f32], y: &mut [f32]) {
    let (i0, o0) = (p.in_off as usize, p.out_off as usize);
    ew_chunks(pool, p.len as usize, y, |lo, hi, y| {
        let (xs, ys) = (&x[i0 + lo..i0 + hi], &mut y[o0 + lo..o0 + hi]);
        match act {
            1 => ys.iter_mut().zip(xs).for_each(|(o, &v)| *o = v.max(0.0)),
            2 => ys.iter_mut().zip(xs).for_each(|(o, &v)| *o = if v > 0.0 { v } else { v * p.slope }),
            _ => ys.iter_mut().zip(xs).for_each(|(o, &v)| *o = activate(v, act, p.slope)),
        }
    });
}

/// `activation_backward` in chunks across the pool: the same function per element (the
/// activation fixed outside the loop, so that it vectorizes), so the same bits.
pub fn activation_backward_fast(pool: &crate::ir::Pool, act: u32, p: &EwParams, y: &[f32], dy: &[f32], dz: &mut [f32]) {
    #[inline(always)]
    fn each(ys: &[f32], gs: &[f32], os: &mut [f32], grad: impl Fn(f32) -> f32) {
        for ((o, &yv), &g) in os.iter_mut().zip(ys).zip(gs) {
            *o = g * grad(yv);
        }
    }
    #[inline(always)]
    fn chunk(act: u32, slope: f32, ys: &[f32], gs: &[f32], os: &mut [f32]) {
        match act {
            1 => each(ys, gs, os, |y| activation_grad(y, 1, slope)),
            2 => each(ys, gs, os, |y| activation_grad(y, 2, slope)),
            3 => each(ys, gs, os, |y| activation_grad(y, 3, slope)),
            4 => each(ys, gs, os, |y| activation_grad(y, 4, slope)),
            _ => each(ys, gs, os, |y| activation_grad(y, act, slope)),
        }
    }
    let (i0, d0, o0) = (p.in_off as usize, p.dy_off as usize, p.out_off as usize);
    let wide = crate::kernels::gemm::isa() == crate::kernels::gemm::Isa::Avx512;
    ew_chunks(pool, p.len as usize, dz, |lo, hi, dz| {
        let (ys, gs, os) = (&y[i0 + lo..i0 + hi], &dy[d0 + lo..d0 + hi], &mut dz[o0 + lo..o0 + hi]);
        #[cfg(target_arch = "x86_64")]
        if wide {
            #[target_feature(enable = "avx512f")]
            unsafe fn chunk512(act: u32, slope: f32, ys: &[f32], gs: &[f32], os: &mut [f32]) {
                chunk(act, slope, ys, gs, os)
            }
            // SAFETY: the CPU has AVX-512F.
            return unsafe { chunk512(act, p.slope, ys, gs, os) };
        }
        chunk(act, p.slope, ys, gs, os)
    });
}

/// `cast_to_f16` / `cast_to_f32`: a copy between offsets; the executor rounds the output when
/// it is an f16 buffer.
pub fn cast(p: &EwParams, x: &[f32], out: &mut [f32]) {
    let (i, o, n) = (p.in_off as usize, p.out_off as usize, p.len as usize);
    out[o..o + n].copy_from_slice(&x[i..i + n]);
}

/// The largest finite f16.
pub const F16_MAX: f32 = 65504.0;

/// Clamps to f16's finite range: the f16 kernels saturate before they convert, so that no
/// out-of-range conversion (implementation-defined on GPUs) happens.
pub fn saturate_f16(v: f32) -> f32 {
    v.clamp(-F16_MAX, F16_MAX)
}

/// An f16 store as the f16 kernels do it: saturate, then round to nearest even. Every value of an
/// f16 buffer on the CPU backend went through this.
pub fn round_f16(v: f32) -> f32 {
    half::f16::from_f32(saturate_f16(v)).to_f32()
}

/// `round_f16` on every value of a slice, through half's vectorised slice conversions (F16C
/// where the CPU has it): the same rounding, many times faster than one value at a time.
pub fn round_f16_slice(values: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    let mut tmp = [half::f16::ZERO; 1024];
    for chunk in values.chunks_mut(1024) {
        chunk.iter_mut().for_each(|v| *v = saturate_f16(*v));
        let t = &mut tmp[..chunk.len()];
        t.convert_from_f32_slice(chunk);
        t.convert_to_f32_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ulps between a and the f64 value b (as f32s).
    fn ulps(a: f32, b: f64) -> f64 {
        let ulp = (b.abs() as f32).max(f32::MIN_POSITIVE);
        let ulp = (f32::from_bits(ulp.to_bits() + 1) - ulp) as f64;
        (a as f64 - b).abs() / ulp
    }

    #[test]
    fn exp_neg_is_within_two_ulp_and_flushes_below_minus_87() {
        assert_eq!(exp_neg(0.0), 1.0);
        assert_eq!(exp_neg(-0.0), 1.0);
        let mut worst = 0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            worst = worst.max(ulps(exp_neg(x), (x as f64).exp()));
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        for x in [-87.01f32, -88.0, -103.0, -1e4, f32::MIN, f32::NEG_INFINITY] {
            assert_eq!(exp_neg(x), 0.0, "e^{x}");
        }
        // The sigmoid built on it stays in [0, 1], exact at 0, saturating at both ends, and
        // within a few ulp of the twins' sigmoid.
        assert_eq!(sigmoid_fast(0.0), 0.5);
        assert_eq!(sigmoid_fast(100.0), 1.0);
        assert_eq!(sigmoid_fast(-100.0), 0.0);
        for i in -3000..=3000 {
            let z = i as f32 * 0.01;
            let (a, b) = (sigmoid_fast(z), sigmoid(z));
            assert!(ulps(a, b as f64) <= 3.0, "sigmoid({z}): {a} against {b}");
        }
    }
}
