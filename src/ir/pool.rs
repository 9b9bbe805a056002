//! The CPU backend's one persistent thread pool. `run(tasks, f)` calls `f(0)`, ..., `f(tasks -
//! 1)` across the pool's threads and the caller's, and returns when all are done. The tasks are
//! dealt out in contiguous ranges, thread i (the caller is 0) first taking the tasks of range i
//! in order, so that consecutive calls cut alike keep the same data on the same thread (the
//! rows of a batch from layer to layer: BENCHMARKS.md on why that matters); a thread done with
//! its range takes tasks from the others'. Which thread runs a task still depends on timing, so
//! every fast path computes each output element in exactly one task, in an order fixed by the
//! shape: its bits never depend on the thread count or on timing (tests/cpu_fast.rs checks that
//! 1, 2 and 3 threads give the same bits).
//!
//! Idle workers spin briefly (the next kernel call of a step usually comes within microseconds),
//! then sleep on a condition variable. A second caller while the pool is busy (tests running in
//! parallel) runs its tasks on its own thread: same bits, no waiting.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it yields, and before it sleeps: the next kernel call of
/// a step usually comes within microseconds; yielding lets other threads of a busy machine run.
const SPIN: Duration = Duration::from_micros(30);
const YIELD: Duration = Duration::from_micros(300);

type TaskFn<'a> = dyn Fn(usize) + Sync + 'a;

/// The job being run: its task function (valid while its tasks are not all done).
struct Job {
    f: *const TaskFn<'static>,
}

struct Shared {
    /// epoch << 32 of the current job: a new value wakes the workers.
    ticket: AtomicU64,
    job: AtomicPtr<Job>,
    /// Per thread, (next << 32) | end of its range of the current job's tasks.
    ranges: Vec<AtomicU64>,
    done: AtomicUsize,
    /// Sleeping workers wait here for a new epoch (or shutdown, epoch u32::MAX).
    sleep: Mutex<u32>,
    wake: Condvar,
    sleepers: AtomicUsize,
}

pub struct Pool {
    threads: usize,
    shared: Arc<Shared>,
    submit: Mutex<()>,
    workers: Vec<JoinHandle<()>>,
}

fn epoch_of(t: u64) -> u32 {
    (t >> 32) as u32
}

impl Shared {
    /// Claims the next task of range r, if any is left.
    fn claim(&self, r: usize) -> Option<usize> {
        let range = &self.ranges[r];
        let mut v = range.load(Ordering::Acquire);
        loop {
            let (next, end) = (v >> 32, v & 0xffff_ffff);
            if next >= end {
                return None;
            }
            match range.compare_exchange_weak(v, v + (1 << 32), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(next as usize),
                Err(now) => v = now,
            }
        }
    }

