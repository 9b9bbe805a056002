//! The class labels of a conditional run (`--conditional`): one class index per sample, from an
//! image folder's class subfolders (as torchvision's `ImageFolder` numbers them: the subfolder
//! names sorted, the first 0) or from `--labels FILE.npy` beside a `.npy` data file (an integer
//! array of shape (N,) or (N, 1), class indices from 0; the classes are then named "0", "1", ...).
//!
//! Labels are bytes, as the classifier's (`MAX_CLASSES`, 256 classes at most), so that they ride
//! in one more column of the resident data table, beside the pixels (`labelled_table`).
//!
//! Every problem is one [`Error::Input`] line naming the file or folder: a label count that is
//! not the sample count, a negative or too large label, a float or other non-integer dtype (NaN
//! included), one class only, an image outside any class subfolder.

use std::path::{Component, Path, PathBuf};

use super::npy::{read_label_array, LabelValues, MAX_CLASSES};
use super::{DataValues, Dataset};
use crate::error::{Error, Result};

/// Class labels: each sample's class index, and the classes' names (their count is the number
/// of classes: an index is always below it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassLabels {
    pub ids: Vec<u8>,
    pub names: Vec<String>,
}

impl ClassLabels {
    pub fn classes(&self) -> usize {
        self.names.len()
    }

    /// Samples of each class.
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes()];
        for &y in &self.ids {
            c[y as usize] += 1;
        }
        c
    }
}

/// The names a label file's classes get: "0" to "classes - 1".
pub fn index_names(classes: usize) -> Vec<String> {
    (0..classes).map(|c| c.to_string()).collect()
}

/// `--labels FILE`: one integer label per sample of a data set of `n` samples.
pub fn load_label_file(path: &Path, n: usize) -> Result<ClassLabels> {
    let name = path.display().to_string();
    let fail = |msg: String| Error::input(format!("{name}: {msg}"));
    let array = read_label_array(path)?;
    let LabelValues::Ints(values) = array.values else {
        return Err(fail(format!(
            "the labels are {}; --labels needs integer class indices (uint8, int32, int64, ...): \
             save them with labels.astype(np.int64)",
            array.dtype
        )));
    };
    if values.len() != n {
        return Err(fail(format!("{} labels for {n} samples; give one label per sample", values.len())));
    }
    let mut ids = Vec::with_capacity(n);
    for (i, &y) in values.iter().enumerate() {
        if y < 0 {
            return Err(fail(format!("label {i} is {y}; class indices start at 0")));
        }
        let Some(id) = u8::try_from(y).ok() else {
            return Err(fail(format!(
                "label {i} is {y}; at most {MAX_CLASSES} classes are supported (labels 0 to {})",
                MAX_CLASSES - 1
            )));
        };
        ids.push(id);
    }
    let classes = *ids.iter().max().expect("n > 0: the file has labels") as usize + 1;
    let labels = ClassLabels { ids, names: index_names(classes) };
    check_several(&labels).map_err(fail)?;
    Ok(labels)
}

/// An image folder's classes: the first subfolder under `root` on each file's path (`files` as
/// the walk from `root` found them), numbered in the sorted order of their names.
pub fn folder_classes(root: &Path, files: &[PathBuf]) -> Result<ClassLabels> {
    let d = root.display();
    let mut per_file = Vec::with_capacity(files.len());
    for f in files {
        let rel = f.strip_prefix(root).map_err(|_| {
            Error::input(format!(
                "{d}: cannot tell the class of {} (the image cache was made from another path to the \
                 folder); delete the cache to rebuild it",
                f.display()
            ))
        })?;
        let mut parts = rel.components().filter(|c| matches!(c, Component::Normal(_)));
        match (parts.next(), parts.next()) {
            (Some(class), Some(_)) => per_file.push(class.as_os_str().to_string_lossy().into_owned()),
            _ => {
                return Err(Error::input(format!(
                    "{d}: {} is not in a class subfolder; --conditional reads the classes from \
                     subfolders (FOLDER/CLASS/image.png, as torchvision's ImageFolder)",
                    f.display()
                )))
            }
        }
    }
    let mut names = per_file.clone();
    names.sort();
    names.dedup();
    if names.len() > MAX_CLASSES {
        return Err(Error::input(format!(
            "{d}: {} class subfolders; at most {MAX_CLASSES} classes are supported",
            names.len()
        )));
    }
    let ids = per_file.iter().map(|c| names.binary_search(c).expect("a name of the list") as u8).collect();
    let labels = ClassLabels { ids, names };
    check_several(&labels).map_err(|why| Error::input(format!("{d}: {why}")))?;
    Ok(labels)
}

