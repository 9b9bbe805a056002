//! The resident data set as a program binds it: whole rows in one or more chunks, each chunk one
//! storage binding (`Res::Data(k)`). A GPU caps a storage binding (`max_storage_buffer_binding_size`,
//! 128 MiB on lavapipe) below many data sets (MNIST as float32 is 188 MB), so a program is built
//! for a chunk plan and the gather runs once per chunk: each dispatch computes every batch row's
//! source in the epoch's permutation and copies only the rows its chunk holds, so the batch is
//! the same, bit for bit, however the data is split. The plan depends on the device, so it is made
//! before the program (see `backend::Device`).

use std::ops::Range;

use crate::error::{Error, Result};

/// Test hook: caps every chunk at this many bytes (on the CPU backend too), to exercise chunk
/// boundaries on small data. Not for users: the device's own limit is always applied.
pub const CHUNK_BYTES_ENV: &str = "SHADERGAN_DATA_CHUNK_BYTES";

/// A chunk is indexed with u32 byte offsets in the gather, so it stays under 4 GiB whatever the
/// device allows.
pub const MAX_CHUNK_BYTES: u64 = (1 << 32) - 4;

/// Row ranges of the data set, in order, covering [0, n) without gaps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataChunks {
    pub rows: Vec<Range<usize>>,
}

impl DataChunks {
    /// One chunk holding all `n` rows (the whole data set in one binding).
    pub fn whole(n: usize) -> Self {
        // One range, the whole data set (not the list of its row numbers).
        #[allow(clippy::single_range_in_vec_init)]
        let rows = vec![0..n];
        DataChunks { rows }
    }

    /// Chunks of whole rows of `row_bytes` bytes each, every chunk (padded to 4 bytes) at most
    /// `max_bytes` (and [`MAX_CHUNK_BYTES`]); `None`: one chunk.
    pub fn plan(n: usize, row_bytes: usize, max_bytes: Option<u64>) -> Result<Self> {
        let Some(max) = max_bytes else { return Ok(Self::whole(n)) };
        let max = max.min(MAX_CHUNK_BYTES) & !3;
        let per = max / row_bytes.max(1) as u64;
        if per == 0 {
            return Err(Error::input(format!(
                "one sample is {row_bytes} bytes, more than this GPU's largest storage binding \
                 ({max} bytes); use smaller samples or train with --backend cpu"
            )));
        }
        let per = per.min(n.max(1) as u64) as usize;
        Ok(DataChunks { rows: (0..n).step_by(per).map(|lo| lo..(lo + per).min(n)).collect() })
    }

    /// `max_bytes` lowered to the [`CHUNK_BYTES_ENV`] test hook when it is set.
    pub fn limit_with_hook(max_bytes: Option<u64>) -> Option<u64> {
        let hook = std::env::var(CHUNK_BYTES_ENV).ok().and_then(|v| v.parse::<u64>().ok());
        match (max_bytes, hook) {
            (Some(m), Some(h)) => Some(m.min(h)),
            (m, h) => m.or(h),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Rows in all chunks.
    pub fn n(&self) -> usize {
        self.rows.last().map_or(0, |r| r.end)
    }
}

/// The data set as the CPU twins read one chunk of it.
#[derive(Clone, Copy, Debug)]
pub enum DataView<'a> {
    U8(&'a [u8]),
    F32(&'a [f32]),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_whole_rows_under_the_limit() {
        assert_eq!(DataChunks::plan(10, 4, None).unwrap().rows, vec![0..10]);
        // 12 bytes a row, 40 bytes a chunk: 3 rows each.
        assert_eq!(DataChunks::plan(10, 12, Some(40)).unwrap().rows, vec![0..3, 3..6, 6..9, 9..10]);
        // Padding to 4: 3 rows of 5 bytes are 15, padded to 16 <= 16.
        assert_eq!(DataChunks::plan(7, 5, Some(17)).unwrap().rows, vec![0..3, 3..6, 6..7]);
        assert_eq!(DataChunks::plan(3, 4, Some(1 << 40)).unwrap().rows, vec![0..3]);
        assert!(DataChunks::plan(3, 100, Some(64)).unwrap_err().to_string().contains("one sample is 100 bytes"));
        let c = DataChunks::plan(5, 1, Some(4)).unwrap();
        assert_eq!((c.len(), c.n()), (2, 5));
    }
}
