//! JSON decode errors without the input's values. serde's messages quote what they found
//! (`invalid type: string "alice@example.com", expected i64`), and these messages end up in
//! WARN logs, in `webhook_events.last_error` and in job errors — places where an email address
//! or a one-time code must not appear. [`JsonError`] keeps what helps to fix the sender: the
//! field path, the line and column, and the kind of mismatch; the value itself is dropped.

use std::fmt;

/// A JSON decode error, described without any input value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// What went wrong, e.g. `invalid type: string, expected i64` or `missing field `id``.
    pub kind: String,
    /// Where, e.g. `email_addresses[0].email_address` (empty: at the top, or unknown).
    pub path: String,
    /// 1-based position in the text; 0 when decoding from an already parsed value.
    pub line: usize,
    pub column: usize,
}

/// The longest field path kept (paths are made of the schema's field names and indexes, but a
/// map's keys come from the input).
const MAX_PATH: usize = 200;

impl JsonError {
    /// Describes a plain serde_json error (no path).
    pub fn new(e: &serde_json::Error) -> Self {
        Self {
            kind: kind(e),
            path: String::new(),
            line: e.line(),
            column: e.column(),
        }
    }

    /// Describes an error that carries the path to the failing field.
    pub fn with_path(e: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = e.path().to_string();
        let path = if path == "." {
            String::new()
        } else {
            path.chars().take(MAX_PATH).collect()
        };
        Self {
            path,
            ..Self::new(e.inner())
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.path.is_empty() {
            write!(f, " at `{}`", self.path)?;
        }
        if self.line > 0 {
            write!(f, " (line {} column {})", self.line, self.column)?;
        }
        Ok(())
    }
}

impl std::error::Error for JsonError {}

/// Decodes `T` from a JSON value, with the failing field's path in the error.
pub fn from_value<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, JsonError> {
    serde_path_to_error::deserialize(v).map_err(JsonError::with_path)
}

/// Decodes `T` from JSON text, with the failing field's path in the error.
pub fn from_slice<T: serde::de::DeserializeOwned>(text: &[u8]) -> Result<T, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let v = serde_path_to_error::deserialize(&mut de).map_err(JsonError::with_path)?;
    de.end().map_err(|e| JsonError::new(&e))?;
    Ok(v)
}

/// The names serde gives the kinds of value it found (`serde::de::Unexpected`'s Display),
/// before the quoted value.
const KINDS: &[&str] = &[
    "boolean",
    "integer",
    "floating point",
    "character",
    "string",
    "byte array",
    "null",
    "unit value",
    "Option value",
    "newtype struct",
    "sequence",
    "map",
    "enum",
    "unit variant",
    "newtype variant",
    "tuple variant",
    "struct variant",
];

/// serde_json's message without its position and without any value it quotes. Syntax errors
/// are fixed texts (`expected value`, `invalid escape`); data errors follow serde's templates,
/// of which only the known shapes are kept — anything else becomes a generic description.
fn kind(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let full = e.to_string();
    let msg = if e.line() > 0 {
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        full.strip_suffix(&suffix).unwrap_or(&full).to_owned()
    } else {
        full
    };
    match e.classify() {
        Category::Io | Category::Syntax | Category::Eof => msg,
        Category::Data => data_kind(&msg),
    }
}

fn data_kind(msg: &str) -> String {
    // The expected part comes last and from our schema; a quoted input value sits before it,
    // so split at the last `, expected `.
    let (found, expected) = match msg.rfind(", expected ") {
        Some(i) => (&msg[..i], Some(&msg[i + 2..])),
        None => (msg, None),
    };
    let tail = expected.map(|e| format!(", {e}")).unwrap_or_default();
    for template in ["invalid type: ", "invalid value: "] {
        if let Some(unexpected) = found.strip_prefix(template) {
            let what = unexpected
                .split(['`', '"', '\''])
                .next()
                .unwrap_or("")
                .trim();
            let what = KINDS
                .iter()
                .find(|k| **k == what)
                .copied()
                .unwrap_or("value");
            return format!("{template}{what}{tail}");
        }
    }
    for (prefix, name) in [
        ("unknown variant ", "unknown variant"),
        ("unknown field ", "unknown field"),
    ] {
        if found.starts_with(prefix) {
            return format!("{name}{tail}");
        }
    }
    // Field names in these come from our schema, lengths are counts.
    for prefix in ["missing field `", "duplicate field `", "invalid length "] {
        if found.starts_with(prefix) && !found.contains('"') {
            return format!("{found}{tail}");
        }
    }
    "a value does not have the expected form".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    struct Email {
        email_address: String,
        n: i64,
        tag: Option<Tag>,
    }

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Tag {
        Primary,
    }

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    struct User {
        id: String,
        emails: Vec<Email>,
    }

    const SECRET: &str = "alice.secret";

    #[test]
    fn values_never_appear_but_path_and_kind_do() {
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"{"id":"u","emails":[{"email_address":55512345,"n":1}]}"#,
                "invalid type: integer, expected a string at `emails[0].email_address`",
                "55512345",
            ),
            (
                r#"{"id":"u","emails":[{"email_address":"x","n":"alice.secret@example.com"}]}"#,
                "invalid type: string, expected i64 at `emails[0].n`",
                SECRET,
            ),
            (
                r#"{"id":"u","emails":[{"email_address":"x","n":1.25}]}"#,
                "invalid type: floating point, expected i64 at `emails[0].n`",
                "1.25",
            ),
            (
                r#"{"id":"u","emails":[{"email_address":"x","n":1,"tag":"alice.secret"}]}"#,
                "unknown variant, expected `primary` at `emails[0].tag`",
                SECRET,
            ),
            (
                r#"{"id":"u","emails":[{"email_address":"x","n":"1\", expected alice.secret"}]}"#,
                "invalid type: string, expected i64 at `emails[0].n`",
                SECRET,
            ),
            (
                r#"{"id":"u","emails":[{"n":1}]}"#,
                "missing field `email_address` at `emails[0]`",
                "zzz",
            ),
            (
                r#"{"id":"alice.secret","emails":[]} trailing"#,
                "trailing characters (line 1 column",
                SECRET,
            ),
        ];
        for (text, want, secret) in cases {
            let e = from_slice::<User>(text.as_bytes()).unwrap_err();
            let shown = e.to_string();
            assert!(shown.starts_with(want), "{text}: {shown}");
            assert!(!shown.contains(secret), "{text}: {shown}");
            assert!(!format!("{e:?}").contains(secret), "{text}: {e:?}");
        }
        let v: serde_json::Value =
            serde_json::from_str(r#"{"id":"u","emails":[{"email_address":7,"n":1}]}"#).unwrap();
        assert_eq!(
            from_value::<User>(v).unwrap_err().to_string(),
            "invalid type: integer, expected a string at `emails[0].email_address`"
        );
    }

    #[test]
    fn unknown_message_shapes_become_generic() {
        assert_eq!(
            data_kind("custom complaint about \"alice.secret\""),
            "a value does not have the expected form"
        );
        assert_eq!(
            data_kind("invalid value: something \"alice.secret\", expected a date"),
            "invalid value: value, expected a date"
        );
    }
}
