//! The GPU executor. At start-up it turns every op of a plan into a pipeline, a uniform buffer
//! and a bind group, and uploads the data set once. Running a section then records those
//! dispatches into one compute pass and submits once: no allocation, no bind-group creation and
//! no readback per step. At most two submissions are in flight, so the host never runs far ahead.

use std::collections::HashMap;
use std::sync::Arc;

use bytemuck::Pod;

use super::context::GpuContext;
use crate::data::{DataValues, Dataset};
use crate::error::{Error, Result};
use crate::params::TrainState;
use crate::plan::{BufId, BufSpec, DType, Op, Plan};
use crate::shaders::{self, Slot};
use crate::trainer::{sections, Backend, Executor};

/// Training steps recorded into one command buffer at most.
pub const MAX_STEPS_PER_SUBMIT: u32 = 32;

/// A resource an op binds.
#[derive(Clone, Copy, Debug)]
enum Res {
    Buf(BufId),
    State,
    Data,
}

/// The uniform bytes and the (binding, resource) list of an op.
fn bindings(op: &Op) -> (Option<Vec<u8>>, Vec<(u32, Res)>) {
    use Res::*;
    fn u<T: Pod>(p: &T) -> Option<Vec<u8>> {
        Some(bytemuck::bytes_of(p).to_vec())
    }
    match *op {
        Op::MatmulForward { ref p, a, c, out }
        | Op::MatmulBackwardInput { ref p, a, c, out }
        | Op::MatmulBackwardWeight { ref p, a, c, out } => (u(p), vec![(1, Buf(a)), (2, Buf(c)), (3, Buf(out))]),
        Op::BiasBackward { ref p, a, out } => (u(p), vec![(1, Buf(a)), (3, Buf(out))]),
        Op::ActivationForward { ref p, x, out, .. } | Op::Cast { ref p, x, out, .. } => {
            (u(p), vec![(1, Buf(x)), (3, Buf(out))])
        }
        Op::ActivationBackward { ref p, y, dy, out, .. } => (u(p), vec![(1, Buf(y)), (2, Buf(dy)), (3, Buf(out))]),
        Op::BceLogits { ref p, z, dz, stats } => (u(p), vec![(1, Buf(z)), (2, Buf(dz)), (3, Buf(stats))]),
        Op::SoftmaxXent { ref p, z, labels, dz, stats } => {
            (u(p), vec![(1, Buf(z)), (2, Buf(labels)), (3, Buf(dz)), (4, Buf(stats))])
        }
        Op::AdamTick { ref p } => (u(p), vec![(5, State)]),
        Op::AdamStep { ref p, params, grads, moments } => {
            (u(p), vec![(1, Buf(params)), (2, Buf(grads)), (3, Buf(moments)), (4, State)])
        }
        Op::StepTick => (None, vec![(5, State)]),
        Op::EmaUpdate { ref p, params, ema } => (u(p), vec![(1, Buf(params)), (3, Buf(ema))]),
        Op::NoiseNormal { ref p, out } | Op::Dropout { ref p, out } => (u(p), vec![(1, State), (3, Buf(out))]),
        Op::Gather { ref p, out } => (u(p), vec![(1, State), (2, Data), (3, Buf(out))]),
    }
}

/// Workgroups for `n` invocations of a 256-wide 1-D kernel, split so no dimension passes 65,535.
fn groups_1d(n: usize) -> [u32; 3] {
    let g = n.div_ceil(256).max(1);
    if g <= 65_535 {
        [g as u32, 1, 1]
    } else {
        [65_535, g.div_ceil(65_535) as u32, 1]
    }
}

