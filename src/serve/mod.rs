//! `imgvec serve`'s HTTP server: a search page and the JSON API it uses.
//!
//! What it is for: putting the store and the model behind a few routes (see `routes`) on the tokio
//! runtime the other commands already use, with axum and tower-http: gzip for text, bounded request
//! bodies, the guard's headers and host check, and a graceful stop on Ctrl-C. The page (`assets/`)
//! is four small files (HTML, CSS, JavaScript, an SVG icon) compiled into the binary: no npm, no bundler, nothing to install.
//!
//! What it is not for: opening the model and the store, or command-line flags (`commands::serve`).
//!
//! ```text
//! routes    GET / · /api/info · /api/labels · POST /api/search · GET /api/similar/{id} · /thumb/{id} · /image/{id}
//! query     request fields → SearchRequest          api     JSON bodies, errors and their statuses
//! state     store + model (+ embedding cache)       thumbs  file by id → checked bytes → JPEG thumbnail
//! guard     host check, headers, timeout, log       lru     the byte-bounded cache both use
//! ```

pub mod api;
pub mod guard;
pub mod lru;
pub mod query;
pub mod routes;
pub mod state;
pub mod thumbs;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;

use guard::GuardConfig;
use state::AppState;

/// The whole application: routes, body limit, compression and the guard.
pub fn app(state: Arc<AppState>, guard_cfg: GuardConfig) -> Router {
    let body_limit = (state.max_upload + query::FORM_OVERHEAD) as usize;
    routes::routes()
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            guard_cfg,
            guard::guard,
        ))
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
