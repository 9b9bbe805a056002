//! The commands besides `train`: `generate`, `eval`, `bench`.

pub mod bench;
pub mod eval;
pub mod generate;
pub mod plan;
