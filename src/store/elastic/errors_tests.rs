//! Tests of `errors`: summaries, messages for 401/403, certificate failures, and URLs shown without
//! their secrets.

use serde_json::{json, Value};

use super::super::test_support::{fake_server, fast_store};
use super::super::{ElasticConfig, ElasticStore};
use super::*;
use crate::store::VectorStore;

#[test]
fn error_summaries_are_short_and_specific() {
    let body = json!({ "error": {
        "root_cause": [{ "type": "query_shard_exception",
            "reason": "failed to create query: The query vector has a different number of dimensions [3] than the document vectors [4]." }],
        "type": "search_phase_execution_exception", "reason": "all shards failed" }, "status": 400 });
    let s = error_summary(&body);
    assert!(s.starts_with("search_phase_execution_exception: all shards failed (query_shard_exception: failed to create query"), "{s}");
    assert_eq!(error_summary(&Value::Null), "no body");
    assert_eq!(error_summary(&json!("Unauthorized")), "Unauthorized");
    assert_eq!(truncate("ééé", 3), "é…");
}

#[test]
fn urls_are_shown_without_secrets() {
    let mut cfg = ElasticConfig::new("https://elastic:s3cret@es.example:9200/prefix", "images");
    cfg.password = Some("pw".into());
    cfg.api_key = Some("key".into());
    let shown = format!("{cfg:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("\"pw\"") && !shown.contains("\"key\""),
        "{shown}"
    );
    let store = ElasticStore::connect(ElasticConfig::new(
        "https://elastic:s3cret@es.example:9200/prefix",
        "images",
    ))
    .unwrap();
    assert_eq!(store.url(), "https://es.example:9200/prefix/");
    assert_eq!(
        store.describe(),
        "Elasticsearch at https://es.example:9200/prefix/, index 'images'"
    );
}

#[tokio::test]
async fn refused_credentials_are_auth_errors_naming_the_variables() {
    let (url, _) = fake_server(vec![(
        401,
        r#"{"error":{"type":"security_exception","reason":"missing authentication credentials for REST request [/idx/_count]"},"status":401}"#,
    )]);
    let store = fast_store(&url, 3);
    let err = store.count().await.unwrap_err();
    match &err {
        StoreError::Auth {
            url: u,
            detail,
            sent_credentials,
        } => {
            assert!(!sent_credentials);
            assert!(u.starts_with(&url), "{u}");
            assert!(
                detail.starts_with("security_exception: missing authentication"),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    for name in ["ELASTIC_USERNAME", "ELASTIC_PASSWORD", "ELASTIC_API_KEY"] {
        assert!(text.contains(name), "{text}");
    }
}

#[tokio::test]
async fn a_missing_privilege_is_forbidden_naming_it() {
    let denied = r#"{"error":{"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized for user [reader]"},"status":403}"#;
    let (url, _) = fake_server(vec![
        (403, ""),     // HEAD /idx
        (403, denied), // _count
        (200, ""),     // HEAD /idx before the first bulk
        (403, denied), // _bulk create
        (
            200,
            r#"{"docs":[{"_index":"idx","_id":"d","found":false}]}"#,
        ), // the paths kept
        (403, denied), // _bulk index
        (403, denied), // _refresh
    ]);
    let store = fast_store(&url, 3);
    let forbidden = |r: Result<(), StoreError>, privilege: &str, action: &str| match r {
        Err(e @ StoreError::Forbidden { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&format!("`{privilege}`")), "{text}");
            assert!(text.contains(action), "{text}");
            assert!(text.contains("index 'idx'"), "{text}");
            assert!(!text.contains("ELASTIC_PASSWORD"), "{text}");
            text
        }
        other => panic!("expected Forbidden ({privilege}), got {other:?}"),
    };
    let text = forbidden(
        store.index_exists().await.map(drop),
        "view_index_metadata",
        "read the index's mapping",
    );
    assert!(text.contains("(HTTP 403)"), "{text}");
    let text = forbidden(store.count().await.map(drop), "read", "read documents");
    assert!(text.contains("is unauthorized for user [reader]"), "{text}");
    let docs = [super::super::test_support::doc("d", 2)];
    for (overwrite, privilege, action) in [
        (false, "create_doc", "write documents"),
        (true, "index", "overwrite documents"),
    ] {
        let result = store.upsert(&docs, overwrite).await.map(drop);
        forbidden(result, privilege, action);
    }
    forbidden(store.refresh().await, "maintenance", "refresh the index");
}

/// An error like reqwest's: says little itself, the cause is in its source.
#[derive(Debug)]
struct Outer(std::io::Error);

impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("error sending request for url (https://localhost:9200/idx/_count)")
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn certificate_failures_are_found_in_the_error_chain() {
    // As hyper-rustls reports it: rustls's error inside an io::Error of kind InvalidData.
    for rustls_says in [
        "invalid peer certificate: UnknownIssuer",
        "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for localhost",
    ] {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls_says,
        ));
        assert_eq!(certificate_problem(&e).as_deref(), Some(rustls_says));
    }
    let refused = Outer(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "Connection refused (os error 111)",
    ));
    assert_eq!(certificate_problem(&refused), None);

    let e = StoreError::Certificate {
        url: "https://localhost:9200/".into(),
        detail: "invalid peer certificate: UnknownIssuer".into(),
    };
    let text = e.to_string();
    for hint in [
        "--ca-cert FILE",
        "IMGVEC_CA_CERT",
        "config/certs/http_ca.crt",
        "--insecure",
        "UnknownIssuer",
    ] {
        assert!(text.contains(hint), "{hint}: {text}");
    }
    assert!(!text.contains("Is the server running"), "{text}");
}

#[test]
fn unparsable_urls_are_shown_without_their_password() {
    for (url, shown) in [
        (
            "http://elastic:s3cret@es.example:99999",
            "http://es.example:99999",
        ),
        ("elastic:s3cret@es.example:9200", "es.example:9200"),
        ("https://elastic:s3cret@[::1/x", "https://[::1/x"),
        ("http://es.example:9200/a@b", "http://es.example:9200/a@b"),
        ("not a url", "not a url"),
    ] {
        assert_eq!(redact_url(url), shown, "{url}");
    }
    for url in [
        "http://elastic:s3cret@es.example:99999",
        "elastic:s3cret@es.example:9200",
        "ftp://elastic:s3cret@es.example/",
    ] {
        let e = ElasticStore::connect(ElasticConfig::new(url, "images")).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("invalid Elasticsearch URL"), "{text}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_shown_without_the_password() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let store = fast_store(&format!("http://elastic:s3cret@127.0.0.1:{port}"), 0);
    let err = store.count().await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains(&port.to_string()), "{text}");
}
