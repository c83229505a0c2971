//! Every HTTP error the API can answer. The table just below is the one place that says which
//! codes exist, the status of each and the `Retry-After` it carries: handlers name a [`Code`],
//! never a string. Client mistakes are 4xx with a clear message; anything unexpected is an
//! opaque 5xx whose cause chain goes to the log only. [`ApiError`] is also the error half of
//! every operation's `Result`, so its `ApiResponse` impl documents these statuses in the spec.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

/// The table: `Variant = status "code" [retry-after seconds]`.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $status:literal $code:literal $(retry $secs:literal)?,)*) => {
        /// The stable code of an error, the one thing clients match on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            pub fn status(self) -> StatusCode {
                let status: u16 = match self {
                    $(Code::$variant => $status,)*
                };
                StatusCode::from_u16(status).expect("a valid status in the table")
            }

            /// Seconds a client should wait before trying again, sent as `Retry-After`.
            pub fn retry_after(self) -> Option<u32> {
                match self {
                    $(Code::$variant => None $(.or(Some($secs)))?,)*
                }
            }
        }
    };
}

codes! {
    MissingSvixHeader = 400 "missing_svix_header",
    MalformedSvixHeader = 400 "malformed_svix_header",
    UnreadableBody = 400 "unreadable_body",
    /// A signed body that is not a Clerk event, or one PostgreSQL cannot store.
    UnparseableEvent = 400 "unparseable_event",
    /// An operator route's filter, cursor or limit that does not parse.
    InvalidQuery = 400 "invalid_query",
    InvalidWaitMs = 400 "invalid_wait_ms",
    /// A replayed event that causes no jobs, or whose stored body no longer parses.
    NotReplayable = 400 "not_replayable",
    /// A parameter the OpenAPI layer could not parse.
    InvalidRequest = 400 "invalid_request",
    MissingToken = 401 "missing_token",
    InvalidToken = 401 "invalid_token",
    TokenExpired = 401 "token_expired",
    TokenNotYetValid = 401 "token_not_yet_valid",
    WrongIssuer = 401 "wrong_issuer",
    UnauthorizedParty = 401 "unauthorized_party",
    UnknownKey = 401 "unknown_key",
    TimestampOutOfTolerance = 401 "timestamp_out_of_tolerance",
    InvalidSignature = 401 "invalid_signature",
    /// A valid session of a user who is not an admin.
    Forbidden = 403 "forbidden",
    IpNotAllowed = 403 "ip_not_allowed",
    CrossSiteRequest = 403 "cross_site_request",
    /// A browser's preflight from an origin not in `CORS_ALLOWED_ORIGINS`, or asking for more
    /// than `/v1/*` needs.
    CorsRefused = 403 "cors_not_allowed",
    NotFound = 404 "not_found",
    RequestTimeout = 408 "request_timeout",
    Conflict = 409 "conflict",
    PayloadTooLarge = 413 "payload_too_large",
    /// About the time for one of the caller's open waits to end when jobs are moving.
    TooManyWaiters = 429 "too_many_waiters" retry 2,
    Internal = 500 "internal",
    NotConfigured = 503 "not_configured" retry 5,
    Unavailable = 503 "unavailable" retry 5,
    /// `/readyz`: the database in `DATABASE_URL` does not exist.
    DatabaseMissing = 503 "database_missing",
    NotMigrated = 503 "not_migrated",
    PoolSaturated = 503 "pool_saturated",
}

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
    /// A 401 code of the table (`missing_token`, `invalid_token`…) and its message.
    #[error("{1}")]
    Unauthenticated(Code, &'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("webhooks are not accepted from this address")]
    IpNotAllowed,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("state-changing operator requests signed in by the session cookie must come from this service's own pages (Sec-Fetch-Site or Origin); scripts use Authorization: Bearer")]
    CrossSiteRequest,
    #[error("this origin may not call the api from a browser (CORS_ALLOWED_ORIGINS), or the preflight asked for a method or header other than GET/POST with Authorization and Content-Type")]
    CorsRefused,
    #[error("{0}")]
    Conflict(&'static str),
    /// A 400 code of the table and its message.
    #[error("{1}")]
    BadRequest(Code, String),
    #[error("{}", too_many_waiters_message(*.0))]
    TooManyWaiters(crate::job_events::TooManyWaiters),
    #[error("{0} is not configured on this deployment")]
    NotConfigured(&'static str),
    #[error("the database is unavailable; retry later")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    #[error("the request was not complete and answered within {} s", .0.as_secs())]
    RequestTimeout(Duration),
    /// `/readyz`'s refusal (a 503 code of the table): for a load balancer's probe, so no
    /// `Retry-After` and no error log (the route logs why).
    #[error("{1}")]
    NotReady(Code, String),
}

impl ApiError {
    /// The stable code clients can match on.
    pub fn code(&self) -> Code {
        use ApiError::*;
        match self {
            MissingSvixHeader(_) => Code::MissingSvixHeader,
            MalformedSvixHeader(_) => Code::MalformedSvixHeader,
            UnreadableBody => Code::UnreadableBody,
            UnparseableEvent(_) => Code::UnparseableEvent,
            TimestampOutOfTolerance => Code::TimestampOutOfTolerance,
            InvalidSignature => Code::InvalidSignature,
            PayloadTooLarge(_) => Code::PayloadTooLarge,
            Unauthenticated(code, _) | BadRequest(code, _) | NotReady(code, _) => *code,
            NotFound(_) => Code::NotFound,
            IpNotAllowed => Code::IpNotAllowed,
            Forbidden(_) => Code::Forbidden,
            CrossSiteRequest => Code::CrossSiteRequest,
            CorsRefused => Code::CorsRefused,
            Conflict(_) => Code::Conflict,
            TooManyWaiters(_) => Code::TooManyWaiters,
            NotConfigured(_) => Code::NotConfigured,
            Unavailable(_) => Code::Unavailable,
            Internal(_) => Code::Internal,
            RequestTimeout(_) => Code::RequestTimeout,
        }
    }

    fn response(&self) -> Response {
        let code = self.code();
        let status = code.status();
        let retry_after = match self {
            ApiError::NotReady(..) => None,
            _ => code.retry_after(),
        };
        if status.is_server_error() && !matches!(self, ApiError::NotReady(..)) {
            let cause = match self {
                ApiError::Unavailable(e) | ApiError::Internal(e) => format!("{e:#}"),
                _ => String::new(),
            };
            tracing::error!(code = code.as_str(), cause, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.as_str().to_owned(),
                message: self.to_string(),
            },
        };
        let mut resp = Json(body).into_response();
        resp.set_status(status);
        if let Some(secs) = retry_after {
            resp.headers_mut().insert("retry-after", secs.into());
        }
        resp
    }
}

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

/// Every error: a stable `code` to match on and a message safe to show.
#[derive(Object)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Object)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.response()
    }
}