/// Workgroups of an op (see each kernel's header for what an invocation covers).
fn workgroups(op: &Op) -> [u32; 3] {
    let tiles = |cols: u32, rows: u32| [cols.div_ceil(64).max(1), rows.div_ceil(64).max(1), 1];
    match op {
        Op::MatmulForward { p, .. } => tiles(p.n, p.m),
        Op::MatmulBackwardInput { p, .. } => tiles(p.k, p.m),
        Op::MatmulBackwardWeight { p, .. } => tiles(p.k, p.n),
        Op::BiasBackward { p, .. } => groups_1d(p.n as usize),
        Op::ActivationForward { p, .. } | Op::ActivationBackward { p, .. } => groups_1d(p.len as usize),
        Op::BceLogits { .. } | Op::SoftmaxXent { .. } | Op::AdamTick { .. } | Op::StepTick => [1, 1, 1],
        Op::AdamStep { p, .. } => groups_1d(p.len as usize),
        Op::EmaUpdate { p, .. } => groups_1d(p.len as usize),
        Op::NoiseNormal { p, .. } => groups_1d((p.len as usize).div_ceil(4)),
        Op::Dropout { p, .. } => groups_1d(p.len as usize),
        Op::Cast { p, .. } => groups_1d(p.len as usize),
        Op::Gather { p, .. } => [p.dim.div_ceil(64).max(1), p.rows.max(1), 1],
    }
}

/// One compute pipeline per entry point, compiled on first use.
struct Kernels {
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    pipelines: HashMap<String, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
}

impl Kernels {
    fn get(&mut self, ctx: &GpuContext, entry: &str) -> Result<&(wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
        if !self.pipelines.contains_key(entry) {
            let (family, slots) =
                shaders::entry(entry).ok_or_else(|| Error::gpu(format!("no kernel named {entry}")))?;
            let device = &ctx.device;
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let module = self.modules.entry(family).or_insert_with(|| {
                let src = shaders::source(family).expect("registered family");
                let desc =
                    wgpu::ShaderModuleDescriptor { label: Some(family), source: wgpu::ShaderSource::Wgsl(src.into()) };
                if family == "matmul" || family == "matmul_f16" {
                    // SAFETY: matmul kernels clamp every read into [offset, offset + rows x cols)
                    // of each operand and guard every write, and `check_extents` asserts on the
                    // host, before any matmul op is recorded, that those spans lie inside their
                    // buffers. So the bounds checks naga would add cannot trigger; without them
                    // the inner loops run faster.
                    unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
                } else {
                    device.create_shader_module(desc)
                }
            });
            let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
                .iter()
                .map(|s| wgpu::BindGroupLayoutEntry {
                    binding: s.binding(),
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: match s {
                            Slot::Uniform(_) => wgpu::BufferBindingType::Uniform,
                            Slot::Read(_) => wgpu::BufferBindingType::Storage { read_only: true },
                            Slot::ReadWrite(_) => wgpu::BufferBindingType::Storage { read_only: false },
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                })
                .collect();
            let bgl = device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(entry), entries: &entries });
            let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(entry),
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&layout),
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
            if let Some(e) = pollster::block_on(scope.pop()) {
                return Err(Error::gpu(format!("compiling kernel {entry}: {e}")));
            }
            self.pipelines.insert(entry.to_string(), (pipeline, bgl));
        }
        Ok(&self.pipelines[entry])
    }
}

/// A recorded kernel call: everything needed to dispatch it again.
struct Dispatch {
    entry: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

pub struct GpuProgram {
    ctx: Arc<GpuContext>,
    bufs: Vec<wgpu::Buffer>,
    specs: Vec<BufSpec>,
    state: wgpu::Buffer,
    data: Option<wgpu::Buffer>,
    data_is_u8: bool,
    kernels: Kernels,
    sections: Vec<Vec<Dispatch>>,
    in_flight: Option<wgpu::SubmissionIndex>,
}

impl GpuProgram {
    /// Creates the buffers of `plan`, uploads `data`, and compiles the plan's sections.
    pub fn new(ctx: Arc<GpuContext>, plan: &Plan, data: Option<&Dataset>) -> Result<Self> {
        let mut p = Self::with_buffers(ctx, &plan.bufs, data)?;
        for list in sections(plan) {
            let compiled = p.compile(list)?;
            p.sections.push(compiled);
        }
        p.ctx.check()?;
        Ok(p)
    }

