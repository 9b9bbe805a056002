//! embedding.wgsl (the class embedding's lookup and its per-class gradient) against its CPU twins
//! at awkward shapes (B 1, 63, 64, 65; K 1, 7, 33, 65; C 1, 2, 10, 1000) with labels spread, of
//! one class, with a class absent and out of range, outputs NaN before the call; the gradient
//! against f64 finite differences.

use crate::common::harness::{ew_inputs, label_sets, Both, Case, BATCHES, CLASSES, WIDTHS};
use shadergan::ir::Op;
use shadergan::kernels::embedding::*;
use shadergan::kernels::tolerance::{compare, tolerance};

/// Every (B, K) pair, with C cycling so that each class count meets each B and each K.
pub fn shapes() -> impl Iterator<Item = (usize, usize, u32)> {
    BATCHES
        .iter()
        .enumerate()
        .flat_map(|(i, &b)| WIDTHS.iter().enumerate().map(move |(j, &k)| (b, k, CLASSES[(i + j) % CLASSES.len()])))
}

/// Labels at offset 1 of their buffer (a NaN before them), as the kernels read them.
pub fn labels_at_1(c: &mut Case, labels: &[f32]) -> shadergan::ir::BufId {
    let mut v = vec![f32::NAN];
    v.extend_from_slice(labels);
    c.input("labels", v)
}

/// The classes `labels` name, as the kernels read them.
pub fn classes_of(labels: &[f32], classes: u32) -> Vec<usize> {
    labels.iter().map(|&y| class_index(y, classes)).collect()
}

/// Where a per-class gradient lives: `classes` rows of `width` values from `off`, stored (or,
/// with `accumulate`, added to those before the call).
pub struct AbsentRows {
    pub off: usize,
    pub width: usize,
    pub classes: u32,
    pub accumulate: bool,
}

impl AbsentRows {
    /// The row of a class that no label names is exactly +0 (or what was there, plus 0) on both
    /// sides.
    pub fn check(&self, labels: &[f32], before: &[f32], sides: [&Vec<f32>; 2], what: &str) {
        let present = classes_of(labels, self.classes);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for cl in (0..self.classes as usize).filter(|cl| !present.contains(cl)) {
            let row = self.off + cl * self.width..self.off + (cl + 1) * self.width;
            let want: Vec<f32> = if self.accumulate {
                before[row.clone()].iter().map(|v| v + 0.0).collect()
            } else {
                vec![0.0; self.width]
            };
            for side in sides {
                assert!(bits(&side[row.clone()]) == bits(&want), "{what}: absent class {cl} got {:?}", &side[row]);
            }
        }
    }
}

#[test]
fn class_index_truncates_and_clamps() {
    let cases = [
        (0.0, 10, 0),
        (9.0, 10, 9),
        (2.7, 10, 2),
        (10.0, 10, 9),
        (1e9, 10, 9),
        (f32::INFINITY, 10, 9),
        (-1.0, 10, 0),
        (-0.0, 10, 0),
        (-0.5, 10, 0),
        (f32::NEG_INFINITY, 10, 0),
        (f32::NAN, 10, 0),
        (5.0, 1, 0),
        (5.0, 0, 0),
        (999.0, 1000, 999),
        (16_777_215.0, 16_777_216, 16_777_215),
        (3e7, 16_777_217, 16_777_216),
    ];
    for (label, classes, want) in cases {
        assert_eq!(class_index(label, classes), want, "label {label}, {classes} classes");
    }
}

/// Every output of `r` passes [`check_output`] with `written`.
fn check_written(r: &Both, entry: &str, written: impl Fn(usize) -> bool, what: &str) {
    for (k, (g, c)) in r.gpu.iter().zip(&r.cpu).enumerate() {
        check_output(entry, g, c, &written, &format!("{what}, output {k}"));
    }
}

/// The two sides' values of one output agree within the entry's tolerance; the CPU twin wrote
/// every value `written` says it writes, and neither side wrote any other (they stay NaN).
pub fn check_output(entry: &str, g: &[f32], c: &[f32], written: impl Fn(usize) -> bool, what: &str) {
    let what = format!("{entry} {what}");
    for (i, (gv, cv)) in g.iter().zip(c).enumerate() {
        if written(i) {
            assert!(!cv.is_nan(), "{what}: CPU twin left NaN at {i}");
        } else {
            assert!(gv.is_nan() && cv.is_nan(), "{what}: wrote {i} (gpu {gv}, cpu {cv}), outside its span");
        }
    }
    compare(entry, g, c, tolerance(entry)).unwrap_or_else(|e| panic!("{what}: {e}"));
}

