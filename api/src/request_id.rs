//! Request ids: taken from `x-request-id` when the caller sends a sane one, otherwise made up;
//! echoed on the response and recorded on the request's span so logs correlate. The same
//! wrapper puts the security headers on every response.

use poem::{Endpoint, IntoResponse, Request, Response, Result};
use tracing::Instrument;

fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn with_request_id<E: Endpoint>(
    ep: std::sync::Arc<E>,
    mut req: Request,
) -> Result<Response> {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    req.headers_mut()
        .insert("x-request-id", id.parse().expect("checked header value"));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path(), svix_id = tracing::field::Empty);
    let started = std::time::Instant::now();
    let docs = req.uri().path().starts_with("/docs");
    let behind_tls = req.scheme().as_str() == "https"
        || req
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let result = ep.call(req).instrument(span.clone()).await;
    let mut resp = match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    let _g = span.enter();
    tracing::debug!(
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request done"
    );
    resp.headers_mut()
        .insert("x-request-id", id.parse().expect("checked header value"));
    security_headers(&mut resp, behind_tls, docs);
    Ok(resp)
}

/// The content security policy: fits the setup page and the operator console (their own
/// scripts, inline styles) and JSON.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The docs UI (Swagger UI as poem-openapi embeds it) inlines its script: allowed there only.
pub const DOCS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn security_headers(resp: &mut Response, behind_tls: bool, docs: bool) {
    let h = resp.headers_mut();
    h.insert("x-content-type-options", "nosniff".parse().unwrap());
    h.insert("x-frame-options", "DENY".parse().unwrap());
    h.insert("referrer-policy", "no-referrer".parse().unwrap());
    let csp = if docs { DOCS_CSP } else { CSP };
    h.insert("content-security-policy", csp.parse().unwrap());
    if behind_tls {
        h.insert(
            "strict-transport-security",
            "max-age=63072000; includeSubDomains".parse().unwrap(),
        );
    }
}
