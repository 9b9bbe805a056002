//! Training data from a folder of PNG and JPEG images, decoded into one u8 array (N, H, W, C).
//!
//! The images come from the internet, so, as for `.npy` files in [`crate::data`], loading must
//! never panic, never allocate from a size that only a header claims, and report every problem
//! as one [`Error::Input`] line that starts with the file's name.
//!
//! What is read: every `.png`, `.jpg` and `.jpeg` file (any case) under the folder, in class
//! subfolders as torchvision's `ImageFolder` has them or loose, sorted by path so that row order is
//! deterministic. Symlinks are followed (a symlinked file is one more row); a directory reached
//! twice (a symlink loop) is read once, as its canonical path is remembered. Other files are
//! ignored. The content decides the format, so a PNG named `.jpg` still loads.
//!
//! Decisions:
//! - Two passes. The first reads only headers (size, colour), so that the output array can be
//!   allocated once at its final size, and bad files are found before any pixel is decoded. The
//!   second decodes each image once and writes it into that array before the next is decoded.
//! - Bombs: the reader gets [`image::Limits`] (at most [`MAX_SIDE`] pixels a side, [`MAX_DECODED_BYTES`]
//!   decoded) and the header's dimensions are checked again before decoding, so a PNG that
//!   declares 100000 x 100000 is refused after reading its first 33 bytes. Files over
//!   [`MAX_FILE_BYTES`] are refused unopened (the JPEG decoder reads the whole file).
//! - Pixels: gray stays 1 channel, colour is 3 (palette PNGs come expanded to colour); alpha is
//!   composited onto white (`c * a + 1 - a`), as a transparent icon looks on a page; 16-bit samples
//!   are rounded to 8 bits (`257 * k` -> `k`, 65535 -> 255). EXIF orientation is applied, so phone
//!   photos come upright, as a viewer shows them (torchvision's PIL loader does not do this). No
//!   colour management: values are taken as sRGB.
//! - Mixing gray and colour: without `channels`, any colour image makes the set 3 channels and
//!   gray images are replicated into R = G = B. With `channels: Some(1)`, colour is converted to
//!   luma with the ITU-R 601 weights 0.299 R + 0.587 G + 0.114 B, rounded (PIL's `convert("L")`
//!   and torchvision's `Grayscale` use them).
//! - `image_size: Some(S)`: the centred square of side min(w, h) is cut out, then resized to
//!   S x S with [`FilterType::Triangle`]. That is torchvision's `Resize(S)` + `CenterCrop(S)` up to a
//!   fraction of a pixel at the edges, but the cut comes first so that an image of extreme aspect
//!   ratio never becomes a huge intermediate. Triangle is bilinear widened by the scale factor when
//!   shrinking (antialiased, as torchvision's default bilinear with `antialias=True`); it has no
//!   negative lobes, so unlike Lanczos3 it adds no ringing at edges and keeps flat areas exact.
//! - `skip_bad`: a file that cannot be read or decoded, is empty, is too large or has 0 pixels is
//!   returned in [`FolderImages::skipped`] instead of failing the load ([`FolderImages::skipped_warning`]
//!   words the warning). A size mismatch without `image_size` is not a bad file: it is an error
//!   either way.
//! - Cost: one thread; a JPEG is read from disk twice (its decoder reads whole files, the header
//!   pass included). A decoder that panics on a hostile file costs only that file.
//!
//! Cache ([`save_cache`], [`load_cache`], [`check_cache`], [`load_image_folder_cached`]): the
//! array is a plain `.npy` of uint8 (N, H, W, C) that NumPy reads; next to it `<cache>.json` holds
//! a [`FolderSource`] (canonical folder, image count, newest mtime, a fingerprint of every image's
//! relative path, size and mtime, and the options that shape the array), the file list and the
//! skipped files. The fingerprint catches what a count and a newest mtime miss (renames, a file
//! replaced by an older copy). Both files are written with [`crate::io::write_atomic`]; the old
//! sidecar is deleted before the new `.npy` is renamed into place and the new sidecar comes last,
//! so a crash leaves either a consistent pair or no sidecar, which reads as stale.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{IsTerminal, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use image::imageops::{self, FilterType};
use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, ImageBuffer, ImageDecoder, ImageError, ImageReader, Limits, Pixel, RgbImage};
use ndarray_npy::npy::header::{Header, Layout};
use ndarray_npy::WritableElement;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::{write_atomic, write_atomic_with};

