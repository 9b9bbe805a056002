//! The sliced Wasserstein distance within each class of a conditional run (eval.json's
//! `class_swd`): the images G made when asked for class c against the real images of class c,
//! each class with its own [`Reference`] (its own normalisation, sorted projections and
//! real-vs-real floor), so that a colour folder without a classifier still says whether each
//! class looks like its own pictures and not only like the folder as a whole.
//!
//! Per class, `samples` = min(`CLASS_MAX_SAMPLES`, real images of the class / 2, images asked for
//! it): the first that many images asked for c (in the order given) against the first that many
//! real images of c in the run's seeded order. Fewer samples than the overall SWD's, so each
//! class's floor is higher than the overall floor; it is reported beside each distance.

use serde::Serialize;

use super::{sample_count, Reference};
use crate::data::Dataset;
use crate::error::Result;

/// Most images a side per class: the classes' references together then hold about as much as
/// the overall one (10 classes x 256 against 2,048), so the per-class scores cost about as much.
pub const CLASS_MAX_SAMPLES: usize = 256;

/// One class's numbers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassSwd {
    pub class: usize,
    pub name: String,
    /// Images on each side (0: the class has under 2 real images, or none were asked for).
    pub samples: usize,
    pub swd: Option<f64>,
    pub real_floor: Option<f64>,
}

/// eval.json's `class_swd`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassSwdMetrics {
    /// The mean over the scored classes, and of their floors.
    pub mean_class_swd: Option<f64>,
    pub mean_class_swd_floor: Option<f64>,
    pub per_class: Vec<ClassSwd>,
}

impl ClassSwdMetrics {
    pub fn line(&self) -> String {
        let v = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}"));
        format!("per-class SWD {} (floor {})", v(self.mean_class_swd), v(self.mean_class_swd_floor))
    }
}

/// The real side of every class, built once per run.
pub struct ClassReferences {
    names: Vec<String>,
    refs: Vec<Option<Reference>>,
}

impl ClassReferences {
    /// For data with classes, and `asked[c]` images asked for class c in each scoring.
    pub fn new(data: &Dataset, seed: u64, asked: &[usize]) -> Result<Option<Self>> {
        let Some(labels) = &data.classes else { return Ok(None) };
        let mut refs = vec![];
        for c in 0..labels.classes() {
            let rows: Vec<usize> = (0..data.n).filter(|&r| labels.ids[r] as usize == c).collect();
            let samples = CLASS_MAX_SAMPLES.min(sample_count(rows.len())).min(asked.get(c).copied().unwrap_or(0));
            refs.push(match samples {
                0 => None,
                _ => Some(Reference::new(&data.select(&rows), seed, samples)?),
            });
        }
        Ok(Some(ClassReferences { names: labels.names.clone(), refs }))
    }

    /// Images a side of each class (0: not scored).
    pub fn samples(&self) -> Vec<usize> {
        self.refs.iter().map(|r| r.as_ref().map_or(0, |r| r.samples())).collect()
    }

    /// The distances of `images` (rows of `dim` values, channel planes in [0, 1]) made for the
    /// classes `asked`, row by row.
    pub fn metrics(&self, images: &[f32], dim: usize, asked: &[u32]) -> ClassSwdMetrics {
        let mut per_class = vec![];
        for (c, r) in self.refs.iter().enumerate() {
            let name = self.names[c].clone();
            let Some(r) = r else {
                per_class.push(ClassSwd { class: c, name, samples: 0, swd: None, real_floor: None });
                continue;
            };
            let rows = (0..asked.len()).filter(|&i| asked[i] as usize == c).take(r.samples());
            let picked: Vec<f32> = rows.flat_map(|i| images[i * dim..(i + 1) * dim].iter().copied()).collect();
            let swd = (picked.len() == r.samples() * dim).then(|| r.distances(&picked).mean);
            per_class.push(ClassSwd { class: c, name, samples: r.samples(), swd, real_floor: Some(r.floor().mean) });
        }
        let mean = |v: Vec<Option<f64>>| {
            let known: Vec<f64> = v.into_iter().flatten().collect();
            (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
        };
        let scored: Vec<&ClassSwd> = per_class.iter().filter(|c| c.swd.is_some()).collect();
        ClassSwdMetrics {
            mean_class_swd: mean(scored.iter().map(|c| c.swd).collect()),
            mean_class_swd_floor: mean(scored.iter().map(|c| c.real_floor).collect()),
            per_class,
        }
    }
}
