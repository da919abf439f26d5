//! What a search request asks for: its fields read from `multipart/form-data` or JSON, checked, and
//! the rule that combines the parts into one query vector.
//!
//! What it is for: turning `image`, `q`, `text`, `minus`, `k`, `label`, `num_candidates` into a
//! [`SearchRequest`] (400 with the reason for anything malformed, 413 for an upload over the limit),
//! and the page's query syntax: in `q`, a leading `-word` (or `-"a phrase"`) subtracts, like
//! `--minus`; the other words are one text.
//!
//! What it is not for: running the model or the store (see `state` and `routes`).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use base64::Engine;

use serde::Deserialize;

use super::api::ApiError;
use crate::cli::{check_distance, check_score, distance_error, score_error};
use crate::store::{default_num_candidates, MAX_NUM_CANDIDATES};

/// Default and largest number of results.
pub const DEFAULT_K: usize = 10;
pub const MAX_K: usize = MAX_NUM_CANDIDATES;
/// Most texts (`text` plus `minus`) in one query, and most characters in all of them.
pub const MAX_TEXTS: usize = 16;
pub const MAX_TEXT_CHARS: usize = 4_000;
/// Room for the form's other fields and its boundaries on top of the image.
pub const FORM_OVERHEAD: u64 = 64 << 10;

/// A checked search request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchRequest {
    pub image: Option<Bytes>,
    pub text: Vec<String>,
    pub minus: Vec<String>,
    pub k: usize,
    pub num_candidates: usize,
    pub label: Option<String>,
    /// Only hits at most this far from the query.
    pub max_distance: Option<f32>,
}

/// The fields as they arrive, before checking.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchFields {
    /// In JSON: the image file's bytes, base64.
    #[serde(default, deserialize_with = "base64_opt")]
    pub image: Option<Bytes>,
    pub q: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub text: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub minus: Vec<String>,
    pub k: Option<u64>,
    pub label: Option<String>,
    pub num_candidates: Option<u64>,
    /// The cut-off, as a distance or as a score (one of them).
    pub max_distance: Option<f64>,
    pub min_score: Option<f64>,
}

/// `k`, `label`, `num_candidates`, `max_distance`, `min_score` of `GET /api/similar/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarParams {
    pub k: Option<u64>,
    pub label: Option<String>,
    pub num_candidates: Option<u64>,
    pub max_distance: Option<f64>,
    pub min_score: Option<f64>,
}

/// `max_distance` and `label` of `GET /api/dupes`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DupesParams {
    pub max_distance: Option<f64>,
    pub label: Option<String>,
}

/// The search cut-off as a distance: `max_distance` (0 to 2) or `min_score` (above 0, at most
/// 1), not both.
pub fn cut_off(max_distance: Option<f64>, min_score: Option<f64>) -> Result<Option<f32>, ApiError> {
    match (max_distance, min_score) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give max_distance or min_score, not both",
        )),
        (Some(d), None) => check_distance(d as f32).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("max_distance: {}", distance_error(&d.to_string())))
        }),
        (None, Some(s)) => check_score(s as f32)
            .map(|s| Some(crate::store::score_to_distance(s)))
            .ok_or_else(|| {
                ApiError::bad_request(format!("min_score: {}", score_error(&s.to_string())))
            }),
        (None, None) => Ok(None),
    }
}

/// Reads a search request's body, multipart or JSON, holding uploads to `max_upload` bytes.
pub async fn read_search(req: Request<Body>, max_upload: u64) -> Result<SearchFields, ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let form = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        read_multipart(form, max_upload).await
    } else if content_type.starts_with("application/json") {
        // base64 makes the image a third larger.
        let limit = (max_upload + FORM_OVERHEAD) * 4 / 3;
        let body = axum::body::to_bytes(req.into_body(), limit as usize)
            .await
            .map_err(|_| ApiError::too_large(max_upload))?;
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the JSON body is not a search: {e}")))
    } else {
        Err(ApiError::bad_request(
            "send the search as multipart/form-data or application/json",
        ))
    }
}

