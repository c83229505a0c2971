//! `POST /webhooks/clerk`: verify the raw bytes, parse, then store the event and its jobs in
//! one transaction. 2xx only once durable; a repeat is 200 `duplicate`; unhandled types are
//! 200 `ignored`; signed garbage is 400 and recorded as `rejected`.

use crate::error::ApiError;
use crate::startup::AppState;
use jobs::clerk::ClerkEvent;
use jobs::intake::{self, IntakeError, IntakeOutcome};
use poem::http::HeaderMap;
use poem::web::Data;
use poem::{Body, Request};
use poem_openapi::param::Header;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

/// What became of a delivery.
#[derive(Object)]
pub struct WebhookOutcome {
    /// `accepted`, `duplicate` or `ignored`.
    status: String,
    svix_id: String,
    /// The jobs planned for an accepted event.
    #[oai(skip_serializing_if_is_none)]
    job_ids: Option<Vec<String>>,
    /// The type of an ignored event.
    #[oai(skip_serializing_if_is_none)]
    event_type: Option<String>,
}

#[derive(ApiResponse)]
pub enum WebhookResponse {
    /// The event is stored and its jobs are queued.
    #[oai(status = 202)]
    Accepted(Json<WebhookOutcome>),
    /// A repeat of a stored delivery (`duplicate`), or a type we do not handle (`ignored`).
    #[oai(status = 200)]
    Done(Json<WebhookOutcome>),
}

#[derive(Default)]
pub struct WebhooksApi;

