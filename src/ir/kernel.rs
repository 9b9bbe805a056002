//! One kernel call as data. Every kernel family (`crate::kernels`) defines one struct per entry
//! point, named like it (`MatmulForward` runs `matmul_forward`), holding its uniform and the
//! buffers it binds, and implements [`Kernel`]: what the GPU executor needs to record it (entry
//! point, uniform bytes, bindings, workgroups), what both executors need to check and round it
//! (the spans it reads and writes), and its CPU twin. So a new kernel touches its family's file
//! and nothing else; the executors never match on kinds of ops.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use super::buffer::BufId;
use super::data::DataView;
use super::pool::Pool;
use super::state::TrainState;

/// A resource an op binds besides its uniform (binding 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Res {
    Buf(BufId),
    /// The training state (step counter, Adam's counters).
    State,
    /// Chunk `k` of the resident data set (see [`super::data::DataChunks`]; one chunk, 0, when
    /// the data fits one binding).
    Data(usize),
}

/// `len` elements at `off` of `buf`, read or written by an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub buf: BufId,
    pub off: usize,
    pub len: usize,
    pub write: bool,
}

impl Span {
    pub fn read(buf: BufId, off: u32, len: usize) -> Self {
        Span { buf, off: off as usize, len, write: false }
    }

    pub fn write(buf: BufId, off: u32, len: usize) -> Self {
        Span { buf, off: off as usize, len, write: true }
    }
}

/// What a CPU twin runs against: the program's buffers, the training state, the data set.
pub struct Host<'a> {
    pub bufs: &'a mut [Vec<f32>],
    pub state: &'a mut TrainState,
    /// The data set's chunks, each its rows (empty: no data set).
    pub data: &'a [DataView<'a>],
    /// Use the fast paths (blocked sgemm, threaded Adam) where a family has them; false runs
    /// the plain reference loops only.
    pub fast: bool,
    /// The threads the fast paths run on.
    pub pool: &'a Pool,
}

impl<'a> Host<'a> {
    /// Takes `out` out of the buffers so the inputs can be borrowed beside it.
    pub fn with_out(&mut self, out: BufId, f: impl FnOnce(&[Vec<f32>], &mut [f32])) {
        let mut o = std::mem::take(&mut self.bufs[out]);
        f(self.bufs, &mut o);
        self.bufs[out] = o;
    }

    /// Like `with_out` for two distinct outputs.
    pub fn with_outs(&mut self, a: BufId, b: BufId, f: impl FnOnce(&[Vec<f32>], &mut [f32], &mut [f32])) {
        assert_ne!(a, b, "two outputs must be two buffers");
        let mut x = std::mem::take(&mut self.bufs[a]);
        let mut y = std::mem::take(&mut self.bufs[b]);
        f(self.bufs, &mut x, &mut y);
        self.bufs[a] = x;
        self.bufs[b] = y;
    }

    /// Like `with_out` for several distinct outputs.
    pub fn with_many<const N: usize>(&mut self, outs: [BufId; N], f: impl FnOnce(&[Vec<f32>], &mut [Vec<f32>; N])) {
        for (i, a) in outs.iter().enumerate() {
            assert!(!outs[..i].contains(a), "outputs must be distinct buffers");
        }
        let mut taken = outs.map(|o| std::mem::take(&mut self.bufs[o]));
        f(self.bufs, &mut taken);
        for (o, v) in outs.into_iter().zip(taken) {
            self.bufs[o] = v;
        }
    }

    /// Chunk `k` of the data set.
    pub fn data(&self, k: usize) -> DataView<'a> {
        *self.data.get(k).expect("a kernel that reads the data set needs one, with that chunk")
    }
}