/// Most pixels on either side of an image (and the largest `image_size`).
pub const MAX_SIDE: u32 = 16384;
/// Most bytes one decoded image may take (16384 x 16384 RGB 8-bit is 768 MiB).
pub const MAX_DECODED_BYTES: u64 = 1 << 30;
/// Largest image file read.
pub const MAX_FILE_BYTES: u64 = 1 << 30;
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderOptions {
    /// `--image-size S`: resize the shorter side to S (antialiased), centre-crop S x S.
    pub image_size: Option<u32>,
    /// `--channels 1|3`; None: 3 when any image has colour, else 1.
    pub channels: Option<u8>,
    /// `--skip-bad-images`: skip files that do not load instead of failing.
    pub skip_bad: bool,
    /// An indicatif bar on stderr while decoding (only when stderr is a terminal).
    pub progress: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderImages {
    pub n: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    /// (n, height, width, channels), row-major (NHWC).
    pub pixels: Vec<u8>,
    /// The file of each row, in row order.
    pub files: Vec<PathBuf>,
    /// The folder as the walk that found `files` was given it (they start with it): their
    /// class subfolders are what follows (`data::labels::folder_classes`). None in a cache made
    /// before it was recorded.
    pub root: Option<PathBuf>,
    /// With `skip_bad`: each file skipped and why.
    pub skipped: Vec<(PathBuf, String)>,
    /// What the array was made from; the cache compares it with the folder now.
    pub source: FolderSource,
}

impl FolderImages {
    /// One warning line for the skipped files, naming the count and the first `first` of them;
    /// None when nothing was skipped.
    pub fn skipped_warning(&self, first: usize) -> Option<String> {
        let (k, total) = (self.skipped.len(), self.skipped.len() + self.n);
        let shown: Vec<String> =
            self.skipped.iter().take(first).map(|(p, why)| format!("{} ({why})", p.display())).collect();
        let more = if k > first { format!(" and {} more", k - first) } else { String::new() };
        (k > 0).then(|| format!("warning: skipped {k} of {total} images that do not load: {}{more}", shown.join("; ")))
    }
}

/// The folder and options an array was made from, as a cache records them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderSource {
    /// The folder, canonicalised.
    pub dir: PathBuf,
    /// Image files found (skipped ones included).
    pub file_count: usize,
    /// Newest modification time among them, in nanoseconds since 1970.
    pub newest_mtime_ns: u64,
    /// FNV-1a 64 over every image's relative path, size and mtime, in row order.
    pub fingerprint: u64,
    pub image_size: Option<u32>,
    pub channels: Option<u8>,
    pub skip_bad: bool,
}

/// Loads every PNG and JPEG under `dir` into one (N, H, W, C) u8 array (see the module docs).
pub fn load_image_folder(dir: &Path, opts: &FolderOptions) -> Result<FolderImages> {
    check_options(opts)?;
    let found = walk(dir)?;
    require_images(dir, &found)?;
    let source = FolderSource::new(dir, &found.entries, opts)?;
    let bar = progress_bar(opts.progress, found.entries.len());
    let mut skipped = Vec::new();
    let probed = probe_all(&found.entries, opts.skip_bad, &mut skipped, &bar)?;
    require_some(dir, probed.len(), &skipped)?;
    let plan = Plan::new(&probed, opts)?;
    let (pixels, files) = decode_all(&probed, &plan, opts.skip_bad, &mut skipped, &bar)?;
    bar.finish_and_clear();
    require_some(dir, files.len(), &skipped)?;
    let Plan { height, width, channels, .. } = plan;
    let root = Some(dir.to_path_buf());
    Ok(FolderImages { n: files.len(), height, width, channels, pixels, files, root, skipped, source })
}

fn check_options(opts: &FolderOptions) -> Result<()> {
    if let Some(s) = opts.image_size.filter(|s| !(1..=MAX_SIDE).contains(s)) {
        crate::bail_input!("--image-size {s}: must be from 1 to {MAX_SIDE}");
    }
    if let Some(c) = opts.channels.filter(|c| ![1, 3].contains(c)) {
        crate::bail_input!("--channels {c}: must be 1 (gray) or 3 (RGB)");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Walking the folder

/// One image file found by the walk, with what its metadata said.
struct Entry {
    path: PathBuf,
    len: u64,
    mtime_ns: u64,
    /// Why it cannot be an image before it is even opened (cannot stat, not a regular file).
    problem: Option<String>,
}

#[derive(Default)]
struct Found {
    /// Sorted by path.
    entries: Vec<Entry>,
    /// Files without an image extension.
    others: usize,
}

fn walk(root: &Path) -> Result<Found> {
    let meta =
        fs::metadata(root).map_err(|e| Error::input(format!("{}: cannot read the folder: {e}", root.display())))?;
    if !meta.is_dir() {
        crate::bail_input!("{}: not a folder; expected a folder of .png/.jpg images", root.display());
    }
    let mut found = Found::default();
    let mut seen = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        // A symlink back up the tree leads to a directory already seen: read each once.
        let canonical = fs::canonicalize(&dir).map_err(|e| list_error(&dir, e))?;
        if seen.insert(canonical) {
            walk_one(&dir, &mut found, &mut stack)?;
        }
    }
    found.entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

fn walk_one(dir: &Path, found: &mut Found, stack: &mut Vec<PathBuf>) -> Result<()> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| list_error(dir, e))? {
        paths.push(entry.map_err(|e| list_error(dir, e))?.path());
    }
    // Sorted so that which alias of a twice-linked directory is read does not depend on the OS.
    paths.sort();
    for path in paths.into_iter().rev() {
        match fs::metadata(&path) {
            Ok(m) if m.is_dir() => stack.push(path),
            _ if !has_image_extension(&path) => found.others += 1,
            Ok(m) => found.entries.push(Entry::new(path, &m)),
            Err(e) => found.entries.push(Entry::unreadable(path, format!("cannot read: {e}"))),
        }
    }
    Ok(())
}

