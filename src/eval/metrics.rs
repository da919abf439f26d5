//! Classification quality: the confusion matrix, accuracy and per-label precision, recall and F1.
//!
//! Rows of the matrix are the true labels, columns the predicted ones, in one label order. A label
//! that was never predicted has precision 0 (as scikit-learn's `zero_division=0`), one that never
//! occurs has recall 0. Not for: choosing labels (`vote`, `zero_shot`) or printing them.

use serde::Serialize;

/// Counts of (true label, predicted label) pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub labels: Vec<String>,
    /// `matrix[t][p]`: images of true label `labels[t]` predicted as `labels[p]`.
    pub matrix: Vec<Vec<u64>>,
}

/// Precision, recall and F1 of one label, and how many images truly have it (support).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScores {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

impl Confusion {
    /// An empty matrix over `labels` (duplicates dropped, order kept).
    pub fn new(labels: impl IntoIterator<Item = String>) -> Self {
        let mut c = Confusion {
            labels: Vec::new(),
            matrix: Vec::new(),
        };
        for l in labels {
            c.position(&l);
        }
        c
    }

    /// The row/column of `label`, adding it when new.
    fn position(&mut self, label: &str) -> usize {
        if let Some(i) = self.labels.iter().position(|l| l == label) {
            return i;
        }
        self.labels.push(label.to_string());
        for row in &mut self.matrix {
            row.push(0);
        }
        self.matrix.push(vec![0; self.labels.len()]);
        self.labels.len() - 1
    }

    /// Counts one image of label `truth` that was classified as `predicted`.
    pub fn add(&mut self, truth: &str, predicted: &str) {
        let t = self.position(truth);
        let p = self.position(predicted);
        self.matrix[t][p] += 1;
    }

    /// Images counted.
    pub fn total(&self) -> u64 {
        self.matrix.iter().flatten().sum()
    }

    /// Images classified correctly.
    pub fn correct(&self) -> u64 {
        (0..self.labels.len()).map(|i| self.matrix[i][i]).sum()
    }

    /// Share classified correctly (0 with no images).
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    /// Precision, recall and F1 of every label, in the matrix's order.
    pub fn per_label(&self) -> Vec<LabelScores> {
        let n = self.labels.len();
        (0..n)
            .map(|i| {
                let tp = self.matrix[i][i];
                let predicted: u64 = (0..n).map(|t| self.matrix[t][i]).sum();
                let support: u64 = self.matrix[i].iter().sum();
                let precision = ratio(tp, predicted);
                let recall = ratio(tp, support);
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                LabelScores {
                    label: self.labels[i].clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect()
    }

    /// The unweighted mean F1 over labels that occur in the truth (macro F1).
    pub fn macro_f1(&self) -> f64 {
        let scores: Vec<LabelScores> = self
            .per_label()
            .into_iter()
            .filter(|s| s.support > 0)
            .collect();
        if scores.is_empty() {
            return 0.0;
        }
        scores.iter().map(|s| s.f1).sum::<f64>() / scores.len() as f64
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn counts_and_scores_match_a_hand_computed_case() {
        let mut c = Confusion::new(labels(&["cat", "dog"]));
        for (t, p) in [
            ("cat", "cat"),
            ("cat", "cat"),
            ("cat", "dog"),
            ("dog", "dog"),
            ("dog", "dog"),
            ("dog", "dog"),
            ("dog", "cat"),
        ] {
            c.add(t, p);
        }
        assert_eq!(c.matrix, vec![vec![2, 1], vec![1, 3]]);
        assert_eq!(c.total(), 7);
        assert!((c.accuracy() - 5.0 / 7.0).abs() < 1e-12);
        let s = c.per_label();
        // cat: tp 2, predicted 3, support 3.
        assert!((s[0].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((s[0].recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((s[0].f1 - 2.0 / 3.0).abs() < 1e-12);
        // dog: tp 3, predicted 4, support 4.
        assert!((s[1].precision - 0.75).abs() < 1e-12);
        assert!((s[1].recall - 0.75).abs() < 1e-12);
        assert_eq!(s[1].support, 4);
        assert!((c.macro_f1() - (2.0 / 3.0 + 0.75) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn never_predicted_and_new_labels() {
        let mut c = Confusion::new(labels(&["a", "b", "a"]));
        assert_eq!(c.labels, labels(&["a", "b"]));
        c.add("a", "a");
        c.add("b", "a");
        c.add("c", "a"); // a label first seen here gets a row and a column
        assert_eq!(c.labels, labels(&["a", "b", "c"]));
        assert_eq!(c.matrix, vec![vec![1, 0, 0], vec![1, 0, 0], vec![1, 0, 0]]);
        let s = c.per_label();
        assert_eq!((s[1].precision, s[1].recall, s[1].f1), (0.0, 0.0, 0.0));
        assert!((s[0].precision - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(s[0].recall, 1.0);
    }

    #[test]
    fn empty_is_zero_not_nan() {
        let c = Confusion::new(labels(&["a"]));
        assert_eq!(c.accuracy(), 0.0);
        assert_eq!(c.macro_f1(), 0.0);
        assert_eq!(c.per_label()[0].f1, 0.0);
    }
}
