//! PNG pictures a GAN user looks at: a grid of generated samples, a scatter plot of 2-D real and
//! generated points, and the loss curves. Every file is written to `path.tmp` first and renamed
//! over `path`, so a reader never sees half a PNG. Text uses the embedded DejaVu Sans font
//! (assets/fonts), so no system font library is needed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

/// The family name plotters' default text styles ask for.
const FONT_FAMILY: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

const TILE_MIN_PX: usize = 56;
const GRID_BORDER_PX: usize = 2;
const GRID_BORDER_GREY: u8 = 64;
const PLOT_SIZE: (u32, u32) = (512, 512);
const LOSS_SIZE: (u32, u32) = (800, 450);
const REAL_COLOUR: RGBColor = RGBColor(110, 170, 230);
const FAKE_COLOUR: RGBColor = RGBColor(255, 140, 0);
const D_COLOUR: RGBColor = RGBColor(31, 119, 180);
const G_COLOUR: RGBColor = RGBColor(255, 127, 14);

/// Writes an image grid: `images` holds n images of h*w values (row-major, one channel) in [0, 1]
/// (values outside are clamped; NaN drawn as mid-grey), tiled `cols` per row with a 2-pixel
/// dark-grey border between tiles, each pixel scaled up by an integer factor so that a tile is at
/// least 56 pixels high (28x28 MNIST -> 2x). Grayscale 8-bit PNG. Unused tiles of the last row
/// stay dark grey.
pub fn write_grid_png(path: &Path, images: &[f32], n: usize, h: usize, w: usize, cols: usize) -> Result<()> {
    write_image_grid_png(path, images, n, 1, h, w, cols)
}

/// The same for images of `channels` (1: gray, 3: RGB) channel planes each: image k is
/// channels x h x w values (NCHW, as shadergan holds images). A 3-channel grid is an RGB PNG.
pub fn write_image_grid_png(
    path: &Path,
    images: &[f32],
    n: usize,
    channels: usize,
    h: usize,
    w: usize,
    cols: usize,
) -> Result<()> {
    let grid = tile_grid(images, n, channels, h, w, cols)?;
    write_png(path, grid.width32()?, grid.height32()?, colour_type(channels), &grid.pixels)
}

/// An image grid (as [`write_image_grid_png`]) with a name left of each row: a conditional run's
/// classes, row r of class `row_labels[r]`. The names sit in a dark-grey margin as wide as the
/// longest (names past 24 characters are cut, with an ellipsis), in light grey, centred on their
/// row; rows past the names get none. Gray grids stay gray (the text is drawn in a grey).
#[allow(clippy::too_many_arguments)]
pub fn write_labelled_grid_png(
    path: &Path,
    images: &[f32],
    n: usize,
    channels: usize,
    h: usize,
    w: usize,
    cols: usize,
    row_labels: &[String],
) -> Result<()> {
    let grid = tile_grid(images, n, channels, h, w, cols)?;
    let labels: Vec<String> = row_labels.iter().map(|l| short_label(l)).collect();
    let font_px = (grid.tile_h as f64 * 0.3).clamp(12.0, 20.0);
    register_font();
    let font = (FONT_FAMILY, font_px).into_font();
    let text_w = labels.iter().filter_map(|l| font.box_size(l).ok()).map(|(w, _)| w as usize).max().unwrap_or(0);
    let margin = text_w + 2 * LABEL_PAD_PX;
    let width = margin + grid.width;
    let (Ok(w32), h32) = (u32::try_from(width), grid.height32()?) else {
        return Err(Error::input(format!("image grid of {width}x{} pixels is too large", grid.height)));
    };
    // Drawn in RGB (plotters' bitmap), the tiles copied in beside the margin.
    let mut rgb = vec![GRID_BORDER_GREY; width * grid.height * 3];
    for (y, row) in grid.pixels.chunks_exact(grid.width * channels).enumerate() {
        let dst = &mut rgb[(y * width + margin) * 3..][..grid.width * 3];
        for (px, src) in dst.chunks_exact_mut(3).zip(row.chunks_exact(channels)) {
            px.copy_from_slice(&[src[0], src[channels / 2], src[channels - 1]]);
        }
    }
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w32, h32)).into_drawing_area();
        let style = font.color(&LABEL_GREY).pos(Pos::new(HPos::Left, VPos::Center));
        let rows = grid.rows.min(labels.len());
        let drawn = (0..rows)
            .try_for_each(|r| {
                let y = GRID_BORDER_PX + r * (grid.tile_h + GRID_BORDER_PX) + grid.tile_h / 2;
                root.draw_text(&labels[r], &style, (LABEL_PAD_PX as i32, y as i32))
            })
            .and_then(|_| root.present());
        drawn.map_err(|e| Error::io(path, format!("drawing the class names failed: {e}")))?;
    }
    if channels == 1 {
        let gray: Vec<u8> = rgb.chunks_exact(3).map(|p| p[0]).collect();
        return write_png(path, w32, h32, png::ColorType::Grayscale, &gray);
    }
    write_png(path, w32, h32, png::ColorType::Rgb, &rgb)
}

