//! The access key: which requests are let in when the server has one.
//!
//! What it is for: `--public` (or `--token-file` / `IMGVEC_TOKEN`) puts every route — page, API,
//! thumbnails, originals, the page's script and style — behind a key, as Jupyter does. The key comes
//! in three ways: `?token=KEY` in the URL (the server then sets an HttpOnly, SameSite=Strict cookie
//! and answers 303 to the same URL without the key, so it leaves the address bar and the history),
//! that cookie, or `Authorization: Bearer KEY` (scripts). Keys are compared in constant time (their
//! SHA-256 digests, with `subtle`). A refusal is 401: `{"error": ...}` under `/api/`, else a small page
//! with a field for the key. Each refusal is logged (method, path, client address; never the key).
//! Only `/favicon.svg` stays open: it is the same icon for everyone.
//!
//! What it is not for: users, roles, sessions that expire. One key opens everything; to take access
//! back, restart with another key.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::api::ApiError;

/// The query parameter and the form field that carry the key.
pub const TOKEN_PARAM: &str = "token";
/// The shortest key accepted from `--token-file` or `IMGVEC_TOKEN`.
pub const MIN_TOKEN_LEN: usize = 16;
/// The longest one (it travels in URLs, cookies and headers).
pub const MAX_TOKEN_LEN: usize = 512;

/// A random key: 32 bytes from the operating system's generator, as 64 hex digits.
pub fn generate_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| format!("cannot get random bytes from the operating system: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks a key given by the user (`source` names where it came from in the error): at least
/// [`MIN_TOKEN_LEN`] characters, all of `A-Z a-z 0-9 - . _ ~` (they need no escaping in a URL, a
/// cookie or a header).
pub fn check_token(token: &str, source: &str) -> Result<(), String> {
    let n = token.chars().count();
    if n < MIN_TOKEN_LEN {
        return Err(format!(
            "the access key from {source} is {n} character(s) long; it needs at least \
{MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)"
        ));
    }
    if n > MAX_TOKEN_LEN {
        return Err(format!(
            "the access key from {source} is {n} characters long; at most {MAX_TOKEN_LEN} are accepted"
        ));
    }
    if let Some(c) = token.chars().find(|c| !is_token_char(*c)) {
        return Err(format!(
            "the access key from {source} contains {c:?}; use only letters, digits and - . _ ~ \
(e.g. `openssl rand -hex 32`)"
        ));
    }
    Ok(())
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// What the middleware knows: the key's digest (none: everything is open), the cookie's name and
/// whether it is marked `Secure` (HTTPS).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    digest: Option<[u8; 32]>,
    cookie: String,
    secure: bool,
}

impl AuthConfig {
    /// No key: every request is let through.
    pub fn open() -> Self {
        Self {
            digest: None,
            cookie: String::new(),
            secure: false,
        }
    }

    /// Requests need `token`. The cookie is named after the port, so servers on other ports of the
    /// same host (cookies ignore ports) keep their own.
    pub fn with_token(token: &str, port: u16, secure: bool) -> Self {
        Self {
            digest: Some(digest(token.as_bytes())),
            cookie: format!("imgvec_key_{port}"),
            secure,
        }
    }

    pub fn required(&self) -> bool {
        self.digest.is_some()
    }

    fn matches(&self, candidate: &str) -> bool {
        match &self.digest {
            Some(want) => bool::from(want.ct_eq(&digest(candidate.as_bytes()))),
            None => true,
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(bytes));
    out
}

/// The middleware: lets a request with the right key through, answers 303 (setting the cookie) to
/// one that brought it in the URL, 401 to the rest.
pub async fn require_key(State(cfg): State<AuthConfig>, req: Request, next: Next) -> Response {
    if !cfg.required() || req.uri().path() == "/favicon.svg" {
        return next.run(req).await;
    }
    let from_url = req.uri().query().and_then(|q| query_token(q).0);
    if let Some(key) = from_url {
        if cfg.matches(&key) {
            if matches!(*req.method(), Method::GET | Method::HEAD) {
                return redirect_with_cookie(&cfg, &req);
            }
            return next.run(req).await;
        }
        return refuse(&req, "a wrong access key in the URL");
    }
    match header_token(req.headers(), &cfg.cookie) {
        Some(key) if cfg.matches(key) => next.run(req).await,
        Some(_) => refuse(&req, "a wrong access key"),
        None => refuse(&req, "no access key"),
    }
}

/// The key from `Authorization: Bearer KEY`, else from the cookie.
fn header_token<'a>(headers: &'a HeaderMap, cookie: &str) -> Option<&'a str> {
    if let Some(auth) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some((scheme, key)) = auth.trim().split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(key.trim());
            }
        }
    }
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == cookie)
        .map(|(_, value)| value.trim_matches('"'))
}

