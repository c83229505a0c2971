//! The `organizations` and `memberships` tables: the one place that writes them, with the
//! rules of `users` (version guard on Clerk's `updated_at`, tombstones, advisory locks).
//! Deleting an organization ends its memberships (Clerk sends no membership events then),
//! and a membership that arrives for a deleted organization is stored already ended. A
//! membership may name a user or organization not seen yet: it is kept, and the uuid
//! references attach when they arrive. Whichever commits second makes the link: a
//! membership write holds its organization's and user's locks (see [`crate::locks`]), so it
//! never runs beside a writer of either and one of the two always sees the other's row.

use crate::audit::{self, Origin};
use crate::clerk::ids::ClerkOrgId;
use crate::clerk::{MembershipSnapshot, OrgSnapshot};
use crate::locks::{self, Key, Mode};
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
    type Stored = (Uuid, Option<i64>, Option<String>, Option<String>);
    let existing: Option<Stored> =
        crate::db::query_as("SELECT id, clerk_updated_at, name, slug FROM organizations WHERE clerk_org_id = $1 FOR UPDATE")
            .bind(oid)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some((id, Some(v), _, _)) = &existing {
        if *v >= snap.updated_at {
            return Ok(Change::Unchanged(*id));
        }
    }
    let id: Uuid = crate::db::query_scalar(
        "INSERT INTO organizations (clerk_org_id, name, slug, image_url, created_by, public_metadata, clerk_updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (clerk_org_id) DO UPDATE SET name = EXCLUDED.name, slug = EXCLUDED.slug, \
           image_url = EXCLUDED.image_url, created_by = EXCLUDED.created_by, \
           public_metadata = EXCLUDED.public_metadata, clerk_updated_at = EXCLUDED.clerk_updated_at, updated_at = now() \
         RETURNING id",
    )
    .bind(oid)
    .bind(&snap.name)
    .bind(&snap.slug)
    .bind(&snap.image_url)
    .bind(&snap.created_by)
    .bind(if snap.public_metadata.is_null() { json!({}) } else { snap.public_metadata.clone() })
    .bind(snap.updated_at)
    .fetch_one(&mut *conn)
    .await?;
    // Rows in id order, as every writer of several memberships locks them: a user attaching
    // the same rows at once then waits instead of deadlocking.
    crate::db::query(
        "UPDATE memberships SET organization_id = $1 WHERE id IN (SELECT id FROM memberships \
         WHERE clerk_org_id = $2 AND organization_id IS NULL ORDER BY id FOR UPDATE)",
    )
    .bind(id)
    .bind(oid)
    .execute(&mut *conn)
    .await?;
    let (change, action, details) = match existing {
        None => (Change::Created(id), "organization.created", json!({})),
        Some((_, _, name, slug)) => {
            let mut changed = Vec::new();
            if name != snap.name {
                changed.push("name");
            }
            if slug != snap.slug {
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
    let deleted: Option<Uuid> = crate::db::query_scalar(
        "UPDATE organizations SET deleted_at = to_timestamp($2::float8 / 1000), updated_at = now() \
         WHERE clerk_org_id = $1 AND deleted_at IS NULL RETURNING id",
    )
    .bind(oid.as_str())
    .bind(at_ms)
    .fetch_optional(&mut *conn)
    .await?;
    let change = match deleted {
        Some(id) => Change::Deleted(id),
        None => {
            let inserted: Option<Uuid> = crate::db::query_scalar(
                "INSERT INTO organizations (clerk_org_id, deleted_at) VALUES ($1, to_timestamp($2::float8 / 1000)) \
                 ON CONFLICT (clerk_org_id) DO NOTHING RETURNING id",
            )
            .bind(oid.as_str())
            .bind(at_ms)
            .fetch_optional(&mut *conn)
            .await?;
            match inserted {
                Some(id) => Change::Tombstoned(id),
                None => {
                    let id = crate::db::query_scalar(
                        "SELECT id FROM organizations WHERE clerk_org_id = $1",
                    )
                    .bind(oid.as_str())
                    .fetch_one(&mut *conn)
                    .await?;
                    return Ok(Change::Unchanged(id));
                }
            }
        }
    };
    let ended: Vec<(String, String, String)> = crate::db::query_as(
        "UPDATE memberships SET deleted_at = to_timestamp($2::float8 / 1000), updated_at = now() \
         WHERE id IN (SELECT id FROM memberships WHERE clerk_org_id = $1 AND deleted_at IS NULL \
                      ORDER BY id FOR UPDATE) \
         RETURNING clerk_user_id, role, clerk_membership_id",
    )
    .bind(oid.as_str())
    .bind(at_ms)
    .fetch_all(&mut *conn)
    .await?;
    for (user, role, mid) in &ended {
        audit::record(conn, origin, "ROLE_REMOVED", user, json!({"role": role, "organization": oid.as_str(), "membership": mid, "reason": "organization deleted"})).await?;
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
    let existing: Option<(Uuid, String, Option<i64>, bool)> = crate::db::query_as(
        "SELECT id, role, clerk_updated_at, deleted_at IS NOT NULL FROM memberships WHERE clerk_membership_id = $1 FOR UPDATE",
    )
    .bind(mid)
    .fetch_optional(&mut *conn)
    .await?;
    let newer = existing
        .as_ref()
        .is_none_or(|(_, _, v, _)| v.is_none_or(|v| v < snap.updated_at));
    let was_deleted = existing.as_ref().is_some_and(|e| e.3);
    if !newer && (was_deleted || !deleted) {
        return Ok(Change::Unchanged(
            existing.expect("exists when not newer").0,
        ));
    }
    // Ended by its own delete (at the delete's version) or by its organization's deletion.
    let id: Uuid = crate::db::query_scalar(
        "INSERT INTO memberships AS m (clerk_membership_id, clerk_org_id, clerk_user_id, role, clerk_updated_at, \
           organization_id, user_id, deleted_at) \
         VALUES ($1, $2, $3, $4, $5, \
           (SELECT id FROM organizations WHERE clerk_org_id = $2), \
           (SELECT id FROM users WHERE clerk_user_id = $3), \
           COALESCE(CASE WHEN $6 THEN to_timestamp($5::float8 / 1000) END, \
                    (SELECT deleted_at FROM organizations WHERE clerk_org_id = $2))) \
         ON CONFLICT (clerk_membership_id) DO UPDATE SET \
           role = CASE WHEN $7 THEN EXCLUDED.role ELSE m.role END, \
           clerk_updated_at = GREATEST(m.clerk_updated_at, EXCLUDED.clerk_updated_at), \
           organization_id = COALESCE(m.organization_id, EXCLUDED.organization_id), \
           user_id = COALESCE(m.user_id, EXCLUDED.user_id), \
           deleted_at = COALESCE(m.deleted_at, EXCLUDED.deleted_at), \
           updated_at = now() \
         RETURNING id",
    )
    .bind(mid)
    .bind(snap.clerk_org_id.as_str())
    .bind(snap.clerk_user_id.as_str())
    .bind(&snap.role)
    .bind(snap.updated_at)
    .bind(deleted)
    .bind(newer)
    .fetch_one(&mut *conn)
    .await?;
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
        Some((_, old_role, _, _)) => {
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
            .map_or(snap.role.as_str(), |e| e.1.as_str());
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
    let created: Option<Uuid> = crate::db::query_scalar(
        "INSERT INTO organizations (clerk_org_id, name, created_by, public_metadata) VALUES ($1, $2, $3, '{\"personal\": true}') \
         ON CONFLICT (clerk_org_id) DO NOTHING RETURNING id",
    )
    .bind(&org_id)
    .bind(&name)
    .bind(cid)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(org_uuid) = created else {
        return Ok(());
    };
    crate::db::query(
        "INSERT INTO memberships (clerk_membership_id, clerk_org_id, clerk_user_id, organization_id, user_id, role) \
         VALUES ($1, $2, $3, $4, $5, 'org:admin') ON CONFLICT (clerk_membership_id) DO NOTHING",
    )
    .bind(format!("personalmem_{cid}"))
    .bind(&org_id)
    .bind(cid)
    .bind(org_uuid)
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
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
