//! The numbers behind `imgvec classify` and `imgvec eval`: pure functions, no I/O.
//!
//! - [`vote`]: a label from the k nearest neighbours, each voting with its score `1/(1+d²)`;
//! - [`zero_shot`]: CLIP's own classifier, softmax over `exp(logit_scale) · cos(image, text)`;
//! - [`metrics`]: confusion matrix, accuracy, per-label precision/recall/F1;
//! - [`recall`]: recall@k of an approximate search against the exact one, latency percentiles, and
//!   a seeded sample of query positions.
//!
//! What it is not for: embedding images or texts, talking to a store, or printing (the commands in
//! `commands::classify` and `commands::eval` do that, and hand plain numbers in here).

pub mod metrics;
pub mod recall;
pub mod vote;
pub mod zero_shot;

use serde::Serialize;

/// A label chosen for one image, with how sure the classifier is and what else it considered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub label: String,
    /// kNN: the winning label's share of the total weight; zero-shot: its probability.
    pub confidence: f64,
    /// Every label considered with its weight (kNN: summed scores) or probability (zero-shot), best
    /// first.
    pub scores: Vec<(String, f64)>,
}

impl Prediction {
    /// The second-best label with its share of the total (kNN) or probability (zero-shot).
    pub fn runner_up(&self) -> Option<(&str, f64)> {
        let total: f64 = self.scores.iter().map(|(_, w)| w).sum();
        self.scores
            .get(1)
            .map(|(l, w)| (l.as_str(), if total > 0.0 { w / total } else { 0.0 }))
    }
}