    /// Runs tasks of the current job, its own range `me` first, until none is left.
    fn work(&self, me: usize) {
        let n = self.ranges.len();
        for r in (0..n).map(|i| (me + i) % n) {
            while let Some(index) = self.claim(r) {
                // SAFETY: the claim succeeded, so the job whose ranges were published (after its
                // Job, Release) has task `index` unfinished: its Job, on the caller's stack,
                // lives until all its tasks are done.
                let job = self.job.load(Ordering::Acquire);
                unsafe { (*(*job).f)(index) };
                self.done.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

impl Pool {
    /// A pool of `threads` threads in all, the caller's included (so `threads - 1` workers).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            ticket: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            ranges: (0..threads).map(|_| AtomicU64::new(0)).collect(),
            done: AtomicUsize::new(0),
            sleep: Mutex::new(0),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
        });
        let workers = (1..threads)
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("shadergan-cpu-{i}"))
                    .spawn(move || worker(&s, i))
                    .expect("spawning a CPU worker thread")
            })
            .collect();
        Pool { threads, shared, submit: Mutex::new(()), workers }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(i)` for every i < tasks, on the pool's threads and this one.
    pub fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if tasks == 0 {
            return;
        }
        let guard = if self.threads > 1 && tasks > 1 { self.submit.try_lock().ok() } else { None };
        let Some(_guard) = guard else {
            (0..tasks).for_each(f);
            return;
        };
        assert!(tasks < u32::MAX as usize, "too many tasks");
        let s = &*self.shared;
        // SAFETY: the lifetime is erased only for workers, which call `f` only for tasks of this
        // epoch, all finished before this function returns (done == tasks below).
        let f: &TaskFn<'static> = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &TaskFn<'static>>(f) };
        let mut job = Job { f };
        let epoch = epoch_of(s.ticket.load(Ordering::Relaxed)).wrapping_add(1) % (u32::MAX - 1);
        s.done.store(0, Ordering::Relaxed);
        s.job.store(&mut job, Ordering::Release);
        let n = s.ranges.len();
        for (r, range) in s.ranges.iter().enumerate() {
            let (lo, hi) = (r * tasks / n, (r + 1) * tasks / n);
            range.store(((lo as u64) << 32) | hi as u64, Ordering::Release);
        }
        s.ticket.store((epoch as u64) << 32, Ordering::Release);
        if s.sleepers.load(Ordering::Acquire) > 0 {
            let mut e = s.sleep.lock().unwrap_or_else(|p| p.into_inner());
            *e = epoch;
            s.wake.notify_all();
        }
        s.work(0);
        let start = Instant::now();
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < tasks {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && start.elapsed() > Duration::from_millis(1) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        // No worker touches `job` after the last task is done; it lives until here.
        let _ = &job;
    }
}

fn worker(s: &Shared, me: usize) {
    let mut seen = 0u32;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        let epoch = loop {
            let e = epoch_of(s.ticket.load(Ordering::Acquire));
            if e != seen {
                break e;
            }
            spins += 1;
            if spins.is_multiple_of(64) && start.elapsed() > SPIN && start.elapsed() < YIELD {
                std::thread::yield_now();
                continue;
            }
            if spins.is_multiple_of(256) && start.elapsed() > YIELD {
                // Sleep until a new epoch is announced.
                let mut guard = s.sleep.lock().unwrap_or_else(|p| p.into_inner());
                s.sleepers.fetch_add(1, Ordering::AcqRel);
                while epoch_of(s.ticket.load(Ordering::Acquire)) == seen && *guard != u32::MAX {
                    guard = s.wake.wait_timeout(guard, Duration::from_millis(50)).unwrap_or_else(|p| p.into_inner()).0;
                }
                s.sleepers.fetch_sub(1, Ordering::AcqRel);
                if *guard == u32::MAX {
                    return;
                }
                drop(guard);
                spins = 0;
                continue;
            }
            std::hint::spin_loop();
        };
        if epoch == u32::MAX {
            return;
        }
        seen = epoch;
        s.work(me);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        {
            let mut e = self.shared.sleep.lock().unwrap_or_else(|p| p.into_inner());
            *e = u32::MAX;
            self.shared.ticket.store((u32::MAX as u64) << 32, Ordering::Release);
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

static DEFAULT_THREADS: OnceLock<usize> = OnceLock::new();
static GLOBAL: OnceLock<Arc<Pool>> = OnceLock::new();

/// Sets the thread count of the shared pool (`--threads`); only before its first use. Returns
/// false when the pool already runs with another count.
pub fn set_default_threads(threads: usize) -> bool {
    let t = threads.max(1);
    DEFAULT_THREADS.set(t).is_ok() && GLOBAL.get().is_none_or(|p| p.threads == t)
}

/// The thread count the shared pool has or will have: `--threads`, else `SHADERGAN_THREADS`,
/// else the cores this process may use.
pub fn default_threads() -> usize {
    if let Some(&t) = DEFAULT_THREADS.get() {
        return t;
    }
    let env = std::env::var("SHADERGAN_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok());
    env.filter(|&t| t > 0).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The process's shared pool, started on first use.
pub fn global() -> Arc<Pool> {
    GLOBAL.get_or_init(|| Arc::new(Pool::new(default_threads()))).clone()
}

/// Splits `len` items into chunks of at least `min` (and at most `tasks_max` chunks): a split by
/// size alone, never by the thread count. Returns (chunks, chunk length).
pub fn chunks(len: usize, min: usize, tasks_max: usize) -> (usize, usize) {
    if len == 0 {
        return (0, 0);
    }
    let n = len.div_ceil(min.max(1)).clamp(1, tasks_max.max(1));
    let size = len.div_ceil(n);
    (len.div_ceil(size), size)
}
