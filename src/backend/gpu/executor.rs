//! The GPU executor. When a section is added it turns every op into a pipeline, a uniform buffer
//! and a bind group; the data set is uploaded once. Running a section then records those
//! dispatches into one compute pass and submits once: no allocation, no bind-group creation and
//! no readback per step. At most two submissions are in flight, so the host never runs far ahead.

use std::collections::HashMap;
use std::sync::Arc;

use super::context::GpuContext;
use crate::backend::{Backend, Executor, Section};
use crate::data::{DataValues, Dataset};
use crate::error::{Error, Result};
use crate::ir::{BufId, BufSpec, DType, DataChunks, Op, Res, TrainState};
use crate::kernels::{self, Family, Slot, F32_SLOT_SHIFT};

/// Training steps recorded into one command buffer at most.
pub const MAX_STEPS_PER_SUBMIT: u32 = 32;

/// One compute pipeline per entry point and set of pipeline constants, compiled on first use.
struct Kernels {
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    pipelines: HashMap<String, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
}

impl Kernels {
    fn get(
        &mut self,
        ctx: &GpuContext,
        entry: &str,
        constants: &[(&'static str, f64)],
    ) -> Result<&(wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
        let key = pipeline_key(entry, constants);
        if !self.pipelines.contains_key(&key) {
            let (family, e) = kernels::entry(entry).ok_or_else(|| Error::gpu(format!("no kernel named {entry}")))?;
            let device = &ctx.device;
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let module = self
                .modules
                .entry(family.name)
                .or_insert_with(|| ctx.shader_module(family.name, kernels::source(family), family.unchecked));
            let entries: Vec<wgpu::BindGroupLayoutEntry> = e
                .slots
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
                compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
                cache: None,
            });
            if let Some(e) = pollster::block_on(scope.pop()) {
                return Err(Error::gpu(format!("compiling kernel {key}: {e}")));
            }
            self.pipelines.insert(key.clone(), (pipeline, bgl));
        }
        Ok(&self.pipelines[&key])
    }
}

