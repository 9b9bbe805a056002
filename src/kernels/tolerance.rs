//! The one tolerance table for comparing GPU kernels with their CPU twins (and the two trainers
//! with each other). A value passes when |gpu - cpu| <= abs + rel * |cpu|. Widening an entry needs
//! a comment saying why.

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub rel: f32,
    pub abs: f32,
}

const fn tol(rel: f32, abs: f32) -> Tolerance {
    Tolerance { rel, abs }
}

/// Kernel (or check) name -> tolerance.
pub const TOLERANCES: &[(&str, Tolerance)] = &[
    // Comparisons and selects only: must be exact.
    ("relu", tol(0.0, 0.0)),
    ("leaky_relu", tol(0.0, 0.0)),
    ("gather", tol(0.0, 0.0)),
    ("dropout", tol(0.0, 0.0)),
    // Integer hashing (Philox) and one exact conversion of an integer below 2^24.
    ("random_labels", tol(0.0, 0.0)),
    ("step_tick", tol(0.0, 0.0)),
    // One exp and a division (GPU exp is not correctly rounded).
    ("sigmoid", tol(1e-5, 1e-6)),
    ("tanh", tol(1e-5, 1e-6)),
    ("bce_logits", tol(1e-5, 1e-6)),
    // Comparisons, signs and one product by +-1: exact but for the sums of the statistics
    // (sigmoid's exp), as bce_logits.
    ("hinge_logits", tol(1e-5, 1e-6)),
    // A max, a sum of exps, one log and one exp per class (GPU exp/log not correctly rounded).
    ("softmax_xent", tol(1e-5, 1e-6)),
    // Sums of up to ~1000 products in another order (GPU: 4-wide vectors, maybe fused FMA).
    ("matmul", tol(1e-4, 1e-5)),
    // A linear layer's backward pass in one dispatch: dz = dy act'(y) exactly as
    // activation_backward computes it, then the sums of matmul_backward_weight, bias_backward
    // and matmul_backward_input in their orders: as matmul.
    ("matmul_backward", tol(1e-4, 1e-5)),
    // D's one-logit head, its loss and its backward pass in one dispatch (head.wgsl): the logits
    // are sums of up to k products in the kernel's order (as matmul), the loss's exp and log as
    // bce_logits, dw and dx sums and products of the loss gradient: as matmul.
    ("logit_head", tol(1e-4, 1e-5)),
    // A column sum in another order: as matmul.
    ("bias_backward", tol(1e-4, 1e-5)),
    ("adam_step", tol(1e-5, 1e-7)),
    // Two products and a sum: the GPU may fuse one product into the sum (one rounding fewer),
    // which can differ by an ulp of the larger product when the two nearly cancel.
    ("ema_update", tol(1e-6, 1e-6)),
    // Box-Muller: the GPU's log, cos and sin are not correctly rounded (Vulkan allows a few ulp
    // for log and an absolute error for sin/cos), and sqrt(-2 ln u) amplifies log's error.
    ("noise_normal", tol(1e-4, 1e-5)),
    // --precision f16. A cast is one rounding on each side, the same one (round to nearest even,
    // saturating): exact. Dropout's f32 product, rounded once: exact.
    ("cast_to_f16", tol(0.0, 0.0)),
    ("cast_to_f32", tol(0.0, 0.0)),
    // The f16 output of a matmul: f32 sums as "matmul", then one rounding to f16; where the two
    // sums straddle a rounding boundary the stores differ by one f16 ulp, up to 2^-10 relative.
    ("matmul_forward_f16", tol(2e-3, 2e-5)),
    // f32 outputs from f16 inputs that are bit-identical on both sides: exactly as "matmul".
    ("matmul_backward_input_f16", tol(1e-4, 1e-5)),
    ("matmul_backward_weight_f16", tol(1e-4, 1e-5)),
    // Direct convolutions: sums of up to c_in kh kw (forward, backward input) or n h_out w_out
    // (weight) products in the twins' order; the GPU may fuse each product into its sum (one
    // rounding fewer): as matmul.
    ("conv2d", tol(1e-4, 1e-5)),
    // Tiled forward and input gradient (conv_gemm.wgsl): each output's sum runs in the twin's
    // order (padding taps add an exact 0), four outputs to a vec4: as the direct kernels (on
    // lavapipe both are bit-identical to the twins at every test shape).
    ("conv2d_forward_tiled", tol(1e-4, 1e-5)),
    ("conv2d_backward_input_tiled", tol(1e-4, 1e-5)),
    // Tiled weight gradient: the n h_out w_out products summed in four chunks, then the chunks
    // added ((s0 + s1) + s2) + s3, while the twin sums them in one run: a reassociation, whose
    // error grows with the partial sums, not with the result. At 28x28's Conv(64 -> 128) at batch
    // 8 (392 products of values in [-1, 1], sums up to ~20) lavapipe's largest difference was
    // 1.9e-5; where a sum nearly cancels only the absolute part helps, hence 1e-4 (5x that).
    ("conv2d_backward_weight_tiled", tol(1e-4, 1e-4)),
    // Additions only, in the same fixed order on both sides: exact in IEEE arithmetic; the slack
    // is for GPUs that flush subnormal partial sums to zero.
    ("conv2d_backward_bias", tol(1e-6, 1e-7)),
    // inverseSqrt is not correctly rounded (Vulkan: 2 ulp) and the GPU may fuse the squared
    // deviations into their sum; inv_std's error passes into y, dx and dgamma. Values of x_hat
    // near a cancellation make the absolute part matter.
    ("batch_norm", tol(1e-4, 1e-5)),
    // Spectral normalisation. The power iteration's matrix-vector products and the gradient's
    // dot product are sums of up to 8192 products in the twins' order (256 strided lanes, then a
    // tree), which the GPU may fuse into FMAs: as matmul. Normalising and scaling divide, which
    // WGSL allows 2.5 ulp; sqrt too: a few ulp relative.
    ("spectral_matvec", tol(1e-4, 1e-5)),
    ("spectral_grad_dot", tol(1e-4, 1e-5)),
    ("spectral_normalize", tol(1e-5, 1e-7)),
    ("spectral_scale", tol(1e-6, 0.0)),
    // (g - c u v) / sigma: the product may be fused into the difference, which near a
    // cancellation leaves an absolute error of about an ulp of c u v.
    ("spectral_backward", tol(1e-5, 1e-6)),
    // DiffAugment: a few products and sums per value (which the GPU may fuse into FMAs), and the
    // image's sum for the contrast's mean in the twin's order: as a short matmul.
    ("augment", tol(1e-5, 1e-6)),
    // Class embeddings: the forward is a copy, the gradient a sum of the same values in the same
    // order (batch order) on both sides, with no products to fuse: exact in IEEE arithmetic; the
    // slack is for GPUs that flush subnormal partial sums to zero, as conv2d_backward_bias.
    ("embedding_forward", tol(0.0, 0.0)),
    ("embedding_backward", tol(1e-6, 1e-7)),
    // The projection discriminator's term: dot products of K values (forward), sums of up to B
    // products per class (dE) and two products and a sum (dphi), in the twins' order; the GPU
    // may fuse each product into its sum (one rounding fewer): as matmul (lavapipe matches the
    // twins bit for bit at every test shape).
    ("projection", tol(1e-4, 1e-5)),
    // Conditional batch norm's per-class scale and shift: one product and a sum per value
    // (forward), one product (dx), and per class sums of up to n s products (dgamma) or values
    // (dbeta) in the twins' order; the GPU may fuse each product into its sum: as matmul
    // (lavapipe matches the twins bit for bit at every test shape).
    ("class_affine", tol(1e-4, 1e-5)),
    // Ten full training steps: the per-kernel differences above, compounded through Adam, whose
    // first steps divide by sqrt(v) ~ |g| and so turn tiny gradient differences into parameter
    // differences of order lr * (relative gradient difference).
    ("train_10_steps", tol(1e-3, 1e-4)),
    // Ten f16 training steps (tests/parity_f16.rs). Both sides round the same f32 values to
    // f16 at the same points, so most stores agree bit for bit; but where an f32 sum straddles
    // an f16 rounding boundary, a 1e-7 difference becomes one f16 ulp (~1e-3 relative), which
    // Adam then carries. Passes at train_10_steps's values on lavapipe; doubled for GPUs whose
    // fused multiply-adds move more sums across those boundaries.
    ("train_10_steps_f16", tol(2e-3, 2e-4)),
];