fn list_error(dir: &Path, e: std::io::Error) -> Error {
    Error::input(format!("{}: cannot list the folder: {e}", dir.display()))
}

fn has_image_extension(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    EXTENSIONS.iter().any(|x| ext.eq_ignore_ascii_case(x))
}

impl Entry {
    fn new(path: PathBuf, m: &fs::Metadata) -> Self {
        let mtime_ns = m.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        let mtime_ns = mtime_ns.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        // A FIFO named x.png would block the open forever.
        let problem = (!m.is_file()).then(|| "not a regular file".to_string());
        Entry { path, len: m.len(), mtime_ns, problem }
    }

    fn unreadable(path: PathBuf, why: String) -> Self {
        Entry { path, len: 0, mtime_ns: 0, problem: Some(why) }
    }
}

fn require_images(dir: &Path, found: &Found) -> Result<()> {
    let d = dir.display();
    match (found.entries.len(), found.others) {
        (0, 0) => crate::bail_input!(
            "{d}: the folder is empty; expected .png, .jpg or .jpeg images (loose or in class subfolders)"
        ),
        (0, k) => crate::bail_input!("{d}: no .png, .jpg or .jpeg images among its {k} files"),
        _ => Ok(()),
    }
}

fn require_some(dir: &Path, loaded: usize, skipped: &[(PathBuf, String)]) -> Result<()> {
    match skipped.first() {
        Some((file, why)) if loaded == 0 => crate::bail_input!(
            "{}: none of its {} images could be loaded; the first, {}: {why}",
            dir.display(),
            skipped.len(),
            file.display()
        ),
        _ => Ok(()),
    }
}

/// FNV-1a, 64-bit: a hash whose value is fixed forever (std's `DefaultHasher` is not).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn eat(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

impl FolderSource {
    fn new(dir: &Path, entries: &[Entry], opts: &FolderOptions) -> Result<Self> {
        let canonical = fs::canonicalize(dir).map_err(|e| list_error(dir, e))?;
        let mut h = Fnv::new();
        for e in entries {
            let rel = e.path.strip_prefix(dir).unwrap_or(&e.path);
            h.eat(rel.as_os_str().as_encoded_bytes());
            h.eat(&[0]);
            h.eat(&e.len.to_le_bytes());
            h.eat(&e.mtime_ns.to_le_bytes());
        }
        Ok(FolderSource {
            dir: canonical,
            file_count: entries.len(),
            newest_mtime_ns: entries.iter().map(|e| e.mtime_ns).max().unwrap_or(0),
            fingerprint: h.0,
            image_size: opts.image_size,
            channels: opts.channels,
            skip_bad: opts.skip_bad,
        })
    }

    fn options(&self) -> String {
        let auto = |v: Option<String>| v.unwrap_or_else(|| "auto".into());
        format!(
            "image size {}, channels {}, skip bad images {}",
            auto(self.image_size.map(|s| s.to_string())),
            auto(self.channels.map(|c| c.to_string())),
            self.skip_bad
        )
    }

    /// Why an array made from `self` does not stand for `now`; None when it does.
    fn differs_from(&self, now: &FolderSource) -> Option<String> {
        if self.dir != now.dir {
            Some(format!("it was made from another folder, {}", self.dir.display()))
        } else if self.options() != now.options() {
            Some(format!("it was made with other options ({}; now {})", self.options(), now.options()))
        } else if self.file_count != now.file_count {
            Some(format!("the folder had {} images, now {}", self.file_count, now.file_count))
        } else if self.newest_mtime_ns != now.newest_mtime_ns {
            Some("an image was modified since".to_string())
        } else if self.fingerprint != now.fingerprint {
            Some("images were renamed, replaced or changed since".to_string())
        } else {
            None
        }
    }
}

fn progress_bar(wanted: bool, len: usize) -> indicatif::ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} images  ETA {eta}") {
        bar.set_style(style);
    }
    bar
}

// ---------------------------------------------------------------------------------------------
// Pass 1: headers

/// What an image's header said.
struct Probe {
    /// (width, height) as stored.
    stored: (u32, u32),
    /// (width, height) after EXIF orientation.
    upright: (u32, u32),
    colour: bool,
}

fn probe_all<'a>(
    entries: &'a [Entry],
    skip_bad: bool,
    skipped: &mut Vec<(PathBuf, String)>,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<(&'a Path, Probe)>> {
    bar.set_message("reading headers");
    let mut probed = Vec::with_capacity(entries.len());
    for e in entries {
        match guarded(|| probe(e)) {
            Ok(p) => probed.push((e.path.as_path(), p)),
            Err(why) => bad_file(&e.path, why, skip_bad, skipped)?,
        }
        bar.inc(1);
    }
    Ok(probed)
}

