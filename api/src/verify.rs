//! Svix signature verification on the raw bytes, before anything parses them (DESIGN rule 1).
//! HMAC and constant-time comparison are the `svix` crate's; we add several secrets (rotation),
//! an injectable clock for the ±5 minute window, and errors that map to 400 vs 401.

use crate::error::ApiError;
use jobs::clerk::ids::SvixId;
use jobs::config::ConfigError;
use poem::http::HeaderMap;
use svix::webhooks::Webhook;

/// Deliveries older or newer than this many seconds are refused.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// The configured secrets; any one of them verifies.
pub struct WebhookVerifier {
    keys: Vec<Webhook>,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookVerifier({} secrets)", self.keys.len())
    }
}

impl WebhookVerifier {
    /// Parses `CLERK_WEBHOOK_SECRET`: one or more `whsec_…` secrets, space-separated.
    pub fn from_secrets(value: &str) -> Result<Self, ConfigError> {
        let keys = value
            .split_whitespace()
            .map(|s| {
                if !s.starts_with("whsec_") {
                    return Err("each secret must start with `whsec_`".to_owned());
                }
                Webhook::new(s).map_err(|e| format!("a secret is not valid base64 ({e})"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| ConfigError::Malformed {
                name: "CLERK_WEBHOOK_SECRET",
                reason,
            })?;
        if keys.is_empty() {
            return Err(ConfigError::Missing("CLERK_WEBHOOK_SECRET"));
        }
        Ok(Self { keys })
    }

    /// Checks headers, timestamp window and signature; returns the delivery's svix-id.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<SvixId, ApiError> {
        let header = |name: &'static str| -> Result<&str, ApiError> {
            headers
                .get(name)
                .ok_or(ApiError::MissingSvixHeader(name))?
                .to_str()
                .map_err(|_| ApiError::MalformedSvixHeader(name))
        };
        let id = header("svix-id")?;
        let ts = header("svix-timestamp")?;
        header("svix-signature")?;
        let svix_id = SvixId::parse(id).map_err(|_| ApiError::MalformedSvixHeader("svix-id"))?;
        if !within_tolerance(ts, now_secs)? {
            return Err(ApiError::TimestampOutOfTolerance);
        }
        if std::str::from_utf8(body).is_err() {
            // Svix only sends JSON text; bytes that are not UTF-8 cannot carry a valid signature.
            return Err(ApiError::InvalidSignature);
        }
        if self
            .keys
            .iter()
            .any(|k| k.verify_ignoring_timestamp(body, headers).is_ok())
        {
            Ok(svix_id)
        } else {
            Err(ApiError::InvalidSignature)
        }
    }
}

/// Whether a `svix-timestamp` value lies within ±[`TOLERANCE_SECS`] of `now_secs`. A number
/// of any size is a timestamp (one too large for an `i64` is simply out of the window); the
/// distance is computed without overflow, since the header is attacker-controlled and checked
/// before the signature.
fn within_tolerance(raw: &str, now_secs: i64) -> Result<bool, ApiError> {
    let raw = raw.trim();
    let digits = raw.strip_prefix(['-', '+']).unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::MalformedSvixHeader("svix-timestamp"));
    }
    Ok(raw
        .parse::<i64>()
        .is_ok_and(|ts| now_secs.abs_diff(ts) <= TOLERANCE_SECS.unsigned_abs()))
}

