//! xent.wgsl (the classifier's softmax cross-entropy) against its CPU twin: awkward shapes,
//! extreme logits, NaN-filled outputs.

use crate::common::harness::{Both, Case};
use crate::common::uniform;
use shadergan::kernels::tolerance::{compare, tolerance};
use shadergan::kernels::xent::*;

fn xent_case(rows: usize, classes: usize, logits: Vec<f32>, labels: Vec<f32>, what: &str) {
    // Logits at offset 1, labels at 2, dz at 3; stats.
    let mut c = Case::new();
    let z = c.input("z", [0.5].into_iter().chain(logits).collect());
    let y = c.input("labels", [0.0, 0.0].into_iter().chain(labels).collect());
    let dz = c.output("dz", 3 + rows * classes);
    let stats = c.output("stats", 4);
    let p = XentParams {
        rows: rows as u32,
        classes: classes as u32,
        z_off: 1,
        label_off: 2,
        dz_off: 3,
        scale: 1.0 / rows as f32,
        slot_loss: 1,
        slot_acc: 2,
    };
    let op = SoftmaxXent { p, z, labels: y, dz, stats };
    let Some(Both { gpu: g, cpu: c, .. }) = c.run(op, &[z, y, dz, stats]) else { return };
    let t = tolerance("softmax_xent");
    assert!(c[2][3..].iter().chain(&c[3][1..3]).all(|v| v.is_finite()), "{what}: CPU twin wrote a non-finite value");
    compare("softmax_xent dz", &g[2][3..], &c[2][3..], t).unwrap_or_else(|e| panic!("{what}: {e}"));
    compare("softmax_xent stats", &g[3][1..3], &c[3][1..3], t).unwrap_or_else(|e| panic!("{what}: {e}"));
    // Only the asked-for slots are written, and nothing before the offsets.
    assert!(g[3][0].is_nan() && g[3][3].is_nan(), "{what}: wrote an unrequested stat");
    assert!(g[2][..3].iter().all(|v| v.is_nan()), "{what}: wrote before dz_off");
}

#[test]
fn softmax_xent_matches_cpu() {
    for &(rows, classes) in
        &[(1usize, 2usize), (1, 10), (63, 10), (64, 10), (65, 10), (7, 33), (33, 65), (65, 7), (300, 10)]
    {
        let logits = uniform(rows * classes, rows as u32 * 31 + classes as u32, -8.0, 8.0);
        let labels: Vec<f32> = (0..rows).map(|r| ((r * 7 + 3) % classes) as f32).collect();
        xent_case(rows, classes, logits, labels, &format!("{rows}x{classes}"));
    }
}

#[test]
fn softmax_xent_is_finite_and_matches_at_extremes() {
    // Logits of +-30 and +-300: exp(300) overflows f32, the max-shifted form does not.
    let rows = 6;
    let classes = 3;
    let logits = vec![
        300.0, -300.0, 0.0, // right and sure
        -300.0, 300.0, 0.0, // wrong and sure: loss 600
        30.0, -30.0, 30.0, // a tie: the first largest is the prediction
        -300.0, -300.0, -300.0, // all equal: loss ln 3
        30.0, 29.0, -30.0, //
        0.0, 0.0, 300.0,
    ];
    let labels = vec![0.0, 0.0, 2.0, 1.0, 1.0, 2.0];
    let mut dz = vec![0.0; rows * classes];
    let mut stats = vec![0.0; 2];
    let p = XentParams { rows: 6, classes: 3, scale: 1.0, slot_loss: 0, slot_acc: 1, ..Default::default() };
    softmax_xent(&p, &logits, &labels, &mut dz, &mut stats);
    assert!(dz.iter().all(|v| v.is_finite()), "{dz:?}");
    let want_loss = 0.0 + 600.0 + 2f32.ln() + 3f32.ln() + (1.0 + (-1f32).exp() + (-60f32).exp()).ln() + 1.0 + 0.0;
    assert!((stats[0] - want_loss).abs() < 1e-3, "loss {} vs {want_loss}", stats[0]);
    // Right: rows 0 and 5; row 2's first largest is class 0 (label 2); row 3 ties at class 0.
    assert!((stats[1] - 2.0 / 6.0).abs() < 1e-6, "accuracy {}", stats[1]);
    assert_eq!(&dz[3..6], &[-1.0, 1.0, 0.0]);
    xent_case(rows, classes, logits, labels, "extremes");
}

#[test]
fn softmax_xent_gradient_matches_f64_finite_differences() {
    // The CPU twin's dz against central differences of the mean loss computed in f64.
    let (rows, classes) = (5usize, 7usize);
    let z = uniform(rows * classes, 41, -4.0, 4.0);
    let labels: Vec<f32> = (0..rows).map(|r| ((r * 3) % classes) as f32).collect();
    let p = XentParams {
        rows: rows as u32,
        classes: classes as u32,
        scale: 1.0 / rows as f32,
        slot_loss: 0,
        slot_acc: 1,
        ..Default::default()
    };
    let mut dz = vec![0.0; rows * classes];
    let mut stats = vec![0.0; 2];
    softmax_xent(&p, &z, &labels, &mut dz, &mut stats);
    let loss64 = |z: &[f64]| -> f64 {
        let mut total = 0.0;
        for (r, row) in z.chunks(classes).enumerate() {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            total += lse - row[labels[r] as usize];
        }
        total / rows as f64
    };
    let z64: Vec<f64> = z.iter().map(|&v| v as f64).collect();
    assert!((loss64(&z64) - stats[0] as f64).abs() < 1e-5, "loss {} vs {}", stats[0], loss64(&z64));
    let h = 1e-6;
    for i in 0..z64.len() {
        let (mut up, mut down) = (z64.clone(), z64.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (loss64(&up) - loss64(&down)) / (2.0 * h);
        assert!((fd - dz[i] as f64).abs() < 1e-6 + 1e-4 * fd.abs(), "dz[{i}] {} vs finite difference {fd}", dz[i]);
    }
}