fn probe(e: &Entry) -> Result<Probe, String> {
    if let Some(why) = &e.problem {
        return Err(why.clone());
    }
    if e.len == 0 {
        return Err("the file is empty (0 bytes)".into());
    }
    if e.len > MAX_FILE_BYTES {
        return Err(format!("the file is {} MiB; files over {} MiB are refused", e.len >> 20, MAX_FILE_BYTES >> 20));
    }
    let (decoder, orientation) = open_decoder(&e.path)?;
    let stored = decoder.dimensions();
    let upright = if swaps_sides(orientation) { (stored.1, stored.0) } else { stored };
    Ok(Probe { stored, upright, colour: decoder.color_type().has_color() })
}

fn swaps_sides(o: Orientation) -> bool {
    use Orientation::*;
    matches!(o, Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH)
}

/// Opens a decoder on the file's header, with limits set, and checks the declared size against
/// them before anything the size of the image is allocated.
fn open_decoder(path: &Path) -> Result<(impl ImageDecoder, Orientation), String> {
    let read_err = |e: std::io::Error| format!("cannot read: {e}");
    // The extension is only a fallback: the first bytes decide the format.
    let mut reader = ImageReader::open(path).map_err(read_err)?.with_guessed_format().map_err(read_err)?;
    reader.limits(limits());
    let mut decoder = reader.into_decoder().map_err(image_reason)?;
    check_declared(&decoder)?;
    // A damaged EXIF block should not cost an otherwise good image.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    Ok((decoder, orientation))
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(MAX_SIDE);
    l.max_image_height = Some(MAX_SIDE);
    l.max_alloc = Some(MAX_DECODED_BYTES);
    l
}

fn check_declared(decoder: &impl ImageDecoder) -> Result<(), String> {
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(format!("the image has no pixels ({w} x {h})"));
    }
    if w > MAX_SIDE || h > MAX_SIDE || decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(format!(
            "the header declares {w} x {h} pixels ({} MiB decoded); more than {MAX_SIDE} a side or {} MiB is refused",
            decoder.total_bytes() >> 20,
            MAX_DECODED_BYTES >> 20
        ));
    }
    Ok(())
}

/// One line for an error from the image crate.
fn image_reason(e: ImageError) -> String {
    let why = match &e {
        ImageError::Limits(_) => format!(
            "refused before decoding: larger than {MAX_SIDE} x {MAX_SIDE} pixels or {} MiB decoded \
             (a damaged header or a decompression bomb): {e}",
            MAX_DECODED_BYTES >> 20
        ),
        ImageError::Unsupported(_) => format!("not a PNG or JPEG image: {e}"),
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file is truncated (it ends inside the image data)".to_string()
        }
        ImageError::IoError(_) => format!("cannot read: {e}"),
        _ => format!("cannot decode: {e}"),
    };
    one_line(&why)
}

/// Control characters (newlines) out, and cut to a readable length.
fn one_line(s: &str) -> String {
    let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// Runs a per-file step, turning a panic inside a decoder into that file's error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err("the decoder crashed on this file".into()))
}