/// A kernel call. See the module header.
pub trait Kernel: fmt::Debug + Send + Sync {
    /// The WGSL entry point (and CPU twin) this call runs at f32 storage.
    fn entry(&self) -> &'static str;
    /// The entry point to run instead when a bound buffer is f16, if the kernel has one.
    fn entry_f16(&self) -> Option<&'static str> {
        None
    }
    /// The bytes of the uniform at binding 0, if the entry point has one.
    fn uniform(&self) -> Option<Vec<u8>>;
    /// Values of the WGSL entry point's pipeline-overridable constants (`override` in WGSL):
    /// the GPU executor compiles one pipeline per entry point and set of values.
    fn constants(&self) -> Vec<(&'static str, f64)> {
        vec![]
    }
    /// (binding, resource) of every other binding, at the slots of the f32 entry point (an f16
    /// family binds an f32 buffer `F32_SLOT_SHIFT` further on; the executor applies that).
    fn bindings(&self) -> Vec<(u32, Res)>;
    /// Workgroups to dispatch (see the family's WGSL header for what one covers).
    fn workgroups(&self) -> [u32; 3];
    /// Floating-point operations of the call, for the cost model (`commands::plan`): a
    /// multiply-add counts 2. The default, one per value written, suits element-wise kernels;
    /// the GEMM-shaped families say theirs.
    fn flops(&self) -> f64 {
        self.spans().iter().filter(|s| s.write).fold(0.0, |acc, s| acc + s.len as f64)
    }
    /// Every span of a buffer the call reads or writes: checked against the buffers' lengths
    /// before anything runs, and on the CPU the written f16 spans are rounded after the twin.
    fn spans(&self) -> Vec<Span>;
    /// The CPU twin.
    fn run_cpu(&self, host: &mut Host);
    /// The call to record instead on `device` (a kernel variant with the same contract and
    /// CPU twin: a tiled kernel on a real GPU), or None for this one. The GPU executor asks
    /// when it compiles a section; f16 calls are not asked.
    fn gpu_variant(&self, _device: DeviceClass) -> Option<Op> {
        None
    }
    /// Binding slots filled only because the layout has them (the part of the kernel that uses
    /// one is off), bound to a buffer bound at another slot too. Native wgpu accepts that;
    /// WebGPU refuses a writable binding that aliases another, so the web player binds a scratch
    /// buffer at these slots instead.
    fn unused_slots(&self) -> Vec<u32> {
        vec![]
    }
}

/// What the GPU executor tells an op about its adapter ([`Kernel::gpu_variant`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceClass {
    /// The adapter emulates a GPU on the CPU (lavapipe's llvmpipe, WARP).
    pub cpu_emulated: bool,
    /// It has subgroup operations (wgpu's Features::SUBGROUP).
    pub subgroups: bool,
}

/// A kernel call in a program (cheap to clone).
#[derive(Clone)]
pub struct Op(Arc<dyn Kernel>);

impl Op {
    pub fn new(k: impl Kernel + 'static) -> Self {
        Op(Arc::new(k))
    }

    /// Buffers the call binds.
    pub fn buffers(&self) -> Vec<BufId> {
        self.bindings().into_iter().filter_map(|(_, r)| if let Res::Buf(b) = r { Some(b) } else { None }).collect()
    }

    /// The chunk of the resident data set it binds, if any.
    pub fn data_chunk(&self) -> Option<usize> {
        self.bindings().iter().find_map(|(_, r)| if let Res::Data(k) = r { Some(*k) } else { None })
    }
}

impl<K: Kernel + 'static> From<K> for Op {
    fn from(k: K) -> Self {
        Op::new(k)
    }
}

impl Deref for Op {
    type Target = dyn Kernel;
    fn deref(&self) -> &(dyn Kernel + 'static) {
        &*self.0
    }
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Workgroups for `n` invocations of a 256-wide 1-D kernel, split so no dimension passes 65,535
/// (`linear_index` in common.wgsl undoes the split).
pub fn groups_1d(n: usize) -> [u32; 3] {
    let g = n.div_ceil(256).max(1);
    if g <= 65_535 {
        [g as u32, 1, 1]
    } else {
        [65_535, g.div_ceil(65_535) as u32, 1]
    }
}

/// Workgroups for a flat grid of `n` workgroups (a kernel that finds its part and tile from its
/// workgroup's index wg.y nwg.x + wg.x), split so no dimension passes 65,535; the workgroups
/// past `n` find nothing to do.
pub fn groups_flat(n: usize) -> [u32; 3] {
    let n = n.max(1);
    if n <= 65_535 {
        [n as u32, 1, 1]
    } else {
        [65_535, n.div_ceil(65_535) as u32, 1]
    }
}
