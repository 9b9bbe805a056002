//! The wgpu context: instance, adapter, device and queue, and every call whose signature tends to
//! change between wgpu releases (adapter choice, device limits, polling, mapping, error capture).
//! The rest of the crate goes through this module.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// What shadergan reports about an adapter (`shadergan info`, logs, config.json).
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub is_cpu: bool,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub timestamp_queries: bool,
    pub shader_f16: bool,
    pub subgroups: bool,
}

impl AdapterSummary {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            is_cpu: info.device_type == wgpu::DeviceType::Cpu,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            timestamp_queries: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
        }
    }

    /// "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)".
    pub fn describe(&self) -> String {
        format!("{} ({}, {})", self.name, self.backend, self.device_type)
    }
}

/// Vulkan, Metal and DX12, the backends shadergan's kernels run on at full speed; OpenGL only when
/// asked for (`WGPU_BACKEND=gl`), so that probing it costs nothing and prints nothing otherwise.
/// WGPU_BACKEND (e.g. "vulkan", "gl", "dx12", "metal") replaces the set, and the debug flags are
/// honoured.
fn instance() -> wgpu::Instance {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(quiet_device_select_layer);
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::PRIMARY;
    wgpu::Instance::new(desc.with_env())
}

/// Mesa's Vulkan device-select layer (an implicit layer that comes with mesa-vulkan-drivers)
/// looks for a Wayland display whenever an instance enumerates adapters; on a machine without
/// one (no XDG_RUNTIME_DIR: servers, containers, CI) libwayland prints "error: XDG_RUNTIME_DIR is
/// invalid or not set in the environment." on stderr, twice, before anything shadergan says.
/// shadergan picks its adapter itself (by type, or WGPU_ADAPTER_NAME), so in that case the layer
/// is switched off for this process (NODEVICE_SELECT=1), unless the user set the layer up
/// (MESA_VK_DEVICE_SELECT, DRI_PRIME or NODEVICE_SELECT). `main` calls this before any thread
/// starts; the first wgpu instance of a library user calls it too.
pub fn quiet_device_select_layer() {
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| std::path::Path::new(d).is_dir());
    let configured =
        ["MESA_VK_DEVICE_SELECT", "DRI_PRIME", "NODEVICE_SELECT"].iter().any(|v| std::env::var_os(v).is_some());
    if runtime_dir.is_none() && !configured {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

/// Every adapter wgpu can see (respecting WGPU_BACKEND).
pub fn list_adapters() -> Vec<AdapterSummary> {
    let instance = instance();
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters.iter().map(AdapterSummary::of).collect()
}

/// Picks an adapter: the one named by WGPU_ADAPTER_NAME (a case-insensitive substring) if set,
/// else the best by type (discrete, integrated, virtual, then CPU).
fn choose_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter> {
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    if adapters.is_empty() {
        return Err(Error::gpu(
            "no GPU adapter found (on Linux without a GPU, install a software Vulkan driver: \
             apt-get install mesa-vulkan-drivers; or use --backend cpu)",
        ));
    }
    if let Ok(want) = std::env::var("WGPU_ADAPTER_NAME") {
        let want_lc = want.to_lowercase();
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return adapters.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&want_lc)).ok_or_else(|| {
            Error::gpu(format!("WGPU_ADAPTER_NAME={want} matches no adapter; found: {}", names.join(", ")))
        });
    }
    let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    Ok(adapters.into_iter().min_by_key(rank).expect("not empty"))
}

/// True when wgpu sees an adapter that is not a CPU emulation (for `--backend auto`).
pub fn real_gpu_available() -> bool {
    matches!(auto_adapter(), AutoAdapter::Hardware)
}

/// What `--backend auto` finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutoAdapter {
    /// A GPU that is not a CPU emulation.
    Hardware,
    /// Only a software adapter (lavapipe's llvmpipe, WARP), by name.
    Software(String),
    None,
}

pub fn auto_adapter() -> AutoAdapter {
    match choose_adapter(&instance()) {
        Ok(a) if a.get_info().device_type != wgpu::DeviceType::Cpu => AutoAdapter::Hardware,
        Ok(a) => AutoAdapter::Software(a.get_info().name),
        Err(_) => AutoAdapter::None,
    }
}

/// SHADERGAN_BOUNDS_CHECKS=1: every shader module keeps naga's runtime bounds checks (a kernel
/// that strays then reads a clamped value instead of another buffer's).
pub fn bounds_checks_forced() -> bool {
    std::env::var("SHADERGAN_BOUNDS_CHECKS").is_ok_and(|v| v == "1")
}

pub struct GpuContext {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub summary: AdapterSummary,
    /// Errors wgpu reported through its callbacks (validation, out of memory, device lost).
    errors: Arc<Mutex<Vec<String>>>,
}

