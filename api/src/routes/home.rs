//! `GET /` and the answer to a path nothing serves: both point a person at the operator
//! console (`/admin`) and the API docs (`/docs`). A browser (a request that accepts
//! `text/html`) gets a small page; any other client gets JSON: `/` a map of the service, an
//! unknown path the usual error body, `404 not_found`. Unknown paths under `/v1/` and
//! `/admin/api/` are API paths: they get the JSON 404 whatever they accept. Neither is an API
//! operation, so neither is in the OpenAPI document.

use crate::error::ApiError;
use poem::error::NotFoundError;
use poem::http::{header, Method, StatusCode};
use poem::web::{Html, Json};
use poem::{Endpoint, IntoResponse, PathPattern, Request, Response, Result};
use std::sync::Arc;

/// Paths that belong to the JSON api: their 404 stays JSON.
const API_PREFIXES: &[&str] = &["/v1/", "/admin/api/"];

/// Wraps the router: `/` and unknown paths get the friendly answers.
pub async fn friendly<E: Endpoint>(ep: Arc<E>, req: Request) -> Result<Response> {
    let path = req.uri().path().to_owned();
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let html = wants_html(&req);
    match ep.call(req).await {
        Err(e) if e.is::<NotFoundError>() => Ok(if path == "/" && get {
            home(html)
        } else {
            not_found(&path, html)
        }),
        other => other.map(IntoResponse::into_response),
    }
}

fn wants_html(req: &Request) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

fn home(html: bool) -> Response {
    let mut resp = if html {
        Html(page(
            "authsync",
            "authsync is running",
            "It keeps this application's users in step with Clerk.",
        ))
        .into_response()
    } else {
        Json(serde_json::json!({
            "service": "authsync",
            "admin": "/admin",
            "docs": "/docs",
            "openapi": "/openapi.json",
            "health": "/healthz",
            "ready": "/readyz",
        }))
        .into_response()
    };
    resp.set_data(PathPattern("/".into()));
    resp
}

fn not_found(path: &str, html: bool) -> Response {
    if API_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return ApiError::NotFound("no such route: every route is described at /docs")
            .into_response();
    }
    if !html {
        return ApiError::NotFound(
            "nothing here: the operator console is at /admin and the API docs at /docs",
        )
        .into_response();
    }
    let mut resp = Html(page(
        "Not found",
        "There is nothing at this address",
        "Perhaps one of these is what you were looking for.",
    ))
    .into_response();
    resp.set_status(StatusCode::NOT_FOUND);
    resp
}

/// A small page with the two links (styles inline, as the CSP allows; no script).
fn page(title: &str, heading: &str, text: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; background: #f6f7f9; color: #1f2328; display: grid; place-items: center; min-height: 100vh; margin: 0; }}
  main {{ background: #fff; border-radius: 12px; box-shadow: 0 1px 3px rgba(0,0,0,.12); padding: 2rem 2.5rem; max-width: 28rem; }}
  h1 {{ font-size: 1.25rem; margin: 0 0 .5rem; }}
  p, li {{ color: #57606a; }}
  a {{ color: #0969da; }}
</style>
</head>
<body>
<main>
  <h1>{heading}</h1>
  <p>{text}</p>
  <ul>
    <li><a id="admin" href="/admin">Operator console</a> (<code>/admin</code>): events, jobs, reconcile</li>
    <li><a id="docs" href="/docs">API docs</a> (<code>/docs</code>): every route, to try out</li>
  </ul>
</main>
</body>
</html>
"#
    )
}
