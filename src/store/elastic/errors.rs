//! What went wrong, in words a user can act on: turning a non-success reply of an operation into a
//! [`StoreError`] (401, 403 with the privileges the operation needs, missing index, ...), and short
//! one-line summaries of error bodies.
//!
//! What it is not for: sending requests or deciding what to retry (see `connection`); it only reads
//! replies and errors that already happened. Nothing here prints a URL's user info.

use serde_json::Value;

use super::connection::{Connection, Reply};
pub(super) use super::transport_errors::truncate;
#[cfg(test)]
use super::transport_errors::{certificate_problem, redact_url};
use crate::store::StoreError;

/// What a request was for: decides the message for a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// `HEAD /index`.
    Exists,
    /// `GET /index/_mapping`.
    Mapping,
    /// `PUT /index`.
    CreateIndex,
    /// `DELETE /index`.
    DeleteIndex,
    /// `_bulk` with `create` (`overwrite: false`) or `index` actions.
    Bulk { overwrite: bool },
    /// `_bulk` with `delete` actions.
    Delete,
    /// `_bulk` with `update` (and `delete`) actions on documents' paths.
    Paths,
    /// `_mget` of ids.
    Mget,
    /// `_search`.
    Search,
    /// `_count`.
    Count,
    /// `_refresh`.
    Refresh,
    /// `GET`/`PUT _settings` (bulk-load mode).
    Settings,
    /// `_forcemerge`.
    ForceMerge,
    /// `PUT /index/_mapping` with `_meta` (recording the model in an older index).
    PutMeta,
}

impl Op {
    /// What the operation does, as in "may not {action}", and the index privilege that allows it.
    fn action_and_privilege(self) -> (&'static str, &'static str) {
        match self {
            Op::Exists | Op::Mapping => ("read the index's mapping", "view_index_metadata"),
            Op::CreateIndex => ("create the index", "create_index"),
            Op::DeleteIndex => ("delete the index", "delete_index"),
            Op::Bulk { overwrite: false } => ("write documents", "create_doc"),
            Op::Bulk { overwrite: true } => ("overwrite documents", "index"),
            Op::Delete => ("delete documents", "delete"),
            Op::Paths => ("update documents' paths", "index"),
            Op::Mget | Op::Search | Op::Count => ("read documents", "read"),
            Op::Refresh => ("refresh the index", "maintenance"),
            Op::Settings => ("change the index's settings", "manage"),
            Op::ForceMerge => ("force-merge the index", "maintenance"),
            Op::PutMeta => ("record the model in the index's mapping", "manage"),
        }
    }
}

/// The error for a reply to `op` on `index` whose status is not a success. `url` is the shown URL.
pub(super) fn error_for(conn: &Connection, index: &str, op: Op, reply: &Reply) -> StoreError {
    let url = conn.url();
    let status = reply.status.as_u16();
    let detail = || {
        if reply.body.is_null() {
            format!("HTTP {status}")
        } else {
            error_summary(&reply.body)
        }
    };
    match status {
        401 => StoreError::Auth {
            url: url.to_string(),
            detail: detail(),
            sent_credentials: conn.sends_credentials(),
        },
        403 => {
            let (action, privilege) = op.action_and_privilege();
            StoreError::Forbidden {
                url: url.to_string(),
                index: index.to_string(),
                action: action.to_string(),
                privilege: privilege.to_string(),
                detail: detail(),
            }
        }
        404 if reply.body.is_null()
            || error_type(&reply.body) == Some("index_not_found_exception") =>
        {
            StoreError::IndexMissing {
                index: index.to_string(),
            }
        }
        _ => StoreError::Server {
            status,
            body: error_summary(&reply.body),
        },
    }
}

/// An answer that does not have the documented shape.
pub(super) fn unexpected(url: &str, what: &str, body: &Value) -> StoreError {
    StoreError::Other(format!(
        "unexpected answer to {what} from {url}: {}",
        truncate(&body.to_string(), 500)
    ))
}

/// `error.type` of an Elasticsearch error body.
pub(super) fn error_type(body: &Value) -> Option<&str> {
    body.get("error")?.get("type")?.as_str()
}

/// A short line for an Elasticsearch error body: `type: reason`, plus the root cause when it says
/// more (e.g. under `search_phase_execution_exception: all shards failed`).
pub(super) fn error_summary(body: &Value) -> String {
    let Some(error) = body.get("error") else {
        return truncate(
            &match body {
                Value::String(s) => s.clone(),
                Value::Null => "no body".into(),
                other => other.to_string(),
            },
            1000,
        );
    };
    if let Some(s) = error.as_str() {
        return truncate(s, 1000);
    }
    let ty = error.get("type").and_then(Value::as_str).unwrap_or("error");
    let reason = error.get("reason").and_then(Value::as_str).unwrap_or("");
    let mut out = format!("{ty}: {reason}");
    let deeper = error
        .pointer("/root_cause/0")
        .or_else(|| error.get("caused_by"));
    if let Some(cause) = deeper {
        let creason = cause.get("reason").and_then(Value::as_str).unwrap_or("");
        if !creason.is_empty() && !reason.contains(creason) {
            let ctype = cause.get("type").and_then(Value::as_str).unwrap_or("error");
            out.push_str(&format!(" ({ctype}: {creason})"));
        }
    }
    truncate(&out, 1000)
}

#[cfg(test)]
#[path = "errors_tests.rs"]
mod tests;
