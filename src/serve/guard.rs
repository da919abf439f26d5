//! What stands between the network and the routes: which `Host` is answered, the security headers
//! every response carries, the request timeout, and the one-line log per API request.
//!
//! What it is for: a server on loopback answers only requests addressed to a loopback name, so a web
//! page elsewhere cannot reach it through DNS rebinding; the page runs only its own scripts (a
//! Content-Security-Policy without inline script, so an injected `<img onerror>` would not run even
//! if escaping failed); no response is sniffed into another type.
//!
//! What it is not for: the access key (`auth`, which runs inside the guard, so its 401s carry these
//! headers too).

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::{HOST, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api::ApiError;

/// How long one request may take, upload and model queue included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What the guard knows about the server.
#[derive(Debug, Clone, Copy)]
pub struct GuardConfig {
    /// `--public`: answer any `Host`.
    pub public: bool,
    /// Print a line per API request and per failed request.
    pub log: bool,
}

/// The middleware: host check, timeout, headers, log.
pub async fn guard(State(cfg): State<GuardConfig>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let mut response = if !cfg.public && !host_is_loopback(req.headers().get(HOST)) {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "this server answers only requests addressed to localhost or a loopback address \
(imgvec serve --public to change that)",
        )
        .into_response()
    } else {
        match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
            Ok(r) => r,
            Err(_) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request took longer than {} s",
                    REQUEST_TIMEOUT.as_secs()
                ),
            )
            .into_response(),
        }
    };
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set(headers, "content-security-policy", CSP);
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "x-frame-options", "DENY");
    let status = response.status();
    // A 401 was logged by `auth`, with the client's address.
    if cfg.log
        && status != StatusCode::UNAUTHORIZED
        && (path.starts_with("/api/") || status.is_client_error() || status.is_server_error())
    {
        eprintln!(
            "imgvec: {method} {} → {} in {} ms",
            path.chars().take(120).collect::<String>(),
            status.as_u16(),
            started.elapsed().as_millis()
        );
    }
    response
}

/// Whether a `Host` header names this machine's loopback: `localhost`, `*.localhost`, `127.x.x.x`
/// or `[::1]`, with any port. A request without one (HTTP/1.0) is let through: browsers always send it.
pub fn host_is_loopback(host: Option<&HeaderValue>) -> bool {
    let Some(host) = host else { return true };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, _)) => ip,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: &str) -> bool {
        host_is_loopback(Some(&HeaderValue::from_str(host).unwrap()))
    }

    #[test]
    fn only_loopback_hosts_pass() {
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "127.9.9.9",
            "[::1]:80",
            "LOCALHOST",
            "app.localhost:1",
        ] {
            assert!(check(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "192.168.1.5:8080",
            "localhost.evil.example",
            "[::2]:80",
            "[::1",
            "0.0.0.0:8080",
        ] {
            assert!(!check(bad), "{bad}");
        }
        assert!(host_is_loopback(None));
    }
}
