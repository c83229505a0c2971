//! Clerk's webhook envelope and the parts of its objects we use, parsed into types at the edge.
//!
//! Unknown fields are ignored; unknown event types become [`EventKind::Unhandled`], never an
//! error, because Clerk adds event types without notice. Over 400 lines: the envelope, the
//! user, organization and membership objects and their tests belong together, as one wire format.

pub mod api;
pub mod ids;

use crate::clerk::ids::{
    ClerkMembershipId, ClerkOrgId, ClerkSessionId, ClerkUserId, EmailAddress, IdError,
};
use crate::json_error::{self, JsonError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a verified body could not become a [`ClerkEvent`]. The messages name the field and the
/// kind of mismatch but never quote the body's values ([`JsonError`]): they are logged and
/// stored as the event's `last_error`, and the values are personal data.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not a JSON Clerk event envelope: {0}")]
    Envelope(JsonError),
    #[error("`{event_type}` data does not match Clerk's schema: {source}")]
    Data {
        event_type: String,
        source: JsonError,
    },
    #[error("`{event_type}` carries an invalid id: {source}")]
    Id { event_type: String, source: IdError },
    #[error(
        "body contains the escape \\u0000 (NUL), which PostgreSQL text and jsonb cannot store"
    )]
    Nul,
}

/// Whether a JSON text contains a `\u0000` escape (a NUL in some string), rather than an
/// escaped backslash followed by `u0000`.
pub fn has_nul_escape(body: &[u8]) -> bool {
    const ESCAPE: &[u8] = b"\\u0000";
    body.windows(ESCAPE.len()).enumerate().any(|(i, w)| {
        w == ESCAPE && body[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
    })
}

/// Where an event came from, as Clerk reports it (`event_attributes.http_request`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestAttributes {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A verified, parsed Clerk event.
#[derive(Debug, Clone)]
pub struct ClerkEvent {
    /// Clerk's `type`, exactly as sent.
    pub event_type: String,
    /// Clerk's envelope `timestamp` (Unix ms).
    pub timestamp_ms: i64,
    pub attributes: RequestAttributes,
    pub kind: EventKind,
}

/// The events we act on; everything else is [`EventKind::Unhandled`].
#[derive(Debug, Clone)]
pub enum EventKind {
    UserCreated(UserSnapshot),
    UserUpdated(UserSnapshot),
    UserDeleted {
        clerk_user_id: ClerkUserId,
    },
    OrganizationUpserted(OrgSnapshot),
    OrganizationDeleted {
        clerk_org_id: ClerkOrgId,
    },
    MembershipUpserted(MembershipSnapshot),
    /// Clerk sends the full membership object on delete.
    MembershipDeleted(MembershipSnapshot),
    /// `session.created`, `.ended`, `.removed` or `.revoked`: the activity log's entries.
    Session(SessionActivity),
    Unhandled,
}

/// What happened to a session, as the four `session.*` events we record say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionChange {
    #[serde(rename = "session.created")]
    Created,
    #[serde(rename = "session.ended")]
    Ended,
    #[serde(rename = "session.removed")]
    Removed,
    #[serde(rename = "session.revoked")]
    Revoked,
}

impl SessionChange {
    /// Clerk's event type, which is also the `user_activity.kind` stored.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionChange::Created => "session.created",
            SessionChange::Ended => "session.ended",
            SessionChange::Removed => "session.removed",
            SessionChange::Revoked => "session.revoked",
        }
    }

    fn from_event_type(event_type: &str) -> Option<Self> {
        Some(match event_type {
            "session.created" => SessionChange::Created,
            "session.ended" => SessionChange::Ended,
            "session.removed" => SessionChange::Removed,
            "session.revoked" => SessionChange::Revoked,
            _ => return None,
        })
    }
}

/// One session event: whose session, which one, and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionActivity {
    pub clerk_user_id: ClerkUserId,
    pub session_id: ClerkSessionId,
    pub change: SessionChange,
}

