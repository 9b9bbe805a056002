//! A CPU training step allocates nothing once the first steps have run (every fast path keeps its
//! scratch per thread): the MLP and the DCGAN, with the pool's threads, counted by a global
//! allocator that sees every thread.

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

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
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
        arch: Arch::Dcgan,
        g_channels: 32,
        d_channels: 32,
        batch_size: Some(8),
        seed: 3,
        ..Default::default()
    };
    for opts in [mlp, dcgan] {
        let cfg = opts.resolve(&data).unwrap();
        let p = GanProgram::build(&cfg, data.n, matches!(data.values, DataValues::U8(_)));
        let exec = CpuExecutor::new(&p.bufs, Some(data.clone())).threads(2);
        let mut t = GanTrainer::new(cfg.clone(), p, Box::new(exec)).unwrap();
        t.train(3).unwrap();
        ALLOCS.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        t.train(4).unwrap();
        COUNTING.store(false, Ordering::Relaxed);
        let allocs = ALLOCS.load(Ordering::Relaxed);
        assert_eq!(allocs, 0, "{:?}: {allocs} allocations in 4 training steps", cfg.model.arch);
    }
}
