//! The commands besides `train`: `generate`, `eval`, `bench`.

pub mod bench;
pub mod eval;
pub mod export_web;
pub mod generate;
pub mod plan;
