//! The worker's own small HTTP server (when `WORKER_METRICS_PORT` is set): `/healthz`
//! (liveness), `/readyz` (503 `pool_saturated` once every connection of the pool has been in
//! use for longer than the threshold) and `/metrics` (Prometheus text; queue, pool and process
//! gauges read at scrape time). Its requests are counted like the api's.

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{
    get, handler, Endpoint, EndpointExt, IntoResponse, PathPattern, Request, Response, Route,
    Server,
};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the health routes read.
#[derive(Clone)]
pub struct Health {
    pub pool: PgPool,
    pub watch: jobs::telemetry::PoolWatch,
    /// Saturated longer than this: not ready.
    pub saturated_after: Duration,
}

#[handler]
fn healthz() -> &'static str {
    "ok"
}

/// Not ready while the pool has been saturated for long: its jobs are waiting for
/// connections, not working (a supervisor or load balancer may want to know; the worker
/// itself carries on).
#[handler]
fn readyz(health: Data<&Health>) -> Response {
    let saturated = health.watch.saturated_for();
    // Fixed texts (a number at most): no JSON library needed for them.
    let (status, body) = if saturated > health.saturated_after {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                r#"{{"error":{{"code":"pool_saturated","message":"every database connection of the worker has been in use for {} s"}}}}"#,
                saturated.as_secs()
            ),
        )
    } else {
        (StatusCode::OK, r#"{"status":"ready"}"#.to_owned())
    };
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body)
}

#[handler]
async fn metrics(health: Data<&Health>) -> Response {
    let pool = &health.pool;
    jobs::telemetry::render_metrics(pool, &[("main", pool)])
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
pub async fn spawn(addr: SocketAddr, health: Health) -> std::io::Result<u16> {
    jobs::telemetry::metrics();
    let acceptor = TcpListener::bind(addr).into_acceptor().await?;
    let port = acceptor.local_addr()[0]
        .as_socket_addr()
        .map_or(addr.port(), |a| a.port());
    let app = Route::new()
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .at("/metrics", get(metrics))
        .data(health)
        .around(record_request);
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    tracing::info!(port, "worker metrics listening");
    Ok(port)
}
