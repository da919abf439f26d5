//! Talking to the server: the connection settings ([`ElasticConfig`]), building the client
//! (URL, credentials, TLS), and sending one request with retries and backoff.
//!
//! What it is for: everything between "send this method, path and body" and "here is the status and
//! the JSON body", including which failures are worth retrying (connection errors, timeouts, 429,
//! 5xx) and which are not (a server certificate that does not verify).
//!
//! What it is not for: deciding what a status means for an operation (see `errors`), or building
//! request bodies (see `mapping`, `bulk`, `query`). Credentials come in the config: this module never
//! reads the environment.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, StatusCode, Url};
use elasticsearch::Elasticsearch;
use serde_json::Value;

use super::transport_errors::{certificate_problem, error_chain, redact_url};
use crate::store::StoreError;

/// Defaults of [`ElasticConfig::new`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times a transient failure is retried by default; the CLI's `--max-retries` default too.
pub const DEFAULT_MAX_RETRIES: u32 = 6;
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(500);
pub const DEFAULT_BULK_MAX_DOCS: usize = 500;
pub const DEFAULT_BULK_MAX_BYTES: usize = 5 * 1024 * 1024;
/// `_bulk` requests in flight at once (the CLI's `--bulk-concurrency` default).
pub const DEFAULT_BULK_CONCURRENCY: usize = 2;
/// No wait between retries is longer than this.
pub const RETRY_CAP: Duration = Duration::from_secs(30);

/// Where the server is and how to talk to it.
#[derive(Clone)]
pub struct ElasticConfig {
    /// Base URL, e.g. `https://localhost:9200`.
    pub url: String,
    /// Index (or alias) name.
    pub index: String,
    /// Basic auth; both or neither. Ignored when `api_key` is set. User info in `url`
    /// (`https://user:password@host`) is the same thing, given another way: only one may be given.
    pub username: Option<String>,
    pub password: Option<String>,
    /// API key: the base64 `encoded` value Elasticsearch returns, or `id:api_key`.
    pub api_key: Option<String>,
    /// PEM file of the CA that signed the server's certificate (ES 8 writes `certs/http_ca.crt`).
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate and any host name. For diagnosis only; refused together with
    /// `ca_cert` (the two contradict each other).
    pub insecure: bool,
    /// Limit for one HTTP request.
    pub request_timeout: Duration,
    /// How many times a transient failure (connection error, 429, 5xx) is retried; 0: never.
    pub max_retries: u32,
    /// First wait before a retry; doubles each time (with jitter), at most [`RETRY_CAP`].
    pub retry_base: Duration,
    /// Most documents in one `_bulk` request.
    pub bulk_max_docs: usize,
    /// Most NDJSON bytes in one `_bulk` request (a larger single document is sent alone).
    pub bulk_max_bytes: usize,
    /// Most `_bulk` requests in flight at once, from all callers together; halved while the server
    /// answers 429.
    pub bulk_concurrency: usize,
}

impl ElasticConfig {
    /// A config with no credentials, default TLS validation and the default limits above.
    pub fn new(url: impl Into<String>, index: impl Into<String>) -> Self {
        ElasticConfig {
            url: url.into(),
            index: index.into(),
            username: None,
            password: None,
            api_key: None,
            ca_cert: None,
            insecure: false,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_base: DEFAULT_RETRY_BASE,
            bulk_max_docs: DEFAULT_BULK_MAX_DOCS,
            bulk_max_bytes: DEFAULT_BULK_MAX_BYTES,
            bulk_concurrency: DEFAULT_BULK_CONCURRENCY,
        }
    }

    /// The URL without user info, for messages.
    pub fn url_for_messages(&self) -> String {
        redact_url(&self.url)
    }
}

