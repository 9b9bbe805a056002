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
//! applies the activation with the twins' `activate`, as the twins do.

use std::cell::RefCell;

use crate::ir::Pool;
use crate::kernels::activation::activate;

/// Rows of a packed A panel and of the micro-kernel's tile.
pub const MR: usize = 8;
/// Columns of a packed B panel and of the micro-kernel's tile.
pub const NR: usize = 32;
/// Chunk of k when k is split (see the module header).
pub const K_CHUNK: usize = 1024;
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
        activate(v, self.act, self.slope)
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
            let mut pack = cell.borrow_mut();
            let need = (mp * MR + np * NR) * k;
            if pack.len() < need {
                pack.resize(need, 0.0);
            }
            let (pa, pb) = pack[..need].split_at_mut(mp * MR * k);
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
    let split = if (matches!(b, BSrc::Pack(_)) && np >= 2) || mp < 2 { Split::Cols } else { Split::Rows };
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
}

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
            let mut buf = cell.borrow_mut();
            let na = ps.len() * MR * k;
            if buf.len() < na + NR * k {
                buf.resize(na + NR * k, 0.0);
            }
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
        self.run()
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
                    row.iter_mut().for_each(|v| *v = activate(*v, act, self.epi.slope));
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

/// Packs every A and B panel, in tasks of a few panels each.
#[allow(clippy::too_many_arguments)]
fn pack_all(pool: &Pool, m: usize, n: usize, k: usize, a: &ASrc, b: &BSrc, pa: &mut [f32], pb: &mut [f32]) {
    let (mp, np, k1) = (m.div_ceil(MR), n.div_ceil(NR), k.max(1));
    // Panels per task: about 16k floats each.
    let a_per = (16384 / (MR * k1)).max(1);
    let b_per = (16384 / (NR * k1)).max(1);
    let (ta, tb) = (mp.div_ceil(a_per), np.div_ceil(b_per));
    let (pa_ptr, pb_ptr) = (OutPtr { ptr: pa.as_mut_ptr(), rs: 0 }, OutPtr { ptr: pb.as_mut_ptr(), rs: 0 });
    let run = |t: usize| {
        if t < ta {
            for p in t * a_per..((t + 1) * a_per).min(mp) {
                // SAFETY: panel p of the packed A buffer, written by this task only.
                let dst = unsafe { std::slice::from_raw_parts_mut(pa_ptr.get().add(p * MR * k), MR * k) };
                fill_a(a, p * MR, m, k, dst);
            }
        } else {
            let t = t - ta;
            for q in t * b_per..((t + 1) * b_per).min(np) {
                if direct(b, q, n).is_some() {
                    continue;
                }
                // SAFETY: panel q of the packed B buffer, written by this task only.
                let dst = unsafe { std::slice::from_raw_parts_mut(pb_ptr.get().add(q * NR * k), NR * k) };
                match b {
                    BSrc::Mat(bm) => pack_b(bm, q * NR, n, k, dst),
                    BSrc::Pack(f) => f(q * NR, dst),
                }
            }
        }
    };
    if ta + tb == 1 || (mp * MR + np * NR) * k1 < 32768 {
        (0..ta + tb).for_each(run);
    } else {
        pool.run(ta + tb, &run);
    }
}

/// The packed panel of A's rows i0..i0 + MR, from the matrix or its packer.
fn fill_a(a: &ASrc, i0: usize, m: usize, k: usize, dst: &mut [f32]) {
    match a {
        ASrc::Mat(a) => pack_a(a, i0, m, k, dst),
        ASrc::Pack(f) => f(i0, dst),
    }
}

/// dst[kk MR + ii] = A(i0 + ii, kk), 0 past m.
fn pack_a(a: &Mat, i0: usize, m: usize, k: usize, dst: &mut [f32]) {
    let rows = (m - i0).min(MR);
    if rows < MR {
        dst.iter_mut().for_each(|v| *v = 0.0);
    }
    if a.cs == 1 {
        for ii in 0..rows {
            let src = &a.data[a.off + (i0 + ii) * a.rs..][..k];
            for (kk, &v) in src.iter().enumerate() {
                dst[kk * MR + ii] = v;
            }
        }
    } else if a.rs == 1 {
        for kk in 0..k {
            let src = &a.data[a.off + i0 + kk * a.cs..][..rows];
            dst[kk * MR..kk * MR + rows].copy_from_slice(src);
        }
    } else {
        for kk in 0..k {
            for ii in 0..rows {
                dst[kk * MR + ii] = a.at(i0 + ii, kk);
            }
        }
    }
}

