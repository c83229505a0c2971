//! `api simulate`: posts a correctly signed Clerk event (built from the bundled fixtures) to a
//! running api, for trying the service locally without Clerk, and says what it sent.
//!
//! `user.created` and `user.updated` carry the whole user, as Clerk sends them: the sample
//! user of `user.created.json` with the given id, every field without a flag at its default
//! (the email derived from the id), so `user.updated` changes only what its flags say.

use crate::verify::sign;
use anyhow::Context;
use serde_json::{json, Value};

/// The event types `simulate` can send.
pub const EVENT_TYPES: &[&str] = &[
    "user.created",
    "user.updated",
    "user.deleted",
    "session.created",
];

/// The fixtures' user.
pub const SAMPLE_USER_ID: &str = "user_2abcFakeAlice0000000000001";
const SAMPLE_EMAIL: &str = "alice@example.com";

fn fixture(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        // An update is the same whole user, changed only by the flags (the fixture of that
        // name changes the email and the role).
        "user.created" | "user.updated" => {
            include_str!("../../tests/fixtures/clerk/user.created.json")
        }
        "user.deleted" => include_str!("../../tests/fixtures/clerk/user.deleted.json"),
        "session.created" => include_str!("../../tests/fixtures/clerk/session.created.json"),
        _ => return None,
    })
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub event_type: String,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    /// `public_metadata.role`.
    pub role: Option<String>,
    pub url: String,
    pub secret: String,
}

/// An event ready to sign, and what it says about whom.
#[derive(Debug)]
pub struct Built {
    pub body: String,
    pub user_id: String,
    /// The primary email (user.created and user.updated).
    pub email: Option<String>,
    /// The session (session.created).
    pub session_id: Option<String>,
}

/// What was sent and what the api answered; displays as the lines `api simulate` prints.
#[derive(Debug)]
pub struct Sent {
    pub event_type: String,
    pub url: String,
    pub svix_id: String,
    pub built: Built,
    pub status: u16,
    pub answer: String,
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "sent {} to {}", self.event_type, self.url)?;
        writeln!(f, "  svix-id: {}", self.svix_id)?;
        writeln!(f, "  user id: {}", self.built.user_id)?;
        if let Some(email) = &self.built.email {
            writeln!(f, "  email:   {email}")?;
        }
        if let Some(session) = &self.built.session_id {
            writeln!(f, "  session: {session}")?;
        }
        write!(f, "answer: {} {}", self.status, self.answer)
    }
}

/// Flags that mean nothing for the event type are refused rather than ignored.
pub fn check_flags(sim: &Simulation) -> Result<(), String> {
    let whole_user = matches!(sim.event_type.as_str(), "user.created" | "user.updated");
    for (flag, given) in [
        ("--email", sim.email.is_some()),
        ("--first-name", sim.first_name.is_some()),
        ("--role", sim.role.is_some()),
    ] {
        if given && !whole_user {
            return Err(format!(
                "`{flag}` does not apply to {}: only --user-id and --url do",
                sim.event_type
            ));
        }
    }
    Ok(())
}

/// The email a user id gets when `--email` is not given.
pub fn default_email(user_id: &str) -> String {
    if user_id == SAMPLE_USER_ID {
        SAMPLE_EMAIL.to_owned()
    } else {
        format!("{}@example.com", user_id.to_lowercase())
    }
}

/// Builds the event body, stamped `now_ms`.
pub fn build_body(sim: &Simulation, now_ms: i64) -> anyhow::Result<Built> {
    let Some(raw) = fixture(&sim.event_type) else {
        anyhow::bail!(
            "unknown event type `{}`; one of: {}",
            sim.event_type,
            EVENT_TYPES.join(", ")
        );
    };
    let mut v: Value = serde_json::from_str(raw)?;
    v["type"] = json!(sim.event_type);
    v["timestamp"] = json!(now_ms);
    let user_id = sim.user_id.clone().unwrap_or_else(|| SAMPLE_USER_ID.into());
    let data = &mut v["data"];
    let mut built = Built {
        body: String::new(),
        user_id: user_id.clone(),
        email: None,
        session_id: None,
    };
    match sim.event_type.as_str() {
        "session.created" => {
            let session = format!("sess_sim{}", ulid::Ulid::generate());
            data["id"] = json!(session);
            data["user_id"] = json!(user_id);
            data["user"]["id"] = json!(user_id);
            built.session_id = Some(session);
        }
        "user.deleted" => data["id"] = json!(user_id),
        _ => {
            data["id"] = json!(user_id);
            data["updated_at"] = json!(now_ms);
            let email = sim.email.clone().unwrap_or_else(|| default_email(&user_id));
            let primary = data["primary_email_address_id"].clone();
            if let Some(list) = data["email_addresses"].as_array_mut() {
                for e in list.iter_mut().filter(|e| e["id"] == primary) {
                    e["email_address"] = json!(email);
                }
            }
            if let Some(name) = &sim.first_name {
                data["first_name"] = json!(name);
            }
            if let Some(role) = &sim.role {
                data["public_metadata"]["role"] = json!(role);
            }
            built.email = Some(email);
        }
    }
    built.body = serde_json::to_string(&v)?;
    Ok(built)
}

