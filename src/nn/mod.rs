//! Layers and networks: the only layer-aware code. A [`Layer`] declares its tensors and emits its
//! own kernel calls; a [`Net`] is a list of named layers laid out in one flat parameter buffer,
//! with the tensor names checkpoints use. Programs (`crate::programs`) build networks and ask them
//! for forward and backward passes.
//!
//! A new layer kind: its file here implementing [`Layer`], over a kernel family of
//! `crate::kernels` (or the existing ones).

pub mod activation;
pub mod augment;
pub mod batch_norm;
pub mod cast;
pub mod conditional_batch_norm;
pub mod conv2d;
pub mod conv_transpose2d;
pub mod dropout;
pub mod embedding;
pub mod layer;
pub mod linear;
pub mod net;
pub mod projection;
pub mod spectral;

pub use activation::Activation;
pub use augment::Augment;
pub use batch_norm::BatchNorm;
pub use cast::Cast;
pub use conditional_batch_norm::ConditionalBatchNorm;
pub use conv2d::Conv2d;
pub use conv_transpose2d::ConvTranspose2d;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use layer::{Ctx, Grads, Init, InitKey, Io, Layer, Mode, Output, SpectralWeight, TensorSpec};
pub use linear::Linear;
pub use net::{mlp, mlp_with, Net, NetActs, NetParams, ParamGrads, Pass, Tensor, Weights};
pub use projection::ProjectionHead;