const LABEL_PAD_PX: usize = 8;
const LABEL_MAX_CHARS: usize = 24;
/// The names' colour: a grey (equal channels), so that a gray grid's text stays gray.
const LABEL_GREY: RGBColor = RGBColor(235, 235, 235);

/// A row name of at most [`LABEL_MAX_CHARS`] characters (an ellipsis where it was cut).
fn short_label(name: &str) -> String {
    match name.char_indices().nth(LABEL_MAX_CHARS - 1) {
        Some((at, _)) if name.chars().count() > LABEL_MAX_CHARS => format!("{}…", &name[..at]),
        _ => name.to_string(),
    }
}

fn colour_type(channels: usize) -> png::ColorType {
    if channels == 3 {
        png::ColorType::Rgb
    } else {
        png::ColorType::Grayscale
    }
}

/// The pixels of an image grid: tiles scaled to at least [`TILE_MIN_PX`] high, borders between.
struct Grid {
    pixels: Vec<u8>,
    width: usize,
    height: usize,
    rows: usize,
    tile_h: usize,
}

impl Grid {
    fn width32(&self) -> Result<u32> {
        u32::try_from(self.width).map_err(|_| self.too_large())
    }

    fn height32(&self) -> Result<u32> {
        u32::try_from(self.height).map_err(|_| self.too_large())
    }

    fn too_large(&self) -> Error {
        Error::input(format!("image grid of {}x{} pixels is too large", self.width, self.height))
    }
}

fn tile_grid(images: &[f32], n: usize, channels: usize, h: usize, w: usize, cols: usize) -> Result<Grid> {
    if n == 0 || h == 0 || w == 0 || cols == 0 || ![1, 3].contains(&channels) {
        return Err(Error::input(format!(
            "image grid needs n, h, w, cols > 0 and 1 or 3 channels (got n={n} channels={channels} h={h} w={w} cols={cols})"
        )));
    }
    let c = channels;
    if n.checked_mul(c).and_then(|x| x.checked_mul(h)).and_then(|x| x.checked_mul(w)) != Some(images.len()) {
        return Err(Error::input(format!("image grid: {} values are not {n} images of {c}x{h}x{w}", images.len())));
    }
    let cols = cols.min(n);
    let rows = n.div_ceil(cols);
    let scale = TILE_MIN_PX.div_ceil(h).max(1);
    let (tile_h, tile_w) = (h * scale, w * scale);
    let width = cols * tile_w + (cols + 1) * GRID_BORDER_PX;
    let height = rows * tile_h + (rows + 1) * GRID_BORDER_PX;
    if u32::try_from(width).is_err() || u32::try_from(height).is_err() || width.checked_mul(height * c).is_none() {
        return Err(Error::input(format!("image grid of {width}x{height} pixels is too large")));
    }
    let mut pixels = vec![GRID_BORDER_GREY; width * height * c];
    for (k, img) in images.chunks_exact(c * h * w).enumerate() {
        let x0 = GRID_BORDER_PX + (k % cols) * (tile_w + GRID_BORDER_PX);
        let y0 = GRID_BORDER_PX + (k / cols) * (tile_h + GRID_BORDER_PX);
        for ty in 0..tile_h {
            let dst = &mut pixels[((y0 + ty) * width + x0) * c..][..tile_w * c];
            for (tx, px) in dst.chunks_exact_mut(c).enumerate() {
                let at = (ty / scale) * w + tx / scale;
                for (ch, out) in px.iter_mut().enumerate() {
                    let v = img[ch * h * w + at];
                    *out = if v.is_nan() { 128 } else { (v.clamp(0.0, 1.0) * 255.0).round() as u8 };
                }
            }
        }
    }
    Ok(Grid { pixels, width, height, rows, tile_h })
}

