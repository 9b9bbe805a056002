//! A GAN program recorded for the browser: the trainer's own program (`GanProgram`) built and
//! initialised on the [`WebRecorder`], so its sections, uniforms and initial writes are exactly
//! those the native GPU trainer would make, plus one section of its own for 2-D data: D (eval
//! mode) on a grid of points, for the heat map of D's output.
//!
//! What a user changes live is found by building the program again with one setting changed and
//! comparing: a setting whose change only moves some uniform words, each holding the setting's
//! value, is a knob ([`Knob`]: those words, which the page rewrites); anything else (shapes,
//! derived values) needs another export. Other seeds are found the same way: their uniforms
//! differ (the seed words), and their initial weights and toy data are recorded for each.

use std::sync::{Arc, Mutex};

use crate::backend::web::{Action, Dispatch, Recording, WebRecorder};
use crate::config::{Precision, TrainConfig};
use crate::data::{DataValues, Dataset};
use crate::error::{Error, Result};
use crate::ir::{At, BufId, Buffers, DataChunks, Op};
use crate::kernels::activation::{Cast, EwParams};
use crate::nn::{Mode, Pass};
use crate::programs::gan::GanProgram;
use crate::programs::trainer::{GanTrainer, Snapshot};

/// The sections, in the order the trainer adds them (then the grid's).
pub const SECTIONS: [&str; 4] = ["train", "sample", "refresh", "grid"];
pub const TRAIN: usize = 0;
pub const SAMPLE: usize = 1;
pub const REFRESH: usize = 2;
pub const GRID: usize = 3;

/// Points per side of the grid D is evaluated on (2-D data).
pub const GRID_SIZE: usize = 32;

/// The grid section's buffers and the square of data space it covers.
#[derive(Clone, Debug)]
pub struct Grid {
    pub x: BufId,
    pub out: BufId,
    pub size: usize,
    /// xmin, xmax, ymin, ymax in the data's own scale.
    pub extent: [f32; 4],
}

/// A program recorded on the web executor, and where its inputs and outputs are.
pub struct Recorded {
    pub trainer: GanTrainer,
    pub rec: Arc<Mutex<Recording>>,
    pub grid: Option<Grid>,
}

impl Recorded {
    pub fn recording(&self) -> Result<Recording> {
        self.rec.lock().map(|r| r.clone()).map_err(|_| Error::gpu("internal error: the web recording is poisoned"))
    }
}

/// The square around the data (its first 10,000 points) with a margin, for the grid.
pub fn grid_extent(data: &Dataset) -> [f32; 4] {
    let n = data.n.min(10_000);
    let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    for r in 0..n {
        for c in 0..2 {
            lo[c] = lo[c].min(data.get(r, c));
            hi[c] = hi[c].max(data.get(r, c));
        }
    }
    let centre = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0];
    let half = 0.65 * (hi[0] - lo[0]).max(hi[1] - lo[1]).max(1e-3);
    [centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half]
}

/// D's eval-mode forward on `size` x `size` points (each repeated `pack` times, as D judges
/// packs), into buffers of its own added to the program.
fn add_grid(program: &mut GanProgram, cfg: &TrainConfig, extent: [f32; 4]) -> (Vec<Op>, Grid, Vec<f32>) {
    let size = GRID_SIZE;
    let rows = size * size;
    let half = cfg.precision == Precision::F16;
    let mut bufs = Buffers { specs: std::mem::take(&mut program.bufs), half };
    let features = program.d_net.input_features();
    let x = bufs.f32("grid.x", rows * features);
    let mut ops = vec![];
    // At f16 D reads f16 inputs: the points pass through a cast, as the real batch does.
    let input = if half {
        let x16 = bufs.f16("grid.x.f16", rows * features);
        let p = EwParams { len: (rows * features) as u32, ..Default::default() };
        ops.push(Cast { p, x, out: x16, to_f16: true }.into());
        x16
    } else {
        x
    };
    let acts = program.d_net.alloc_acts(&mut bufs, "grid.D", rows);
    let pass = Pass::new(At::start(input), rows, Mode::Eval, cfg.seed);
    let weights = crate::nn::Weights { grads: None, ..program.d.weights() };
    program.d_net.forward(&mut ops, weights, &acts, &pass);
    program.bufs = bufs.specs;
    // Row i, column j of the grid: (x_j, y_i), y growing upwards, in the scale G trains on.
    let [x0, x1, y0, y1] = extent;
    let at = |k: usize, lo: f32, hi: f32| lo + (hi - lo) * (k as f32 + 0.5) / size as f32;
    let mut values = Vec::with_capacity(rows * features);
    for i in 0..size {
        for j in 0..size {
            let p = [at(j, x0, x1), at(size - 1 - i, y0, y1)];
            for k in 0..features {
                values.push(p[k % 2] * cfg.data_scale + cfg.data_shift);
            }
        }
    }
    (ops, Grid { x, out: acts.output(), size, extent }, values)
}

