//! Zero-shot classification: the model's own classifier, with no indexed neighbours.
//!
//! One prompt per label (`"a photo of a {label}"` by default). CLIP and Chinese-CLIP: the
//! probabilities are the softmax over `exp(logit_scale) · cos(image, text)`, with `logit_scale`
//! read from the checkpoint — the numbers transformers' `CLIPModel(...).logits_per_image.softmax(-1)`
//! gives. SigLIP: each label's score is its own `sigmoid(exp(logit_scale) · cos + logit_bias)`
//! (they need not sum to 1), transformers' `torch.sigmoid(SiglipModel(...).logits_per_image)`.
//! Not for: embedding the image or the prompts (`clip` does that) or finding the labels (the
//! store does).

use super::Prediction;

/// The default prompt template.
pub const DEFAULT_TEMPLATE: &str = "a photo of a {label}";

/// The placeholder a template must contain.
pub const PLACEHOLDER: &str = "{label}";

/// The prompt for `label`: the template with every `{label}` replaced. A template without the
/// placeholder would give every label the same prompt, so it is refused.
pub fn prompt(template: &str, label: &str) -> Result<String, String> {
    if !template.contains(PLACEHOLDER) {
        return Err(format!(
            "the template {template:?} has no {PLACEHOLDER}: every label would get the same text"
        ));
    }
    Ok(template.replace(PLACEHOLDER, label))
}

/// CLIP's logits of one image against each text: `exp(logit_scale) · cos(image, text)`.
pub fn logits(image: &[f32], texts: &[Vec<f32>], logit_scale: f32) -> Vec<f64> {
    let scale = f64::from(logit_scale).exp();
    texts
        .iter()
        .map(|t| scale * crate::clip::cosine(image, t))
        .collect()
}

/// The softmax of `logits` (shifted by their maximum, so large logits do not overflow).
pub fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return vec![1.0 / logits.len().max(1) as f64; logits.len()];
    }
    let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// The logistic function, `1 / (1 + e^-x)`.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// How a checkpoint turns cosines into label scores, from its learned parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scoring {
    pub logit_scale: f32,
    /// SigLIP's `logit_bias`: scores are sigmoids of the biased logits. `None`: a softmax.
    pub logit_bias: Option<f32>,
}

impl Scoring {
    /// CLIP's softmax with this `logit_scale`.
    pub fn softmax(logit_scale: f32) -> Self {
        Self {
            logit_scale,
            logit_bias: None,
        }
    }

    /// The score of each text for `image`: softmax probabilities, or SigLIP's sigmoids.
    pub fn scores(&self, image: &[f32], texts: &[Vec<f32>]) -> Vec<f64> {
        let logits = logits(image, texts, self.logit_scale);
        match self.logit_bias {
            None => softmax(&logits),
            Some(bias) => logits
                .into_iter()
                .map(|l| sigmoid(l + f64::from(bias)))
                .collect(),
        }
    }
}

/// The label of `image` among `labels` (whose prompt embeddings are `texts`, in the same order);
/// `None` when there are no labels.
pub fn classify(
    image: &[f32],
    labels: &[String],
    texts: &[Vec<f32>],
    scoring: Scoring,
) -> Option<Prediction> {
    if labels.is_empty() || labels.len() != texts.len() {
        return None;
    }
    let probs = scoring.scores(image, texts);
    let mut scores: Vec<(String, f64)> = labels.iter().cloned().zip(probs).collect();
    // Stable: equal probabilities keep the labels' order.
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (label, confidence) = scores[0].clone();
    Some(Prediction {
        label,
        confidence,
        scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_fill_the_template() {
        assert_eq!(prompt(DEFAULT_TEMPLATE, "cat").unwrap(), "a photo of a cat");
        assert_eq!(
            prompt("{label} or not {label}", "dog").unwrap(),
            "dog or not dog"
        );
        assert!(prompt("a photo", "dog").is_err());
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_logits() {
        let p = softmax(&[1000.0, 1000.0, 999.0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((p[0] - p[1]).abs() < 1e-15);
        let e = 1f64.exp();
        assert!((p[0] - e / (2.0 * e + 1.0)).abs() < 1e-12);
        assert!(softmax(&[]).is_empty());
    }

    #[test]
    fn logits_are_scaled_cosines() {
        let image = [1.0f32, 0.0];
        let texts = vec![vec![1.0f32, 0.0], vec![0.0, 2.0], vec![-3.0, 0.0]];
        let scale = 100f32.ln();
        let l = logits(&image, &texts, scale);
        assert!((l[0] - 100.0).abs() < 1e-3);
        assert!(l[1].abs() < 1e-9);
        assert!((l[2] + 100.0).abs() < 1e-3);
    }

    #[test]
    fn the_most_probable_label_wins() {
        let labels = vec!["cat".to_string(), "dog".to_string()];
        let texts = vec![vec![0.0f32, 1.0], vec![1.0, 0.0]];
        let p = classify(&[0.8, 0.6], &labels, &texts, Scoring::softmax(1f32.ln())).unwrap();
        assert_eq!(p.label, "dog");
        let expect = 0.8f64.exp() / (0.8f64.exp() + 0.6f64.exp());
        assert!((p.confidence - expect).abs() < 1e-7);
        assert_eq!(p.scores[1].0, "cat");
        assert!(classify(&[1.0], &[], &[], Scoring::softmax(1.0)).is_none());
    }

    #[test]
    fn siglip_scores_are_independent_sigmoids() {
        let labels = vec!["cat".to_string(), "dog".to_string()];
        let texts = vec![vec![0.0f32, 1.0], vec![1.0, 0.0]];
        let scoring = Scoring {
            logit_scale: 10f32.ln(),
            logit_bias: Some(-5.0),
        };
        let p = classify(&[0.8, 0.6], &labels, &texts, scoring).unwrap();
        assert_eq!(p.label, "dog");
        assert!((p.confidence - sigmoid(10.0 * 0.8 - 5.0)).abs() < 1e-6);
        assert!((p.scores[1].1 - sigmoid(10.0 * 0.6 - 5.0)).abs() < 1e-6);
        assert!(
            p.scores.iter().map(|s| s.1).sum::<f64>() > 1.0,
            "not a softmax"
        );
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-15);
    }
}
