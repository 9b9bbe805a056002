//! Loading and validating `.npy` files; saving them.
//!
//! A data file comes from the internet, so loading it must never panic or exhaust memory. The
//! whole file is read (an allocation bounded by its real size), the header is checked against
//! the byte count *before* anything sized by the header is allocated, and every problem is an
//! [`Error::Input`] on one line that starts with the file name.
//!
//! Accepted: dtypes uint8 (`|u1`, `<u1`), float32 and float64 (`<f4`, `>f4`, `<f8`, `>f8`);
//! shapes (N, D), (N, H, W), (N, C, H, W) and (N, H, W, C) with C = 1 or 3 and no zero axis; C or
//! Fortran order. Values are kept row-major as (N, dim): u8 stays u8 (scaled by 1/255 when read),
//! floats become finite f32. A 4-D array's layout is read from where its 1 or 3 sits (axis 1:
//! NCHW, axis 3: NHWC); where both could be channels, e.g. (N, 3, 32, 3), `--layout` decides.
//! NHWC samples are reordered to channel planes (NCHW) once, here (see [`super::ImageShape`]).
//!
//! Header parsing is ndarray-npy's ([`Header::from_reader`]), data decoding too
//! ([`ReadableElement`]); this module only checks the fixed-size prefix first so that the
//! header length cannot cause a large allocation.

use std::fmt::Display;
use std::path::Path;

use ndarray::{ArrayD, ArrayView2, ArrayViewD, IxDyn, ShapeBuilder};
use ndarray_npy::npy::header::{Header, ParseHeaderError, ReadHeaderError};
use ndarray_npy::{ReadableElement, WriteNpyExt};

use super::{bad_value, check_finite, nhwc_to_nchw, DataValues, Dataset, ImageShape, Layout};
use crate::error::{Error, Result};
use crate::io::write_atomic;

/// Headers longer than this are not plain arrays (NumPy's own limit when loading).
const MAX_HEADER_LEN: usize = 10000;
/// A plain array header nests brackets 2 deep; the dict parser takes time exponential in depth.
const MAX_NESTING: usize = 4;
const MAGIC: &[u8] = b"\x93NUMPY";
const SUPPORTED: &str = "supported: uint8 ('|u1'), float32 ('<f4', '>f4'), float64 ('<f8', '>f8')";
const SHAPES: &str = "expected (N, D), (N, H, W), (N, C, H, W) or (N, H, W, C) with C = 1 or 3";

/// Load and validate a .npy file (a 4-D array's layout read from its shape).
pub fn load_npy(path: &Path) -> Result<Dataset> {
    load_npy_with(path, None)
}

/// Load and validate a .npy file; `layout` (`--layout`) says where a 4-D array's channels are.
pub fn load_npy_with(path: &Path, layout: Option<Layout>) -> Result<Dataset> {
    let name = path.display().to_string();
    let user_error = |e: std::io::Error| {
        use std::io::ErrorKind::*;
        match e.kind() {
            NotFound | PermissionDenied | IsADirectory => Error::input(format!("{name}: cannot read: {e}")),
            _ => Error::io(path, e),
        }
    };
    let meta = std::fs::metadata(path).map_err(user_error)?;
    if !meta.is_file() {
        crate::bail_input!("{name}: not a regular file");
    }
    let bytes = std::fs::read(path).map_err(user_error)?;
    parse_npy(&bytes, &name, layout)
}

/// Same, from bytes in memory (`name` appears in error messages).
pub fn load_npy_bytes(bytes: &[u8], name: &str) -> Result<Dataset> {
    parse_npy(bytes, name, None)
}

/// Most classes a label file may name (labels are stored as bytes).
pub const MAX_CLASSES: usize = 256;

/// The values of a label file, as its dtype holds them: integers (any of NumPy's signed and
/// unsigned widths, either byte order) or floats.
#[derive(Clone, Debug, PartialEq)]
pub enum LabelValues {
    Ints(Vec<i64>),
    Floats(Vec<f64>),
}

/// A label file read: its values and its dtype's name ("int64", "float32", ...).
#[derive(Clone, Debug, PartialEq)]
pub struct LabelArray {
    pub values: LabelValues,
    pub dtype: &'static str,
}

impl LabelArray {
    pub fn len(&self) -> usize {
        match &self.values {
            LabelValues::Ints(v) => v.len(),
            LabelValues::Floats(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads a label file: a .npy of shape (N,) or (N, 1) of integers or floats, checked like a data
/// file (prefix and sizes before any allocation sized by the header).
pub fn read_label_array(path: &Path) -> Result<LabelArray> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::input(format!("{name}: cannot read: {e}")))?;
    parse_label_array(&bytes, &name)
}

/// Loads class labels: a .npy of shape (N,) or (N, 1), integers or integral floats in [0, 255].
pub fn load_labels(path: &Path) -> Result<Vec<u8>> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::input(format!("{name}: cannot read: {e}")))?;
    parse_label_bytes(&bytes, &name)
}

