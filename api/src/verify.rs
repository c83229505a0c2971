//! Svix signature verification on the raw bytes, before anything parses them (DESIGN rule 1).
//! HMAC and constant-time comparison are the `svix` crate's; we add several secrets (rotation),
//! an injectable clock for the ±5 minute window, and errors that map to 400 vs 401.

use crate::error::ApiError;
use jobs::config::ConfigError;
use jobs::ids::SvixId;
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
        let ts: i64 = ts
            .trim()
            .parse()
            .map_err(|_| ApiError::MalformedSvixHeader("svix-timestamp"))?;
        if (now_secs - ts).abs() > TOLERANCE_SECS {
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
        type Case<'a> = (&'a str, HeaderMap, &'a [u8], i64, Result<(), &'a str>);
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
                Err("invalid_signature"),
            ),
            (
                "other id",
                headers("msg_other", &ts, VECTOR_SIG),
                VECTOR_BODY,
                VECTOR_TS,
                Err("invalid_signature"),
            ),
            (
                "wrong version prefix",
                headers(VECTOR_ID, &ts, &VECTOR_SIG.replace("v1,", "v2,")),
                VECTOR_BODY,
                VECTOR_TS,
                Err("invalid_signature"),
            ),
            (
                "stale",
                headers(VECTOR_ID, &ts, VECTOR_SIG),
                VECTOR_BODY,
                VECTOR_TS + TOLERANCE_SECS + 1,
                Err("timestamp_out_of_tolerance"),
            ),
            (
                "future",
                headers(VECTOR_ID, &ts, VECTOR_SIG),
                VECTOR_BODY,
                VECTOR_TS - TOLERANCE_SECS - 1,
                Err("timestamp_out_of_tolerance"),
            ),
            (
                "timestamp not a number",
                headers(VECTOR_ID, "soon", VECTOR_SIG),
                VECTOR_BODY,
                VECTOR_TS,
                Err("malformed_svix_header"),
            ),
            (
                "id with separators",
                headers("msg.1", &ts, VECTOR_SIG),
                VECTOR_BODY,
                VECTOR_TS,
                Err("malformed_svix_header"),
            ),
        ];
        for (name, h, body, now, want) in cases {
            let got = v
                .verify(&h, body, now)
                .map(|_| ())
                .map_err(|e| e.code().to_owned());
            assert_eq!(got, want.map_err(|c| c.to_owned()), "{name}");
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
