//! What `imgvec eval` prints: accuracy, per-label precision/recall/F1 and the confusion matrix of each
//! classifier, as aligned tables or as one JSON object. Not for: computing them (`crate::eval`).

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::eval::metrics::Confusion;

/// The accuracy account of one evaluation: a confusion matrix per classifier.
#[derive(Debug, Clone)]
pub struct Accuracy {
    pub knn: Confusion,
    pub zero_shot: Confusion,
    /// Test images whose exact bytes were in the index, left out of their own neighbours.
    pub excluded_self: u64,
}

impl Accuracy {
    /// An empty account over `labels` (the index's).
    pub fn new(labels: &[String]) -> Self {
        Self {
            knn: Confusion::new(labels.iter().cloned()),
            zero_shot: Confusion::new(labels.iter().cloned()),
            excluded_self: 0,
        }
    }

    /// `{"knn": {...}, "zero_shot": {...}, "excluded_self": N}`.
    pub fn to_json(&self, k: usize) -> Value {
        let mut knn = classifier_json(&self.knn);
        knn["k"] = json!(k);
        json!({
            "images": self.knn.total(),
            "knn": knn,
            "zero_shot": classifier_json(&self.zero_shot),
            "excluded_self": self.excluded_self,
        })
    }

    pub fn print(&self, as_json: bool, k: usize) -> Result<()> {
        let mut out = std::io::stdout().lock();
        let written = if as_json {
            writeln!(out, "{}", self.to_json(k))
        } else {
            self.write_text(&mut out, k)
        };
        match written {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(e).context("writing to stdout")
            }
            _ => Ok(()),
        }
    }

    fn write_text(&self, out: &mut impl Write, k: usize) -> std::io::Result<()> {
        writeln!(
            out,
            "{} test image(s); {} found in the index and left out of their own neighbours",
            self.knn.total(),
            self.excluded_self
        )?;
        writeln!(out)?;
        write_classifier(out, &format!("kNN vote (k={k})"), &self.knn)?;
        writeln!(out)?;
        write_classifier(out, "zero-shot (CLIP)", &self.zero_shot)
    }
}

fn classifier_json(c: &Confusion) -> Value {
    let per_label: serde_json::Map<String, Value> = c
        .per_label()
        .into_iter()
        .map(|s| {
            (
                s.label.clone(),
                json!({"precision": s.precision, "recall": s.recall, "f1": s.f1,
                       "support": s.support}),
            )
        })
        .collect();
    json!({
        "accuracy": c.accuracy(),
        "correct": c.correct(),
        "macro_f1": c.macro_f1(),
        "per_label": per_label,
        "confusion": {"labels": c.labels, "matrix": c.matrix},
    })
}

/// Accuracy line, per-label table and confusion matrix of one classifier.
pub fn write_classifier(out: &mut impl Write, title: &str, c: &Confusion) -> std::io::Result<()> {
    writeln!(
        out,
        "{title}: accuracy {:.4} ({}/{}), macro F1 {:.4}",
        c.accuracy(),
        c.correct(),
        c.total(),
        c.macro_f1()
    )?;
    let lw = c.labels.iter().map(String::len).max().unwrap_or(0).max(5);
    writeln!(
        out,
        "  {:<lw$}  {:>9}  {:>7}  {:>7}  {:>7}",
        "label", "precision", "recall", "f1", "support"
    )?;
    for s in c.per_label() {
        writeln!(
            out,
            "  {:<lw$}  {:>9.4}  {:>7.4}  {:>7.4}  {:>7}",
            s.label, s.precision, s.recall, s.f1, s.support
        )?;
    }
    writeln!(out, "  confusion (rows: true label, columns: predicted)")?;
    let cw: Vec<usize> = c
        .labels
        .iter()
        .enumerate()
        .map(|(j, l)| {
            let widest = c.matrix.iter().map(|r| r[j].to_string().len()).max();
            l.len().max(widest.unwrap_or(1))
        })
        .collect();
    write!(out, "  {:<lw$}", "")?;
    for (l, w) in c.labels.iter().zip(&cw) {
        write!(out, "  {l:>w$}")?;
    }
    writeln!(out)?;
    for (l, row) in c.labels.iter().zip(&c.matrix) {
        write!(out, "  {l:<lw$}")?;
        for (n, w) in row.iter().zip(&cw) {
            write!(out, "  {n:>w$}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_aligned_and_json_has_the_documented_keys() {
        let labels = vec!["cat".to_string(), "hotdog".to_string()];
        let mut a = Accuracy::new(&labels);
        for (t, p) in [("cat", "cat"), ("cat", "hotdog"), ("hotdog", "hotdog")] {
            a.knn.add(t, p);
            a.zero_shot.add(t, t);
        }
        a.excluded_self = 1;
        let mut buf = Vec::new();
        a.write_text(&mut buf, 5).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.contains("kNN vote (k=5): accuracy 0.6667 (2/3)"),
            "{text}"
        );
        assert!(
            text.contains("zero-shot (CLIP): accuracy 1.0000 (3/3)"),
            "{text}"
        );
        assert!(text.contains("\n          cat  hotdog\n"), "{text}");
        assert!(text.contains("\n  cat       1       1\n"), "{text}");
        assert!(text.contains("\n  hotdog    0       1\n"), "{text}");

        let v = a.to_json(5);
        assert_eq!(v["excluded_self"], 1);
        assert_eq!(v["knn"]["confusion"]["matrix"], json!([[1, 1], [0, 1]]));
        assert_eq!(v["knn"]["per_label"]["hotdog"]["precision"], json!(0.5));
        assert_eq!(v["zero_shot"]["accuracy"], json!(1.0));
    }
}
