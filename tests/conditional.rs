//! Conditional GANs (`--conditional`) in the library: the labels travel with the data (one more
//! column of the resident table, gathered in the batch's order, on both backends and across data
//! chunks).

mod common;

use std::sync::Arc;

use common::{cpu_trainer_chunked, gpu_trainer_chunked, image_data};
use shadergan::config::model::Arch;
use shadergan::config::TrainConfig;
use shadergan::data::labels::{index_names, ClassLabels};
use shadergan::data::{DataValues, Dataset};
use shadergan::programs::trainer::resident_table;
use shadergan::{rng, GanTrainer, TrainOptions, Trainer};

const CLASSES: usize = 5;

/// `data` with classes: sample i is of class (7 i) mod 5.
fn labelled(data: &Dataset) -> Arc<Dataset> {
    let mut d = data.clone();
    d.classes =
        Some(ClassLabels { ids: (0..d.n).map(|i| (7 * i % CLASSES) as u8).collect(), names: index_names(CLASSES) });
    Arc::new(d)
}

fn floats(data: &Dataset) -> Dataset {
    let DataValues::U8(v) = &data.values else { unreachable!() };
    Dataset::from_f32(data.n, data.dim, v.iter().map(|&b| b as f32 / 255.0).collect()).unwrap()
}

fn config(data: &Dataset, d_steps: usize) -> TrainConfig {
    let opts = TrainOptions {
        arch: Some(Arch::Mlp),
        latent_dim: Some(4),
        g_hidden: vec![12],
        d_hidden: vec![10],
        batch_size: Some(16),
        seed: 31,
        d_steps,
        ..Default::default()
    };
    let mut cfg = opts.resolve(data).unwrap();
    cfg.model.classes = CLASSES;
    cfg.class_names = index_names(CLASSES);
    cfg
}

/// The real half of D.input and the real labels after the last step, and what they must be: the
/// rows of the last D update's batch (rng's permutation), scaled, and their classes.
fn check_batch(what: &str, t: &mut GanTrainer, data: &Dataset, cfg: &TrainConfig) -> (Vec<f32>, Vec<f32>) {
    let (b, dim) = (cfg.batch_size, data.dim);
    let labels = t.exec.read(t.program.labels.expect("a conditional program has labels")).unwrap();
    let input = t.exec.read(t.program.d_input).unwrap();
    let ids = &data.classes.as_ref().unwrap().ids;
    let counter = (t.step() - 1) * cfg.d_steps as u32 + cfg.d_steps as u32 - 1;
    for r in 0..b {
        let src = rng::batch_row_source(cfg.seed, counter, r as u32, b as u32, data.n as u32) as usize;
        assert_eq!(labels[r], ids[src] as f32, "{what}: the label of batch row {r} (sample {src})");
        for c in 0..dim {
            // As stored (bytes 0..255 or floats), then the run's scale and shift.
            let raw = data.get(src, c) * if cfg.data_u8 { 255.0 } else { 1.0 };
            let want = raw * cfg.data_scale + cfg.data_shift;
            assert!((input[r * dim + c] - want).abs() < 1e-6, "{what}: batch row {r}, feature {c}");
        }
    }
    (input[..b * dim].to_vec(), labels[..b].to_vec())
}

/// Bytes and floats, one and two D updates a step, one binding and chunks of 3 rows: each batch
/// row's label is its sample's, the values are the unlabelled program's, and the GPU gathers the
/// same bits as the CPU.
#[test]
fn the_labels_travel_with_the_data() {
    for data in [image_data(), Arc::new(floats(&image_data()))] {
        let data = labelled(&data);
        for d_steps in [1, 2] {
            let cfg = config(&data, d_steps);
            let table = resident_table(&cfg, data.clone()).unwrap();
            assert_eq!((table.n, table.dim), (data.n, data.dim + 1));
            let small = Some((3 * table.row_bytes()).next_multiple_of(4) as u64);
            // The helpers bind the labelled table of a conditional config.
            let mut plain_cfg = cfg.clone();
            plain_cfg.model.classes = 0;
            plain_cfg.class_names.clear();
            let mut plain = cpu_trainer_chunked(&plain_cfg, &data, None);
            plain.train(15).unwrap();
            let plain_input = plain.exec.read(plain.program.d_input).unwrap();
            let mut batches = vec![];
            for chunk in [None, small] {
                let what = format!("{} data, d-steps {d_steps}, chunks {chunk:?}", data.dtype);
                let mut t = cpu_trainer_chunked(&cfg, &data, chunk);
                // 15 steps: into the second epoch (200 / 16 = 12 batches each).
                t.train(15).unwrap();
                let got = check_batch(&what, &mut t, &data, &cfg);
                assert_eq!(got.0, plain_input[..got.0.len()], "{what}: the unlabelled program's batch");
                batches.push(got);
                if let Some(mut g) = gpu_trainer_chunked(&cfg, &data, chunk) {
                    g.train(15).unwrap();
                    assert_eq!(check_batch(&what, &mut g, &data, &cfg), batches[0], "{what}: GPU against CPU");
                }
            }
            assert_eq!(batches[0], batches[1], "chunked against one binding");
        }
    }
}
