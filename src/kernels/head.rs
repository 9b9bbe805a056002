//! D's one-logit linear head, its loss and its backward pass in one dispatch (head.wgsl):
//! `logit_head` does what matmul_forward (n = 1) -> bce_logits or hinge_logits ->
//! matmul_backward did in three. Its CPU twin runs those three kernels' twins in that order
//! (their fast paths where the executor has them), so the CPU's bits are the old sequence's.

use super::loss::{bce_logits, hinge_logits, LossParams, NO_SLOT};
use super::matmul::{MatmulBackward, MatmulForward, MatmulParams, PART_INPUT, PART_WEIGHT};
use super::random::DropMask;
use super::{Entry, Family, Slot};
use crate::ir::{BufId, Host, Kernel, Op, Res, Span, UniformLayout};

crate::uniform! {
    /// `HeadParams` in head.wgsl.
    pub struct HeadParams {
        pub m: u32,
        pub k: u32,
        pub x_off: u32,
        pub w_off: u32,
        pub b_off: u32,
        pub no_bias: u32,
        pub z_off: u32,
        pub dz_off: u32,
        pub dw_off: u32,
        pub db_off: u32,
        pub dx_off: u32,
        pub accumulate: u32,
        /// [`PART_WEIGHT`] | [`PART_INPUT`] (set by [`LogitHead`] from the outputs given).
        pub parts: u32,
        /// The activation (code) that made x: dx is scaled by its derivative.
        pub act_in: u32,
        pub slope_in: f32,
        /// 0: bce_logits' loss, 1: hinge_logits'.
        pub hinge: u32,
        pub hinge_margin: u32,
        pub n_first: u32,
        pub label_first: f32,
        pub label_second: f32,
        pub scale_first: f32,
        pub scale_second: f32,
        pub slot_loss: u32,
        pub slot_prob_first: u32,
        pub slot_prob_second: u32,
        /// The CPU twin's weight sums per group of rows (as `MatmulParams::groups`).
        pub groups: u32,
        pub _pad0: u32,
        pub _pad1: u32,
        /// The dropout below the head, its mask applied to dx as it is stored (off: none; entry
        /// `logit_head_dropout`, which binds the training state for the step).
        pub drop: DropMask,
    }
}

use Slot::{Read as R, ReadWrite as RW, Uniform as U};

pub const FAMILY: Family = Family {
    name: "head",
    wgsl: include_str!("../../shaders/head.wgsl"),
    f16: false,
    unchecked: false,
    entries: &[
        Entry { name: "logit_head", slots: &[U(0), R(1), R(2), RW(3), RW(4), RW(5), RW(6)] },
        Entry { name: "logit_head_dropout", slots: &[U(0), R(1), R(2), RW(3), RW(4), RW(5), RW(6), U(7)] },
    ],
    uniforms: &[HeadParams::INFO],
};

/// The loss a [`LogitHead`] computes: loss.wgsl's parameters (`rows`, the labels, scales and
/// slots; its offsets are the head's `z_off`, `dz_off`), which of its two kernels, and the
/// statistics buffer.
#[derive(Clone, Copy, Debug)]
pub struct HeadLoss {
    pub p: LossParams,
    pub hinge: bool,
    pub stats: BufId,
}

/// A one-logit linear head (weight (1, k) at `p.w_off`, bias at `p.b_off` of `w`) on x, its
/// loss and its backward pass: logits into `logits` at `p.z_off`, their gradient into the same
/// buffer at `p.dz_off` (the two spans apart), statistics into `stats`, dw and db into `grads`
/// (when given) and dx into `dx` (when given).
#[derive(Clone, Debug)]
pub struct LogitHead {
    pub p: HeadParams,
    pub x: BufId,
    pub w: BufId,
    pub grads: Option<BufId>,
    pub logits: BufId,
    pub dx: Option<BufId>,
    pub stats: BufId,
    /// The calls the head stands in for when they are not the matmul sequence (None): the CPU
    /// twin runs them around the loss, so that its bits are those of the unfused program.
    pub twin: Option<HeadTwin>,
}

/// A head's unfused calls other than matmul_forward / matmul_backward (a convolution that covers
/// its input with one output channel: `nn::Conv2d`'s forward call and its backward calls).
#[derive(Clone, Debug)]
pub struct HeadTwin {
    pub forward: Op,
    pub backward: Vec<Op>,
}

impl LogitHead {
    /// A head from its loss (labels, scales, slots; rows must be `p.m`) and the rest of `p`.
    pub fn with_loss(p: HeadParams, loss: HeadLoss) -> HeadParams {
        let l = loss.p;
        HeadParams {
            hinge: loss.hinge as u32,
            hinge_margin: l.hinge_margin,
            n_first: l.n_first,
            label_first: l.label_first,
            label_second: l.label_second,
            scale_first: l.scale_first,
            scale_second: l.scale_second,
            slot_loss: l.slot_loss,
            slot_prob_first: l.slot_prob_first,
            slot_prob_second: l.slot_prob_second,
            ..p
        }
    }

    /// The params with `parts` set from the outputs given.
    pub fn params(&self) -> HeadParams {
        let parts = if self.grads.is_some() { PART_WEIGHT } else { 0 } | if self.dx.is_some() { PART_INPUT } else { 0 };
        HeadParams { parts, ..self.p }
    }