/// A file that does not load: skipped and recorded with `skip_bad`, else the error.
fn bad_file(path: &Path, why: String, skip_bad: bool, skipped: &mut Vec<(PathBuf, String)>) -> Result<()> {
    if !skip_bad {
        crate::bail_input!("{}: {why} (--skip-bad-images skips such files)", path.display());
    }
    skipped.push((path.to_path_buf(), why));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pass 2: pixels

/// The shape every image is brought to.
struct Plan {
    height: usize,
    width: usize,
    channels: usize,
    /// Some(S): crop to a centred square, resize to S x S.
    square: Option<u32>,
}

impl Plan {
    fn new(probed: &[(&Path, Probe)], opts: &FolderOptions) -> Result<Self> {
        let any_colour = probed.iter().any(|(_, p)| p.colour);
        let channels = opts.channels.map_or(if any_colour { 3 } else { 1 }, usize::from);
        let (w, h) = match opts.image_size {
            Some(s) => (s, s),
            None => common_size(probed)?,
        };
        Ok(Plan { height: h as usize, width: w as usize, channels, square: opts.image_size })
    }

    fn bytes_per_image(&self) -> usize {
        // At most MAX_SIDE^2 * 3 = 768 MiB: no overflow.
        self.height * self.width * self.channels
    }
}

fn common_size(probed: &[(&Path, Probe)]) -> Result<(u32, u32)> {
    let (first, p0) = &probed[0];
    if let Some((other, p)) = probed.iter().find(|(_, p)| p.upright != p0.upright) {
        let ((w0, h0), (w1, h1)) = (p0.upright, p.upright);
        crate::bail_input!(
            "images differ in size: {} is {w0}x{h0} but {} is {w1}x{h1} (width x height); pass --image-size S \
             to resize the shorter side to S and centre-crop S x S",
            first.display(),
            other.display()
        );
    }
    Ok(p0.upright)
}

fn decode_all(
    probed: &[(&Path, Probe)],
    plan: &Plan,
    skip_bad: bool,
    skipped: &mut Vec<(PathBuf, String)>,
    bar: &indicatif::ProgressBar,
) -> Result<(Vec<u8>, Vec<PathBuf>)> {
    let per = plan.bytes_per_image();
    let mut pixels = allocate(probed.len(), plan)?;
    let mut files = Vec::with_capacity(probed.len());
    bar.set_message("decoding");
    bar.set_position(0);
    bar.set_length(probed.len() as u64);
    for (path, probe) in probed {
        match guarded(|| decode_into(path, probe, plan, &mut pixels)) {
            Ok(()) => files.push(path.to_path_buf()),
            Err(why) => {
                // A file that fails now (changed since pass 1, damaged data) leaves no partial row.
                pixels.truncate(files.len() * per);
                bad_file(path, why, skip_bad, skipped)?;
            }
        }
        bar.inc(1);
    }
    Ok((pixels, files))
}

/// The output array, reserved once at its final size; rows are appended into it.
fn allocate(n: usize, plan: &Plan) -> Result<Vec<u8>> {
    let (h, w, c) = (plan.height, plan.width, plan.channels);
    let too_big = || {
        Error::input(format!(
            "{n} images of {h}x{w}x{c} do not fit in memory; pass --image-size S to make them smaller"
        ))
    };
    let total = plan.bytes_per_image().checked_mul(n).ok_or_else(too_big)?;
    let mut pixels = Vec::new();
    pixels.try_reserve_exact(total).map_err(|_| too_big())?;
    Ok(pixels)
}

fn decode_into(path: &Path, probe: &Probe, plan: &Plan, out: &mut Vec<u8>) -> Result<(), String> {
    let changed = || "the file changed while the folder was being read".to_string();
    let (decoder, orientation) = open_decoder(path)?;
    if decoder.dimensions() != probe.stored {
        return Err(changed());
    }
    let mut image = DynamicImage::from_decoder(decoder).map_err(image_reason)?;
    image.apply_orientation(orientation);
    let pixels = Pixels::from_image(image, plan.channels)?.fit(plan.square);
    if pixels.dimensions() != (plan.width as u32, plan.height as u32) {
        return Err(changed());
    }
    pixels.append_to(out, plan.channels);
    Ok(())
}

/// A decoded image reduced to 8-bit gray or RGB.
enum Pixels {
    Gray(GrayImage),
    Rgb(RgbImage),
}

impl Pixels {
    /// Flattens alpha onto white and 16 bits to 8; converts colour to luma when 1 channel is wanted.
    fn from_image(image: DynamicImage, channels: usize) -> Result<Self, String> {
        use DynamicImage as D;
        let (w, h) = (image.width(), image.height());
        let pixels = match image {
            D::ImageLuma8(b) => Pixels::Gray(b),
            D::ImageRgb8(b) => Pixels::Rgb(b),
            D::ImageLuma16(b) => gray(w, h, flatten(b.as_raw(), 1, false))?,
            D::ImageLumaA8(b) => gray(w, h, flatten(b.as_raw(), 2, true))?,
            D::ImageLumaA16(b) => gray(w, h, flatten(b.as_raw(), 2, true))?,
            D::ImageRgb16(b) => rgb(w, h, flatten(b.as_raw(), 3, false))?,
            D::ImageRgba8(b) => rgb(w, h, flatten(b.as_raw(), 4, true))?,
            D::ImageRgba16(b) => rgb(w, h, flatten(b.as_raw(), 4, true))?,
            // Float images do not come from PNG or JPEG; 16 bits keeps them exact enough.
            other => rgb(w, h, flatten(other.to_rgba16().as_raw(), 4, true))?,
        };
        Ok(match pixels {
            Pixels::Rgb(b) if channels == 1 => gray(w, h, b.as_raw().chunks_exact(3).map(luma).collect())?,
            p => p,
        })
    }

    fn fit(self, square: Option<u32>) -> Self {
        match self {
            Pixels::Gray(b) => Pixels::Gray(fit_square(b, square)),
            Pixels::Rgb(b) => Pixels::Rgb(fit_square(b, square)),
        }
    }

    fn dimensions(&self) -> (u32, u32) {
        match self {
            Pixels::Gray(b) => b.dimensions(),
            Pixels::Rgb(b) => b.dimensions(),
        }
    }

    fn append_to(&self, out: &mut Vec<u8>, channels: usize) {
        match self {
            Pixels::Gray(b) if channels == 3 => out.extend(b.as_raw().iter().flat_map(|&v| [v; 3])),
            Pixels::Gray(b) => out.extend_from_slice(b.as_raw()),
            Pixels::Rgb(b) => out.extend_from_slice(b.as_raw()),
        }
    }
}

fn gray(w: u32, h: u32, v: Vec<u8>) -> Result<Pixels, String> {
    ImageBuffer::from_raw(w, h, v).map(Pixels::Gray).ok_or_else(|| "internal error: gray buffer size".into())
}

fn rgb(w: u32, h: u32, v: Vec<u8>) -> Result<Pixels, String> {
    ImageBuffer::from_raw(w, h, v).map(Pixels::Rgb).ok_or_else(|| "internal error: RGB buffer size".into())
}

/// A sample type of a decoded image: u8 or u16.
trait Sample: Copy + Into<f32> {
    const MAX: f32;
}

impl Sample for u8 {
    const MAX: f32 = 255.0;
}

impl Sample for u16 {
    const MAX: f32 = 65535.0;
}

/// `stride` samples a pixel, the last one alpha if `alpha`: to 8-bit colour samples, alpha
/// composited onto white, rounded to nearest.
fn flatten<T: Sample>(samples: &[T], stride: usize, alpha: bool) -> Vec<u8> {
    let colours = if alpha { stride - 1 } else { stride };
    let mut out = Vec::with_capacity(samples.len() / stride * colours);
    for px in samples.chunks_exact(stride) {
        let a = if alpha { px[colours].into() / T::MAX } else { 1.0 };
        for &c in &px[..colours] {
            let v = c.into() / T::MAX * a + (1.0 - a);
            out.push((v * 255.0).round().clamp(0.0, 255.0) as u8);
        }
    }
    out
}

/// ITU-R 601 luma, rounded: (299 R + 587 G + 114 B) / 1000.
fn luma(px: &[u8]) -> u8 {
    let [r, g, b] = [px[0], px[1], px[2]].map(u32::from);
    ((299 * r + 587 * g + 114 * b + 500) / 1000) as u8
}

/// With Some(S): the centred square of side min(w, h), resized to S x S. Cropping first keeps an
/// image of extreme aspect ratio from becoming a huge intermediate.
fn fit_square<P>(image: ImageBuffer<P, Vec<u8>>, square: Option<u32>) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8> + 'static,
{
    let Some(s) = square else { return image };
    let (w, h) = image.dimensions();
    let side = w.min(h);
    let crop = imageops::crop_imm(&image, (w - side) / 2, (h - side) / 2, side, side);
    if side == s {
        return crop.to_image();
    }
    imageops::resize(&*crop, s, s, FilterType::Triangle)
}

// ---------------------------------------------------------------------------------------------
// Cache

const CACHE_FORMAT: &str = "shadergan image folder cache";
/// Bumped whenever decoding changes what an image becomes, so old caches read as stale.
const CACHE_VERSION: u32 = 1;
/// A sidecar lists every file; 256 MiB is millions of them.
const MAX_SIDECAR_BYTES: u64 = 256 << 20;

/// The sidecar's JSON.
#[derive(Serialize, Deserialize)]
struct CacheMeta {
    format: String,
    version: u32,
    source: SourceRecord,
    n: usize,
    height: usize,
    width: usize,
    channels: usize,
    files: Vec<String>,
    /// The folder the walk was given (caches written before it was recorded lack it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root: Option<String>,
    skipped: Vec<(String, String)>,
}

/// [`FolderSource`] with paths as (lossy) UTF-8 text and the fingerprint in hex.
#[derive(Serialize, Deserialize)]
struct SourceRecord {
    dir: String,
    file_count: usize,
    newest_mtime_ns: u64,
    fingerprint: String,
    image_size: Option<u32>,
    channels: Option<u8>,
    skip_bad: bool,
}

/// Where the sidecar of `cache` lives: `<cache>.json`.
pub fn sidecar_path(cache: &Path) -> PathBuf {
    let mut s = cache.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// Writes `images` as `cache` (a uint8 (N, H, W, C) `.npy`) and `<cache>.json`, never leaving a
/// half-written pair (see the module docs).
pub fn save_cache(cache: &Path, images: &FolderImages) -> Result<()> {
    save_cache_with(cache, images, images.pixels.len(), |f| f.write_all(&images.pixels))
}

/// [`save_cache`] for images already reordered into channel planes, (N, C, H, W) as
/// [`crate::data::Dataset::from_folder`] holds them: `planes` go back to (N, H, W, C) as they are
/// written, one image at a time; `images`' own pixels are not read.
pub fn save_cache_planes(cache: &Path, images: &FolderImages, planes: &[u8]) -> Result<()> {
    let shape = crate::data::ImageShape { channels: images.channels, height: images.height, width: images.width };
    save_cache_with(cache, images, planes.len(), |f| {
        let mut out = std::io::BufWriter::new(f);
        let mut sample = vec![0u8; shape.values()];
        for planar in planes.chunks_exact(shape.values().max(1)) {
            sample.copy_from_slice(planar);
            crate::data::nchw_to_nhwc(&mut sample, shape);
            out.write_all(&sample)?;
        }
        out.flush()
    })
}

fn save_cache_with(
    cache: &Path,
    images: &FolderImages,
    pixels: usize,
    write_pixels: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    let header = npy_header(images, pixels).map_err(|e| Error::io(cache, e))?;
    if images.files.len() != images.n {
        return Err(Error::io(cache, "the images' file list does not match their count"));
    }
    let json = serde_json::to_vec(&CacheMeta::new(images)).map_err(|e| Error::io(cache, e))?;
    // The old sidecar goes first: from here until the new one is in place the pair reads as stale.
    let side = sidecar_path(cache);
    match fs::remove_file(&side) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&side, e)),
        _ => {}
    }
    write_atomic_with(cache, |f| {
        f.write_all(&header)?;
        write_pixels(f)
    })?;
    write_atomic(&side, &json)
}

