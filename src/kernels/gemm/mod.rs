//! The CPU fast paths' sgemm: C = A B (+ bias, + the old C, then an activation), m x n x k, on
//! the pool. The output is cut into one band of rows (or of columns) per thread; each task
//! packs its own A rows into panels of MR rows by k, then for each panel of B (k by NR columns:
//! read in place when B is row-major, else packed into the task's scratch) runs the
//! micro-kernel over the whole of k and applies the epilogue as it stores (see `Split` for why
//! nothing is packed for another thread).
//!
//! The order of every sum is fixed by the shape alone: each output element is one chain of fused
//! multiply-adds over k = 0, 1, ..., k - 1 starting from 0, whichever kernel (AVX-512, AVX2 or
//! the portable loop) or task computes it; only when the output is too small to split and k is
//! long (a weight gradient over a large batch) is k cut into chunks of `K_CHUNK`, whose partial
//! sums are then added in chunk order. So the bits never depend on the thread count or on which
//! thread ran a task; then the epilogue adds the bias, then the old value (accumulate), then
//! applies the activation (the twins' `activate`, but for the sigmoid's exponential, `exp_neg`:
//! no library call, so that it vectorizes; within a few ulp).
//!
//! Here: the operands, the epilogue, the split into tasks. `micro.rs`: the micro-kernels;
//! `pack.rs`: packing panels (and the blocked transpose); `store.rs`: a tile through the
//! epilogue; `gather.rs`: the implicit GEMMs of the convolutions, which read an operand in place.

use crate::kernels::scratch::HighWater;
use std::cell::RefCell;

use crate::ir::Pool;
use crate::kernels::activation::{activate_fast, sigmoid_fast};

mod gather;
mod micro;
mod pack;
mod store;

pub use gather::{gemm_gather, gemm_gather_b, GatherA, GatherB, ScatterOut};
use micro::*;
use pack::*;
pub use pack::{pack_b, transpose};
use store::*;

/// Rows of a packed A panel and of the micro-kernel's tile.
pub const MR: usize = 8;
/// Columns of a packed B panel and of the micro-kernel's tile.
pub const NR: usize = 32;
/// Chunk of k when k is split (see the module header).
pub const K_CHUNK: usize = 1024;
/// Block of k for the kernels without the fused AVX-512 path: one B panel's block (KC NR
/// values, 16 KiB) stays in L1 while every A panel of the task runs over it, the tiles' sums
/// carried in memory from block to block (the same chains, so the same bits).
const KC: usize = 128;
/// Below this many multiply-adds a call runs the plain loop on the caller's thread.
const SMALL: usize = 1 << 15;

/// A matrix view: element (i, j) at data[off + i rs + j cs].
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    pub fn new(data: &'a [f32], off: usize, rs: usize, cs: usize) -> Self {
        Mat { data, off, rs, cs }
    }

    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            let last = self.off + (rows - 1) * self.rs + (cols - 1) * self.cs;
            assert!(last < self.data.len(), "gemm: {what} reaches {last} of {}", self.data.len());
        }
    }

    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[self.off + i * self.rs + j * self.cs]
    }
}

/// Fills the packed B panel of columns j0..j0 + NR (all k rows): dst[kk NR + jj], zero past n.
pub type PackFn<'a> = &'a (dyn Fn(usize, &mut [f32]) + Sync);