/// [`load_labels`] from bytes in memory (`name` appears in error messages).
pub fn parse_label_bytes(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    let a = parse_label_array(bytes, name)?;
    let bad = |i: usize, x: &dyn Display| {
        Error::input(format!("{name}: label {i} is {x}; labels must be integers from 0 to 255"))
    };
    match a.values {
        LabelValues::Ints(v) => v.iter().enumerate().map(|(i, &x)| u8::try_from(x).map_err(|_| bad(i, &x))).collect(),
        LabelValues::Floats(v) => {
            v.iter()
                .enumerate()
                .map(|(i, &x)| {
                    if x.fract() == 0.0 && (0.0..MAX_CLASSES as f64).contains(&x) {
                        Ok(x as u8)
                    } else {
                        Err(bad(i, &x))
                    }
                })
                .collect()
        }
    }
}

/// The dtypes a label file may have: (descriptors, name, bytes per value).
const LABEL_DTYPES: [(&[&str], &str, usize); 10] = [
    (&["|u1", "<u1", ">u1", "u1", "B"], "uint8", 1),
    (&["|i1", "<i1", ">i1", "i1", "b"], "int8", 1),
    (&["<u2", ">u2"], "uint16", 2),
    (&["<i2", ">i2"], "int16", 2),
    (&["<u4", ">u4"], "uint32", 4),
    (&["<i4", ">i4"], "int32", 4),
    (&["<u8", ">u8"], "uint64", 8),
    (&["<i8", ">i8"], "int64", 8),
    (&["<f4", ">f4"], "float32", 4),
    (&["<f8", ">f8"], "float64", 8),
];

fn parse_label_array(bytes: &[u8], name: &str) -> Result<LabelArray> {
    let fail = |msg: String| Error::input(format!("{name}: {msg}"));
    let header_end = check_prefix(bytes).map_err(fail)?;
    let header =
        Header::from_reader(&mut bytes.get(..header_end).unwrap_or_default()).map_err(|e| fail(header_message(e)))?;
    let descr = header.type_descriptor.as_string().map(String::as_str).unwrap_or("");
    let Some(&(_, dtype, size)) = LABEL_DTYPES.iter().find(|(d, _, _)| d.contains(&descr)) else {
        return Err(fail(format!(
            "unsupported dtype {} for labels; give integers (uint8, int32, int64, ...)",
            short(&header.type_descriptor)
        )));
    };
    let shape = header.shape.clone();
    let n = match shape.as_slice() {
        [n] | [n, 1] => *n,
        _ => {
            let dims = shape.len();
            return Err(fail(format!(
                "unsupported {dims}-D shape {}; labels must have shape (N,) or (N, 1)",
                python_tuple(&shape)
            )));
        }
    };
    if n == 0 {
        return Err(fail(format!("shape {} has no labels (N = 0)", python_tuple(&shape))));
    }
    let data = bytes.get(header_end..).unwrap_or_default();
    let expected =
        n.checked_mul(size).ok_or_else(|| fail("the shape is too large: its byte count overflows".into()))?;
    if data.len() != expected {
        let what = if data.len() < expected { "truncated data" } else { "trailing bytes after the data" };
        return Err(fail(format!(
            "{what}: {n} labels of {dtype} need {expected} bytes after the header, {} are present",
            data.len()
        )));
    }
    // The byte count matches the shape, so allocating n values is bounded by the file.
    let t = &header.type_descriptor;
    let err = |e: ndarray_npy::ReadDataError| fail(format!("cannot decode the labels: {e}"));
    let ints = |v: Vec<i64>| LabelValues::Ints(v);
    let values = match dtype {
        "uint8" => ints(u8::read_to_end_exact_vec(data, t, n).map_err(err)?.into_iter().map(i64::from).collect()),
        "int8" => ints(i8::read_to_end_exact_vec(data, t, n).map_err(err)?.into_iter().map(i64::from).collect()),
        "uint16" => ints(u16::read_to_end_exact_vec(data, t, n).map_err(err)?.into_iter().map(i64::from).collect()),
        "int16" => ints(i16::read_to_end_exact_vec(data, t, n).map_err(err)?.into_iter().map(i64::from).collect()),
        "uint32" => ints(u32::read_to_end_exact_vec(data, t, n).map_err(err)?.into_iter().map(i64::from).collect()),
        "int32" => ints(i32::read_to_end_exact_vec(data, t, n).map_err(err)?.into_iter().map(i64::from).collect()),
        // Past i64's range is past any class index anyway.
        "uint64" => ints(
            u64::read_to_end_exact_vec(data, t, n)
                .map_err(err)?
                .into_iter()
                .map(|x| x.min(i64::MAX as u64) as i64)
                .collect(),
        ),
        "int64" => ints(i64::read_to_end_exact_vec(data, t, n).map_err(err)?),
        "float32" => LabelValues::Floats(
            f32::read_to_end_exact_vec(data, t, n).map_err(err)?.into_iter().map(f64::from).collect(),
        ),
        _ => LabelValues::Floats(f64::read_to_end_exact_vec(data, t, n).map_err(err)?),
    };
    Ok(LabelArray { values, dtype })
}

