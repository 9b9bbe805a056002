//! The folder `export-web` writes: the page (index.html and the player, app and view scripts
//! from web/, built into the binary) and program.js, the recorded program as one JSON object
//! that the page loads with a plain script tag (so index.html opens from the disk, no server).
//! web/player.js documents the format it reads ("shadergan-web-1").

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use super::program::{self, Grid, Knob, Recorded, SeedVariant, GRID, REFRESH, SAMPLE, SECTIONS, TRAIN};
use super::{SampleExport, TrainExport};
use crate::backend::gpu::executor::MAX_STEPS_PER_SUBMIT;
use crate::backend::web::{Action, Dispatch, Recording};
use crate::config::TrainConfig;
use crate::data::toy::{self, Toy};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::ir::{BufId, DType, DataChunks, Res};
use crate::kernels::{self, Slot};
use crate::programs::gan::{SLOT_D_FAKE, SLOT_D_LOSS, SLOT_D_REAL, SLOT_G_LOSS};
use crate::programs::trainer::fixed_latents;
use crate::train::checkpoint;

/// The format program.js holds; web/player.js refuses others.
pub const FORMAT: &str = "shadergan-web-1";

/// The page's files, built into the binary: (name in the folder, contents).
pub const PAGE_FILES: &[(&str, &str)] = &[
    ("index.html", include_str!("../../../web/program.html")),
    ("player.js", include_str!("../../../web/player.js")),
    ("views.js", include_str!("../../../web/views.js")),
    ("app.js", include_str!("../../../web/app.js")),
    ("style.css", include_str!("../../../web/style.css")),
];

/// Latent rows the page draws its sample view from: an 8x8 grid for images, 1,024 points
/// (four sampling runs) for 2-D data.
fn view_rows(cfg: &TrainConfig) -> usize {
    if cfg.model.data_dim == 2 {
        1024
    } else {
        64
    }
}

/// Standard base64 (RFC 4648, with padding): the page decodes it with `atob`.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                out.push(ABC[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A value as JSON with each f32 written as its shortest decimal (0.0002, as config.json has it,
/// not the f64 0.000199999994947...).
fn exact(v: &impl serde::Serialize) -> Result<Value> {
    serde_json::to_string(v).and_then(|t| serde_json::from_str(&t)).map_err(|e| Error::Io(e.to_string()))
}

fn f32s(values: &[f32]) -> String {
    base64(bytemuck::cast_slice(values))
}

/// Refuses an --out that holds something, unless --overwrite.
pub fn check_out(out: &Path, overwrite: bool) -> Result<()> {
    if out.is_file() {
        return Err(Error::input(format!("--out {}: a file; export-web writes a folder", out.display())));
    }
    let busy = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    if busy && !overwrite {
        return Err(Error::input(format!(
            "--out {} is not empty; choose another folder, or pass --overwrite to replace its files",
            out.display()
        )));
    }
    Ok(())
}

/// Buffer ids as the folder numbers them (a sampling export keeps only what its sections bind).
struct Ids(BTreeMap<BufId, usize>);

impl Ids {
    fn all(n: usize) -> Self {
        Ids((0..n).map(|b| (b, b)).collect())
    }

    fn of(&self, b: BufId) -> Result<usize> {
        self.0.get(&b).copied().ok_or_else(|| Error::gpu(format!("internal error: buffer {b} is not exported")))
    }
}

fn dispatch_json(d: &Dispatch, ids: &Ids) -> Result<Value> {
    let mut bind = vec![];
    for &(slot, r) in &d.bindings {
        bind.push(match r {
            Res::Buf(b) => json!({ "slot": slot, "buf": ids.of(b)? }),
            Res::State => json!({ "slot": slot, "state": true }),
            Res::Data(k) => json!({ "slot": slot, "data": k }),
        });
    }
    bind.extend(d.scratch.iter().map(|slot| json!({ "slot": slot, "scratch": true })));
    let constants: serde_json::Map<String, Value> =
        d.constants.iter().map(|&(k, v)| (k.to_string(), json!(v))).collect();
    Ok(json!({
        "entry": d.entry,
        "constants": constants,
        "uniform": d.uniform.as_deref().map(base64),
        "bind": bind,
        "groups": d.groups,
    }))
}

