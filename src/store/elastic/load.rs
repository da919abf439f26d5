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
        let mut saved = Map::new();
        for (name, v) in indices {
            let mut previous = Map::new();
            for (key, _) in LOAD_SETTINGS {
                // An unset value (the default) is put back as null, which resets it.
                let value = v.pointer(&format!("/settings/{key}")).cloned();
                previous.insert(key.into(), value.unwrap_or(Value::Null));
            }
            saved.insert(name.clone(), Value::Object(previous));
        }
        let load: Map<String, Value> = LOAD_SETTINGS
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        self.put_settings(&self.index, &Value::Object(load)).await?;
        Ok(SavedSettings(Value::Object(saved)))
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
        self.send_expecting_success(Op::Refresh, Method::Post, "_refresh")
            .await?;
        if force_merge {
            let query: &[(&str, &str)] =
                &[("max_num_segments", "1"), ("wait_for_completion", "false")];
            let reply = self
                .send(Method::Post, "_forcemerge", Some(query), None)
                .await?;
            if !reply.status.is_success() {
                return Err(self.error_for(Op::ForceMerge, &reply));
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