/// dst[kk NR + jj] = B(kk, j0 + jj), 0 past n.
pub fn pack_b(b: &Mat, j0: usize, n: usize, k: usize, dst: &mut [f32]) {
    let cols = (n - j0).min(NR);
    if cols < NR {
        dst.iter_mut().for_each(|v| *v = 0.0);
    }
    if b.cs == 1 {
        for kk in 0..k {
            let src = &b.data[b.off + kk * b.rs + j0..][..cols];
            dst[kk * NR..kk * NR + cols].copy_from_slice(src);
        }
    } else if b.rs == 1 && cols == NR && isa() == Isa::Avx512 && b.cs * 16 < i32::MAX as usize {
        // SAFETY: the CPU has AVX-512F; the panel's columns lie inside B (checked in `gemm`).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            pack_b_transposed_avx512(b, j0, k, dst)
        }
    } else if b.rs == 1 {
        // A transpose, in blocks of 16 rows so that the rows written stay in L1.
        for k0 in (0..k).step_by(16) {
            let k1 = (k0 + 16).min(k);
            for jj in 0..cols {
                let src = &b.data[b.off + (j0 + jj) * b.cs + k0..][..k1 - k0];
                for (kk, &v) in src.iter().enumerate() {
                    dst[(k0 + kk) * NR + jj] = v;
                }
            }
        }
    } else {
        for kk in 0..k {
            for jj in 0..cols {
                dst[kk * NR + jj] = b.at(kk, j0 + jj);
            }
        }
    }
}

/// A full panel of a column-major B (B(kk, j) = data[off + j cs + kk]): 16 x 16 blocks
/// transposed in registers, the last rows (k mod 16) one by one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_b_transposed_avx512(b: &Mat, j0: usize, k: usize, dst: &mut [f32]) {
    assert!(dst.len() >= k * NR);
    assert!(b.off + (j0 + NR - 1) * b.cs + k - 1 < b.data.len());
    let src = b.data.as_ptr().add(b.off + j0 * b.cs);
    let full = k / 16 * 16;
    for h in 0..2 {
        let cols = src.add(16 * h * b.cs);
        for k0 in (0..full).step_by(16) {
            transpose16_avx512(cols.add(k0), b.cs, dst.as_mut_ptr().add(k0 * NR + 16 * h), NR);
        }
        for kk in full..k {
            for j in 0..16 {
                dst[kk * NR + 16 * h + j] = *cols.add(j * b.cs + kk);
            }
        }
    }
}

/// dst[j dst_rs + i] = src[i src_rs + j] for i, j < 16: a 16 x 16 block transposed in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose16_avx512(src: *const f32, src_rs: usize, dst: *mut f32, dst_rs: usize) {
    use std::arch::x86_64::*;
    let r: [__m512; 16] = std::array::from_fn(|j| _mm512_loadu_ps(src.add(j * src_rs)));
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, c) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, c)
        } else {
            _mm512_unpackhi_ps(a, c)
        }
    });
    // u[4 g + c] lane L: column 4 L + c of rows 4 g .. 4 g + 3.
    let u: [__m512; 16] = std::array::from_fn(|i| {
        let (g, c) = (i / 4, i % 4);
        let (a, d) = (_mm512_castps_pd(t[4 * g + (c / 2)]), _mm512_castps_pd(t[4 * g + 2 + (c / 2)]));
        _mm512_castpd_ps(if c % 2 == 0 { _mm512_unpacklo_pd(a, d) } else { _mm512_unpackhi_pd(a, d) })
    });
    let v: [__m512; 16] = std::array::from_fn(|i| {
        let (half, c) = (i / 8, i % 8);
        let (a, d) = (u[8 * half + c % 4], u[8 * half + 4 + c % 4]);
        if c < 4 {
            _mm512_shuffle_f32x4::<0x88>(a, d)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, d)
        }
    });
    for c in 0..16 {
        let (a, d) = (v[c % 8], v[8 + c % 8]);
        let out = if c < 8 { _mm512_shuffle_f32x4::<0x88>(a, d) } else { _mm512_shuffle_f32x4::<0xdd>(a, d) };
        _mm512_storeu_ps(dst.add(c * dst_rs), out);
    }
}

