//! The `users` table: the one place that writes it, following DESIGN.md rule 3.
//!
//! Every write runs in the caller's transaction, under the user's advisory lock (and its
//! address's, see [`crate::locks`]) so that a webhook job and a dashboard-fallback job for the
//! same user serialise instead of racing. Versions are Clerk's `updated_at`: an older or
//! equal snapshot changes nothing; a delete leaves a tombstone that later snapshots may fill
//! but never bring back to life.
//!
//! Addresses: only a **verified** primary address links an app-created row (no Clerk id) or
//! takes an address from another user whose address is verified; between equals, the newer
//! snapshot keeps it. Someone who merely typed an address into Clerk gets neither.
//!
//! Over 400 lines because it is the one writer of `users`: the upsert, the address claim and
//! the soft delete share their locks and version rules, and splitting them would scatter them.

use crate::audit::{self, Origin};
use crate::clerk::ids::{ClerkUserId, EmailAddress};
use crate::clerk::UserSnapshot;
use crate::locks::{self, Key, Mode};
use serde_json::json;
use sqlx::{PgConnection, Row};
use std::sync::LazyLock;
use uuid::Uuid;

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    /// A new row.
    Created(Uuid),
    /// An existing row with the same verified email and no Clerk id now belongs to this
    /// Clerk user.
    Linked(Uuid),
    /// The row took the newer snapshot.
    Updated(Uuid),
    /// The stored version is as new or newer: nothing changed.
    Stale(Uuid),
}

impl UpsertOutcome {
    pub fn user_id(self) -> Uuid {
        match self {
            Self::Created(id) | Self::Linked(id) | Self::Updated(id) | Self::Stale(id) => id,
        }
    }
}

/// What an upsert did, and whether a welcome email is now due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upserted {
    pub outcome: UpsertOutcome,
    /// The live row holds a verified primary address now and did not before this write: a
    /// new or linked row with one, or the update that verified it. The welcome email waits
    /// for this (its `sent_emails` claim keeps it to one even when this happens again).
    pub newly_verified: bool,
}

/// What a soft delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted(Uuid),
    /// No row yet: a tombstone now stops a late create.
    Tombstoned(Uuid),
    AlreadyDeleted(Uuid),
}

#[derive(Debug, sqlx::FromRow)]
struct Stored {
    id: Uuid,
    email: Option<String>,
    email_verified: bool,
    first_name: Option<String>,
    last_name: Option<String>,
    username: Option<String>,
    image_url: Option<String>,
    role: String,
    clerk_updated_at: Option<i64>,
    deleted: bool,
}

impl Stored {
    fn verified_email(&self) -> bool {
        !self.deleted && self.email.is_some() && self.email_verified
    }
}