    /// The old sequence's first kernel: matmul_forward with one output column.
    pub fn forward_op(&self) -> MatmulForward {
        let p = &self.p;
        let mp = MatmulParams {
            m: p.m,
            n: 1,
            k: p.k,
            a_off: p.x_off,
            c_off: p.w_off,
            bias_off: p.b_off,
            no_bias: p.no_bias,
            out_off: p.z_off,
            ..Default::default()
        };
        MatmulForward { p: mp, a: self.x, c: self.w, out: self.logits }
    }

    /// The second: the loss's parameters on the logits (z and dz in one buffer).
    pub fn loss_params(&self) -> LossParams {
        let p = &self.p;
        LossParams {
            rows: p.m,
            n_first: p.n_first,
            label_first: p.label_first,
            label_second: p.label_second,
            scale_first: p.scale_first,
            scale_second: p.scale_second,
            z_off: p.z_off,
            dz_off: p.dz_off,
            slot_loss: p.slot_loss,
            slot_prob_first: p.slot_prob_first,
            slot_prob_second: p.slot_prob_second,
            hinge_margin: p.hinge_margin,
        }
    }

    /// The loss kernel's twin (bce_logits or hinge_logits) on z and dz, two spans of `logits`.
    fn loss_twin(&self, logits: &mut [f32], stats: &mut [f32]) {
        let lp = self.loss_params();
        let (z_off, dz_off, rows) = (lp.z_off as usize, lp.dz_off as usize, lp.rows as usize);
        assert!(z_off + rows <= dz_off || dz_off + rows <= z_off, "logit_head: z and dz overlap");
        let twin = if self.p.hinge == 0 { bce_logits } else { hinge_logits };
        if z_off < dz_off {
            let (z, dz) = logits.split_at_mut(dz_off);
            twin(&LossParams { dz_off: 0, ..lp }, z, dz, stats)
        } else {
            let (dz, z) = logits.split_at_mut(z_off);
            twin(&LossParams { z_off: 0, ..lp }, z, dz, stats)
        }
    }

    /// The third: the head's backward pass from dz (no activation of its own to undo).
    pub fn backward_op(&self) -> MatmulBackward {
        let p = &self.p;
        let mp = MatmulParams {
            m: p.m,
            n: 1,
            k: p.k,
            act_in: p.act_in,
            slope_in: p.slope_in,
            a_off: p.dz_off,
            c_off: p.w_off,
            x_off: p.x_off,
            out_off: p.dw_off,
            bias_off: p.db_off,
            no_bias: p.no_bias,
            accumulate: p.accumulate,
            dx_off: p.dx_off,
            groups: p.groups,
            drop: p.drop,
            ..Default::default()
        };
        let dy = self.logits;
        MatmulBackward { p: mp, dy, y: dy, w: self.w, x: self.x, grads: self.grads, dx: self.dx }
    }
}

impl Kernel for LogitHead {
    fn entry(&self) -> &'static str {
        if self.p.drop.on() {
            "logit_head_dropout"
        } else {
            "logit_head"
        }
    }
    fn uniform(&self) -> Option<Vec<u8>> {
        Some(bytemuck::bytes_of(&self.params()).to_vec())
    }
    fn bindings(&self) -> Vec<(u32, Res)> {
        let (grads, dx) = (self.grads.unwrap_or(self.logits), self.dx.unwrap_or(self.logits));
        let mut b = vec![
            (1, Res::Buf(self.x)),
            (2, Res::Buf(self.w)),
            (3, Res::Buf(grads)),
            (4, Res::Buf(self.logits)),
            (5, Res::Buf(dx)),
            (6, Res::Buf(self.stats)),
        ];
        b.extend(self.p.drop.state_binding());
        b
    }
    fn unused_slots(&self) -> Vec<u32> {
        [(3, self.grads.is_none()), (5, self.dx.is_none())].into_iter().filter(|t| t.1).map(|t| t.0).collect()
    }
    /// The three kernels' (the loss: one per logit).
    fn flops(&self) -> f64 {
        self.forward_op().flops() + self.p.m as f64 + self.backward_op().flops()
    }
    fn workgroups(&self) -> [u32; 3] {
        [1, 1, 1]
    }
    fn spans(&self) -> Vec<Span> {
        let (p, rows) = (self.loss_params(), self.p.m as usize);
        let mut s = self.forward_op().spans();
        s.extend([Span::read(self.logits, p.z_off, rows), Span::write(self.logits, p.dz_off, rows)]);
        let slots = [p.slot_loss, p.slot_prob_first, p.slot_prob_second];
        s.extend(slots.iter().filter(|&&x| x != NO_SLOT).map(|&x| Span::write(self.stats, x, 1)));
        s.extend(self.backward_op().spans());
        s
    }
    /// The old sequence's twins, in order: the same bits as the three kernels (or as the
    /// convolution calls and the loss, for a [`HeadTwin`]).
    fn run_cpu(&self, host: &mut Host) {
        match &self.twin {
            Some(t) => t.forward.run_cpu(host),
            None => self.forward_op().run_cpu(host),
        }
        host.with_outs(self.logits, self.stats, |_, logits, stats| self.loss_twin(logits, stats));
        match &self.twin {
            Some(t) => t.backward.iter().for_each(|op| op.run_cpu(host)),
            None => self.backward_op().run_cpu(host),
        }
    }
}
