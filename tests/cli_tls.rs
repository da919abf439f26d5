//! Connecting to a secured cluster, end to end through the binary. A TLS front with its own CA
//! stands in front of the test server and answers as a secured Elasticsearch 8 does: 401 with
//! `WWW-Authenticate` for missing or wrong credentials, 403 `security_exception` for a role that
//! lacks a privilege, everything else passed on to the server at IMGVEC_TEST_ES_URL. Users:
//! `elastic` (all privileges), `reader` (the `read` and `view_index_metadata` index privileges
//! only), and one API key. The front records every request's Authorization headers.
//!
//! What is checked: the certificate is verified (no CA → refused with the way out, another CA →
//! refused, `--ca-cert` → works, `--insecure` → works with a warning, both → refused); 401 and 403
//! are told apart and a 403 names the missing privilege; every request carries exactly one
//! Authorization header, credentials in the URL included; a password is never printed; credentials
//! over plain http are warned about. Marked ignored when built with IMGVEC_SKIP_ES_TESTS=1.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use base64::Engine;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const ADMIN_PASSWORD: &str = "Adm1n-pw-7c41";
const READER_PASSWORD: &str = "Re4der-pw-93be";
const API_KEY_ID: &str = "imgvec-key-id";
const API_KEY_SECRET: &str = "ApiK3y-secret-5d20";

/// One request as the front saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// How many Authorization headers it carried.
    authorization_headers: usize,
    /// Who it authenticated as; `None`: refused with 401.
    user: Option<&'static str>,
}

/// The TLS front (and a plain-http one with the same rules), on a runtime of its own.
struct Front {
    https_url: String,
    http_url: String,
    ca_pem: PathBuf,
    other_ca_pem: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

struct Pki {
    ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

/// A CA and a server certificate it signs, for `localhost` and 127.0.0.1 (as the certificates of
/// a local Elasticsearch 8 name them).
fn make_pki(ca_name: &str) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");

    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("server certificate");
    Pki {
        ca_pem: ca_cert.pem(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    }
}

impl Front {
    fn start() -> Front {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = make_pki("imgvec test CA");
        let ca_pem = dir.path().join("http_ca.crt");
        std::fs::write(&ca_pem, &pki.ca_pem).expect("write CA");
        let other_ca_pem = dir.path().join("other_ca.crt");
        std::fs::write(&other_ca_pem, make_pki("some other CA").ca_pem).expect("write CA");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(pki.key_der.into());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![pki.cert_der.into()], key)
            .expect("TLS config");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let rt = runtime();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let upstream = es_url();
        let (https_port, http_port) = rt.block_on(async {
            let https = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let ports = (
                https.local_addr().expect("addr").port(),
                http.local_addr().expect("addr").port(),
            );
            let client = reqwest::Client::new();
            tokio::spawn(serve(
                https,
                Some(acceptor),
                seen.clone(),
                upstream.clone(),
                client.clone(),
            ));
            tokio::spawn(serve(http, None, seen.clone(), upstream, client));
            ports
        });
        Front {
            https_url: format!("https://localhost:{https_port}"),
            http_url: format!("http://127.0.0.1:{http_port}"),
            ca_pem,
            other_ca_pem,
            seen,
            _dir: dir,
            _rt: rt,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn forget(&self) {
        self.seen.lock().expect("lock").clear();
    }
}

async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    seen: Arc<Mutex<Vec<Seen>>>,
    upstream: String,
    client: reqwest::Client,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (tls, seen, upstream, client) =
            (tls.clone(), seen.clone(), upstream.clone(), client.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                handle(req, seen.clone(), upstream.clone(), client.clone())
            });
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                // A client that does not trust the certificate ends the handshake: nothing to serve.
                Some(tls) => {
                    if let Ok(stream) = tls.accept(tcp).await {
                        let _ = http
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    }
                }
                None => {
                    let _ = http
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                }
            }
        });
    }
}

/// Who the Authorization header says, if its credentials are right.
fn authenticate(header: &HeaderValue) -> Option<&'static str> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let value = header.to_str().ok()?;
    if let Some(basic) = value.strip_prefix("Basic ") {
        let decoded = String::from_utf8(b64.decode(basic).ok()?).ok()?;
        return match decoded.split_once(':')? {
            ("elastic", ADMIN_PASSWORD) => Some("elastic"),
            ("reader", READER_PASSWORD) => Some("reader"),
            _ => None,
        };
    }
    let key = value.strip_prefix("ApiKey ")?;
    (key == b64.encode(format!("{API_KEY_ID}:{API_KEY_SECRET}"))).then_some("api-key")
}