/// What an operation's `Err` becomes (poem-openapi turns it into a `poem::Error`).
impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.code().status()
    }

    fn as_response(&self) -> Response {
        self.response()
    }
}

/// Every status of the table, each listing its codes, with `Retry-After` where one is sent.
impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        let mut statuses: Vec<StatusCode> = Code::ALL.iter().map(|c| c.status()).collect();
        statuses.dedup();
        let responses = statuses
            .into_iter()
            .map(|status| {
                let codes: Vec<Code> = Code::ALL
                    .iter()
                    .copied()
                    .filter(|c| c.status() == status)
                    .collect();
                let retry = codes.iter().any(|c| c.retry_after().is_some());
                MetaResponse {
                    description: description(status),
                    status: Some(status.as_u16()),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: Json::<ErrorBody>::CONTENT_TYPE,
                        schema: ErrorBody::schema_ref(),
                    }],
                    headers: retry
                        .then(|| MetaHeader {
                            name: "retry-after".to_owned(),
                            description: Some("Seconds to wait before retrying.".to_owned()),
                            required: false,
                            deprecated: false,
                            schema: u32::schema_ref(),
                        })
                        .into_iter()
                        .collect(),
                }
            })
            .collect();
        MetaResponses { responses }
    }

    fn register(registry: &mut Registry) {
        ErrorBody::register(registry);
    }
}

/// "error code `a`, `b`" for a status of the table.
fn description(status: StatusCode) -> &'static str {
    static BY_STATUS: OnceLock<HashMap<StatusCode, String>> = OnceLock::new();
    let all = BY_STATUS.get_or_init(|| {
        let mut all: HashMap<StatusCode, Vec<String>> = HashMap::new();
        for c in Code::ALL {
            all.entry(c.status())
                .or_default()
                .push(format!("`{}`", c.as_str()));
        }
        all.into_iter()
            .map(|(s, codes)| (s, format!("error code {}", codes.join(", "))))
            .collect()
    });
    all.get(&status).map(String::as_str).unwrap_or("error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_by_status_and_codes_are_unique() {
        let statuses: Vec<u16> = Code::ALL.iter().map(|c| c.status().as_u16()).collect();
        assert!(statuses.windows(2).all(|w| w[0] <= w[1]), "{statuses:?}");
        let mut codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Code::ALL.len());
    }

    #[test]
    fn server_errors_do_not_leak_causes() {
        let resp = ApiError::Internal(anyhow::anyhow!("password=hunter2")).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = futures_body(resp);
        assert!(!body.contains("hunter2"));
        assert!(body.contains(&format!(r#""code":"{}""#, Code::Internal.as_str())));
    }

    #[test]
    fn unavailable_says_when_to_retry() {
        let resp = ApiError::Unavailable(anyhow::anyhow!("down")).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers().get("retry-after").unwrap(), "5");
    }

    #[test]
    fn not_ready_is_503_without_retry_after() {
        let resp =
            ApiError::NotReady(Code::NotMigrated, "run `api migrate`".into()).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().get("retry-after").is_none());
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
            let want = format!(r#""code":"{}""#, Code::TooManyWaiters.as_str());
            assert!(futures_body(resp).contains(&want));
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