/// dst[j dst_rs + i] = src[i src_rs + j] for i < rows, j < cols: 16 x 16 blocks transposed in
/// registers where the CPU has AVX-512, the edges one value at a time.
pub fn transpose(src: &[f32], src_rs: usize, dst: &mut [f32], dst_rs: usize, rows: usize, cols: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        (rows - 1) * src_rs + cols <= src.len() && (cols - 1) * dst_rs + rows <= dst.len(),
        "transpose: out of bounds"
    );
    let (mut r16, mut c16) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx512 {
        (r16, c16) = (rows / 16 * 16, cols / 16 * 16);
        for i0 in (0..r16).step_by(16) {
            for j0 in (0..c16).step_by(16) {
                // SAFETY: AVX-512F; the block lies inside both slices (checked above).
                unsafe {
                    transpose16_avx512(
                        src.as_ptr().add(i0 * src_rs + j0),
                        src_rs,
                        dst.as_mut_ptr().add(j0 * dst_rs + i0),
                        dst_rs,
                    )
                };
            }
        }
    }
    for i in 0..rows {
        let js = if i < r16 { c16..cols } else { 0..cols };
        for j in js {
            dst[j * dst_rs + i] = src[i * src_rs + j];
        }
    }
}

/// Stores one MR x NR tile through the epilogue (rows and columns past m, n dropped).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn store_tile(
    acc: &[[f32; NR]; MR],
    i0: usize,
    j0: usize,
    m: usize,
    n: usize,
    o: OutPtr,
    col_off: Option<&[usize]>,
    epi: &Epilogue,
) {
    let (rows, cols) = ((m - i0).min(MR), (n - j0).min(NR));
    for (ii, row) in acc.iter().enumerate().take(rows) {
        let i = i0 + ii;
        match col_off {
            None => {
                // SAFETY: row i, columns j0..j0 + cols of the output (checked in `gemm`), written
                // by this task only.
                let dst = unsafe { std::slice::from_raw_parts_mut(o.ptr.add(i * o.rs + j0), cols) };
                store_row(&row[..cols], dst, i, j0, epi);
            }
            Some(offs) if offs[j0 + cols - 1] == offs[j0] + cols - 1 => {
                // The columns are contiguous in the output (one image's run): as row-major.
                // SAFETY: as above, through the column offsets.
                let dst = unsafe { std::slice::from_raw_parts_mut(o.ptr.add(i * o.rs + offs[j0]), cols) };
                store_row(&row[..cols], dst, i, j0, epi);
            }
            Some(offs) if cols == NR => {
                // Scattered columns: the epilogue on a copy, then plain stores.
                let offs = &offs[j0..j0 + NR];
                let base = i * o.rs;
                let mut tmp = [0f32; NR];
                if epi.accumulate {
                    // SAFETY: as above, through the column offsets.
                    tmp.iter_mut().zip(offs).for_each(|(t, &c)| *t = unsafe { *o.ptr.add(base + c) });
                }
                store_full_row(row, &mut tmp, i, j0, epi);
                for (&v, &c) in tmp.iter().zip(offs) {
                    // SAFETY: as above.
                    unsafe { *o.ptr.add(base + c) = v };
                }
            }
            Some(offs) => {
                for (jj, &v) in row.iter().enumerate().take(cols) {
                    // SAFETY: as above, through the column offsets.
                    unsafe {
                        let p = o.ptr.add(i * o.rs + offs[j0 + jj]);
                        *p = epi.apply(v, i, j0 + jj, *p);
                    }
                }
            }
        }
    }
}

