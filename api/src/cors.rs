//! CORS for the dashboard routes (`/v1/*`) only. The dashboard of an app that uses authsync
//! lives on the app's own origin (a Next.js site) and calls `/v1/sync` and `/v1/jobs/{id}` from
//! the browser with the user's session token in `Authorization`. Origins are listed exactly in
//! `CORS_ALLOWED_ORIGINS`: never a wildcard, and never credentials (the token is a header the
//! page sets, not a cookie the browser attaches). Operator routes never answer CORS: the console
//! is served by authsync itself, and an answer there would only widen what a page elsewhere
//! could do with an admin's cookie.

use crate::error::ApiError;
use jobs::config::ConfigError;
use poem::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response, Result};
use std::sync::Arc;

/// The routes CORS applies to.
pub const PREFIX: &str = "/v1/";
/// What a preflight may ask for.
const METHODS: [Method; 2] = [Method::GET, Method::POST];
const HEADERS: [&str; 2] = ["authorization", "content-type"];
/// How long a browser may cache a preflight's answer (seconds).
const MAX_AGE: &str = "600";

/// `CORS_ALLOWED_ORIGINS`: exact origins (`https://app.example.com`, `http://localhost:3000`).
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins(Arc<[String]>);

impl AllowedOrigins {
    /// Origins separated by commas or spaces, each `http(s)://host[:port]` with nothing after
    /// it (browsers send exactly that in `Origin`).
    pub fn parse(name: &'static str, value: &str) -> Result<Self, ConfigError> {
        let malformed = |reason: String| ConfigError::Malformed { name, reason };
        let mut origins = Vec::new();
        for o in value.split([',', ' ']).filter(|s| !s.is_empty()) {
            if o == "*" {
                return Err(malformed(
                    "`*` is not allowed: list each origin the dashboard is served from".into(),
                ));
            }
            let rest = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"))
                .ok_or_else(|| malformed(format!("`{o}` must start with https:// or http://")))?;
            let (host, port) = match rest.rsplit_once(':') {
                Some((host, port)) if !rest.ends_with(']') => (host, port),
                _ => (rest, "80"),
            };
            let host_ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
            if !host_ok || port.parse::<u16>().is_err() || rest.contains('/') {
                return Err(malformed(format!(
                    "`{o}` is not an origin: scheme, host and optional port, no path or trailing slash"
                )));
            }
            origins.push(o.to_ascii_lowercase());
        }
        Ok(Self(origins.into()))
    }

    fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o == origin)
    }
}

/// Answers preflights of `/v1/*` and marks the answers that a listed origin may read. Every
/// `/v1/*` answer varies by `Origin`, so a cache never hands one origin's answer to another.
pub async fn handle<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    origins: AllowedOrigins,
) -> Result<Response> {
    if !req.uri().path().starts_with(PREFIX) {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let allowed = origin.as_deref().is_some_and(|o| origins.allows(o));
    let preflight = req.method() == Method::OPTIONS
        && origin.is_some()
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    // A refused preflight says nothing an origin could use, not even to a listed one.
    let refused = preflight && !(allowed && asks_only_for_what_we_allow(req.headers()));
    let mut resp = if preflight {
        if !refused {
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST")
                .header(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "Authorization, Content-Type",
                )
                .header(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE)
                .finish()
        } else {
            ApiError::CorsRefused.into_response()
        }
    } else {
        match ep.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        }
    };
    let headers = resp.headers_mut();
    if let (true, false, Some(origin)) = (allowed, refused, origin) {
        if let Ok(value) = HeaderValue::from_str(&origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("Retry-After, X-Request-Id"),
            );
        }
    }
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    Ok(resp)
}

/// The preflight asks for a method and headers a `/v1/*` call needs, nothing else.
fn asks_only_for_what_we_allow(headers: &HeaderMap) -> bool {
    let method_ok = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| METHODS.iter().any(|ok| ok.as_str() == m));
    let headers_ok = headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .all(|v| {
            v.to_str().is_ok_and(|list| {
                list.split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .all(|h| HEADERS.contains(&h.as_str()))
            })
        });
    method_ok && headers_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact_and_never_a_wildcard() {
        let ok = AllowedOrigins::parse(
            "CORS_ALLOWED_ORIGINS",
            "https://App.example.com, http://localhost:3000",
        )
        .unwrap();
        assert!(ok.allows("https://app.example.com"));
        assert!(ok.allows("http://localhost:3000"));
        let v6 = AllowedOrigins::parse("CORS_ALLOWED_ORIGINS", "http://[::1]:3000 https://[::1]")
            .unwrap();
        assert!(v6.allows("http://[::1]:3000") && v6.allows("https://[::1]"));
        assert!(!ok.allows("http://app.example.com"));
        assert!(!ok.allows("https://app.example.com.evil.test"));
        let cases = [
            ("*", "`*` is not allowed"),
            ("app.example.com", "must start with https:// or http://"),
            ("https://app.example.com/", "is not an origin"),
            ("https://app.example.com/dashboard", "is not an origin"),
            ("https://app.example.com:http", "is not an origin"),
            ("https://", "is not an origin"),
            ("https://*.example.com", "is not an origin"),
        ];
        for (value, want) in cases {
            let err = AllowedOrigins::parse("CORS_ALLOWED_ORIGINS", value)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("CORS_ALLOWED_ORIGINS is malformed") && err.contains(want),
                "{value}: {err}"
            );
        }
    }
}