/// An organization as one Clerk snapshot describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgSnapshot {
    pub clerk_org_id: ClerkOrgId,
    pub name: Option<String>,
    pub slug: Option<String>,
    pub image_url: Option<String>,
    pub created_by: Option<String>,
    #[serde(default)]
    pub public_metadata: Value,
    pub updated_at: i64,
}

/// A membership as one Clerk snapshot describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipSnapshot {
    pub clerk_membership_id: ClerkMembershipId,
    pub clerk_org_id: ClerkOrgId,
    pub clerk_user_id: ClerkUserId,
    /// As Clerk sends it: `org:admin`, `org:member` or a custom role.
    pub role: String,
    pub updated_at: i64,
}

#[derive(Deserialize)]
struct ClerkOrg {
    id: String,
    name: Option<String>,
    slug: Option<String>,
    image_url: Option<String>,
    created_by: Option<String>,
    #[serde(default)]
    public_metadata: Value,
    updated_at: i64,
}

#[derive(Deserialize)]
struct ClerkMembership {
    id: String,
    organization: IdOnly,
    public_user_data: UserIdOnly,
    role: String,
    updated_at: i64,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct UserIdOnly {
    user_id: String,
}

impl ClerkMembership {
    fn into_snapshot(self) -> Result<MembershipSnapshot, IdError> {
        Ok(MembershipSnapshot {
            clerk_membership_id: ClerkMembershipId::parse(&self.id)?,
            clerk_org_id: ClerkOrgId::parse(&self.organization.id)?,
            clerk_user_id: ClerkUserId::parse(&self.public_user_data.user_id)?,
            role: self.role,
            updated_at: self.updated_at,
        })
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    event_type: String,
    data: Value,
    timestamp: i64,
    #[serde(default)]
    event_attributes: Option<EventAttributes>,
}

#[derive(Deserialize)]
struct EventAttributes {
    #[serde(default)]
    http_request: Option<RequestAttributes>,
}

impl ClerkEvent {
    /// Parses the raw body of a verified delivery.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        if has_nul_escape(body) {
            return Err(ParseError::Nul);
        }
        let env: Envelope = json_error::from_slice(body).map_err(ParseError::Envelope)?;
        let data_err = |source| ParseError::Data {
            event_type: env.event_type.clone(),
            source,
        };
        let id_err = |source| ParseError::Id {
            event_type: env.event_type.clone(),
            source,
        };
        let kind = match env.event_type.as_str() {
            "user.created" | "user.updated" => {
                let user: ClerkUser = json_error::from_value(env.data).map_err(data_err)?;
                let snapshot = user.into_snapshot().map_err(|source| ParseError::Id {
                    event_type: env.event_type.clone(),
                    source,
                })?;
                if env.event_type == "user.created" {
                    EventKind::UserCreated(snapshot)
                } else {
                    EventKind::UserUpdated(snapshot)
                }
            }
            "user.deleted" => {
                let d: DeletedObject = json_error::from_value(env.data).map_err(data_err)?;
                let clerk_user_id = ClerkUserId::parse(&d.id).map_err(|source| ParseError::Id {
                    event_type: env.event_type.clone(),
                    source,
                })?;
                EventKind::UserDeleted { clerk_user_id }
            }
            "organization.created" | "organization.updated" => {
                let o: ClerkOrg = json_error::from_value(env.data).map_err(data_err)?;
                EventKind::OrganizationUpserted(OrgSnapshot {
                    clerk_org_id: ClerkOrgId::parse(&o.id).map_err(id_err)?,
                    name: o.name,
                    slug: o.slug,
                    image_url: o.image_url,
                    created_by: o.created_by,
                    public_metadata: o.public_metadata,
                    updated_at: o.updated_at,
                })
            }
            "organization.deleted" => {
                let d: DeletedObject = json_error::from_value(env.data).map_err(data_err)?;
                EventKind::OrganizationDeleted {
                    clerk_org_id: ClerkOrgId::parse(&d.id).map_err(id_err)?,
                }
            }
            "organizationMembership.created"
            | "organizationMembership.updated"
            | "organizationMembership.deleted" => {
                let m: ClerkMembership = json_error::from_value(env.data).map_err(data_err)?;
                let snap = m.into_snapshot().map_err(id_err)?;
                if env.event_type == "organizationMembership.deleted" {
                    EventKind::MembershipDeleted(snap)
                } else {
                    EventKind::MembershipUpserted(snap)
                }
            }
            other => match SessionChange::from_event_type(other) {
                Some(change) => {
                    let s: ClerkSession = json_error::from_value(env.data).map_err(data_err)?;
                    EventKind::Session(SessionActivity {
                        clerk_user_id: ClerkUserId::parse(&s.user_id).map_err(id_err)?,
                        session_id: ClerkSessionId::parse(&s.id).map_err(id_err)?,
                        change,
                    })
                }
                None => EventKind::Unhandled,
            },
        };
        Ok(Self {
            event_type: env.event_type,
            timestamp_ms: env.timestamp,
            attributes: env
                .event_attributes
                .and_then(|a| a.http_request)
                .unwrap_or_default(),
            kind,
        })
    }
}

