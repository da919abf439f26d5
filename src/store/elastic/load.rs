//! Bulk-load mode: index settings for a large load and back. During the load the index has no
//! replicas (each document is indexed — and its HNSW graph built — once, not once per copy) and no
//! periodic refresh (`refresh_interval: -1`: fewer, larger segments); after it, both are put back
//! as they were, the index is refreshed, and optionally force-merged to one segment (one HNSW graph
//! per shard to search instead of many).
//!
//! What it is not for: deciding when to use it or making sure the settings are put back on every
//! exit path (the ingest command's guard does), or writing documents (see `bulk`).

use elasticsearch::http::Method;
use serde_json::{json, Map, Value};

use super::errors::{unexpected, Op};
use super::ElasticStore;
use crate::store::{SavedSettings, StoreError};

/// The settings bulk-load mode changes, with their values during the load.
pub const LOAD_SETTINGS: [(&str, &str); 2] = [
    ("index.number_of_replicas", "0"),
    ("index.refresh_interval", "-1"),
];

impl ElasticStore {
    /// Saves the current values of [`LOAD_SETTINGS`] of every concrete index behind the name, then
    /// sets the load values. Returns what to give [`ElasticStore::end_load`].
    pub(super) async fn begin_load(&self) -> Result<SavedSettings, StoreError> {
        let query: &[(&str, &str)] = &[("flat_settings", "true")];
        let reply = self
            .send(Method::Get, "_settings", Some(query), None)
            .await?;
        if !reply.status.is_success() {
            return Err(self.error_for(Op::Settings, &reply));
        }
        let Some(indices) = reply.body.as_object() else {
            return Err(unexpected(self.url(), "GET _settings", &reply.body));
        };
        let mut saved: Map<String, Value> = Map::new();
        for (name, v) in indices {
            let mut previous = Map::new();
            for (key, _) in LOAD_SETTINGS {
                // An unset value (the default) is put back as null, which resets it.
                let value = v.pointer(&format!("/settings/{key}")).cloned();
                previous.insert(key.into(), value.unwrap_or(Value::Null));
            }
            saved.insert(name.clone(), Value::Object(previous));
        }
        let applied = self.apply_load_settings().await?;
        for previous in saved.values_mut() {
            if let Value::Object(p) = previous {
                p.retain(|key, _| applied.contains(&key.as_str()));
            }
        }
        Ok(SavedSettings(Value::Object(saved)))
    }

    /// Sets the load values of [`LOAD_SETTINGS`]: in one request, or, where that is refused whole
    /// (Serverless refuses `number_of_replicas` but allows `refresh_interval`), one setting at a
    /// time, keeping those the server takes. Which were set; an error only if none was.
    async fn apply_load_settings(&self) -> Result<Vec<&'static str>, StoreError> {
        let all: Map<String, Value> = LOAD_SETTINGS
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let whole = match self.put_settings(&self.index, &Value::Object(all)).await {
            Ok(()) => return Ok(LOAD_SETTINGS.iter().map(|(k, _)| *k).collect()),
            Err(e) => e,
        };
        let mut applied = Vec::new();
        for (key, value) in LOAD_SETTINGS {
            let one = json!({ key: value });
            if self.put_settings(&self.index, &one).await.is_ok() {
                applied.push(key);
            }
        }
        if applied.is_empty() {
            return Err(whole);
        }
        Ok(applied)
    }

    /// Puts back what [`ElasticStore::begin_load`] saved, refreshes, and force-merges to one
    /// segment if asked (without waiting for the merge: it runs on in the cluster).
    pub(super) async fn end_load(
        &self,
        saved: &SavedSettings,
        force_merge: bool,
    ) -> Result<(), StoreError> {
        let mut first_error = None;
        for (name, previous) in saved.0.as_object().into_iter().flatten() {
            if let Err(e) = self.put_settings(name, previous).await {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let after = |step, error| StoreError::AfterSettingsRestored {
            step,
            error: Box::new(error),
        };
        self.send_expecting_success(Op::Refresh, Method::Post, "_refresh")
            .await
            .map_err(|e| after("the refresh", e))?;
        if force_merge {
            let query: &[(&str, &str)] =
                &[("max_num_segments", "1"), ("wait_for_completion", "false")];
            let reply = self
                .send(Method::Post, "_forcemerge", Some(query), None)
                .await
                .map_err(|e| after("the force-merge", e))?;
            if reply.status.as_u16() == 410 {
                return Err(after(
                    "the force-merge",
                    StoreError::Other(
                        "this deployment does not offer _forcemerge (410; Serverless merges segments itself)"
                            .into(),
                    ),
                ));
            }
            if !reply.status.is_success() {
                return Err(after(
                    "the force-merge",
                    self.error_for(Op::ForceMerge, &reply),
                ));
            }
        }
        Ok(())
    }

    /// `PUT /<index>/_settings` with `settings` (flat keys).
    async fn put_settings(&self, index: &str, settings: &Value) -> Result<(), StoreError> {
        let body = settings.to_string();
        let reply = self
            .conn
            .request(
                Method::Put,
                &format!("/{index}/_settings"),
                None,
                Some(&body),
            )
            .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(self.error_for(Op::Settings, &reply))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{fake_server, fast_store};
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    const SETTINGS: &str = r#"{"idx":{"settings":{"index.number_of_replicas":"1"}}}"#;
    const REFUSED: &str = r#"{"error":{"type":"illegal_argument_exception","reason":"Settings [index.number_of_replicas] are not available when running in serverless mode"}}"#;

    #[test]
    fn a_settings_request_refused_whole_is_split_and_only_what_was_set_is_put_back() {
        let (url, seen) = fake_server(vec![
            (200, SETTINGS),
            (400, REFUSED),
            (400, REFUSED),
            (200, r#"{"acknowledged":true}"#),
        ]);
        let store = fast_store(&url, 0);
        let saved = rt().block_on(store.begin_load()).unwrap();
        assert_eq!(
            saved.0,
            json!({"idx": {"index.refresh_interval": null}}),
            "only refresh_interval was set, so only it is put back"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(seen[2].contains("number_of_replicas") && !seen[2].contains("refresh_interval"));
        assert!(seen[3].contains("refresh_interval") && !seen[3].contains("number_of_replicas"));
    }

    #[test]
    fn failures_after_the_settings_are_back_do_not_ask_to_reset_them() {
        let saved = SavedSettings(json!({"idx": {"index.refresh_interval": null}}));
        let forbidden = r#"{"error":{"type":"security_exception","reason":"action [indices:admin/refresh] is unauthorized"}}"#;
        let (url, _) = fake_server(vec![(200, r#"{"acknowledged":true}"#), (403, forbidden)]);
        let err = rt()
            .block_on(fast_store(&url, 0).end_load(&saved, false))
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::AfterSettingsRestored {
                    step: "the refresh",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("the index's settings were put back, but the refresh failed"),
            "{err}"
        );

        let gone = r#"{"error":{"type":"api_not_available_exception","reason":"Request for uri [/idx/_forcemerge] with method [POST] exists but is not available when running in serverless mode"}}"#;
        let (url, _) = fake_server(vec![
            (200, r#"{"acknowledged":true}"#),
            (200, r#"{"_shards":{}}"#),
            (410, gone),
        ]);
        let err = rt()
            .block_on(fast_store(&url, 0).end_load(&saved, true))
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::AfterSettingsRestored {
                    step: "the force-merge",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("Serverless"), "{err}");
    }
}