/// Secrets are never printed.
impl fmt::Debug for ElasticConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |o: &Option<String>| o.as_ref().map(|_| "<hidden>");
        f.debug_struct("ElasticConfig")
            .field("url", &redact_url(&self.url))
            .field("index", &self.index)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("api_key", &hidden(&self.api_key))
            .field("ca_cert", &self.ca_cert)
            .field("insecure", &self.insecure)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_base", &self.retry_base)
            .field("bulk_max_docs", &self.bulk_max_docs)
            .field("bulk_max_bytes", &self.bulk_max_bytes)
            .field("bulk_concurrency", &self.bulk_concurrency)
            .finish()
    }
}

/// One answered request: the status and the body as JSON (`Null` when empty, a string when not JSON).
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    /// How many 429 answers were retried before this one (for the bulk throttle).
    pub(super) busy_retries: u32,
}

/// Why a request got no answer.
enum NoAnswer {
    /// Connection refused or reset, timeout, DNS...: worth trying again.
    Transient(String),
    /// The server's TLS certificate did not verify: trying again cannot help.
    Certificate(String),
}

/// The client plus what sending needs: the URL to show and the retry policy. Cloning is cheap (the
/// client shares its transport), so a scan can own one.
#[derive(Clone)]
pub(super) struct Connection {
    client: Elasticsearch,
    /// The URL without user info, for messages.
    url: String,
    max_retries: u32,
    retry_base: Duration,
    /// Whether requests carry credentials (an Authorization header).
    sends_credentials: bool,
}

impl Connection {
    /// Builds the client; sends nothing yet (the first request shows whether the server answers).
    pub(super) fn open(cfg: &ElasticConfig) -> Result<Connection, StoreError> {
        let (url, url_credentials) = split_user_info(base_url(&cfg.url)?)?;
        let shown_url = url.to_string();
        let mut builder =
            TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(cfg.request_timeout);
        // One source of credentials, so one Authorization header: reqwest would send the URL's user
        // info as a header of its own next to the client's.
        let credentials = match (url_credentials, credentials(cfg)?) {
            (Some(_), Some(_)) => {
                return Err(StoreError::Other(format!(
                    "credentials were given twice: in the URL ({shown_url} with user info) and in \
ELASTIC_PASSWORD/ELASTIC_API_KEY; give them one way"
                )))
            }
            (from_url, from_cfg) => from_url.or(from_cfg),
        };
        let sends_credentials = credentials.is_some();
        if let Some(credentials) = credentials {
            builder = builder.auth(credentials);
        }
        if let Some(validation) = cert_validation(cfg)? {
            builder = builder.cert_validation(validation);
        }
        let transport = builder.build().map_err(|e| match &cfg.ca_cert {
            Some(path) => {
                StoreError::Tls(format!("cannot use CA certificate {}: {e}", path.display()))
            }
            None => StoreError::Other(format!("cannot set up the HTTP client: {e}")),
        })?;
        Ok(Connection {
            client: Elasticsearch::new(transport),
            url: shown_url,
            max_retries: cfg.max_retries,
            retry_base: cfg.retry_base,
            sends_credentials,
        })
    }

    pub(super) fn client(&self) -> &Elasticsearch {
        &self.client
    }

    /// The server URL, without user info.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// Whether requests carry credentials.
    pub(super) fn sends_credentials(&self) -> bool {
        self.sends_credentials
    }

    pub(super) fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// Waits before retry number `attempt` (1-based).
    pub(super) async fn pause_before_retry(&self, attempt: u32) {
        tokio::time::sleep(backoff_delay(self.retry_base, attempt, jitter_unit())).await;
    }