/// "entry" or "entry[NAME=value,...]": one pipeline per entry point and constants.
fn pipeline_key(entry: &str, constants: &[(&'static str, f64)]) -> String {
    if constants.is_empty() {
        return entry.to_string();
    }
    let values: Vec<String> = constants.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{entry}[{}]", values.join(","))
}

/// A recorded kernel call: everything needed to dispatch it again.
struct Dispatch {
    entry: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

pub struct GpuExecutor {
    ctx: Arc<GpuContext>,
    bufs: Vec<wgpu::Buffer>,
    specs: Vec<BufSpec>,
    state: wgpu::Buffer,
    /// The data set, one storage buffer per chunk.
    data: Vec<wgpu::Buffer>,
    kernels: Kernels,
    sections: Vec<Vec<Dispatch>>,
    in_flight: Option<wgpu::SubmissionIndex>,
}

impl GpuExecutor {
    /// Creates the buffers (refusing any over the device's binding limit) and uploads `data` as
    /// one binding (refused when it is over the limit: see [`GpuExecutor::with_chunks`]).
    pub fn new(ctx: Arc<GpuContext>, specs: &[BufSpec], data: Option<&Dataset>) -> Result<Self> {
        let whole = data.map(|d| DataChunks::whole(d.n));
        Self::with_chunks(ctx, specs, data.zip(whole.as_ref()))
    }

    /// The same for a program built for the data set in `chunks` (`ir::DataChunks`): one
    /// storage buffer per chunk, each under the binding limit.
    pub fn with_chunks(ctx: Arc<GpuContext>, specs: &[BufSpec], data: Option<(&Dataset, &DataChunks)>) -> Result<Self> {
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
        let data = match data {
            Some((d, chunks)) => upload_data(&ctx, d, chunks, max_binding, usage)?,
            None => vec![],
        };
        Ok(GpuExecutor {
            ctx,
            bufs,
            specs: specs.to_vec(),
            state,
            data,
            kernels: Kernels { modules: HashMap::new(), pipelines: HashMap::new() },
            sections: vec![],
            in_flight: None,
        })
    }

    fn compile(&mut self, ops: &[Op]) -> Result<Vec<Dispatch>> {
        let mut out = Vec::with_capacity(ops.len());
        let device = self.ctx.device_class();
        for op in ops {
            // The variant for this adapter (a tiled kernel on a real GPU), where the op has one;
            // f16 calls keep their kernels.
            let half = op.buffers().iter().any(|&b| self.specs[b].dtype == DType::F16);
            let variant = if half { None } else { op.gpu_variant(device) };
            let op = variant.as_ref().unwrap_or(op);
            check_spans(&self.specs, op)?;
            let entry = entry_for(&self.specs, op)?;
            let ctx = self.ctx.clone();
            let (family, e) = kernels::entry(entry).ok_or_else(|| Error::gpu(format!("no kernel named {entry}")))?;
            let storage = e.slots.iter().filter(|s| !matches!(s, Slot::Uniform(_))).count() as u32;
            let most = ctx.device.limits().max_storage_buffers_per_shader_stage;
            if storage > most {
                return Err(Error::gpu(format!(
                    "{entry} binds {storage} storage buffers, and {} binds at most {most} per shader \
                     stage; use --backend cpu",
                    ctx.summary.name
                )));
            }
            let (pipeline, bgl) = self.kernels.get(&ctx, entry, &op.constants())?;
            let (pipeline, bgl) = (pipeline.clone(), bgl.clone());
            let uniform_buf = op.uniform().map(|bytes| {
                let label = format!("{entry}.params");
                let b =
                    ctx.buffer(&label, bytes.len() as u64, wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST);
                ctx.queue.write_buffer(&b, 0, &bytes);
                b
            });
            let mut entries = vec![];
            if let Some(b) = &uniform_buf {
                entries.push(wgpu::BindGroupEntry { binding: 0, resource: b.as_entire_binding() });
            }
            for (role, r) in op.bindings() {
                let binding = binding_slot(&self.specs, family, role, r);
                if !e.slots.iter().any(|s| s.binding() == binding) {
                    return Err(Error::gpu(format!(
                        "internal error: {entry} has no binding {binding} for {}",
                        self.describe(r)
                    )));
                }
                let buffer = match r {
                    Res::Buf(id) => &self.bufs[id],
                    Res::State => &self.state,
                    Res::Data(k) => {
                        self.data.get(k).ok_or_else(|| Error::gpu(format!("{entry} needs chunk {k} of a data set")))?
                    }
                };
                entries.push(wgpu::BindGroupEntry { binding, resource: buffer.as_entire_binding() });
            }
            let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(entry),
                layout: &bgl,
                entries: &entries,
            });
            out.push(Dispatch { entry: entry.to_string(), pipeline, bind_group, groups: op.workgroups() });
        }
        Ok(out)
    }

    fn describe(&self, r: Res) -> String {
        match r {
            Res::Buf(id) => format!("{} ({:?})", self.specs[id].label, self.specs[id].dtype),
            other => format!("{other:?}"),
        }
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
    fn profile_section(&mut self, section: usize) -> Result<Option<Vec<(String, f64)>>> {
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

/// Every span an op reads or writes must lie inside its buffer: some families run without
/// runtime bounds checks.
pub(crate) fn check_spans(specs: &[BufSpec], op: &Op) -> Result<()> {
    for s in op.spans() {
        let have = specs[s.buf].len;
        if s.off + s.len > have {
            return Err(Error::gpu(format!(
                "internal error: {} reaches element {} of {} ({have} elements)",
                op.entry(),
                s.off + s.len,
                specs[s.buf].label,
            )));
        }
    }
    Ok(())
}

/// The entry point for these buffers: the f16 variant when a bound buffer is f16.
pub(crate) fn entry_for(specs: &[BufSpec], op: &Op) -> Result<&'static str> {
    let half = op.buffers().iter().any(|&b| specs[b].dtype == DType::F16);
    match (half, op.entry_f16()) {
        (false, _) => Ok(op.entry()),
        (true, Some(e)) => Ok(e),
        // A cast names its direction itself: its entry is already an f16 family's.
        (true, None) if kernels::entry(op.entry()).is_some_and(|(f, _)| f.f16) => Ok(op.entry()),
        (true, None) => Err(Error::gpu(format!("internal error: {} has no f16 variant", op.entry()))),
    }
}

/// An f16 family binds an f32 buffer at its role's slot + F32_SLOT_SHIFT.
pub(crate) fn binding_slot(specs: &[BufSpec], family: &Family, role: u32, r: Res) -> u32 {
    match r {
        Res::Buf(id) if family.f16 && specs[id].dtype == DType::F32 => role + F32_SLOT_SHIFT,
        _ => role,
    }
}

/// The data set as one storage buffer per chunk of rows: bytes stay bytes (the gather unpacks
/// them), each chunk padded to 4. A chunk over the binding limit is refused (a program built by
/// the trainers has chunks under it); memory the device cannot give is an error naming the size.
fn upload_data(
    ctx: &GpuContext,
    d: &Dataset,
    chunks: &DataChunks,
    max_binding: u64,
    usage: wgpu::BufferUsages,
) -> Result<Vec<wgpu::Buffer>> {
    let bytes: &[u8] = match &d.values {
        DataValues::U8(v) => v,
        DataValues::F32(v) => bytemuck::cast_slice(v),
    };
    if chunks.n() != d.n {
        return Err(Error::gpu(format!("internal error: data chunks cover {} of {} rows", chunks.n(), d.n)));
    }
    let row = d.row_bytes();
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let mut bufs = Vec::with_capacity(chunks.len());
    for (k, rows) in chunks.rows.iter().enumerate() {
        let part = &bytes[rows.start * row..rows.end * row];
        let size = (part.len() as u64).next_multiple_of(4);
        if size > max_binding {
            return Err(Error::input(format!(
                "the data set is {size} bytes, more than this GPU's largest storage binding \
                 ({max_binding} bytes, max_storage_buffer_binding_size); use fewer samples, store it \
                 as uint8, or train with --backend cpu"
            )));
        }
        let label = if chunks.len() == 1 { "data".to_string() } else { format!("data.chunk{k}") };
        let buf = ctx.buffer(&label, size, usage);
        let whole = part.len() / 4 * 4;
        ctx.queue.write_buffer(&buf, 0, &part[..whole]);
        if whole < part.len() {
            let mut tail = [0u8; 4];
            tail[..part.len() - whole].copy_from_slice(&part[whole..]);
            ctx.queue.write_buffer(&buf, whole as u64, &tail);
        }
        bufs.push(buf);
    }
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(Error::input(format!(
            "the data set ({} MiB in {} buffers) does not fit in the memory of {}: {e}; use fewer \
             samples, store it as uint8, or train with --backend cpu",
            bytes.len() >> 20,
            chunks.len(),
            ctx.summary.describe()
        )));
    }
    Ok(bufs)
}

impl Executor for GpuExecutor {
    fn backend(&self) -> Backend {
        Backend::Gpu
    }

    fn device_name(&self) -> String {
        self.ctx.summary.describe()
    }

    fn add_section(&mut self, ops: &[Op]) -> Result<Section> {
        let compiled = self.compile(ops)?;
        self.sections.push(compiled);
        self.ctx.check()?;
        Ok(Section(self.sections.len() - 1))
    }

    fn profile(&mut self, section: Section) -> Result<Option<Vec<(String, f64)>>> {
        self.profile_section(section.0)
    }

    fn run(&mut self, section: Section, times: u32) -> Result<()> {
        let section = section.0;
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
                // Rounded as the kernels store (crate::kernels::activation::round_f16); padded to 4 bytes.
                let mut halves: Vec<half::f16> =
                    values.iter().map(|&v| half::f16::from_f32(crate::kernels::activation::saturate_f16(v))).collect();
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