/// One row of a tile through the epilogue, in loops the compiler vectorizes.
#[inline(always)]
fn store_row(src: &[f32], dst: &mut [f32], i: usize, j0: usize, epi: &Epilogue) {
    if let (Ok(src), Ok(dst)) = (<&[f32; NR]>::try_from(src), <&mut [f32; NR]>::try_from(&mut *dst)) {
        return store_full_row(src, dst, i, j0, epi);
    }
    let n = src.len();
    let mut v = [0f32; NR];
    v[..n].copy_from_slice(src);
    match epi.bias {
        Bias::None => {}
        Bias::Col(b) => v[..n].iter_mut().zip(&b[j0..j0 + n]).for_each(|(x, b)| *x += b),
        Bias::Row(b) => v[..n].iter_mut().for_each(|x| *x += b[i]),
    }
    if epi.accumulate {
        v[..n].iter_mut().zip(dst.iter()).for_each(|(x, o)| *x += o);
    }
    match epi.act {
        0 => dst.copy_from_slice(&v[..n]),
        1 => dst.iter_mut().zip(&v[..n]).for_each(|(o, &x)| *o = x.max(0.0)),
        2 => dst.iter_mut().zip(&v[..n]).for_each(|(o, &x)| *o = if x > 0.0 { x } else { x * epi.slope }),
        act => dst.iter_mut().zip(&v[..n]).for_each(|(o, &x)| *o = activate(x, act, epi.slope)),
    }
}

/// `store_row` of a whole NR-wide row, with fixed lengths the compiler keeps in registers.
#[inline(always)]
fn store_full_row(src: &[f32; NR], dst: &mut [f32; NR], i: usize, j0: usize, epi: &Epilogue) {
    let mut v = *src;
    match epi.bias {
        Bias::None => {}
        Bias::Col(b) => {
            let b: &[f32; NR] = b[j0..j0 + NR].try_into().expect("NR values");
            v.iter_mut().zip(b).for_each(|(x, b)| *x += b)
        }
        Bias::Row(b) => v.iter_mut().for_each(|x| *x += b[i]),
    }
    if epi.accumulate {
        v.iter_mut().zip(dst.iter()).for_each(|(x, o)| *x += o);
    }
    match epi.act {
        0 => *dst = v,
        1 => dst.iter_mut().zip(&v).for_each(|(o, &x)| *o = x.max(0.0)),
        2 => dst.iter_mut().zip(&v).for_each(|(o, &x)| *o = if x > 0.0 { x } else { x * epi.slope }),
        act => dst.iter_mut().zip(&v).for_each(|(o, &x)| *o = activate(x, act, epi.slope)),
    }
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
        let mut part = cell.borrow_mut();
        let need = chunks * mp * np * tile;
        if part.len() < need {
            part.resize(need, 0.0);
        }
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

/// acc = sum over kk < k of the packed panels' outer products, each element one FMA chain.
/// (k, packed A panel, B panel, B's row stride: NR packed, or a row-major B's own, acc).
type Kernel = unsafe fn(usize, *const f32, *const f32, usize, &mut [[f32; NR]; MR]);

fn kernel_for(isa: Isa) -> Kernel {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => kernel_avx512,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => kernel_avx2,
        _ => kernel_portable,
    }
}

/// SAFETY (all kernels): pa holds k MR floats and pb k NR floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_avx512(k: usize, pa: *const f32, pb: *const f32, ldb: usize, acc: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    let mut c = [[_mm512_setzero_ps(); 2]; MR];
    for kk in 0..k {
        let b0 = _mm512_loadu_ps(pb.add(kk * ldb));
        let b1 = _mm512_loadu_ps(pb.add(kk * ldb + 16));
        let a = pa.add(kk * MR);
        for (i, ci) in c.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*a.add(i));
            ci[0] = _mm512_fmadd_ps(ai, b0, ci[0]);
            ci[1] = _mm512_fmadd_ps(ai, b1, ci[1]);
        }
    }
    for (row, ci) in acc.iter_mut().zip(&c) {
        _mm512_storeu_ps(row.as_mut_ptr(), ci[0]);
        _mm512_storeu_ps(row.as_mut_ptr().add(16), ci[1]);
    }
}

