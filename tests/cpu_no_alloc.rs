//! A CPU training step allocates nothing once the first steps have run (every fast path keeps its
//! scratch per thread): the MLP and the DCGAN, on one thread (exactly nothing) and with the
//! pool's two (at most a few one-off growths, never one per step), counted by a global allocator
//! that sees every thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use shadergan::backend::cpu::CpuExecutor;
use shadergan::config::model::Arch;
use shadergan::data::{DataValues, Dataset};
use shadergan::programs::gan::GanProgram;
use shadergan::{GanTrainer, TrainOptions, Trainer};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// The sizes of the first allocations counted, for the failure message.
static SIZES: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

fn count(bytes: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        let i = ALLOCS.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = SIZES.get(i) {
            slot.store(bytes, Ordering::Relaxed);
        }
    }
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn cpu_training_steps_allocate_nothing_after_the_first() {
    let (n, size) = (64usize, 28usize);
    let bytes: Vec<u8> = (0..n * size * size).map(|i| (i * 37 % 251) as u8).collect();
    let mut data = Dataset::from_u8(n, size * size, bytes).unwrap();
    data.sample_shape = vec![size, size];
    let data = Arc::new(data);
    let mlp = TrainOptions { batch_size: Some(32), seed: 3, ..Default::default() };
    let dcgan = TrainOptions {
        arch: Some(Arch::Dcgan),
        g_channels: 32,
        d_channels: 32,
        batch_size: Some(8),
        seed: 3,
        ..Default::default()
    };
    for (opts, threads) in [(&mlp, 1), (&dcgan, 1), (&mlp, 2), (&dcgan, 2)] {
        let cfg = opts.clone().resolve(&data).unwrap();
        let p = GanProgram::build(&cfg, data.n, matches!(data.values, DataValues::U8(_)));
        let exec = CpuExecutor::new(&p.bufs, Some(data.clone())).threads(threads);
        let mut t = GanTrainer::new(cfg.clone(), p, Box::new(exec)).unwrap();
        t.train(4).unwrap();
        ALLOCS.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        t.train(12).unwrap();
        COUNTING.store(false, Ordering::Relaxed);
        let allocs = ALLOCS.load(Ordering::Relaxed);
        let sizes: Vec<usize> = SIZES.iter().take(allocs).map(|s| s.load(Ordering::Relaxed)).collect();
        // One thread runs every task itself, the same ones every step: nothing may allocate.
        // With two, a pool thread can first meet a scratch site late (it stole a task it had not
        // run before) and grow its vector once (kernels/scratch.rs): a few, never one per step.
        let most = if threads == 1 { 0 } else { 3 };
        let what =
            format!("{:?}, {threads} threads: {allocs} allocations in 12 steps, bytes {sizes:?}", cfg.model.arch);
        assert!(allocs <= most, "{what}");
    }
}
