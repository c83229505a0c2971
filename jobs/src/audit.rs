//! The audit trail: one `audit_log` row per change we make, with who caused it.

use crate::clerk::ids::{ClerkUserId, SvixId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use std::fmt;
use std::sync::LazyLock;

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

/// Appends one entry. Runs on the caller's connection so it commits with the change it describes.
pub async fn record(
    conn: &mut PgConnection,
    origin: &Origin,
    action: &str,
    subject: &str,
    details: Value,
) -> Result<(), sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| insert_sql(1));
    bind(
        crate::db::query(SQL.as_str()),
        origin,
        action,
        subject,
        details,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The insert of one entry reading parameters `$first` to `$first + 5`, bound by [`bind`]: for
/// a statement that makes a change and records it in one round trip (the change as a
/// data-modifying `WITH` before it).
pub(crate) fn insert_sql(first: usize) -> String {
    let p: Vec<String> = (first..first + 6).map(|n| format!("${n}")).collect();
    format!(
        "INSERT INTO audit_log (actor, action, subject, details, client_ip, user_agent) \
         VALUES ({})",
        p.join(", ")
    )
}

/// Binds the six parameters of [`insert_sql`], after whatever `query` has bound already.
pub(crate) fn bind<'q>(
    query: Query<'q, Postgres, PgArguments>,
    origin: &'q Origin,
    action: &'q str,
    subject: &'q str,
    details: Value,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(origin.actor().to_string())
        .bind(action)
        .bind(subject)
        .bind(details)
        .bind(&origin.client_ip)
        .bind(&origin.user_agent)
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
