//! Folder-of-images loading: decoding rules, sizes, bad files, the walk and the cache. Every image
//! is made here with the image and png crates, or crafted byte by byte.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use image::{GrayImage, ImageBuffer, ImageEncoder, ImageFormat, Luma, LumaA, Rgb, RgbImage, Rgba};
use shadergan::data::folder::*;
use shadergan::Error;

// ---------------------------------------------------------------------------------------------
// The largest single allocation made by the current thread, to prove that bombs are refused
// before their pixels are allocated.

struct TrackLargest;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
}

unsafe impl GlobalAlloc for TrackLargest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: TrackLargest = TrackLargest;

// ---------------------------------------------------------------------------------------------
// Helpers

fn opts() -> FolderOptions {
    FolderOptions::default()
}

fn sized(s: u32) -> FolderOptions {
    FolderOptions { image_size: Some(s), ..opts() }
}

fn skipping() -> FolderOptions {
    FolderOptions { skip_bad: true, ..opts() }
}

fn load(dir: &Path, o: &FolderOptions) -> FolderImages {
    let imgs = load_image_folder(dir, o).unwrap();
    assert_eq!(imgs.pixels.len(), imgs.n * imgs.height * imgs.width * imgs.channels);
    assert_eq!(imgs.files.len(), imgs.n);
    if imgs.skipped.is_empty() {
        assert_eq!(imgs.pixels.capacity(), imgs.pixels.len(), "allocated once at its final size");
    }
    imgs
}

/// The Input error's text; checks it is one line and exit code 2.
fn input_err(dir: &Path, o: &FolderOptions) -> String {
    match load_image_folder(dir, o) {
        Err(e @ Error::Input(_)) => {
            assert_eq!(e.exit_code(), 2);
            let m = e.to_string();
            assert!(!m.contains('\n'), "{m}");
            m
        }
        Err(e) => panic!("not an input error: {e}"),
        Ok(i) => panic!("loaded {} images", i.n),
    }
}

fn assert_has(m: &str, words: &[&str]) {
    for w in words {
        assert!(m.contains(w), "{m:?} lacks {w:?}");
    }
}

fn put(dir: &Path, rel: &str) -> PathBuf {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    p
}

fn png<P: image::PixelWithColorType>(dir: &Path, rel: &str, img: &ImageBuffer<P, Vec<P::Subpixel>>) -> PathBuf
where
    [P::Subpixel]: image::EncodableLayout,
{
    let p = put(dir, rel);
    img.save_with_format(&p, ImageFormat::Png).unwrap();
    p
}

fn jpeg(dir: &Path, rel: &str, img: &image::DynamicImage) -> PathBuf {
    let p = put(dir, rel);
    let mut f = fs::File::create(&p).unwrap();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut f, 95).encode_image(img).unwrap();
    p
}

fn file(dir: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let p = put(dir, rel);
    fs::write(&p, bytes).unwrap();
    p
}

fn gray(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> GrayImage {
    GrayImage::from_fn(w, h, |x, y| Luma([f(x, y)]))
}

fn flat_rgb(w: u32, h: u32, c: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb(c))
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A PNG whose IHDR declares `w` x `h` (bit depth and colour type as given) with a tiny IDAT.
fn crafted_png(w: u32, h: u32, depth: u8, colour: u8) -> Vec<u8> {
    crafted_png_with(w, h, depth, colour, 64)
}

/// The same with `idat` zero bytes of image data (compressed).
fn crafted_png_with(w: u32, h: u32, depth: u8, colour: u8, idat: usize) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[depth, colour, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&vec![0; idat]).unwrap();
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", &[]);
    out
}

// ---------------------------------------------------------------------------------------------
// Decoding

