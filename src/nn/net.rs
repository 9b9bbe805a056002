//! A network: named layers, their places in one flat parameter buffer (each layer's tensors in
//! the order it lists them, layer after layer) and in one state buffer, the tensor names of
//! checkpoints (`fc1.weight`, ...), seeded initialisation, and the forward and backward passes as
//! kernel calls over buffers a program allocates.

use super::layer::{Ctx, Grads, InitKey, Io, Layer, Mode, Output};
use crate::ir::{At, BufId, Buffers, Op};
use crate::kernels::activation::{Activation, Cast, EwParams};
use crate::kernels::head::HeadLoss;
use crate::kernels::random::DropMask;

/// Where a backward pass starts and what it writes ([`Net::backward`]'s arguments).
#[derive(Clone, Copy, Debug)]
struct Grad {
    dout: At,
    dinput: Option<At>,
    params: ParamGrads,
}

/// A layer in a network.
#[derive(Debug)]
pub struct NetLayer {
    /// "fc1": the middle part of its tensors' names.
    pub name: String,
    pub layer: Box<dyn Layer>,
    /// Its first parameter in the flat buffer, and its first state value.
    pub param_off: usize,
    pub state_off: usize,
    /// Its place among the layers that have parameters (keys its initialisation).
    pub index: u32,
}

/// What a backward pass does with the parameters' gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamGrads {
    /// Leaves them (a pass through D for G's sake).
    None,
    /// Writes them.
    Write,
    /// Adds them to those of an earlier pass of the same step.
    Add,
}

/// One pass through a network: its input, where the last layer writes (None: its own buffer),
/// the rows (in `groups` batches with batch statistics of their own, see [`super::layer::Io`]),
/// training or eval mode, and the program's seed (dropout masks).
#[derive(Clone, Copy, Debug)]
pub struct Pass {
    pub input: At,
    pub out: Option<At>,
    pub rows: usize,
    pub groups: usize,
    pub mode: Mode,
    pub seed: u64,
    /// The activation that made the input, whose derivative the backward pass applies to the
    /// input's gradient (the identity for none; see [`Net::input_fold`]).
    pub input_act: Activation,
    /// The backward pass's `dout` already is the gradient before the last layer's activation
    /// (the next network applied its derivative: [`Net::input_fold`]).
    pub dout_is_dz: bool,
    /// A conditional model's class labels of the rows (f32 class indices; see `nn::Ctx`).
    pub labels: Option<At>,
}

impl Pass {
    /// A pass over `rows` rows from `input` into the network's own buffers, one group, nothing
    /// folded.
    pub fn new(input: At, rows: usize, mode: Mode, seed: u64) -> Self {
        let input_act = Activation::Identity;
        Pass { input, out: None, rows, groups: 1, mode, seed, input_act, dout_is_dz: false, labels: None }
    }
}

/// A tensor of a network: full name within it ("fc1.weight"), offset, shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tensor {
    pub name: String,
    pub off: usize,
    pub shape: Vec<usize>,
}

#[derive(Debug)]
pub struct Net {
    /// "G", "D" or "C": the first part of its tensors' names and buffers' labels.
    pub name: String,
    /// Keys the initialisation (D 0, G 1, the classifier 2).
    pub id: u32,
    pub layers: Vec<NetLayer>,
    pub params_len: usize,
    pub state_len: usize,
}

/// A network's buffers in a program.
#[derive(Clone, Debug)]
pub struct NetParams {
    pub params: BufId,
    /// The f16 copy of `params` the kernels read at `--precision f16`.
    pub params16: Option<BufId>,
    pub grads: BufId,
    /// Adam's m (first `params_len` values) then v.
    pub moments: BufId,
    /// Non-trainable state (None when the network has none).
    pub state: Option<BufId>,
    /// With spectrally normalised weights: the copy of the parameters the layers read, and the
    /// power iteration's scratch (`nn::spectral`).
    pub sn: Option<super::spectral::SpectralBufs>,
}

/// The weights a pass reads: a network's own, or another copy of them (G's weight average).
#[derive(Clone, Copy, Debug)]
pub struct Weights {
    pub read: BufId,
    pub grads: Option<BufId>,
    pub state: Option<BufId>,
}

impl NetParams {
    pub fn weights(&self) -> Weights {
        let read = self.params16.or(self.sn.map(|s| s.weights)).unwrap_or(self.params);
        Weights { read, grads: Some(self.grads), state: self.state }
    }
}

