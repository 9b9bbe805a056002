//! Every GPU kernel against its CPU twin, one file per kernel family, all through the one op
//! harness (tests/common/harness.rs): awkward shapes (1, 63, 64, 65, 7x33x65), extreme values,
//! outputs pre-filled with NaN, tolerances from `shadergan::kernels::tolerance`.

#[path = "../common/mod.rs"]
mod common;

mod activation;
mod adam;
mod augment;
mod class_affine;
mod conv;
mod dropout_fused;
mod ema;
mod embedding;
mod head;
mod loss;
mod matmul;
mod norm;
mod projection;
mod random;
mod spectral;
mod xent;
