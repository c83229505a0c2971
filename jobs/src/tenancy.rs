//! The rules of the one writer of `organizations` and `memberships` (their statements are in
//! [`crate::store::organizations`] and [`crate::store::memberships`]), like those of `users`
//! (version guard on Clerk's `updated_at`, tombstones, advisory locks).
//! Deleting an organization ends its memberships (Clerk sends no membership events then),
//! and a membership that arrives for a deleted organization is stored already ended. A
//! membership may name a user or organization not seen yet: it is kept, and the uuid
//! references attach when they arrive. Whichever commits second makes the link: a
//! membership write holds its organization's and user's locks (see [`crate::locks`]), so it
//! never runs beside a writer of either and one of the two always sees the other's row.

use crate::audit::Origin;
use crate::clerk::ids::ClerkOrgId;
use crate::clerk::{MembershipSnapshot, OrgSnapshot};
use crate::locks::{self, Key, Mode};
use crate::store::{audit, memberships, organizations};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created(Uuid),
    Updated(Uuid),
    Deleted(Uuid),
    /// A delete for something never seen: a tombstone.
    Tombstoned(Uuid),
    /// Nothing to do: older snapshot, or already deleted.
    Unchanged(Uuid),
}

/// An organization's writers hold its lock exclusively (memberships share it).
async fn lock_org(conn: &mut PgConnection, oid: &str) -> Result<(), sqlx::Error> {
    locks::take(conn, &[(Key::Org(oid), Mode::Exclusive)]).await
}

/// Applies an organization snapshot.
pub async fn upsert_org(
    conn: &mut PgConnection,
    snap: &OrgSnapshot,
    origin: &Origin,
) -> Result<Change, sqlx::Error> {
    let oid = snap.clerk_org_id.as_str();
    lock_org(conn, oid).await?;
    let existing = organizations::lock(conn, oid).await?;
    if let Some(row) = &existing {
        if row.clerk_updated_at.is_some_and(|v| v >= snap.updated_at) {
            return Ok(Change::Unchanged(row.id));
        }
    }
    let id = organizations::upsert(conn, snap).await?;
    memberships::attach_org(conn, id, oid).await?;
    let (change, action, details) = match existing {
        None => (Change::Created(id), "organization.created", json!({})),
        Some(row) => {
            let mut changed = Vec::new();
            if row.name != snap.name {
                changed.push("name");
            }
            if row.slug != snap.slug {
                changed.push("slug");
            }
            (
                Change::Updated(id),
                "organization.updated",
                json!({ "changed": changed }),
            )
        }
    };
    let mut details = details;
    details["version"] = json!(snap.updated_at);
    audit::record(conn, origin, action, oid, details).await?;
    Ok(change)
}

/// Deletes an organization (or tombstones it) and ends its live memberships.
pub async fn delete_org(
    conn: &mut PgConnection,
    oid: &ClerkOrgId,
    at_ms: i64,
    origin: &Origin,
) -> Result<Change, sqlx::Error> {
    lock_org(conn, oid.as_str()).await?;
    let change = match organizations::mark_deleted(conn, oid, at_ms).await? {
        Some(id) => Change::Deleted(id),
        None => match organizations::insert_tombstone(conn, oid, at_ms).await? {
            Some(id) => Change::Tombstoned(id),
            None => return Ok(Change::Unchanged(organizations::id_of(conn, oid).await?)),
        },
    };
    let ended = memberships::end_all_of_org(conn, oid.as_str(), at_ms).await?;
    for m in &ended {
        audit::record(conn, origin, "ROLE_REMOVED", &m.clerk_user_id, json!({"role": m.role, "organization": oid.as_str(), "membership": m.clerk_membership_id, "reason": "organization deleted"})).await?;
    }
    audit::record(
        conn,
        origin,
        "organization.deleted",
        oid.as_str(),
        json!({"memberships_ended": ended.len(), "deleted_at_ms": at_ms}),
    )
    .await?;
    Ok(change)
}

