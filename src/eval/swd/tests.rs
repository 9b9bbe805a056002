//! The SWD's behaviour: identical sets score 0, worse sets score above the real-vs-real floor,
//! the deviation from ProGAN's normalisation, the sample count and the floor as documented.

use super::pyramid::blur;
use super::*;

/// A unit value from (image, what).
fn draw(seed: u32, i: usize, what: u32) -> f32 {
    rng::unit_f32(rng::hash32(seed ^ rng::hash32(i as u32 ^ rng::hash32(what))))
}

/// `n` RGB pictures of `size` x `size`: a tinted gradient background with stripes, and a disc
/// of another colour (uint8, channel planes).
fn pictures(n: usize, size: usize) -> Dataset {
    let shape = ImageShape { channels: 3, height: size, width: size };
    let mut v = vec![0u8; n * shape.values()];
    for (i, img) in v.chunks_mut(shape.values()).enumerate() {
        let d = |what| draw(7, i, what);
        let (cy, cx, r) = (d(0) * size as f32, d(1) * size as f32, (0.15 + 0.25 * d(2)) * size as f32);
        let period = 2.0 + 6.0 * d(3);
        for y in 0..size {
            for x in 0..size {
                let (dy, dx) = (y as f32 - cy, x as f32 - cx);
                let inside = dy * dy + dx * dx < r * r;
                let stripe = if (((x + y) as f32 / period) as usize).is_multiple_of(2) { 0.1 } else { 0.0 };
                for ch in 0..3 {
                    let bg = 0.3 + 0.5 * d(10 + ch as u32) * (y as f32 / size as f32) + stripe;
                    let val = if inside { d(20 + ch as u32) } else { bg };
                    img[(ch * size + y) * size + x] = (val.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
    }
    Dataset::from_u8_images(n, shape, v).unwrap()
}

/// Real images [from, from + count) of the seeded order, as floats.
fn reals(data: &Dataset, seed: u64, from: usize, count: usize) -> Vec<f32> {
    let perm = rng::EpochPermutation::new(seed, rng::PURPOSE_EVAL, data.n as u32);
    rows_f32(data, (from..from + count).map(|q| perm.apply(q as u32) as usize))
}

/// ProGAN's own normalisation: each set by its own per-channel mean and std.
fn distance_normalised_per_set(a: &[f32], b: &[f32], n: usize, shape: ImageShape, seed: u64) -> f64 {
    let key = rng::seed_words(seed);
    let sizes = level_sizes(shape);
    let (pa, pb) = (pyramid(a, n, shape, &sizes), pyramid(b, n, shape, &sizes));
    let per_level: Vec<f64> = (0..sizes.len())
        .map(|l| {
            let set = Set { n, channels: shape.channels, size: sizes[l], level: l as u32, key };
            let (mut da, mut db) = (set.descriptors(&pa[l], None), set.descriptors(&pb[l], None));
            ChannelStats::of(&da, shape.channels).normalise(&mut da);
            ChannelStats::of(&db, shape.channels).normalise(&mut db);
            distance(&sorted_projections(&da, set.dim(), key, l as u32), &db, set.dim(), key, l as u32)
        })
        .collect();
    Distances::of(per_level).mean
}

#[test]
fn identical_sets_score_zero_and_worse_sets_score_above_the_floor() {
    let (size, seed) = (32, 3);
    let data = pictures(400, size);
    let n = sample_count(data.n);
    assert_eq!(n, 200);
    let r = Reference::new(&data, seed, n).unwrap();
    assert_eq!((r.samples(), r.floor().per_level.len()), (200, 2));
    // The floor is the first N reals of the seeded order against the next N.
    let second = reals(&data, seed, n, n);
    assert_eq!(&r.distances(&second), r.floor());
    let floor = r.floor().mean;
    // The same images (and so the same neighbourhoods): 0.
    let first = reals(&data, seed, 0, n);
    assert!(r.distances(&first).mean < 1e-6, "{:?}", r.distances(&first));
    // A colour shift, a blur and uniform noise, each of the second half.
    let plane = size * size;
    let shifted: Vec<f32> =
        second.iter().enumerate().map(|(i, &v)| if (i / plane) % 3 == 0 { v * 0.7 + 0.1 } else { v }).collect();
    let blurred: Vec<f32> =
        second.chunks(plane).flat_map(|p| blur(&blur(p, size, size, 1.0), size, size, 1.0)).collect();
    let noise: Vec<f32> = (0..second.len()).map(|i| draw(99, i, 0)).collect();
    let (s, b, u) = (r.distances(&shifted).mean, r.distances(&blurred).mean, r.distances(&noise).mean);
    eprintln!("floor {floor:.3}, shifted {s:.3}, blurred {b:.3}, noise {u:.3}");
    assert!(s > 2.0 * floor && b > 2.0 * floor, "floor {floor}, shifted {s}, blurred {b}");
    assert!(u > 5.0 * s.max(b), "noise {u}, shifted {s}, blurred {b}");
    // Deterministic: a second reference and score give the same bits.
    let again = Reference::new(&data, seed, n).unwrap();
    assert_eq!(again.floor(), r.floor());
    assert_eq!(again.distances(&noise), r.distances(&noise));
}

#[test]
fn normalising_by_the_reals_sees_a_colour_change_that_per_set_normalisation_misses() {
    let (size, seed) = (32, 5);
    let data = pictures(300, size);
    let shape = data.image().unwrap();
    let n = sample_count(data.n);
    let r = Reference::new(&data, seed, n).unwrap();
    let first = reals(&data, seed, 0, n);
    // R * 0.7 + 0.1, G * 1.2, B - 0.05: a per-channel affine change of the same images.
    let plane = size * size;
    let tinted: Vec<f32> = first
        .iter()
        .enumerate()
        .map(|(i, &v)| match (i / plane) % 3 {
            0 => v * 0.7 + 0.1,
            1 => v * 1.2,
            _ => v - 0.05,
        })
        .collect();
    let per_set = distance_normalised_per_set(&first, &tinted, n, shape, seed);
    let ours = r.distances(&tinted).mean;
    eprintln!("per-set {per_set:.5}, ours {ours:.3}, floor {:.3}", r.floor().mean);
    assert!(per_set < 0.05, "per-set normalisation: {per_set}");
    assert!(ours > 3.0 * r.floor().mean, "ours {ours}, floor {}", r.floor().mean);
}

#[test]
fn level_sizes_stop_below_16() {
    let sizes = |h, w| level_sizes(ImageShape { channels: 3, height: h, width: w });
    assert_eq!(sizes(64, 64), [(64, 64), (32, 32), (16, 16)]);
    assert_eq!(sizes(32, 32), [(32, 32), (16, 16)]);
    assert_eq!(sizes(28, 28), [(28, 28)]);
    assert_eq!(sizes(33, 40), [(33, 40), (17, 20)]);
    assert!(sizes(15, 64).is_empty());
    assert_eq!(sample_count(10_000), 2048);
    assert_eq!(sample_count(301), 150);
    assert_eq!(sample_count(1), 0);
}

/// Per class: each class's reference reads only its own images; a generator that makes class
/// c's real images when asked for c scores 0 on every class, one that swaps two classes scores
/// them above their floors; the sample count is capped by the images asked for.
#[test]
fn per_class_swd_judges_each_class_by_its_own_images() {
    use super::by_class::ClassReferences;
    use crate::data::labels::ClassLabels;
    let (size, seed) = (16, 5);
    let mut data = pictures(240, size);
    // Class 0: the pictures as drawn; class 1: the same, inverted (another colour world).
    let dim = data.dim;
    if let crate::data::DataValues::U8(v) = &mut data.values {
        v[120 * dim..].iter_mut().for_each(|p| *p = 255 - *p);
    }
    let ids = (0..240).map(|i| (i >= 120) as u8).collect();
    data.classes = Some(ClassLabels { ids, names: vec!["plain".into(), "inverted".into()] });
    // Capped by the images asked for (50) and by half the class's reals (60).
    let capped = ClassReferences::new(&data, seed, &[50, 80]).unwrap().unwrap();
    assert_eq!(capped.samples(), [50, 60]);
    let refs = ClassReferences::new(&data, seed, &[50, 50]).unwrap().unwrap();
    // Class c's first reals in its own seeded order, class by class (asked: 0, 1, 0, 1, ...).
    let class = |c: usize| data.select(&(0..240).filter(|&r| (r >= 120) as usize == c).collect::<Vec<_>>());
    let n = 50;
    let (r0, r1) = (reals(&class(0), seed, 0, n), reals(&class(1), seed, 0, n));
    let interleave = |a: &[f32], b: &[f32]| -> Vec<f32> {
        (0..n).flat_map(|i| a[i * dim..(i + 1) * dim].iter().chain(&b[i * dim..(i + 1) * dim]).copied()).collect()
    };
    let asked: Vec<u32> = (0..2 * n as u32).map(|i| i % 2).collect();
    let right = refs.metrics(&interleave(&r0, &r1), dim, &asked);
    assert_eq!(right.per_class.iter().map(|c| c.samples).collect::<Vec<_>>(), [50, 50]);
    assert!(right.mean_class_swd.unwrap() < 1e-6, "{right:?}");
    let swapped = refs.metrics(&interleave(&r1, &r0), dim, &asked);
    for c in &swapped.per_class {
        assert!(c.swd.unwrap() > 3.0 * c.real_floor.unwrap(), "{c:?}");
    }
    assert_eq!(swapped.per_class[1].name, "inverted");
    // Unconditional data has no per-class references.
    data.classes = None;
    assert!(ClassReferences::new(&data, seed, &[50, 80]).unwrap().is_none());
}