/// What `reader` may do: read documents and mappings (and `GET /`).
fn reader_may(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
        || ["/_search", "/_mget", "/_count"]
            .iter()
            .any(|end| path.ends_with(end))
}

/// The action Elasticsearch would name in its 403, and the privileges it would say grant it.
fn refused_action(method: &Method, path: &str) -> (&'static str, &'static str) {
    if path.ends_with("/_bulk") {
        (
            "indices:data/write/bulk[s]",
            "create_doc,create,index,write,all",
        )
    } else if path.ends_with("/_refresh") {
        ("indices:admin/refresh", "maintenance,manage,all")
    } else if *method == Method::PUT && path.matches('/').count() == 1 {
        ("indices:admin/create", "create_index,manage,all")
    } else if *method == Method::DELETE {
        ("indices:admin/delete", "delete_index,manage,all")
    } else {
        ("indices:admin/settings/update", "manage,all")
    }
}

fn json_reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut reply = Response::new(Full::new(Bytes::from(body.to_string())));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
}

fn security_exception(status: StatusCode, reason: String) -> Response<Full<Bytes>> {
    let error = serde_json::json!({ "type": "security_exception", "reason": reason });
    json_reply(
        status,
        serde_json::json!({
            "error": { "root_cause": [error.clone()], "type": "security_exception", "reason": reason },
            "status": status.as_u16(),
        }),
    )
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    upstream: String,
    client: reqwest::Client,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let headers: Vec<&HeaderValue> = req.headers().get_all(AUTHORIZATION).iter().collect();
    let user = match headers.as_slice() {
        [one] => authenticate(one),
        _ => None,
    };
    let missing = headers.is_empty();
    seen.lock().expect("lock").push(Seen {
        method: method.to_string(),
        path: path.clone(),
        authorization_headers: headers.len(),
        user,
    });
    let Some(user) = user else {
        let reason = if missing {
            format!("missing authentication credentials for REST request [{path}]")
        } else {
            format!("unable to authenticate user for REST request [{path}]")
        };
        let mut reply = security_exception(StatusCode::UNAUTHORIZED, reason);
        reply.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"security\", charset=\"UTF-8\""),
        );
        return Ok(reply);
    };
    if user == "reader" && !reader_may(&method, &path) {
        let (action, privileges) = refused_action(&method, &path);
        let index = path.trim_start_matches('/').split('/').next().unwrap_or("");
        return Ok(security_exception(
            StatusCode::FORBIDDEN,
            format!(
                "action [{action}] is unauthorized for user [reader] with effective roles \
[imgvec_reader] on indices [{index}], this action is granted by the index privileges [{privileges}]"
            ),
        ));
    }
    Ok(forward(req, &upstream, &client).await)
}

/// Passes the request on to the test server (without the front's credentials) and its answer back.
async fn forward(
    req: Request<Incoming>,
    upstream: &str,
    client: &reqwest::Client,
) -> Response<Full<Bytes>> {
    let bad_gateway = |why: String| {
        json_reply(
            StatusCode::BAD_GATEWAY,
            serde_json::json!({ "error": why, "status": 502 }),
        )
    };
    let target = format!(
        "{upstream}{}",
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    let Ok(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return bad_gateway("method".into());
    };
    let content_type = req.headers().get(CONTENT_TYPE).cloned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return bad_gateway(e.to_string()),
    };
    let mut out = client.request(method, target).body(body);
    if let Some(ct) = content_type {
        out = out.header(reqwest::header::CONTENT_TYPE, ct.as_bytes());
    }
    let answer = match out.send().await {
        Ok(a) => a,
        Err(e) => return bad_gateway(e.to_string()),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut reply = Response::new(Full::new(bytes));
    *reply.status_mut() = status;
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_bytes(c.as_bytes()).ok()) {
        reply.headers_mut().insert(CONTENT_TYPE, ct);
    }
    reply
}

/// `imgvec ARGS --index INDEX` at `url`, with these environment variables (and none of the
/// caller's imgvec or Elasticsearch settings: `TestIndex::command` leaves them out).
fn run_at(idx: &TestIndex, url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = idx.command(args);
    cmd.env("IMGVEC_ES_URL", url);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run imgvec")
}

/// `documents` of `imgvec info --json`'s output.
fn documents(out: &Output) -> u64 {
    let v: serde_json::Value = serde_json::from_str(stdout(out).trim()).expect("info --json");
    v["documents"].as_u64().expect("documents")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Stdout and stderr together, for "never printed" checks and failure messages.
fn all_output(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\n{}",
        out.status.code(),
        all_output(out)
    );
}

