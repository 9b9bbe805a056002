// shadergan's web player: replays a program that `shadergan export-web` recorded, on the
// browser's WebGPU, exactly as the native GPU executor (src/backend/gpu/executor.rs) runs it.
// It holds no math: every value the model computes comes from shadergan's own WGSL.
//
// What it does, as the native executor does:
//   - one storage buffer per program buffer (label, length, f32 or f16), zero-filled, plus the
//     32-byte training state (TrainState in common.wgsl: step, Adam's counters and powers),
//     bound as storage or as a uniform; the data set as one storage buffer per chunk;
//   - one shader module per kernel family (the WGSL the native executor compiles), one bind
//     group layout per entry point from its binding slots, one pipeline per entry point and set
//     of pipeline-overridable constants (a fused activation: ACT, ACT_IN, GRAD_ACT);
//   - one uniform buffer and one bind group per dispatch, made once;
//   - a section run N times is recorded into compute passes of up to `steps_per_submit` runs
//     each, one submit per pass; the step counter lives in the state buffer on the GPU;
//   - reading back copies a buffer into a mapped staging buffer.
// The page may rewrite a dispatch's uniform words (a "knob": a learning rate, Adam's betas,
// label smoothing, the weight average's decay), which Rust found by re-recording the program
// with that setting changed, and swap in another seed's uniforms, weights and toy data.
//
// program.js (format "shadergan-web-1") holds one JSON object:
//   families {name: {source, unchecked, f16}}, entries {entry: {family, slots [[binding, kind]]}}
//   buffers [{label, len, dtype}], sections {name: [{entry, constants {NAME: value}, uniform (base64),
//     bind, groups}]}
//     where bind is [{slot, buf | state | data | scratch}]
//   seeds [{seed, actions [{write, f32} | {write, copy} | {state} | {run, times}], uniforms [[section, index,
//     base64]], data [base64 per chunk] (null: the first seed's)}]
//   knobs [{name, label, value, targets [[section, index, byte offset]]}]
//   io {stats, stats_slots, sample_z, sample_out, sample_rows, latent_dim, data_dim, grid,
//       sample_width, sample_labels, classes, class_names (a conditional G's)}
//   views {rows, latents}, data {name, n, dim, u8, image, scale, shift, chunks, preview}, config
(function (global) {
  'use strict';
  const SG = (global.ShaderGAN = global.ShaderGAN || {});
  const FORMAT = 'shadergan-web-1';
  const STATE_BYTES = 32;

  function bytesOf(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function f32Of(b64) {
    const b = bytesOf(b64);
    return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  }

  // An f16 bit pattern as a number (reading f16 buffers back for display).
  function halfToFloat(h) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) return s * m * 2 ** -24;
    if (e === 31) return m ? NaN : s * Infinity;
    return s * (1 + m / 1024) * 2 ** (e - 15);
  }

  // As GpuContext::buffer: at least 16 bytes, a multiple of 4.
  function bufferSize(bytes) {
    return Math.max(16, Math.ceil(bytes / 4) * 4);
  }

  const U = GPUBufferUsage;

  class Player {
    // Opens the browser's WebGPU device and compiles `program`.
    static async open(program) {
      if (!program || program.format !== FORMAT) {
        throw new Error(`not a shadergan web program (format ${program && program.format}, expected ${FORMAT})`);
      }
      if (!global.navigator || !navigator.gpu) {
        throw new Error('this browser has no WebGPU (Chrome or Edge 113+, Safari 26+, Firefox 141+ on Windows)');
      }
      const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter) throw new Error('WebGPU found no adapter');
      const features = [];
      if (program.needs_f16) {
        if (!adapter.features.has('shader-f16')) {
          throw new Error('this program keeps activations in f16 and this GPU has no shader-f16; export it with --precision f32');
        }
        features.push('shader-f16');
      }
      const device = await adapter.requestDevice({ requiredFeatures: features });
      const p = new Player(device, program, adapter);
      await p.compile();
      return p;
    }

    constructor(device, program, adapter) {
      this.device = device;
      this.program = program;
      this.adapter = adapter;
      this.errors = [];
      this.step = 0;
      this.seedIndex = 0;
      this.knobValues = {};
      for (const k of program.knobs || []) this.knobValues[k.name] = k.value;
      device.addEventListener('uncapturederror', (e) => {
        this.errors.push(e.error.message);
        console.error('WebGPU: ' + e.error.message);
      });
      device.lost.then((info) => {
        if (!this.destroyed) this.errors.push('device lost: ' + info.message);
      });
    }

    // The first WebGPU error since the last check, as an exception.
    check() {
      if (this.errors.length) {
        const first = this.errors[0];
        const more = this.errors.length - 1;
        this.errors = [];
        throw new Error('WebGPU error: ' + first + (more ? ` (and ${more} more)` : ''));
      }
    }

    bufferIndex(label) {
      const i = this.program.buffers.findIndex((b) => b.label === label);
      if (i < 0) throw new Error('no buffer labelled ' + label);
      return i;
    }

    async compile() {
      const { device, program } = this;
      device.pushErrorScope('validation');
      this.bufs = program.buffers.map((b) =>
        device.createBuffer({
          label: b.label,
          size: bufferSize(b.len * (b.dtype === 'f16' ? 2 : 4)),
          usage: U.STORAGE | U.COPY_SRC | U.COPY_DST,
        })
      );
      this.state = device.createBuffer({
        label: 'train.state',
        size: STATE_BYTES,
        usage: U.STORAGE | U.UNIFORM | U.COPY_SRC | U.COPY_DST,
      });
      // Bound where a kernel's layout needs a buffer its call does not touch (program.js's
      // `scratch` bindings: the executor binds an aliasing one there, which WebGPU refuses).
      this.scratch = device.createBuffer({ label: 'scratch', size: 16, usage: U.STORAGE });
      this.data = [];
      this.uploadData(0);
      const modules = {};
      for (const [name, f] of Object.entries(program.families)) {
        // A browser always bounds-checks: `unchecked` (native: no runtime checks) cannot apply.
        modules[name] = device.createShaderModule({ label: name, code: f.source });
      }
      // One pipeline per entry point and set of overridable constants, as the native executor.
      this.layouts = {};
      this.pipelines = {};
      Object.entries(program.entries).forEach(([entry, e]) => {
        this.layouts[entry] = device.createBindGroupLayout({
          label: entry,
          entries: e.slots.map(([binding, kind]) => ({
            binding,
            visibility: GPUShaderStage.COMPUTE,
            buffer: { type: kind === 'uniform' ? 'uniform' : kind === 'read' ? 'read-only-storage' : 'storage' },
          })),
        });
      });
      const keyOf = (d) => d.entry + JSON.stringify(d.constants || {});
      const dispatches = Object.values(program.sections).flat();
      const wanted = new Map(dispatches.map((d) => [keyOf(d), d]));
      await Promise.all(
        [...wanted].map(async ([key, d]) => {
          const layout = this.layouts[d.entry];
          this.pipelines[key] = await device.createComputePipelineAsync({
            label: d.entry,
            layout: device.createPipelineLayout({ label: d.entry, bindGroupLayouts: [layout] }),
            compute: { module: modules[program.entries[d.entry].family], entryPoint: d.entry, constants: d.constants || {} },
          });
        })
      );
      this.pipelineOf = (d) => this.pipelines[keyOf(d)];
      this.sections = {};
      for (const [name, list] of Object.entries(program.sections)) {
        this.sections[name] = list.map((d) => this.dispatch(d));
      }
      const err = await device.popErrorScope();
      if (err) throw new Error('compiling the program: ' + err.message);
      await this.reset(0);
    }

    // The data set of seed `i` (toy data depends on the seed), one storage buffer per chunk.
    uploadData(i) {
      const seeds = this.program.seeds;
      const chunks = (seeds[i] && seeds[i].data) || seeds[0].data || [];
      if (this.dataSeed === chunks) return;
      this.data.forEach((b) => b.destroy());
      this.data = chunks.map((b64, k) => {
        const bytes = bytesOf(b64);
        const buf = this.device.createBuffer({
          label: chunks.length === 1 ? 'data' : 'data.chunk' + k,
          size: bufferSize(bytes.length),
          usage: U.STORAGE | U.COPY_DST,
        });
        this.device.queue.writeBuffer(buf, 0, bytes);
        return buf;
      });
      this.dataSeed = chunks;
      // Bind groups name the data buffers: remake them when the buffers change.
      if (this.sections) {
        for (const [name, list] of Object.entries(this.program.sections)) {
          this.sections[name].forEach((d, j) => (d.group = this.bindGroup(list[j], d.uniformBuffer)));
        }
      }
    }

    bindGroup(d, uniformBuffer) {
      const entries = [];
      if (uniformBuffer) entries.push({ binding: 0, resource: { buffer: uniformBuffer } });
      for (const b of d.bind) {
        let buffer;
        if (b.state) buffer = this.state;
        else if (b.scratch) buffer = this.scratch;
        else if (b.data !== undefined) buffer = this.data[b.data];
        else buffer = this.bufs[b.buf];
        if (!buffer) throw new Error(`${d.entry}: binding ${b.slot} has no buffer`);
        entries.push({ binding: b.slot, resource: { buffer } });
      }
      return this.device.createBindGroup({ label: d.entry, layout: this.layouts[d.entry], entries });
    }

    dispatch(d) {
      const base = d.uniform ? bytesOf(d.uniform) : null;
      const uniformBuffer = base
        ? this.device.createBuffer({ label: d.entry + '.params', size: bufferSize(base.length), usage: U.UNIFORM | U.COPY_DST })
        : null;
      return {
        entry: d.entry,
        pipeline: this.pipelineOf(d),
        group: this.bindGroup(d, uniformBuffer),
        groups: d.groups,
        uniformBuffer,
        base,
        current: base ? base.slice() : null,
        dirty: !!base,
      };
    }

    // Writes the uniforms changed since the last run.
    flushUniforms() {
      for (const list of Object.values(this.sections)) {
        for (const d of list) {
          if (d.dirty) {
            this.device.queue.writeBuffer(d.uniformBuffer, 0, d.current);
            d.dirty = false;
          }
        }
      }
    }

    // Sets a live setting by rewriting the uniform words that hold it.
    setKnob(name, value) {
      const k = (this.program.knobs || []).find((x) => x.name === name);
      if (!k) throw new Error('no setting named ' + name);
      this.knobValues[name] = value;
      for (const [section, index, offset] of k.targets) {
        const d = this.sections[section][index];
        new DataView(d.current.buffer).setFloat32(offset, value, true);
        d.dirty = true;
      }
    }

    // Starts over from seed `i`: every buffer zeroed, that seed's uniforms, data, weights and
    // training state, the knobs as they are set now.
    async reset(i) {
      const { device, program } = this;
      const seed = program.seeds[i];
      if (!seed) throw new Error('no seed ' + i);
      this.seedIndex = i;
      this.uploadData(i);
      for (const list of Object.values(this.sections)) {
        for (const d of list) {
          if (d.base) {
            d.current = d.base.slice();
            d.dirty = true;
          }
        }
      }
      for (const [section, index, b64] of seed.uniforms) {
        const d = this.sections[section][index];
        d.current = bytesOf(b64);
        d.dirty = true;
      }
      for (const [name, value] of Object.entries(this.knobValues)) this.setKnob(name, value);
      const enc = device.createCommandEncoder();
      for (const b of this.bufs) enc.clearBuffer(b);
      enc.clearBuffer(this.state);
      device.queue.submit([enc.finish()]);
      for (const a of seed.actions) {
        if (a.copy !== undefined) {
          const enc2 = device.createCommandEncoder();
          enc2.copyBufferToBuffer(this.bufs[a.copy], 0, this.bufs[a.write], 0, this.bufs[a.write].size);
          device.queue.submit([enc2.finish()]);
        } else if (a.write !== undefined) device.queue.writeBuffer(this.bufs[a.write], 0, f32Of(a.f32));
        else if (a.state !== undefined) {
          const bytes = bytesOf(a.state);
          device.queue.writeBuffer(this.state, 0, bytes);
          this.step = new DataView(bytes.buffer).getUint32(0, true);
        } else if (a.run !== undefined) this.run(a.run, a.times);
      }
      await device.queue.onSubmittedWorkDone();
      this.check();
    }

    // Runs a section `times` times: up to steps_per_submit runs per compute pass and submit.
    run(section, times = 1) {
      const list = this.sections[section];
      if (!list) throw new Error('this program has no section ' + section);
      this.flushUniforms();
      let left = times;
      while (left > 0) {
        const n = Math.min(left, this.program.steps_per_submit);
        left -= n;
        const enc = this.device.createCommandEncoder();
        const pass = enc.beginComputePass({ label: 'shadergan' });
        for (let s = 0; s < n; s++) {
          for (const d of list) {
            pass.setPipeline(d.pipeline);
            pass.setBindGroup(0, d.group);
            pass.dispatchWorkgroups(d.groups[0], d.groups[1], d.groups[2]);
          }
        }
        pass.end();
        this.device.queue.submit([enc.finish()]);
      }
    }

    // Training steps (the step counter advances on the GPU, in the state buffer).
    train(steps) {
      this.run('train', steps);
      this.step += steps;
    }

    async readBytes(src, size) {
      const staging = this.device.createBuffer({ size, usage: U.MAP_READ | U.COPY_DST });
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(src, 0, staging, 0, size);
      this.device.queue.submit([enc.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      const out = new Uint8Array(staging.getMappedRange().slice(0));
      staging.unmap();
      staging.destroy();
      this.check();
      return out;
    }

    // A buffer's values, as f32.
    async read(buf) {
      const spec = this.program.buffers[buf];
      const half = spec.dtype === 'f16';
      const bytes = await this.readBytes(this.bufs[buf], bufferSize(spec.len * (half ? 2 : 4)));
      if (!half) return new Float32Array(bytes.buffer, 0, spec.len);
      const h = new Uint16Array(bytes.buffer, 0, spec.len);
      return Float32Array.from(h, halfToFloat);
    }

    write(buf, values) {
      const spec = this.program.buffers[buf];
      if (spec.dtype !== 'f32' || values.length !== spec.len) {
        throw new Error(`${spec.label}: ${values.length} values given, ${spec.len} f32 expected`);
      }
      this.device.queue.writeBuffer(this.bufs[buf], 0, Float32Array.from(values));
    }

    async readState() {
      const b = await this.readBytes(this.state, STATE_BYTES);
      const v = new DataView(b.buffer);
      return { step: v.getUint32(0, true), t_d: v.getUint32(4, true), t_g: v.getUint32(8, true) };
    }

    // The last step's losses and D's mean outputs (16 bytes read back).
    async stats() {
      const io = this.program.io;
      const s = await this.read(io.stats);
      const k = io.stats_slots;
      return { step: this.step, d_loss: s[k.d_loss], g_loss: s[k.g_loss], d_real: s[k.d_real], d_fake: s[k.d_fake] };
    }

    // G (eval mode, its weight average when kept) on latent rows `z`, as Trainer::sample: in
    // blocks of sample_rows, the last padded with zeros. A conditional G (io.sample_labels) reads
    // each row's class from `labels` (class indices; class 0 where not given) and its rows of
    // sample_width values hold z after the room for the class embedding. Returns rows x data_dim
    // values in the scale G trains on.
    async sample(z, labels) {
      const io = this.program.io;
      const rows = io.sample_rows;
      const L = io.latent_dim;
      const W = io.sample_width || L;
      const n = z.length / L;
      const out = new Float32Array(n * io.data_dim);
      for (let r0 = 0; r0 < n; r0 += rows) {
        const m = Math.min(rows, n - r0);
        const block = new Float32Array(rows * W);
        for (let r = 0; r < m; r++) block.set(z.subarray((r0 + r) * L, (r0 + r + 1) * L), r * W + W - L);
        this.write(io.sample_z, block);
        if (io.sample_labels !== undefined && io.sample_labels !== null) {
          const lab = new Float32Array(rows);
          for (let r = 0; labels && r < m; r++) lab[r] = labels[r0 + r];
          this.write(io.sample_labels, lab);
        }
        this.run('sample', 1);
        const y = await this.read(io.sample_out);
        out.set(y.subarray(0, m * io.data_dim), r0 * io.data_dim);
      }
      return out;
    }

    // D's logits on the grid (2-D data), row 0 at the top.
    async grid() {
      const g = this.program.io.grid;
      if (!g) return null;
      this.run('grid', 1);
      return this.read(g.out);
    }

    destroy() {
      this.destroyed = true;
      this.device.destroy();
    }
  }

  SG.Player = Player;
  SG.f32Of = f32Of;
  SG.bytesOf = bytesOf;
})(typeof window !== 'undefined' ? window : globalThis);