    /// Sends one request, retrying connection errors, timeouts, 429 and 5xx with backoff.
    /// Any other status is returned for the caller to interpret; a server still answering 429/5xx
    /// after the retries is returned as it answered; no answer at all is [`StoreError::Unreachable`],
    /// a server certificate that does not verify is [`StoreError::Certificate`] at once.
    pub(super) async fn request(
        &self,
        method: Method,
        path: &str,
        query: Option<&[(&str, &str)]>,
        body: Option<&str>,
    ) -> Result<Reply, StoreError> {
        let mut headers = HeaderMap::new();
        if path.ends_with("/_bulk") {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
        }
        let mut attempt = 0u32;
        let mut busy_retries = 0u32;
        loop {
            match self.send_once(method, path, &headers, query, body).await {
                Ok(mut reply) => {
                    let status = reply.status.as_u16();
                    if !is_transient_status(status) || attempt >= self.max_retries {
                        reply.busy_retries = busy_retries;
                        return Ok(reply);
                    }
                    busy_retries += u32::from(status == 429);
                }
                Err(NoAnswer::Certificate(detail)) => {
                    return Err(StoreError::Certificate {
                        url: self.url.clone(),
                        detail,
                    })
                }
                Err(NoAnswer::Transient(detail)) if attempt >= self.max_retries => {
                    return Err(StoreError::Unreachable {
                        url: self.url.clone(),
                        detail: if attempt > 0 {
                            format!("{detail} (after {attempt} retries)")
                        } else {
                            detail
                        },
                    });
                }
                Err(NoAnswer::Transient(_)) => {}
            }
            attempt += 1;
            self.pause_before_retry(attempt).await;
        }
    }

    /// One try: the reply, or why there was none.
    async fn send_once(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        query: Option<&[(&str, &str)]>,
        body: Option<&str>,
    ) -> Result<Reply, NoAnswer> {
        let no_answer = |e: &dyn std::error::Error| match certificate_problem(e) {
            Some(problem) => NoAnswer::Certificate(problem),
            None => NoAnswer::Transient(error_chain(e)),
        };
        let response = self
            .client
            .send(method, path, headers.clone(), query, body, None)
            .await
            .map_err(|e| no_answer(&e))?;
        let status = response.status_code();
        let bytes = response.bytes().await.map_err(|e| no_answer(&e))?;
        Ok(Reply {
            status,
            body: parse_body(&bytes),
            busy_retries: 0,
        })
    }
}

