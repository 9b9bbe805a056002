//! The one way shadergan replaces a file: write a temporary file beside it (created fresh, so it
//! never follows a stale link), fsync it, rename it over the target, fsync the directory. A crash
//! or a full disk at any moment leaves either the old file or the new one, never a mix; on error
//! the temporary file is removed and the error names the path that failed.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `.<name>.tmp` in the same directory as `path`.
pub fn temp_path(path: &Path) -> Result<PathBuf> {
    let Some(file_name) = path.file_name() else {
        return Err(Error::io(path, "not a file path"));
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp_name = OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(".tmp");
    Ok(dir.join(tmp_name))
}

/// Replaces `path` with `bytes` atomically (see the module header).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Replaces `path` atomically with what `fill` writes (buffer it for many small writes), so a
/// large file need not be assembled in memory first.
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&mut fs::File) -> std::io::Result<()>) -> Result<()> {
    let tmp = temp_path(path)?;
    let write = || -> std::io::Result<()> {
        let _ = fs::remove_file(&tmp); // a leftover of a crash; create_new will not follow links
        let mut f = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        fill(&mut f)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        if tmp.is_file() {
            let _ = fs::remove_file(&tmp);
        }
        return Err(Error::Io(format!("{}: cannot write {}: {e}", tmp.display(), path.display())));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Io(format!("{}: cannot replace it with {}: {e}", path.display(), tmp.display())));
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    sync_dir(dir)
        .map_err(|e| Error::Io(format!("{}: cannot sync after writing {}: {e}", dir.display(), path.display())))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    use std::io::ErrorKind::{InvalidInput, Unsupported};
    match fs::File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if matches!(e.kind(), InvalidInput | Unsupported) => Ok(()), // no directory fsync here
        r => r,
    }
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_atomically_and_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["f.bin"]);
        assert!(
            matches!(write_atomic(&dir.path().join("no/such/f.bin"), b"x"), Err(Error::Io(m)) if m.contains("no/such"))
        );
        // The temp path taken by a directory: the write fails even for root, the old file stays.
        fs::create_dir(dir.path().join(".f.bin.tmp")).unwrap();
        assert!(matches!(write_atomic(&path, b"x"), Err(Error::Io(m)) if m.contains(".f.bin.tmp")));
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }
}
