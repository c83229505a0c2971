//! The api as one poem-openapi service: each route file's `#[OpenApi]` impl, combined. The
//! handlers' own return types (`Result<SomeResponse, ApiError>`) and auth extractors are the
//! spec: `/openapi.json`, the docs UI at `/docs`, and the committed `openapi.json` that
//! `tests/tests/in_process/openapi.rs` compares with what is served.

use crate::error::{ApiError, Code};
use crate::routes::{
    admin::AdminApi, admin_reconcile::ReconcileApi, admin_stats::StatsApi, admin_users::UsersApi,
    health::HealthApi, me::MeApi, metrics::MetricsApi, sync::SyncApi, webhooks::WebhooksApi,
};
use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse};
use poem_openapi::error::ParseParamError;
use poem_openapi::{OpenApiService, Tags};

#[derive(Tags)]
pub enum Tag {
    /// Clerk's Svix-signed webhook deliveries.
    Webhooks,
    /// The dashboard fallback, called with the signed-in user's Clerk session token
    /// (`Authorization: Bearer <token>` or the `__session` cookie).
    Dashboard,
    /// Operator routes: `Authorization: Bearer $ADMIN_TOKEN`, or the session token of a user
    /// whose role is `admin`.
    Operator,
    /// Liveness, readiness and Prometheus metrics.
    Health,
}

/// Every route's operations. The browser pages (`/`, `/setup`, `/admin`, their scripts) and
/// `/docs` are served beside them, not listed: they are not operations a client calls.
pub type Api = (
    WebhooksApi,
    SyncApi,
    MeApi,
    AdminApi,
    UsersApi,
    StatsApi,
    ReconcileApi,
    HealthApi,
    MetricsApi,
);

/// The service: routes, `/openapi.json` and the docs UI.
pub fn service() -> OpenApiService<Api, ()> {
    OpenApiService::new(Api::default(), "authsync", env!("CARGO_PKG_VERSION")).description(
        "Keeps an application's Postgres in step with Clerk: signed webhooks in, typed jobs \
         out, a dashboard fallback for the moment after sign-up, and operator routes.",
    )
}

/// A spec (as `/openapi.json` serves it) in the form committed as `openapi.json`:
/// pretty-printed, keys sorted, so a diff shows what changed.
pub fn canonical(spec: &str) -> String {
    let spec: serde_json::Value = serde_json::from_str(spec).expect("poem-openapi writes JSON");
    let mut text = serde_json::to_string_pretty(&sorted(spec)).expect("a JSON value prints");
    text.push('\n');
    text
}

fn sorted(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The service's routes, with a parameter poem-openapi could not parse answered in our
/// error shape (400 `invalid_request`), not its plain-text one.
pub fn endpoint(api: OpenApiService<Api, ()>) -> impl Endpoint {
    api.into_endpoint()
        .catch_error(|e: ParseParamError| async move {
            ApiError::BadRequest(Code::InvalidRequest, e.to_string()).into_response()
        })
}
