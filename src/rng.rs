//! Counter-based randomness shared bit for bit by both backends (the WGSL copies live in
//! `shaders/common.wgsl` and `shaders/random.wgsl`).
//!
//! One seed decides everything: the initial weights, the noise of every step and the batch order.
//! Nothing here holds state; each value is a pure function of (seed, purpose, indices), so a
//! resumed run needs only the step number to continue the same random sequence.

/// What a Philox counter's last word means: keeps the draws for different purposes apart.
pub const PURPOSE_NOISE: u32 = 0;
pub const PURPOSE_INIT: u32 = 1;
pub const PURPOSE_SAMPLES: u32 = 2;
/// The points of the toy data sets (`crate::toy`).
pub const PURPOSE_TOY: u32 = 3;
/// The latents and the real-image order of image-quality evaluations.
pub const PURPOSE_EVAL: u32 = 4;
/// Spectral normalisation's initial u and v (`nn::spectral`).
pub const PURPOSE_SPECTRAL: u32 = 5;
/// DiffAugment's per-image draws (`nn::augment`, augment.wgsl).
pub const PURPOSE_AUGMENT: u32 = 6;

/// The class labels of fake batches (`random_labels` in random.wgsl).
pub const PURPOSE_LABELS: u32 = 7;

/// Noise stream of the D step and of the G step within one training step.
pub const STREAM_D: u32 = 0;
pub const STREAM_G: u32 = 1;

/// Splits a 64-bit seed into Philox's two key words.
pub fn seed_words(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for _ in 0..10 {
        let p0 = 0xD251_1F53u64 * c[0] as u64;
        let p1 = 0xCD9E_8D57u64 * c[2] as u64;
        c = [(p1 >> 32) as u32 ^ c[1] ^ k[0], p1 as u32, (p0 >> 32) as u32 ^ c[3] ^ k[1], p0 as u32];
        k = [k[0].wrapping_add(0x9E37_79B9), k[1].wrapping_add(0xBB67_AE85)];
    }
    c
}

