//! The Laplacian pyramid of one image plane, as ProGAN builds it (`pyr_down`, `pyr_up`,
//! `generate_laplacian_pyramid` in `metrics/sliced_wasserstein.py`, which match OpenCV's
//! pyrDown / pyrUp): the 5x5 binomial filter [1 4 6 4 1]^2 / 256, borders as scipy.ndimage's
//! `mode='mirror'`. An odd side is allowed: down keeps pixels 0, 2, 4, ... (ceil(n / 2)); up
//! spreads a level over the exact size of the one above.

/// The binomial filter's taps along one axis (the 5x5 filter is their outer product / 256).
const TAPS: [f64; 5] = [1.0, 4.0, 6.0, 4.0, 1.0];

/// scipy.ndimage's `mode='mirror'`: reflect about the edge pixel's centre (d c b | a b c d | c b a).
fn mirror(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let i = i.rem_euclid(period);
    (if i >= n as isize { period - i } else { i }) as usize
}

/// Where the 5 taps around pixel i of a line of n read, mirror borders.
fn taps_at(i: usize, n: usize) -> [usize; 5] {
    std::array::from_fn(|t| mirror(i as isize + t as isize - 2, n))
}

/// One plane (h x w) convolved with the 5x5 binomial filter times `gain`, mirror borders, at
/// every `step`-th pixel of every `step`-th row from (0, 0): (ceil(h / step), ceil(w / step)).
/// Summed in f64 and rounded once, as scipy.ndimage.convolve filters a float32 image.
fn blur_every(src: &[f32], h: usize, w: usize, gain: f64, step: usize) -> Vec<f32> {
    let xs: Vec<[usize; 5]> = (0..w).step_by(step).map(|x| taps_at(x, w)).collect();
    let ow = xs.len();
    // Along the rows first (every row: the columns' taps need them), at the kept columns.
    let mut rows = vec![0f64; h * ow];
    for (line, out) in src.chunks_exact(w).zip(rows.chunks_exact_mut(ow)) {
        for (o, t) in out.iter_mut().zip(&xs) {
            *o = TAPS.iter().zip(t).map(|(c, &x)| c * line[x] as f64).sum();
        }
    }
    let scale = gain / 256.0;
    let mut out = Vec::with_capacity(h.div_ceil(step) * ow);
    for y in (0..h).step_by(step) {
        let t = taps_at(y, h);
        out.extend(
            (0..ow).map(|x| (TAPS.iter().zip(&t).map(|(c, &r)| c * rows[r * ow + x]).sum::<f64>() * scale) as f32),
        );
    }
    out
}

/// One plane (h x w) convolved with the 5x5 binomial filter [1 4 6 4 1]^2 / 256 times `gain`,
/// as `scipy.ndimage.convolve(plane, filter * gain, mode='mirror')`.
pub fn blur(src: &[f32], h: usize, w: usize, gain: f64) -> Vec<f32> {
    blur_every(src, h, w, gain, 1)
}

/// Filter, then every 2nd pixel from (0, 0): (ceil(h / 2), ceil(w / 2)).
pub fn pyr_down(src: &[f32], h: usize, w: usize) -> Vec<f32> {
    blur_every(src, h, w, 1.0, 2)
}

/// `src` (h x w) spread over an (th, tw) plane of zeros at the even pixels, then filtered x 4.
pub fn pyr_up(src: &[f32], h: usize, w: usize, th: usize, tw: usize) -> Vec<f32> {
    let mut up = vec![0f32; th * tw];
    for y in 0..h.min(th.div_ceil(2)) {
        for x in 0..w.min(tw.div_ceil(2)) {
            up[2 * y * tw + 2 * x] = src[y * w + x];
        }
    }
    blur(&up, th, tw, 4.0)
}

