//! The rules of the one writer of `users` (its statements are in [`crate::store::users`]),
//! following the README's "At-least-once in, exactly-once effect" (How correctness is kept).
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

use crate::audit::Origin;
use crate::clerk::ids::{ClerkUserId, EmailAddress};
use crate::clerk::UserSnapshot;
use crate::locks::{self, Key, Mode};
use crate::store::audit;
use crate::store::users::{self as store, StoredUser as Stored};
use serde_json::json;
use sqlx::PgConnection;
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

fn has_verified_email(row: &Stored) -> bool {
    !row.deleted && row.email.is_some() && row.email_verified
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
    let existing = store::lock(conn, cid).await?;

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
    // The row, its audit entry and the memberships that arrived before the user, in one
    // statement.
    let entry = store::Entry {
        origin,
        action,
        details,
    };
    let written = store::write(conn, target, snap, email.as_ref(), entry).await?;
    let (id, verified_email) = (written.id, written.verified_email);
    let newly_verified = verified_email && !existing.as_ref().is_some_and(has_verified_email);
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
    let Some(holder) = store::lock_email_holder(conn, addr, own_row).await? else {
        return Ok(Claim::Free);
    };
    let holder_id = holder.id;
    let cid = snap.clerk_user_id.as_str();
    let Some(holder_clerk) = holder.clerk_user_id else {
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
    let holder_version = holder.clerk_updated_at;
    let holder_verified = holder.email_verified;
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
    store::release_email(conn, holder_id).await?;
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
    let outcome = match store::mark_deleted(conn, cid, deleted_at_ms).await? {
        Some(id) => DeleteOutcome::Deleted(id),
        None => match store::insert_tombstone(conn, cid, deleted_at_ms).await? {
            Some(id) => DeleteOutcome::Tombstoned(id),
            None => {
                return Ok(DeleteOutcome::AlreadyDeleted(
                    store::id_of(conn, cid).await?,
                ))
            }
        },
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