/// The WGSL of every family the sections use (as the GPU executor compiles it) and each entry
/// point's binding slots.
fn kernels_json(rec: &Recording, sections: &[usize]) -> (Value, Value) {
    let (mut families, mut entries) = (serde_json::Map::new(), serde_json::Map::new());
    for d in sections.iter().flat_map(|&s| &rec.sections[s]) {
        let Some((family, e)) = kernels::entry(d.entry) else { continue };
        families.entry(family.name).or_insert_with(
            || json!({ "source": kernels::source(family), "unchecked": family.unchecked, "f16": family.f16 }),
        );
        let slots: Vec<Value> = e
            .slots
            .iter()
            .map(|s| match s {
                Slot::Uniform(b) => json!([b, "uniform"]),
                Slot::Read(b) => json!([b, "read"]),
                Slot::ReadWrite(b) => json!([b, "rw"]),
            })
            .collect();
        entries.insert(d.entry.to_string(), json!({ "family": family.name, "slots": slots }));
    }
    (Value::Object(families), Value::Object(entries))
}

/// The initial actions; a write of the values an earlier write wrote (G's weight average starts
/// as G) names that buffer instead of repeating them.
fn actions_json(actions: &[Action], ids: &Ids, kept: &[usize]) -> Result<Vec<Value>> {
    let mut out = vec![];
    let mut written: Vec<(usize, &Vec<f32>)> = vec![];
    for a in actions {
        match a {
            Action::Write { buf, values } if ids.0.contains_key(buf) => {
                let id = ids.of(*buf)?;
                match written.iter().find(|(_, v)| v.len() == values.len() && *v == values) {
                    Some(&(from, _)) => out.push(json!({ "write": id, "copy": from })),
                    None => out.push(json!({ "write": id, "f32": f32s(values) })),
                }
                written.push((id, values));
            }
            Action::Write { .. } => {}
            Action::State(s) => out.push(json!({ "state": base64(bytemuck::bytes_of(s)) })),
            Action::Run { section, times } if kept.contains(section) => {
                out.push(json!({ "run": SECTIONS[*section], "times": times }))
            }
            Action::Run { section, .. } => {
                return Err(Error::gpu(format!("internal error: restoring runs section {}", SECTIONS[*section])))
            }
        }
    }
    Ok(out)
}

fn grid_json(grid: &Option<Grid>, ids: &Ids) -> Result<Value> {
    Ok(match grid {
        Some(g) => json!({ "x": ids.of(g.x)?, "out": ids.of(g.out)?, "size": g.size, "extent": exact(&g.extent)? }),
        None => Value::Null,
    })
}

/// Up to 2,000 real points (data scale), for the 2-D view.
fn preview(data: &Dataset) -> Option<String> {
    (data.dim == 2).then(|| {
        let n = data.n.min(2000);
        f32s(&(0..n).flat_map(|r| [data.get(r, 0), data.get(r, 1)]).collect::<Vec<_>>())
    })
}

fn data_json(cfg: &TrainConfig, data: Option<&Dataset>, name: &str, chunks: usize) -> Value {
    json!({
        "name": name,
        "n": data.map(|d| d.n),
        "dim": cfg.model.data_dim,
        "u8": cfg.data_u8,
        "image": cfg.image,
        "scale": cfg.data_scale,
        "shift": cfg.data_shift,
        "chunks": chunks,
        "preview": data.and_then(preview),
    })
}