/// Applies a membership snapshot; `deleted` for `organizationMembership.deleted`.
pub async fn upsert_membership(
    conn: &mut PgConnection,
    snap: &MembershipSnapshot,
    deleted: bool,
    origin: &Origin,
) -> Result<Change, sqlx::Error> {
    let mid = snap.clerk_membership_id.as_str();
    // Shared on the organization and the user: they are only read (for their uuids and the
    // organization's deletion), and memberships of one organization need not wait for each
    // other; exclusive on the membership itself.
    locks::take(
        conn,
        &[
            (Key::Org(snap.clerk_org_id.as_str()), Mode::Shared),
            (Key::User(snap.clerk_user_id.as_str()), Mode::Shared),
            (Key::Membership(mid), Mode::Exclusive),
        ],
    )
    .await?;
    let existing = memberships::lock(conn, mid).await?;
    let newer = existing
        .as_ref()
        .is_none_or(|m| m.clerk_updated_at.is_none_or(|v| v < snap.updated_at));
    let was_deleted = existing.as_ref().is_some_and(|m| m.deleted);
    if !newer && (was_deleted || !deleted) {
        return Ok(Change::Unchanged(
            existing.expect("exists when not newer").id,
        ));
    }
    // Ended by its own delete (at the delete's version) or by its organization's deletion.
    let id = memberships::upsert(conn, snap, deleted, newer).await?;
    let user = snap.clerk_user_id.as_str();
    let base = json!({"organization": snap.clerk_org_id.as_str(), "membership": mid});
    let with = |extra: serde_json::Value| {
        let mut d = base.clone();
        d.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        d
    };
    let change = match &existing {
        None => {
            audit::record(
                conn,
                origin,
                "membership.created",
                user,
                with(json!({"role": snap.role})),
            )
            .await?;
            if !deleted {
                audit::record(
                    conn,
                    origin,
                    "ROLE_ADDED",
                    user,
                    with(json!({"role": snap.role})),
                )
                .await?;
            }
            Change::Created(id)
        }
        Some(stored) => {
            let old_role = &stored.role;
            if newer && *old_role != snap.role && !was_deleted {
                audit::record(
                    conn,
                    origin,
                    "ROLE_REMOVED",
                    user,
                    with(json!({"role": old_role})),
                )
                .await?;
                audit::record(
                    conn,
                    origin,
                    "ROLE_ADDED",
                    user,
                    with(json!({"role": snap.role})),
                )
                .await?;
            }
            Change::Updated(id)
        }
    };
    if deleted && !was_deleted {
        let role = existing
            .as_ref()
            .map_or(snap.role.as_str(), |m| m.role.as_str());
        if existing.is_some() {
            audit::record(
                conn,
                origin,
                "ROLE_REMOVED",
                user,
                with(json!({"role": role})),
            )
            .await?;
        }
        audit::record(conn, origin, "membership.deleted", user, base.clone()).await?;
        return Ok(Change::Deleted(id));
    }
    Ok(change)
}

/// The personal organization of a new user: ours, not Clerk's, so its ids are derived from the
/// user's (`personal_<user id>`), and the user is its `org:admin`. Call in the transaction
/// that created the user, so both exist or neither does. No Clerk event can name these ids,
/// so the user's lock, which that transaction holds, is the only one they need.
pub async fn create_personal_org(
    conn: &mut PgConnection,
    user_id: Uuid,
    cid: &str,
    first_name: Option<&str>,
    origin: &Origin,
) -> Result<(), sqlx::Error> {
    let org_id = format!("personal_{cid}");
    let name = first_name.map_or_else(|| "Personal".to_owned(), |n| format!("{n}'s workspace"));
    let Some(org_uuid) = organizations::create_personal(conn, &org_id, &name, cid).await? else {
        return Ok(());
    };
    memberships::create_personal(conn, &org_id, org_uuid, cid, user_id).await?;
    audit::record(
        conn,
        origin,
        "organization.created",
        &org_id,
        json!({"personal": true}),
    )
    .await?;
    audit::record(
        conn,
        origin,
        "ROLE_ADDED",
        cid,
        json!({"role": "org:admin", "organization": org_id}),
    )
    .await?;
    Ok(())
}
