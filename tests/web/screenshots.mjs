// The playground's screenshots in docs/ (docs/playground.md shows them), taken in headless
// Chromium on SwiftShader like the tests: a few minutes of training in the page, so that the
// views show a GAN part of the way there.
//
//   cargo build --release && cd tests/web && npm ci && npm run screenshots
//
// SHADERGAN_SCREENSHOT_RUN=RUN_DIR takes the viewer's generator from a finished run instead of
// training one (the default run, `shadergan train`: 30 epochs of the digits MLP on the CPU
// backend, a few more minutes).
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO, launch, openPage, removeTemps, script, serve, shadergan, tempDir } from './helpers.mjs';

const DOCS = path.join(REPO, 'docs');

// Trains the loaded preset for `steps` steps in chunks, redrawing now and then.
async function train(page, steps, knobs = {}) {
  await page.evaluate(
    async ({ steps, knobs }) => {
      const app = window.shadergan.app;
      for (const [k, v] of Object.entries(knobs)) {
        app.player.setKnob(k, v);
        document.getElementById('knob-' + k).value = String(v);
      }
      const chunk = 25;
      for (let done = 0; done < steps; done += chunk) {
        app.player.train(chunk);
        app.history.push(await app.player.stats());
      }
      app.status.textContent = `step ${app.player.step}`;
      await app.refresh();
    },
    { steps, knobs }
  );
}

async function shot(page, name) {
  const file = path.join(DOCS, name);
  await page.screenshot({ path: file, fullPage: true });
  console.log('wrote', path.relative(REPO, file));
}

const site = tempDir('shots');
for (const f of fs.readdirSync(path.join(REPO, 'web'))) {
  if (/\.(html|js|css)$/.test(f)) fs.copyFileSync(path.join(REPO, 'web', f), path.join(site, f));
}
script(['web/make-presets.sh', path.join(site, 'presets')]);
const server = await serve(site);
const browser = await launch();
try {
  const page = await openPage(browser, server.url + 'index.html');
  await page.evaluate(() => window.shadergan.app.loadPreset('ring8-small'));
  await train(page, 3000, { lr: 1e-3, d_lr: 1e-3 });
  await shot(page, 'playground-ring8.png');
  await page.evaluate(() => window.shadergan.app.loadPreset('digits-small'));
  await train(page, 600, { lr: 1e-3, d_lr: 1e-3 });
  await shot(page, 'playground-digits.png');

  let run = process.env.SHADERGAN_SCREENSHOT_RUN;
  if (!run) {
    run = path.join(tempDir('shots-run'), 'run');
    shadergan(['train', '--backend', 'cpu', '--out', run, '--quiet']);
  }
  const out = path.join(tempDir('shots-export'), 'page');
  shadergan(['export-web', run, '--out', out, '--title', 'the default run (shadergan train), 30 epochs']);
  const viewer = await openPage(browser, pathToFileURL(path.join(out, 'index.html')).href);
  await viewer.evaluate(async () => {
    const app = window.shadergan.app;
    app.sel = [3, 12];
    app.t = 0.5;
    await app.refresh();
    await app.showLatent();
  });
  await shot(viewer, 'export-web-viewer.png');
} finally {
  await browser.close();
  await server.close();
  removeTemps();
}
