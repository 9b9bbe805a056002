// The page around the player: the playground (presets from web/presets/index.js, made by
// web/make-presets.sh) or one exported program (export-web's index.html). Controls, the live
// charts, the 2-D view or the sample grid, and the latent explorer. window.shadergan exposes the
// app to tests (tests/web/).
(function (global) {
  'use strict';
  const SG = (global.ShaderGAN = global.ShaderGAN || {});
  const V = () => SG.views;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  // Loads a program.js with a script tag (works from file://) and returns what it registered.
  function loadProgram(src) {
    return new Promise((resolve, reject) => {
      const list = (global.SHADERGAN_PROGRAMS = global.SHADERGAN_PROGRAMS || []);
      const before = list.length;
      const s = el('script', { src });
      s.onload = () => (list.length > before ? resolve(list[list.length - 1]) : reject(new Error(src + ' registered no program')));
      s.onerror = () => reject(new Error('cannot load ' + src));
      document.head.append(s);
    });
  }

  function describe(cfg) {
    const m = cfg.model;
    const act = (a) => String(a).replace('_', ' ');
    const d = cfg.model.data_dim * m.pack;
    const net =
      m.arch === 'dcgan'
        ? `DCGAN, G width ${m.g_channels}, D width ${m.d_channels}`
        : `G ${[m.latent_dim, ...m.g_hidden, m.data_dim].join('→')} (${act(m.g_activation)}, out ${act(m.g_output)}) · ` +
          `D ${[d, ...m.d_hidden, 1].join('→')} (${act(m.d_activation)})`;
    const parts = [net, `batch ${cfg.batch_size}`];
    if (m.classes > 0) parts.push(`conditional, ${m.classes} classes`);
    if (m.pack > 1) parts.push(`pack ${m.pack}`);
    if (cfg.loss) parts.push(`loss ${cfg.loss}`);
    if (cfg.d_dropout > 0) parts.push(`D dropout ${cfg.d_dropout}`);
    if (cfg.d_steps > 1) parts.push(`${cfg.d_steps} D steps`);
    if (cfg.precision === 'f16') parts.push('f16');
    return parts.join(' · ');
  }

  class App {
    constructor(root, presets) {
      this.root = root;
      this.presets = presets || null;
      this.player = null;
      this.running = false;
      this.history = [];
      this.stepsPerFrame = 1;
      this.sel = [0, 1];
      this.t = 0.5;
      this.build();
    }

    build() {
      const controls = el('div', { class: 'controls' });
      if (this.presets) {
        this.dataSel = el('select', { id: 'data', onchange: () => this.fillModels() });
        for (const d of [...new Set(this.presets.map((p) => p.data))]) this.dataSel.append(el('option', { value: d }, d));
        this.modelSel = el('select', { id: 'model', onchange: () => this.loadPreset(this.modelSel.value) });
        controls.append(el('label', {}, 'data ', this.dataSel), el('label', {}, 'model ', this.modelSel));
      }
      this.seedSel = el('select', { id: 'seed', onchange: () => this.reset() });
      this.runBtn = el('button', { id: 'run', onclick: () => (this.running ? this.pause() : this.start()) }, 'Train');
      this.stepBtn = el('button', { id: 'step', onclick: () => this.singleStep() }, 'Step');
      this.resetBtn = el('button', { id: 'reset', onclick: () => this.reset() }, 'Reset');
      this.status = el('span', { id: 'status', class: 'status' }, 'loading…');
      this.seedLabel = el('label', {}, 'seed ', this.seedSel);
      // A conditional generator: which class the grid asks for (each row its own, or one).
      this.classSel = el('select', { id: 'class', onchange: () => this.refresh().then(() => this.showLatent()) });
      this.classLabel = el('label', { hidden: true }, 'class ', this.classSel);
      controls.append(this.seedLabel, this.classLabel, this.runBtn, this.stepBtn, this.resetBtn, this.status);
      this.knobs = el('div', { class: 'knobs', id: 'knobs' });
      this.title = el('h2', { id: 'title' });
      this.about = el('p', { class: 'about', id: 'about' });
      this.mainView = el('canvas', { id: 'view', class: 'view', width: 480, height: 480 });
      this.caption = el('p', { class: 'caption', id: 'caption' });
      this.mainView.addEventListener('click', (e) => this.pick(e));
      this.lossChart = el('canvas', { id: 'losses', class: 'chart', width: 460, height: 200 });
      this.dChart = el('canvas', { id: 'dout', class: 'chart', width: 460, height: 200 });
      this.latent = el('div', { class: 'latent', id: 'latent' });
      this.error = el('p', { class: 'error', id: 'error' });
      this.root.append(
        this.title,
        controls,
        this.knobs,
        this.error,
        el('div', { class: 'views' }, el('div', { class: 'panel' }, this.mainView, this.caption), (this.charts = el('div', { class: 'panel charts' }, this.lossChart, this.dChart))),
        this.latent,
        this.about
      );
    }

    fail(e) {
      console.error(e);
      this.error.textContent = String(e.message || e);
      this.pause();
    }

    fillModels() {
      const data = this.dataSel.value;
      this.modelSel.replaceChildren(...this.presets.filter((p) => p.data === data).map((p) => el('option', { value: p.id }, p.label)));
      return this.loadPreset(this.modelSel.value);
    }

    async loadPreset(id) {
      const preset = this.presets.find((p) => p.id === id);
      if (this.dataSel.value !== preset.data) {
        this.dataSel.value = preset.data;
        this.modelSel.replaceChildren(...this.presets.filter((p) => p.data === preset.data).map((p) => el('option', { value: p.id }, p.label)));
      }
      this.modelSel.value = id;
      this.status.textContent = 'loading ' + preset.label + '…';
      try {
        await this.open(await loadProgram(preset.file));
      } catch (e) {
        this.fail(e);
      }
    }

    // Compiles `program` on a fresh device and shows it.
    async open(program) {
      this.pause();
      if (this.player) this.player.destroy();
      this.player = null;
      this.program = program;
      this.error.textContent = '';
      this.title.textContent = program.title;
      this.training = !!program.sections.train;
      [this.runBtn, this.stepBtn, this.resetBtn, this.seedLabel, this.charts].forEach((b) => (b.hidden = !this.training));
      this.seedSel.replaceChildren(...program.seeds.map((s, i) => el('option', { value: i }, String(s.seed))));
      this.latents = SG.f32Of(program.views.latents).slice();
      this.fillClasses(program.io);
      this.sel = [0, 1];
      this.drawLatent = null;
      this.player = await SG.Player.open(program);
      const a = this.player.adapter.info || {};
      this.about.textContent =
        describe(program.config) +
        ` · data ${program.data.name}` +
        (program.data.n ? ` (${program.data.n} samples)` : '') +
        ` · WebGPU: ${[a.vendor, a.architecture, a.description].filter(Boolean).join(' ') || 'adapter'}` +
        ` · shadergan ${program.shadergan_version}`;
      this.buildKnobs();
      this.caption.textContent =
        program.io.data_dim === 2
          ? 'Green dots: real data. Purple dots: G(z). Background: D(x) on a grid, green where D says real, purple where it says fake.'
          : program.data.image
          ? "G's samples from 64 fixed latent vectors (its weight average's, when it keeps one)." +
            (program.io.classes ? ' Pick the class G is asked for above: each row its own class, or one class for all.' : '')
          : '';
      this.history = [];
      await this.refresh();
      this.showLatent();
      this.status.textContent = this.training ? 'step 0' : `step ${program.source.step}`;
      return this.player;
    }

    buildKnobs() {
      this.knobs.replaceChildren();
      for (const k of this.program.knobs) {
        const input = el('input', { type: 'number', id: 'knob-' + k.name, value: String(k.value), step: 'any' });
        input.addEventListener('change', () => {
          const v = Number(input.value);
          if (Number.isFinite(v)) this.player.setKnob(k.name, v);
        });
        this.knobs.append(el('label', { title: k.label }, k.label + ' ', input));
      }
    }

    async reset() {
      this.pause();
      try {
        await this.player.reset(Number(this.seedSel.value || 0));
        this.history = [];
        await this.refresh();
        this.status.textContent = 'step 0';
      } catch (e) {
        this.fail(e);
      }
    }

    // Runs `n` steps, reading the statistics after each; returns them (tests use this).
    async steps(n) {
      const out = [];
      for (let i = 0; i < n; i++) {
        this.player.train(1);
        out.push(await this.player.stats());
      }
      this.history.push(...out);
      this.status.textContent = `step ${this.player.step}`;
      return out;
    }

    async singleStep() {
      if (this.running) return;
      try {
        await this.steps(1);
        await this.refresh();
      } catch (e) {
        this.fail(e);
      }
    }

    start() {
      if (!this.player || this.running) return;
      this.running = true;
      this.runBtn.textContent = 'Pause';
      this.loop().catch((e) => this.fail(e));
    }

    pause() {
      this.running = false;
      if (this.runBtn) this.runBtn.textContent = 'Train';
    }

    // Trains in chunks sized to take about 50 ms each, reading 16 bytes of statistics per chunk,
    // and redraws the views every 300 ms.
    async loop() {
      let lastView = 0;
      const t0 = performance.now();
      const s0 = this.player.step;
      while (this.running) {
        const t = performance.now();
        const n = this.stepsPerFrame;
        this.player.train(n);
        const s = await this.player.stats();
        this.history.push(s);
        const dt = performance.now() - t;
        this.stepsPerFrame = Math.max(1, Math.min(256, Math.round(n * (dt > 80 ? 0.7 : dt < 30 ? 1.4 : 1) + (dt < 30 ? 1 : 0))));
        const rate = (this.player.step - s0) / ((performance.now() - t0) / 1000);
        this.status.textContent = `step ${this.player.step} · ${rate.toFixed(1)} steps/s`;
        if (performance.now() - lastView > 300) {
          await this.refresh();
          lastView = performance.now();
        }
        if (!Number.isFinite(s.d_loss) || !Number.isFinite(s.g_loss)) {
          throw new Error(`training diverged at step ${s.step} (a loss is not finite); lower a learning rate and reset`);
        }
        await new Promise((r) => requestAnimationFrame(r));
      }
      await this.refresh();
    }

    // The class list of a conditional program ("each row" first), hidden for the others.
    fillClasses(io) {
      const names = io.class_names && io.class_names.length ? io.class_names : Array.from({ length: io.classes || 0 }, (_, k) => String(k));
      this.classSel.replaceChildren(
        el('option', { value: -1 }, 'each row its own'),
        ...names.map((name, k) => el('option', { value: k }, `${k}: ${name}`))
      );
      this.classLabel.hidden = !io.classes;
    }

    // The class sample k of the 8-wide grid asks for: its row's (row r: class r mod classes), or
    // the one picked. Undefined for an unconditional program.
    classOf(k) {
      const c = this.program.io.classes;
      if (!c) return undefined;
      const picked = Number(this.classSel.value);
      return picked >= 0 ? picked : Math.floor(k / 8) % c;
    }

    // The classes of the grid's first n samples (undefined when unconditional).
    gridClasses(n) {
      return this.program.io.classes ? Float32Array.from({ length: n }, (_, k) => this.classOf(k)) : undefined;
    }

    // G's samples (in [0, 1] for images, the data's scale otherwise) for latent rows `z`, each
    // asked for the class in `labels` (a conditional G; class 0 where none is given).
    async samples(z, labels) {
      const y = await this.player.sample(z, labels);
      const d = this.program.data;
      const div = d.u8 ? 255 : 1;
      return y.map((v) => (v - d.shift) / d.scale / div);
    }

    async refresh() {
      if (!this.player) return;
      const d = this.program.data;
      if (this.program.io.data_dim === 2) {
        const fake = await this.samples(this.latents);
        const heat = await this.player.grid();
        const g = this.program.io.grid;
        const extent = g ? g.extent : [-2, 2, -2, 2];
        const real = d.preview ? SG.f32Of(d.preview) : null;
        V().pointsView(this.mainView, { extent, heat, size: g && g.size, real, fake });
      } else if (d.image) {
        const pix = await this.samples(this.latents.subarray(0, 64 * this.program.io.latent_dim), this.gridClasses(64));
        const marks = [[this.sel[0], '#2ea043'], [this.sel[1], '#8957e5']];
        this.cell = V().imageGrid(this.mainView, pix, 64, d.image, 8, marks);
        if (this.drawLatent) await this.drawLatent();
      }
      const h = this.history;
      V().lineChart(this.lossChart, [
        { label: 'D loss', color: '#d9480f', points: h.map((s) => [s.step, s.d_loss]) },
        { label: 'G loss', color: '#1c7ed6', points: h.map((s) => [s.step, s.g_loss]) },
      ], 'losses');
      V().lineChart(this.dChart, [
        { label: 'D(x)', color: '#2ea043', points: h.map((s) => [s.step, s.d_real]) },
        { label: 'D(G(z))', color: '#8957e5', points: h.map((s) => [s.step, s.d_fake]) },
      ], "D's mean output");
    }

    // Image samples: a click picks sample A, a shift-click sample B.
    pick(e) {
      if (!this.cell || !this.program.data.image) return;
      const r = this.mainView.getBoundingClientRect();
      const k = Math.floor((e.clientY - r.top) / this.cell) * 8 + Math.floor((e.clientX - r.left) / this.cell);
      if (k < 0 || k >= 64) return;
      this.sel[e.shiftKey ? 1 : 0] = k;
      this.drawLatent = null;
      this.refresh().then(() => this.showLatent());
    }

    // The latent explorer (image programs): interpolation between samples A and B, and sliders
    // for A's first latent values.
    showLatent() {
      const d = this.program.data;
      this.latent.replaceChildren();
      if (!d.image) return;
      const L = this.program.io.latent_dim;
      const canvas = el('canvas', { id: 'interp', class: 'strip', width: 640, height: 80 });
      const slider = el('input', { type: 'range', id: 't', min: 0, max: 1, step: 0.01, value: this.t });
      const big = el('canvas', { id: 'mix', class: 'mix', width: 112, height: 112 });
      const za = () => this.latents.subarray(this.sel[0] * L, (this.sel[0] + 1) * L);
      const zb = () => this.latents.subarray(this.sel[1] * L, (this.sel[1] + 1) * L);
      const draw = async () => {
        const frames = 8;
        const z = new Float32Array(frames * L + L);
        for (let f = 0; f < frames; f++) {
          const t = f / (frames - 1);
          for (let i = 0; i < L; i++) z[f * L + i] = (1 - t) * za()[i] + t * zb()[i];
        }
        for (let i = 0; i < L; i++) z[frames * L + i] = (1 - this.t) * za()[i] + this.t * zb()[i];
        // A conditional G walks between A and B within A's class.
        const k = this.classOf(this.sel[0]);
        const pix = await this.samples(z, k === undefined ? undefined : new Float32Array(frames + 1).fill(k));
        V().imageGrid(canvas, pix, frames, d.image, frames);
        V().imageGrid(big, pix.subarray(frames * d.image.channels * d.image.height * d.image.width), 1, d.image, 1);
      };
      slider.addEventListener('input', () => {
        this.t = Number(slider.value);
        draw();
      });
      const sliders = el('div', { class: 'sliders' });
      for (let i = 0; i < Math.min(L, 16); i++) {
        const s = el('input', { type: 'range', min: -3, max: 3, step: 0.05, value: za()[i] });
        s.addEventListener('input', () => {
          za()[i] = Number(s.value);
          this.refresh();
        });
        sliders.append(el('label', {}, `z${i} `, s));
      }
      this.latent.append(
        el('p', {}, 'Click a sample to make it A, shift-click for B: the strip walks the straight line from A to B in latent space.'),
        canvas,
        el('div', { class: 'mixrow' }, el('label', {}, 'A ← t → B ', slider), big),
        el('p', {}, `A's first ${Math.min(L, 16)} latent values:`),
        sliders
      );
      this.drawLatent = draw;
      return draw();
    }
  }

  function root() {
    return document.getElementById('app');
  }

  // The playground: presets listed by web/presets/index.js.
  SG.startPlayground = async function () {
    const presets = global.SHADERGAN_PRESETS;
    if (!presets || !presets.length) {
      root().append(
        el('p', { class: 'error', id: 'error' }, 'No presets here yet. Build them with ', el('code', {}, 'bash web/make-presets.sh'), ' (after ', el('code', {}, 'cargo build --release'), '), then reload.')
      );
      return;
    }
    const app = new App(root(), presets);
    global.shadergan = { app, ready: app.fillModels() };
    await global.shadergan.ready;
  };

  // One exported program (export-web's index.html).
  SG.startSingle = async function () {
    const list = global.SHADERGAN_PROGRAMS || [];
    const app = new App(root(), null);
    global.shadergan = { app };
    global.shadergan.ready = list.length
      ? app.open(list[list.length - 1]).catch((e) => app.fail(e))
      : Promise.resolve(app.fail(new Error('program.js is missing')));
    await global.shadergan.ready;
  };

  SG.App = App;
  SG.loadProgram = loadProgram;
})(typeof window !== 'undefined' ? window : globalThis);
