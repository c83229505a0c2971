//! `memberships`: every statement on the table (the attachment of users that arrive late is
//! part of [`crate::store::users::write`]). The rules are in [`crate::tenancy`]. Every writer of
//! several memberships locks them in id order, so two writers wait instead of deadlocking.

use crate::clerk::MembershipSnapshot;
use crate::db;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// Links the memberships of `oid` that arrived before it to its row `org`.
pub async fn attach_org(conn: &mut PgConnection, org: Uuid, oid: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE memberships SET organization_id = $1 WHERE id IN (SELECT id FROM memberships \
         WHERE clerk_org_id = $2 AND organization_id IS NULL ORDER BY id FOR UPDATE)",
        org,
        oid,
    )
    .execute(db::tx(conn))
    .await?;
    Ok(())
}

/// A membership an organization's deletion ended.
#[derive(Debug, Clone, FromRow)]
pub struct Ended {
    pub clerk_user_id: String,
    pub role: String,
    pub clerk_membership_id: String,
}

/// Ends the live memberships of `oid` at `at_ms` (Unix ms).
pub async fn end_all_of_org(
    conn: &mut PgConnection,
    oid: &str,
    at_ms: i64,
) -> Result<Vec<Ended>, sqlx::Error> {
    sqlx::query_as!(
        Ended,
        "UPDATE memberships SET deleted_at = to_timestamp($2::bigint::float8 / 1000), updated_at = now() \
         WHERE id IN (SELECT id FROM memberships WHERE clerk_org_id = $1 AND deleted_at IS NULL \
                      ORDER BY id FOR UPDATE) \
         RETURNING clerk_user_id, role, clerk_membership_id",
        oid,
        at_ms,
    )
    .fetch_all(db::tx(conn))
    .await
}

/// A membership's row as its writer compares it with a snapshot.
#[derive(Debug, Clone, FromRow)]
pub struct StoredMembership {
    pub id: Uuid,
    pub role: String,
    pub clerk_updated_at: Option<i64>,
    pub deleted: bool,
}

/// The row of `mid`, locked for the rest of the transaction.
pub async fn lock(
    conn: &mut PgConnection,
    mid: &str,
) -> Result<Option<StoredMembership>, sqlx::Error> {
    sqlx::query_as!(
        StoredMembership,
        r#"SELECT id, role, clerk_updated_at, deleted_at IS NOT NULL AS "deleted!"
           FROM memberships WHERE clerk_membership_id = $1 FOR UPDATE"#,
        mid,
    )
    .fetch_optional(db::tx(conn))
    .await
}

/// Writes a snapshot; the row's id. A new row links its organization and user if they exist
/// and is ended by its own delete (`deleted`, at the snapshot's version) or by its
/// organization's deletion. Over an existing row the role changes only when the snapshot is
/// `newer`; links and an end, once set, stay.
pub async fn upsert(
    conn: &mut PgConnection,
    snap: &MembershipSnapshot,
    deleted: bool,
    newer: bool,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO memberships AS m (clerk_membership_id, clerk_org_id, clerk_user_id, role, clerk_updated_at, \
           organization_id, user_id, deleted_at) \
         VALUES ($1, $2, $3, $4, $5::bigint, \
           (SELECT id FROM organizations WHERE clerk_org_id = $2), \
           (SELECT id FROM users WHERE clerk_user_id = $3), \
           COALESCE(CASE WHEN $6::bool THEN to_timestamp($5::bigint::float8 / 1000) END, \
                    (SELECT deleted_at FROM organizations WHERE clerk_org_id = $2))) \
         ON CONFLICT (clerk_membership_id) DO UPDATE SET \
           role = CASE WHEN $7::bool THEN EXCLUDED.role ELSE m.role END, \
           clerk_updated_at = GREATEST(m.clerk_updated_at, EXCLUDED.clerk_updated_at), \
           organization_id = COALESCE(m.organization_id, EXCLUDED.organization_id), \
           user_id = COALESCE(m.user_id, EXCLUDED.user_id), \
           deleted_at = COALESCE(m.deleted_at, EXCLUDED.deleted_at), \
           updated_at = now() \
         RETURNING id",
        snap.clerk_membership_id.as_str(),
        snap.clerk_org_id.as_str(),
        snap.clerk_user_id.as_str(),
        snap.role,
        snap.updated_at,
        deleted,
        newer,
    )
    .fetch_one(db::tx(conn))
    .await
}

/// The `org:admin` membership of a user in its personal organization (`oid`, row `org`).
pub async fn create_personal(
    conn: &mut PgConnection,
    oid: &str,
    org: Uuid,
    cid: &str,
    user: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO memberships (clerk_membership_id, clerk_org_id, clerk_user_id, organization_id, user_id, role) \
         VALUES ($1, $2, $3, $4, $5, 'org:admin') ON CONFLICT (clerk_membership_id) DO NOTHING",
        format!("personalmem_{cid}"),
        oid,
        cid,
        org,
        user,
    )
    .execute(db::tx(conn))
    .await?;
    Ok(())
}

/// A membership as the signed-in user sees it, with its organization when that is live.
#[derive(Debug, Clone, FromRow)]
pub struct OwnMembership {
    pub clerk_org_id: String,
    pub role: String,
    pub name: Option<String>,
    pub slug: Option<String>,
}

/// The live memberships row-level security lets this transaction see (call as
/// `authsync_user`, with `authsync.clerk_user_id` set), oldest first.
pub async fn visible(conn: &mut PgConnection) -> Result<Vec<OwnMembership>, sqlx::Error> {
    sqlx::query_as!(
        OwnMembership,
        r#"SELECT m.clerk_org_id, m.role, o.name AS "name?", o.slug AS "slug?" FROM memberships m
           LEFT JOIN organizations o ON o.clerk_org_id = m.clerk_org_id AND o.deleted_at IS NULL
           WHERE m.deleted_at IS NULL ORDER BY m.created_at"#,
    )
    .fetch_all(db::tx(conn))
    .await
}

/// A live membership of a user, with its organization, as operators see it.
#[derive(Debug, Clone, FromRow)]
pub struct MemberOf {
    pub clerk_membership_id: String,
    pub clerk_org_id: String,
    pub role: String,
    pub name: Option<String>,
    pub slug: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The live memberships of Clerk user `cid`, oldest first (at most 200).
pub async fn of_user(pool: &sqlx::PgPool, cid: &str) -> Result<Vec<MemberOf>, sqlx::Error> {
    sqlx::query_as!(
        MemberOf,
        r#"SELECT m.clerk_membership_id, m.clerk_org_id, m.role, o.name AS "name?", o.slug AS "slug?",
                  m.created_at
           FROM memberships m LEFT JOIN organizations o ON o.clerk_org_id = m.clerk_org_id
           WHERE m.clerk_user_id = $1 AND m.deleted_at IS NULL ORDER BY m.created_at LIMIT 200"#,
        cid,
    )
    .fetch_all(db::on(pool))
    .await
}