#[test]
fn gray_images_in_class_folders_load_in_path_order_as_nhwc() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    png(d, "cats/b.png", &gray(3, 2, |x, y| (10 + x + 3 * y) as u8));
    png(d, "cats/A.PNG", &gray(3, 2, |x, y| (100 + x + 3 * y) as u8));
    let sixteen = ImageBuffer::<Luma<u16>, Vec<u16>>::from_fn(3, 2, |x, y| Luma([257 * (50 + x + 3 * y) as u16]));
    png(d, "dogs/c.png", &sixteen);
    png(d, "loose.png", &ImageBuffer::<Luma<u16>, Vec<u16>>::from_pixel(3, 2, Luma([65535])));
    file(d, "notes.txt", b"not an image");
    file(d, "dogs/README.md", b"# dogs");
    let imgs = load(d, &opts());
    assert_eq!((imgs.n, imgs.height, imgs.width, imgs.channels), (4, 2, 3, 1));
    let rel: Vec<_> = imgs.files.iter().map(|p| p.strip_prefix(d).unwrap().to_str().unwrap()).collect();
    assert_eq!(rel, ["cats/A.PNG", "cats/b.png", "dogs/c.png", "loose.png"]);
    let row = |base: u8| (0..6).map(move |i| base + i).collect::<Vec<u8>>();
    let expect: Vec<u8> = [row(100), row(10), row(50), vec![255; 6]].concat();
    assert_eq!(imgs.pixels, expect, "rows in file order, each (h, w) row-major; 257k -> k");
    assert!(imgs.skipped.is_empty());
    assert_eq!(imgs.source.file_count, 4);
}

#[test]
fn sixteen_bit_rounds_to_nearest() {
    let dir = tempfile::tempdir().unwrap();
    let values = [0u16, 128, 129, 385, 386, 257 * 200, 65534, 65535];
    png(dir.path(), "a.png", &ImageBuffer::<Luma<u16>, Vec<u16>>::from_fn(8, 1, |x, _| Luma([values[x as usize]])));
    let rgb16 = ImageBuffer::<Rgb<u16>, Vec<u16>>::from_pixel(8, 1, Rgb([65535, 257 * 7, 0]));
    png(dir.path(), "b.png", &rgb16);
    let imgs = load(dir.path(), &opts());
    assert_eq!(imgs.channels, 3);
    let a: Vec<u8> = imgs.pixels[..24].chunks(3).map(|p| p[0]).collect();
    assert_eq!(a, [0, 0, 1, 1, 2, 200, 255, 255]);
    assert!(imgs.pixels[24..].chunks(3).all(|p| p == [255, 7, 0]));
}

#[test]
fn gray_and_colour_mix_by_replication_or_luma() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    png(d, "a.png", &gray(2, 2, |_, _| 77));
    png(d, "b.png", &flat_rgb(2, 2, [255, 0, 0]));
    let auto = load(d, &opts());
    assert_eq!(auto.channels, 3);
    assert_eq!(auto.pixels, [[77u8; 12].to_vec(), [255, 0, 0].repeat(4)].concat());
    let one = load(d, &FolderOptions { channels: Some(1), ..opts() });
    assert_eq!((one.channels, one.pixels), (1, [[77u8; 4], [76; 4]].concat()), "0.299 * 255 = 76.2");

    let gray_only = tempfile::tempdir().unwrap();
    png(gray_only.path(), "g.png", &gray(2, 1, |x, _| 5 + x as u8));
    assert_eq!(load(gray_only.path(), &opts()).channels, 1);
    let three = load(gray_only.path(), &FolderOptions { channels: Some(3), ..opts() });
    assert_eq!((three.channels, three.pixels), (3, vec![5, 5, 5, 6, 6, 6]));
}

#[test]
fn alpha_is_composited_onto_white() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rgba =
        ImageBuffer::from_fn(3, 1, |x, _| Rgba::<u8>([[0, 0, 0, 0], [10, 20, 30, 255], [0, 0, 0, 51]][x as usize]));
    png(d, "a.png", &rgba);
    png(d, "b.png", &ImageBuffer::<Rgba<u16>, Vec<u16>>::from_pixel(3, 1, Rgba([0, 0, 0, 0])));
    let imgs = load(d, &opts());
    assert_eq!(imgs.channels, 3);
    assert_eq!(imgs.pixels, [vec![255, 255, 255, 10, 20, 30, 204, 204, 204], vec![255; 9]].concat());

    let la = tempfile::tempdir().unwrap();
    png(la.path(), "la.png", &ImageBuffer::from_fn(2, 1, |x, _| LumaA::<u8>([[0, 0], [40, 255]][x as usize])));
    let imgs = load(la.path(), &opts());
    assert_eq!((imgs.channels, imgs.pixels), (1, vec![255, 40]), "gray + alpha stays gray");
}

