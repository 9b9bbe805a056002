//! The machinery of the CPU backend's fast paths: one persistent thread pool ([`pool`]) and the
//! sgemm the matmul and convolution fast paths run on ([`gemm`]). The reference twins use none of
//! it.

pub mod gemm;
pub mod pool;

pub use pool::Pool;
