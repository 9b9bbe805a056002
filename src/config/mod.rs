//! Every knob of a run, defined once: the model (its networks built from it), the training
//! configuration resolved from the flags and the data, and the run folder's config.json.

pub mod model;
pub mod train;

pub use model::ModelConfig;
pub use train::*;
