//! The kernel-call IR, at the bottom of the crate: buffers, the resident data set's chunks, the
//! [`Kernel`] interface every op implements, the uniform structs' shared machinery, and the training state both backends keep.
//! Nothing here knows a layer, a network or a backend.

pub mod buffer;
pub mod data;
pub mod kernel;
pub mod pool;
pub mod state;
pub mod uniform;

pub use buffer::{At, BufId, BufSpec, Buffers, DType};
pub use data::{DataChunks, DataView, CHUNK_BYTES_ENV};
pub use kernel::{groups_1d, Host, Kernel, Op, Res, Span};
pub use pool::Pool;
pub use state::TrainState;
pub use uniform::{UniformInfo, UniformLayout};
