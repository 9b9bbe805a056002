//! The default data set shipped in `assets/` (see assets/README.md): the first 10,000 MNIST
//! training digits, gzip-compressed inside the binary, so `shadergan train` with no file trains on
//! something real.

use std::io::Read;

use crate::data::labels::ClassLabels;
use crate::data::{self, Dataset};
use crate::error::{Error, Result};

const MNIST10K_GZ: &[u8] = include_bytes!("../../assets/mnist10k.npy.gz");
const MNIST10K_LABELS_GZ: &[u8] = include_bytes!("../../assets/mnist10k-labels.npy.gz");

/// The name the default data set goes by in logs and config.json.
pub const DEFAULT_DATA_NAME: &str = "assets/mnist10k.npy.gz (built in)";

fn gunzip(gz: &[u8], cap: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    // The cap guards against a corrupted asset.
    flate2::read::GzDecoder::new(gz)
        .take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Io(format!("{DEFAULT_DATA_NAME}: {e}")))?;
    Ok(bytes)
}

pub fn default_dataset() -> Result<Dataset> {
    // 10,000 x 784 bytes plus the header.
    data::load_npy_bytes(&gunzip(MNIST10K_GZ, 16 << 20)?, DEFAULT_DATA_NAME)
}

/// The digit of each built-in image: ten classes, named "0" to "9".
pub fn default_labels() -> Result<ClassLabels> {
    let labels = data::npy::parse_label_bytes(&gunzip(MNIST10K_LABELS_GZ, 1 << 20)?, DEFAULT_DATA_NAME)?;
    Ok(ClassLabels { names: data::labels::index_names(10), ids: labels })
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_dataset_is_mnist_10k() {
        let d = super::default_dataset().unwrap();
        assert_eq!((d.n, d.dim), (10_000, 784));
        assert_eq!(d.image(), Some(super::super::ImageShape::gray(28, 28)));
        let l = super::default_labels().unwrap();
        assert_eq!((l.ids.len(), l.classes(), &l.ids[..5]), (10_000, 10, &[5, 0, 4, 1, 9][..]));
    }
}