/// The AVX-512 kernel storing its tile (rows x cols of it) into C at `c` (row stride ldc)
/// through the epilogue: v = sum (+ bias), old + v if accumulating, then ReLU or leaky ReLU
/// (sigmoid and tanh are applied by the caller afterwards): `store_full_row`'s operations.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_avx512_fused(
    k: usize,
    pa: *const f32,
    pb: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    i0: usize,
    j0: usize,
    epi: &Epilogue,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for kk in 0..k {
        let b0 = _mm512_loadu_ps(pb.add(kk * ldb));
        let b1 = _mm512_loadu_ps(pb.add(kk * ldb + 16));
        let a = pa.add(kk * MR);
        for (i, ci) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*a.add(i));
            ci[0] = _mm512_fmadd_ps(ai, b0, ci[0]);
            ci[1] = _mm512_fmadd_ps(ai, b1, ci[1]);
        }
    }
    let mask = |h: usize| -> __mmask16 {
        let n = cols.saturating_sub(16 * h).min(16);
        if n == 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    };
    let masks = [mask(0), mask(1)];
    let zero = _mm512_setzero_ps();
    let slope = _mm512_set1_ps(epi.slope);
    for (i, ci) in acc.iter().enumerate().take(rows) {
        let row = c.add(i * ldc);
        for h in 0..2 {
            let mk = masks[h];
            if mk == 0 {
                continue;
            }
            let mut v = ci[h];
            match epi.bias {
                Bias::None => {}
                Bias::Col(b) => v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, b.as_ptr().add(j0 + 16 * h))),
                Bias::Row(b) => v = _mm512_add_ps(v, _mm512_set1_ps(b[i0 + i])),
            }
            if epi.accumulate {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, row.add(16 * h)));
            }
            v = match epi.act {
                1 => _mm512_max_ps(v, zero),
                2 => {
                    let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, zero);
                    _mm512_mask_blend_ps(pos, _mm512_mul_ps(v, slope), v)
                }
                _ => v,
            };
            _mm512_mask_storeu_ps(row.add(16 * h), mk, v);
        }
    }
}

/// AVX2: the MR x NR tile as four 4 x 16 quarters (16 registers), each the same FMA chains.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(k: usize, pa: *const f32, pb: *const f32, ldb: usize, acc: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    for i0 in [0, 4] {
        for j0 in [0, 16] {
            let mut c = [[_mm256_setzero_ps(); 2]; 4];
            for kk in 0..k {
                let b0 = _mm256_loadu_ps(pb.add(kk * ldb + j0));
                let b1 = _mm256_loadu_ps(pb.add(kk * ldb + j0 + 8));
                let a = pa.add(kk * MR + i0);
                for (i, ci) in c.iter_mut().enumerate() {
                    let ai = _mm256_set1_ps(*a.add(i));
                    ci[0] = _mm256_fmadd_ps(ai, b0, ci[0]);
                    ci[1] = _mm256_fmadd_ps(ai, b1, ci[1]);
                }
            }
            for (i, ci) in c.iter().enumerate() {
                _mm256_storeu_ps(acc[i0 + i].as_mut_ptr().add(j0), ci[0]);
                _mm256_storeu_ps(acc[i0 + i].as_mut_ptr().add(j0 + 8), ci[1]);
            }
        }
    }
}

unsafe fn kernel_portable(k: usize, pa: *const f32, pb: *const f32, ldb: usize, acc: &mut [[f32; NR]; MR]) {
    *acc = [[0.0; NR]; MR];
    for kk in 0..k {
        let a = std::slice::from_raw_parts(pa.add(kk * MR), MR);
        let b = std::slice::from_raw_parts(pb.add(kk * ldb), NR);
        for (row, &ai) in acc.iter_mut().zip(a) {
            for (c, &bj) in row.iter_mut().zip(b) {
                *c = fma(ai, bj, *c);
            }
        }
    }
}

/// A read straight from memory (an implicit GEMM: no packed copy of A): row i of A, over k, is
/// `segs` segments of `seg_len` values each, value kk of segment s at
/// data[row_base[i] + seg_shift[s] + kk stride]. (A convolution's taps: a segment per tap, its
/// values the channels.)
/// A B read in place row by row: B(kk, q NR + jj) = data[row_off[kk] + panel_off[q] + jj], so
/// each row of a panel is NR consecutive values somewhere in `data` (a convolution's
/// channels-last input at one tap: no im2col copy).
#[derive(Clone, Copy)]
pub struct GatherB<'a> {
    pub data: &'a [f32],
    pub row_off: &'a [usize],
    pub panel_off: &'a [usize],
}

