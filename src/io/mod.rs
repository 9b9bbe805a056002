//! Writing files safely: the one atomic writer, and the PNGs a run makes.

pub mod atomic;
pub mod png;

pub use atomic::write_atomic;