/// Signs and posts; returns what was sent and the api's answer.
pub async fn send(sim: &Simulation) -> anyhow::Result<Sent> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let built = build_body(sim, now.as_millis() as i64)?;
    let svix_id = format!("msg_sim{}", ulid::Ulid::generate());
    let ts = now.as_secs() as i64;
    let secret = sim
        .secret
        .split_whitespace()
        .next()
        .context("CLERK_WEBHOOK_SECRET is empty")?;
    let signature = sign(secret, &svix_id, ts, built.body.as_bytes())
        .context("CLERK_WEBHOOK_SECRET is not a valid whsec_ secret")?;
    let resp = reqwest::Client::new()
        .post(&sim.url)
        .header("content-type", "application/json")
        .header("svix-id", &svix_id)
        .header("svix-timestamp", ts.to_string())
        .header("svix-signature", signature)
        .body(built.body.clone())
        .send()
        .await
        .with_context(|| format!("could not reach {} (is the api running?)", sim.url))?;
    Ok(Sent {
        event_type: sim.event_type.clone(),
        url: sim.url.clone(),
        svix_id,
        built,
        status: resp.status().as_u16(),
        answer: resp.text().await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobs::clerk::{ClerkEvent, EventKind};

    fn sim(event_type: &str) -> Simulation {
        Simulation {
            event_type: event_type.into(),
            user_id: Some("user_sim1".into()),
            email: None,
            first_name: None,
            role: None,
            url: String::new(),
            secret: String::new(),
        }
    }

    fn user_of(body: &str) -> jobs::clerk::UserSnapshot {
        match ClerkEvent::parse(body.as_bytes()).unwrap().kind {
            EventKind::UserCreated(u) | EventKind::UserUpdated(u) => u,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn body_carries_the_requested_user() {
        let mut s = sim("user.created");
        s.email = Some("sim@example.com".into());
        let built = build_body(&s, 42).unwrap();
        let u = user_of(&built.body);
        assert_eq!(u.clerk_user_id.as_str(), "user_sim1");
        assert_eq!(u.email.unwrap().as_str(), "sim@example.com");
        assert_eq!(u.updated_at, 42);
        assert_eq!(built.email.as_deref(), Some("sim@example.com"));
    }

    #[test]
    fn an_update_without_flags_is_the_created_user_again() {
        let created = user_of(&build_body(&sim("user.created"), 1).unwrap().body);
        let built = build_body(&sim("user.updated"), 2).unwrap();
        let updated = user_of(&built.body);
        assert_eq!(updated.email, created.email);
        assert_eq!(updated.role, created.role);
        assert_eq!(updated.first_name, created.first_name);
        assert_eq!(built.email.as_deref(), Some("user_sim1@example.com"));
        assert!(built.body.contains(r#""type":"user.updated""#));
    }

    #[test]
    fn an_update_changes_what_its_flags_say() {
        let mut s = sim("user.updated");
        s.first_name = Some("Ada".into());
        s.role = Some("admin".into());
        let u = user_of(&build_body(&s, 2).unwrap().body);
        assert_eq!(u.first_name.as_deref(), Some("Ada"));
        assert_eq!(u.role, jobs::clerk::Role::Admin);
        assert_eq!(u.email.unwrap().as_str(), "user_sim1@example.com");
    }

    #[test]
    fn flags_that_do_not_apply_are_refused() {
        let mut s = sim("user.deleted");
        s.email = Some("x@example.com".into());
        assert!(check_flags(&s).unwrap_err().contains("--email"));
        assert!(check_flags(&sim("user.deleted")).is_ok());
    }

    #[test]
    fn a_session_belongs_to_the_requested_user() {
        let built = build_body(&sim("session.created"), 1).unwrap();
        let v: Value = serde_json::from_str(&built.body).unwrap();
        assert_eq!(v["data"]["user_id"], "user_sim1");
        assert_eq!(v["data"]["user"]["id"], "user_sim1");
        assert!(v["data"]["id"].as_str().unwrap().starts_with("sess_sim"));
    }

    #[test]
    fn unknown_types_are_refused_with_the_list() {
        let err = build_body(&sim("user.exploded"), 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("user.created, user.updated"), "{err}");
    }
}