/// C = epilogue(A B) with A packed by `pack_a` and B read in place through `b` (n a multiple of
/// NR), with the AVX-512 kernel: the same chains of fused multiply-adds as `gemm` (each element
/// one chain over k in order), so the same bits. One band of rows per thread; nothing is packed
/// but each task's own rows of A. The CPU must have AVX-512F (callers check `isa()`).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub fn gemm_gather_b(pool: &Pool, m: usize, n: usize, k: usize, pack_a: PackAFn, b: GatherB, out: Out, epi: Epilogue) {
    // The CPU's, not the forced kernel (tests force others while this runs).
    assert!(std::is_x86_feature_detected!("avx512f"), "gemm_gather_b: AVX-512 only");
    assert!(n.is_multiple_of(NR) && b.panel_off.len() >= n / NR && b.row_off.len() >= k, "gemm_gather_b: B's offsets");
    if m == 0 || n == 0 || k == 0 {
        assert!(k > 0 || m == 0 || n == 0, "gemm_gather_b: k = 0");
        return;
    }
    let reach = b.row_off[..k].iter().max().copied().unwrap_or(0) + b.panel_off.iter().max().copied().unwrap_or(0) + NR;
    assert!(reach <= b.data.len(), "gemm_gather_b: B reaches {reach} of {}", b.data.len());
    let col_off = out.col_off;
    let max_col = col_off.map_or(n - 1, |c| c[..n].iter().copied().max().unwrap_or(0));
    assert!((m - 1) * out.rs + max_col < out.data.len(), "gemm_gather_b: the output is too short");
    if let Bias::Col(bias) = epi.bias {
        assert!(bias.len() >= n);
    }
    if let Bias::Row(bias) = epi.bias {
        assert!(bias.len() >= m);
    }
    let o = OutPtr { ptr: out.data.as_mut_ptr(), rs: out.rs };
    let mp = m.div_ceil(MR);
    let tasks = mp.min(pool.threads().max(1));
    pool.run(tasks, &|t| {
        let ps = t * mp / tasks..(t + 1) * mp / tasks;
        TASK_PACK.with(|cell| {
            let mut pa = cell.borrow_mut();
            if pa.len() < ps.len() * MR * k {
                pa.resize(ps.len() * MR * k, 0.0);
            }
            for (p, dst) in ps.clone().zip(pa.chunks_mut(MR * k)) {
                pack_a(p * MR, dst);
            }
            // k in blocks of KC, each tile's sum carried from block to block in `acc` (the
            // same chain of fused multiply-adds, paused): a block's A panels and B rows stay
            // in cache across the tiles.
            let (np, rows) = (n / NR, ps.len());
            ACC.with(|cell| {
                let mut acc = cell.borrow_mut();
                acc.clear();
                acc.resize(rows * np, [[0f32; NR]; MR]);
                for k0 in (0..k).step_by(KC) {
                    let kc = (k - k0).min(KC);
                    for q in 0..np {
                        // SAFETY: every row of panel q lies inside b.data (checked above).
                        let bq = unsafe { b.data.as_ptr().add(b.panel_off[q]) };
                        for r in 0..rows {
                            // SAFETY: AVX-512F (asserted); panel r of pa holds k MR values.
                            unsafe {
                                let a = pa.as_ptr().add(r * MR * k + k0 * MR);
                                kernel_avx512_rows(kc, a, bq, &b.row_off[k0..k0 + kc], &mut acc[q * rows + r]);
                            }
                        }
                    }
                }
                for q in 0..np {
                    for (r, p) in ps.clone().enumerate() {
                        store_tile(&acc[q * rows + r], p * MR, q * NR, m, n, o, col_off, &epi);
                    }
                }
            });
        });
    });
}

/// The k block of `gemm_gather_b`.
const KC: usize = 256;

thread_local! {
    /// `gemm_gather_b`'s tiles in progress.
    static ACC: RefCell<Vec<[[f32; NR]; MR]>> = const { RefCell::new(Vec::new()) };
}

/// The AVX-512 micro-kernel with row kk of B at b + row_off[kk], adding to the sums in acc.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_avx512_rows(k: usize, pa: *const f32, b: *const f32, row_off: &[usize], acc: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    let mut c = acc.map(|row| [_mm512_loadu_ps(row.as_ptr()), _mm512_loadu_ps(row.as_ptr().add(16))]);
    for (kk, &off) in row_off[..k].iter().enumerate() {
        let b0 = _mm512_loadu_ps(b.add(off));
        let b1 = _mm512_loadu_ps(b.add(off + 16));
        let a = pa.add(kk * MR);
        for (i, ci) in c.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*a.add(i));
            ci[0] = _mm512_fmadd_ps(ai, b0, ci[0]);
            ci[1] = _mm512_fmadd_ps(ai, b1, ci[1]);
        }
    }
    for (row, ci) in acc.iter_mut().zip(&c) {
        _mm512_storeu_ps(row.as_mut_ptr(), ci[0]);
        _mm512_storeu_ps(row.as_mut_ptr().add(16), ci[1]);
    }
}