    /// An executor with these buffers and no compiled sections (kernel tests add their own).
    pub fn with_buffers(ctx: Arc<GpuContext>, specs: &[BufSpec], data: Option<&Dataset>) -> Result<Self> {
        let limits = ctx.device.limits();
        let max_binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        if specs.iter().any(|s| s.dtype == DType::F16) && !ctx.supports_f16() {
            return Err(Error::input(format!(
                "--precision f16 needs a GPU with shader-f16 (wgpu SHADER_F16); {} has none: use \
                 --backend cpu, or train with --precision f32",
                ctx.summary.describe()
            )));
        }
        let mut bufs = Vec::with_capacity(specs.len());
        for s in specs {
            let bytes = s.len as u64 * s.dtype.bytes();
            if bytes > max_binding {
                return Err(Error::input(format!(
                    "tensor {} needs {bytes} bytes, more than this GPU's largest storage binding \
                     ({max_binding} bytes, max_storage_buffer_binding_size); reduce --batch-size \
                     or the layer sizes",
                    s.label
                )));
            }
            bufs.push(ctx.buffer(&s.label, bytes, usage));
        }
        let state = ctx.buffer("train.state", 32, usage | wgpu::BufferUsages::UNIFORM);
        let (data_buf, data_is_u8) = match data {
            None => (None, true),
            Some(d) => {
                let (bytes, is_u8): (Vec<u8>, bool) = match &d.values {
                    DataValues::U8(v) => (v.clone(), true),
                    DataValues::F32(v) => (bytemuck::cast_slice(v).to_vec(), false),
                };
                let size = (bytes.len() as u64).next_multiple_of(4);
                if size > max_binding {
                    return Err(Error::input(format!(
                        "the data set is {size} bytes, more than this GPU's largest storage \
                         binding ({max_binding} bytes, max_storage_buffer_binding_size); use \
                         fewer samples, store it as uint8, or train with --backend cpu"
                    )));
                }
                let buf = ctx.buffer("data", size, usage);
                let mut padded = bytes;
                padded.resize(size as usize, 0);
                ctx.queue.write_buffer(&buf, 0, &padded);
                (Some(buf), is_u8)
            }
        };
        Ok(GpuProgram {
            ctx,
            bufs,
            specs: specs.to_vec(),
            state,
            data: data_buf,
            data_is_u8,
            kernels: Kernels { modules: HashMap::new(), pipelines: HashMap::new() },
            sections: vec![],
            in_flight: None,
        })
    }

    /// Compiles a list of ops into dispatches and adds it as a new section; returns its index.
    pub fn add_section(&mut self, ops: &[Op]) -> Result<usize> {
        let compiled = self.compile(ops)?;
        self.sections.push(compiled);
        Ok(self.sections.len() - 1)
    }

    /// Host-side bounds of the matmul kernels, which run without runtime bounds checks: every
    /// span an op reads or writes must lie inside its buffer.
    fn check_extents(&self, op: &Op) -> Result<()> {
        let span = |buf: BufId, off: u32, len: u64| -> Result<()> {
            let have = self.specs[buf].len as u64;
            if off as u64 + len > have {
                return Err(Error::gpu(format!(
                    "internal error: {:?} reaches element {} of {} ({} elements)",
                    op.entry(true),
                    off as u64 + len,
                    self.specs[buf].label,
                    have
                )));
            }
            Ok(())
        };
        match op {
            Op::MatmulForward { p, a, c, out } => {
                let (m, n, k) = (p.m as u64, p.n as u64, p.k as u64);
                span(*a, p.a_off, m * k)?;
                span(*c, p.c_off, n * k)?;
                span(*c, p.bias_off, n)?;
                span(*out, p.out_off, m * n)
            }
            Op::MatmulBackwardInput { p, a, c, out } => {
                let (m, n, k) = (p.m as u64, p.n as u64, p.k as u64);
                span(*a, p.a_off, m * n)?;
                span(*c, p.c_off, n * k)?;
                span(*out, p.out_off, m * k)
            }
            Op::MatmulBackwardWeight { p, a, c, out } => {
                let (m, n, k) = (p.m as u64, p.n as u64, p.k as u64);
                span(*a, p.a_off, m * n)?;
                span(*c, p.c_off, m * k)?;
                span(*out, p.out_off, n * k)
            }
            Op::BiasBackward { p, a, out } => {
                span(*a, p.a_off, p.m as u64 * p.n as u64)?;
                span(*out, p.bias_off, p.n as u64)
            }
            _ => Ok(()),
        }
    }