/// The `.npy` header for the images' array; checks that `pixels` bytes match the shape.
fn npy_header(images: &FolderImages, pixels: usize) -> std::result::Result<Vec<u8>, String> {
    let shape = vec![images.n, images.height, images.width, images.channels];
    let len = shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
    if len != Some(pixels) {
        return Err(format!("{pixels} pixel bytes do not form the shape {shape:?}"));
    }
    let header = Header { type_descriptor: u8::type_descriptor(), layout: Layout::Standard, shape };
    header.to_bytes().map_err(|e| e.to_string())
}

impl CacheMeta {
    fn new(images: &FolderImages) -> Self {
        let text = |p: &Path| p.to_string_lossy().into_owned();
        let s = &images.source;
        CacheMeta {
            format: CACHE_FORMAT.into(),
            version: CACHE_VERSION,
            source: SourceRecord {
                dir: text(&s.dir),
                file_count: s.file_count,
                newest_mtime_ns: s.newest_mtime_ns,
                fingerprint: format!("{:016x}", s.fingerprint),
                image_size: s.image_size,
                channels: s.channels,
                skip_bad: s.skip_bad,
            },
            n: images.n,
            height: images.height,
            width: images.width,
            channels: images.channels,
            files: images.files.iter().map(|p| text(p)).collect(),
            root: images.root.as_deref().map(text),
            skipped: images.skipped.iter().map(|(p, why)| (text(p), why.clone())).collect(),
        }
    }