/// lowbias32 integer hash (same as `hash32` in common.wgsl).
pub fn hash32(v: u32) -> u32 {
    let mut x = v;
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

const INV_2_24: f32 = 5.960_464_5e-8;

/// Uniform in [0, 1) from the top 24 bits of a word.
pub fn unit_f32(w: u32) -> f32 {
    (w >> 8) as f32 * INV_2_24
}

/// Two standard normals from two words by Box-Muller (same formula as `noise_normal`).
pub fn box_muller(wa: u32, wb: u32) -> (f32, f32) {
    let u1 = ((wa >> 8) + 1) as f32 * INV_2_24;
    let u2 = (wb >> 8) as f32 * INV_2_24;
    let r = (-2.0 * u1.ln()).sqrt();
    let theta = std::f32::consts::TAU * u2;
    (r * theta.cos(), r * theta.sin())
}

/// Fills `out` with normals: value i comes from counter (i / 4, a, b, c) under `key`.
pub fn normals(key: [u32; 2], a: u32, b: u32, c: u32, out: &mut [f32]) {
    normals_from(key, a, b, c, 0, out)
}

/// `normals` for the values from 4 `first_quad` on: value i of `out` is value 4 first_quad + i
/// of the whole (so a long fill can be cut into pieces at multiples of 4, on any threads).
pub fn normals_from(key: [u32; 2], a: u32, b: u32, c: u32, first_quad: usize, out: &mut [f32]) {
    for (q, chunk) in out.chunks_mut(4).enumerate() {
        let w = philox4x32([(first_quad + q) as u32, a, b, c], key);
        let (z0, z1) = box_muller(w[0], w[1]);
        let (z2, z3) = box_muller(w[2], w[3]);
        for (o, z) in chunk.iter_mut().zip([z0, z1, z2, z3]) {
            *o = z;
        }
    }
}

/// A class in [0, classes) from a random word: the high word of w classes (Lemire's
/// multiply-shift, as `mul_wide(w, classes).x` in WGSL; uniform up to a bias below
/// classes / 2^32).
pub fn class_from_word(w: u32, classes: u32) -> u32 {
    ((w as u64 * classes as u64) >> 32) as u32
}

/// The class of group `g` (consecutive samples sharing a label) in label stream `stream` of
/// training step `step`: word g % 4 of Philox counter (g / 4, step, stream, PURPOSE_LABELS)
/// (`random_labels` in random.wgsl).
pub fn random_class(key: [u32; 2], step: u32, stream: u32, g: u32, classes: u32) -> u32 {
    let w = philox4x32([g / 4, step, stream, PURPOSE_LABELS], key);
    class_from_word(w[(g % 4) as usize], classes)
}

/// The keyed Feistel permutation of [0, n) that orders one epoch's samples (`permute` in
/// random.wgsl): a bijection, so every sample is seen once per epoch.
#[derive(Clone, Copy, Debug)]
pub struct EpochPermutation {
    n: u32,
    half_bits: u32,
    keys: [u32; 4],
}

impl EpochPermutation {
    pub fn new(seed: u64, epoch: u32, n: u32) -> Self {
        let [lo, hi] = seed_words(seed);
        let keys = std::array::from_fn(|r| {
            hash32(lo ^ hash32(hi ^ hash32(epoch ^ hash32((r as u32).wrapping_add(0x9E37_79B9)))))
        });
        EpochPermutation { n, half_bits: feistel_half_bits(n), keys }
    }

    pub fn apply(&self, q: u32) -> u32 {
        debug_assert!(q < self.n);
        let mask = (1u32 << self.half_bits) - 1;
        let mut x = q;
        loop {
            let mut left = x >> self.half_bits;
            let mut right = x & mask;
            for k in self.keys {
                let next = left ^ (hash32(right ^ k) & mask);
                left = right;
                right = next;
            }
            x = (left << self.half_bits) | right;
            if x < self.n {
                return x;
            }
        }
    }
}

/// Half the bit width of the Feistel domain: the smallest h >= 1 with 4^h >= n.
pub fn feistel_half_bits(n: u32) -> u32 {
    let bits = 32 - n.saturating_sub(1).leading_zeros();
    bits.div_ceil(2).max(1)
}

/// The key of one dropout mask: (seed, step, salt), salt = pass * 256 + layer (`dropout` in
/// random.wgsl).
pub fn dropout_key(seed: u64, step: u32, salt: u32) -> u32 {
    let [lo, hi] = seed_words(seed);
    hash32(lo ^ hash32(hi ^ hash32(step ^ hash32(salt.wrapping_add(0x85EB_CA6B)))))
}

/// Whether element `i` survives dropout at `rate` under mask `key`.
pub fn dropout_keep(key: u32, i: u32, rate: f32) -> bool {
    unit_f32(hash32(i ^ key)) >= rate
}

/// Which data set row batch row `r` of training step `step` reads.
pub fn batch_row_source(seed: u64, step: u32, r: u32, rows: u32, n: u32) -> u32 {
    let steps_per_epoch = n / rows;
    let epoch = step / steps_per_epoch;
    let q = (step % steps_per_epoch) * rows + r;
    EpochPermutation::new(seed, epoch, n).apply(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_random123_known_answer() {
        // Known-answer vectors from Random123's kat_vectors for philox4x32_10.
        assert_eq!(philox4x32([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(philox4x32([u32::MAX; 4], [u32::MAX; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
        assert_eq!(
            philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn permutation_is_a_bijection() {
        for n in [1u32, 2, 3, 7, 63, 64, 65, 1000, 4097] {
            let p = EpochPermutation::new(7, 3, n);
            let mut seen = vec![false; n as usize];
            for q in 0..n {
                let x = p.apply(q) as usize;
                assert!(!seen[x], "n={n}: {x} twice");
                seen[x] = true;
            }
        }
    }

    #[test]
    fn epochs_differ() {
        let a: Vec<u32> = (0..100).map(|q| EpochPermutation::new(1, 0, 100).apply(q)).collect();
        let b: Vec<u32> = (0..100).map(|q| EpochPermutation::new(1, 1, 100).apply(q)).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn normals_have_unit_moments() {
        let mut z = vec![0f32; 100_000];
        normals(seed_words(42), 0, 0, 0, &mut z);
        let mean = z.iter().map(|&v| v as f64).sum::<f64>() / z.len() as f64;
        let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / z.len() as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
        assert!(z.iter().all(|v| v.is_finite()));
    }
}