/// The `token` parameter of a query string (percent-decoded; the last one if repeated), and the
/// query without it.
fn query_token(query: &str) -> (Option<String>, String) {
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(name) == TOKEN_PARAM {
            token = Some(decode(value));
        } else {
            rest.push(pair);
        }
    }
    (token, rest.join("&"))
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// 303 to the same path and query without the key, setting the cookie.
fn redirect_with_cookie(cfg: &AuthConfig, req: &Request) -> Response {
    let (key, rest) = query_token(req.uri().query().unwrap_or(""));
    let key = key.unwrap_or_default();
    let mut location = req.uri().path().to_string();
    if !rest.is_empty() {
        location.push('?');
        location.push_str(&rest);
    }
    // Only a path of this server: never `//host`, which a browser would read as another site.
    if !location.starts_with('/') || location.starts_with("//") {
        location = "/".to_string();
    }
    let cookie = format!(
        "{}={key}; Path=/; HttpOnly; SameSite=Strict{}",
        cfg.cookie,
        if cfg.secure { "; Secure" } else { "" }
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let (Ok(location), Ok(cookie)) = (
        HeaderValue::from_str(&location),
        HeaderValue::from_str(&cookie),
    ) {
        headers.insert(LOCATION, location);
        headers.insert(SET_COOKIE, cookie);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 401, and one line in the log.
fn refuse(req: &Request, why: &str) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(
            || "an unknown address".to_string(),
            |c| c.0.ip().to_string(),
        );
    eprintln!(
        "imgvec: refused {} {} from {client}: {why}",
        req.method(),
        req.uri().path().chars().take(120).collect::<String>()
    );
    let mut response = if req.uri().path().starts_with("/api/") {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this server needs its access key: add ?token=KEY to the page's URL, or send \
`Authorization: Bearer KEY`",
        )
        .into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(CONTENT_TYPE, "text/html; charset=utf-8")],
            LOGIN_PAGE,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"imgvec\""),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The page a browser gets without the key: a form that sends it as `?token=` (no script, no style:
/// the Content-Security-Policy allows neither inline).
const LOGIN_PAGE: &str = "<!doctype html>
<html lang=\"en\">
<head>
<meta charset=\"utf-8\">
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
<title>imgvec: access key needed</title>
<link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">
</head>
<body>
<h1>imgvec</h1>
<p>This server needs its access key. It was printed when the server started
(<code>imgvec serve</code> prints a URL with <code>?token=</code>), or it is in the server's
<code>--token-file</code>.</p>
<form method=\"get\" action=\"/\">
<label>Access key <input name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus></label>
<button type=\"submit\">Open</button>
</form>
</body>
</html>
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked() {
        assert!(check_token("0123456789abcdef", "x").is_ok());
        assert!(check_token("short", "x")
            .unwrap_err()
            .contains("at least 16"));
        assert!(check_token("0123456789abcdef;", "x")
            .unwrap_err()
            .contains("';'"));
        let t = generate_token().unwrap();
        assert_eq!(t.len(), 64);
        assert!(check_token(&t, "x").is_ok());
        assert_ne!(t, generate_token().unwrap());
    }

    #[test]
    fn the_key_leaves_the_query() {
        assert_eq!(
            query_token("a=1&token=k%2Dk&b=2"),
            (Some("k-k".to_string()), "a=1&b=2".to_string())
        );
        assert_eq!(query_token("a=1"), (None, "a=1".to_string()));
    }

    #[test]
    fn keys_from_headers() {
        let cfg = AuthConfig::with_token("0123456789abcdef", 80, false);
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("a=b; imgvec_key_80=xyz"));
        assert_eq!(header_token(&h, &cfg.cookie), Some("xyz"));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef"),
        );
        let key = header_token(&h, &cfg.cookie).unwrap();
        assert!(cfg.matches(key));
        assert!(!cfg.matches("0123456789abcdeF"));
        assert!(AuthConfig::open().matches("anything"));
    }
}