/// Fails with a message that contains every one of `needles`; no password in the output.
fn assert_refused(out: &Output, what: &str, needles: &[&str]) {
    let text = all_output(out);
    assert!(!out.status.success(), "{what}: succeeded\n{text}");
    for needle in needles {
        assert!(text.contains(needle), "{what}: no '{needle}' in\n{text}");
    }
    assert_no_secret(out, what);
}

fn assert_no_secret(out: &Output, what: &str) {
    let text = all_output(out);
    for secret in [ADMIN_PASSWORD, READER_PASSWORD, API_KEY_SECRET, "wr0ng-pw"] {
        assert!(!text.contains(secret), "{what}: printed a secret\n{text}");
    }
}

#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn the_servers_certificate_is_verified() {
    let front = Front::start();
    let idx = TestIndex::elastic("tls-verify");
    let admin = [("ELASTIC_PASSWORD", ADMIN_PASSWORD)];
    let url = front.https_url.as_str();
    let ca = path_str(&front.ca_pem);

    let out = run_at(&idx, url, &["create-index"], &admin);
    assert_refused(&out, "no CA given", &["TLS certificate", url, "--ca-cert"]);
    let out = run_at(
        &idx,
        url,
        &["create-index", "--ca-cert", path_str(&front.other_ca_pem)],
        &admin,
    );
    assert_refused(&out, "another CA", &["TLS certificate", url]);
    // Refused at the handshake: no request reached the front.
    assert!(front.seen().is_empty(), "{:?}", front.seen());

    let out = run_at(&idx, url, &["create-index", "--ca-cert", ca], &admin);
    assert_ok(&out, "--ca-cert");
    assert_no_secret(&out, "--ca-cert");
    let out = run_at(
        &idx,
        url,
        &["info", "--json"],
        &[admin[0], ("IMGVEC_CA_CERT", ca)],
    );
    assert_ok(&out, "IMGVEC_CA_CERT");
    assert_eq!(documents(&out), 0);

    let out = run_at(&idx, url, &["info", "--insecure"], &admin);
    assert_ok(&out, "--insecure");
    assert!(stderr(&out).contains("NOT verified"), "{}", stderr(&out));

    for (what, args, env) in [
        (
            "--insecure with --ca-cert",
            vec!["info", "--insecure", "--ca-cert", ca],
            vec![],
        ),
        (
            "--insecure with IMGVEC_CA_CERT",
            vec!["info", "--insecure"],
            vec![("IMGVEC_CA_CERT", ca)],
        ),
    ] {
        let env: Vec<(&str, &str)> = admin.iter().copied().chain(env).collect();
        let out = run_at(&idx, url, &args, &env);
        assert_refused(&out, what, &["--insecure", "contradict"]);
    }
}

#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn a_secured_cluster_gets_one_authorization_header_per_request() {
    let front = Front::start();
    let idx = TestIndex::elastic("tls-auth");
    let (_tmp, photos) = distinct_images(3);
    let url = front.https_url.as_str();
    let ca = path_str(&front.ca_pem);
    let admin = [("ELASTIC_PASSWORD", ADMIN_PASSWORD), ("IMGVEC_CA_CERT", ca)];

    assert_ok(
        &run_at(&idx, url, &["create-index"], &admin),
        "create-index",
    );
    let out = run_at(
        &idx,
        url,
        &["ingest", path_str(&photos), "--label", "photo"],
        &admin,
    );
    assert_ok(&out, "ingest");
    assert_no_secret(&out, "ingest");
    let out = run_at(
        &idx,
        url,
        &["search", "--text", "a photo", "-k", "2", "--json"],
        &admin,
    );
    assert_ok(&out, "search");
    assert_eq!(json_lines(&stdout(&out)).len(), 2, "{}", stdout(&out));

    // The same with the credentials in the URL, and with an API key.
    let host = url.trim_start_matches("https://");
    let in_url = format!("https://elastic:{ADMIN_PASSWORD}@{host}");
    let out = run_at(
        &idx,
        &in_url,
        &["info", "--json"],
        &[("IMGVEC_CA_CERT", ca)],
    );
    assert_ok(&out, "credentials in the URL");
    assert_eq!(documents(&out), 3);
    assert_no_secret(&out, "credentials in the URL");
    let key =
        base64::engine::general_purpose::STANDARD.encode(format!("{API_KEY_ID}:{API_KEY_SECRET}"));
    let out = run_at(
        &idx,
        url,
        &["info", "--json"],
        &[("IMGVEC_CA_CERT", ca), ("ELASTIC_API_KEY", &key)],
    );
    assert_ok(&out, "API key");

    let seen = front.seen();
    assert!(
        seen.iter()
            .any(|s| s.method == "POST" && s.path.ends_with("/_bulk")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|s| s.user == Some("api-key")), "{seen:?}");
    for s in &seen {
        assert_eq!(s.authorization_headers, 1, "{s:?}");
        assert!(s.user.is_some(), "{s:?}");
    }

    // Credentials both in the URL and in the environment: refused before anything is sent.
    front.forget();
    let out = run_at(&idx, &in_url, &["info", "--json"], &admin);
    assert_refused(&out, "two credential sources", &["given twice"]);
    assert!(front.seen().is_empty(), "{:?}", front.seen());
}