#[test]
fn palette_png_is_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let p = put(dir.path(), "pal.png");
    let mut enc = png::Encoder::new(fs::File::create(&p).unwrap(), 4, 1);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(vec![255, 0, 0, 0, 255, 0, 0, 0, 255]);
    enc.set_trns(vec![255, 255, 0]);
    enc.write_header().unwrap().write_image_data(&[0, 1, 2, 0]).unwrap();
    let imgs = load(dir.path(), &opts());
    assert_eq!(imgs.channels, 3);
    assert_eq!(imgs.pixels, [255, 0, 0, 0, 255, 0, 255, 255, 255, 255, 0, 0], "transparent blue -> white");
}

#[test]
fn jpegs_load_and_content_decides_the_format() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    jpeg(d, "x.JPG", &flat_rgb(16, 16, [200, 40, 90]).into());
    jpeg(d, "y.jpeg", &gray(16, 16, |_, _| 120).into());
    png(d, "z.jpg", &flat_rgb(16, 16, [1, 2, 3]));
    let imgs = load(d, &opts());
    assert_eq!((imgs.n, imgs.channels), (3, 3));
    let px = 16 * 16 * 3;
    let close = |a: u8, b: u8| a.abs_diff(b) <= 3;
    assert!(imgs.pixels[..px].chunks(3).all(|p| close(p[0], 200) && close(p[1], 40) && close(p[2], 90)));
    assert!(imgs.pixels[px..2 * px].chunks(3).all(|p| p[0] == p[1] && p[1] == p[2] && close(p[0], 120)));
    assert!(imgs.pixels[2 * px..].chunks(3).all(|p| p == [1, 2, 3]), "a PNG named .jpg is decoded as PNG");
}

#[test]
fn exif_orientation_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let p = put(dir.path(), "rot.png");
    // A little-endian TIFF block with one entry: orientation (0x0112) = 6, rotate 90 clockwise.
    let exif = [0x49, 0x49, 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0];
    let mut enc = image::codecs::png::PngEncoder::new(fs::File::create(&p).unwrap());
    enc.set_exif_metadata(exif.to_vec()).unwrap();
    let stored = gray(3, 2, |x, y| (10 * y + x) as u8);
    enc.write_image(stored.as_raw(), 3, 2, image::ExtendedColorType::L8).unwrap();
    let imgs = load(dir.path(), &opts());
    assert_eq!((imgs.height, imgs.width), (3, 2));
    assert_eq!(imgs.pixels, [10, 0, 11, 1, 12, 2]);
}

// ---------------------------------------------------------------------------------------------
// Sizes

#[test]
fn different_sizes_need_image_size() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    png(d, "a.png", &flat_rgb(4, 4, [10, 200, 30]));
    png(d, "b.png", &gray(6, 5, |_, _| 9));
    let m = input_err(d, &opts());
    assert_has(&m, &["a.png is 4x4", "b.png is 6x5", "--image-size"]);

    let imgs = load(d, &sized(8));
    assert_eq!((imgs.n, imgs.height, imgs.width, imgs.channels), (2, 8, 8, 3));
    assert!(imgs.pixels[..192].chunks(3).all(|p| p == [10, 200, 30]), "upscaled flat colour stays exact");
    assert!(imgs.pixels[192..].iter().all(|&v| v == 9));
}

