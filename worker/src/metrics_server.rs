//! The worker's own small HTTP server (when `WORKER_METRICS_PORT` is set): `/healthz` and
//! `/metrics` (Prometheus text; queue, pool and process gauges read at scrape time). Its
//! requests are counted like the api's.

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{
    get, handler, Endpoint, EndpointExt, IntoResponse, PathPattern, Request, Response, Route,
    Server,
};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;

#[handler]
fn healthz() -> &'static str {
    "ok"
}

#[handler]
async fn metrics(pool: Data<&PgPool>) -> Response {
    jobs::telemetry::render_metrics(&pool, &[("main", &pool)])
        .await
        .into_response()
        .with_content_type("text/plain; version=0.0.4")
        .into_response()
}

async fn record_request<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let resp = ep.get_response(req).await;
    let route = resp.data::<PathPattern>().map_or("unmatched", |p| &p.0);
    jobs::telemetry::record_http_request(
        method.as_str(),
        route,
        resp.status().as_u16(),
        started.elapsed(),
    );
    Ok(resp)
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
        .data(pool)
        .around(record_request);
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    tracing::info!(port, "worker metrics listening");
    Ok(port)
}