fn parse_npy(bytes: &[u8], name: &str, layout: Option<Layout>) -> Result<Dataset> {
    let fail = |msg: String| Error::input(format!("{name}: {msg}"));
    let header_end = check_prefix(bytes).map_err(fail)?;
    let header =
        Header::from_reader(&mut bytes.get(..header_end).unwrap_or_default()).map_err(|e| fail(header_message(e)))?;

    let descr = header.type_descriptor.as_string().map(String::as_str);
    let (dtype, size) = match descr {
        Some("|u1" | "<u1" | ">u1" | "u1" | "B") => ("uint8", 1),
        Some("<f4" | ">f4") => ("float32", 4),
        Some("<f8" | ">f8") => ("float64", 8),
        _ => return Err(fail(format!("unsupported dtype {}; {SUPPORTED}", short(&header.type_descriptor)))),
    };

    let shape = header.shape.clone();
    let shape_str = python_tuple(&shape);
    let accepted = matches!(shape.as_slice(), [_, _] | [_, _, _] | [_, _, _, _]);
    let (Some((&n, rest)), true) = (shape.split_first(), accepted) else {
        return Err(fail(format!("unsupported {}-D shape {shape_str}; {SHAPES}", shape.len())));
    };
    let sample_shape = rest.to_vec();
    if n == 0 {
        return Err(fail(format!("shape {shape_str} has no samples (N = 0)")));
    }
    if sample_shape.contains(&0) {
        return Err(fail(format!("shape {shape_str} has an axis of length 0: samples have no features")));
    }
    let image = image_of(&sample_shape, layout).map_err(|why| fail(format!("shape {shape_str}: {why}")))?;
    let dim = sample_shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
    let len = dim.and_then(|d| d.checked_mul(n));
    let (Some(dim), Some(len), Some(expected)) = (dim, len, len.and_then(|l| l.checked_mul(size))) else {
        return Err(fail(format!("shape {shape_str} is too large: its byte count overflows")));
    };
    let data = bytes.get(header_end..).unwrap_or_default();
    if data.len() != expected {
        let what = if data.len() < expected { "truncated data" } else { "trailing bytes after the data" };
        return Err(fail(format!(
            "{what}: shape {shape_str} of {dtype} needs {expected} bytes after the header, {} are present",
            data.len()
        )));
    }

    // Sizes are now known to match real bytes, so allocating `len` elements is safe.
    let values = decode_values(data, dtype, &header, len, dim, name)?;
    match image {
        None => Ok(Dataset::flat(n, dim, values, dtype)),
        Some((shape, layout)) => {
            let values = match (values, layout) {
                (DataValues::U8(mut v), Some(Layout::Nhwc)) => {
                    nhwc_to_nchw(&mut v, shape);
                    DataValues::U8(v)
                }
                (DataValues::F32(mut v), Some(Layout::Nhwc)) => {
                    nhwc_to_nchw(&mut v, shape);
                    DataValues::F32(v)
                }
                (v, _) => v,
            };
            Dataset::images(n, shape, values, dtype, sample_shape, layout)
        }
    }
}

/// The data bytes after the header as values in C order: u8 as they are, floats as f32 (checked
/// finite; f64 also within f32's range). `len` elements, `dim` per sample (for error messages).
fn decode_values(data: &[u8], dtype: &str, header: &Header, len: usize, dim: usize, name: &str) -> Result<DataValues> {
    let fail = |msg: String| Error::input(format!("{name}: {msg}"));
    let (shape, fortran) = (&header.shape, header.layout.is_fortran());
    let read_err = |e: ndarray_npy::ReadDataError| fail(format!("cannot decode the data: {e}"));
    Ok(match dtype {
        "uint8" => DataValues::U8(to_c_order(data.to_vec(), shape, fortran).map_err(fail)?),
        "float32" => {
            let v = f32::read_to_end_exact_vec(data, &header.type_descriptor, len).map_err(read_err)?;
            let v = to_c_order(v, shape, fortran).map_err(fail)?;
            check_finite(&v, dim, name)?;
            DataValues::F32(v)
        }
        _ => {
            let v = f64::read_to_end_exact_vec(data, &header.type_descriptor, len).map_err(read_err)?;
            let v = to_c_order(v, shape, fortran).map_err(fail)?;
            let mut out = Vec::with_capacity(v.len());
            for (i, &x) in v.iter().enumerate() {
                if !x.is_finite() {
                    return Err(bad_value(name, i, dim, x, ""));
                }
                let y = x as f32;
                if !y.is_finite() {
                    return Err(bad_value(name, i, dim, x, ", outside float32's finite range"));
                }
                out.push(y);
            }
            DataValues::F32(out)
        }
    })
}

/// The image geometry of a sample shape and where its channel axis is: None for (D,); (H, W) is
/// one channel without a channel axis; (A, B, C) is NCHW or NHWC as the 1 or 3 (or `given`) says.
type ImageOf = Option<(ImageShape, Option<Layout>)>;