/// A scatter plot of 2-D points: real points (flat x,y pairs) in light blue, generated points in
/// orange, on a 512x512 canvas whose limits are the real data's range padded by 10% on each side
/// (falling back to the generated points when there is no finite real point). Non-finite points
/// are skipped; generated points off the plot are counted in the legend.
pub fn write_scatter_png(path: &Path, real: &[f32], fake: &[f32], title: &str) -> Result<()> {
    if !real.len().is_multiple_of(2) || !fake.len().is_multiple_of(2) {
        return Err(Error::input("scatter plot: points must be flat (x, y) pairs (odd length)"));
    }
    let finite = |v: &[f32]| -> Vec<(f64, f64)> {
        v.chunks_exact(2).map(|p| (p[0] as f64, p[1] as f64)).filter(|(x, y)| x.is_finite() && y.is_finite()).collect()
    };
    let (real, fake) = (finite(real), finite(fake));
    let basis = if real.is_empty() { &fake } else { &real };
    let xr = padded_range(basis.iter().map(|p| p.0), 0.1);
    let yr = padded_range(basis.iter().map(|p| p.1), 0.1);
    let fake_in: Vec<(f64, f64)> = fake.iter().copied().filter(|p| xr.contains(&p.0) && yr.contains(&p.1)).collect();
    let off = fake.len() - fake_in.len();
    let fake_label = if off > 0 { format!("generated ({off} off plot)") } else { "generated".to_string() };
    draw_rgb(path, PLOT_SIZE, |root| {
        let mut chart = axes(root, title, xr, yr, ("x", "y"), false)?;
        for (pts, name, colour) in [(real, "real".to_string(), REAL_COLOUR), (fake_in, fake_label, FAKE_COLOUR)] {
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 2, colour.filled())))?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, colour.filled()));
        }
        legend(&mut chart)
    })
}

/// Loss curves: D loss (blue) and G loss (orange) against the step, with axes, tick labels, a
/// legend and a title, on an 800x450 canvas. Non-finite losses are skipped. The three slices must
/// have the same length; empty ones give empty axes.
pub fn write_loss_png(path: &Path, steps: &[u32], d_loss: &[f32], g_loss: &[f32]) -> Result<()> {
    let (ns, nd, ng) = (steps.len(), d_loss.len(), g_loss.len());
    if nd != ns || ng != ns {
        return Err(Error::input(format!("loss plot: {ns} steps but {nd} D losses and {ng} G losses")));
    }
    let series = |loss: &[f32]| -> Vec<(f64, f64)> {
        steps.iter().zip(loss).filter(|(_, l)| l.is_finite()).map(|(&s, &l)| (s as f64, l as f64)).collect()
    };
    let (d, g) = (series(d_loss), series(g_loss));
    let xr = padded_range(steps.iter().map(|&s| s as f64), 0.0);
    let yr = padded_range(d.iter().chain(&g).map(|p| p.1), 0.05);
    // Headroom at the top for the legend.
    let yr = yr.start..(yr.end + (yr.end - yr.start) * 0.15).min(f64::MAX);
    draw_rgb(path, LOSS_SIZE, |root| {
        let mut chart = axes(root, "GAN losses", xr, yr, ("step", "loss"), true)?;
        for (pts, name, colour) in [(d, "D loss", D_COLOUR), (g, "G loss", G_COLOUR)] {
            chart
                .draw_series(LineSeries::new(pts, colour.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        }
        legend(&mut chart)
    })
}

type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type DrawError = DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>;
type DrawResult = std::result::Result<(), DrawError>;
type Area<'b> = DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>;

/// A chart with a title, labelled axes and a light grid; `integer_x` prints x ticks without decimals.
fn axes<'a, 'b>(
    root: &'a Area<'b>,
    title: &str,
    xr: Range<f64>,
    yr: Range<f64>,
    (x_desc, y_desc): (&str, &str),
    integer_x: bool,
) -> std::result::Result<Chart<'a, 'b>, DrawError> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT_FAMILY, 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xr, yr)?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_desc).y_desc(y_desc).light_line_style(WHITE.mix(0.0)).label_style((FONT_FAMILY, 14));
    if integer_x {
        mesh.x_label_formatter(&|x| format!("{x:.0}"));
    }
    mesh.draw()?;
    Ok(chart)
}

fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>) -> DrawResult {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.5))
        .label_font((FONT_FAMILY, 14))
        .draw()
}