#[OpenApi]
impl WebhooksApi {
    /// Receive a Clerk webhook
    ///
    /// Verifies the Svix signature over the raw body (`svix-id`, `svix-timestamp`,
    /// `svix-signature` headers) and stores the event and its jobs in one transaction before
    /// answering 2xx. The body is Clerk's event JSON as delivered. A 400 for a signed body that
    /// is not a Clerk event records it as `rejected`; 403 `ip_not_allowed` when the sender is
    /// not in `WEBHOOK_IP_ALLOWLIST`; 503 with `Retry-After` when nothing could be stored.
    // The body is taken raw (`Body`, not a typed payload): the signature covers its exact
    // bytes, and it is read with our size limit (413 before the rest arrives).
    #[oai(
        path = "/webhooks/clerk",
        method = "post",
        tag = "crate::openapi::Tag::Webhooks"
    )]
    async fn clerk_webhook(
        &self,
        req: &Request,
        body: Body,
        state: Data<&AppState>,
        /// Required. The delivery's unique id (`msg_…`): a repeat of a stored id is answered
        /// `duplicate`. Missing: 400 `missing_svix_header`.
        #[oai(name = "svix-id")]
        _svix_id: Header<Option<String>>,
        /// Required. When the delivery was signed, in Unix seconds; outside ±5 minutes of
        /// now: 401 `timestamp_out_of_tolerance`.
        #[oai(name = "svix-timestamp")]
        _svix_timestamp: Header<Option<String>>,
        /// Required. Space-separated `v1,<base64 HMAC-SHA256>` signatures of
        /// `{svix-id}.{svix-timestamp}.{body}`; one must match a `CLERK_WEBHOOK_SECRET`, or
        /// 401 `invalid_signature`.
        #[oai(name = "svix-signature")]
        _svix_signature: Header<Option<String>>,
    ) -> Result<WebhookResponse, ApiError> {
        // The headers are declared above for the OpenAPI document only (optional there, so
        // that a missing one gets our own 400 `missing_svix_header`, counted and checked
        // after the source address); verification reads them from the raw request.
        clerk_webhook(req, req.headers(), body, &state).await
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn clerk_webhook(
    req: &Request,
    headers: &HeaderMap,
    body: Body,
    state: &AppState,
) -> Result<WebhookResponse, ApiError> {
    let started = std::time::Instant::now();
    let mut seen_type = None;
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let result = if state.ip_filter.allows(peer, headers) {
        receive(headers, body, state, &mut seen_type).await
    } else {
        Err(ApiError::IpNotAllowed)
    };
    let outcome = match &result {
        Ok((label, _)) => *label,
        Err(ApiError::InvalidSignature | ApiError::TimestampOutOfTolerance) => "unauthorized",
        Err(ApiError::UnparseableEvent(_)) => "rejected",
        Err(ApiError::PayloadTooLarge(_)) => "too_large",
        Err(ApiError::IpNotAllowed) => "forbidden",
        Err(ApiError::Unavailable(_) | ApiError::Internal(_)) => "unavailable",
        Err(_) => "invalid",
    };
    let event_type = match seen_type.as_deref() {
        Some(t) if KNOWN_TYPES.contains(&t) => t.to_owned(),
        Some(_) => "other".to_owned(),
        None => "unknown".to_owned(),
    };
    metrics::counter!("authsync_webhooks_received_total", "event_type" => event_type, "outcome" => outcome).increment(1);
    metrics::histogram!("authsync_webhook_intake_seconds").record(started.elapsed().as_secs_f64());
    result.map(|(_, resp)| resp)
}

/// Event types that get their own metric label; anything else is `other` (bounded cardinality).
const KNOWN_TYPES: &[&str] = &[
    "user.created",
    "user.updated",
    "user.deleted",
    "organization.created",
    "organization.updated",
    "organization.deleted",
    "organizationMembership.created",
    "organizationMembership.updated",
    "organizationMembership.deleted",
    "session.created",
    "session.ended",
    "session.removed",
    "session.revoked",
    "email.created",
];

async fn receive(
    headers: &HeaderMap,
    body: Body,
    state: &AppState,
    seen_type: &mut Option<String>,
) -> Result<(&'static str, WebhookResponse), ApiError> {
    let limit = state.body_limit;
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let bytes = body.into_bytes_limit(limit).await.map_err(|e| match e {
        poem::error::ReadBodyError::PayloadTooLarge => ApiError::PayloadTooLarge(limit),
        _ => ApiError::UnreadableBody,
    })?;

    let svix_id = state.verifier.verify(headers, &bytes, now_secs())?;
    tracing::Span::current().record("svix_id", svix_id.as_str());
    let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());

    let event = match ClerkEvent::parse(&bytes) {
        Ok(ev) => {
            *seen_type = Some(ev.event_type.clone());
            ev
        }
        Err(e) => {
            let reason = e.to_string();
            intake::reject(state.intake.pool(), &svix_id, &bytes, &reason)
                .await
                .map_err(|e| ApiError::Unavailable(e.into()))?;
            tracing::warn!(svix_id = %svix_id, %reason, "signed event rejected");
            return Err(ApiError::UnparseableEvent(reason));
        }
    };
    // Verified bodies are UTF-8 (checked by the verifier).
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::InvalidSignature)?;
    let stored = state
        .intake
        .accept(&svix_id, &event, text, request_id)
        .await
        .map_err(|e| match e {
            // Recorded as `rejected`, like a body that does not parse.
            IntakeError::Refused(reason) => ApiError::UnparseableEvent(reason),
            e @ IntakeError::Enqueue(_) => ApiError::Internal(e.into()),
            e => ApiError::Unavailable(e.into()),
        })?;
    let label = match &stored {
        IntakeOutcome::Accepted { .. } => "accepted",
        IntakeOutcome::Duplicate => "duplicate",
        IntakeOutcome::Ignored => "ignored",
    };
    tracing::info!(svix_id = %svix_id, event_type = %event.event_type, outcome = label, "webhook received");
    let body = |status: &str| WebhookOutcome {
        status: status.to_owned(),
        svix_id: svix_id.as_str().to_owned(),
        job_ids: None,
        event_type: None,
    };
    let resp = match stored {
        IntakeOutcome::Accepted { job_ids } => WebhookResponse::Accepted(Json(WebhookOutcome {
            job_ids: Some(job_ids.iter().map(|j| j.to_string()).collect()),
            ..body(label)
        })),
        IntakeOutcome::Duplicate => WebhookResponse::Done(Json(body(label))),
        IntakeOutcome::Ignored => WebhookResponse::Done(Json(WebhookOutcome {
            event_type: Some(event.event_type.clone()),
            ..body(label)
        })),
    };
    Ok((label, resp))
}