    fn source(&self) -> Option<FolderSource> {
        let r = &self.source;
        Some(FolderSource {
            dir: PathBuf::from(&r.dir),
            file_count: r.file_count,
            newest_mtime_ns: r.newest_mtime_ns,
            fingerprint: u64::from_str_radix(&r.fingerprint, 16).ok()?,
            image_size: r.image_size,
            channels: r.channels,
            skip_bad: r.skip_bad,
        })
    }
}

/// Reads and checks the sidecar of `cache`.
fn read_meta(cache: &Path) -> Result<(CacheMeta, FolderSource)> {
    let side = sidecar_path(cache);
    let fail = |why: String| Error::input(format!("{}: {why}", side.display()));
    let file = File::open(&side).map_err(|e| fail(format!("cannot read the cache's sidecar: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_SIDECAR_BYTES + 1).read_to_end(&mut bytes).map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_SIDECAR_BYTES {
        return Err(fail(format!("larger than {} MiB: not a cache sidecar", MAX_SIDECAR_BYTES >> 20)));
    }
    let meta: CacheMeta =
        serde_json::from_slice(&bytes).map_err(|e| fail(one_line(&format!("not a cache sidecar: {e}"))))?;
    if meta.format != CACHE_FORMAT || meta.version != CACHE_VERSION {
        return Err(fail(format!("made by another version of the cache (format {:?} {})", meta.format, meta.version)));
    }
    let source = meta.source().ok_or_else(|| fail("bad fingerprint".into()))?;
    if meta.n == 0 || meta.files.len() != meta.n || ![1, 3].contains(&meta.channels) {
        return Err(fail("inconsistent: the counts of images, files or channels are wrong".into()));
    }
    Ok((meta, source))
}

/// Loads a cache written by [`save_cache`], checking the `.npy` against its sidecar before
/// allocating. Does not look at the folder: see [`check_cache`].
pub fn load_cache(cache: &Path) -> Result<FolderImages> {
    let (meta, source) = read_meta(cache)?;
    let fail = |why: String| Error::input(format!("{}: {why}; delete the cache to rebuild it", cache.display()));
    let CacheMeta { n, height, width, channels, .. } = meta;
    let mut images = FolderImages {
        n,
        height,
        width,
        channels,
        pixels: Vec::new(),
        files: meta.files.iter().map(PathBuf::from).collect(),
        root: meta.root.map(PathBuf::from),
        skipped: meta.skipped.into_iter().map(|(p, why)| (PathBuf::from(p), why)).collect(),
        source,
    };
    let total = [n, height, width, channels].iter().try_fold(1usize, |a, &b| a.checked_mul(b));
    let total = total.ok_or_else(|| fail("the sidecar's shape overflows".into()))?;
    images.pixels = read_npy_pixels(cache, &images, total).map_err(fail)?;
    Ok(images)
}

/// The pixels of the cache `.npy`, which must be exactly what [`save_cache`] writes for `images`'
/// shape (header byte for byte, then `total` bytes); checked before the `total` bytes are allocated.
fn read_npy_pixels(cache: &Path, images: &FolderImages, total: usize) -> std::result::Result<Vec<u8>, String> {
    let shape = vec![images.n, images.height, images.width, images.channels];
    let header = Header { type_descriptor: u8::type_descriptor(), layout: Layout::Standard, shape };
    let expected = header.to_bytes().map_err(|e| e.to_string())?;
    let mut f = File::open(cache).map_err(|e| format!("cannot read: {e}"))?;
    let len = f.metadata().map_err(|e| format!("cannot read: {e}"))?.len();
    if Some(len) != (expected.len() as u64).checked_add(total as u64) {
        return Err(format!("{len} bytes, but its sidecar's shape needs {}", expected.len() + total));
    }
    let mut got = vec![0; expected.len()];
    f.read_exact(&mut got).map_err(|e| format!("cannot read: {e}"))?;
    if got != expected {
        return Err("its .npy header does not match its sidecar".into());
    }
    let mut pixels = Vec::new();
    pixels.try_reserve_exact(total).map_err(|_| format!("{total} bytes do not fit in memory"))?;
    pixels.resize(total, 0);
    f.read_exact(&mut pixels).map_err(|e| format!("cannot read: {e}"))?;
    Ok(pixels)
}

/// Whether the cache at `cache` stands for `dir` read with `opts` now: None when it does, else
/// why not (no cache, damaged, other options, images added, removed or changed). Reads only the
/// sidecar and the folder's metadata, no image.
pub fn check_cache(cache: &Path, dir: &Path, opts: &FolderOptions) -> Result<Option<String>> {
    let found = walk(dir)?;
    let now = FolderSource::new(dir, &found.entries, opts)?;
    if !cache.is_file() {
        return Ok(Some(format!("{} does not exist", cache.display())));
    }
    Ok(match read_meta(cache) {
        Ok((_, then)) => then.differs_from(&now),
        Err(e) => Some(e.to_string()),
    })
}

/// [`load_cache`] when [`check_cache`] finds the cache current; otherwise [`load_image_folder`]
/// and [`save_cache`]. Also returns why the cache was rebuilt (None: it was used).
pub fn load_image_folder_cached(
    dir: &Path,
    opts: &FolderOptions,
    cache: &Path,
) -> Result<(FolderImages, Option<String>)> {
    let why = match check_cache(cache, dir, opts)? {
        None => match load_cache(cache) {
            Ok(images) => return Ok((images, None)),
            Err(e) => e.to_string(),
        },
        Some(why) => why,
    };
    let images = load_image_folder(dir, opts)?;
    save_cache(cache, &images)?;
    Ok((images, Some(why)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_rounds_16_bit_and_composites_onto_white() {
        let k: Vec<u16> = (0..=255u16).map(|k| k * 257).collect();
        assert_eq!(flatten(&k, 1, false), (0..=255u8).collect::<Vec<_>>());
        // Rounded, not truncated: 128 / 257 = 0.498 -> 0, 129 / 257 = 0.502 -> 1, 65535 -> 255.
        assert_eq!(flatten(&[128u16, 129, 385, 386, 65535], 1, false), vec![0, 1, 1, 2, 255]);
        // RGBA: transparent -> white, opaque -> itself, half -> between.
        let px = [0u8, 0, 0, 0, 10, 20, 30, 255, 0, 0, 0, 51];
        assert_eq!(flatten(&px, 4, true), vec![255, 255, 255, 10, 20, 30, 204, 204, 204]);
        assert_eq!(flatten(&[0u16, 0, 65535, 65535], 2, true), vec![255, 255]);
        assert_eq!(flatten(&[0u16, 32768], 2, true), vec![127]);
    }

    #[test]
    fn luma_uses_601_weights() {
        assert_eq!(
            [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]].map(|p| luma(&p)),
            [76, 150, 29, 255, 0]
        );
    }

    #[test]
    fn fit_square_crops_the_centre() {
        // 6x2 image, column x has value x: the centred 2x2 square is columns 2 and 3.
        let img = GrayImage::from_fn(6, 2, |x, _| image::Luma([x as u8]));
        assert_eq!(fit_square(img.clone(), Some(2)).into_raw(), vec![2, 3, 2, 3]);
        assert_eq!(fit_square(img.clone(), None).dimensions(), (6, 2));
        let tall = GrayImage::from_fn(3, 9, |_, y| image::Luma([y as u8 * 10]));
        assert_eq!(fit_square(tall, Some(3)).into_raw(), vec![30, 30, 30, 40, 40, 40, 50, 50, 50]);
        let flat = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 90]));
        let small = fit_square(flat.clone(), Some(8));
        assert!(small.dimensions() == (8, 8) && small.pixels().all(|p| p.0 == [200, 10, 90]));
        let big = fit_square(flat, Some(64));
        assert!(big.dimensions() == (64, 64) && big.pixels().all(|p| p.0 == [200, 10, 90]));
    }

    #[test]
    fn one_line_strips_newlines_and_cuts() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
        assert_eq!(one_line(&"x".repeat(400)).len(), 303);
    }

    #[test]
    fn fingerprint_is_fixed() {
        let mut h = Fnv::new();
        h.eat(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c, "FNV-1a 64 of \"a\"");
    }

    #[test]
    fn options_are_checked() {
        let bad = |o: FolderOptions| matches!(check_options(&o), Err(Error::Input(_)));
        assert!(bad(FolderOptions { image_size: Some(0), ..Default::default() }));
        assert!(bad(FolderOptions { image_size: Some(MAX_SIDE + 1), ..Default::default() }));
        assert!(bad(FolderOptions { channels: Some(2), ..Default::default() }));
        assert!(!bad(FolderOptions { image_size: Some(64), channels: Some(3), ..Default::default() }));
    }
}
