//! Errors of the HTTP client, before any reply: an error with its sources on one line, spotting a
//! certificate that does not verify in such a chain, shortening text for messages, and URLs with
//! their credentials taken out.
//!
//! What it is for: `connection`'s words for a request that got no answer, and every message that
//! names a URL. What it is not for: replies the server gave (`errors` reads those). Pure functions.

use elasticsearch::http::Url;

/// An error and all its sources on one line (reqwest's "error sending request" alone says little).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// What rustls said about the server's certificate, if an error in `e`'s chain is a certificate
/// that does not verify (unknown issuer, self-signed, wrong host name, expired, ...).
///
/// Matched by text: rustls sits under reqwest, hyper and an `io::Error` (whose `source()` skips the
/// error it wraps), and its `Display` of `Error::InvalidCertificate` has started with
/// "invalid peer certificate" in every release since 0.20.
pub(super) fn certificate_problem(e: &dyn std::error::Error) -> Option<String> {
    const MARK: &str = "invalid peer certificate";
    let mut current = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if let Some(at) = text.find(MARK) {
            return Some(truncate(&text[at..], 500));
        }
        current = err.source();
    }
    None
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The URL with any `user:password@` removed, for messages; also when it does not parse, or parses
/// into something other than an http(s) URL (`elastic:secret@host:9200` has the scheme `elastic`).
pub(super) fn redact_url(url: &str) -> String {
    let url = url.trim();
    if let Ok(mut u) = Url::parse(url) {
        if u.has_host() {
            if !u.username().is_empty() || u.password().is_some() {
                // Both only fail for URLs that cannot have user info, which these have.
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            return u.to_string();
        }
    }
    // By hand: drop everything up to the last '@' of the authority (after "://" if any, up to the
    // first '/', '?' or '#').
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}{}", &url[..start], &url[start + at + 1..]),
        None => url.to_string(),
    }
}
