//! `api simulate`: posts a correctly signed Clerk event (built from the bundled fixtures) to a
//! running api, for trying the service locally without Clerk.

use crate::verify::sign;
use anyhow::{bail, Context};
use serde_json::{json, Value};

/// The event types `simulate` can send.
pub const EVENT_TYPES: &[&str] = &[
    "user.created",
    "user.updated",
    "user.deleted",
    "session.created",
];

fn fixture(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "user.created" => include_str!("../../tests/fixtures/clerk/user.created.json"),
        "user.updated" => include_str!("../../tests/fixtures/clerk/user.updated.json"),
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
    pub url: String,
    pub secret: String,
}

/// Builds the event body: the fixture with the given user id and email, stamped now.
pub fn build_body(sim: &Simulation, now_ms: i64) -> anyhow::Result<String> {
    let Some(raw) = fixture(&sim.event_type) else {
        bail!(
            "unknown event type `{}`; one of: {}",
            sim.event_type,
            EVENT_TYPES.join(", ")
        );
    };
    let mut v: Value = serde_json::from_str(raw)?;
    v["timestamp"] = json!(now_ms);
    let data = &mut v["data"];
    if let Some(id) = &sim.user_id {
        data["id"] = json!(id);
    }
    if sim.event_type.starts_with("user.") && sim.event_type != "user.deleted" {
        data["updated_at"] = json!(now_ms);
        if let Some(email) = &sim.email {
            let primary = data["primary_email_address_id"].clone();
            if let Some(list) = data["email_addresses"].as_array_mut() {
                for e in list.iter_mut().filter(|e| e["id"] == primary) {
                    e["email_address"] = json!(email);
                }
            }
        }
    }
    Ok(serde_json::to_string(&v)?)
}

/// Signs and posts; returns the status and body the api answered.
pub async fn send(sim: &Simulation) -> anyhow::Result<(u16, String)> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let body = build_body(sim, now.as_millis() as i64)?;
    let svix_id = format!("msg_sim{}", ulid::Ulid::generate());
    let ts = now.as_secs() as i64;
    let secret = sim
        .secret
        .split_whitespace()
        .next()
        .context("CLERK_WEBHOOK_SECRET is empty")?;
    let signature = sign(secret, &svix_id, ts, body.as_bytes())
        .context("CLERK_WEBHOOK_SECRET is not a valid whsec_ secret")?;
    let resp = reqwest::Client::new()
        .post(&sim.url)
        .header("content-type", "application/json")
        .header("svix-id", &svix_id)
        .header("svix-timestamp", ts.to_string())
        .header("svix-signature", signature)
        .body(body)
        .send()
        .await
        .with_context(|| format!("could not reach {}", sim.url))?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(event_type: &str) -> Simulation {
        Simulation {
            event_type: event_type.into(),
            user_id: Some("user_sim1".into()),
            email: Some("sim@example.com".into()),
            url: String::new(),
            secret: String::new(),
        }
    }

    #[test]
    fn body_carries_the_requested_user() {
        let body = build_body(&sim("user.created"), 42).unwrap();
        let ev = jobs::clerk::ClerkEvent::parse(body.as_bytes()).unwrap();
        let jobs::clerk::EventKind::UserCreated(u) = ev.kind else {
            panic!()
        };
        assert_eq!(u.clerk_user_id.as_str(), "user_sim1");
        assert_eq!(u.email.unwrap().as_str(), "sim@example.com");
        assert_eq!(u.updated_at, 42);
    }

    #[test]
    fn unknown_types_are_refused_with_the_list() {
        let err = build_body(&sim("user.exploded"), 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("user.created, user.updated"), "{err}");
    }
}
