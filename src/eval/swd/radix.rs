//! Sorting f32 by radix: an LSD radix sort on order-preserving u32 keys, which orders exactly as
//! `f32::total_cmp` (so as a comparison sort does; -0 before +0), three passes of 11 bits.

use std::cell::RefCell;

/// An f32's key: unsigned order of keys = `f32::total_cmp` order of values.
pub fn order_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

pub fn key_value(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7fff_ffff } else { !k })
}

const RADIX_BITS: u32 = 11;
const BUCKETS: usize = 1 << RADIX_BITS;

thread_local! {
    /// A thread's keys and the radix sort's scratch.
    static SORT: RefCell<(Vec<u32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The digit of `key` that pass `pass` sorts by.
#[inline(always)]
fn digit(key: u32, pass: usize) -> usize {
    ((key >> (pass as u32 * RADIX_BITS)) as usize) & (BUCKETS - 1)
}

/// Sorts the keys of `values` ascending into `keys`: their histograms as they are made, then LSD
/// radix, three passes of 11 bits (a pass whose digit is the same for every key is skipped),
/// `tmp` as scratch.
fn sort_keys(values: &[f32], keys: &mut Vec<u32>, tmp: &mut Vec<u32>) {
    let n = values.len();
    let mut hist = [[0u32; BUCKETS]; 3];
    keys.clear();
    keys.extend(values.iter().map(|&v| {
        let k = order_key(v);
        for (p, h) in hist.iter_mut().enumerate() {
            h[digit(k, p)] += 1;
        }
        k
    }));
    tmp.resize(n, 0);
    for (p, h) in hist.iter_mut().enumerate() {
        if n == 0 || h[digit(keys[0], p)] as usize == n {
            continue;
        }
        let mut sum = 0u32;
        for c in h.iter_mut() {
            (*c, sum) = (sum, sum + *c);
        }
        let dst = tmp.as_mut_slice();
        for &k in keys.iter() {
            let d = digit(k, p);
            // The offsets of digit d run from the keys below it up to those and its own count,
            // so each index is < n = dst.len().
            dst[h[d] as usize] = k;
            h[d] += 1;
        }
        std::mem::swap(keys, tmp);
    }
}

/// `f` of the keys of `values`, sorted (in the thread's scratch).
pub fn with_sorted_keys<T>(values: &[f32], f: impl FnOnce(&[u32]) -> T) -> T {
    SORT.with(|cell| {
        let (keys, tmp) = &mut *cell.borrow_mut();
        sort_keys(values, keys, tmp);
        f(keys)
    })
}

/// Sorts `values` as `sort_by(f32::total_cmp)` does (the same bits), by radix.
#[cfg(test)]
fn radix_sort_f32(values: &mut [f32]) {
    let sorted: Vec<f32> = with_sorted_keys(values, |keys| keys.iter().map(|&k| key_value(k)).collect());
    values.copy_from_slice(&sorted);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng;

    #[test]
    fn radix_sort_orders_as_total_cmp() {
        let mut state = 12345u32;
        let mut v: Vec<f32> = (0..100_000)
            .map(|i| {
                state = rng::hash32(state.wrapping_add(i));
                match i % 7 {
                    0 => f32::from_bits(state),
                    1 => 0.0,
                    2 => -0.0,
                    _ => (state as f32 / u32::MAX as f32 - 0.5) * 1e3,
                }
            })
            .filter(|x| !x.is_nan())
            .collect();
        v.extend([f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, -f32::MIN_POSITIVE, f32::MAX, f32::MIN]);
        let mut want = v.clone();
        want.sort_by(f32::total_cmp);
        radix_sort_f32(&mut v);
        assert!(v.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
        // Keys sharing their high digits (a pass skipped), one value, none.
        let mut small: Vec<f32> = (0..1000).map(|i| 1.0 + (999 - i) as f32 * 1e-7).collect();
        let mut want = small.clone();
        want.sort_by(f32::total_cmp);
        radix_sort_f32(&mut small);
        assert_eq!(small, want);
        let (mut one, mut none) = (vec![3.5f32], Vec::<f32>::new());
        radix_sort_f32(&mut one);
        radix_sort_f32(&mut none);
        assert_eq!(one, [3.5]);
    }
}