#[test]
fn image_size_resizes_the_shorter_side_and_crops_the_centre() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 30x10: red | green | blue thirds; the centred 10x10 square is all green.
    let bands = RgbImage::from_fn(30, 10, |x, _| Rgb([[255, 0, 0], [0, 255, 0], [0, 0, 255]][x as usize / 10]));
    png(d, "a_wide.png", &bands);
    png(d, "b_tall.png", &flat_rgb(3, 500, [7, 8, 9]));
    png(d, "c_big.png", &flat_rgb(640, 480, [250, 128, 3]));
    png(d, "d_exact.png", &gray(12, 12, |x, y| (x + 12 * y) as u8));
    let imgs = load(d, &sized(12));
    assert_eq!((imgs.n, imgs.height, imgs.width, imgs.channels), (4, 12, 12, 3));
    let rows: Vec<&[u8]> = imgs.pixels.chunks(12 * 12 * 3).collect();
    assert!(rows[0].chunks(3).all(|p| p == [0, 255, 0]), "centre band only");
    assert!(rows[1].chunks(3).all(|p| p == [7, 8, 9]));
    assert!(rows[2].chunks(3).all(|p| p == [250, 128, 3]), "antialiased downscale keeps a flat colour");
    let d_exact: Vec<u8> = rows[3].chunks(3).map(|p| p[0]).collect();
    assert_eq!(d_exact, (0..144).collect::<Vec<u8>>(), "already S x S: untouched");
}

// ---------------------------------------------------------------------------------------------
// Bad files

#[test]
fn bad_files_are_input_errors_naming_the_file() {
    let cases: [(&str, Vec<u8>, &[&str]); 6] = [
        // Its header is fine, so it fails only in the decoding pass (2 x 2 RGB needs 14 bytes).
        ("a_short.png", crafted_png_with(2, 2, 8, 2, 5), &["a_short.png: "]),
        ("empty.png", vec![], &["empty.png: the file is empty (0 bytes)"]),
        ("text.jpg", b"hello, I am a text file\n".repeat(20), &["text.jpg: cannot decode"]),
        ("cut.png", crafted_png(8, 8, 8, 2)[..40].to_vec(), &["cut.png: the file is truncated"]),
        ("zero.png", crafted_png(0, 0, 8, 0), &["zero.png: "]),
        ("gif.png", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(), &["gif.png: not a PNG or JPEG image"]),
    ];
    for (name, bytes, words) in cases {
        let dir = tempfile::tempdir().unwrap();
        png(dir.path(), "good.png", &gray(2, 2, |_, _| 1));
        let bad = file(dir.path(), name, &bytes);
        let m = input_err(dir.path(), &opts());
        assert!(m.starts_with(&bad.display().to_string()), "{m}");
        assert_has(&m, words);
        assert_has(&m, &["--skip-bad-images"]);
        let imgs = load(dir.path(), &skipping());
        assert_eq!((imgs.n, imgs.files.len()), (1, 1));
        assert!(imgs.pixels.iter().all(|&v| v == 1), "{name}: no partial row left");
        assert_eq!(imgs.skipped.len(), 1);
        assert_eq!(imgs.skipped[0].0, bad);
        assert!(!imgs.skipped[0].1.is_empty());
        assert_eq!(imgs.source.file_count, 2);
        let w = imgs.skipped_warning(3).unwrap();
        assert_has(&w, &["warning: skipped 1 of 2 images", name]);
        assert!(!w.contains('\n') && !w.contains("more"));
    }
}