/// The parts every program has: format, buffers, kernels, sections, what to read back.
fn common_json(r: &Recorded, rec: &Recording, ids: &Ids, sections: &[usize]) -> Result<Value> {
    let p = &r.trainer.program;
    let cfg = crate::programs::trainer::Trainer::config(&r.trainer).clone();
    let buffers: Vec<Value> = ids
        .0
        .keys()
        .map(|&b| {
            let s = &rec.specs[b];
            json!({ "label": s.label, "len": s.len, "dtype": if s.dtype == DType::F16 { "f16" } else { "f32" } })
        })
        .collect();
    let mut secs = serde_json::Map::new();
    for &s in sections {
        let list: Result<Vec<Value>> = rec.sections[s].iter().map(|d| dispatch_json(d, ids)).collect();
        secs.insert(SECTIONS[s].into(), Value::Array(list?));
    }
    let (families, entries) = kernels_json(rec, sections);
    // The latents of the run's own sample grids (and scatter plots, which draw more rows).
    let z = fixed_latents(&cfg, view_rows(&cfg));
    Ok(json!({
        "format": FORMAT,
        "shadergan_version": env!("CARGO_PKG_VERSION"),
        "config": exact(&cfg)?,
        "needs_f16": rec.specs.iter().any(|s| s.dtype == DType::F16),
        "steps_per_submit": MAX_STEPS_PER_SUBMIT,
        "families": families,
        "entries": entries,
        "buffers": buffers,
        "sections": secs,
        "io": {
            "stats": if sections.contains(&TRAIN) { Some(ids.of(p.stats)?) } else { None },
            "stats_slots": { "d_loss": SLOT_D_LOSS, "g_loss": SLOT_G_LOSS, "d_real": SLOT_D_REAL, "d_fake": SLOT_D_FAKE },
            "sample_z": ids.of(p.sample_z)?,
            "sample_out": ids.of(p.sample_out)?,
            "sample_rows": p.sample_rows,
            "latent_dim": cfg.model.latent_dim,
            "data_dim": cfg.model.data_dim,
            "grid": grid_json(&r.grid, ids)?,
            // A conditional G: its rows are [class embedding; z] (z after the room for the
            // embedding) and it reads each row's class from sample_labels.
            "sample_width": cfg.model.g_input_dim(),
            "sample_labels": p.sample_labels.map(|b| ids.of(b)).transpose()?,
            "classes": cfg.model.classes,
            "class_names": cfg.class_names,
        },
        "views": { "rows": view_rows(&cfg), "latents": f32s(&z) },
        "tensors": tensors_json(r, ids),
    }))
}

/// Where each checkpoint tensor lives: its network's parameter buffer (and G's weight average)
/// and (name, offset, length) in it, as the checkpoint names them (`G.fc1.weight`).
fn tensors_json(r: &Recorded, ids: &Ids) -> Value {
    let p = &r.trainer.program;
    let net = |net: &crate::nn::Net, params: BufId, ema: Option<BufId>| {
        let list: Vec<Value> = net
            .tensors()
            .iter()
            .map(|t| json!([format!("{}.{}", net.name, t.name), t.off, t.shape.iter().product::<usize>()]))
            .collect();
        json!({ "params": ids.of(params).ok(), "ema": ema.and_then(|e| ids.of(e).ok()), "list": list })
    };
    json!({ "G": net(&p.g_net, p.g.params, p.g_ema.as_ref().map(|e| e.params)), "D": net(&p.d_net, p.d.params, None) })
}

fn toy_extent(toy: Option<Toy>, cfg: &TrainConfig) -> Result<Option<[f32; 4]>> {
    match toy {
        Some(t) if cfg.model.data_dim == 2 => Ok(Some(program::grid_extent(&t.dataset(cfg.seed, 10_000)?))),
        _ => Ok(None),
    }
}

/// A checkpoint's generator: the sampling section (and D's grid for a toy run), its weights.
pub fn sample_program(what: &SampleExport, title: Option<&str>) -> Result<Value> {
    let SampleExport { cfg, checkpoint: path, source, toy, step } = what;
    let ckpt = checkpoint::load(path)?;
    let extent = toy_extent(*toy, cfg)?;
    // As `generate`: the training step needs a data set to be built; sampling never reads it.
    let r = program::record(cfg, &DataChunks::whole(cfg.batch_size), cfg.data_u8, extent, Some(&ckpt.snapshot))?;
    let rec = r.recording()?;
    let mut kept = vec![SAMPLE];
    if !rec.sections[REFRESH].is_empty() {
        kept.push(REFRESH);
    }
    if r.grid.is_some() {
        kept.push(GRID);
    }
    let ids = Ids(program::used_buffers(&rec, &kept).into_iter().enumerate().map(|(i, b)| (b, i)).collect());
    let mut v = common_json(&r, &rec, &ids, &kept)?;
    let preview_data = match toy {
        Some(t) if cfg.model.data_dim == 2 => Some(t.dataset(cfg.seed, 2000)?),
        _ => None,
    };
    let name = toy.map_or("the run's data".to_string(), |t| format!("toy:{}", t.name()));
    v["data"] = data_json(cfg, preview_data.as_ref(), &name, 0);
    v["title"] = json!(title.map_or_else(|| format!("{} at step {step}", source.display()), str::to_string));
    v["source"] = json!({ "checkpoint": path.display().to_string(), "step": step });
    v["knobs"] = json!([]);
    v["seeds"] =
        json!([{ "seed": cfg.seed, "actions": actions_json(&rec.initial_actions(), &ids, &kept)?, "uniforms": [] }]);
    Ok(v)
}

