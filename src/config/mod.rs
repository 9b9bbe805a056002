//! Every knob of a run, defined once: the model (its networks built from it), the training
//! configuration resolved from the flags and the data, and the run folder's config.json.

pub mod model;
pub mod options;
pub mod run;
pub mod train;

pub use model::ModelConfig;
pub use options::{Given, RunOptions, TrainOptions};
pub use run::RunConfig;
pub use train::*;