#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn missing_or_wrong_credentials_are_a_401_and_a_missing_privilege_a_403() {
    let front = Front::start();
    let idx = TestIndex::elastic("tls-roles");
    let (_tmp, photos) = distinct_images(2);
    let url = front.https_url.as_str();
    let ca = path_str(&front.ca_pem);
    let with = |user: &'static str, password: &'static str| {
        [
            ("ELASTIC_USERNAME", user),
            ("ELASTIC_PASSWORD", password),
            ("IMGVEC_CA_CERT", ca),
        ]
    };

    let out = run_at(&idx, url, &["create-index"], &[("IMGVEC_CA_CERT", ca)]);
    assert_refused(
        &out,
        "no credentials",
        &["needs credentials and none were given", "ELASTIC_PASSWORD"],
    );
    let out = run_at(&idx, url, &["create-index"], &with("elastic", "wr0ng-pw"));
    assert_refused(
        &out,
        "wrong password",
        &["refused the credentials", "ELASTIC_PASSWORD"],
    );
    let wrong_in_url = format!(
        "https://elastic:wr0ng-pw@{}",
        url.trim_start_matches("https://")
    );
    let out = run_at(
        &idx,
        &wrong_in_url,
        &["info", "--json"],
        &[("IMGVEC_CA_CERT", ca)],
    );
    assert_refused(
        &out,
        "wrong password in the URL",
        &["refused the credentials"],
    );
    // A URL that does not parse is shown without its password too.
    let out = run_at(
        &idx,
        "https://elastic:wr0ng-pw@local host:9200",
        &["info", "--json"],
        &[],
    );
    assert_refused(&out, "unparsable URL", &["invalid Elasticsearch URL"]);

    let admin = with("elastic", ADMIN_PASSWORD);
    assert_ok(
        &run_at(&idx, url, &["create-index"], &admin),
        "create-index",
    );
    assert_ok(
        &run_at(
            &idx,
            url,
            &["ingest", path_str(&photos), "--label", "x"],
            &admin,
        ),
        "ingest as elastic",
    );

    // The reader may search and count, and nothing else; each refusal names what to grant.
    let reader = with("reader", READER_PASSWORD);
    let out = run_at(
        &idx,
        url,
        &["search", "--text", "x", "-k", "1", "--json"],
        &reader,
    );
    assert_ok(&out, "search as reader");
    assert_eq!(json_lines(&stdout(&out)).len(), 1);
    let (_tmp2, more) = distinct_images(4);
    let out = run_at(
        &idx,
        url,
        &["ingest", path_str(&more), "--label", "y"],
        &reader,
    );
    assert_refused(
        &out,
        "ingest as reader",
        &["may not write documents", "create_doc"],
    );
    let other = TestIndex::elastic("tls-roles-new");
    let out = run_at(&other, url, &["create-index"], &reader);
    assert_refused(
        &out,
        "create-index as reader",
        &["may not create the index", "create_index"],
    );
    assert!(!all_output(&out).contains("refused the credentials"));
}

#[test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
fn credentials_over_plain_http_are_warned_about() {
    let front = Front::start();
    let idx = TestIndex::elastic("tls-plain");
    let admin = [("ELASTIC_PASSWORD", ADMIN_PASSWORD)];
    let out = run_at(&idx, &front.http_url, &["create-index"], &admin);
    assert_ok(&out, "plain http");
    assert!(stderr(&out).contains("plain http"), "{}", stderr(&out));
    assert_no_secret(&out, "plain http");
    let ca = path_str(&front.ca_pem);
    let out = run_at(
        &idx,
        &front.https_url,
        &["info", "--json"],
        &[admin[0], ("IMGVEC_CA_CERT", ca)],
    );
    assert_ok(&out, "https");
    assert!(!stderr(&out).contains("plain http"), "{}", stderr(&out));
}

#[test]
fn a_cloud_id_that_does_not_parse_is_refused_naming_it() {
    let out = imgvec_env(
        &["info"],
        &[("ELASTIC_CLOUD_ID", "my-deployment:not*base64")],
    );
    assert!(!out.status.success(), "{}", all_output(&out));
    assert!(
        stderr(&out).contains("Elastic Cloud ID is not valid"),
        "{}",
        stderr(&out)
    );
}
