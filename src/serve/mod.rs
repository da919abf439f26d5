//! `imgvec serve`'s HTTP server: a search page and the JSON API it uses.
//!
//! What it is for: putting the store and the model behind a few routes (see `routes`) on the tokio
//! runtime the other commands already use, with axum and tower-http: gzip for text, bounded request
//! bodies, the guard's headers and host check, the access key (`auth`), HTTPS (`tls`), and a graceful
//! stop on Ctrl-C. The page (`assets/`)
//! is four small files (HTML, CSS, JavaScript, an SVG icon) compiled into the binary: no npm, no bundler, nothing to install.
//!
//! What it is not for: opening the model and the store, or command-line flags (`commands::serve`).
//!
//! ```text
//! routes    GET / · /api/info · /api/labels · POST /api/search · GET /api/similar/{id} · /thumb/{id} · /image/{id}
//! query     request fields → SearchRequest          api     JSON bodies, errors and their statuses
//! state     store + model (+ embedding cache)       thumbs  file by id → checked bytes → JPEG thumbnail
//! guard     host check, headers, timeout, log       lru     the byte-bounded cache both use
//! auth      the access key: URL, cookie, Bearer     tls     PEM files → rustls, a TLS listener
//! ```

pub mod api;
pub mod auth;
pub mod guard;
pub mod lru;
pub mod query;
pub mod routes;
pub mod state;
pub mod thumbs;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::serve::{Listener, ListenerExt};
use axum::Router;
use tower_http::compression::CompressionLayer;

use auth::AuthConfig;
use guard::GuardConfig;
use state::AppState;

/// The whole application without an access key: routes, body limit, compression and the guard.
pub fn app(state: Arc<AppState>, guard_cfg: GuardConfig) -> Router {
    app_with_auth(state, guard_cfg, AuthConfig::open())
}

/// The whole application: routes, body limit, compression, the access key and, outermost, the
/// guard (so a refusal carries the security headers too).
pub fn app_with_auth(state: Arc<AppState>, guard_cfg: GuardConfig, auth_cfg: AuthConfig) -> Router {
    let body_limit = (state.max_upload + query::FORM_OVERHEAD) as usize;
    routes::routes()
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            auth_cfg,
            auth::require_key,
        ))
        .layer(axum::middleware::from_fn_with_state(
            guard_cfg,
            guard::guard,
        ))
}

/// Serves `app` on `listener` (a `TcpListener`, or a [`tls::TlsListener`]) until `shutdown`
/// resolves, then lets requests in flight finish. Handlers see the client's address
/// (`ConnectInfo<SocketAddr>`).
pub async fn serve<L>(
    listener: L,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    // `tap_io` only to get axum's `ConnectInfo<SocketAddr>` for any listener with socket addresses.
    axum::serve(
        listener.tap_io(|_| {}),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