/// Builds `cfg`'s program for data in `chunks`, initialises it as a new run does (restoring
/// `snapshot` after, when given) and records all of it; with `extent`, the grid section too.
pub fn record(
    cfg: &TrainConfig,
    chunks: &DataChunks,
    data_u8: bool,
    extent: Option<[f32; 4]>,
    snapshot: Option<&Snapshot>,
) -> Result<Recorded> {
    let mut program = GanProgram::build_chunked(cfg, chunks, data_u8);
    let grid = extent.map(|e| add_grid(&mut program, cfg, e));
    let recorder = WebRecorder::new(&program.bufs)?;
    let rec = recorder.recording();
    let mut trainer = GanTrainer::new(cfg.clone(), program, Box::new(recorder))?;
    if let Some(s) = snapshot {
        crate::programs::trainer::Trainer::restore(&mut trainer, s)?;
    }
    let grid = match grid {
        Some((ops, g, values)) => {
            trainer.exec.add_section(&ops)?;
            trainer.exec.write(g.x, &values)?;
            Some(g)
        }
        None => None,
    };
    let sections = rec.lock().map(|r| r.sections.len()).unwrap_or(0);
    if sections != 3 + grid.is_some() as usize {
        return Err(Error::gpu(format!("internal error: the trainer added {sections} sections")));
    }
    Ok(Recorded { trainer, rec, grid })
}

/// A setting the page changes live: the uniform words that hold it.
#[derive(Clone, Debug, PartialEq)]
pub struct Knob {
    pub name: &'static str,
    pub label: &'static str,
    pub value: f32,
    /// (section, dispatch, byte offset in its uniform) of every f32 word holding the value.
    pub targets: Vec<(usize, usize, usize)>,
}

/// A live setting: its name, label, how to read and change it in a configuration, and whether
/// the program has it at all.
struct KnobDef {
    name: &'static str,
    label: &'static str,
    get: fn(&TrainConfig) -> f32,
    set: fn(&mut TrainConfig, f32),
    present: fn(&TrainConfig) -> bool,
}

const KNOBS: &[KnobDef] = &[
    KnobDef {
        name: "lr",
        label: "G's learning rate",
        get: |c| c.lr,
        // D keeps its rate: only G's Adam reads --lr then.
        set: |c, v| {
            c.d_lr = Some(c.d_lr());
            c.lr = v
        },
        present: |_| true,
    },
    KnobDef {
        name: "d_lr",
        label: "D's learning rate",
        get: |c| c.d_lr(),
        set: |c, v| c.d_lr = Some(v),
        present: |_| true,
    },
    KnobDef { name: "beta1", label: "Adam beta1", get: |c| c.beta1, set: |c, v| c.beta1 = v, present: |_| true },
    KnobDef { name: "beta2", label: "Adam beta2", get: |c| c.beta2, set: |c, v| c.beta2 = v, present: |_| true },
    KnobDef {
        name: "real_label",
        label: "D's label for real samples (label smoothing)",
        get: |c| c.real_label,
        set: |c, v| c.real_label = v,
        present: |_| true,
    },
    KnobDef {
        name: "g_ema",
        label: "decay of G's weight average",
        get: |c| c.g_ema,
        set: |c, v| c.g_ema = v,
        present: |c| c.g_ema > 0.0,
    },
];

/// The sections' shape without their uniforms: must match between variants of one program.
fn same_shape(a: &[Vec<Dispatch>], b: &[Vec<Dispatch>]) -> bool {
    let strip = |s: &[Vec<Dispatch>]| -> Vec<Vec<Dispatch>> {
        s.iter().map(|d| d.iter().map(|x| Dispatch { uniform: None, ..x.clone() }).collect()).collect()
    };
    strip(a) == strip(b)
}

/// A uniform word that differs: (section, dispatch, byte offset, base word, variant word).
type WordDiff = (usize, usize, usize, u32, u32);

