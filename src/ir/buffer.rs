//! Buffers of a program: an index, a place inside one, and how one stores its values.

pub type BufId = usize;

/// A place in a buffer: buffer and element offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub buf: BufId,
    pub off: usize,
}

impl At {
    /// The start of `buf`.
    pub fn start(buf: BufId) -> Self {
        At { buf, off: 0 }
    }

    /// `n` elements further on.
    pub fn plus(self, n: usize) -> Self {
        At { buf: self.buf, off: self.off + n }
    }
}

/// How a buffer stores its values. The host always sees f32; an f16 buffer's values are rounded
/// to f16 on every store (on the GPU by the kernels and uploads, on the CPU by the executor).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DType {
    #[default]
    F32,
    F16,
}

impl DType {
    pub fn bytes(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }
}

/// A buffer of `len` values. Its label names the tensor in GPU validation errors
/// ("D.fc2.out.grad").
#[derive(Clone, Debug)]
pub struct BufSpec {
    pub label: String,
    pub len: usize,
    pub dtype: DType,
}

impl BufSpec {
    pub fn f32(label: impl Into<String>, len: usize) -> Self {
        BufSpec { label: label.into(), len, dtype: DType::F32 }
    }

    pub fn f16(label: impl Into<String>, len: usize) -> Self {
        BufSpec { label: label.into(), len, dtype: DType::F16 }
    }
}

/// The buffers of a program under construction. Zero-length buffers get one element (a binding
/// cannot be empty).
#[derive(Clone, Debug, Default)]
pub struct Buffers {
    pub specs: Vec<BufSpec>,
    /// Activations in f16 (`--precision f16`).
    pub half: bool,
}

impl Buffers {
    pub fn new(half: bool) -> Self {
        Buffers { specs: vec![], half }
    }

    pub fn add(&mut self, label: impl Into<String>, len: usize, dtype: DType) -> BufId {
        self.specs.push(BufSpec { label: label.into(), len: len.max(1), dtype });
        self.specs.len() - 1
    }

    pub fn f32(&mut self, label: impl Into<String>, len: usize) -> BufId {
        self.add(label, len, DType::F32)
    }

    pub fn f16(&mut self, label: impl Into<String>, len: usize) -> BufId {
        self.add(label, len, DType::F16)
    }

    /// An activation buffer: f16 at `--precision f16`, else f32.
    pub fn act(&mut self, label: impl Into<String>, len: usize) -> BufId {
        let dtype = if self.half { DType::F16 } else { DType::F32 };
        self.add(label, len, dtype)
    }

    pub fn dtype(&self, buf: BufId) -> DType {
        self.specs[buf].dtype
    }
}