/// The range of the finite values, widened by `pad` times its span on each side; a degenerate
/// (single-valued) range by 1 each way (0.1% of its magnitude when that is more), and no values at
/// all give 0..1.
fn padded_range(values: impl Iterator<Item = f64>, pad: f64) -> Range<f64> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0.0..1.0;
    }
    let span = hi - lo;
    // A single value is widened in proportion to its magnitude so huge values still get a range.
    let d = if span > f64::EPSILON * lo.abs().max(hi.abs()) {
        span.min(f64::MAX) * pad
    } else {
        lo.abs().max(hi.abs()).max(1e3) * 1e-3
    };
    (lo - d).max(-f64::MAX)..(hi + d).min(f64::MAX)
}

fn draw_rgb(path: &Path, (w, h): (u32, u32), draw: impl FnOnce(&Area<'_>) -> DrawResult) -> Result<()> {
    register_font();
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let drawn = root.fill(&WHITE).and_then(|_| draw(&root)).and_then(|_| root.present());
        drawn.map_err(|e| Error::io(path, format!("drawing the plot failed: {e}")))?;
    }
    write_png(path, w, h, png::ColorType::Rgb, &buf)
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT_BYTES).is_err() {
            log::warn!("the embedded font could not be loaded; plots will lack text");
        }
    });
}