/// Applies one user snapshot. Call inside a transaction.
pub async fn upsert_user(
    conn: &mut PgConnection,
    snap: &UserSnapshot,
    origin: &Origin,
) -> Result<Upserted, sqlx::Error> {
    let cid = &snap.clerk_user_id;
    // The address's lock too: two users claiming it at once take turns, so the second sees
    // the first as the holder (instead of both inserting it and one failing on the index).
    let mut keys = vec![(Key::User(cid.as_str()), Mode::Exclusive)];
    if let Some(addr) = &snap.email {
        keys.push((Key::Email(addr.as_str()), Mode::Exclusive));
    }
    locks::take(conn, &keys).await?;
    let existing: Option<Stored> = crate::db::query_as(
        "SELECT id, email, email_verified, first_name, last_name, username, image_url, role, \
         clerk_updated_at, deleted_at IS NOT NULL AS deleted FROM users \
         WHERE clerk_user_id = $1 FOR UPDATE",
    )
    .bind(cid.as_str())
    .fetch_optional(&mut *conn)
    .await?;

    if let Some(row) = &existing {
        if row.clerk_updated_at.is_some_and(|v| v >= snap.updated_at) {
            return Ok(Upserted {
                outcome: UpsertOutcome::Stale(row.id),
                newly_verified: false,
            });
        }
    }
    let live = existing.as_ref().is_none_or(|r| !r.deleted);

    // Only a live row competes for the address: the unique index covers live rows alone.
    let mut email = snap.email.clone();
    let mut link_target = None;
    if let (Some(addr), true) = (&snap.email, live) {
        match claim_email(conn, addr, snap, existing.as_ref().map(|r| r.id), origin).await? {
            Claim::Free => {}
            Claim::Link(id) => link_target = Some(id),
            Claim::Lost => email = None,
        }
    }

    let target = existing.as_ref().map(|r| r.id).or(link_target);
    let (outcome, action, details): (fn(Uuid) -> UpsertOutcome, _, _) =
        match (&existing, link_target) {
            (None, None) => (UpsertOutcome::Created, "user.created", json!({})),
            (None, Some(_)) => (UpsertOutcome::Linked, "user.linked", json!({})),
            (Some(row), _) => (
                UpsertOutcome::Updated,
                "user.updated",
                diff(row, snap, &email),
            ),
        };
    let mut details = details;
    details["version"] = json!(snap.updated_at);
    // The row, its audit entry and the memberships that arrived before the user (they attach
    // now, locked in id order like every writer of several memberships), in one statement.
    static WRITE: LazyLock<[String; 2]> = LazyLock::new(|| {
        let write = |row: &str| {
            format!(
                "WITH u AS ({row} RETURNING id, \
                   email IS NOT NULL AND email_verified AND deleted_at IS NULL AS verified_email), \
                 m AS (UPDATE memberships SET user_id = (SELECT id FROM u) \
                       WHERE id IN (SELECT id FROM memberships \
                                    WHERE clerk_user_id = $2 AND user_id IS NULL \
                                    ORDER BY id FOR UPDATE)), \
                 a AS ({}) \
                 SELECT id, verified_email FROM u",
                audit::insert_sql(11)
            )
        };
        [
            write(
                "UPDATE users SET clerk_user_id = $2, email = $3, email_verified = $4, \
                 first_name = $5, last_name = $6, username = $7, image_url = $8, role = $9, \
                 clerk_updated_at = $10, updated_at = now() WHERE id = $1",
            ),
            write(
                "INSERT INTO users (id, clerk_user_id, email, email_verified, first_name, last_name, \
                 username, image_url, role, clerk_updated_at) \
                 VALUES (COALESCE($1, gen_random_uuid()), $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            ),
        ]
    });
    let query = crate::db::query(WRITE[usize::from(target.is_none())].as_str())
        .bind(target)
        .bind(cid.as_str())
        .bind(email.as_ref().map(EmailAddress::as_str))
        .bind(snap.email_verified && email.is_some())
        .bind(&snap.first_name)
        .bind(&snap.last_name)
        .bind(&snap.username)
        .bind(&snap.image_url)
        .bind(snap.role.as_str())
        .bind(snap.updated_at);
    let written = audit::bind(query, origin, action, cid.as_str(), details)
        .fetch_one(&mut *conn)
        .await?;
    let id: Uuid = written.get(0);
    let verified_email: bool = written.get(1);
    let newly_verified = verified_email && !existing.as_ref().is_some_and(Stored::verified_email);
    let outcome = outcome(id);
    if let Some(row) = existing
        .as_ref()
        .filter(|r| !r.deleted && r.role != snap.role.as_str())
    {
        audit::record(
            conn,
            origin,
            "ROLE_REMOVED",
            cid.as_str(),
            json!({"role": row.role}),
        )
        .await?;
        audit::record(
            conn,
            origin,
            "ROLE_ADDED",
            cid.as_str(),
            json!({"role": snap.role.as_str()}),
        )
        .await?;
    }
    Ok(Upserted {
        outcome,
        newly_verified,
    })
}

enum Claim {
    /// Nobody else holds the address.
    Free,
    /// An app-created row without a Clerk id holds it, and this verified snapshot of a user
    /// we have no row for takes that row over.
    Link(Uuid),
    /// Someone else keeps it: we store no address for now.
    Lost,
}

/// Resolves who holds `addr` without a retry loop. Clerk allows one owner at a time, so the
/// snapshot that proves more wins: a verified address beats an unverified one whatever their
/// versions, and between equals the newer snapshot wins. The loser keeps no address until its
/// own next snapshot. An app-created row is linked only through a verified address, and only
/// by a user we have no row for yet (the rows cannot merge). Every loss is written to the
/// audit log (`user.email_conflict`) so an operator can see it.
async fn claim_email(
    conn: &mut PgConnection,
    addr: &EmailAddress,
    snap: &UserSnapshot,
    own_row: Option<Uuid>,
    origin: &Origin,
) -> Result<Claim, sqlx::Error> {
    let holder = crate::db::query(
        "SELECT id, clerk_user_id, clerk_updated_at, email_verified FROM users \
         WHERE email = $1 AND deleted_at IS NULL AND id IS DISTINCT FROM $2 FOR UPDATE",
    )
    .bind(addr.as_str())
    .bind(own_row)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(holder) = holder else {
        return Ok(Claim::Free);
    };
    let holder_id: Uuid = holder.get("id");
    let cid = snap.clerk_user_id.as_str();
    let Some(holder_clerk): Option<String> = holder.get("clerk_user_id") else {
        if own_row.is_none() && snap.email_verified {
            return Ok(Claim::Link(holder_id));
        }
        let resolution = if snap.email_verified {
            "held by an app row without a Clerk id; stored without email"
        } else {
            "unverified address: the app row holding it is not linked; stored without email"
        };
        tracing::warn!(
            clerk_user_id = cid,
            "email held by an unlinked app row; stored without email"
        );
        audit::record(
            conn,
            origin,
            "user.email_conflict",
            cid,
            json!({"kept_by_row": holder_id, "resolution": resolution}),
        )
        .await?;
        return Ok(Claim::Lost);
    };
    let holder_version: Option<i64> = holder.get("clerk_updated_at");
    let holder_verified: bool = holder.get("email_verified");
    let holder_keeps = if holder_verified != snap.email_verified {
        holder_verified
    } else {
        holder_version.is_some_and(|v| v >= snap.updated_at)
    };
    if holder_keeps {
        let resolution = if holder_verified && !snap.email_verified {
            "unverified claim of a verified address; stored without email"
        } else {
            "held by a newer snapshot; stored without email"
        };
        tracing::warn!(clerk_user_id = cid, holder = %holder_clerk, resolution, "email kept by another user");
        audit::record(
            conn,
            origin,
            "user.email_conflict",
            cid,
            json!({"kept_by": holder_clerk, "resolution": resolution}),
        )
        .await?;
        return Ok(Claim::Lost);
    }
    tracing::warn!(clerk_user_id = cid, previous_holder = %holder_clerk, "email moved from another user");
    let resolution = if snap.email_verified && !holder_verified {
        "address released to a verified claim"
    } else {
        "address released to the newer snapshot"
    };
    crate::db::query(
        "UPDATE users SET email = NULL, email_verified = false, updated_at = now() WHERE id = $1",
    )
    .bind(holder_id)
    .execute(&mut *conn)
    .await?;
    audit::record(
        conn,
        origin,
        "user.email_conflict",
        &holder_clerk,
        json!({"claimed_by": cid, "resolution": resolution}),
    )
    .await?;
    Ok(Claim::Free)
}

/// The names of the fields a snapshot changes, and the role transition when there is one.
/// Values are left out: they may be personal data, and the row holds them anyway.
fn diff(row: &Stored, snap: &UserSnapshot, email: &Option<EmailAddress>) -> serde_json::Value {
    let mut changed = Vec::new();
    let mut check = |name: &str, same: bool| {
        if !same {
            changed.push(name.to_owned())
        }
    };
    check(
        "email",
        row.email.as_deref() == email.as_ref().map(EmailAddress::as_str),
    );
    check(
        "email_verified",
        row.email_verified == (snap.email_verified && email.is_some()),
    );
    check("first_name", row.first_name == snap.first_name);
    check("last_name", row.last_name == snap.last_name);
    check("username", row.username == snap.username);
    check("image_url", row.image_url == snap.image_url);
    check("role", row.role == snap.role.as_str());
    let mut details = json!({ "changed": changed });
    if row.role != snap.role.as_str() {
        details["role"] = json!({"from": row.role, "to": snap.role.as_str()});
    }
    details
}

/// Soft-deletes a user, or leaves a tombstone when we have never seen it. Call inside a
/// transaction. `deleted_at_ms` is the event's timestamp, so replays give the same row.
pub async fn soft_delete_user(
    conn: &mut PgConnection,
    cid: &ClerkUserId,
    deleted_at_ms: i64,
    origin: &Origin,
) -> Result<DeleteOutcome, sqlx::Error> {
    locks::take(conn, &[(Key::User(cid.as_str()), Mode::Exclusive)]).await?;
    let deleted: Option<Uuid> = crate::db::query_scalar(
        "UPDATE users SET deleted_at = to_timestamp($2::float8 / 1000), updated_at = now() \
         WHERE clerk_user_id = $1 AND deleted_at IS NULL RETURNING id",
    )
    .bind(cid.as_str())
    .bind(deleted_at_ms)
    .fetch_optional(&mut *conn)
    .await?;
    let outcome = match deleted {
        Some(id) => DeleteOutcome::Deleted(id),
        None => {
            let inserted: Option<Uuid> = crate::db::query_scalar(
                "INSERT INTO users (clerk_user_id, deleted_at) \
                 VALUES ($1, to_timestamp($2::float8 / 1000)) \
                 ON CONFLICT (clerk_user_id) DO NOTHING RETURNING id",
            )
            .bind(cid.as_str())
            .bind(deleted_at_ms)
            .fetch_optional(&mut *conn)
            .await?;
            match inserted {
                Some(id) => DeleteOutcome::Tombstoned(id),
                None => {
                    let id =
                        crate::db::query_scalar("SELECT id FROM users WHERE clerk_user_id = $1")
                            .bind(cid.as_str())
                            .fetch_one(&mut *conn)
                            .await?;
                    return Ok(DeleteOutcome::AlreadyDeleted(id));
                }
            }
        }
    };
    let action = match outcome {
        DeleteOutcome::Deleted(_) => "user.deleted",
        _ => "user.tombstoned",
    };
    audit::record(
        conn,
        origin,
        action,
        cid.as_str(),
        json!({"deleted_at_ms": deleted_at_ms}),
    )
    .await?;
    Ok(outcome)
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct UserView {
    pub id: Uuid,
    pub clerk_user_id: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub image_url: Option<String>,
    pub role: String,
}

/// The live (not deleted) row of a Clerk user, if provisioned.
pub async fn find_live(
    pool: &sqlx::PgPool,
    cid: &ClerkUserId,
) -> Result<Option<UserView>, sqlx::Error> {
    crate::db::query_as(
        "SELECT id, clerk_user_id, email, email_verified, first_name, last_name, username, image_url, role \
         FROM users WHERE clerk_user_id = $1 AND deleted_at IS NULL",
    )
    .bind(cid.as_str())
    .fetch_optional(crate::db::on(pool))
    .await
}
