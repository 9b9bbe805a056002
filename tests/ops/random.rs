//! random.wgsl and random_f16.wgsl (noise, the batch gather, dropout) against their CPU twins:
//! exact where only integer hashing and one rounding are involved.

use std::sync::Arc;

use crate::common::harness::{wide_values, Both, Case, LENS};
use crate::common::uniform;
use shadergan::data::{DataValues, Dataset};
use shadergan::ir::DType::F16;
use shadergan::ir::{DataChunks, TrainState};
use shadergan::kernels::random::{self, *};
use shadergan::kernels::tolerance::{compare, tolerance};

#[test]
fn noise_normal_matches_cpu() {
    for &len in LENS {
        // (step, first stream, streams): one stream, and three in one dispatch (a step's noise).
        for (step, stream, streams) in [(0u32, 0u32, 1u32), (12_345, 1, 1), (77, 0, 3)] {
            let mut c = Case::new();
            c.state = TrainState::at(step, 0, 0, 0.5, 0.999);
            let out = c.output("noise", len * streams as usize + 3);
            let p = RandomParams {
                len: len as u32,
                stream,
                streams,
                seed_lo: 7,
                seed_hi: 1,
                out_off: 3,
                ..Default::default()
            };
            let Some(Both { gpu: g, cpu, .. }) = c.run(NoiseNormal { p, out }, &[out]) else { return };
            compare("noise_normal", &g[0][3..], &cpu[0][3..], tolerance("noise_normal"))
                .unwrap_or_else(|e| panic!("len {len} step {step}: {e}"));
            assert!(cpu[0][3..].iter().all(|v| v.is_finite()));
        }
    }
}