/// Where A comes from: a strided matrix, or a packer that builds its panels itself.
#[derive(Clone, Copy)]
pub enum ASrc<'a> {
    Mat(Mat<'a>),
    Pack(PackAFn<'a>),
}

/// Fills the packed A panel of rows i0..i0 + MR (all k): dst[kk MR + ii], 0 past m.
pub type PackAFn<'a> = &'a (dyn Fn(usize, &mut [f32]) + Sync);

/// Where B comes from: a strided matrix, or a packer that builds panels itself (im2col).
#[derive(Clone, Copy)]
pub enum BSrc<'a> {
    Mat(Mat<'a>),
    Pack(PackFn<'a>),
}

/// A bias added before the activation: one per column, or one per row.
#[derive(Clone, Copy)]
pub enum Bias<'a> {
    None,
    Col(&'a [f32]),
    Row(&'a [f32]),
}

/// What happens to a sum as it is stored: v = sum (+ bias); v = old + v if accumulate; act(v).
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    pub bias: Bias<'a>,
    pub accumulate: bool,
    pub act: u32,
    pub slope: f32,
}

impl Epilogue<'_> {
    pub const PLAIN: Epilogue<'static> = Epilogue { bias: Bias::None, accumulate: false, act: 0, slope: 0.0 };

    #[inline(always)]
    fn apply(&self, v: f32, i: usize, j: usize, old: f32) -> f32 {
        let v = match self.bias {
            Bias::None => v,
            Bias::Col(b) => v + b[j],
            Bias::Row(b) => v + b[i],
        };
        let v = if self.accumulate { old + v } else { v };
        activate_fast(v, self.act, self.slope)
    }
}

/// The output: element (i, j) at i rs + col_off[j] (or + j) of `data`.
pub struct Out<'a> {
    pub data: &'a mut [f32],
    pub rs: usize,
    /// Column offsets, for outputs that are not row-major (a convolution's NCHW).
    pub col_off: Option<&'a [usize]>,
}

#[derive(Clone, Copy)]
struct OutPtr {
    ptr: *mut f32,
    rs: usize,
}
// SAFETY: tasks write disjoint elements of the output through it.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

#[derive(Clone, Copy)]
struct ConstPtr(*const f32);
unsafe impl Send for ConstPtr {}
unsafe impl Sync for ConstPtr {}

impl ConstPtr {
    // A method, so that closures capture the wrapper (Sync), not its raw pointer.
    fn get(self) -> *const f32 {
        self.0
    }
}

impl OutPtr {
    fn get(self) -> *mut f32 {
        self.ptr
    }
}

