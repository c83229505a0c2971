//! Every HTTP error the API can answer, mapped to a status and a stable code in ONE table.
//! Client mistakes are 4xx with a clear message; anything unexpected is an opaque 5xx whose
//! cause chain goes to the log only.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use serde_json::json;

/// An error response. `message` is safe to show the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "missing header `{0}`: Svix deliveries carry svix-id, svix-timestamp and svix-signature"
    )]
    MissingSvixHeader(&'static str),
    #[error("header `{0}` is malformed")]
    MalformedSvixHeader(&'static str),
    #[error("signature timestamp is outside the ±5 minute tolerance")]
    TimestampOutOfTolerance,
    #[error("no signature matches any configured webhook secret")]
    InvalidSignature,
    #[error("body exceeds the {0}-byte limit")]
    PayloadTooLarge(usize),
    #[error("body could not be read")]
    UnreadableBody,
    #[error("signed event could not be parsed: {0}")]
    UnparseableEvent(String),
    #[error("{1}")]
    Unauthenticated(&'static str, &'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("webhooks are not accepted from this address")]
    IpNotAllowed,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("state-changing operator requests signed in by the session cookie must come from this service's own pages (Sec-Fetch-Site or Origin); scripts use Authorization: Bearer")]
    CrossSiteRequest,
    #[error("{0}")]
    Conflict(&'static str),
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("{}", too_many_waiters_message(*.0))]
    TooManyWaiters(crate::job_events::TooManyWaiters),
    #[error("{0} is not configured on this deployment")]
    NotConfigured(&'static str),
    #[error("the database is unavailable; retry later")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The stable code clients can match on.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// The table: status and code of every error.
    pub fn parts(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            MissingSvixHeader(_) => (StatusCode::BAD_REQUEST, "missing_svix_header"),
            MalformedSvixHeader(_) => (StatusCode::BAD_REQUEST, "malformed_svix_header"),
            UnreadableBody => (StatusCode::BAD_REQUEST, "unreadable_body"),
            UnparseableEvent(_) => (StatusCode::BAD_REQUEST, "unparseable_event"),
            TimestampOutOfTolerance => (StatusCode::UNAUTHORIZED, "timestamp_out_of_tolerance"),
            InvalidSignature => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Unauthenticated(code, _) => (StatusCode::UNAUTHORIZED, code),
            NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            IpNotAllowed => (StatusCode::FORBIDDEN, "ip_not_allowed"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            CrossSiteRequest => (StatusCode::FORBIDDEN, "cross_site_request"),
            Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            BadRequest(code, _) => (StatusCode::BAD_REQUEST, code),
            TooManyWaiters(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_waiters"),
            NotConfigured(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_configured"),
            Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

/// Seconds a client should wait before opening another long-poll after a 429: about the
/// time for one of its open waits to end when jobs are moving.
pub const WAITERS_RETRY_AFTER_SECS: u32 = 2;

fn too_many_waiters_message(which: crate::job_events::TooManyWaiters) -> String {
    match which {
        crate::job_events::TooManyWaiters::User(limit) => format!(
            "too many long-polls are open for this user (at most {limit}); retry after Retry-After seconds"
        ),
        crate::job_events::TooManyWaiters::Process => {
            "the server is following too many jobs right now; retry after Retry-After seconds"
                .to_owned()
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if status.is_server_error() {
            let cause = match &self {
                ApiError::Unavailable(e) | ApiError::Internal(e) => format!("{e:#}"),
                _ => String::new(),
            };
            tracing::error!(code, cause, "request failed");
        }
        let body = json!({"error": {"code": code, "message": self.to_string()}});
        let mut resp = Response::builder()
            .status(status)
            .content_type("application/json")
            .body(body.to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", RETRY_AFTER_SECS.into());
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert("retry-after", WAITERS_RETRY_AFTER_SECS.into());
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_do_not_leak_causes() {
        let resp = ApiError::Internal(anyhow::anyhow!("password=hunter2")).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = futures_body(resp);
        assert!(!body.contains("hunter2"));
        assert!(body.contains(r#""code":"internal""#));
    }

    #[test]
    fn unavailable_says_when_to_retry() {
        let resp = ApiError::Unavailable(anyhow::anyhow!("down")).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers().get("retry-after").unwrap(), "5");
    }

    #[test]
    fn too_many_waiters_is_429_with_retry_after() {
        for which in [
            crate::job_events::TooManyWaiters::User(4),
            crate::job_events::TooManyWaiters::Process,
        ] {
            let resp = ApiError::TooManyWaiters(which).into_response();
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(resp.headers().get("retry-after").unwrap(), "2");
            assert!(futures_body(resp).contains(r#""code":"too_many_waiters""#));
        }
    }

    fn futures_body(resp: Response) -> String {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(resp.into_body().into_string())
            .unwrap()
    }
}