/// A conditional GAN needs two classes or more with samples.
fn check_several(labels: &ClassLabels) -> std::result::Result<(), String> {
    let present = labels.counts().iter().filter(|&&c| c > 0).count();
    if present >= 2 {
        return Ok(());
    }
    let only = labels.ids.first().map_or(String::new(), |&y| labels.names[y as usize].clone());
    Err(format!("every sample is of one class ({only}); a conditional GAN needs at least two classes"))
}

/// The resident table of a conditional run: each row holds a sample's values, then its label
/// (a byte, or its f32 value for float data), so that one gather permutation keeps them paired
/// and the labels travel to the device with the data (no per-step upload). The classifier's
/// training table is built the same way.
pub fn labelled_table(data: &Dataset, labels: &[u8]) -> Result<Dataset> {
    let (n, dim) = (data.n, data.dim);
    if labels.len() != n {
        return Err(Error::input(format!("{} labels for {n} samples; give one label per sample", labels.len())));
    }
    match &data.values {
        DataValues::U8(v) => {
            let mut t = Vec::with_capacity(n * (dim + 1));
            for (row, &y) in v.chunks(dim).zip(labels) {
                t.extend_from_slice(row);
                t.push(y);
            }
            Dataset::from_u8(n, dim + 1, t)
        }
        DataValues::F32(v) => {
            let mut t = Vec::with_capacity(n * (dim + 1));
            for (row, &y) in v.chunks(dim).zip(labels) {
                t.extend_from_slice(row);
                t.push(y as f32);
            }
            Dataset::from_f32(n, dim + 1, t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_classes_are_imagefolders() {
        let root = Path::new("data/pets");
        let files: Vec<PathBuf> =
            ["dog/a.png", "cat/b.png", "dog/x/c.png", "cat/d.png", "emu/e.png"].iter().map(|f| root.join(f)).collect();
        let l = folder_classes(root, &files).unwrap();
        assert_eq!(l.names, ["cat", "dog", "emu"]);
        assert_eq!(l.ids, [1, 0, 1, 0, 2]);
        assert_eq!(l.counts(), [2, 2, 1]);
        let loose = [root.join("a.png"), root.join("dog/b.png")];
        let e = folder_classes(root, &loose).unwrap_err().to_string();
        assert!(e.contains("a.png is not in a class subfolder"), "{e}");
        let one = [root.join("dog/a.png"), root.join("dog/b.png")];
        let e = folder_classes(root, &one).unwrap_err().to_string();
        assert!(e.contains("every sample is of one class (dog)"), "{e}");
        let elsewhere = [PathBuf::from("other/dog/a.png")];
        assert!(folder_classes(root, &elsewhere).unwrap_err().to_string().contains("cannot tell the class"));
    }

    #[test]
    fn the_table_puts_each_label_after_its_row() {
        let d = Dataset::from_u8(2, 3, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let t = labelled_table(&d, &[7, 9]).unwrap();
        assert_eq!((t.n, t.dim), (2, 4));
        assert_eq!(t.values, DataValues::U8(vec![1, 2, 3, 7, 4, 5, 6, 9]));
        let f = Dataset::from_f32(1, 2, vec![0.5, -1.0]).unwrap();
        assert_eq!(labelled_table(&f, &[3]).unwrap().values, DataValues::F32(vec![0.5, -1.0, 3.0]));
        assert!(labelled_table(&d, &[1]).is_err());
    }
}