/// Activation, gradient and scratch buffers of one use of a network, for up to `rows` rows.
#[derive(Clone, Debug)]
pub struct NetActs {
    /// Output of layer i at `vals[i + 1]` (None: in place, or given by the caller).
    vals: Vec<Option<BufId>>,
    /// Gradient of value i (None: aliased to the next one, or given by the caller).
    grads: Vec<Option<BufId>>,
    scratch: Vec<Vec<BufId>>,
    pub rows: usize,
    /// Activations in f16.
    half: bool,
}

impl NetActs {
    /// The buffer of value `i`, the output of layer `i - 1` (None: in place, or the input).
    pub fn value(&self, i: usize) -> Option<BufId> {
        self.vals[i]
    }

    /// The buffer of the last layer's own output (the network's output when the caller gives no
    /// other place).
    pub fn output(&self) -> BufId {
        self.vals.iter().rev().find_map(|v| *v).expect("a network writes some output")
    }
}

impl Net {
    pub fn new(name: &str, id: u32, layers: Vec<(String, Box<dyn Layer>)>) -> Self {
        let (mut params_len, mut state_len, mut index) = (0, 0, 0);
        let mut out = Vec::with_capacity(layers.len());
        for (lname, layer) in layers {
            let p: usize = layer.params().iter().map(|t| t.len()).sum();
            let s: usize = layer.state().iter().map(|t| t.len()).sum();
            out.push(NetLayer { name: lname, layer, param_off: params_len, state_off: state_len, index });
            index += (p > 0) as u32;
            params_len += p;
            state_len += s;
        }
        Net { name: name.into(), id, layers: out, params_len, state_len }
    }

    /// Whether a layer keeps batch statistics (then each pass through it has a batch of its own).
    pub fn has_batch_norm(&self) -> bool {
        self.layers.iter().any(|l| l.layer.kind() == "batch_norm")
    }

    pub fn input_features(&self) -> usize {
        self.layers.first().map_or(0, |l| l.layer.in_features())
    }

    pub fn output_features(&self) -> usize {
        self.layers.last().map_or(0, |l| l.layer.out_features())
    }

    fn tensors_of(&self, state: bool) -> Vec<Tensor> {
        let mut out = vec![];
        for l in &self.layers {
            let (specs, mut off) = if state { (l.layer.state(), l.state_off) } else { (l.layer.params(), l.param_off) };
            for t in specs {
                let module = t.module.unwrap_or(&l.name);
                out.push(Tensor { name: format!("{module}.{}", t.name), off, shape: t.shape.clone() });
                off += t.len();
            }
        }
        out
    }

    /// Every trainable tensor in buffer order: `fc1.weight`, `fc1.bias`, ...
    pub fn tensors(&self) -> Vec<Tensor> {
        self.tensors_of(false)
    }

    /// Every state tensor in buffer order.
    pub fn state_tensors(&self) -> Vec<Tensor> {
        self.tensors_of(true)
    }

