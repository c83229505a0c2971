//! `POST /webhooks/clerk`: verify the raw bytes, parse, then store the event and its jobs in
//! one transaction. 2xx only once durable; a repeat is 200 `duplicate`; unhandled types are
//! 200 `ignored`; signed garbage is 400 and recorded as `rejected`.

use crate::error::ApiError;
use crate::startup::AppState;
use jobs::clerk::ClerkEvent;
use jobs::intake::{self, IntakeError, IntakeOutcome};
use poem::http::{HeaderMap, StatusCode};
use poem::web::Json;
use poem::{Body, IntoResponse, Response};
use serde_json::json;

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub async fn clerk_webhook(
    req: &poem::Request,
    headers: &HeaderMap,
    body: Body,
    state: &AppState,
) -> Response {
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
    match result {
        Ok((_, resp)) => resp,
        Err(e) => e.into_response(),
    }
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
    "email.created",
];

async fn receive(
    headers: &HeaderMap,
    body: Body,
    state: &AppState,
    seen_type: &mut Option<String>,
) -> Result<(&'static str, Response), ApiError> {
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
    let outcome = state
        .intake
        .accept(&svix_id, &event, text, request_id)
        .await
        .map_err(|e| match e {
            // Recorded as `rejected`, like a body that does not parse.
            IntakeError::Refused(reason) => ApiError::UnparseableEvent(reason),
            e @ IntakeError::Enqueue(_) => ApiError::Internal(e.into()),
            e => ApiError::Unavailable(e.into()),
        })?;
    let label = match &outcome {
        IntakeOutcome::Accepted { .. } => "accepted",
        IntakeOutcome::Duplicate => "duplicate",
        IntakeOutcome::Ignored => "ignored",
    };
    tracing::info!(svix_id = %svix_id, event_type = %event.event_type, outcome = label, "webhook received");
    let resp = match outcome {
        IntakeOutcome::Accepted { job_ids } => (
            StatusCode::ACCEPTED,
            Json(json!({"status": "accepted", "svix_id": svix_id.as_str(), "job_ids": job_ids.iter().map(|j| j.to_string()).collect::<Vec<_>>() })),
        )
            .into_response(),
        IntakeOutcome::Duplicate => Json(json!({"status": "duplicate", "svix_id": svix_id.as_str()})).into_response(),
        IntakeOutcome::Ignored => Json(json!({"status": "ignored", "svix_id": svix_id.as_str(), "event_type": event.event_type})).into_response(),
    };
    Ok((label, resp))
}