fn image_of(sample: &[usize], given: Option<Layout>) -> std::result::Result<ImageOf, String> {
    let &[a, b, c] = sample else {
        if given.is_some() {
            return Err("--layout applies to 4-D arrays, (N, C, H, W) or (N, H, W, C), only".into());
        }
        return Ok(match *sample {
            [h, w] => Some((ImageShape::gray(h, w), None)),
            _ => None,
        });
    };
    let channels = |k: usize| k == 1 || k == 3;
    let layout = match (given, channels(a), channels(c)) {
        (Some(Layout::Nchw), true, _) | (None, true, false) => Layout::Nchw,
        (Some(Layout::Nhwc), _, true) | (None, false, true) => Layout::Nhwc,
        (Some(Layout::Nchw), false, _) => {
            return Err(format!("--layout nchw needs 1 or 3 channels on axis 1, not {a}"))
        }
        (Some(Layout::Nhwc), _, false) => {
            return Err(format!("--layout nhwc needs 1 or 3 channels on axis 3, not {c}"))
        }
        (None, true, true) => {
            return Err(format!(
                "axis 1 ({a}) and axis 3 ({c}) could both hold the channels; pass --layout nchw or --layout nhwc"
            ))
        }
        (None, false, false) => {
            return Err(format!("neither axis 1 ({a}) nor axis 3 ({c}) holds 1 or 3 channels; {SHAPES}"))
        }
    };
    Ok(Some(match layout {
        Layout::Nchw => (ImageShape { channels: a, height: b, width: c }, Some(Layout::Nchw)),
        Layout::Nhwc => (ImageShape { channels: c, height: a, width: b }, Some(Layout::Nhwc)),
    }))
}

/// Checks magic, version and header length against the byte count; returns where the data starts.
fn check_prefix(bytes: &[u8]) -> std::result::Result<usize, String> {
    if bytes.is_empty() {
        return Err("not a .npy file (the file is empty)".into());
    }
    if !bytes.starts_with(MAGIC) {
        return Err("not a .npy file (bad magic)".into());
    }
    let truncated = || format!("truncated header (the file has only {} bytes)", bytes.len());
    let (major, minor) = match bytes.get(6..8) {
        Some(&[major, minor]) => (major, minor),
        _ => return Err(truncated()),
    };
    let field = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => return Err(format!("unsupported .npy format version {major}.{minor} (only 1.0, 2.0 and 3.0 exist)")),
    };
    let header_len = match bytes.get(8..8 + field) {
        Some(&[a, b]) => usize::from(u16::from_le_bytes([a, b])),
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]) as usize,
        _ => return Err(truncated()),
    };
    if header_len > MAX_HEADER_LEN {
        return Err(format!(
            "header claims {header_len} bytes; more than {MAX_HEADER_LEN} is not a plain array header"
        ));
    }
    let end = 8 + field + header_len;
    if end > bytes.len() {
        return Err(format!(
            "truncated header: it claims {header_len} bytes, only {} are present",
            bytes.len() - 8 - field
        ));
    }
    let mut depth = 0usize;
    for b in bytes.get(8 + field..end).unwrap_or_default() {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_NESTING {
            return Err(format!("header nests brackets more than {MAX_NESTING} deep; not a plain array header"));
        }
    }
    Ok(end)
}

fn header_message(e: ReadHeaderError) -> String {
    use ParseHeaderError as P;
    match e {
        ReadHeaderError::Io(e) => format!("truncated header ({e})"),
        ReadHeaderError::Parse(p) => match p {
            P::MagicString => "not a .npy file (bad magic)".into(),
            P::Version { major, minor } => format!("unsupported .npy format version {major}.{minor}"),
            P::HeaderLengthOverflow(n) => format!("header length {n} is too large"),
            P::NonAscii | P::Utf8Parse(_) => "header is not ASCII text".into(),
            P::MissingNewline => "header does not end with a newline".into(),
            P::DictParse(_) | P::MetaNotDict(_) => "header is not a Python dict literal".into(),
            // ndarray-npy 0.10 misspells "shape" in this message.
            P::MissingKey(k) => format!("header dict lacks the key '{}'", if k == "shaper" { "shape" } else { &k }),
            P::UnknownKey(k) => format!("header dict has an unexpected key {}", short(&k)),
            P::IllegalValue { key, value } => format!("header dict has a bad value for '{key}': {}", short(&value)),
        },
    }
}

