//! Layers and networks: the only layer-aware code. A [`Layer`] declares its tensors and emits its
//! own kernel calls; a [`Net`] is a list of named layers laid out in one flat parameter buffer,
//! with the tensor names checkpoints use. Programs (`crate::programs`) build networks and ask them
//! for forward and backward passes.
//!
//! A new layer kind: its file here implementing [`Layer`], over a kernel family of
//! `crate::kernels` (or the existing ones).

pub mod cast;
pub mod dropout;
pub mod layer;
pub mod linear;
pub mod net;

pub use cast::Cast;
pub use dropout::Dropout;
pub use layer::{Ctx, Grads, InitKey, Io, Layer, Mode, Output, TensorSpec};
pub use linear::Linear;
pub use net::{mlp, Net, NetActs, NetParams, Pass, Tensor, Weights};