    fn compile(&mut self, ops: &[Op]) -> Result<Vec<Dispatch>> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            self.check_extents(op)?;
            let entry = op.entry_for(self.data_is_u8, &self.specs);
            let ctx = self.ctx.clone();
            let (family, slots) =
                shaders::entry(&entry).ok_or_else(|| Error::gpu(format!("no kernel named {entry}")))?;
            let (pipeline, bgl) = self.kernels.get(&ctx, &entry)?;
            let (pipeline, bgl) = (pipeline.clone(), bgl.clone());
            let (uniform, res) = bindings(op);
            let uniform_buf = uniform.map(|bytes| {
                let b = ctx.buffer(
                    &format!("{entry}.params"),
                    bytes.len() as u64,
                    wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                );
                ctx.queue.write_buffer(&b, 0, &bytes);
                b
            });
            let mut entries = vec![];
            if let Some(b) = &uniform_buf {
                entries.push(wgpu::BindGroupEntry { binding: 0, resource: b.as_entire_binding() });
            }
            for (role, r) in res {
                // An f16 family binds an f32 buffer at its role's slot + F32_SLOT_SHIFT.
                let binding = match r {
                    Res::Buf(id) if shaders::is_f16_family(family) && self.specs[id].dtype == DType::F32 => {
                        role + shaders::F32_SLOT_SHIFT
                    }
                    _ => role,
                };
                if !slots.iter().any(|s| s.binding() == binding) {
                    let what = match r {
                        Res::Buf(id) => format!("{} ({:?})", self.specs[id].label, self.specs[id].dtype),
                        other => format!("{other:?}"),
                    };
                    return Err(Error::gpu(format!("internal error: {entry} has no binding {binding} for {what}")));
                }
                let buffer = match r {
                    Res::Buf(id) => &self.bufs[id],
                    Res::State => &self.state,
                    Res::Data => self.data.as_ref().ok_or_else(|| Error::gpu("a gather kernel needs a data set"))?,
                };
                entries.push(wgpu::BindGroupEntry { binding, resource: buffer.as_entire_binding() });
            }
            let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&entry),
                layout: &bgl,
                entries: &entries,
            });
            out.push(Dispatch { entry, pipeline, bind_group, groups: workgroups(op) });
        }
        Ok(out)
    }

    fn check_len(&self, buf: BufId, len: usize) -> Result<()> {
        let spec = &self.specs[buf];
        if spec.len != len {
            return Err(Error::input(format!("{}: {len} values given, {} expected", spec.label, spec.len)));
        }
        Ok(())
    }

    /// Waits for all queued work.
    pub fn finish(&mut self) -> Result<()> {
        self.in_flight = None;
        self.ctx.wait(None)
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// GPU time of each dispatch of one run of `section`, in seconds, from timestamp queries
    /// written at the start and end of a compute pass around each dispatch. None when the
    /// adapter has no timestamp queries. This runs the section once (it advances training).
    pub fn profile(&mut self, section: usize) -> Result<Option<Vec<(String, f64)>>> {
        if !self.ctx.supports_timestamps() {
            return Ok(None);
        }
        let n = self.sections[section].len() as u32;
        let count = 2 * n;
        let set = self.ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let resolve = self.ctx.buffer(
            "profile.resolve",
            count as u64 * 8,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        );
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        for (i, d) in self.sections[section].iter().enumerate() {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&d.entry),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            let [x, y, z] = d.groups;
            pass.dispatch_workgroups(x, y, z);
        }
        enc.resolve_query_set(&set, 0..count, &resolve, 0);
        self.ctx.queue.submit([enc.finish()]);
        let bytes = self.ctx.read_bytes(&resolve, 0, count as u64 * 8)?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        let period = self.ctx.queue.get_timestamp_period() as f64 * 1e-9;
        Ok(Some(
            self.sections[section]
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period;
                    (d.entry.clone(), dt)
                })
                .collect(),
        ))
    }
}

