//! Tests of `connection`: input checks at connect time, backoff, and what is retried.

use std::path::PathBuf;
use std::time::Duration;

use super::super::test_support::{fake_server, fast_store};
use super::super::ElasticStore;
use super::*;
use crate::store::VectorStore;

#[test]
fn backoff_doubles_with_jitter_and_is_capped() {
    let base = Duration::from_millis(500);
    assert_eq!(backoff_delay(base, 1, 0.0), Duration::from_millis(250));
    assert_eq!(backoff_delay(base, 1, 1.0), Duration::from_millis(500));
    assert_eq!(backoff_delay(base, 2, 1.0), Duration::from_secs(1));
    assert_eq!(backoff_delay(base, 4, 1.0), Duration::from_secs(4));
    assert_eq!(backoff_delay(base, 30, 1.0), RETRY_CAP);
    assert_eq!(backoff_delay(base, 30, 0.0), RETRY_CAP / 2);
    for _ in 0..100 {
        let u = jitter_unit();
        assert!((0.0..=1.0).contains(&u));
    }
}

#[test]
fn connect_checks_its_inputs() {
    let err = |cfg: ElasticConfig| match ElasticStore::connect(cfg) {
        Ok(_) => panic!("connect accepted a bad config"),
        Err(e) => e.to_string(),
    };
    let ok = ElasticConfig::new("http://127.0.0.1:9200", "images");
    assert!(ElasticStore::connect(ok.clone()).is_ok());

    let e = err(ElasticConfig::new("http://127.0.0.1:9200", "Images"));
    assert!(e.contains("lower case"), "{e}");
    let e = err(ElasticConfig::new("http://127.0.0.1:9200", "a/b"));
    assert!(e.contains("'/'"), "{e}");
    let e = err(ElasticConfig::new("localhost:9200", "images"));
    assert!(e.contains("http or https"), "{e}");
    let e = err(ElasticConfig::new("not a url", "images"));
    assert!(e.contains("invalid Elasticsearch URL"), "{e}");

    let mut cfg = ok.clone();
    cfg.ca_cert = Some(PathBuf::from("/nonexistent/http_ca.crt"));
    match ElasticStore::connect(cfg) {
        Err(StoreError::Tls(m)) => assert!(m.contains("/nonexistent/http_ca.crt"), "{m}"),
        other => panic!("{other:?}"),
    }
    let dir = std::env::temp_dir().join(format!("imgvec-elastic-unit-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let not_pem = dir.join("not-a-cert.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let mut cfg = ok.clone();
    cfg.ca_cert = Some(not_pem.clone());
    match ElasticStore::connect(cfg) {
        Err(StoreError::Tls(m)) => assert!(m.contains("not-a-cert.pem"), "{m}"),
        other => panic!("{other:?}"),
    }
    // --insecure and a CA file contradict each other: refused, not silently one of them.
    let mut cfg = ok.clone();
    cfg.ca_cert = Some(not_pem);
    cfg.insecure = true;
    match ElasticStore::connect(cfg) {
        Err(StoreError::Tls(m)) => assert!(m.contains("contradict"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut cfg = ok.clone();
    cfg.insecure = true;
    assert!(ElasticStore::connect(cfg).is_ok());
    let _ = std::fs::remove_dir_all(&dir);

    let mut cfg = ok.clone();
    cfg.username = Some("elastic".into());
    assert!(err(cfg).contains("without a password"));
    let mut cfg = ok.clone();
    cfg.api_key = Some("bad\nkey".into());
    assert!(err(cfg).contains("API key"));

    // Credentials in the URL and in the config: refused (reqwest would send two Authorization
    // headers), and the message shows the URL without its password.
    let mut cfg = ElasticConfig::new("http://elastic:s3cr%40t@127.0.0.1:9200", "images");
    assert!(ElasticStore::connect(cfg.clone()).is_ok());
    cfg.password = Some("other".into());
    cfg.username = Some("elastic".into());
    let e = err(cfg);
    assert!(e.contains("given twice") && !e.contains("s3cr"), "{e}");
    let e = err(ElasticConfig::new(
        "http://elastic@127.0.0.1:9200",
        "images",
    ));
    assert!(e.contains("not both"), "{e}");
}

#[test]
fn user_info_is_percent_decoded() {
    assert_eq!(percent_decode("s3cr%40t%3A%").as_deref(), Some("s3cr@t:%"));
    assert_eq!(percent_decode("%ff"), None);
    let url = Url::parse("https://us%65r:p%40ss@h:9200/").unwrap();
    let (url, creds) = split_user_info(url).unwrap();
    assert_eq!(url.as_str(), "https://h:9200/");
    match creds {
        Some(Credentials::Basic(u, p)) => assert_eq!((u.as_str(), p.as_str()), ("user", "p@ss")),
        _ => panic!("no basic credentials"),
    }
}

#[test]
fn credentials_over_plain_http_are_noticed() {
    let mut cfg = ElasticConfig::new("http://127.0.0.1:9200", "images");
    assert!(!sends_credentials_in_clear(&cfg));
    cfg.password = Some("pw".into());
    assert!(sends_credentials_in_clear(&cfg));
    cfg.url = "https://127.0.0.1:9200".into();
    assert!(!sends_credentials_in_clear(&cfg));
    let cfg = ElasticConfig::new("HTTP://u:p@127.0.0.1:9200", "images");
    assert!(sends_credentials_in_clear(&cfg));
    let mut cfg = ElasticConfig::new("http://127.0.0.1:9200", "images");
    cfg.api_key = Some("k".into());
    assert!(sends_credentials_in_clear(&cfg));
}

#[test]
fn cloud_id_names_the_deployment_url() {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD
        .encode("us-east-1.aws.found.io:443$abc123$def456");
    let url = cloud_id_url(&format!("my-deployment:{data}")).unwrap();
    assert!(
        url.starts_with("https://abc123.us-east-1.aws.found.io"),
        "{url}"
    );
    let e = cloud_id_url("no-colon-here").unwrap_err().to_string();
    assert!(e.contains("Cloud ID"), "{e}");
}

#[tokio::test]
async fn a_server_that_stays_busy_is_a_server_error() {
    let busy =
        r#"{"error":{"type":"circuit_breaking_exception","reason":"data too large"},"status":429}"#;
    let (url, seen) = fake_server(vec![(429, busy), (429, busy), (429, busy)]);
    let store = fast_store(&url, 2);
    match store.count().await {
        Err(StoreError::Server { status, body }) => {
            assert_eq!(status, 429);
            assert!(body.starts_with("circuit_breaking_exception"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 3);
}
