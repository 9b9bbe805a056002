//! Files: the one atomic writer, the PNGs a run makes, checked reading of safetensors.

pub mod atomic;
pub mod png;
pub mod safetensors;

pub use atomic::{write_atomic, write_atomic_with};