impl Executor for GpuProgram {
    fn backend(&self) -> Backend {
        Backend::Gpu
    }

    fn device_name(&self) -> String {
        self.ctx.summary.describe()
    }

    fn run(&mut self, section: usize, times: u32) -> Result<()> {
        let mut left = times;
        while left > 0 {
            let n = left.min(MAX_STEPS_PER_SUBMIT);
            left -= n;
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("shadergan"),
                    timestamp_writes: None,
                });
                for _ in 0..n {
                    for d in &self.sections[section] {
                        pass.set_pipeline(&d.pipeline);
                        pass.set_bind_group(0, &d.bind_group, &[]);
                        let [x, y, z] = d.groups;
                        pass.dispatch_workgroups(x, y, z);
                    }
                }
            }
            let index = self.ctx.queue.submit([enc.finish()]);
            // Keep at most two submissions in flight: wait for the one before this.
            match self.in_flight.replace(index) {
                Some(prev) => self.ctx.wait(Some(prev))?,
                None => self.ctx.poll(),
            }
            self.ctx.check()?;
        }
        Ok(())
    }

    fn read(&mut self, buf: BufId) -> Result<Vec<f32>> {
        let spec = &self.specs[buf];
        let size = (spec.len as u64 * spec.dtype.bytes()).next_multiple_of(4);
        let bytes = self.ctx.read_bytes(&self.bufs[buf], 0, size)?;
        Ok(match spec.dtype {
            DType::F32 => bytemuck::pod_collect_to_vec(&bytes),
            DType::F16 => {
                let halves: Vec<half::f16> = bytemuck::pod_collect_to_vec(&bytes);
                halves[..spec.len].iter().map(|h| h.to_f32()).collect()
            }
        })
    }

    fn write(&mut self, buf: BufId, values: &[f32]) -> Result<()> {
        self.check_len(buf, values.len())?;
        match self.specs[buf].dtype {
            DType::F32 => self.ctx.queue.write_buffer(&self.bufs[buf], 0, bytemuck::cast_slice(values)),
            DType::F16 => {
                // Rounded as the kernels store (crate::cpu::ops::round_f16); padded to 4 bytes.
                let mut halves: Vec<half::f16> =
                    values.iter().map(|&v| half::f16::from_f32(crate::cpu::ops::saturate_f16(v))).collect();
                halves.resize(values.len().next_multiple_of(2), half::f16::ZERO);
                self.ctx.queue.write_buffer(&self.bufs[buf], 0, bytemuck::cast_slice(&halves));
            }
        }
        Ok(())
    }

    fn read_state(&mut self) -> Result<TrainState> {
        let bytes = self.ctx.read_bytes(&self.state, 0, 32)?;
        Ok(bytemuck::pod_read_unaligned(&bytes))
    }

    fn write_state(&mut self, state: &TrainState) -> Result<()> {
        self.ctx.queue.write_buffer(&self.state, 0, bytemuck::bytes_of(state));
        Ok(())
    }
}