/// One plane's Laplacian pyramid at `sizes` (the first is the plane's): each level but the
/// last minus the upsampled next, the last the Gaussian.
pub fn plane_pyramid(plane: &[f32], sizes: &[(usize, usize)]) -> Vec<Vec<f32>> {
    let mut levels = vec![plane.to_vec()];
    for l in 1..sizes.len() {
        let ((h, w), (dh, dw)) = (sizes[l - 1], sizes[l]);
        let down = pyr_down(&levels[l - 1], h, w);
        let up = pyr_up(&down, dh, dw, h, w);
        levels[l - 1].iter_mut().zip(up).for_each(|(a, b)| *a -= b);
        levels.push(down);
    }
    levels
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5x6 plane of small integers: its filtered values are exact multiples of 1/256.
    fn plane_5x6() -> Vec<f32> {
        (0..30).map(|i: u32| ((i * i) % 17) as f32).collect()
    }

    #[test]
    fn blur_matches_scipy_convolve_mirror() {
        // scipy.ndimage.convolve(p, [1 4 6 4 1]^2 / 256, mode='mirror') * 256 (scipy 1.17). By
        // hand at (0, 0): the mirrored rows 2, 1, 0, 1, 2 filter along x to 194, 158, 16, 158,
        // 194; then 194 + 4 * 158 + 6 * 16 + 4 * 158 + 194 = 1748.
        let want = [
            [1748, 1984, 2422, 2674, 2592, 2460],
            [2002, 2194, 2484, 2511, 2247, 2054],
            [2256, 2402, 2545, 2302, 1755, 1448],
            [2206, 2374, 2608, 2401, 1741, 1354],
            [2156, 2348, 2672, 2546, 1874, 1460],
        ];
        let want: Vec<f32> = want.iter().flatten().map(|&v| v as f32 / 256.0).collect();
        assert_eq!(blur(&plane_5x6(), 5, 6, 1.0), want);
        // pyr_down keeps every 2nd pixel of every 2nd row, from (0, 0).
        let down: Vec<f32> =
            [1748, 2422, 2592, 2256, 2545, 1755, 2156, 2672, 1874].iter().map(|&v| v as f32 / 256.0).collect();
        assert_eq!(pyr_down(&plane_5x6(), 5, 6), down);
        // pyr_up: 3x3 spread over 6x6 zeros, filtered x 4 (scipy's values x 64).
        let want_up = [
            [128, 144, 176, 208, 232, 240],
            [176, 192, 224, 256, 280, 288],
            [272, 288, 320, 352, 376, 384],
            [368, 384, 416, 448, 472, 480],
            [440, 456, 488, 520, 544, 552],
            [464, 480, 512, 544, 568, 576],
        ];
        let want_up: Vec<f32> = want_up.iter().flatten().map(|&v| v as f32 / 64.0).collect();
        let src: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        assert_eq!(pyr_up(&src, 3, 3, 6, 6), want_up);
    }

    #[test]
    fn pyramid_matches_progans() {
        // ProGAN's generate_laplacian_pyramid(x, 2) of this 32x32 plane (numpy 2.4, scipy 1.17).
        let x: Vec<f32> = (0..32 * 32u32).map(|i| ((i * 7919) % 101) as f32 / 100.0).collect();
        let levels = plane_pyramid(&x, &[(32, 32), (16, 16)]);
        let close = |got: &[f32], want: &[f32]| {
            assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{got:?} vs {want:?}")
        };
        close(&levels[0][..4], &[-0.556_921_36, -0.140_659_18, 0.299_648_4, -0.234_477_55]);
        close(&levels[0][31 * 32 + 28..], &[-0.367_812_5, -0.017_187_506, 0.317_578_14, -0.307_499_97]);
        close(&levels[0][13 * 32 + 17..][..1], &[0.232_773_42]);
        close(&levels[1][..4], &[0.536_718_7, 0.536_328_1, 0.37, 0.4325]);
        close(&levels[1][15 * 16 + 12..], &[0.45125, 0.51375, 0.386_875, 0.5875]);
        let abs_sum = |l: &[f32]| l.iter().map(|v| v.abs() as f64).sum::<f64>();
        assert!((abs_sum(&levels[0]) - 249.080_429).abs() < 1e-3 && (abs_sum(&levels[1]) - 126.942_932).abs() < 1e-3);
        // The levels give the plane back: level 0 + pyr_up(level 1).
        let up = pyr_up(&levels[1], 16, 16, 32, 32);
        assert!(levels[0].iter().zip(&up).zip(&x).all(|((l, u), v)| (l + u - v).abs() < 1e-6));
    }

    #[test]
    fn mirror_reflects_about_the_edge_pixels() {
        let got: Vec<usize> = (-3..8).map(|i| mirror(i, 5)).collect();
        assert_eq!(got, [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
        assert_eq!(mirror(-2, 1), 0);
    }
}