#[test]
fn embedding_forward_matches_cpu_exactly() {
    for (rows, dim, classes) in shapes() {
        // Rows of their own (stride K), or columns [3, 3 + K) of rows of K + 5 values (G's input
        // concat(embed(y), z) written in place).
        for wide in [false, true] {
            let (stride, col) = if wide { (dim + 5, 3) } else { (dim, 0) };
            let mut c = Case::new();
            let table = c.input("E", ew_inputs(classes as usize * dim + 2, classes + dim as u32));
            let (mut ops, mut outs): (Vec<Op>, _) = (vec![], vec![]);
            for (_, labels) in label_sets(rows, classes, (rows * 7 + dim) as u32) {
                let labels = labels_at_1(&mut c, &labels);
                let out = c.output("out", 2 + rows * stride);
                let p = EmbeddingParams {
                    rows: rows as u32,
                    dim: dim as u32,
                    classes,
                    labels_off: 1,
                    table_off: 2,
                    act_off: 2,
                    act_stride: if wide { stride as u32 } else { 0 },
                    act_col: col as u32,
                    ..Default::default()
                };
                ops.push(EmbeddingForward { p, labels, table, out }.into());
                outs.push(out);
            }
            let Some(r) = c.run_ops(ops, &outs) else { return };
            let written = |i: usize| i >= 2 && ((i - 2) % stride).wrapping_sub(col) < dim;
            check_written(&r, "embedding_forward", written, &format!("B {rows} K {dim} C {classes} wide {wide}"));
        }
    }
}

#[test]
fn embedding_backward_matches_cpu_and_absent_classes_get_zero() {
    for (rows, dim, classes) in shapes() {
        // Strided rows and accumulating onto an earlier pass's gradient, or neither.
        for wide in [false, true] {
            let (stride, col, accumulate) = if wide { (dim + 5, 3, 1) } else { (dim, 0, 0) };
            let mut c = Case::new();
            let dout = c.input("dout", ew_inputs(2 + rows * stride, (rows + 3 * dim) as u32));
            let len = 1 + classes as usize * dim;
            let mut before = if wide { ew_inputs(len, classes) } else { vec![f32::NAN; len] };
            before[0] = f32::NAN;
            let (mut ops, mut outs, mut sets): (Vec<Op>, _, _) = (vec![], vec![], vec![]);
            for (name, labels) in label_sets(rows, classes, (rows + dim) as u32) {
                let lb = labels_at_1(&mut c, &labels);
                let grads = c.input("E.grad", before.clone());
                let p = EmbeddingParams {
                    rows: rows as u32,
                    dim: dim as u32,
                    classes,
                    labels_off: 1,
                    table_off: 1,
                    act_off: 2,
                    act_stride: stride as u32,
                    act_col: col as u32,
                    accumulate,
                    ..Default::default()
                };
                ops.push(EmbeddingBackward { p, labels: lb, dout, grads }.into());
                outs.push(grads);
                sets.push((name, labels));
            }
            let Some(r) = c.run_ops(ops, &outs) else { return };
            let what = format!("B {rows} K {dim} C {classes} wide {wide}");
            check_written(&r, "embedding_backward", |i| i >= 1, &what);
            // A class no label names: its row is exactly +0 (or what was there, plus 0).
            for (k, (name, labels)) in sets.iter().enumerate() {
                let rows = AbsentRows { off: 1, width: dim, classes, accumulate: wide };
                rows.check(labels, &before, [&r.gpu[k], &r.cpu[k]], &format!("{what} {name}"));
            }
        }
    }
}

/// The twin's table gradient against central differences in f64 of L(E) = sum_b,k w[b, k]
/// E[y_b, k] (the forward's output weighted by an upstream gradient w), with a class absent and
/// labels the kernels clamp.
#[test]
fn embedding_backward_matches_f64_finite_differences() {
    let (rows, dim, classes) = (7usize, 3usize, 5u32);
    let labels = [0.0, 4.0, 2.0, 2.0, 7.5, -1.0, f32::NAN];
    let w = crate::common::uniform(rows * dim, 9, -2.0, 2.0);
    let table = crate::common::uniform(classes as usize * dim, 10, -1.0, 1.0);
    let ys = classes_of(&labels, classes);
    let loss = |e: &[f64]| -> f64 {
        (0..rows)
            .flat_map(|b| (0..dim).map(move |k| (b, k)))
            .map(|(b, k)| w[b * dim + k] as f64 * e[ys[b] * dim + k])
            .sum()
    };
    let p = EmbeddingParams { rows: rows as u32, dim: dim as u32, classes, ..Default::default() };
    let mut grad = vec![f32::NAN; table.len()];
    embedding_backward(&p, &labels, &w, &mut grad);
    let mut e: Vec<f64> = table.iter().map(|&v| v as f64).collect();
    let h = 1e-6;
    for i in 0..e.len() {
        let orig = e[i];
        e[i] = orig + h;
        let hi = loss(&e);
        e[i] = orig - h;
        let lo = loss(&e);
        e[i] = orig;
        let numeric = (hi - lo) / (2.0 * h);
        let a = grad[i] as f64;
        assert!((a - numeric).abs() <= 1e-5 + 1e-4 * numeric.abs(), "dE[{i}]: analytic {a} vs {numeric}");
    }
    // Class 1 and 3 are named by no label: exactly 0.
    assert!(grad[dim..2 * dim].iter().chain(&grad[3 * dim..4 * dim]).all(|&v| v == 0.0));
    // And the forward the loss differentiates is the twin's.
    let mut out = vec![f32::NAN; rows * dim];
    embedding_forward(&p, &labels, &table, &mut out);
    for b in 0..rows {
        assert_eq!(&out[b * dim..(b + 1) * dim], &table[ys[b] * dim..(ys[b] + 1) * dim], "row {b}");
    }
}