/// Encodes an 8-bit PNG into `path.tmp` and renames it over `path`.
fn write_png(path: &Path, w: u32, h: u32, colour: png::ColorType, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let encode = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let mut out = BufWriter::new(File::create(&tmp)?);
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(colour);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(data)?;
        writer.finish()?;
        out.flush()?;
        out.get_ref().sync_all()?;
        Ok(())
    };
    let done = encode().and_then(|_| Ok(std::fs::rename(&tmp, path)?));
    done.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG: (width, height, colour type, pixels).
    fn decode(path: &Path) -> (u32, u32, png::ColorType, Vec<u8>) {
        let file = std::io::BufReader::new(File::open(path).unwrap());
        let mut reader = png::Decoder::new(file).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        (info.width, info.height, info.color_type, buf)
    }

    fn only_file(dir: &Path) -> Vec<String> {
        let names = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap());
        names.collect()
    }

    fn has_rgb(px: &[u8], c: RGBColor) -> bool {
        px.chunks_exact(3).any(|p| p == [c.0, c.1, c.2])
    }

    fn ring(n: usize, r: f32, dx: f32) -> Vec<f32> {
        (0..n)
            .flat_map(|i| {
                let a = i as f32 * 0.7;
                [r * a.cos() + dx + (i % 7) as f32 * 0.05, r * a.sin()]
            })
            .collect()
    }

    #[test]
    fn grid_tiles_and_borders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        write_grid_png(&path, &vec![1.0; 5 * 28 * 28], 5, 28, 28, 3).unwrap();
        let (w, h, ct, px) = decode(&path);
        // 28x28 is scaled 2x to 56; 3 columns and 2 rows with 2-pixel borders all round.
        assert_eq!((w, h, ct), (3 * 56 + 4 * 2, 2 * 56 + 3 * 2, png::ColorType::Grayscale));
        let dark = GRID_BORDER_GREY;
        // Tiles start at 2 and 60 (x and y); the sixth, missing tile (x 118.., y 60..) stays dark.
        for (x, y, want) in [(0, 0, dark), (2, 2, 255), (57, 57, 255), (58, 2, dark), (60, 2, 255), (2, 58, dark)]
            .into_iter()
            .chain([(2, 60, 255), (128, 70, dark)])
        {
            assert_eq!(px[y * w as usize + x], want, "pixel ({x}, {y})");
        }
        assert_eq!(only_file(dir.path()), ["grid.png"]);
    }

    #[test]
    fn grid_clamps_greys_nan_and_rejects_bad_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.png");
        let vals = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.5, -3.0, 7.0];
        write_grid_png(&path, &vals, 6, 1, 1, 6).unwrap();
        let (w, h, _, px) = decode(&path);
        assert_eq!((w, h), (6 * 56 + 7 * 2, 56 + 4));
        let tile = |k: usize| px[10 * w as usize + 2 + k * 58 + 10];
        assert_eq!((0..6).map(tile).collect::<Vec<_>>(), [128, 255, 0, 128, 0, 255]);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(write_grid_png(&path, &[0.0; 10], 2, 2, 2, 2), Err(Error::Input(_))));
        assert!(matches!(write_grid_png(&path, &[], 0, 2, 2, 2), Err(Error::Input(_))));
        assert!(matches!(write_grid_png(&path, &[0.0; 8], 2, 2, 2, 0), Err(Error::Input(_))));
        assert!(only_file(dir.path()).is_empty());
    }

    /// Row names go in a margin left of the tiles, one per row, in a grey; the tiles are the
    /// unlabelled grid's, moved right; a gray grid stays gray; long names are cut.
    #[test]
    fn labelled_grid_names_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, named) = (dir.path().join("plain.png"), dir.path().join("named.png"));
        let vals: Vec<f32> = (0..6 * 28 * 28).map(|i| (i % 97) as f32 / 96.0).collect();
        write_grid_png(&plain, &vals, 6, 28, 28, 3).unwrap();
        let labels = ["zero".to_string(), "a much longer class name than fits in the margin".to_string()];
        write_labelled_grid_png(&named, &vals, 6, 1, 28, 28, 3, &labels).unwrap();
        let (pw, ph, _, p) = decode(&plain);
        let (nw, nh, ct, n) = decode(&named);
        assert_eq!((nh, ct), (ph, png::ColorType::Grayscale));
        let margin = (nw - pw) as usize;
        assert!(margin > 2 * LABEL_PAD_PX && margin < 400, "margin {margin}");
        for y in 0..ph as usize {
            assert_eq!(&n[y * nw as usize + margin..][..pw as usize], &p[y * pw as usize..][..pw as usize], "row {y}");
        }
        // Text pixels in the margin of each row (lighter than the border grey), none elsewhere.
        let light_in = |y0: usize, y1: usize| {
            (y0..y1).any(|y| n[y * nw as usize..][..margin].iter().any(|&v| v > GRID_BORDER_GREY + 60))
        };
        assert!(light_in(2, 58) && light_in(60, 116));
        assert!(!light_in(0, 2) && !light_in(116, nh as usize));
        assert_eq!(short_label(&labels[1]).chars().count(), LABEL_MAX_CHARS);
        assert_eq!(short_label("zero"), "zero");
        let planes = vec![0.5; 2 * 3 * 4 * 4];
        write_labelled_grid_png(&named, &planes, 2, 3, 4, 4, 1, &labels[..1]).unwrap();
        assert_eq!(decode(&named).2, png::ColorType::Rgb);
    }

    #[test]
    fn colour_grid_reads_channel_planes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rgb.png");
        // Two 1x2 RGB images as channel planes: image 0 is (red, blue), image 1 (white, black).
        let planes = [[1.0, 0.0, 0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]].concat();
        write_image_grid_png(&path, &planes, 2, 3, 1, 2, 2).unwrap();
        let (w, h, ct, px) = decode(&path);
        // 1 pixel high scales 56x; tiles 112 wide.
        assert_eq!((w, h, ct), (2 * 112 + 3 * 2, 56 + 4, png::ColorType::Rgb));
        let at = |x: usize, y: usize| [0, 1, 2].map(|c| px[(y * w as usize + x) * 3 + c]);
        assert_eq!(at(0, 0), [GRID_BORDER_GREY; 3]);
        assert_eq!((at(2, 2), at(2 + 56, 2)), ([255, 0, 0], [0, 0, 255]));
        assert_eq!((at(116, 30), at(116 + 56, 30)), ([255, 255, 255], [0, 0, 0]));
        assert!(matches!(write_image_grid_png(&path, &planes, 2, 2, 1, 2, 2), Err(Error::Input(_))));
        assert!(matches!(write_image_grid_png(&path, &planes[1..], 2, 3, 1, 2, 2), Err(Error::Input(_))));
    }

    #[test]
    fn scatter_draws_both_colours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.png");
        let mut fake = ring(200, 1.5, 0.3);
        fake.extend([f32::NAN, 0.0, 1e30, 1e30, f32::INFINITY, 1.0]);
        write_scatter_png(&path, &ring(300, 2.0, 0.0), &fake, "step 100").unwrap();
        let (w, h, ct, px) = decode(&path);
        assert_eq!((w, h, ct), (512, 512, png::ColorType::Rgb));
        assert!(has_rgb(&px, FAKE_COLOUR) && has_rgb(&px, REAL_COLOUR));
        assert!(px.chunks_exact(3).any(|p| p[0] < 60 && p[1] < 60 && p[2] < 60), "no text or axes");
        assert_eq!(only_file(dir.path()), ["s.png"]);
    }

    #[test]
    fn scatter_survives_degenerate_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.png");
        write_scatter_png(&path, &[], &[], "").unwrap();
        write_scatter_png(&path, &[f32::NAN, 1.0, 1.0, 1.0, 1.0, 1.0], &[f32::INFINITY; 4], "nan").unwrap();
        write_scatter_png(&path, &[], &[3.0, 4.0], "fake only").unwrap();
        write_scatter_png(&path, &[f32::MAX, -f32::MAX, -f32::MAX, 1e-30], &[0.0, 0.0], "huge").unwrap();
        assert_eq!(decode(&path).0, 512);
        assert!(matches!(write_scatter_png(&path, &[1.0], &[], "odd"), Err(Error::Input(_))));
    }

    #[test]
    fn loss_curves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let steps: Vec<u32> = (0..500).map(|i| i * 10).collect();
        let mut d: Vec<f32> = steps.iter().map(|&s| 1.4 - 0.2 * (s as f32 / 5000.0)).collect();
        let g: Vec<f32> = steps.iter().map(|&s| 0.7 + 0.8 * (s as f32 / 5000.0).sqrt()).collect();
        d[100] = f32::NAN;
        d[200] = f32::INFINITY;
        write_loss_png(&path, &steps, &d, &g).unwrap();
        let (w, h, ct, px) = decode(&path);
        assert_eq!((w, h, ct), (800, 450, png::ColorType::Rgb));
        assert!(has_rgb(&px, D_COLOUR) && has_rgb(&px, G_COLOUR));
        assert_eq!(only_file(dir.path()), ["loss.png"]);
        write_loss_png(&path, &[], &[], &[]).unwrap();
        write_loss_png(&path, &[5], &[f32::NAN], &[1.0]).unwrap();
        write_loss_png(&path, &[0, u32::MAX], &[f32::MAX, -f32::MAX], &[0.0, f32::MIN_POSITIVE]).unwrap();
        assert!(matches!(write_loss_png(&path, &[1, 2], &[1.0], &[1.0, 2.0]), Err(Error::Input(_))));
    }

    #[test]
    fn padded_ranges() {
        assert_eq!(padded_range([0.0, 10.0, f64::NAN].into_iter(), 0.1), -1.0..11.0);
        assert_eq!(padded_range([2.0, 2.0].into_iter(), 0.1), 1.0..3.0);
        assert_eq!(padded_range(std::iter::empty(), 0.1), 0.0..1.0);
        let r = padded_range([-f64::MAX, f64::MAX].into_iter(), 0.1);
        assert!(r.start.is_finite() && r.end.is_finite() && r.start < r.end);
    }

    /// Writes one picture of each kind to /tmp/images_preview/ for a person to look at:
    /// `cargo test --lib images::tests::preview -- --ignored`.
    #[test]
    #[ignore = "writes preview PNGs to /tmp/images_preview for a person to look at; checks nothing"]
    fn preview() {
        let dir = Path::new("/tmp/images_preview");
        std::fs::create_dir_all(dir).unwrap();
        // Rings of growing radius and fading brightness stand in for digits.
        let r = |i: usize| ((i / 28 % 28) as f32 - 14.0).hypot((i % 28) as f32 - 14.0);
        let digits: Vec<f32> =
            (0..16 * 784).map(|i| (r(i) - 7.0 - (i / 784) as f32 * 0.3).abs().lt(&2.0) as u8 as f32).collect();
        write_grid_png(&dir.join("grid.png"), &digits, 16, 28, 28, 8).unwrap();
        let fake = ring(400, 1.6, 0.4);
        write_scatter_png(&dir.join("scatter.png"), &ring(500, 2.0, 0.0), &fake, "ring, step 2000").unwrap();
        let steps: Vec<u32> = (0..300).map(|i| i * 20).collect();
        let d: Vec<f32> = steps.iter().map(|&s| 1.38 - 0.3 * (s as f32 / 6000.0) + 0.05 * (s as f32).sin()).collect();
        let g: Vec<f32> =
            steps.iter().map(|&s| 0.69 + 0.9 * (s as f32 / 6000.0).sqrt() + 0.08 * (s as f32 * 0.3).cos()).collect();
        write_loss_png(&dir.join("loss.png"), &steps, &d, &g).unwrap();
    }
}