#[test]
fn decompression_bombs_are_refused_before_allocating() {
    LARGEST.with(|c| c.set(0));
    drop(std::hint::black_box(vec![1u8; 32 << 20]));
    assert!(LARGEST.with(Cell::get) >= 32 << 20, "the allocation tracker sees allocations");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    png(d, "good.png", &gray(2, 2, |_, _| 1));
    let bomb = file(d, "bomb.png", &crafted_png(100_000, 100_000, 8, 2));
    let t = Instant::now();
    LARGEST.with(|c| c.set(0));
    let m = input_err(d, &opts());
    let largest = LARGEST.with(Cell::get);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(largest < 16 << 20, "largest allocation {largest} bytes");
    assert!(m.starts_with(&bomb.display().to_string()), "{m}");
    assert_has(&m, &["refused before decoding", "16384 x 16384", "decompression bomb"]);

    // Within the side limit but 2 GiB decoded (RGBA, 16 bits): refused by the byte limit.
    fs::write(&bomb, crafted_png(16384, 16384, 16, 6)).unwrap();
    LARGEST.with(|c| c.set(0));
    let m = input_err(d, &opts());
    assert!(LARGEST.with(Cell::get) < 16 << 20);
    assert_has(&m, &["bomb.png: ", "declares 16384 x 16384 pixels (2048 MiB decoded)", "1024 MiB"]);

    let imgs = load(d, &skipping());
    assert_eq!((imgs.n, imgs.skipped.len()), (1, 1));
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn folder_problems_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_has(&input_err(d, &opts()), &["the folder is empty", ".png"]);
    file(d, "a.txt", b"x");
    file(d, "sub/b.gif", b"GIF89a");
    assert_has(&input_err(d, &opts()), &["no .png, .jpg or .jpeg images among its 2 files"]);
    let not_dir = file(d, "c.txt", b"x");
    assert_has(&input_err(&not_dir, &opts()), &["c.txt: not a folder"]);
    assert_has(&input_err(&d.join("missing"), &opts()), &["missing: cannot read the folder"]);
    file(d, "bad1.png", b"");
    file(d, "bad2.jpg", b"nope");
    assert_has(&input_err(d, &skipping()), &["none of its 2 images could be loaded", "bad1.png: the file is empty"]);
    png(d, "good.png", &gray(1, 1, |_, _| 0));
    let imgs = load(d, &skipping());
    assert_eq!(imgs.skipped_warning(9), imgs.skipped_warning(2));
    let w = imgs.skipped_warning(1).unwrap();
    assert_has(&w, &["skipped 2 of 3 images", "bad1.png (the file is empty (0 bytes))", " and 1 more"]);
    assert_has(&input_err(d, &sized(0)), &["--image-size 0"]);
    assert_has(&input_err(d, &FolderOptions { channels: Some(4), ..opts() }), &["--channels 4"]);
}

#[test]
fn progress_bar_is_harmless_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "a.png", &gray(2, 2, |_, _| 3));
    let imgs = load(dir.path(), &FolderOptions { progress: true, ..opts() });
    assert_eq!(imgs.pixels, [3; 4]);
    assert_eq!(imgs.skipped_warning(3), None);
}

#[cfg(unix)]
#[test]
fn symlink_loops_are_harmless_and_linked_files_count() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    png(d, "a/x.png", &gray(1, 1, |_, _| 1));
    png(d, "b/y.png", &gray(1, 1, |_, _| 2));
    symlink(d, d.join("a/loop_to_root")).unwrap();
    symlink("..", d.join("b/loop_to_parent")).unwrap();
    symlink(d.join("a/x.png"), d.join("b/z.png")).unwrap();
    symlink(d.join("nowhere"), d.join("b/broken_dir")).unwrap();
    let imgs = load(d, &opts());
    let rel: Vec<_> = imgs.files.iter().map(|p| p.strip_prefix(d).unwrap().to_str().unwrap()).collect();
    assert_eq!(rel, ["a/x.png", "b/y.png", "b/z.png"]);
    assert_eq!(imgs.pixels, [1, 2, 1]);
    symlink(d.join("gone.png"), d.join("b/broken.png")).unwrap();
    assert_has(&input_err(d, &opts()), &["broken.png: cannot read"]);
}

// ---------------------------------------------------------------------------------------------
// Cache