    /// Seeded initial parameters, bit-identical on every backend.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut params = vec![0f32; self.params_len];
        for l in &self.layers {
            let len: usize = l.layer.params().iter().map(|t| t.len()).sum();
            let key = InitKey { seed, net: self.id, index: l.index };
            l.layer.init(key, &mut params[l.param_off..l.param_off + len]);
        }
        params
    }

    /// Initial state for the initial parameters `params` (`init(seed)`).
    pub fn init_state(&self, seed: u64, params: &[f32]) -> Vec<f32> {
        let mut state = vec![0f32; self.state_len];
        for l in &self.layers {
            let len: usize = l.layer.state().iter().map(|t| t.len()).sum();
            let plen: usize = l.layer.params().iter().map(|t| t.len()).sum();
            let key = InitKey { seed, net: self.id, index: l.index };
            let p = &params[l.param_off..l.param_off + plen];
            l.layer.init_state(key, p, &mut state[l.state_off..l.state_off + len]);
        }
        state
    }

    /// Parameter, gradient, Adam and state buffers (and the f16 weight copy when `bufs.half`).
    pub fn alloc(&self, bufs: &mut Buffers) -> NetParams {
        let (name, len) = (&self.name, self.params_len);
        let params = bufs.f32(format!("{name}.params"), len);
        let params16 = bufs.half.then(|| bufs.f16(format!("{name}.params.f16"), len));
        let grads = bufs.f32(format!("{name}.params.grad"), len);
        let moments = bufs.f32(format!("{name}.adam.moments"), 2 * len);
        let state = (self.state_len > 0).then(|| bufs.f32(format!("{name}.state"), self.state_len));
        let sn = super::spectral::alloc(self, bufs);
        NetParams { params, params16, grads, moments, state, sn }
    }

    /// Buffers for one use of the network on up to `rows` rows, labelled `{prefix}.{layer}...`.
    pub fn alloc_acts(&self, bufs: &mut Buffers, prefix: &str, rows: usize) -> NetActs {
        let n = self.layers.len();
        let (mut vals, mut grads, mut scratch) = (vec![None], vec![None], vec![]);
        for (i, l) in self.layers.iter().enumerate() {
            let len = rows * l.layer.out_features();
            let label = format!("{prefix}.{}.out", l.name);
            vals.push(match l.layer.output() {
                Output::InPlace => None,
                Output::Act => Some(bufs.act(label, len)),
                Output::F32 => Some(bufs.f32(label, len)),
            });
            // The gradient of this layer's output, unless it is the network's output (given by
            // the caller) or the next layer passes the gradient through in place.
            let aliased = i + 1 == n || self.layers[i + 1].layer.grad_in_place();
            grads.push((!aliased).then(|| bufs.f32(format!("{prefix}.{}.out.grad", l.name), len)));
            let own = l.layer.scratch(rows, bufs.half).into_iter();
            scratch.push(own.map(|(s, len)| bufs.f32(format!("{prefix}.{}.{s}", l.name), len)).collect());
        }
        NetActs { vals, grads, scratch, rows, half: bufs.half }
    }

    /// Where each value lives: the input, then each layer's output (the last at `out` if given).
    fn values(&self, acts: &NetActs, input: At, out: Option<At>) -> Vec<At> {
        let mut v = vec![input];
        for (i, l) in self.layers.iter().enumerate() {
            let at = match (l.layer.output(), out) {
                (Output::InPlace, _) => v[i],
                (_, Some(o)) if i + 1 == self.layers.len() => o,
                _ => At::start(acts.vals[i + 1].expect("allocated")),
            };
            v.push(at);
        }
        v
    }

    /// The gradient of each value, where one is needed: of the input only when `dinput` is
    /// given, of a hidden value when a layer below it has parameters (with `weights`) or the
    /// input's gradient is wanted.
    fn value_grads(&self, acts: &NetActs, dout: At, dinput: Option<At>, weights: bool) -> Vec<Option<At>> {
        let n = self.layers.len();
        let mut need = vec![dinput.is_some()];
        for (i, l) in self.layers.iter().enumerate() {
            need.push(need[i] || (weights && !l.layer.params().is_empty()));
        }
        let mut g = vec![None; n + 1];
        g[n] = Some(dout);
        for i in (0..n).rev() {
            g[i] = match () {
                _ if !need[i] => None,
                _ if i == 0 => dinput,
                _ if self.layers[i].layer.grad_in_place() => g[i + 1],
                _ => acts.grads[i].map(At::start),
            };
        }
        g
    }

    /// The mask of the dropout at layer `d`, when the layer at `fuser` applies it instead of
    /// the dropout's own calls (a layer that fuses dropout, at f32, in training mode).
    fn fused_mask(&self, d: usize, fuser: usize, acts: &NetActs, pass: &Pass) -> Option<DropMask> {
        let (dropout, fuser) = (self.layers.get(d)?, self.layers.get(fuser)?);
        if acts.half || !fuser.layer.fuses_dropout() {
            return None;
        }
        dropout.layer.dropout_mask(pass.rows, pass.groups, pass.mode, pass.seed)
    }

    /// Whether layer `i` is a dropout whose calls its neighbours make (the layer below in the
    /// forward pass, the layer above in the backward pass).
    fn dropout_fused(&self, i: usize, forward: bool, acts: &NetActs, pass: &Pass) -> bool {
        let fuser = if forward { i.checked_sub(1) } else { Some(i + 1) };
        fuser.is_some_and(|f| self.fused_mask(i, f, acts, pass).is_some())
    }

    fn ctx<'a>(&self, ops: &'a mut Vec<Op>, w: Weights, acts: &'a NetActs, i: usize, pass: &Pass) -> Ctx<'a> {
        let l = &self.layers[i];
        let out_mask = self.fused_mask(i + 1, i, acts, pass).unwrap_or_default();
        Ctx {
            ops,
            weights: w.read,
            off: l.param_off,
            grads: w.grads,
            state: w.state,
            state_off: l.state_off,
            scratch: &acts.scratch[i],
            seed: pass.seed,
            half: acts.half,
            labels: pass.labels,
            out_mask,
        }
    }

    /// The forward pass.
    pub fn forward(&self, ops: &mut Vec<Op>, w: Weights, acts: &NetActs, pass: &Pass) {
        self.forward_below(ops, w, acts, pass, self.layers.len())
    }

    /// The forward pass of every layer but the last (whose call [`Net::fused_head`] makes).
    pub fn forward_body(&self, ops: &mut Vec<Op>, w: Weights, acts: &NetActs, pass: &Pass) {
        self.forward_below(ops, w, acts, pass, self.layers.len().saturating_sub(1))
    }

    /// The forward pass of the layers below layer `top`.
    fn forward_below(&self, ops: &mut Vec<Op>, w: Weights, acts: &NetActs, pass: &Pass, top: usize) {
        let v = self.values(acts, pass.input, pass.out);
        for (i, l) in self.layers.iter().enumerate().take(top) {
            if self.dropout_fused(i, true, acts, pass) {
                continue;
            }
            let io = Io { x: v[i], y: v[i + 1], rows: pass.rows, groups: pass.groups };
            l.layer.forward(&mut self.ctx(ops, w, acts, i, pass), io, pass.mode);
        }
    }

    /// The backward pass of the forward `pass`: `dout` is the gradient of the output; writes the
    /// input's gradient to `dinput` if given, and the parameters' gradients as `params` says.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        ops: &mut Vec<Op>,
        w: Weights,
        acts: &NetActs,
        pass: &Pass,
        dout: At,
        dinput: Option<At>,
        params: ParamGrads,
    ) {
        let (at, top) = (Grad { dout, dinput, params }, self.layers.len());
        self.backward_below(ops, w, acts, pass, at, top)
    }

    /// [`Net::backward`] of every layer but the last (whose call [`Net::fused_head`] makes).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_body(
        &self,
        ops: &mut Vec<Op>,
        w: Weights,
        acts: &NetActs,
        pass: &Pass,
        dout: At,
        dinput: Option<At>,
        params: ParamGrads,
    ) {
        let (at, top) = (Grad { dout, dinput, params }, self.layers.len().saturating_sub(1));
        self.backward_below(ops, w, acts, pass, at, top)
    }

    /// The backward calls of the layers below layer `top`, from the top down.
    fn backward_below(&self, ops: &mut Vec<Op>, w: Weights, acts: &NetActs, pass: &Pass, at: Grad, top: usize) {
        let v = self.values(acts, pass.input, pass.out);
        let g = self.value_grads(acts, at.dout, at.dinput, at.params != ParamGrads::None);
        for i in (0..top).rev() {
            if self.dropout_fused(i, false, acts, pass) {
                continue;
            }
            let Some(grads) = self.layer_grads(i, acts, pass, &g, at.params) else { continue };
            let io = Io { x: v[i], y: v[i + 1], rows: pass.rows, groups: pass.groups };
            self.layers[i].layer.backward(&mut self.ctx(ops, w, acts, i, pass), io, grads, pass.mode);
        }
    }

    /// What layer `i`'s backward call is handed, from the values' gradients `g`; None when its
    /// output needs no gradient.
    fn layer_grads(
        &self,
        i: usize,
        acts: &NetActs,
        pass: &Pass,
        g: &[Option<At>],
        params: ParamGrads,
    ) -> Option<Grads> {
        let dy = g[i + 1]?;
        let dx_act = if i > 0 { self.folded(i - 1, acts.half) } else { pass.input_act };
        let dz_given =
            self.folded(i, acts.half) != Activation::Identity || (i + 1 == self.layers.len() && pass.dout_is_dz);
        let weights = params != ParamGrads::None;
        let dx_mask = i.checked_sub(1).and_then(|d| self.fused_mask(d, i, acts, pass)).unwrap_or_default();
        let accumulate = params == ParamGrads::Add;
        Some(Grads { dy, dx: g[i], weights, accumulate, dz_given, dx_act, dx_mask })
    }

    /// The last layer's forward call, `loss` on its output (into `dout`, statistics into `stats`)
    /// and its backward call as [`Net::backward`] would make it, in one call
    /// ([`Layer::fused_head`]: a one-logit linear head at f32); None where the last layer cannot
    /// fuse them. With it, [`Net::forward_body`] and [`Net::backward_body`] run the rest.
    #[allow(clippy::too_many_arguments)]
    pub fn fused_head(
        &self,
        w: Weights,
        acts: &NetActs,
        pass: &Pass,
        dout: At,
        dinput: Option<At>,
        params: ParamGrads,
        loss: HeadLoss,
    ) -> Option<Op> {
        let i = self.layers.len().checked_sub(1)?;
        let v = self.values(acts, pass.input, pass.out);
        let g = self.value_grads(acts, dout, dinput, params != ParamGrads::None);
        let grads = self.layer_grads(i, acts, pass, &g, params)?;
        let io = Io { x: v[i], y: v[i + 1], rows: pass.rows, groups: pass.groups };
        let mut none = vec![];
        self.layers[i].layer.fused_head(&self.ctx(&mut none, w, acts, i, pass), io, grads, loss)
    }

    /// The activation `producer` (the last activation of the network whose output is this one's
    /// input) if this network's first layer can apply its derivative to the input's gradient
    /// ([`Pass::input_act`]; the producer's backward then takes that gradient as its dz,
    /// [`Pass::dout_is_dz`]), else the identity; never at f16.
    pub fn input_fold(&self, producer: Activation, half: bool) -> Activation {
        match self.layers.first() {
            Some(first) if !half && first.layer.folds_input_activation() => producer,
            _ => Activation::Identity,
        }
    }

    /// The activation the last layer ends in.
    pub fn output_activation(&self) -> Activation {
        self.layers.last().map_or(Activation::Identity, |l| l.layer.output_activation())
    }

    /// The activation of layer `i` whose derivative layer `i + 1` applies to its input gradient
    /// for it (the identity when none; never at f16, whose kernels do not fold).
    fn folded(&self, i: usize, half: bool) -> Activation {
        match self.layers.get(i + 1) {
            Some(next) if !half && next.layer.folds_input_activation() => self.layers[i].layer.output_activation(),
            _ => Activation::Identity,
        }
    }

    /// Refreshes the f16 weight copy from the f32 master weights (nothing without one).
    pub fn cast_weights(&self, ops: &mut Vec<Op>, params: BufId, params16: Option<BufId>) {
        if let Some(p16) = params16 {
            let p = EwParams { len: self.params_len as u32, ..Default::default() };
            ops.push(Cast { p, x: params, out: p16, to_f16: true }.into());
        }
    }
}