async fn read_multipart(mut form: Multipart, max_upload: u64) -> Result<SearchFields, ApiError> {
    let mut f = SearchFields::default();
    let form_error = |e: axum::extract::multipart::MultipartError| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(max_upload)
        } else {
            ApiError::bad_request(format!("the form could not be read: {}", e.body_text()))
        }
    };
    while let Some(mut field) = form.next_field().await.map_err(form_error)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "image" {
            let mut data = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(form_error)? {
                if (data.len() + chunk.len()) as u64 > max_upload {
                    return Err(ApiError::too_large(max_upload));
                }
                data.extend_from_slice(&chunk);
            }
            // A form whose file input was left empty sends an empty part.
            if !data.is_empty() {
                f.image = Some(Bytes::from(data));
            }
            continue;
        }
        let value = field.text().await.map_err(form_error)?;
        let number = |v: &str| {
            v.trim().parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("{name} must be a whole number, not {v:?}"))
            })
        };
        match name.as_str() {
            "q" => f.q = Some(value),
            "text" => f.text.push(value),
            "minus" => f.minus.push(value),
            "label" => f.label = Some(value),
            "max_distance" | "min_score" if !value.trim().is_empty() => {
                let v = value.trim().parse::<f64>().map_err(|_| {
                    ApiError::bad_request(format!("{name} must be a number, not {value:?}"))
                })?;
                if name == "max_distance" {
                    f.max_distance = Some(v);
                } else {
                    f.min_score = Some(v);
                }
            }
            "max_distance" | "min_score" => {}
            "k" if !value.trim().is_empty() => f.k = Some(number(&value)?),
            "num_candidates" if !value.trim().is_empty() => {
                f.num_candidates = Some(number(&value)?)
            }
            "k" | "num_candidates" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form field {other:?}"
                )))
            }
        }
    }
    Ok(f)
}

impl SearchFields {
    /// Checks the fields and splits `q` into texts to add and texts to subtract.
    pub fn check(self) -> Result<SearchRequest, ApiError> {
        let (mut text, mut minus) = (self.text, self.minus);
        if let Some(q) = &self.q {
            let (t, m) = parse_query(q);
            text.extend(t);
            minus.extend(m);
        }
        text.retain(|t| !t.trim().is_empty());
        minus.retain(|t| !t.trim().is_empty());
        if text.len() + minus.len() > MAX_TEXTS {
            return Err(ApiError::bad_request(format!(
                "too many texts: at most {MAX_TEXTS} (text and minus together)"
            )));
        }
        let chars: usize = text.iter().chain(&minus).map(|t| t.chars().count()).sum();
        if chars > MAX_TEXT_CHARS {
            return Err(ApiError::bad_request(format!(
                "the query texts are too long: at most {MAX_TEXT_CHARS} characters in all"
            )));
        }
        if self.image.is_none() && text.is_empty() {
            return Err(ApiError::bad_request(if minus.is_empty() {
                "nothing to search for: give a text or an image"
            } else {
                "nothing to search for: a -word only subtracts; give a text or an image too"
            }));
        }
        let (k, num_candidates) = check_k(self.k, self.num_candidates)?;
        Ok(SearchRequest {
            image: self.image,
            text,
            minus,
            k,
            num_candidates,
            label: clean_label(self.label),
            max_distance: cut_off(self.max_distance, self.min_score)?,
        })
    }
}

/// `k` (default 10, 1..=10000) and `num_candidates` (default max(100, 10·k), k..=10000).
pub fn check_k(k: Option<u64>, num_candidates: Option<u64>) -> Result<(usize, usize), ApiError> {
    let k = match k {
        None => DEFAULT_K,
        Some(k) if k == 0 || k > MAX_K as u64 => {
            return Err(ApiError::bad_request(format!(
                "k must be between 1 and {MAX_K}, not {k}"
            )))
        }
        Some(k) => k as usize,
    };
    let n = match num_candidates {
        None => default_num_candidates(k),
        Some(n) if (n as usize) < k || n > MAX_NUM_CANDIDATES as u64 => {
            return Err(ApiError::bad_request(format!(
                "num_candidates must be between k ({k}) and {MAX_NUM_CANDIDATES}, not {n}"
            )))
        }
        Some(n) => n as usize,
    };
    Ok((k, n))
}

/// An empty label means no filter.
pub fn clean_label(label: Option<String>) -> Option<String> {
    label.filter(|l| !l.is_empty())
}