/// Every 4-byte uniform word that differs between two recordings of one program's shape.
fn uniform_diff(base: &Recording, variant: &Recording) -> Result<Vec<WordDiff>> {
    if base.specs.len() != variant.specs.len() || !same_shape(&base.sections, &variant.sections) {
        return Err(Error::gpu("internal error: a live setting changed the program's shape"));
    }
    let mut out = vec![];
    for (s, (bs, vs)) in base.sections.iter().zip(&variant.sections).enumerate() {
        for (d, (bd, vd)) in bs.iter().zip(vs).enumerate() {
            let (Some(bu), Some(vu)) = (&bd.uniform, &vd.uniform) else { continue };
            for (k, (bw, vw)) in bu.chunks_exact(4).zip(vu.chunks_exact(4)).enumerate() {
                let (bw, vw) = (u32::from_le_bytes(bw.try_into().unwrap()), u32::from_le_bytes(vw.try_into().unwrap()));
                if bw != vw {
                    out.push((s, d, 4 * k, bw, vw));
                }
            }
        }
    }
    Ok(out)
}

/// The knobs of `cfg`'s program (`base` its recording): each setting changed to another value,
/// the program recorded again, and the words that moved checked to hold exactly the setting.
/// A setting `train` would refuse in this configuration (label smoothing with the hinge loss) is
/// no knob.
pub fn knobs(
    cfg: &TrainConfig,
    n: usize,
    base: &Recording,
    rerecord: &dyn Fn(&TrainConfig) -> Result<Recording>,
) -> Result<Vec<Knob>> {
    let mut out = vec![];
    for k in KNOBS.iter().filter(|k| (k.present)(cfg)) {
        let value = (k.get)(cfg);
        let other = if value != 0.0 { value * 0.5 } else { 0.5 };
        let mut changed = cfg.clone();
        (k.set)(&mut changed, other);
        if changed.validate(n).is_err() {
            continue;
        }
        let diff = uniform_diff(base, &rerecord(&changed)?)?;
        if diff.iter().any(|&(_, _, _, b, v)| b != value.to_bits() || v != other.to_bits()) {
            return Err(Error::gpu(format!(
                "internal error: {} changes more than the uniform words holding it",
                k.name
            )));
        }
        if !diff.is_empty() {
            let targets = diff.iter().map(|&(s, d, off, _, _)| (s, d, off)).collect();
            out.push(Knob { name: k.name, label: k.label, value, targets });
        }
    }
    Ok(out)
}

/// What differs for another seed: whole uniforms (section, dispatch, bytes) and the initial
/// actions.
pub struct SeedVariant {
    pub seed: u64,
    pub uniforms: Vec<(usize, usize, Vec<u8>)>,
    pub actions: Vec<Action>,
    /// The data, when it depends on the seed (toy data sets).
    pub data: Option<Arc<Dataset>>,
}

/// The seed variant of `base` recorded as `variant`.
pub fn seed_variant(
    seed: u64,
    base: &Recording,
    variant: &Recording,
    data: Option<Arc<Dataset>>,
) -> Result<SeedVariant> {
    let diff = uniform_diff(base, variant)?;
    let mut uniforms: Vec<(usize, usize, Vec<u8>)> = vec![];
    for (s, d, ..) in diff {
        if !uniforms.iter().any(|u| (u.0, u.1) == (s, d)) {
            let bytes = variant.sections[s][d].uniform.clone().expect("a uniform differed");
            uniforms.push((s, d, bytes));
        }
    }
    Ok(SeedVariant { seed, uniforms, actions: variant.initial_actions(), data })
}

/// The buffers that `sections` bind, in order: a sampling export keeps only those.
pub fn used_buffers(rec: &Recording, sections: &[usize]) -> Vec<BufId> {
    let mut used = vec![false; rec.specs.len()];
    for &s in sections {
        for d in &rec.sections[s] {
            for (_, r) in &d.bindings {
                if let crate::ir::Res::Buf(b) = r {
                    used[*b] = true;
                }
            }
        }
    }
    (0..used.len()).filter(|&b| used[b]).collect()
}

/// The data's bytes in each chunk, as the GPU executor uploads them (padded to 4).
pub fn chunk_bytes(data: &Dataset, chunks: &DataChunks) -> Vec<Vec<u8>> {
    let bytes: &[u8] = match &data.values {
        DataValues::U8(v) => v,
        DataValues::F32(v) => bytemuck::cast_slice(v),
    };
    let row = data.row_bytes();
    chunks
        .rows
        .iter()
        .map(|r| {
            let mut part = bytes[r.start * row..r.end * row].to_vec();
            part.resize(part.len().next_multiple_of(4), 0);
            part
        })
        .collect()
}