thread_local! {
    static PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PARTIAL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

// Their high-water marks over every thread (kernels::scratch).
pub(super) static PACK_MARK: HighWater = HighWater::new();
static PARTIAL_MARK: HighWater = HighWater::new();
pub(super) static TASK_PACK_MARK: HighWater = HighWater::new();

/// Which micro-kernel this CPU runs (all give the same bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

/// 0: detect; else 1 + the Isa forced by [`force_isa`] (tests).
static FORCED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Makes every later call use this kernel (None: the CPU's best), so that tests can check that
/// all kernels give the same bits. The CPU must have the instructions.
pub fn force_isa(isa: Option<Isa>) {
    let v = match isa {
        None => 0,
        Some(Isa::Avx512) => 1,
        Some(Isa::Avx2) => 2,
        Some(Isa::Portable) => 3,
    };
    FORCED.store(v, std::sync::atomic::Ordering::Relaxed);
}

/// The best kernel this CPU has (or the forced one).
pub fn isa() -> Isa {
    match FORCED.load(std::sync::atomic::Ordering::Relaxed) {
        1 => return Isa::Avx512,
        2 => return Isa::Avx2,
        3 => return Isa::Portable,
        _ => {}
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// C = epilogue(A B) for A m x k, B k x n. See the module header.
#[allow(clippy::too_many_arguments)]
pub fn gemm(pool: &Pool, m: usize, n: usize, k: usize, a: Mat, b: BSrc, out: Out, epi: Epilogue) {
    gemm_a(pool, m, n, k, ASrc::Mat(a), b, out, epi)
}

/// `gemm` with A from a matrix or a packer.
#[allow(clippy::too_many_arguments)]
pub fn gemm_a(pool: &Pool, m: usize, n: usize, k: usize, a: ASrc, b: BSrc, out: Out, epi: Epilogue) {
    if m == 0 || n == 0 {
        return;
    }
    if let ASrc::Mat(a) = &a {
        a.check(m, k, "A");
    }
    if let BSrc::Mat(b) = &b {
        b.check(k, n, "B");
    }
    let max_col = match out.col_off {
        Some(offs) => {
            assert!(offs.len() >= n, "gemm: {} column offsets for {n} columns", offs.len());
            offs[..n].iter().copied().max().unwrap_or(0)
        }
        None => n - 1,
    };
    assert!((m - 1) * out.rs + max_col < out.data.len(), "gemm: the output is too short");
    match epi.bias {
        Bias::Col(bias) => assert!(bias.len() >= n),
        Bias::Row(bias) => assert!(bias.len() >= m),
        Bias::None => {}
    }
    let col_off = out.col_off;
    let o = OutPtr { ptr: out.data.as_mut_ptr(), rs: out.rs };
    if k == 0 {
        let none = Mat::new(&[], 0, 0, 0);
        return small(m, n, 0, &none, &none, o, col_off, &epi);
    }
    if m * n * k <= SMALL {
        if let (ASrc::Mat(am), BSrc::Mat(bm)) = (a, b) {
            return small(m, n, k, &am, &bm, o, col_off, &epi);
        }
    }
    let (mp, np) = (m.div_ceil(MR), n.div_ceil(NR));
    let kernel = kernel_for(isa());
    if mp * np < 4 && k >= 4 * K_CHUNK {
        return PACK.with(|cell| {
            let need = (mp * MR + np * NR) * k;
            let mut held = cell.borrow_mut();
            let pack = PACK_MARK.at_least(&mut held, need, 0.0);
            let (pa, pb) = pack.split_at_mut(mp * MR * k);
            pack_all(pool, m, n, k, &a, &b, pa, pb);
            let (pa, pb) = (ConstPtr(pa.as_ptr()), ConstPtr(pb.as_ptr()));
            let panel = |q: usize| panel_of(&b, pb, q, n, k);
            split_k(pool, m, n, k, pa, &panel, o, col_off, &epi, kernel);
        });
    }
    // One task per thread, each packing what it reads into its own scratch, so that no thread
    // reads panels the other just wrote (see `Split`). Each element is still one chain over k,
    // so how the output is cut into tasks does not change a bit.
    let threads = pool.threads().max(1);
    let split = if np >= 2 && (matches!(b, BSrc::Pack(_)) || b_packs_much_more(&b, m, n)) || mp < 2 {
        Split::Cols
    } else {
        Split::Rows
    };
    let (parts, tasks) = match split {
        Split::Rows => (mp, mp.min(threads)),
        Split::Cols => (np, np.min(threads)),
    };
    let task = Task { m, n, k, a: &a, b: &b, o, col_off, epi: &epi, kernel };
    pool.run(tasks, &|t| {
        let range = t * parts / tasks..(t + 1) * parts / tasks;
        match split {
            Split::Rows => task.run(range, 0..np),
            Split::Cols => task.run(0..mp, range),
        }
    });
}

/// Whether packing B (k n values, when it is not read in place) costs so much more than packing
/// A (m k) that each task should pack only its own columns of B, though every task then packs all
/// of A (a short, wide layer: G's first linear layer, m = batch, k = noise, n = 6,272).
fn b_packs_much_more(b: &BSrc, m: usize, n: usize) -> bool {
    let b_in_place = matches!(b, BSrc::Mat(bm) if bm.cs == 1);
    !b_in_place && n > 8 * m
}

/// How `gemm` cuts its output between the threads: into bands of rows (each task packs its own
/// rows of A and every panel of B, or reads B in place) or of columns (its own panels of B, every
/// row of A). Rows keep a batch's rows on one thread from layer to layer; columns suit a B that
/// is built while packing (im2col), which is then built once. Threads that read panels another
/// thread has just written run at up to half speed on some machines (BENCHMARKS.md, the
/// two-thread modes); packing what a task reads avoids it.
#[derive(Clone, Copy)]
enum Split {
    Rows,
    Cols,
}

thread_local! {
    /// A task's packed A rows and its current B panel.
    static TASK_PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A task's tiles of sums while k runs in blocks (`Block::run_blocked`).
    static TILES: RefCell<Vec<[[f32; NR]; MR]>> = const { RefCell::new(Vec::new()) };
}
static TILES_MARK: HighWater = HighWater::new();

/// What every task of one `gemm` call shares.
struct Task<'a> {
    m: usize,
    n: usize,
    k: usize,
    a: &'a ASrc<'a>,
    b: &'a BSrc<'a>,
    o: OutPtr,
    col_off: Option<&'a [usize]>,
    epi: &'a Epilogue<'a>,
    kernel: Kernel,
}

impl Task<'_> {
    /// Output panels ps x qs: packs A's panels ps, then for each panel q of B (read in place, or
    /// packed) the tiles of every p.
    fn run(&self, ps: std::ops::Range<usize>, qs: std::ops::Range<usize>) {
        if ps.is_empty() || qs.is_empty() {
            return;
        }
        let (m, n, k) = (self.m, self.n, self.k);
        TASK_PACK.with(|cell| {
            let na = ps.len() * MR * k;
            let mut held = cell.borrow_mut();
            let buf = TASK_PACK_MARK.at_least(&mut held, na + NR * k, 0.0);
            let (pa, pb) = buf.split_at_mut(na);
            for (p, dst) in ps.clone().zip(pa.chunks_mut(MR * k)) {
                fill_a(self.a, p * MR, m, k, dst);
            }
            for q in qs {
                let (bp, ldb) = direct(self.b, q, n).unwrap_or_else(|| {
                    let dst = &mut pb[..NR * k];
                    match self.b {
                        BSrc::Mat(bm) => pack_b(bm, q * NR, n, k, dst),
                        BSrc::Pack(f) => f(q * NR, dst),
                    }
                    (dst.as_ptr(), NR)
                });
                let block = Block {
                    ps: ps.clone(),
                    p0: ps.start,
                    q,
                    k,
                    pa: pa.as_ptr(),
                    bp,
                    ldb,
                    m,
                    n,
                    o: self.o,
                    col_off: self.col_off,
                    epi: self.epi,
                    kernel: self.kernel,
                };
                block.dispatch();
            }
        });
    }
}

/// Panels ps of A (packed from p0 on at pa) against one panel q of B (at bp, row stride ldb).
struct Block<'a> {
    ps: std::ops::Range<usize>,
    p0: usize,
    q: usize,
    k: usize,
    pa: *const f32,
    bp: *const f32,
    ldb: usize,
    m: usize,
    n: usize,
    o: OutPtr,
    col_off: Option<&'a [usize]>,
    epi: &'a Epilogue<'a>,
    kernel: Kernel,
}

impl Block<'_> {
    fn dispatch(&self) {
        #[cfg(target_arch = "x86_64")]
        if isa() == Isa::Avx512 {
            // SAFETY: the CPU has AVX-512F; the output was checked in `gemm`.
            if self.contiguous() {
                return unsafe { self.run_fused_avx512() };
            }
            return unsafe { self.run_avx512() };
        }
        if self.k > KC {
            return self.run_blocked();
        }
        self.run()
    }

    /// k in blocks of KC: for each block, every A panel against the block of the B panel (in
    /// L1 by then), each tile's sums carried to the next block; then the tiles are stored.
    fn run_blocked(&self) {
        let kernel = kernel_acc_for(isa());
        TILES.with(|cell| {
            let mut held = cell.borrow_mut();
            let tiles = TILES_MARK.at_least(&mut held, self.ps.len(), [[0f32; NR]; MR]);
            tiles.iter_mut().for_each(|t| *t = [[0f32; NR]; MR]);
            for k0 in (0..self.k).step_by(KC) {
                let kc = (self.k - k0).min(KC);
                for (tile, p) in tiles.iter_mut().zip(self.ps.clone()) {
                    // SAFETY: rows k0..k0 + kc of panel p (k MR values) and of panel q in B.
                    unsafe { kernel(kc, self.a_panel(p).add(k0 * MR), self.bp.add(k0 * self.ldb), self.ldb, tile) };
                }
            }
            for (tile, p) in tiles.iter().zip(self.ps.clone()) {
                store_tile(tile, p * MR, self.q * NR, self.m, self.n, self.o, self.col_off, self.epi);
            }
        });
    }

    /// Whether the panel's columns lie side by side in each output row (always without column
    /// offsets; with them, when the panel does not straddle two of a convolution's images).
    fn contiguous(&self) -> bool {
        let (j0, cols) = (self.q * NR, (self.n - self.q * NR).min(NR));
        self.col_off.is_none_or(|o| o[j0 + cols - 1] == o[j0] + cols - 1)
    }

    /// A panel p's packed values.
    fn a_panel(&self, p: usize) -> *const f32 {
        // SAFETY: panels p0..ps.end were packed at pa, k MR values each.
        unsafe { self.pa.add((p - self.p0) * MR * self.k) }
    }

    /// With AVX-512 and the panel's columns side by side in the output: the micro-kernel stores
    /// through the epilogue itself.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_fused_avx512(&self) {
        let act = self.epi.act;
        let (j0, cols) = (self.q * NR, (self.n - self.q * NR).min(NR));
        let at = self.col_off.map_or(j0, |o| o[j0]);
        for p in self.ps.clone() {
            let (i0, rows) = (p * MR, (self.m - p * MR).min(MR));
            let c = self.o.ptr.add(i0 * self.o.rs + at);
            kernel_avx512_fused(self.k, self.a_panel(p), self.bp, self.ldb, c, self.o.rs, rows, cols, i0, j0, self.epi);
            if act > 2 {
                for i in 0..rows {
                    let row = std::slice::from_raw_parts_mut(c.add(i * self.o.rs), cols);
                    if act == 3 {
                        // The sigmoid's own loop, so that it vectorizes (`exp_neg` has no call).
                        row.iter_mut().for_each(|v| *v = sigmoid_fast(*v));
                    } else {
                        row.iter_mut().for_each(|v| *v = activate_fast(*v, act, self.epi.slope));
                    }
                }
            }
        }
    }

    #[inline(always)]
    fn run(&self) {
        for p in self.ps.clone() {
            let mut acc = [[0f32; NR]; MR];
            // SAFETY: panel p lies inside the packed A buffer (k MR values), panel q in B.
            unsafe { (self.kernel)(self.k, self.a_panel(p), self.bp, self.ldb, &mut acc) };
            store_tile(&acc, p * MR, self.q * NR, self.m, self.n, self.o, self.col_off, self.epi);
        }
    }

    /// `run` with the epilogue compiled for AVX-512.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_avx512(&self) {
        self.run()
    }
}

