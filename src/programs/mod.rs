//! Whole programs built from networks: the GAN step with sampling ([`gan`]) and the trainer
//! that runs it ([`trainer`]), and the digit classifier ([`classifier`]).

pub mod classifier;
pub mod gan;
pub mod trainer;
