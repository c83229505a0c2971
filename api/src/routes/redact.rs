//! The admin payload view's redaction: one-time codes and links in Clerk's `email.created`
//! and `sms.created` events never leave the database. By field, not by value: replacing the
//! code's text across the whole payload also hit numbers containing its digits, broke the
//! JSON, and fell back to showing everything.

use serde_json::{json, Value};

/// What a redacted value reads.
const REDACTED: &str = "[redacted]";
/// Fields of Clerk's template data (`data.data`) that carry a one-time secret.
const SECRET_TEMPLATE_FIELDS: &[&str] = &["otp_code", "magic_link", "action_url", "ticket"];
/// Rendered messages: each repeats the secret in its own words, so each goes as a whole.
const RENDERED_FIELDS: &[&str] = &["body", "body_plain", "message"];

/// One-time codes never leave the database. Redacted by field, where Clerk's `email.created`
/// and `sms.created` carry them: the template data's codes and links (`data.data.otp_code`,
/// `magic_link`, `action_url`, `ticket`), the rendered bodies and SMS text as a whole, and
/// the code inside `data.subject` (Clerk's default subject starts with it). Nothing else is
/// touched: a number elsewhere that contains the code's digits stays as it is.
pub fn redact(mut payload: Value) -> Value {
    if payload["type"] != "email.created" && payload["type"] != "sms.created" {
        return payload;
    }
    if let Some(data) = payload.get_mut("data").and_then(Value::as_object_mut) {
        let mut secrets = Vec::new();
        if let Some(template) = data.get_mut("data").and_then(Value::as_object_mut) {
            for key in SECRET_TEMPLATE_FIELDS {
                if let Some(v) = template.get_mut(*key).filter(|v| !v.is_null()) {
                    if let Some(secret) = v.as_str().filter(|s| !s.is_empty()) {
                        secrets.push(secret.to_owned());
                    }
                    *v = json!(REDACTED);
                }
            }
        }
        for key in RENDERED_FIELDS {
            if let Some(v) = data.get_mut(*key).filter(|v| !v.is_null()) {
                *v = json!(REDACTED);
            }
        }
        if let Some(Value::String(subject)) = data.get_mut("subject") {
            for secret in &secrets {
                *subject = subject.replace(secret.as_str(), REDACTED);
            }
        }
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(otp: &str) -> Value {
        let mut v: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/clerk/email.created.json"
        ))
        .unwrap();
        v["data"]["data"]["otp_code"] = json!(otp);
        v
    }

    #[test]
    fn codes_are_redacted_in_their_fields_and_nothing_else_changes() {
        // The timestamp 1767955158800 contains the digits 5158.
        let redacted = redact(email("5158"));
        let data = &redacted["data"];
        assert_eq!(data["data"]["otp_code"], REDACTED);
        for key in ["body", "body_plain"] {
            assert_eq!(data[key], REDACTED, "{key}");
        }
        assert_eq!(redacted["timestamp"], json!(1767955158800_i64));
        assert_eq!(data["data"]["app"]["name"], "Example App");
        let mut sms = json!({"type": "sms.created", "timestamp": 1767955158800_i64,
            "data": {"message": "5158 is your code", "data": {"otp_code": "5158"}, "to_phone_number": "+15555550100"}});
        sms = redact(sms);
        assert_eq!(sms["data"]["message"], REDACTED);
        assert_eq!(sms["data"]["data"]["otp_code"], REDACTED);
        assert_eq!(sms["timestamp"], json!(1767955158800_i64));
    }

    #[test]
    fn the_subject_keeps_its_words_without_the_code() {
        let redacted = redact(email("424242"));
        assert_eq!(
            redacted["data"]["subject"],
            "[redacted] is your verification code"
        );
        assert!(!redacted.to_string().contains("424242"));
    }

    #[test]
    fn other_events_are_untouched() {
        let v = json!({"type": "user.created", "data": {"body": "x"}});
        assert_eq!(redact(v.clone()), v);
    }
}