/// A value from the file, shown on one line and cut to a readable length.
fn short(v: &impl Display) -> String {
    let s: String = v.to_string().chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

fn python_tuple(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// Reorders Fortran-order values to C order (the logical order of the array).
fn to_c_order<T: Clone>(v: Vec<T>, shape: &[usize], fortran: bool) -> std::result::Result<Vec<T>, String> {
    if !fortran {
        return Ok(v);
    }
    let a = ArrayD::from_shape_vec(IxDyn(shape).f(), v).map_err(|e| format!("bad Fortran-order data: {e}"))?;
    Ok(a.iter().cloned().collect())
}

/// Write a 2-D f32 array (n, dim) as .npy, atomically.
pub fn save_npy_f32(path: &Path, n: usize, dim: usize, values: &[f32]) -> Result<()> {
    let a = ArrayView2::from_shape((n, dim), values).map_err(|e| shape_error(path, n, dim, e))?;
    let mut buf = Vec::new();
    a.write_npy(&mut buf).map_err(|e| Error::io(path, e))?;
    write_atomic(path, &buf)
}

/// Write a 2-D u8 array (n, dim) as .npy, atomically.
pub fn save_npy_u8(path: &Path, n: usize, dim: usize, values: &[u8]) -> Result<()> {
    let a = ArrayView2::from_shape((n, dim), values).map_err(|e| shape_error(path, n, dim, e))?;
    let mut buf = Vec::new();
    a.write_npy(&mut buf).map_err(|e| Error::io(path, e))?;
    write_atomic(path, &buf)
}

/// Write an f32 array of any shape (row-major values) as .npy, atomically.
pub fn save_npy_f32_as(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    let a = ArrayViewD::from_shape(IxDyn(shape), values).map_err(|e| shaped_error(path, shape, e))?;
    let mut buf = Vec::new();
    a.write_npy(&mut buf).map_err(|e| Error::io(path, e))?;
    write_atomic(path, &buf)
}

/// Write a u8 array of any shape (row-major values) as .npy, atomically.
pub fn save_npy_u8_as(path: &Path, shape: &[usize], values: &[u8]) -> Result<()> {
    let a = ArrayViewD::from_shape(IxDyn(shape), values).map_err(|e| shaped_error(path, shape, e))?;
    let mut buf = Vec::new();
    a.write_npy(&mut buf).map_err(|e| Error::io(path, e))?;
    write_atomic(path, &buf)
}

fn shaped_error(path: &Path, shape: &[usize], e: impl Display) -> Error {
    Error::input(format!("{}: cannot save as shape {}: {e}", path.display(), python_tuple(shape)))
}

fn shape_error(path: &Path, n: usize, dim: usize, e: impl Display) -> Error {
    Error::input(format!("{}: cannot save as shape ({n}, {dim}): {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ImageShape;

    /// A v1.0 .npy file as NumPy writes it, from a raw header dict literal.
    fn npy_raw(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut header = dict.as_bytes().to_vec();
        let pad = (64 - (10 + header.len() + 1) % 64) % 64;
        header.extend(std::iter::repeat_n(b' ', pad));
        header.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out
    }

    fn npy(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let f = if fortran { "True" } else { "False" };
        npy_raw(&format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {}, }}", python_tuple(shape)), data)
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn f64_bytes(v: &[f64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn err(bytes: &[u8]) -> String {
        match load_npy_bytes(bytes, "data.npy") {
            Err(Error::Input(m)) => {
                assert!(m.starts_with("data.npy: ") && !m.contains('\n'), "{m}");
                m
            }
            other => panic!("expected an input error, got {other:?}"),
        }
    }

    fn assert_err(bytes: &[u8], words: &[&str]) {
        let m = err(bytes);
        for w in words {
            assert!(m.contains(w), "{m:?} lacks {w:?}");
        }
    }

    #[test]
    fn round_trip_u8_and_f32() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("u.npy");
        let bytes: Vec<u8> = (0..12).map(|i| i * 20).collect();
        save_npy_u8(&p, 3, 4, &bytes).unwrap();
        let d = load_npy(&p).unwrap();
        assert_eq!((d.n, d.dim, d.sample_shape.as_slice(), d.dtype.as_str()), (3, 4, &[4][..], "uint8"));
        assert_eq!(d.values, DataValues::U8(bytes));
        assert_eq!(d.get(1, 2), 120.0 / 255.0);
        assert_eq!(d.byte_len(), 12);

        let p = dir.path().join("f.npy");
        let v: Vec<f32> = (0..6).map(|i| i as f32 * -1.5).collect();
        save_npy_f32(&p, 2, 3, &v).unwrap();
        let d = load_npy(&p).unwrap();
        assert_eq!((d.n, d.dim, d.dtype.as_str(), d.byte_len()), (2, 3, "float32", 24));
        assert_eq!(d.values, DataValues::F32(v));
        assert_eq!(d.value_range(), (-7.5, 0.0));
        assert!(!d.is_unit_range() && d.image().is_none() && d.layout.is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temp files left");
        assert!(save_npy_f32(&p, 2, 4, &[0.0; 6]).is_err());
        assert!(matches!(load_npy(&dir.path().join("missing.npy")), Err(Error::Input(_))));
        assert!(matches!(load_npy(dir.path()), Err(Error::Input(_))));
    }

    #[test]
    fn constructors_validate() {
        assert!(Dataset::from_f32(2, 2, vec![0.0; 3]).is_err());
        assert!(Dataset::from_f32(0, 2, vec![]).is_err());
        assert!(Dataset::from_f32(1, 2, vec![0.0, f32::NAN]).is_err());
        assert!(Dataset::from_u8(usize::MAX, 2, vec![]).is_err());
        let d = Dataset::from_u8(2, 4, vec![0, 255, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!((d.value_range(), d.image()), ((0.0, 1.0), Some(ImageShape::gray(2, 2))));
        let d = Dataset::from_f32(1, 4, vec![0.0, 0.5, 1.0, 2.0]).unwrap();
        assert_eq!(d.image(), None, "not unit range");
    }

    #[test]
    fn accepted_shapes_and_dtypes() {
        let d = load_npy_bytes(&npy("<f4", false, &[2, 3], &f32_bytes(&[1., 2., 3., 4., 5., 6.])), "x").unwrap();
        assert_eq!((d.n, d.dim, d.sample_shape.clone()), (2, 3, vec![3]));
        let d = load_npy_bytes(&npy("|u1", false, &[2, 3, 4], &[7; 24]), "x").unwrap();
        assert_eq!((d.n, d.dim, d.image(), d.layout), (2, 12, Some(ImageShape::gray(3, 4)), None));
        let d = load_npy_bytes(&npy("<u1", false, &[3, 1, 2, 2], &[9; 12]), "x").unwrap();
        assert_eq!((d.n, d.dim, d.sample_shape.clone()), (3, 4, vec![1, 2, 2]));
        assert_eq!((d.image(), d.layout), (Some(ImageShape::gray(2, 2)), Some(Layout::Nchw)));
        let d = load_npy_bytes(&npy("<f8", false, &[1, 2], &f64_bytes(&[0.25, -3.0])), "x").unwrap();
        assert_eq!((d.values, d.dtype.as_str()), (DataValues::F32(vec![0.25, -3.0]), "float64"));
    }

    /// Colour: (N, 3, H, W) is kept, (N, H, W, 3) becomes channel planes; `--layout` settles
    /// shapes that read both ways and is refused where it cannot apply.
    #[test]
    fn colour_layouts_become_channel_planes() {
        // Two 2x2 RGB images; pixel p of image i has channel k = 100 i + 10 p + k.
        let nhwc: Vec<u8> =
            (0..2).flat_map(|i| (0..4).flat_map(move |p| (0..3).map(move |k| 100 * i + 10 * p + k))).collect();
        let nchw: Vec<u8> =
            (0..2).flat_map(|i| (0..3).flat_map(move |k| (0..4).map(move |p| 100 * i + 10 * p + k))).collect();
        let rgb = Some(ImageShape { channels: 3, height: 2, width: 2 });
        let d = load_npy_bytes(&npy("|u1", false, &[2, 2, 2, 3], &nhwc), "x").unwrap();
        assert_eq!((d.image(), d.layout, d.sample_shape.clone(), d.dim), (rgb, Some(Layout::Nhwc), vec![2, 2, 3], 12));
        assert_eq!(d.values, DataValues::U8(nchw.clone()));
        let d = load_npy_bytes(&npy("|u1", false, &[2, 3, 2, 2], &nchw), "x").unwrap();
        assert_eq!((d.image(), d.layout, d.sample_shape.clone()), (rgb, Some(Layout::Nchw), vec![3, 2, 2]));
        assert_eq!(d.values, DataValues::U8(nchw.clone()));
        // f32 and f64 the same way; (N, H, W, 1) is gray.
        let f: Vec<f32> = nhwc.iter().map(|&v| v as f32 / 255.0).collect();
        let d = load_npy_bytes(&npy("<f4", false, &[2, 2, 2, 3], &f32_bytes(&f)), "x").unwrap();
        assert_eq!(d.values, DataValues::F32(nchw.iter().map(|&v| v as f32 / 255.0).collect()));
        let g: Vec<f64> = (0..8).map(|i| i as f64 / 8.0).collect();
        let d = load_npy_bytes(&npy("<f8", false, &[2, 2, 2, 1], &f64_bytes(&g)), "x").unwrap();
        assert_eq!((d.image(), d.layout), (Some(ImageShape::gray(2, 2)), Some(Layout::Nhwc)));
        // (N, 3, 2, 3) reads both ways: refused without --layout, either way with it.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("amb.npy");
        std::fs::write(&p, npy("|u1", false, &[1, 3, 2, 3], &(0..18).collect::<Vec<u8>>())).unwrap();
        assert!(matches!(load_npy(&p), Err(Error::Input(m)) if m.contains("--layout")));
        let d = load_npy_with(&p, Some(Layout::Nchw)).unwrap();
        assert_eq!(d.image(), Some(ImageShape { channels: 3, height: 2, width: 3 }));
        assert_eq!(d.values, DataValues::U8((0..18).collect()));
        let d = load_npy_with(&p, Some(Layout::Nhwc)).unwrap();
        assert_eq!(d.image(), Some(ImageShape { channels: 3, height: 3, width: 2 }));
        let planes: Vec<u8> = (0..3).flat_map(|k| (0..6).map(move |px| (3 * px + k) as u8)).collect();
        assert_eq!(d.values, DataValues::U8(planes));
        // --layout where it cannot apply.
        std::fs::write(&p, npy("|u1", false, &[1, 3, 2, 2], &[0; 12])).unwrap();
        let e = load_npy_with(&p, Some(Layout::Nhwc)).unwrap_err().to_string();
        assert!(e.contains("--layout nhwc needs 1 or 3 channels on axis 3, not 2"), "{e}");
        std::fs::write(&p, npy("|u1", false, &[1, 4], &[0; 4])).unwrap();
        let e = load_npy_with(&p, Some(Layout::Nchw)).unwrap_err().to_string();
        assert!(e.contains("--layout applies to 4-D arrays"), "{e}");
    }

    #[test]
    fn fortran_order_is_transposed() {
        // Logical [[0, 1, 2], [3, 4, 5]] stored column by column.
        let d = load_npy_bytes(&npy("<f4", true, &[2, 3], &f32_bytes(&[0., 3., 1., 4., 2., 5.])), "x").unwrap();
        assert_eq!(d.values, DataValues::F32(vec![0., 1., 2., 3., 4., 5.]));
        // 3-D: element (i, j, k) = 100i + 10j + k, stored with i fastest.
        let mut stored = vec![];
        for k in 0..4 {
            for j in 0..3 {
                for i in 0..2 {
                    stored.push((100 * i + 10 * j + k) as u8);
                }
            }
        }
        let d = load_npy_bytes(&npy("|u1", true, &[2, 3, 4], &stored), "x").unwrap();
        let expect: Vec<u8> =
            (0..2).flat_map(|i| (0..3).flat_map(move |j| (0..4).map(move |k| 100 * i + 10 * j + k))).collect();
        assert_eq!(d.values, DataValues::U8(expect));
    }

    #[test]
    fn big_endian_is_read_correctly() {
        let be: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_be_bytes()).collect();
        let d = load_npy_bytes(&npy(">f4", false, &[1, 2], &be), "x").unwrap();
        assert_eq!(d.values, DataValues::F32(vec![1.5, -2.0]));
        let be: Vec<u8> = [0.5f64, 8.0].iter().flat_map(|x| x.to_be_bytes()).collect();
        let d = load_npy_bytes(&npy(">f8", false, &[2, 1], &be), "x").unwrap();
        assert_eq!(d.values, DataValues::F32(vec![0.5, 8.0]));
    }

    #[test]
    fn bad_files_are_input_errors() {
        let good = npy("|u1", false, &[2, 2], &[1, 2, 3, 4]);
        assert_err(b"", &["not a .npy file", "empty"]);
        assert_err(b"PK\x03\x04 a zip file", &["not a .npy file (bad magic)"]);
        for (maj, min) in [(4, 0), (2, 1), (0, 0)] {
            let mut b = good.clone();
            b[6..8].copy_from_slice(&[maj, min]);
            assert_err(&b, &["unsupported .npy format version", &format!("{maj}.{min}"), "1.0, 2.0 and 3.0"]);
        }
        for cut in [7, 9, 30, 63] {
            assert_err(&good[..cut], &["truncated header"]);
        }
        assert_err(&npy_raw("[1, 2, 3]", &[]), &["not a Python dict literal"]);
        assert_err(&npy_raw("{'descr': '|u1', 'shape': (1, 2", &[1, 2]), &["not a Python dict literal"]);
        assert_err(&npy_raw("{'descr': '|u1', 'fortran_order': False}", &[]), &["lacks the key 'shape'"]);
        assert_err(&npy_raw("{'fortran_order': False, 'shape': (1, 1)}", &[0]), &["lacks the key 'descr'"]);
        assert_err(
            &npy_raw("{'descr': '|u1', 'fortran_order': 0, 'shape': (1, 1)}", &[0]),
            &["bad value", "fortran_order"],
        );
        assert_err(
            &npy_raw("{'descr': '|u1', 'fortran_order': False, 'shape': (-1, 1)}", &[0]),
            &["bad value", "shape"],
        );
        for descr in ["<i4", "<c8", "|O", "<U8", "|S3", "|b1"] {
            assert_err(&npy(descr, false, &[1, 1], &[0; 16]), &["unsupported dtype '", descr, "'<f4'", "'|u1'"]);
        }
        let structured = "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1, 1)}";
        assert_err(&npy_raw(structured, &[0; 4]), &["unsupported dtype", "supported:"]);
        assert_err(&npy("<f4", false, &[], &[0; 4]), &["0-D shape ()", "(N, D)"]);
        assert_err(&npy("<f4", false, &[5], &[0; 20]), &["1-D shape (5,)", "(N, C, H, W)", "(N, H, W, C)"]);
        assert_err(
            &npy("|u1", false, &[2, 2, 2, 2], &[0; 16]),
            &["shape (2, 2, 2, 2)", "neither axis 1 (2) nor axis 3 (2)"],
        );
        assert_err(&npy("|u1", false, &[2, 3, 2, 3], &[0; 36]), &["(2, 3, 2, 3)", "could both hold", "--layout nchw"]);
        assert_err(&npy("|u1", false, &[1, 1, 1, 1, 1], &[0]), &["5-D shape"]);
        assert_err(&npy("|u1", false, &[0, 784], &[]), &["no samples", "N = 0"]);
        assert_err(&npy("|u1", false, &[3, 0], &[]), &["axis of length 0"]);
        assert_err(&npy("|u1", false, &[3, 4, 0], &[]), &["axis of length 0"]);
        assert_err(&npy("<f4", false, &[2, 2], &[0; 15]), &["truncated data", "16 bytes", "15 are present"]);
        assert_err(&npy("<f4", false, &[2, 2], &[0; 17]), &["trailing bytes", "16 bytes", "17 are present"]);
    }

    #[test]
    fn bad_values_name_sample_and_feature() {
        assert_err(
            &npy("<f4", false, &[2, 3], &f32_bytes(&[0., 1., 2., 3., f32::NAN, 5.])),
            &["sample 1, feature 1", "NaN"],
        );
        assert_err(&npy("<f4", false, &[1, 2], &f32_bytes(&[0., f32::NEG_INFINITY])), &["sample 0, feature 1", "inf"]);
        assert_err(&npy("<f8", false, &[2, 1], &f64_bytes(&[0., f64::INFINITY])), &["sample 1, feature 0", "inf"]);
        assert_err(
            &npy("<f8", false, &[1, 2], &f64_bytes(&[1e300, 0.])),
            &["sample 0, feature 0 is 1e300, outside float32"],
        );
        // Fortran order: the index is the logical one.
        assert_err(&npy("<f4", true, &[2, 2], &f32_bytes(&[0., f32::NAN, 0., 0.])), &["sample 1, feature 0"]);
    }

    #[test]
    fn huge_claimed_shapes_fail_fast() {
        let t = std::time::Instant::now();
        assert_err(&npy("<f4", false, &[1_000_000_000_000, 1_000_000_000_000], &[0; 64]), &["too large", "overflows"]);
        assert_err(
            &npy("|u1", false, &[1_000_000_000, 1_000_000_000], &[0; 64]),
            &["truncated data", "1000000000000000000 bytes"],
        );
        // A v2.0 header claiming a 4 GiB header length.
        let mut b = b"\x93NUMPY\x02\x00\xff\xff\xff\xff".to_vec();
        b.extend_from_slice(&[b' '; 100]);
        assert_err(&b, &["header claims 4294967295 bytes"]);
        let mut b = b"\x93NUMPY\x03\x00\x00\x01\x00\x00".to_vec();
        b.extend_from_slice(&[b' '; 100]);
        assert_err(&b, &["truncated header", "256 bytes", "100 are present"]);
        // Deep nesting would take the dict parser exponential time.
        let deep =
            format!("{{'descr': {}{}, 'fortran_order': False, 'shape': (1, 1)}}", "[".repeat(40), "]".repeat(40));
        assert_err(&npy_raw(&deep, &[0]), &["nests brackets"]);
        assert_err(&npy_raw(&"{1: ".repeat(2000), &[0]), &["nests brackets"]);
        let wide = format!("{{'descr': [{}], 'fortran_order': False, 'shape': (1, 1)}}", "[[1]], ".repeat(1400));
        assert_err(&npy_raw(&wide, &[0]), &["unsupported dtype"]);
        assert!(t.elapsed().as_secs_f32() < 1.0);
    }

    #[test]
    fn real_mnist_file_loads() {
        let path = Path::new("/work/shared/data/mnist_test_images.npy");
        if !path.exists() {
            println!("skipped: {} is absent", path.display());
            return;
        }
        let d = load_npy(path).unwrap();
        assert_eq!((d.n, d.dim, d.dtype.as_str()), (10000, 784, "uint8"));
        assert!(matches!(d.values, DataValues::U8(ref v) if v.len() == 10000 * 784));
        assert_eq!(d.image(), Some(ImageShape::gray(28, 28)));
    }

    #[test]
    fn mutated_files_never_panic() {
        let mut files =
            vec![npy("<f4", false, &[3, 4], &f32_bytes(&[0.5; 12])), npy("|u1", true, &[2, 1, 2, 2], &[3; 8])];
        let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
        let body = &files[1][10..];
        v2.extend_from_slice(&(body.len() as u32 - 8).to_le_bytes());
        v2.extend_from_slice(body);
        files.push(v2);
        let check = |b: &[u8]| match load_npy_bytes(b, "fuzz.npy") {
            Ok(d) => assert_eq!(d.n * d.dim * if d.dtype == "uint8" { 1 } else { 4 }, d.byte_len()),
            Err(Error::Input(m)) => assert!(m.starts_with("fuzz.npy: ") && !m.contains('\n'), "{m}"),
            Err(e) => panic!("not an input error: {e}"),
        };
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for good in &files {
            for cut in 0..good.len() {
                check(&good[..cut]);
            }
            for _ in 0..2000 {
                let mut b = good.clone();
                for _ in 0..1 + next() % 3 {
                    let i = (next() % b.len() as u64) as usize;
                    let bytes = b"0123456789(),: '\"{}[]TrueFals<>|fiu\n\x00\xff";
                    b[i] = if next() % 2 == 0 {
                        (next() & 0xff) as u8
                    } else {
                        bytes[(next() % bytes.len() as u64) as usize]
                    };
                }
                check(&b);
            }
        }
    }
}
