//! A projection discriminator's head (Miyato & Koyama 2018): D's last layer, the logit of each
//! row from its last hidden features phi and its class y, logit = w phi + b + <E[y], phi>:
//! a linear head (`weight` (1, in), `bias`, as the unconditional D's last layer) plus the inner
//! product with a learned class embedding E (classes, in), named `embed.weight` as a PyTorch D
//! holding `self.embed = nn.Embedding(classes, in)` names it. Kernels: the head's
//! `matmul_forward` / `matmul_backward`, then `projection_forward` / `projection_backward`
//! (projection.wgsl), which adds the class term's gradient to the phi gradient the head wrote,
//! scaled by the same folded activation derivative.
//!
//! E starts as the head's own weight does (each row of E is a class's extra head weight):
//! U(-1/sqrt(in), 1/sqrt(in)) in the MLP's D, N(0, 0.02) in the DCGAN's, so the class term starts
//! at the scale of the logit rather than nn.Embedding's N(0, 1), which would swamp it. With `spectral` both the
//! head's weight and E are spectrally normalised (as SNGAN's projection discriminator
//! normalises its embedding), each with its own u and v.

use super::layer::{Ctx, Grads, Init, InitKey, Io, Layer, Mode, SpectralWeight, TensorSpec};
use super::linear::Linear;
use super::spectral;
use crate::kernels::activation::Activation;
use crate::kernels::projection::{ProjectionBackward, ProjectionForward, ProjectionParams};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProjectionHead {
    /// The features of phi.
    pub fan_in: usize,
    pub classes: usize,
    pub spectral: bool,
    /// The head's weight (and E): `Init::Default` (the MLP's), or N(0, std) for the DCGAN's D,
    /// whose other layers start so.
    pub init: Init,
}

impl ProjectionHead {
    fn head(&self) -> Linear {
        Linear { spectral: self.spectral, init: self.init, ..Linear::new(self.fan_in, 1, Activation::Identity) }
    }

    /// Where E starts in the layer's parameters (after the head's weight and bias) and its u in
    /// the layer's state (after the head's u and v).
    fn embed_off(&self) -> usize {
        self.fan_in + 1
    }

    fn embed_state_off(&self) -> usize {
        1 + self.fan_in
    }

    fn params(&self, cx: &Ctx, rows: usize) -> ProjectionParams {
        let labels = cx.labels.expect("a conditional pass has labels");
        ProjectionParams {
            rows: rows as u32,
            dim: self.fan_in as u32,
            classes: self.classes as u32,
            labels_off: labels.off as u32,
            embed_off: (cx.off + self.embed_off()) as u32,
            ..Default::default()
        }
    }
}

impl Layer for ProjectionHead {
    fn kind(&self) -> &'static str {
        "projection_head"
    }

    fn in_features(&self) -> usize {
        self.fan_in
    }

    fn out_features(&self) -> usize {
        1
    }

    fn params(&self) -> Vec<TensorSpec> {
        let mut t = self.head().params();
        t.push(TensorSpec::in_module("embed", spectral::weight_name(self.spectral), &[self.classes, self.fan_in]));
        t
    }

    fn state(&self) -> Vec<TensorSpec> {
        if !self.spectral {
            return vec![];
        }
        let mut t = self.head().state();
        t.push(TensorSpec::in_module("embed", spectral::U, &[self.classes]));
        t.push(TensorSpec::in_module("embed", spectral::V, &[self.fan_in]));
        t
    }

    fn init(&self, key: InitKey, params: &mut [f32]) {
        let (head, embed) = params.split_at_mut(self.embed_off());
        key.weights_and_bias(self.init, self.fan_in, self.fan_in, head);
        match self.init {
            Init::Default => key.part(1).uniform(1.0 / (self.fan_in as f32).sqrt(), embed),
            Init::Normal(std) => key.part(1).normal(0.0, std, embed),
        }
    }

    fn init_state(&self, key: InitKey, params: &[f32], state: &mut [f32]) {
        if self.spectral {
            let (head, embed) = state.split_at_mut(self.embed_state_off());
            spectral::init_state(key, params, 1, self.fan_in, head);
            spectral::init_state(key.part(1), &params[self.embed_off()..], self.classes, self.fan_in, embed);
        }
    }

    fn spectral_weights(&self) -> Vec<SpectralWeight> {
        if !self.spectral {
            return vec![];
        }
        vec![
            SpectralWeight { param_off: 0, state_off: 0, rows: 1, cols: self.fan_in },
            SpectralWeight {
                param_off: self.embed_off(),
                state_off: self.embed_state_off(),
                rows: self.classes,
                cols: self.fan_in,
            },
        ]
    }

    fn folds_input_activation(&self) -> bool {
        true
    }

    fn forward(&self, cx: &mut Ctx, io: Io, mode: Mode) {
        self.head().forward(cx, io, mode);
        let labels = cx.labels.expect("a conditional pass has labels").buf;
        let p = ProjectionParams { phi_off: io.x.off as u32, logit_off: io.y.off as u32, ..self.params(cx, io.rows) };
        cx.ops.push(ProjectionForward { p, labels, embed: cx.weights, phi: io.x.buf, logits: io.y.buf }.into());
    }

    /// The head's backward pass (dw, db, and phi's gradient scaled by the folded activation
    /// derivative), then the class term's: dE, and its part of phi's gradient added.
    fn backward(&self, cx: &mut Ctx, io: Io, g: Grads, mode: Mode) {
        self.head().backward(cx, io, g, mode);
        let grads = cx.grads.filter(|_| g.weights);
        if grads.is_none() && g.dx.is_none() {
            return;
        }
        let labels = cx.labels.expect("a conditional pass has labels").buf;
        let p = ProjectionParams {
            phi_off: io.x.off as u32,
            logit_off: g.dy.off as u32,
            dphi_off: g.dx.map_or(0, |d| d.off as u32),
            accumulate: g.accumulate as u32,
            act: g.dx_act.code(),
            slope: g.dx_act.slope(),
            ..self.params(cx, io.rows)
        };
        let (embed, phi, dlogits, dphi) = (cx.weights, io.x.buf, g.dy.buf, g.dx.map(|d| d.buf));
        cx.ops.push(ProjectionBackward { p, labels, embed, phi, dlogits, grads, dphi }.into());
    }
}
