//! The tiled implicit-GEMM launchers (conv_gemm.wgsl): conv2d's forward, input gradient and
//! weight gradient with the same params, bindings and spans as the direct ones, other
//! workgroups. Their CPU side is the direct kernels' (the twins, or the fast paths): the same
//! math, so a program computes the same thing on the CPU whichever variant it selected; on the
//! GPU the tiled kernels sum in the order conv_gemm.wgsl's header gives (the forward and input
//! gradient in the twins' order, the weight gradient in four chunks).

use super::{Conv2dBackwardInput, Conv2dBackwardWeight, Conv2dForward, ConvParams};
use crate::ir::kernel::groups_1d;
use crate::ir::{BufId, Host, Kernel, Res, Span};

/// Invocations of the forward's and the input gradient's workgroups, each owning a 4x4 block.
pub const INVOCATIONS: u32 = 256;
/// Block owners of the weight gradient's workgroup (times [`WEIGHT_SLICES`] slices).
pub const WEIGHT_OWNERS: u32 = 64;
/// Slices of the weight gradient's inner dimension n h_out w_out, summed in a fixed order.
pub const WEIGHT_SLICES: u32 = 4;

/// (rows, columns) of the tile a workgroup of `owners` 4x4-block owners covers in a GEMM of
/// `rows` rows: 4 g rows by 4 owners / g columns, g the least power of two with 4 g >= rows, at
/// most `most` (`row_groups` in conv_gemm.wgsl): 64 x 64 at 64 channels or more, 4 x 1024 at
/// one to four.
pub fn tile_shape(rows: u32, owners: u32, most: u32) -> (usize, usize) {
    let g = rows.div_ceil(4).next_power_of_two().min(most);
    (4 * g as usize, 4 * (owners / g) as usize)
}

/// Tiles of a GEMM of rows x cols in tiles of (tile rows, tile columns).
fn tiles((tr, tc): (usize, usize), rows: u32, cols: usize) -> usize {
    (rows as usize).div_ceil(tr) * cols.div_ceil(tc)
}

/// Workgroups for `tiles` tiles numbered t = y nx + x, with no dimension past 65,535.
pub fn tile_groups(tiles: usize) -> [u32; 3] {
    groups_1d(tiles.max(1) * 256)
}

impl ConvParams {
    /// The forward's tile: rows are output channels, columns n h_out w_out positions.
    pub fn forward_tile(&self) -> (usize, usize) {
        tile_shape(self.c_out, INVOCATIONS, 16)
    }

    /// conv2d_forward_tiled's tiles.
    pub fn forward_tiles(&self) -> usize {
        tiles(self.forward_tile(), self.c_out, (self.n * self.h_out * self.w_out) as usize)
    }

    /// The input gradient's tile: rows are input channels, columns positions of a parity class.
    pub fn backward_input_tile(&self) -> (usize, usize) {
        tile_shape(self.c_in, INVOCATIONS, 16)
    }

    /// (parity classes, positions per class and image): min(s, h_in) min(s, w_in) and
    /// ceil(h_in / s) ceil(w_in / s).
    pub fn parity_classes(&self) -> (usize, usize) {
        let (s, h, w) = (self.stride.max(1) as usize, self.h_in as usize, self.w_in as usize);
        (s.min(h) * s.min(w), h.div_ceil(s) * w.div_ceil(s))
    }

    /// conv2d_backward_input_tiled's tiles: each parity class's GEMM, one after the other.
    pub fn backward_input_tiles(&self) -> usize {
        let (classes, positions) = self.parity_classes();
        classes * tiles(self.backward_input_tile(), self.c_in, self.n as usize * positions)
    }

    /// The weight gradient's tile: rows are output channels, columns taps (ci, i, j).
    pub fn backward_weight_tile(&self) -> (usize, usize) {
        tile_shape(self.c_out, WEIGHT_OWNERS, 8)
    }

    /// conv2d_backward_weight_tiled's tiles.
    pub fn backward_weight_tiles(&self) -> usize {
        tiles(self.backward_weight_tile(), self.c_out, (self.c_in * self.kh * self.kw) as usize)
    }
}

fn bytes(p: &ConvParams) -> Option<Vec<u8>> {
    Some(bytemuck::bytes_of(p).to_vec())
}