fn knob_json(k: &Knob) -> Result<Value> {
    let targets: Vec<Value> = k.targets.iter().map(|&(s, d, off)| json!([SECTIONS[s], d, off])).collect();
    Ok(json!({ "name": k.name, "label": k.label, "value": exact(&k.value)?, "targets": targets }))
}

fn seed_json(v: &SeedVariant, ids: &Ids, kept: &[usize], data: Option<&DataChunks>) -> Result<Value> {
    let uniforms: Vec<Value> = v.uniforms.iter().map(|(s, d, b)| json!([SECTIONS[*s], d, base64(b)])).collect();
    let chunks = match (&v.data, data) {
        (Some(d), Some(c)) => Some(program::chunk_bytes(d, c).iter().map(|b| base64(b)).collect::<Vec<_>>()),
        _ => None,
    };
    Ok(json!({
        "seed": v.seed,
        "actions": actions_json(&v.actions, ids, kept)?,
        "uniforms": uniforms,
        "data": chunks,
    }))
}

/// A new run's whole program: training, sampling and (2-D data) D's grid, its knobs and seeds.
pub fn train_program(what: &TrainExport, seeds: &[u64], title: Option<&str>) -> Result<Value> {
    let TrainExport { cfg, data, data_name, toy } = what;
    let chunks = super::web_chunks(data)?;
    let extent = (cfg.model.data_dim == 2).then(|| program::grid_extent(data));
    let u8 = cfg.data_u8;
    let rerecord = |c: &TrainConfig| program::record(c, &chunks, u8, extent, None)?.recording();
    let r = program::record(cfg, &chunks, u8, extent, None)?;
    let rec = r.recording()?;
    let knobs = program::knobs(cfg, data.n, &rec, &rerecord)?;
    let mut variants = vec![SeedVariant {
        seed: cfg.seed,
        uniforms: vec![],
        actions: rec.initial_actions(),
        data: Some(data.clone()),
    }];
    for &s in seeds.iter().filter(|&&s| s != cfg.seed) {
        let c = TrainConfig { seed: s, ..cfg.clone() };
        let d = match toy {
            Some(t) => Some(Arc::new(t.dataset(s, data.n.min(toy::TOY_SAMPLES))?)),
            None => None,
        };
        variants.push(program::seed_variant(s, &rec, &rerecord(&c)?, d)?);
    }
    let mut kept = vec![TRAIN, SAMPLE, REFRESH];
    if r.grid.is_some() {
        kept.push(GRID);
    }
    let ids = Ids::all(rec.specs.len());
    let mut v = common_json(&r, &rec, &ids, &kept)?;
    v["data"] = data_json(cfg, Some(data), data_name, chunks.len());
    let default_title = match toy {
        Some(t) => format!("{} (toy)", t.name()),
        None => data_name.clone(),
    };
    v["title"] = json!(title.map_or(default_title, str::to_string));
    v["source"] = json!({ "data": data_name });
    v["knobs"] = Value::Array(knobs.iter().map(knob_json).collect::<Result<_>>()?);
    let seeds: Result<Vec<Value>> = variants.iter().map(|s| seed_json(s, &ids, &kept, Some(&chunks))).collect();
    v["seeds"] = Value::Array(seeds?);
    Ok(v)
}

/// Writes the page's files and program.js into `out`; returns the bytes written.
pub fn write_folder(out: &Path, program: &Value) -> Result<u64> {
    std::fs::create_dir_all(out).map_err(|e| Error::input(format!("cannot create {}: {e}", out.display())))?;
    let text = serde_json::to_string(program).map_err(|e| Error::Io(e.to_string()))?;
    let js = format!("(window.SHADERGAN_PROGRAMS = window.SHADERGAN_PROGRAMS || []).push({text});\n");
    write_atomic(&out.join("program.js"), js.as_bytes())?;
    let mut bytes = js.len() as u64;
    for (name, contents) in PAGE_FILES {
        write_atomic(&out.join(name), contents.as_bytes())?;
        bytes += contents.len() as u64;
    }
    Ok(bytes)
}