/// Whether B's full panels are read where they lie (row-major B): no packed copy.
fn direct(b: &BSrc, q: usize, n: usize) -> Option<(*const f32, usize)> {
    match b {
        BSrc::Mat(bm) if bm.cs == 1 && (q + 1) * NR <= n => {
            // SAFETY: columns q NR.. + NR of rows < k lie inside B (checked in `gemm`).
            Some((unsafe { bm.data.as_ptr().add(bm.off + q * NR) }, bm.rs))
        }
        _ => None,
    }
}

/// B panel q: (its first element, its row stride).
fn panel_of(b: &BSrc, pb: ConstPtr, q: usize, n: usize, k: usize) -> (*const f32, usize) {
    // SAFETY: panel q of the packed buffer (k NR values) when it was packed.
    direct(b, q, n).unwrap_or_else(|| (unsafe { pb.get().add(q * NR * k) }, NR))
}

/// The plain loop for small products (same chains of fused multiply-adds), compiled with FMA
/// instructions where the CPU has them (else `mul_add` is a library call).
#[allow(clippy::too_many_arguments)]
fn small(m: usize, n: usize, k: usize, a: &Mat, b: &Mat, o: OutPtr, col_off: Option<&[usize]>, epi: &Epilogue) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn with_fma(
            m: usize,
            n: usize,
            k: usize,
            a: &Mat,
            b: &Mat,
            o: OutPtr,
            c: Option<&[usize]>,
            e: &Epilogue,
        ) {
            small_loop(m, n, k, a, b, o, c, e)
        }
        // SAFETY: the CPU has FMA (checked above).
        return unsafe { with_fma(m, n, k, a, b, o, col_off, epi) };
    }
    small_loop(m, n, k, a, b, o, col_off, epi)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn small_loop(m: usize, n: usize, k: usize, a: &Mat, b: &Mat, o: OutPtr, col_off: Option<&[usize]>, epi: &Epilogue) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f32;
            for kk in 0..k {
                acc = fma(a.at(i, kk), b.at(kk, j), acc);
            }
            let idx = i * o.rs + col_off.map_or(j, |c| c[j]);
            // SAFETY: checked against the output's length in `gemm`.
            unsafe {
                let p = o.ptr.add(idx);
                *p = epi.apply(acc, i, j, *p);
            }
        }
    }
}

