// The playground's pictures, drawn on canvases: line charts, the 2-D view (D's output as a heat
// map under the real and generated points, as GAN Lab draws it) and image grids. Display only:
// every value drawn was computed by shadergan's WGSL (web/player.js).
(function (global) {
  'use strict';
  const SG = (global.ShaderGAN = global.ShaderGAN || {});

  const REAL = [46, 160, 67];
  const FAKE = [137, 87, 229];

  function fit(canvas) {
    const ratio = global.devicePixelRatio || 1;
    const w = canvas.clientWidth || canvas.width;
    const h = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return { ctx, w, h };
  }

  // series: [{label, color, points: [[x, y], ...]}]
  function lineChart(canvas, series, title) {
    const { ctx, w, h } = fit(canvas);
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 44, r: 8, t: 20, b: 18 };
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (const s of series) {
      for (const [x, y] of s.points) {
        if (!Number.isFinite(y)) continue;
        x0 = Math.min(x0, x);
        x1 = Math.max(x1, x);
        y0 = Math.min(y0, y);
        y1 = Math.max(y1, y);
      }
    }
    ctx.fillStyle = '#444';
    ctx.font = '12px system-ui, sans-serif';
    ctx.fillText(title, pad.l, 13);
    if (!(x1 >= x0)) return;
    if (x1 === x0) x1 = x0 + 1;
    if (y1 - y0 < 1e-6) {
      y0 -= 0.5;
      y1 += 0.5;
    }
    const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
    const Y = (y) => h - pad.b - ((y - y0) / (y1 - y0)) * (h - pad.t - pad.b);
    ctx.strokeStyle = '#ddd';
    ctx.lineWidth = 1;
    ctx.fillStyle = '#777';
    ctx.font = '10px system-ui, sans-serif';
    for (let k = 0; k <= 4; k++) {
      const y = y0 + ((y1 - y0) * k) / 4;
      ctx.beginPath();
      ctx.moveTo(pad.l, Y(y));
      ctx.lineTo(w - pad.r, Y(y));
      ctx.stroke();
      ctx.fillText(y.toPrecision(3), 2, Y(y) + 3);
    }
    ctx.fillText(String(Math.round(x0)), pad.l, h - 4);
    ctx.fillText(String(Math.round(x1)), w - pad.r - 30, h - 4);
    let lx = pad.l + 120;
    for (const s of series) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      s.points.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
      ctx.stroke();
      ctx.fillStyle = s.color;
      ctx.font = '12px system-ui, sans-serif';
      ctx.fillText(s.label, lx, 13);
      lx += ctx.measureText(s.label).width + 16;
    }
  }

  const sigmoid = (z) => 1 / (1 + Math.exp(-z));

  // The 2-D view: `heat` (D's logits on a size x size grid over `extent`, row 0 at the top) as
  // colour (green where D says real, purple where it says fake), then the real points and the
  // generated ones. Points are (x, y) pairs in the data's scale.
  function pointsView(canvas, { extent, heat, size, real, fake }) {
    const { ctx, w, h } = fit(canvas);
    const side = Math.min(w, h);
    ctx.clearRect(0, 0, w, h);
    if (heat) {
      const img = new ImageData(size, size);
      for (let i = 0; i < size * size; i++) {
        const p = sigmoid(heat[i]);
        const c = p >= 0.5 ? REAL : FAKE;
        const a = Math.abs(p - 0.5) * 2;
        img.data.set([255 + (c[0] - 255) * a * 0.55, 255 + (c[1] - 255) * a * 0.55, 255 + (c[2] - 255) * a * 0.55, 255], 4 * i);
      }
      const tmp = document.createElement('canvas');
      tmp.width = tmp.height = size;
      tmp.getContext('2d').putImageData(img, 0, 0);
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(tmp, 0, 0, side, side);
    } else {
      ctx.fillStyle = '#fafafa';
      ctx.fillRect(0, 0, side, side);
    }
    const [x0, x1, y0, y1] = extent;
    const X = (x) => ((x - x0) / (x1 - x0)) * side;
    const Y = (y) => side - ((y - y0) / (y1 - y0)) * side;
    const dots = (pts, rgb, r) => {
      ctx.fillStyle = `rgba(${rgb[0]},${rgb[1]},${rgb[2]},0.75)`;
      for (let i = 0; i + 1 < pts.length; i += 2) {
        ctx.beginPath();
        ctx.arc(X(pts[i]), Y(pts[i + 1]), r, 0, 2 * Math.PI);
        ctx.fill();
      }
    };
    if (real) dots(real, [20, 110, 40], 1.6);
    if (fake) dots(fake, FAKE.map((v) => v * 0.8), 2.0);
    ctx.strokeStyle = '#bbb';
    ctx.strokeRect(0.5, 0.5, side - 1, side - 1);
  }

  // Samples (rows of channel planes, in [0, 1]) as a grid of `cols` columns; returns the cell
  // size so that clicks can be mapped back to a sample.
  function imageGrid(canvas, pixels, n, image, cols, marks) {
    const { ctx, w } = fit(canvas);
    const { channels: c, height: hh, width: ww } = image;
    const rows = Math.ceil(n / cols);
    const cell = Math.floor(w / cols);
    const img = new ImageData(cols * ww, rows * hh);
    const dim = c * hh * ww;
    for (let k = 0; k < n; k++) {
      const ox = (k % cols) * ww;
      const oy = Math.floor(k / cols) * hh;
      for (let y = 0; y < hh; y++) {
        for (let x = 0; x < ww; x++) {
          const at = 4 * ((oy + y) * cols * ww + ox + x);
          for (let ch = 0; ch < 3; ch++) {
            const v = pixels[k * dim + (c === 3 ? ch : 0) * hh * ww + y * ww + x];
            img.data[at + ch] = Math.round(Math.min(1, Math.max(0, v)) * 255);
          }
          img.data[at + 3] = 255;
        }
      }
    }
    const tmp = document.createElement('canvas');
    tmp.width = cols * ww;
    tmp.height = rows * hh;
    tmp.getContext('2d').putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    // Each sample in its cell, one pixel of white around it.
    for (let k = 0; k < n; k++) {
      const [cx, cy] = [(k % cols) * cell, Math.floor(k / cols) * cell];
      ctx.drawImage(tmp, (k % cols) * ww, Math.floor(k / cols) * hh, ww, hh, cx + 1, cy + 1, cell - 2, cell - 2);
    }
    for (const [k, color] of marks || []) {
      ctx.strokeStyle = color;
      ctx.lineWidth = 3;
      ctx.strokeRect((k % cols) * cell + 1.5, Math.floor(k / cols) * cell + 1.5, cell - 3, cell - 3);
    }
    return cell;
  }

  SG.views = { lineChart, pointsView, imageGrid, sigmoid, REAL, FAKE };
})(typeof window !== 'undefined' ? window : globalThis);