/// Splits the page's query syntax: `-word` and `-"a phrase"` are subtracted; the other words, in
/// order, are one text. `a dog on grass -indoors` → (["a dog on grass"], ["indoors"]).
pub fn parse_query(q: &str) -> (Vec<String>, Vec<String>) {
    let mut words = Vec::new();
    let mut minus = Vec::new();
    let mut chars = q.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else { break };
        let negative = first == '-';
        if negative {
            chars.next();
        }
        let mut term = String::new();
        if chars.next_if_eq(&'"').is_some() {
            term.extend(chars.by_ref().take_while(|c| *c != '"'));
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                term.push(c);
            }
        }
        let term = term.trim().to_string();
        match (negative, term.is_empty()) {
            (_, true) => {}
            (true, false) => minus.push(term),
            (false, false) => words.push(term),
        }
    }
    let text = if words.is_empty() {
        Vec::new()
    } else {
        vec![words.join(" ")]
    };
    (text, minus)
}

pub use crate::clip::combine;

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

fn base64_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    // Also accept a data: URL, as a page's FileReader makes.
    let s = s.split_once(";base64,").map_or(s.as_str(), |(_, b)| b);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| serde::de::Error::custom(format!("image is not base64: {e}")))?;
    Ok((!bytes.is_empty()).then(|| Bytes::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_leading_dash_subtracts() {
        assert_eq!(
            parse_query("a dog on grass -indoors"),
            (strings(&["a dog on grass"]), strings(&["indoors"]))
        );
        assert_eq!(
            parse_query("  -\"black and white\" cat  -dog "),
            (strings(&["cat"]), strings(&["black and white", "dog"]))
        );
        assert_eq!(
            parse_query("black-and-white photo"),
            (strings(&["black-and-white photo"]), vec![])
        );
        assert_eq!(parse_query("cat - dog"), (strings(&["cat dog"]), vec![]));
        assert_eq!(parse_query("\"a b\" c"), (strings(&["a b c"]), vec![]));
        assert_eq!(parse_query("  "), (vec![], vec![]));
        assert_eq!(parse_query("-\"unclosed"), (vec![], strings(&["unclosed"])));
    }

    #[test]
    fn fields_are_checked() {
        let f = SearchFields {
            q: Some("cat -dog".into()),
            text: strings(&["kitten", " "]),
            label: Some(String::new()),
            ..Default::default()
        };
        let r = f.check().unwrap();
        assert_eq!(r.text, strings(&["kitten", "cat"]));
        assert_eq!(r.minus, strings(&["dog"]));
        assert_eq!((r.k, r.num_candidates, r.label), (10, 100, None));

        let minus_only = SearchFields {
            q: Some("-dog".into()),
            ..Default::default()
        };
        assert!(minus_only
            .check()
            .unwrap_err()
            .message
            .contains("subtracts"));
        assert_eq!(SearchFields::default().check().unwrap_err().status, 400);
    }

    #[test]
    fn k_and_candidates_are_bounded() {
        assert_eq!(check_k(None, None).unwrap(), (10, 100));
        assert_eq!(check_k(Some(50), None).unwrap(), (50, 500));
        assert_eq!(check_k(Some(5), Some(5)).unwrap(), (5, 5));
        assert!(check_k(Some(0), None).is_err());
        assert!(check_k(Some(10_001), None).is_err());
        assert!(check_k(Some(20), Some(10)).is_err());
        assert!(check_k(Some(20), Some(10_001)).is_err());
    }

    #[test]
    fn json_takes_one_text_or_many_and_base64_images() {
        let f: SearchFields =
            serde_json::from_str(r#"{"text": "cat", "minus": ["a", "b"], "k": 3, "image": "data:image/png;base64,AAEC"}"#)
                .unwrap();
        assert_eq!(f.text, strings(&["cat"]));
        assert_eq!(f.minus, strings(&["a", "b"]));
        assert_eq!(f.image.as_deref(), Some(&[0u8, 1, 2][..]));
        assert!(serde_json::from_str::<SearchFields>(r#"{"txt": "cat"}"#).is_err());
        assert!(serde_json::from_str::<SearchFields>(r#"{"image": "%%%"}"#).is_err());
    }

    #[test]
    fn parts_combine_to_a_unit_vector() {
        let v = combine(2, &[(vec![1.0, 0.0], 1.0), (vec![0.0, 1.0], 1.0)]).unwrap();
        assert!((v[0] - v[1]).abs() < 1e-6 && (v[0] * v[0] + v[1] * v[1] - 1.0).abs() < 1e-6);
        assert_eq!(
            combine(2, &[(vec![1.0, 0.0], 1.0), (vec![1.0, 0.0], -1.0)]),
            None
        );
    }
}
