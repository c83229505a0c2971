//! The worker's own small HTTP server (when `WORKER_METRICS_PORT` is set): `/healthz` and
//! `/metrics` (Prometheus text; queue gauges refreshed from the database at scrape time).

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{get, handler, EndpointExt, IntoResponse, Response, Route, Server};
use sqlx::PgPool;
use std::net::SocketAddr;

#[handler]
fn healthz() -> &'static str {
    "ok"
}

#[handler]
async fn metrics(pool: Data<&PgPool>) -> Response {
    jobs::telemetry::render_metrics(&pool)
        .await
        .into_response()
        .with_content_type("text/plain; version=0.0.4")
        .into_response()
}

/// Binds and serves in the background; returns the bound port.
pub async fn spawn(addr: SocketAddr, pool: PgPool) -> std::io::Result<u16> {
    jobs::telemetry::metrics();
    let acceptor = TcpListener::bind(addr).into_acceptor().await?;
    let port = acceptor.local_addr()[0]
        .as_socket_addr()
        .map_or(addr.port(), |a| a.port());
    let app = Route::new()
        .at("/healthz", get(healthz))
        .at("/metrics", get(metrics))
        .data(pool);
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    tracing::info!(port, "worker metrics listening");
    Ok(port)
}