#[derive(Clone, Copy)]
pub struct GatherA<'a> {
    pub data: &'a [f32],
    pub row_base: &'a [usize],
    pub seg_shift: &'a [usize],
    pub seg_len: usize,
    pub stride: usize,
}

/// Where the implicit GEMM's output goes: element (i, j) at row_off[i] + j cs.
pub struct ScatterOut<'a> {
    pub data: &'a mut [f32],
    pub row_off: &'a [usize],
    pub cs: usize,
}

/// C (m x n) = epilogue(A B) with A read through `a` (see [`GatherA`]) and B (k x n, k =
/// segments x seg_len) packed as by [`gemm`]. Every element is one FMA chain over k in order
/// (segment by segment), whatever the kernel or the thread count.
pub fn gemm_gather(pool: &Pool, m: usize, n: usize, a: GatherA, b: BSrc, out: ScatterOut, epi: Epilogue) {
    let k = a.seg_shift.len() * a.seg_len;
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.row_base.len() >= m && out.row_off.len() >= m, "gemm_gather: a row offset per row");
    if k > 0 {
        let last = a.row_base[..m].iter().max().copied().unwrap_or(0)
            + a.seg_shift.iter().max().copied().unwrap_or(0)
            + (a.seg_len - 1) * a.stride;
        assert!(last < a.data.len(), "gemm_gather: A reaches {last} of {}", a.data.len());
    }
    let last_out = out.row_off[..m].iter().max().copied().unwrap_or(0) + (n - 1) * out.cs;
    assert!(last_out < out.data.len(), "gemm_gather: the output is too short");
    match epi.bias {
        Bias::Col(bias) => assert!(bias.len() >= n),
        Bias::Row(bias) => assert!(bias.len() >= m),
        Bias::None => {}
    }
    if let BSrc::Mat(bm) = &b {
        bm.check(k, n, "B");
    }
    let np = n.div_ceil(NR);
    let mp = m.div_ceil(MR);
    let o = OutPtr { ptr: out.data.as_mut_ptr(), rs: out.cs };
    let row_off = out.row_off;
    PACK.with(|cell| {
        let mut pack = cell.borrow_mut();
        let need = np * NR * k.max(1);
        if pack.len() < need {
            pack.resize(need, 0.0);
        }
        let pb = &mut pack[..need];
        let pbp = OutPtr { ptr: pb.as_mut_ptr(), rs: 0 };
        let pack_q = |q: usize| {
            // SAFETY: panel q of the packed B buffer, written by this task only.
            let dst = unsafe { std::slice::from_raw_parts_mut(pbp.get().add(q * NR * k), NR * k) };
            match b {
                BSrc::Mat(bm) => pack_b(&bm, q * NR, n, k, dst),
                BSrc::Pack(f) => f(q * NR, dst),
            }
        };
        if np == 1 {
            pack_q(0);
        } else {
            pool.run(np, &pack_q);
        }
        let pb = ConstPtr(pb.as_ptr());
        let wide = isa() == Isa::Avx512;
        // Tasks of 4 row panels by every column panel.
        let rb = 4;
        pool.run(mp.div_ceil(rb), &|t| {
            for p in t * rb..((t + 1) * rb).min(mp) {
                let i0 = p * MR;
                let rows = (m - i0).min(MR);
                let mut base = [a.row_base[i0]; MR];
                base[..rows].copy_from_slice(&a.row_base[i0..i0 + rows]);
                for q in 0..np {
                    let mut acc = [[0f32; NR]; MR];
                    for (s, &shift) in a.seg_shift.iter().enumerate() {
                        let pbs = unsafe { pb.get().add(q * NR * k + s * a.seg_len * NR) };
                        let ptrs = base.map(|r| unsafe { a.data.as_ptr().add(r + shift) });
                        // SAFETY: every row's reads were checked against A's length above, and
                        // the packed B segment holds seg_len NR floats.
                        unsafe {
                            if wide {
                                #[cfg(target_arch = "x86_64")]
                                gather_kernel_avx512(a.seg_len, &ptrs, a.stride, pbs, &mut acc);
                            } else {
                                gather_kernel_portable(a.seg_len, &ptrs, a.stride, pbs, &mut acc);
                            }
                        }
                    }
                    store_scatter(&acc, i0, q * NR, m, n, o, row_off, &epi);
                }
            }
        });
    });
}

