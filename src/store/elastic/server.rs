//! What the server is: its version and flavour from `GET /`, asked once per store, and what that
//! allows — today, whether kNN search can re-rank with the float vectors itself
//! (`knn.rescore_vector`, Elasticsearch 8.18+, 9.x and Serverless) or needs the `rescore` +
//! `script_score` fallback (8.12+).
//!
//! What it is not for: sending requests (see `connection`) or building search bodies (see `query`).
//! `GET /` needs the `monitor` cluster privilege; a user without it is not refused anything: the
//! answer is simply "unknown", and search takes the fallback that works on every supported version.

use elasticsearch::http::Method;
use serde_json::Value;

use super::ElasticStore;

/// What `GET /` said about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerInfo {
    /// `version.number` as (major, minor, patch); `None` if not known.
    pub version: Option<(u32, u32, u32)>,
    /// `version.build_flavor` is `serverless` (its `version.number` is not meaningful).
    pub serverless: bool,
}

impl ServerInfo {
    /// Whether the server leaves `dense_vector` values out of `_source` by default (Elasticsearch
    /// 9.2 and later, and Serverless), so reads that need vectors must ask for them
    /// (`_source_exclude_vectors=false`, a parameter older servers reject).
    pub fn excludes_vectors(&self) -> bool {
        self.serverless
            || self
                .version
                .is_some_and(|(major, minor, _)| (major, minor) >= (9, 2))
    }

    /// Reads the body of `GET /`; anything missing leaves the version unknown.
    pub fn from_root(body: &Value) -> ServerInfo {
        let version = body.get("version");
        let serverless = version
            .and_then(|v| v.get("build_flavor"))
            .and_then(Value::as_str)
            == Some("serverless");
        let number = version
            .and_then(|v| v.get("number"))
            .and_then(Value::as_str)
            .and_then(parse_version);
        ServerInfo {
            version: number,
            serverless,
        }
    }

    /// Whether the top-level `knn` takes `rescore_vector` (added in 8.18; Serverless has it).
    pub fn has_rescore_vector(&self) -> bool {
        self.serverless || self.version.is_some_and(|v| (v.0, v.1) >= (8, 18))
    }
}

/// "8.15.3", "9.0.0-SNAPSHOT" → (major, minor, patch).
fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let core = s.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

impl ElasticStore {
    /// The server's version, asked with `GET /` the first time only. A refusal (no `monitor`
    /// privilege) or an odd answer gives an unknown version rather than an error; an unreachable
    /// server is an error, as for any other request.
    pub async fn server_info(&self) -> Result<ServerInfo, super::StoreError> {
        self.server
            .get_or_try_init(|| async {
                let reply = self.conn.request(Method::Get, "/", None, None).await?;
                Ok(if reply.status.is_success() {
                    ServerInfo::from_root(&reply.body)
                } else {
                    ServerInfo::default()
                })
            })
            .await
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn versions_decide_the_rescore_path() {
        let info = |n: &str, flavor: &str| {
            ServerInfo::from_root(&json!({ "version": { "number": n, "build_flavor": flavor } }))
        };
        assert_eq!(info("8.15.3", "default").version, Some((8, 15, 3)));
        assert!(!info("8.12.0", "default").has_rescore_vector());
        assert!(!info("8.17.9", "default").has_rescore_vector());
        assert!(info("8.18.0", "default").has_rescore_vector());
        assert!(info("9.0.0-SNAPSHOT", "default").has_rescore_vector());
        assert!(info("8.11.0", "serverless").has_rescore_vector());
        let unknown = ServerInfo::from_root(&json!({ "error": "forbidden" }));
        assert_eq!(unknown, ServerInfo::default());
        assert!(!unknown.has_rescore_vector());
    }
}
