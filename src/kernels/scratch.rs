//! Per-thread scratch that stops growing once the first training steps have run.
//!
//! The fast paths keep their scratch vectors per thread (`thread_local!`), grown on demand. The
//! pool deals tasks to threads unevenly from step to step (stealing), so a thread can meet a
//! larger task at a site long after the first steps and grow its vector then: an allocation in
//! the middle of training. Each site therefore keeps a [`HighWater`] mark shared by every
//! thread: any growth goes straight to the largest length the site has needed on any thread,
//! and a thread whose vector is below the mark catches up on its next visit. Once every thread
//! has visited each site after its largest task ran once (the first steps), nothing grows.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest length one scratch site has needed, over every thread.
#[derive(Default)]
pub struct HighWater(AtomicUsize);

impl HighWater {
    pub const fn new() -> Self {
        HighWater(AtomicUsize::new(0))
    }

    /// The length to hold: the mark, raised to `len` first if `len` is above it.
    fn want(&self, len: usize) -> usize {
        let mark = self.0.load(Ordering::Relaxed);
        if len > mark {
            self.0.fetch_max(len, Ordering::Relaxed);
            len
        } else {
            mark
        }
    }

    /// The first `len` values of `v`, which holds at least the mark (new values `fill`; the
    /// contents are otherwise unspecified).
    pub fn at_least<'a, T: Clone>(&self, v: &'a mut Vec<T>, len: usize, fill: T) -> &'a mut [T] {
        let want = self.want(len);
        if v.len() < want {
            v.resize(want, fill);
        }
        &mut v[..len]
    }

    /// `v` emptied, with room for the mark (at least `len`): pushes up to it allocate nothing.
    pub fn emptied<'a, T>(&self, v: &'a mut Vec<T>, len: usize) -> &'a mut Vec<T> {
        let want = self.want(len);
        v.clear();
        v.reserve(want);
        v
    }

    /// `v` emptied and refilled with `len` copies of `fill`, with room for the mark.
    pub fn refill<'a, T: Clone>(&self, v: &'a mut Vec<T>, len: usize, fill: T) -> &'a mut [T] {
        let v = self.emptied(v, len);
        v.resize(len, fill);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_grows_every_thread_to_its_largest_need() {
        let mark = HighWater::new();
        let (mut small, mut big) = (Vec::<f32>::new(), Vec::<f32>::new());
        assert_eq!(mark.at_least(&mut small, 3, 0.0).len(), 3);
        assert_eq!(mark.at_least(&mut big, 10, 1.0).len(), 10);
        // The thread that only ever needed 3 catches up on its next visit...
        assert_eq!(mark.at_least(&mut small, 3, 0.0).len(), 3);
        assert_eq!(small.len(), 10);
        let ptr = small.as_ptr();
        // ...so the larger task later costs it nothing.
        assert_eq!(mark.at_least(&mut small, 10, 0.0).len(), 10);
        assert_eq!(small.as_ptr(), ptr);
        let mut pushed = Vec::<usize>::new();
        assert!(mark.emptied(&mut pushed, 2).capacity() >= 10);
        assert_eq!(mark.refill(&mut pushed, 4, 7), &[7; 4]);
    }
}