/// Noise in rows of `dim` placed in wider rows (a conditional G's input: the class embedding in
/// the other columns): the packed values, each where the kernel stores it, on both backends; the
/// other columns untouched (still NaN).
#[test]
fn noise_normal_into_wider_rows() {
    for (rows, dim, stride, col) in [(1usize, 1usize, 2usize, 1usize), (7, 5, 9, 4), (64, 64, 74, 10), (3, 33, 33, 0)] {
        let (len, streams) = (rows * dim, 3u32);
        let base = RandomParams { len: len as u32, stream: 1, streams, seed_lo: 5, seed_hi: 2, ..Default::default() };
        let mut c = Case::new();
        c.state = TrainState::at(41, 0, 0, 0.5, 0.999);
        let packed = c.output("packed", len * streams as usize);
        let wide = c.output("wide", 2 + rows * stride * streams as usize);
        let p = RandomParams { out_off: 2, dim: dim as u32, src_stride: stride as u32, src_col: col as u32, ..base };
        let ops = vec![NoiseNormal { p: base, out: packed }.into(), NoiseNormal { p, out: wide }.into()];
        let Some(Both { gpu: g, cpu, .. }) = c.run_ops(ops, &[packed, wide]) else { return };
        let what = format!("rows {rows} dim {dim} stride {stride} col {col}");
        for (name, out) in [("GPU", &g), ("CPU", &cpu)] {
            for k in 0..streams as usize {
                let span = &out[1][2 + k * rows * stride..2 + (k + 1) * rows * stride];
                for (r, row) in span.chunks(stride).enumerate() {
                    let want = &out[0][k * len + r * dim..k * len + (r + 1) * dim];
                    assert_eq!(&row[col..col + dim], want, "{name} {what}: stream {k} row {r}");
                    let others = row[..col].iter().chain(&row[col + dim..]);
                    assert!(others.clone().all(|v| v.is_nan()), "{name} {what}: another column written");
                }
            }
        }
        compare("noise_normal", &g[1][2..], &cpu[1][2..], tolerance("noise_normal"))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

#[test]
fn gather_matches_cpu_exactly() {
    let (n, dim) = (65usize, 33usize);
    let bytes: Vec<u8> = (0..n * dim).map(|i| (i * 7 % 256) as u8).collect();
    let floats: Vec<f32> = uniform(n * dim, 11, -3.0, 3.0);
    let sets = [Dataset::from_u8(n, dim, bytes).unwrap(), Dataset::from_f32(n, dim, floats).unwrap()];
    for data in sets {
        for rows in [1u32, 7, 64] {
            // Steps inside the first epoch and past it (a new permutation); with several D
            // updates per step (sub_steps), each its own batch.
            for (step, sub_steps, sub_index) in [(0u32, 1u32, 0u32), (1, 1, 0), (9, 1, 0), (100, 1, 0), (4, 3, 2)] {
                let mut c = Case::new();
                c.data = Some(Arc::new(data.clone()));
                c.state = TrainState::at(step, 0, 0, 0.5, 0.999);
                let out = c.output("batch", 2 + rows as usize * dim);
                let p = RandomParams {
                    len: rows * dim as u32,
                    seed_lo: 3,
                    seed_hi: 0,
                    out_off: 2,
                    rows,
                    dim: dim as u32,
                    n: n as u32,
                    steps_per_epoch: n as u32 / rows,
                    half_bits: shadergan::rng::feistel_half_bits(n as u32),
                    scale: 1.0 / 255.0,
                    shift: -0.5,
                    sub_steps,
                    sub_index,
                    ..Default::default()
                };
                let data_u8 = matches!(data.values, DataValues::U8(_));
                let Some(Both { gpu: g, cpu, .. }) = c.run(random::gather(data_u8, p, out), &[out]) else { return };
                assert!(cpu[0][2..].iter().all(|v| v.is_finite()));
                compare("gather", &g[0][2..], &cpu[0][2..], tolerance("gather"))
                    .unwrap_or_else(|e| panic!("{} rows {rows} step {step}: {e}", data.dtype));
            }
        }
    }
}

/// A data set bound in chunks (one storage binding each): one gather per chunk, each writing the
/// batch rows its chunk holds. With chunk boundaries inside every batch (rows of 9 samples, and
/// of 1), the GPU matches the CPU twin exactly and both match the one-binding gather bit for bit.
#[test]
fn chunked_gather_matches_the_resident_one_across_chunk_boundaries() {
    let (n, dim) = (65usize, 33usize);
    let bytes: Vec<u8> = (0..n * dim).map(|i| (i * 7 % 256) as u8).collect();
    let floats: Vec<f32> = uniform(n * dim, 11, -3.0, 3.0);
    let sets = [Dataset::from_u8(n, dim, bytes).unwrap(), Dataset::from_f32(n, dim, floats).unwrap()];
    for data in sets {
        let data_u8 = matches!(data.values, DataValues::U8(_));
        for rows_per_chunk in [9usize, 1, 64] {
            let chunks = DataChunks::plan(
                n,
                data.row_bytes(),
                Some((rows_per_chunk * data.row_bytes()).next_multiple_of(4) as u64),
            )
            .unwrap();
            assert_eq!(chunks.len(), n.div_ceil(rows_per_chunk));
            for (rows, step, sub_steps, sub_index) in
                [(64u32, 0u32, 1u32, 0u32), (64, 1, 1, 0), (7, 9, 3, 2), (64, 100, 2, 1)]
            {
                let p = RandomParams {
                    len: rows * dim as u32,
                    seed_lo: 3,
                    out_off: 2,
                    rows,
                    dim: dim as u32,
                    n: n as u32,
                    steps_per_epoch: n as u32 / rows,
                    half_bits: shadergan::rng::feistel_half_bits(n as u32),
                    scale: 1.0 / 255.0,
                    shift: -0.5,
                    sub_steps,
                    sub_index,
                    ..Default::default()
                };
                let mut c = Case::new();
                c.data = Some(Arc::new(data.clone()));
                c.chunks = Some(chunks.clone());
                c.state = TrainState::at(step, 0, 0, 0.5, 0.999);
                let out = c.output("batch", 2 + rows as usize * dim);
                let ops = random::gather_chunks(data_u8, p, out, &chunks);
                assert_eq!(ops.len(), chunks.len());
                let what = format!("{} rows {rows} step {step}, chunks of {rows_per_chunk}", data.dtype);
                let Some(Both { gpu: g, cpu, .. }) = c.run_ops(ops, &[out]) else { return };
                assert!(cpu[0][2..].iter().all(|v| v.is_finite()), "{what}: a batch row was not written");
                compare("gather", &g[0][2..], &cpu[0][2..], tolerance("gather"))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                // The resident gather, one binding: the very same batch.
                let mut one = Case::new();
                one.data = Some(Arc::new(data.clone()));
                one.state = c.state;
                let out1 = one.output("batch", 2 + rows as usize * dim);
                let Both { gpu: g1, cpu: c1, .. } = one.run(random::gather(data_u8, p, out1), &[out1]).unwrap();
                let bits = |v: &[f32]| v[2..].iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert!(bits(&g[0]) == bits(&g1[0]), "{what}: chunked and resident GPU batches differ");
                assert!(bits(&cpu[0]) == bits(&c1[0]), "{what}: chunked and resident CPU batches differ");
            }
        }
    }
}

#[test]
fn dropout_matches_cpu_exactly() {
    for &len in LENS {
        for (step, salt, rate) in [(0u32, 0u32, 0.3f32), (77, 257, 0.5)] {
            let mut c = Case::new();
            c.state = TrainState::at(step, 0, 0, 0.5, 0.999);
            let out = c.input("D.fc1.out", uniform(len + 1, 3, -1.0, 1.0));
            let p = RandomParams {
                len: len as u32,
                stream: salt,
                seed_lo: 5,
                seed_hi: 9,
                out_off: 1,
                scale: 1.0 / (1.0 - rate),
                shift: rate,
                ..Default::default()
            };
            let Some(Both { gpu: g, cpu, .. }) = c.run(Dropout { p, out }, &[out]) else { return };
            compare("dropout", &g[0], &cpu[0], tolerance("dropout"))
                .unwrap_or_else(|e| panic!("len {len} step {step}: {e}"));
            if len > 1000 {
                let dropped = cpu[0][1..].iter().filter(|v| **v == 0.0).count() as f32 / len as f32;
                assert!((dropped - rate).abs() < 0.02, "dropped {dropped} at rate {rate}");
            }
        }
    }
}

#[test]
fn dropout_f16_matches_cpu_exactly() {
    for &len in LENS {
        for (step, salt, rate) in [(0u32, 0u32, 0.3f32), (77, 257, 0.5)] {
            let mut c = Case::new();
            c.state = TrainState::at(step, 0, 0, 0.5, 0.999);
            let out = c.input_as("D.fc1.out", F16, wide_values(len + 1, 3));
            let p = RandomParams {
                len: len as u32,
                stream: salt,
                seed_lo: 5,
                seed_hi: 9,
                out_off: 1,
                scale: 1.0 / (1.0 - rate),
                shift: rate,
                ..Default::default()
            };
            c.check_from(Dropout { p, out }, &[out], 0, &format!("len {len} step {step}"));
        }
    }
}

#[test]
fn strided_gather_pairs_pixels_with_labels() {
    // A table of rows [pixels..., label], read as two gathers with one permutation.
    let (n, dim, rows) = (65usize, 5usize, 16u32);
    let table: Vec<u8> =
        (0..n).flat_map(|r| (0..dim).map(move |c| ((r * 3 + c) % 250) as u8).chain([(r % 10) as u8])).collect();
    let data = Dataset::from_u8(n, dim + 1, table).unwrap();
    let base = RandomParams {
        seed_lo: 9,
        rows,
        n: n as u32,
        steps_per_epoch: n as u32 / rows,
        half_bits: shadergan::rng::feistel_half_bits(n as u32),
        src_stride: dim as u32 + 1,
        ..Default::default()
    };
    let pixels = RandomParams { len: rows * dim as u32, dim: dim as u32, scale: 1.0, ..base };
    let labels = RandomParams { len: rows, dim: 1, src_col: dim as u32, scale: 1.0, ..base };
    for step in [0u32, 3, 7] {
        let mut c = Case::new();
        c.state = TrainState::at(step, 0, 0, 0.9, 0.999);
        c.data = Some(Arc::new(data.clone()));
        let px = c.output("pixels", rows as usize * dim);
        let lb = c.output("labels", rows as usize);
        let Some(Both { gpu: g1, cpu: c1, .. }) = c.run(GatherU8 { p: pixels, out: px, chunk: 0 }, &[px]) else {
            return;
        };
        let Both { gpu: g2, cpu: c2, .. } = c.run(GatherU8 { p: labels, out: lb, chunk: 0 }, &[lb]).unwrap();
        assert_eq!(g1[0], c1[0], "pixels, step {step}");
        assert_eq!(g2[0], c2[0], "labels, step {step}");
        // Each gathered label is its own row's: row r has pixel 0 = (3 r) % 250 and label r % 10.
        for r in 0..rows as usize {
            let src = (0..n).find(|&s| (s * 3 % 250) as f32 == c1[0][r * dim]).unwrap();
            assert_eq!(c2[0][r], (src % 10) as f32, "row {r}, step {step}");
        }
    }
}

/// random_labels: the GPU's labels are the twin's bit for bit (integer hashing only), at every
/// length, class count, pack size and several streams in one dispatch.
#[test]
fn random_labels_match_cpu_bit_for_bit() {
    for &len in LENS {
        for (classes, group, step, streams) in
            [(1u32, 1u32, 0u32, 1u32), (2, 1, 5, 1), (10, 4, 77, 3), (1000, 3, 12_345, 2)]
        {
            let mut c = Case::new();
            c.state = TrainState::at(step, 0, 0, 0.5, 0.999);
            let out = c.output("labels", 2 + len * streams as usize);
            let p = RandomParams {
                len: len as u32,
                stream: 1,
                streams,
                seed_lo: 11,
                seed_hi: 2,
                out_off: 2,
                classes,
                group,
                ..Default::default()
            };
            let what = format!("len {len}, C {classes}, group {group}, streams {streams}");
            let Some(Both { gpu: g, cpu, .. }) = c.run(RandomLabels { p, out }, &[out]) else { return };
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(bits(&g[0]) == bits(&cpu[0]), "{what}: the GPU's labels differ from the twin's");
            assert!(cpu[0][..2].iter().all(|v| v.is_nan()), "{what}: wrote before out_off");
            let labels = &cpu[0][2..];
            assert!(labels.iter().all(|&y| y.fract() == 0.0 && (0.0..classes as f32).contains(&y)), "{what}");
        }
    }
}

/// The twin's labels at `step` for a seed, classes and pack size (one stream).
fn labels_at(seed: u64, step: u32, stream: u32, len: usize, classes: u32, group: u32) -> Vec<f32> {
    let [seed_lo, seed_hi] = shadergan::rng::seed_words(seed);
    let p = RandomParams { len: len as u32, stream, seed_lo, seed_hi, classes, group, ..Default::default() };
    let mut out = vec![f32::NAN; len];
    random::random_labels(&p, &TrainState::at(step, 0, 0, 0.5, 0.999), &mut out);
    out
}

#[test]
fn random_labels_cover_every_class_uniformly() {
    for (classes, len) in [(2u32, 10_000usize), (10, 20_000), (1000, 60_000)] {
        let y = labels_at(42, 3, 0, len, classes, 1);
        let mut counts = vec![0usize; classes as usize];
        y.iter().for_each(|&v| counts[v as usize] += 1);
        // Binomial counts: within 6 standard deviations of len / C (and so none is zero).
        let (mean, sd) = (len as f64 / classes as f64, (len as f64 / classes as f64).sqrt());
        for (c, &n) in counts.iter().enumerate() {
            assert!((n as f64 - mean).abs() < 6.0 * sd, "C {classes}: class {c} drawn {n} times of {len}");
        }
    }
}

#[test]
fn random_labels_packs_share_a_label_and_seeds_steps_streams_differ() {
    let (len, classes) = (64usize, 10u32);
    for group in [2u32, 4, 3] {
        let y = labels_at(1, 0, 0, len, classes, group);
        for (i, &v) in y.iter().enumerate() {
            assert_eq!(v, y[i - i % group as usize], "group {group}: sample {i}");
        }
        // The packs' labels are not all one class.
        assert!(y.iter().any(|&v| v != y[0]), "group {group}: {y:?}");
    }
    let base = labels_at(1, 0, 0, len, classes, 1);
    assert_ne!(base, labels_at(2, 0, 0, len, classes, 1), "another seed");
    assert_ne!(base, labels_at(1, 1, 0, len, classes, 1), "another step");
    assert_ne!(base, labels_at(1, 0, 1, len, classes, 1), "another stream");
    assert_eq!(base, labels_at(1, 0, 0, len, classes, 1), "the same seed, step and stream");
}