fn parse_body(bytes: &[u8]) -> Value {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// The server URL, checked (http or https) and ending in `/`: request paths are joined onto it, and
/// without the slash the last segment of a path prefix (proxy setups) would be replaced.
fn base_url(raw: &str) -> Result<Url, StoreError> {
    let invalid = |why: String| {
        StoreError::Other(format!(
            "invalid Elasticsearch URL '{}': {why}",
            redact_url(raw)
        ))
    };
    let mut url = Url::parse(raw.trim()).map_err(|e| invalid(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid("the scheme must be http or https".into()));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// The URL without user info, and the Basic credentials the user info held (percent-decoded).
fn split_user_info(mut url: Url) -> Result<(Url, Option<Credentials>), StoreError> {
    if !has_user_info(&url) {
        return Ok((url, None));
    }
    let decode = |s: &str| {
        percent_decode(s).ok_or_else(|| {
            StoreError::Other(format!(
                "the user info of the Elasticsearch URL {} is not valid UTF-8 once decoded",
                redact_url(url.as_str())
            ))
        })
    };
    let user = decode(url.username())?;
    let password = decode(url.password().unwrap_or_default())?;
    // Both only fail for URLs that cannot have user info, which an http(s) URL can.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if user.is_empty() || password.is_empty() {
        return Err(StoreError::Other(format!(
            "the Elasticsearch URL {url} has a user name or a password but not both"
        )));
    }
    Ok((url, Some(Credentials::Basic(user, password))))
}

/// `%XX` decoding of URL user info; `None` when the bytes are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Whether requests to `cfg` would carry credentials over plain http (readable by anyone on the
/// path): the CLI warns then.
pub fn sends_credentials_in_clear(cfg: &ElasticConfig) -> bool {
    let Ok(url) = Url::parse(cfg.url.trim()) else {
        return false;
    };
    url.scheme() == "http"
        && (has_user_info(&url) || cfg.password.is_some() || cfg.api_key.is_some())
}

fn has_user_info(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// The `https://` URL an Elastic Cloud ID (`name:base64(host$es_uuid$kibana_uuid)`) stands for.
pub fn cloud_id_url(cloud_id: &str) -> Result<String, StoreError> {
    elasticsearch::http::transport::CloudId::parse(cloud_id.trim())
        .map(|id| id.url.to_string())
        .map_err(|e| {
            StoreError::Other(format!(
                "the Elastic Cloud ID is not valid ({e}); copy it from the deployment's page in the \
Elastic Cloud console"
            ))
        })
}

/// How to check the server's certificate; `None`: the default (the web PKI roots plus the
/// operating system's trust store).
fn cert_validation(cfg: &ElasticConfig) -> Result<Option<CertificateValidation>, StoreError> {
    if cfg.insecure {
        if let Some(path) = &cfg.ca_cert {
            return Err(StoreError::Tls(format!(
                "--insecure and --ca-cert {} contradict each other: --insecure accepts any \
certificate for any host name, so the CA would not be used. Keep --ca-cert (IMGVEC_CA_CERT) to \
verify the server, or drop it to skip verification",
                path.display()
            )));
        }
        return Ok(Some(CertificateValidation::None));
    }
    let Some(path) = &cfg.ca_cert else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|e| {
        StoreError::Tls(format!(
            "cannot read CA certificate {}: {e}",
            path.display()
        ))
    })?;
    let cert = Certificate::from_pem(&pem).map_err(|e| {
        StoreError::Tls(format!(
            "{} is not a PEM CA certificate: {e}",
            path.display()
        ))
    })?;
    Ok(Some(CertificateValidation::Full(cert)))
}

/// The credentials to send, from the config (an API key wins over username/password).
fn credentials(cfg: &ElasticConfig) -> Result<Option<Credentials>, StoreError> {
    if let Some(key) = cfg.api_key.as_deref().map(str::trim) {
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(StoreError::Other(
                "the API key is empty or holds characters an HTTP header cannot carry".into(),
            ));
        }
        return Ok(Some(match key.split_once(':') {
            Some((id, secret)) => Credentials::ApiKey(id.to_string(), secret.to_string()),
            None => Credentials::EncodedApiKey(key.to_string()),
        }));
    }
    match (&cfg.username, &cfg.password) {
        (Some(user), Some(password)) => {
            Ok(Some(Credentials::Basic(user.clone(), password.clone())))
        }
        (None, None) => Ok(None),
        (Some(_), None) => Err(StoreError::Other(
            "a username was given without a password".into(),
        )),
        (None, Some(_)) => Err(StoreError::Other(
            "a password was given without a username".into(),
        )),
    }
}

/// Elasticsearch's rules for index names, checked before the name goes into a URL path.
pub(super) fn check_index_name(index: &str) -> Result<(), StoreError> {
    let bad = |why: &str| {
        Err(StoreError::Other(format!(
            "invalid index name '{index}': {why}"
        )))
    };
    if index.is_empty() {
        return bad("it is empty");
    }
    if index.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    if index == "." || index == ".." {
        return bad("it cannot be . or ..");
    }
    if index.starts_with(['-', '_', '+']) {
        return bad("it cannot start with -, _ or +");
    }
    if index.chars().any(|c| c.is_uppercase()) {
        return bad("it must be lower case");
    }
    if let Some(c) = index.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':' | '%'
        ) || c.is_control()
    }) {
        return bad(&format!("it cannot contain '{c}'"));
    }
    Ok(())
}

/// Wait before retry number `attempt` (1-based): `base · 2^(attempt-1)`, at most [`RETRY_CAP`],
/// of which the upper half is scaled by `unit` ∈ [0, 1] ("equal jitter").
pub fn backoff_delay(base: Duration, attempt: u32, unit: f64) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    let full = base.saturating_mul(factor).min(RETRY_CAP);
    let half = full / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

/// A number in [0, 1] that differs between calls and processes (no RNG crate needed for jitter).
fn jitter_unit() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    hasher.finish() as f64 / u64::MAX as f64
}

/// 429 (too many requests) and 5xx other than 501 are worth retrying.
pub(super) fn is_transient_status(status: u16) -> bool {
    status == 429 || (status >= 500 && status != 501)
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