#[derive(Deserialize)]
struct DeletedObject {
    id: String,
}

/// Clerk's Session object, reduced to whose and which.
#[derive(Deserialize)]
struct ClerkSession {
    id: String,
    user_id: String,
}

/// Clerk's User object (Backend API and webhook `data`), reduced to what we store.
#[derive(Debug, Clone, Deserialize)]
pub struct ClerkUser {
    pub id: String,
    #[serde(default)]
    pub email_addresses: Vec<ClerkEmail>,
    pub primary_email_address_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub image_url: Option<String>,
    #[serde(default)]
    pub public_metadata: Value,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClerkEmail {
    pub id: String,
    pub email_address: String,
    pub verification: Option<Verification>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Verification {
    pub status: Option<String>,
}

/// Our role vocabulary (`users.role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    /// `public_metadata.role`: `admin` makes an admin; anything else, or nothing, a user.
    pub fn from_metadata(metadata: &Value) -> Self {
        match metadata.get("role").and_then(Value::as_str) {
            Some("admin") => Role::Admin,
            _ => Role::User,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

/// The normalised user state one Clerk snapshot describes: what a ProvisionUser job carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSnapshot {
    pub clerk_user_id: ClerkUserId,
    /// The primary address, found through `primary_email_address_id`; `None` for phone-only users.
    pub email: Option<EmailAddress>,
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub image_url: Option<String>,
    pub role: Role,
    /// Clerk's `updated_at` (Unix ms): the version of this snapshot.
    pub updated_at: i64,
    /// What `public_metadata` said of our write-back (`dbId`, `role`), to tell whether
    /// Clerk already has it: our own write's echo must not cause another write.
    #[serde(default)]
    pub metadata_db_id: Option<String>,
    #[serde(default)]
    pub metadata_role: Option<String>,
}

impl ClerkUser {
    /// Normalises the object; the primary address is the one `primary_email_address_id` names
    /// (an address that is not parseable is treated as absent rather than failing the user).
    pub fn into_snapshot(self) -> Result<UserSnapshot, IdError> {
        let clerk_user_id = ClerkUserId::parse(&self.id)?;
        let primary = self
            .primary_email_address_id
            .as_deref()
            .and_then(|pid| self.email_addresses.iter().find(|e| e.id == pid));
        let email = primary.and_then(|e| EmailAddress::parse(&e.email_address).ok());
        let email_verified = email.is_some()
            && primary
                .and_then(|e| e.verification.as_ref())
                .and_then(|v| v.status.as_deref())
                == Some("verified");
        Ok(UserSnapshot {
            clerk_user_id,
            email,
            email_verified,
            first_name: self.first_name,
            last_name: self.last_name,
            username: self.username,
            image_url: self.image_url,
            role: Role::from_metadata(&self.public_metadata),
            updated_at: self.updated_at,
            metadata_db_id: self
                .public_metadata
                .get("dbId")
                .and_then(Value::as_str)
                .map(str::to_owned),
            metadata_role: self
                .public_metadata
                .get("role")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn nul_escapes_are_told_from_escaped_backslashes() {
        let cases: &[(&str, &[u8], bool)] = &[
            ("none", br#"{"a":"b"}"#, false),
            ("NUL escape", br#"{"a":"x\u0000y"}"#, true),
            (
                "escaped backslash, then u0000",
                br#"{"a":"x\\u0000y"}"#,
                false,
            ),
            (
                "escaped backslash, then a NUL escape",
                br#"{"a":"x\\\u0000"}"#,
                true,
            ),
            ("another escape", br#"{"a":"\u0001"}"#, false),
            ("at the very start", br#"\u0000"#, true),
        ];
        for (name, body, want) in cases {
            assert_eq!(has_nul_escape(body), *want, "{name}");
        }
        assert!(matches!(
            ClerkEvent::parse(br#"{"type":"x","data":{"n":"\u0000"},"timestamp":1}"#),
            Err(ParseError::Nul)
        ));
    }

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../tests/fixtures/clerk/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    #[test]
    fn user_created_finds_the_primary_email() {
        let ev = ClerkEvent::parse(&fixture("user.created")).unwrap();
        let EventKind::UserCreated(u) = ev.kind else {
            panic!("wrong kind")
        };
        assert_eq!(u.clerk_user_id.as_str(), "user_2abcFakeAlice0000000000001");
        assert_eq!(u.email.unwrap().as_str(), "alice@example.com");
        assert!(u.email_verified);
        assert_eq!(u.role, Role::User);
        assert_eq!(u.updated_at, 1767955200015);
        assert_eq!(ev.attributes.client_ip.as_deref(), Some("203.0.113.7"));
    }

    #[test]
    fn user_updated_follows_the_new_primary_and_role() {
        let ev = ClerkEvent::parse(&fixture("user.updated")).unwrap();
        let EventKind::UserUpdated(u) = ev.kind else {
            panic!("wrong kind")
        };
        assert_eq!(u.email.unwrap().as_str(), "alice.new@example.com");
        assert_eq!(u.role, Role::Admin);
    }

    #[test]
    fn phone_only_user_has_no_email() {
        let ev = ClerkEvent::parse(&fixture("user.created.no-email")).unwrap();
        let EventKind::UserCreated(u) = ev.kind else {
            panic!("wrong kind")
        };
        assert_eq!(u.email, None);
        assert!(!u.email_verified);
    }

    #[test]
    fn oauth_user_parses() {
        let ev = ClerkEvent::parse(&fixture("user.created.oauth-google")).unwrap();
        assert!(matches!(ev.kind, EventKind::UserCreated(ref u) if u.email.is_some()));
    }

    #[test]
    fn user_deleted_is_a_stub() {
        let ev = ClerkEvent::parse(&fixture("user.deleted")).unwrap();
        assert!(
            matches!(ev.kind, EventKind::UserDeleted { ref clerk_user_id } if clerk_user_id.as_str() == "user_2abcFakeAlice0000000000001")
        );
        assert_eq!(ev.timestamp_ms, 1768819200000);
    }

    #[test]
    fn session_events_name_the_user_the_session_and_the_change() {
        for (name, change) in [
            ("session.created", SessionChange::Created),
            ("session.ended", SessionChange::Ended),
            ("session.removed", SessionChange::Removed),
            ("session.revoked", SessionChange::Revoked),
        ] {
            let ev = ClerkEvent::parse(&fixture(name)).unwrap();
            let EventKind::Session(s) = &ev.kind else {
                panic!("{name}: {:?}", ev.kind)
            };
            assert_eq!(s.clerk_user_id.as_str(), "user_2abcFakeAlice0000000000001");
            assert_eq!(s.session_id.as_str(), "sess_2abcFakeSession00000000001");
            assert_eq!((s.change, s.change.as_str()), (change, name));
        }
    }

    #[test]
    fn session_events_with_bad_ids_are_errors_naming_the_field() {
        for (body, wanted) in [
            (
                r#"{"type":"session.ended","timestamp":1,"data":{"id":"sess_1"}}"#,
                "user_id",
            ),
            (
                r#"{"type":"session.ended","timestamp":1,"data":{"id":"sess_1","user_id":"org_1"}}"#,
                "user_",
            ),
            (
                r#"{"type":"session.revoked","timestamp":1,"data":{"id":"x","user_id":"user_1"}}"#,
                "sess_",
            ),
        ] {
            let err = ClerkEvent::parse(body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(wanted), "{body}: {err}");
        }
    }

    #[test]
    fn other_types_are_unhandled_not_errors() {
        let ev = ClerkEvent::parse(&fixture("email.created")).unwrap();
        assert!(matches!(ev.kind, EventKind::Unhandled));
        let ev = ClerkEvent::parse(br#"{"type":"brand.new","data":{},"timestamp":1}"#).unwrap();
        assert!(matches!(ev.kind, EventKind::Unhandled));
    }

    #[test]
    fn organization_and_membership_events_parse() {
        let ev = ClerkEvent::parse(&fixture("organization.updated")).unwrap();
        let EventKind::OrganizationUpserted(o) = ev.kind else {
            panic!()
        };
        assert_eq!(o.clerk_org_id.as_str(), "org_2abcFakeAcmeOrg000000000001");
        assert_eq!(o.name.as_deref(), Some("Acme Example Holdings"));
        assert_eq!(o.public_metadata["plan"], "team");
        let ev = ClerkEvent::parse(&fixture("organization.deleted")).unwrap();
        assert!(matches!(ev.kind, EventKind::OrganizationDeleted { .. }));
        let ev = ClerkEvent::parse(&fixture("organizationMembership.created")).unwrap();
        let EventKind::MembershipUpserted(m) = ev.kind else {
            panic!()
        };
        assert_eq!(m.clerk_user_id.as_str(), "user_2abcFakeBobPhone00000000001");
        assert_eq!(m.role, "org:member");
        let ev = ClerkEvent::parse(&fixture("organizationMembership.deleted")).unwrap();
        let EventKind::MembershipDeleted(m) = ev.kind else {
            panic!()
        };
        assert_eq!(m.updated_at, 1768646400000);
    }

    #[test]
    fn parse_errors_name_the_field_but_not_its_value() {
        let cases: &[(&[u8], &str, &str)] = &[
            (
                br#"{"type":"user.created","timestamp":1,"data":{"id":"user_1","updated_at":1,"email_addresses":[{"id":"idn_1","email_address":4155550123}]}}"#,
                "invalid type: integer, expected a string at `email_addresses[0].email_address`",
                "4155550123",
            ),
            (
                br#"{"type":"user.created","timestamp":1,"data":{"id":"user_1","updated_at":"alice.secret@example.com"}}"#,
                "invalid type: string, expected i64 at `updated_at`",
                "alice",
            ),
            (
                br#"{"type":"user.created","timestamp":"alice.secret@example.com","data":{}}"#,
                "invalid type: string, expected i64 at `timestamp` (line 1 column",
                "alice",
            ),
        ];
        for (body, want, value) in cases {
            let err = ClerkEvent::parse(body).unwrap_err();
            let shown = err.to_string();
            assert!(shown.contains(want), "{shown}");
            assert!(!shown.contains(value), "{shown}");
            assert!(!format!("{err:?}").contains(value), "{err:?}");
        }
    }

    #[test]
    fn malformed_bodies_are_refused_with_a_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "not a JSON Clerk event envelope"),
            (b"[]", "not a JSON Clerk event envelope"),
            (br#"{"type":"user.created","data":{}}"#, "envelope"),
            (
                br#"{"type":"user.created","data":{"id":"user_1"},"timestamp":1}"#,
                "does not match Clerk's schema",
            ),
            (
                br#"{"type":"user.created","data":{"id":"nope","updated_at":1},"timestamp":1}"#,
                "invalid id",
            ),
            (
                br#"{"type":"user.deleted","data":{"deleted":true},"timestamp":1}"#,
                "does not match Clerk's schema",
            ),
        ];
        for (body, want) in cases {
            let err = ClerkEvent::parse(body).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
