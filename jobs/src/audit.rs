//! The audit trail: one `audit_log` row per change we make, with who caused it. The
//! statements are in [`crate::store::audit`].

use crate::clerk::ids::{ClerkUserId, SvixId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What caused a change, with the request facts Clerk reported for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The webhook delivery the change came from; `None` for system work.
    pub svix_id: Option<SvixId>,
    /// The signed-in user who asked for it (dashboard fallback).
    #[serde(default)]
    pub user: Option<ClerkUserId>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Origin {
    /// An origin for work nobody asked for from outside (reconciliation, retention, tests).
    pub fn system() -> Self {
        Self::default()
    }

    /// The job metadata naming this origin's webhook delivery (`svix_id`), which the webhook
    /// event's bookkeeping reads when the job finishes and the job's logs show.
    pub fn metadata(&self) -> crate::queue::Metadata {
        let meta = crate::queue::Metadata::default();
        match &self.svix_id {
            Some(svix) => meta.with("svix_id", svix.as_str()),
            None => meta,
        }
    }

    /// The `audit_log.actor` form: `webhook:<svix-id>`, `user:<clerk-id>` or `system`.
    pub fn actor(&self) -> Actor<'_> {
        Actor(self)
    }
}

/// Display helper for [`Origin::actor`].
pub struct Actor<'a>(&'a Origin);

impl fmt::Display for Actor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.0.svix_id, &self.0.user) {
            (Some(id), _) => write!(f, "webhook:{id}"),
            (None, Some(user)) => write!(f, "user:{user}"),
            (None, None) => f.write_str("system"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_names_the_cause() {
        let mut o = Origin::system();
        assert_eq!(o.actor().to_string(), "system");
        o.user = Some(ClerkUserId::parse("user_1").unwrap());
        assert_eq!(o.actor().to_string(), "user:user_1");
        o.svix_id = Some(SvixId::parse("msg_1").unwrap());
        assert_eq!(o.actor().to_string(), "webhook:msg_1");
    }
}
