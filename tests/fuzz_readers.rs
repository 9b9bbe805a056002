//! Property-based fuzzing (proptest) of the two readers that take files from outside: `.npy` data
//! and safetensors checkpoints. Whatever the bytes, they return Ok or a one-line input error;
//! they never panic. Runs briefly in every `cargo test`.

use proptest::prelude::*;
use shadergan::data::{self, Dataset};
use shadergan::programs::trainer::NetSnapshot;
use shadergan::train::checkpoint::{self, Checkpoint};
use shadergan::{Error, Snapshot, TrainOptions};

fn valid_npy() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.npy");
    data::save_npy_f32(&p, 3, 4, &[0.5; 12]).unwrap();
    std::fs::read(p).unwrap()
}

fn valid_checkpoint() -> Vec<u8> {
    let ds = Dataset::from_f32(8, 3, vec![0.25; 24]).unwrap();
    let cfg = TrainOptions {
        latent_dim: Some(2),
        g_hidden: vec![3],
        d_hidden: vec![2],
        batch_size: Some(4),
        ..Default::default()
    }
    .resolve(&ds)
    .unwrap();
    let net = |p: Vec<f32>| NetSnapshot { moments: vec![0.0; 2 * p.len()], params: p, state: vec![] };
    let ck = Checkpoint {
        snapshot: Snapshot {
            state: shadergan::ir::TrainState::new(),
            g: net(cfg.model.generator(false).init(1)),
            d: net(cfg.model.discriminator(0.0, false).init(1)),
            g_ema: None,
            g_ema_state: vec![],
        },
        config: cfg,
        epoch: 0.0,
        data_shape: vec![3],
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.safetensors");
    checkpoint::save(&p, &ck).unwrap();
    std::fs::read(p).unwrap()
}

fn one_line_input_error<T>(r: shadergan::Result<T>) -> Result<(), TestCaseError> {
    if let Err(e) = r {
        prop_assert!(matches!(e, Error::Input(_) | Error::Io(_)), "{e:?}");
        prop_assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
    }
    Ok(())
}

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    for &(i, v) in edits {
        let n = bytes.len();
        bytes[i % n] = v;
    }
    bytes.truncate(cut.max(1));
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn npy_reader_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        one_line_input_error(data::load_npy_bytes(&bytes, "fuzz.npy"))?;
    }

    #[test]
    fn npy_reader_never_panics_on_mutated_files(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in 0usize..400) {
        let bytes = mutate(valid_npy(), &edits, cut);
        one_line_input_error(data::load_npy_bytes(&bytes, "fuzz.npy"))?;
    }

    #[test]
    fn checkpoint_reader_never_panics_on_mutated_files(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in 0usize..4000) {
        let bytes = mutate(valid_checkpoint(), &edits, cut);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fuzz.safetensors");
        std::fs::write(&p, bytes).unwrap();
        one_line_input_error(checkpoint::load(&p))?;
    }

    #[test]
    fn checkpoint_reader_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fuzz.safetensors");
        std::fs::write(&p, bytes).unwrap();
        one_line_input_error(checkpoint::load(&p))?;
    }
}