/// The layers of an MLP named `fc1`, `fc2`, ...: `hidden_act` after each hidden layer (then
/// dropout at `dropout` > 0), `out_act` after the last.
pub fn mlp(
    input: usize,
    hidden: &[usize],
    output: usize,
    hidden_act: crate::kernels::activation::Activation,
    out_act: crate::kernels::activation::Activation,
    dropout: f32,
) -> Vec<(String, Box<dyn Layer>)> {
    mlp_with(input, hidden, output, hidden_act, out_act, dropout, false)
}

/// [`mlp`], its linear layers spectrally normalised when `spectral` (`nn::spectral`).
pub fn mlp_with(
    input: usize,
    hidden: &[usize],
    output: usize,
    hidden_act: crate::kernels::activation::Activation,
    out_act: crate::kernels::activation::Activation,
    dropout: f32,
    spectral: bool,
) -> Vec<(String, Box<dyn Layer>)> {
    let mut sizes = vec![input];
    sizes.extend_from_slice(hidden);
    sizes.push(output);
    let mut layers: Vec<(String, Box<dyn Layer>)> = vec![];
    for (i, pair) in sizes.windows(2).enumerate() {
        let last = i + 2 == sizes.len();
        let act = if last { out_act } else { hidden_act };
        let linear = super::Linear { spectral, ..super::Linear::new(pair[0], pair[1], act) };
        layers.push((format!("fc{}", i + 1), Box::new(linear)));
        if !last && dropout > 0.0 {
            let d = super::Dropout { features: pair[1], rate: dropout, salt: i as u32 };
            layers.push((format!("drop{}", i + 1), Box::new(d)));
        }
    }
    layers
}