/// a b + c rounded once.
#[inline(always)]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

/// k cut into chunks: partial products per chunk, added in chunk order, then the epilogue.
#[allow(clippy::too_many_arguments)]
fn split_k(
    pool: &Pool,
    m: usize,
    n: usize,
    k: usize,
    pa: ConstPtr,
    panel: &(dyn Fn(usize) -> (*const f32, usize) + Sync),
    o: OutPtr,
    col_off: Option<&[usize]>,
    epi: &Epilogue,
    kernel: Kernel,
) {
    let (mp, np) = (m.div_ceil(MR), n.div_ceil(NR));
    let chunks = k.div_ceil(K_CHUNK);
    let tile = MR * NR;
    PARTIAL.with(|cell| {
        let need = chunks * mp * np * tile;
        let mut held = cell.borrow_mut();
        let part = PARTIAL_MARK.at_least(&mut held, need, 0.0);
        let pp = OutPtr { ptr: part.as_mut_ptr(), rs: 0 };
        pool.run(chunks * mp * np, &|t| {
            let (c, pq) = (t / (mp * np), t % (mp * np));
            let (p, q) = (pq % mp, pq / mp);
            let k0 = c * K_CHUNK;
            let kc = (k - k0).min(K_CHUNK);
            let mut acc = [[0f32; NR]; MR];
            // SAFETY: panels p, q from row k0 on, kc rows; partial slot t written by this task.
            unsafe {
                let (bp, ldb) = panel(q);
                kernel(kc, pa.get().add(p * MR * k + k0 * MR), bp.add(k0 * ldb), ldb, &mut acc);
                let dst = std::slice::from_raw_parts_mut(pp.get().add(t * tile), tile);
                for (d, s) in dst.chunks_mut(NR).zip(&acc) {
                    d.copy_from_slice(s);
                }
            }
        });
        for pq in 0..mp * np {
            let (p, q) = (pq % mp, pq / mp);
            let mut acc = [[0f32; NR]; MR];
            for c in 0..chunks {
                let src = &part[(c * mp * np + pq) * tile..][..tile];
                for (row, s) in acc.iter_mut().zip(src.chunks(NR)) {
                    row.iter_mut().zip(s).for_each(|(a, &b)| *a += b);
                }
            }
            store_tile(&acc, p * MR, q * NR, m, n, o, col_off, epi);
        }
    });
}
