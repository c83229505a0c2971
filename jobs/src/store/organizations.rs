//! `organizations`: every statement on the table. The rules are in [`crate::tenancy`].

use crate::clerk::ids::ClerkOrgId;
use crate::clerk::OrgSnapshot;
use crate::db;
use serde_json::json;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// An organization's row as its writer compares it with a snapshot.
#[derive(Debug, Clone, FromRow)]
pub struct StoredOrg {
    pub id: Uuid,
    pub clerk_updated_at: Option<i64>,
    pub name: Option<String>,
    pub slug: Option<String>,
}

/// The row of `oid`, locked for the rest of the transaction.
pub async fn lock(conn: &mut PgConnection, oid: &str) -> Result<Option<StoredOrg>, sqlx::Error> {
    sqlx::query_as!(
        StoredOrg,
        "SELECT id, clerk_updated_at, name, slug FROM organizations WHERE clerk_org_id = $1 FOR UPDATE",
        oid,
    )
    .fetch_optional(db::tx(conn))
    .await
}

/// Writes a snapshot (a new row or over the old one); the row's id.
pub async fn upsert(conn: &mut PgConnection, snap: &OrgSnapshot) -> Result<Uuid, sqlx::Error> {
    let metadata = if snap.public_metadata.is_null() {
        json!({})
    } else {
        snap.public_metadata.clone()
    };
    sqlx::query_scalar!(
        "INSERT INTO organizations (clerk_org_id, name, slug, image_url, created_by, public_metadata, clerk_updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (clerk_org_id) DO UPDATE SET name = EXCLUDED.name, slug = EXCLUDED.slug, \
           image_url = EXCLUDED.image_url, created_by = EXCLUDED.created_by, \
           public_metadata = EXCLUDED.public_metadata, clerk_updated_at = EXCLUDED.clerk_updated_at, updated_at = now() \
         RETURNING id",
        snap.clerk_org_id.as_str(),
        snap.name,
        snap.slug,
        snap.image_url,
        snap.created_by,
        metadata,
        snap.updated_at,
    )
    .fetch_one(db::tx(conn))
    .await
}

/// Marks the live row of `oid` deleted at `at_ms` (Unix ms); its id, if there was one.
pub async fn mark_deleted(
    conn: &mut PgConnection,
    oid: &ClerkOrgId,
    at_ms: i64,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE organizations SET deleted_at = to_timestamp($2::bigint::float8 / 1000), updated_at = now() \
         WHERE clerk_org_id = $1 AND deleted_at IS NULL RETURNING id",
        oid.as_str(),
        at_ms,
    )
    .fetch_optional(db::tx(conn))
    .await
}

/// Leaves a tombstone for an organization never seen; its id, unless a row exists already.
pub async fn insert_tombstone(
    conn: &mut PgConnection,
    oid: &ClerkOrgId,
    at_ms: i64,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO organizations (clerk_org_id, deleted_at) VALUES ($1, to_timestamp($2::bigint::float8 / 1000)) \
         ON CONFLICT (clerk_org_id) DO NOTHING RETURNING id",
        oid.as_str(),
        at_ms,
    )
    .fetch_optional(db::tx(conn))
    .await
}

/// The id of the row of `oid`, which exists.
pub async fn id_of(conn: &mut PgConnection, oid: &ClerkOrgId) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM organizations WHERE clerk_org_id = $1",
        oid.as_str()
    )
    .fetch_one(db::tx(conn))
    .await
}

/// Creates a personal organization (`{"personal": true}`); its id, unless it exists already.
pub async fn create_personal(
    conn: &mut PgConnection,
    oid: &str,
    name: &str,
    created_by: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"INSERT INTO organizations (clerk_org_id, name, created_by, public_metadata)
           VALUES ($1, $2, $3, '{"personal": true}') ON CONFLICT (clerk_org_id) DO NOTHING RETURNING id"#,
        oid,
        name,
        created_by,
    )
    .fetch_optional(db::tx(conn))
    .await
}