/// One tile through the epilogue into element (i, j) at row_off[i] + j cs.
#[allow(clippy::too_many_arguments)]
fn store_scatter(
    acc: &[[f32; NR]; MR],
    i0: usize,
    j0: usize,
    m: usize,
    n: usize,
    o: OutPtr,
    row_off: &[usize],
    epi: &Epilogue,
) {
    let (rows, cols) = ((m - i0).min(MR), (n - j0).min(NR));
    if o.rs == 1 {
        // Each row's columns are consecutive: stored as a row-major tile.
        for (ii, row) in acc.iter().enumerate().take(rows) {
            // SAFETY: row i0 + ii's columns j0..j0 + cols (checked in `gemm_gather`), written by
            // this task only.
            let dst = unsafe { std::slice::from_raw_parts_mut(o.ptr.add(row_off[i0 + ii] + j0), cols) };
            store_row(&row[..cols], dst, i0 + ii, j0, epi);
        }
        return;
    }
    for (ii, row) in acc.iter().enumerate().take(rows) {
        let (i, base) = (i0 + ii, row_off[i0 + ii]);
        // SAFETY (the loads and stores below): element (i, j0 + jj) of the output, checked in
        // `gemm_gather`, written by this task only.
        if cols == NR {
            let mut tmp = [0f32; NR];
            if epi.accumulate {
                for (jj, t) in tmp.iter_mut().enumerate() {
                    *t = unsafe { *o.ptr.add(base + (j0 + jj) * o.rs) };
                }
            }
            store_full_row(row, &mut tmp, i, j0, epi);
            for (jj, &v) in tmp.iter().enumerate() {
                unsafe { *o.ptr.add(base + (j0 + jj) * o.rs) = v };
            }
        } else {
            for (jj, &v) in row.iter().enumerate().take(cols) {
                unsafe {
                    let p = o.ptr.add(base + (j0 + jj) * o.rs);
                    *p = epi.apply(v, i, j0 + jj, *p);
                }
            }
        }
    }
}

/// acc += sum over kk < len of A(i, kk) B(kk, :), A(i, kk) = *rows[i].add(kk stride).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_kernel_avx512(
    len: usize,
    rows: &[*const f32; MR],
    stride: usize,
    pb: *const f32,
    acc: &mut [[f32; NR]; MR],
) {
    use std::arch::x86_64::*;
    let mut c = [[_mm512_setzero_ps(); 2]; MR];
    for (ci, row) in c.iter_mut().zip(acc.iter()) {
        ci[0] = _mm512_loadu_ps(row.as_ptr());
        ci[1] = _mm512_loadu_ps(row.as_ptr().add(16));
    }
    let mut off = 0;
    for kk in 0..len {
        let b0 = _mm512_loadu_ps(pb.add(kk * NR));
        let b1 = _mm512_loadu_ps(pb.add(kk * NR + 16));
        for (ci, r) in c.iter_mut().zip(rows) {
            let ai = _mm512_set1_ps(*r.add(off));
            ci[0] = _mm512_fmadd_ps(ai, b0, ci[0]);
            ci[1] = _mm512_fmadd_ps(ai, b1, ci[1]);
        }
        off += stride;
    }
    for (row, ci) in acc.iter_mut().zip(&c) {
        _mm512_storeu_ps(row.as_mut_ptr(), ci[0]);
        _mm512_storeu_ps(row.as_mut_ptr().add(16), ci[1]);
    }
}

unsafe fn gather_kernel_portable(
    len: usize,
    rows: &[*const f32; MR],
    stride: usize,
    pb: *const f32,
    acc: &mut [[f32; NR]; MR],
) {
    for kk in 0..len {
        let b = std::slice::from_raw_parts(pb.add(kk * NR), NR);
        for (row, r) in acc.iter_mut().zip(rows) {
            let ai = *r.add(kk * stride);
            for (c, &bj) in row.iter_mut().zip(b) {
                *c = fma(ai, bj, *c);
            }
        }
    }
}