/// Signs a body the way Svix does: the value of a `svix-signature` header (`v1,<base64>`).
/// Used by `api simulate` and the tests.
pub fn sign(
    secret: &str,
    svix_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, svix::webhooks::WebhookError> {
    Webhook::new(secret)?.sign(svix_id, timestamp, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    const VECTOR_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const VECTOR_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const VECTOR_TS: i64 = 1649367553;
    const VECTOR_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const VECTOR_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("svix-id", id.parse().unwrap());
        h.insert("svix-timestamp", ts.parse().unwrap());
        h.insert("svix-signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn published_test_vector_signs_and_verifies() {
        assert_eq!(
            sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY).unwrap(),
            VECTOR_SIG
        );
        let v = WebhookVerifier::from_secrets(VECTOR_SECRET).unwrap();
        let h = headers(VECTOR_ID, &VECTOR_TS.to_string(), VECTOR_SIG);
        assert_eq!(
            v.verify(&h, VECTOR_BODY, VECTOR_TS + 10).unwrap().as_str(),
            VECTOR_ID
        );
    }

    #[test]
    fn verification_cases() {
        let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let v = WebhookVerifier::from_secrets(&format!("{other} {VECTOR_SECRET}")).unwrap();
        let ts = VECTOR_TS.to_string();
        type Case<'a> = (&'a str, HeaderMap, &'a [u8], i64, Result<(), Code>);
        let cases: Vec<Case> = vec![
            (
                "second of two secrets",
                headers(VECTOR_ID, &ts, VECTOR_SIG),
                VECTOR_BODY,
                VECTOR_TS,
                Ok(()),
            ),
            (
                "one of several signatures",
                headers(VECTOR_ID, &ts, &format!("v1,bm9wZQ== {VECTOR_SIG}")),
                VECTOR_BODY,
                VECTOR_TS,
                Ok(()),
            ),
            (
                "tampered body",
                headers(VECTOR_ID, &ts, VECTOR_SIG),
                br#"{"email":"evil@example.com","username":"test_user"}"#,
                VECTOR_TS,
                Err(Code::InvalidSignature),
            ),
            (
                "other id",
                headers("msg_other", &ts, VECTOR_SIG),
                VECTOR_BODY,
                VECTOR_TS,
                Err(Code::InvalidSignature),
            ),
            (
                "wrong version prefix",
                headers(VECTOR_ID, &ts, &VECTOR_SIG.replace("v1,", "v2,")),
                VECTOR_BODY,
                VECTOR_TS,
                Err(Code::InvalidSignature),
            ),
            (
                "stale",
                headers(VECTOR_ID, &ts, VECTOR_SIG),
                VECTOR_BODY,
                VECTOR_TS + TOLERANCE_SECS + 1,
                Err(Code::TimestampOutOfTolerance),
            ),
            (
                "future",
                headers(VECTOR_ID, &ts, VECTOR_SIG),
                VECTOR_BODY,
                VECTOR_TS - TOLERANCE_SECS - 1,
                Err(Code::TimestampOutOfTolerance),
            ),
            (
                "timestamp not a number",
                headers(VECTOR_ID, "soon", VECTOR_SIG),
                VECTOR_BODY,
                VECTOR_TS,
                Err(Code::MalformedSvixHeader),
            ),
            (
                "id with separators",
                headers("msg.1", &ts, VECTOR_SIG),
                VECTOR_BODY,
                VECTOR_TS,
                Err(Code::MalformedSvixHeader),
            ),
        ];
        for (name, h, body, now, want) in cases {
            let got = v.verify(&h, body, now).map(|_| ()).map_err(|e| e.code());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn extreme_timestamps_are_out_of_tolerance_not_a_panic() {
        let v = WebhookVerifier::from_secrets(VECTOR_SECRET).unwrap();
        let cases: &[(&str, i64, Code)] = &[
            (
                "-9223372036854775808",
                VECTOR_TS,
                Code::TimestampOutOfTolerance,
            ),
            (
                "9223372036854775807",
                VECTOR_TS,
                Code::TimestampOutOfTolerance,
            ),
            (
                "-9223372036854775808",
                i64::MAX,
                Code::TimestampOutOfTolerance,
            ),
            (
                "9223372036854775807",
                i64::MIN,
                Code::TimestampOutOfTolerance,
            ),
            ("-1", i64::MAX, Code::TimestampOutOfTolerance),
            ("0", i64::MIN, Code::TimestampOutOfTolerance),
            (
                "99999999999999999999999",
                VECTOR_TS,
                Code::TimestampOutOfTolerance,
            ),
            (
                "-99999999999999999999999",
                VECTOR_TS,
                Code::TimestampOutOfTolerance,
            ),
            ("-", VECTOR_TS, Code::MalformedSvixHeader),
            ("1e9", VECTOR_TS, Code::MalformedSvixHeader),
            ("0x10", VECTOR_TS, Code::MalformedSvixHeader),
            ("--5", VECTOR_TS, Code::MalformedSvixHeader),
        ];
        for (ts, now, want) in cases {
            let h = headers(VECTOR_ID, ts, VECTOR_SIG);
            let got = v.verify(&h, VECTOR_BODY, *now).map(|_| ()).unwrap_err();
            assert_eq!(got.code(), *want, "svix-timestamp {ts} at {now}");
        }
    }

    #[test]
    fn wrong_secret_is_refused() {
        let v = WebhookVerifier::from_secrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let h = headers(VECTOR_ID, &VECTOR_TS.to_string(), VECTOR_SIG);
        assert!(matches!(
            v.verify(&h, VECTOR_BODY, VECTOR_TS),
            Err(ApiError::InvalidSignature)
        ));
    }

    #[test]
    fn each_missing_header_is_named() {
        for missing in ["svix-id", "svix-timestamp", "svix-signature"] {
            let mut h = headers(VECTOR_ID, &VECTOR_TS.to_string(), VECTOR_SIG);
            h.remove(missing);
            let v = WebhookVerifier::from_secrets(VECTOR_SECRET).unwrap();
            assert!(
                matches!(v.verify(&h, VECTOR_BODY, VECTOR_TS), Err(ApiError::MissingSvixHeader(m)) if m == missing)
            );
        }
    }

    #[test]
    fn secrets_are_validated() {
        for bad in ["", "   ", "nope", "whsec_!!!"] {
            assert!(WebhookVerifier::from_secrets(bad).is_err(), "{bad:?}");
        }
    }
}