impl GpuContext {
    pub fn new() -> Result<Arc<Self>> {
        let instance = instance();
        let adapter = choose_adapter(&instance)?;
        let summary = AdapterSummary::of(&adapter);
        let offered = adapter.limits();
        // Downlevel defaults keep every backend open; raise only the buffer sizes, which the data
        // set needs, to what the adapter offers.
        let mut limits = wgpu::Limits::downlevel_defaults();
        limits.max_storage_buffer_binding_size = offered.max_storage_buffer_binding_size;
        limits.max_buffer_size = offered.max_buffer_size;
        // matmul_backward binds six storage buffers (kernels::MAX_STORAGE_BINDINGS);
        // every Vulkan, Metal and DX12 device offers eight, only old GL ones fewer.
        limits.max_storage_buffers_per_shader_stage =
            offered.max_storage_buffers_per_shader_stage.min(crate::kernels::MAX_STORAGE_BINDINGS);
        // SHADER_F16 (f16 storage and arithmetic in WGSL) for --precision f16, where offered.
        // SHADERGAN_NO_F16=1 leaves it off, so tests can see an adapter without it.
        let mut wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16;
        if std::env::var("SHADERGAN_NO_F16").is_ok_and(|v| v == "1") {
            wanted.remove(wgpu::Features::SHADER_F16);
        }
        let features = adapter.features() & wanted;
        let desc = wgpu::DeviceDescriptor {
            label: Some("shadergan"),
            required_features: features,
            required_limits: limits,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::gpu(format!("{}: cannot open the device: {e}", summary.name)))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut v) = sink.lock() {
                v.push(format!("device lost ({reason:?}): {msg}"));
            }
        });
        log::info!("GPU adapter: {}", summary.describe());
        Ok(Arc::new(GpuContext { adapter, device, queue, summary, errors }))
    }

    /// Returns the first error wgpu reported since the last call, if any.
    pub fn check(&self) -> Result<()> {
        let mut errs = self.errors.lock().map_err(|_| Error::gpu("GPU error log poisoned"))?;
        if errs.is_empty() {
            return Ok(());
        }
        let first = errs.remove(0);
        let more = errs.len();
        errs.clear();
        let tail = if more > 0 { format!(" (and {more} more)") } else { String::new() };
        Err(Error::gpu(format!("GPU error on {}: {first}{tail}", self.summary.name)))
    }

    /// Whether the device can run the f16 kernels (`--precision f16`).
    pub fn supports_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }

    pub fn supports_timestamps(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// What ops are told about this adapter when they pick their kernel variant.
    pub fn device_class(&self) -> crate::ir::kernel::DeviceClass {
        crate::ir::kernel::DeviceClass { cpu_emulated: self.summary.is_cpu, subgroups: self.summary.subgroups }
    }

    /// A shader module from WGSL. `trusted`: the caller guarantees that every index the module's
    /// kernels touch is guarded by the kernels themselves (`kernels::Family::unchecked`), so it is
    /// compiled without naga's runtime bounds checks (which on Metal clamp every access), unless
    /// SHADERGAN_BOUNDS_CHECKS=1 asks for them everywhere (debugging).
    pub fn shader_module(&self, label: &str, wgsl: String, trusted: bool) -> wgpu::ShaderModule {
        let desc = wgpu::ShaderModuleDescriptor { label: Some(label), source: wgpu::ShaderSource::Wgsl(wgsl.into()) };
        if trusted && !bounds_checks_forced() {
            // SAFETY: such families guard every read and write themselves (each WGSL header says
            // how), and the executor asserts on the host, before any op is recorded, that every
            // span an op reads or writes lies inside its buffer (`ir::Kernel::spans`). So the
            // checks naga would add cannot trigger.
            unsafe { self.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        } else {
            self.device.create_shader_module(desc)
        }
    }

    /// Blocks until `index` (or everything submitted) has finished.
    pub fn wait(&self, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait { submission_index: index, timeout: None })
            .map_err(|e| Error::gpu(format!("waiting for the GPU: {e}")))?;
        self.check()
    }

    /// Frees finished work without blocking.
    pub fn poll(&self) {
        let _ = self.device.poll(wgpu::PollType::Poll);
    }

    pub fn buffer(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(16).next_multiple_of(4),
            usage,
            mapped_at_creation: false,
        })
    }

    /// Copies `size` bytes at `offset` of `src` into a fresh readback buffer and returns them.
    pub fn read_bytes(&self, src: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let staging = self.buffer("readback", size, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, offset, &staging, 0, size);
        let index = self.queue.submit([enc.finish()]);
        self.map_read(&staging, size, Some(index))
    }

    /// Maps a MAP_READ buffer once `index` is done and copies out its first `size` bytes.
    pub fn map_read(&self, staging: &wgpu::Buffer, size: u64, index: Option<wgpu::SubmissionIndex>) -> Result<Vec<u8>> {
        let done = Arc::new(Mutex::new(None));
        let flag = done.clone();
        staging.map_async(wgpu::MapMode::Read, 0..size, move |r| {
            if let Ok(mut d) = flag.lock() {
                *d = Some(r);
            }
        });
        self.wait(index)?;
        let status = done.lock().ok().and_then(|mut d| d.take());
        match status {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::gpu(format!("reading a GPU buffer: {e}"))),
            None => return Err(Error::gpu("reading a GPU buffer: the map never completed")),
        }
        let bytes = {
            let view =
                staging.get_mapped_range(0..size).map_err(|e| Error::gpu(format!("reading a GPU buffer: {e}")))?;
            view.to_vec()
        };
        staging.unmap();
        Ok(bytes)
    }
}
