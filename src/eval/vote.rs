//! kNN classification: the nearest indexed images vote for their labels.
//!
//! Each neighbour votes with weight = its score `1 / (1 + d²)` (Elasticsearch's `l2_norm` score), so
//! closer images count more; the label with the largest total wins, and a tie goes to the label of
//! the nearest neighbour among the tied. Confidence is the winner's share of the total weight. Not
//! for: finding the neighbours (the store does that).

use super::Prediction;

/// Two totals closer than this (relative) are a tie: sums of the same f32 scores in another order
/// differ in the last bits only.
const TIE_TOLERANCE: f64 = 1e-9;

/// The label the neighbours vote for; `neighbours` are `(label, score)` pairs, nearest first.
/// `None` when there are no neighbours.
pub fn knn_vote<'a>(neighbours: impl IntoIterator<Item = (&'a str, f32)>) -> Option<Prediction> {
    // (label, total weight), in order of each label's nearest neighbour.
    let mut totals: Vec<(String, f64)> = Vec::new();
    for (label, score) in neighbours {
        let w = f64::from(score.max(0.0));
        match totals.iter_mut().find(|(l, _)| l == label) {
            Some((_, total)) => *total += w,
            None => totals.push((label.to_string(), w)),
        }
    }
    if totals.is_empty() {
        return None;
    }
    // A stable sort on the total alone keeps tied labels in nearest-neighbour order.
    let mut scores = totals;
    scores.sort_by(|a, b| {
        if tied(a.1, b.1) {
            std::cmp::Ordering::Equal
        } else {
            b.1.total_cmp(&a.1)
        }
    });
    let sum: f64 = scores.iter().map(|(_, w)| w).sum();
    let (label, best) = scores[0].clone();
    let confidence = if sum > 0.0 {
        best / sum
    } else {
        1.0 / scores.len() as f64
    };
    Some(Prediction {
        label,
        confidence,
        scores,
    })
}

fn tied(a: f64, b: f64) -> bool {
    (a - b).abs() <= TIE_TOLERANCE * a.abs().max(b.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_neighbours_no_label() {
        assert_eq!(knn_vote(std::iter::empty()), None);
    }

    #[test]
    fn the_heaviest_label_wins_not_the_most_frequent() {
        // One very close cat against two far dogs.
        let p = knn_vote([("cat", 0.9f32), ("dog", 0.3), ("dog", 0.3)]).unwrap();
        assert_eq!(p.label, "cat");
        assert!((p.confidence - 0.9 / 1.5).abs() < 1e-6);
        assert_eq!(p.scores.len(), 2);
        let (runner, share) = p.runner_up().unwrap();
        assert_eq!(runner, "dog");
        assert!((share - 0.6 / 1.5).abs() < 1e-6);
    }

    #[test]
    fn majority_of_similar_scores_wins() {
        let p = knn_vote([("dog", 0.5f32), ("cat", 0.49), ("cat", 0.48)]).unwrap();
        assert_eq!(p.label, "cat");
        assert!((p.scores[0].1 - 0.97).abs() < 1e-6);
    }

    #[test]
    fn a_tie_goes_to_the_nearest_neighbours_label() {
        let p = knn_vote([("dog", 0.5f32), ("cat", 0.5)]).unwrap();
        assert_eq!(p.label, "dog");
        assert!((p.confidence - 0.5).abs() < 1e-12);
        let p = knn_vote([("cat", 0.5f32), ("dog", 0.25), ("dog", 0.25)]).unwrap();
        assert_eq!(p.label, "cat");
        // Same totals reached in a different summation order still tie.
        let p = knn_vote([("b", 0.1f32), ("a", 0.2), ("b", 0.2), ("a", 0.1)]).unwrap();
        assert_eq!(p.label, "b");
    }

    #[test]
    fn one_label_is_certain() {
        let p = knn_vote([("cat", 0.4f32), ("cat", 0.2)]).unwrap();
        assert_eq!(p.label, "cat");
        assert_eq!(p.confidence, 1.0);
        assert_eq!(p.runner_up(), None);
    }
}
