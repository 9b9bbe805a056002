//! The default data set shipped in `assets/` (see assets/README.md): the first 10,000 MNIST
//! training digits, gzip-compressed inside the binary, so `shadergan train` with no file trains on
//! something real.

use std::io::Read;

use crate::data::{self, Dataset};
use crate::error::{Error, Result};

const MNIST10K_GZ: &[u8] = include_bytes!("../../assets/mnist10k.npy.gz");

/// The name the default data set goes by in logs and config.json.
pub const DEFAULT_DATA_NAME: &str = "assets/mnist10k.npy.gz (built in)";

pub fn default_dataset() -> Result<Dataset> {
    let mut bytes = Vec::new();
    // 10,000 x 784 bytes plus the header; the cap guards against a corrupted asset.
    flate2::read::GzDecoder::new(MNIST10K_GZ)
        .take(16 << 20)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Io(format!("{DEFAULT_DATA_NAME}: {e}")))?;
    data::load_npy_bytes(&bytes, DEFAULT_DATA_NAME)
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_dataset_is_mnist_10k() {
        let d = super::default_dataset().unwrap();
        assert_eq!((d.n, d.dim), (10_000, 784));
        assert_eq!(d.image(), Some(super::super::ImageShape::gray(28, 28)));
    }
}
