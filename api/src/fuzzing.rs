//! What the fuzz targets in `fuzz/` run, kept here so the test suite can replay their corpus
//! deterministically (`tests/tests/in_process/fuzz_corpus.rs`). Each function panics only on a real bug.

use crate::verify::{sign, WebhookVerifier};
use jobs::clerk::ids::SvixId;
use jobs::clerk::ClerkEvent;
use jobs::planner::PlannedJob;
use poem::http::{HeaderMap, HeaderValue};

/// A fixed secret for the signature target.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// "Now" for the signature target: inputs choose timestamps around it.
pub const NOW: i64 = 1_767_955_200;

/// Any bytes as a delivery body: parsing never panics, and whatever parses plans without
/// panicking into jobs that all carry the event's svix-id.
pub fn clerk_event(data: &[u8]) -> Option<ClerkEvent> {
    let event = ClerkEvent::parse(data).ok()?;
    let svix = SvixId::parse("msg_fuzz").expect("valid id");
    for job in jobs::planner::plan(&svix, &event) {
        let (payload, origin) = match &job {
            PlannedJob::ProvisionUser(j) => (serde_json::to_vec(j), &j.origin),
            PlannedJob::SoftDelete(j) => (serde_json::to_vec(j), &j.origin),
            PlannedJob::SyncOrganization(j) => (serde_json::to_vec(j), &j.origin),
            PlannedJob::SyncMembership(j) => (serde_json::to_vec(j), &j.origin),
            PlannedJob::RecordActivity(j) => (serde_json::to_vec(j), &j.origin),
        };
        assert!(payload.is_ok(), "planned jobs serialize");
        assert_eq!(
            origin.svix_id.as_ref(),
            Some(&svix),
            "jobs name their event"
        );
    }
    Some(event)
}

/// Any bytes as (svix-id, svix-timestamp, svix-signature, body), split on NUL: verification
/// never panics, and it succeeds only when the header really carries the body's signature.
pub fn svix_headers(data: &[u8]) -> bool {
    let mut parts = data.splitn(4, |b| *b == 0);
    let (Some(id), Some(ts), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let body = parts.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("svix-id", id),
        ("svix-timestamp", ts),
        ("svix-signature", sig),
    ] {
        // Bytes a client could not send as a header value never reach us.
        let Ok(v) = HeaderValue::from_bytes(value) else {
            return false;
        };
        headers.insert(name, v);
    }
    let verifier = WebhookVerifier::from_secrets(SECRET).expect("valid secret");
    let verified = verifier.verify(&headers, body, NOW).is_ok();
    if verified {
        let (id, ts) = (
            std::str::from_utf8(id).expect("verified ids are text"),
            std::str::from_utf8(ts)
                .expect("verified timestamps are text")
                .trim()
                .parse::<i64>()
                .expect("verified timestamps are numbers"),
        );
        let expected = sign(SECRET, id, ts, body).expect("signing works");
        let expected = expected
            .split_once(',')
            .map(|(_, s)| s)
            .unwrap_or(&expected);
        let sig = String::from_utf8_lossy(sig);
        assert!(
            sig.split_whitespace()
                .any(|s| s.strip_prefix("v1,") == Some(expected)),
            "verified a signature header that does not carry the body's signature"
        );
    }
    verified
}