fn abc(a: BufId, c: BufId, out: BufId) -> Vec<(u32, Res)> {
    vec![(1, Res::Buf(a)), (2, Res::Buf(c)), (3, Res::Buf(out))]
}

/// y = conv(x, w) (+ b) as a tiled GEMM: a = x, c = w and b, out = y, aux the epilogue's
/// ([`Conv2dForward`]'s contract).
#[derive(Clone, Debug)]
pub struct Conv2dForwardTiled {
    pub p: ConvParams,
    pub a: BufId,
    pub c: BufId,
    pub out: BufId,
    pub aux: BufId,
}

impl Conv2dForwardTiled {
    fn direct(&self) -> Conv2dForward {
        Conv2dForward { p: self.p, a: self.a, c: self.c, out: self.out, aux: self.aux }
    }
}

impl Kernel for Conv2dForwardTiled {
    fn entry(&self) -> &'static str {
        "conv2d_forward_tiled"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn constants(&self) -> Vec<(&'static str, f64)> {
        self.direct().constants()
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        self.direct().bindings()
    }
    fn flops(&self) -> f64 {
        self.p.gemm_flops(super::ConvEntry::Forward)
    }
    fn workgroups(&self) -> [u32; 3] {
        tile_groups(self.p.forward_tiles())
    }
    fn spans(&self) -> Vec<Span> {
        self.direct().spans()
    }
    fn run_cpu(&self, host: &mut Host) {
        self.direct().run_cpu(host)
    }
}

/// dx = conv^T(dy, w) (+ b per c_in) as tiled GEMMs, one per parity class of dx: a = dy, c = w
/// and b, out = dx, aux the epilogue's ([`Conv2dBackwardInput`]'s contract; also
/// conv_transpose2d's forward).
#[derive(Clone, Debug)]
pub struct Conv2dBackwardInputTiled {
    pub p: ConvParams,
    pub a: BufId,
    pub c: BufId,
    pub out: BufId,
    pub aux: BufId,
}

impl Conv2dBackwardInputTiled {
    fn direct(&self) -> Conv2dBackwardInput {
        Conv2dBackwardInput { p: self.p, a: self.a, c: self.c, out: self.out, aux: self.aux }
    }
}

impl Kernel for Conv2dBackwardInputTiled {
    fn entry(&self) -> &'static str {
        "conv2d_backward_input_tiled"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn constants(&self) -> Vec<(&'static str, f64)> {
        self.direct().constants()
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        self.direct().bindings()
    }
    fn flops(&self) -> f64 {
        self.p.gemm_flops(super::ConvEntry::BackwardInput)
    }
    fn workgroups(&self) -> [u32; 3] {
        tile_groups(self.p.backward_input_tiles())
    }
    fn spans(&self) -> Vec<Span> {
        self.direct().spans()
    }
    fn run_cpu(&self, host: &mut Host) {
        self.direct().run_cpu(host)
    }
}

/// dw (+)= sum over the batch of dy x-taps as a tiled GEMM with a 4-way split inner dimension:
/// a = dy, c = x, out = dw at `w_off` ([`Conv2dBackwardWeight`]'s contract).
#[derive(Clone, Debug)]
pub struct Conv2dBackwardWeightTiled {
    pub p: ConvParams,
    pub a: BufId,
    pub c: BufId,
    pub out: BufId,
}

impl Conv2dBackwardWeightTiled {
    fn direct(&self) -> Conv2dBackwardWeight {
        Conv2dBackwardWeight { p: self.p, a: self.a, c: self.c, out: self.out }
    }
}

impl Kernel for Conv2dBackwardWeightTiled {
    fn entry(&self) -> &'static str {
        "conv2d_backward_weight_tiled"
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        bytes(&self.p)
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        abc(self.a, self.c, self.out)
    }
    fn flops(&self) -> f64 {
        self.p.gemm_flops(super::ConvEntry::BackwardWeight)
    }
    fn workgroups(&self) -> [u32; 3] {
        tile_groups(self.p.backward_weight_tiles())
    }
    fn spans(&self) -> Vec<Span> {
        self.direct().spans()
    }
    fn run_cpu(&self, host: &mut Host) {
        self.direct().run_cpu(host)
    }
}
