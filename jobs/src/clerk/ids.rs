//! Newtypes for the identifiers that cross our edges. Each is parsed once, where it enters,
//! so the rest of the code never handles an unchecked string.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error("{what} must start with `{prefix}`")]
    BadPrefix {
        what: &'static str,
        prefix: &'static str,
    },
    #[error("{what} contains characters outside [A-Za-z0-9_-]")]
    BadChars { what: &'static str },
    #[error("email address must have one `@` with text on both sides")]
    BadEmail,
}

fn check_token(value: &str, what: &'static str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { what });
    }
    if value.len() > max {
        return Err(IdError::TooLong { what, max });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(IdError::BadChars { what });
    }
    Ok(())
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The identifier as Clerk or Svix spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(&value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

/// A Clerk user id (`user_…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClerkUserId(String);
string_newtype!(ClerkUserId);

impl ClerkUserId {
    /// Accepts `user_` followed by Clerk's id alphabet.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check_token(value, "Clerk user id", 128)?;
        if !value.starts_with("user_") || value.len() == "user_".len() {
            return Err(IdError::BadPrefix {
                what: "Clerk user id",
                prefix: "user_",
            });
        }
        Ok(Self(value.to_owned()))
    }
}

macro_rules! prefixed_id {
    ($name:ident, $what:literal, $prefix:literal) => {
        #[doc = concat!("A Clerk ", $what, " id (`", $prefix, "…`).")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);
        string_newtype!($name);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, IdError> {
                check_token(value, concat!("Clerk ", $what, " id"), 128)?;
                if !value.starts_with($prefix) || value.len() == $prefix.len() {
                    return Err(IdError::BadPrefix {
                        what: concat!("Clerk ", $what, " id"),
                        prefix: $prefix,
                    });
                }
                Ok(Self(value.to_owned()))
            }
        }
    };
}

prefixed_id!(ClerkOrgId, "organization", "org_");
prefixed_id!(ClerkMembershipId, "membership", "orgmem_");
prefixed_id!(ClerkSessionId, "session", "sess_");

/// A Svix message id (the `svix-id` header): the idempotency key of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SvixId(String);
string_newtype!(SvixId);

impl SvixId {
    /// Svix ids are `msg_…`; we accept any short token so that other senders' ids also work.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check_token(value, "svix-id", 256)?;
        Ok(Self(value.to_owned()))
    }
}

/// An email address, trimmed and lower-cased: the form stored in `users.email`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);
string_newtype!(EmailAddress);

impl EmailAddress {
    /// A deliberately loose check: Clerk has verified the address; we only refuse what could
    /// never be one, and normalise case so uniqueness is case-insensitive.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let v = value.trim().to_lowercase();
        if v.is_empty() {
            return Err(IdError::Empty {
                what: "email address",
            });
        }
        if v.len() > 320 {
            return Err(IdError::TooLong {
                what: "email address",
                max: 320,
            });
        }
        match v.split_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !v.chars().any(char::is_whitespace) =>
            {
                Ok(Self(v))
            }
            _ => Err(IdError::BadEmail),
        }
    }

    /// The address with most of the local part hidden, for logs.
    pub fn redacted(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or((&self.0, ""));
        let first: String = local.chars().take(1).collect();
        format!("{first}***@{domain}")
    }
}

/// Emails are personal data: Debug never prints them whole.
impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clerk_user_ids_are_checked() {
        let cases: &[(&str, Result<(), IdError>)] = &[
            ("user_2abcFake", Ok(())),
            (
                "",
                Err(IdError::Empty {
                    what: "Clerk user id",
                }),
            ),
            (
                "org_2abc",
                Err(IdError::BadPrefix {
                    what: "Clerk user id",
                    prefix: "user_",
                }),
            ),
            (
                "user_",
                Err(IdError::BadPrefix {
                    what: "Clerk user id",
                    prefix: "user_",
                }),
            ),
            (
                "user_a b",
                Err(IdError::BadChars {
                    what: "Clerk user id",
                }),
            ),
            (
                "user_'; drop",
                Err(IdError::BadChars {
                    what: "Clerk user id",
                }),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                ClerkUserId::parse(input).map(|_| ()),
                *want,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            EmailAddress::parse("  Alice@Example.COM ")
                .unwrap()
                .as_str(),
            "alice@example.com"
        );
        for bad in ["", "alice", "@example.com", "alice@", "a@b@c", "a b@c.d"] {
            assert!(EmailAddress::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn debug_output_hides_the_address() {
        let e = EmailAddress::parse("alice@example.com").unwrap();
        assert_eq!(format!("{e:?}"), "EmailAddress(a***@example.com)");
    }

    #[test]
    fn svix_ids_refuse_separators() {
        assert!(SvixId::parse("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk").is_ok());
        assert!(SvixId::parse("msg.1").is_err());
        assert!(SvixId::parse(&"m".repeat(257)).is_err());
    }
}