/// The tolerance for `name` (the kernel family prefix: `matmul_forward` -> `matmul`).
pub fn tolerance(name: &str) -> Tolerance {
    let mut best: Option<(&str, Tolerance)> = None;
    for &(k, t) in TOLERANCES {
        if name.starts_with(k) && best.is_none_or(|(b, _)| k.len() > b.len()) {
            best = Some((k, t));
        }
    }
    best.unwrap_or_else(|| panic!("no tolerance for {name}: add it to check::TOLERANCES")).1
}

/// Compares two vectors; on failure says where and by how much (the worst element).
pub fn compare(name: &str, got: &[f32], want: &[f32], t: Tolerance) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{name}: length {} != {}", got.len(), want.len()));
    }
    let mut fails = 0usize;
    let mut worst: Option<(usize, f32)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if g.is_nan() || w.is_nan() {
            g.is_nan() && w.is_nan()
        } else if g.is_infinite() || w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= t.abs + t.rel * w.abs()
        };
        if !ok {
            fails += 1;
            let excess = if g.is_finite() && w.is_finite() { (g - w).abs() } else { f32::INFINITY };
            if worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
    }
    match worst {
        None => Ok(()),
        Some((i, _)) => Err(format!(
            "{name}: {fails} of {} values differ beyond rel {} / abs {}; worst at {i}: gpu {} vs cpu {}",
            got.len(),
            t.rel,
            t.abs,
            got[i],
            want[i]
        )),
    }
}