fn touch(path: &Path, t: SystemTime) {
    fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

#[test]
fn cache_round_trips_and_detects_staleness() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    png(d, "c1/a.png", &flat_rgb(5, 4, [1, 2, 3]));
    png(d, "c2/b.png", &gray(5, 4, |x, y| (x * y) as u8));
    file(d, "c2/bad.png", b"");
    let o = FolderOptions { skip_bad: true, ..opts() };
    let imgs = load(d, &o);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = cache_dir.path().join("cache.npy");
    save_cache(&cache, &imgs).unwrap();
    let names: Vec<_> = fs::read_dir(cache_dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "only the .npy and its sidecar: {names:?}");
    assert!(sidecar_path(&cache).is_file());
    assert_eq!(load_cache(&cache).unwrap(), imgs, "round trip, skipped files and source included");
    let arr: ndarray::Array4<u8> = ndarray_npy::read_npy(&cache).unwrap();
    assert_eq!((arr.shape(), arr.as_slice().unwrap()), (&[2, 4, 5, 3][..], &imgs.pixels[..]), "NumPy-readable");

    assert_eq!(check_cache(&cache, d, &o).unwrap(), None);
    let other = |o2: FolderOptions| check_cache(&cache, d, &o2).unwrap().unwrap();
    assert_has(&other(FolderOptions { image_size: Some(4), ..o.clone() }), &["other options", "image size 4"]);
    assert_has(&other(FolderOptions { channels: Some(1), ..o.clone() }), &["other options"]);
    assert_eq!(check_cache(&cache, d, &FolderOptions { progress: true, ..o.clone() }).unwrap(), None);

    let t0 = fs::metadata(d.join("c1/a.png")).unwrap().modified().unwrap();
    touch(&d.join("c1/a.png"), t0 + Duration::from_secs(5));
    assert_has(&check_cache(&cache, d, &o).unwrap().unwrap(), &["modified"]);
    touch(&d.join("c1/a.png"), t0);
    assert_eq!(check_cache(&cache, d, &o).unwrap(), None, "back as it was");
    fs::rename(d.join("c2/b.png"), d.join("c2/b2.png")).unwrap();
    assert_has(&check_cache(&cache, d, &o).unwrap().unwrap(), &["renamed"]);
    fs::rename(d.join("c2/b2.png"), d.join("c2/b.png")).unwrap();
    png(d, "c3/new.png", &gray(5, 4, |_, _| 0));
    assert_has(&check_cache(&cache, d, &o).unwrap().unwrap(), &["had 3 images, now 4"]);

    let (rebuilt, why) = load_image_folder_cached(d, &o, &cache).unwrap();
    assert!(why.is_some() && rebuilt.n == 3);
    let (again, why) = load_image_folder_cached(d, &o, &cache).unwrap();
    assert_eq!((why, again), (None, rebuilt));
}

#[test]
fn damaged_or_missing_caches_are_rebuilt() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    png(d, "a.png", &gray(3, 3, |x, _| x as u8));
    let cache = data.path().join("cache").join("imgs.npy");
    fs::create_dir_all(cache.parent().unwrap()).unwrap();
    assert_has(&check_cache(&cache, d, &opts()).unwrap().unwrap(), &["does not exist"]);
    let (imgs, why) = load_image_folder_cached(d, &opts(), &cache).unwrap();
    assert!(why.is_some());
    assert_eq!(load_cache(&cache).unwrap(), imgs);

    // A truncated .npy: refused with its name, then rebuilt.
    let bytes = fs::read(&cache).unwrap();
    fs::write(&cache, &bytes[..bytes.len() - 1]).unwrap();
    let m = load_cache(&cache).unwrap_err().to_string();
    assert_has(&m, &["imgs.npy: ", "bytes", "delete the cache"]);
    let (again, why) = load_image_folder_cached(d, &opts(), &cache).unwrap();
    assert!(why.is_some() && again == imgs);

    // A sidecar that lies about the shape cannot make load_cache allocate it.
    let side = sidecar_path(&cache);
    let text = fs::read_to_string(&side).unwrap().replace("\"height\":3", "\"height\":3000000000");
    fs::write(&side, text).unwrap();
    assert!(load_cache(&cache).is_err());
    fs::write(&side, b"{not json").unwrap();
    assert_has(&load_cache(&cache).unwrap_err().to_string(), &["imgs.npy.json: not a cache sidecar"]);
    assert!(check_cache(&cache, d, &opts()).unwrap().is_some());
    let (again, why) = load_image_folder_cached(d, &opts(), &cache).unwrap();
    assert!(why.is_some() && again == imgs);
}
