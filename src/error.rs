//! One error type for the library. The CLI maps each kind to an exit code: bad input from the
//! user (a file, a flag, a checkpoint) is exit 2; a failure of the machine (GPU, disk) is exit 1.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's input is wrong: a data file, a flag, a checkpoint. Exit code 2.
    #[error("{0}")]
    Input(String),
    /// The GPU could not be used or reported an error. Exit code 1.
    #[error("{0}")]
    Gpu(String),
    /// Reading or writing a file failed. Exit code 1.
    #[error("{0}")]
    Io(String),
    /// Training produced NaN or Inf. Exit code 1.
    #[error("{0}")]
    Diverged(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) => 2,
            _ => 1,
        }
    }

    pub fn input(msg: impl fmt::Display) -> Self {
        Error::Input(msg.to_string())
    }

    pub fn gpu(msg: impl fmt::Display) -> Self {
        Error::Gpu(msg.to_string())
    }

    /// An I/O error with the path it concerns.
    pub fn io(path: &std::path::Path, e: impl fmt::Display) -> Self {
        Error::Io(format!("{}: {e}", path.display()))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Early return with an [`Error::Input`].
#[macro_export]
macro_rules! bail_input {
    ($($arg:tt)*) => { return Err($crate::error::Error::Input(format!($($arg)*))) };
}
