// What the browser tests share: headless Chromium with WebGPU (SwiftShader on the CPU here), a
// static server on 127.0.0.1, the shadergan binary, and readers for what it writes (metrics.csv,
// safetensors, .npy) and for the tolerance table (src/kernels/tolerance.rs, the one table).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import { chromium } from 'playwright-core';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = process.env.SHADERGAN_BIN || path.join(REPO, 'target/release/shadergan');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const temps = [];

// A fresh folder under the system's temporary one, removed by `removeTemps`.
export function tempDir(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `shadergan-web-${name}-`));
  temps.push(dir);
  return dir;
}

export function removeTemps() {
  for (const dir of temps.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

// Runs the shadergan binary; throws with its stderr when it fails.
export function shadergan(args, env = {}) {
  if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run cargo build --release first (or set SHADERGAN_BIN)`);
  const r = spawnSync(BIN, args, { encoding: 'utf8', env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`shadergan ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stderr;
}

// Runs one of the repository's bash scripts with this binary; returns its stderr.
export function script(args) {
  const r = spawnSync('bash', args, { cwd: REPO, encoding: 'utf8', env: { ...process.env, SHADERGAN_BIN: BIN } });
  if (r.status !== 0) throw new Error(`bash ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stderr;
}

// The native GPU backend, as CI runs it (lavapipe), unless the environment chose another.
export const GPU_ENV = {
  WGPU_BACKEND: process.env.WGPU_BACKEND || 'vulkan',
  WGPU_ADAPTER_NAME: process.env.WGPU_ADAPTER_NAME || 'llvmpipe',
};

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--enable-unsafe-webgpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

// A page that records console errors, uncaught exceptions and failed requests.
export async function openPage(browser, url) {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') page.problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => page.problems.push('uncaught: ' + e.message));
  page.on('requestfailed', (r) => page.problems.push('request failed: ' + r.url()));
  await page.goto(url);
  await page.waitForFunction(() => window.shadergan && window.shadergan.ready, null, { timeout: 60_000 });
  await page.evaluate(() => window.shadergan.ready);
  const error = await page.textContent('#error');
  if (error) throw new Error('the page says: ' + error);
  return page;
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png' };

// Serves `root` on 127.0.0.1 (a free port); returns { url, close }.
export function serve(root) {
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = path.join(root, rel.endsWith('/') ? rel + 'index.html' : rel);
    if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ url: `http://127.0.0.1:${server.address().port}/`, close: () => new Promise((r) => server.close(r)) })
    )
  );
}

// metrics.csv as rows of numbers by column name.
export function readMetrics(file) {
  const [head, ...lines] = fs.readFileSync(file, 'utf8').trim().split('\n');
  const cols = head.split(',');
  return lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [cols[i], Number(v)])));
}

// A tolerance from src/kernels/tolerance.rs: { rel, abs }.
export function tolerance(name) {
  const text = fs.readFileSync(path.join(REPO, 'src/kernels/tolerance.rs'), 'utf8');
  const m = text.match(new RegExp(`\\("${name}", tol\\(([^,]+), ([^)]+)\\)\\)`));
  if (!m) throw new Error(`no tolerance ${name} in src/kernels/tolerance.rs`);
  return { rel: Number(m[1]), abs: Number(m[2]) };
}

// As kernels::tolerance::compare: |got - want| <= abs + rel |want| everywhere; throws naming the
// worst value.
export function assertClose(what, got, want, t) {
  if (got.length !== want.length) throw new Error(`${what}: ${got.length} values, ${want.length} expected`);
  let worst = null;
  let fails = 0;
  for (let i = 0; i < got.length; i++) {
    const [g, w] = [got[i], want[i]];
    const ok = Number.isFinite(g) && Number.isFinite(w) ? Math.abs(g - w) <= t.abs + t.rel * Math.abs(w) : Object.is(g, w);
    if (!ok) {
      fails++;
      const ex = Math.abs(g - w);
      if (!worst || !(ex <= worst.ex)) worst = { i, ex };
    }
  }
  if (worst) {
    throw new Error(
      `${what}: ${fails} of ${got.length} values differ beyond rel ${t.rel} / abs ${t.abs}; worst at ${worst.i}: browser ${got[worst.i]} vs native ${want[worst.i]}`
    );
  }
}

// The f32 tensors of a safetensors file: { name: Float32Array }.
export function readSafetensors(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__' || t.dtype !== 'F32') continue;
    const [a, b] = t.data_offsets;
    const bytes = buf.subarray(8 + n + a, 8 + n + b);
    out[name] = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  }
  return { header, tensors: out };
}

// A .npy file: { shape, descr, data (Uint8Array or Float32Array) }.
export function readNpy(file) {
  let buf = fs.readFileSync(file);
  if (file.endsWith('.gz')) buf = zlib.gunzipSync(buf);
  const len = buf.readUInt16LE(8);
  const header = buf.subarray(10, 10 + len).toString('latin1');
  const descr = header.match(/'descr': '([^']+)'/)[1];
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  const body = buf.subarray(10 + len);
  const data = descr === '|u1' ? new Uint8Array(body) : new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
  return { shape, descr, data };
}

// Writes a .npy (version 1.0) of uint8 or float32 values.
export function writeNpy(file, shape, data) {
  const descr = data instanceof Uint8Array ? '|u1' : '<f4';
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const head = Buffer.alloc(10);
  Buffer.from([0x93, ...Buffer.from('NUMPY'), 1, 0]).copy(head);
  head.writeUInt16LE(header.length, 8);
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

// The first `n` of the built-in digits (assets/mnist10k.npy.gz) as a .npy file.
export function digitsNpy(file, n) {
  const { shape, data } = readNpy(path.join(REPO, 'assets/mnist10k.npy.gz'));
  const per = shape.slice(1).reduce((a, b) => a * b, 1);
  writeNpy(file, [n, ...shape.slice(1)], data.subarray(0, n * per));
  return file;
}

// G's and D's parameters in the order of their flat buffers (checkpoint names in `names`).
export function flatParams(tensors, net, names) {
  const parts = names.filter((n) => n.startsWith(net + '.')).map((n) => tensors[n]);
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
