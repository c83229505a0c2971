//! `users`: every statement on the table. The rules they serve (locks, versions, addresses)
//! are in [`crate::users`], the one writer.

use crate::audit::Origin;
use crate::clerk::ids::{ClerkUserId, EmailAddress};
use crate::clerk::UserSnapshot;
use crate::db;
use crate::store::audit;
use sqlx::{FromRow, PgConnection, PgPool};
use std::sync::LazyLock;
use uuid::Uuid;

/// A user's row as its writer compares it with a snapshot.
#[derive(Debug, Clone, FromRow)]
pub struct StoredUser {
    pub id: Uuid,
    pub email: Option<String>,
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub image_url: Option<String>,
    pub role: String,
    pub clerk_updated_at: Option<i64>,
    pub deleted: bool,
}

/// The row of a Clerk user, locked for the rest of the transaction.
pub async fn lock(
    conn: &mut PgConnection,
    cid: &ClerkUserId,
) -> Result<Option<StoredUser>, sqlx::Error> {
    sqlx::query_as!(
        StoredUser,
        r#"SELECT id, email, email_verified, first_name, last_name, username, image_url, role,
                  clerk_updated_at, deleted_at IS NOT NULL AS "deleted!"
           FROM users WHERE clerk_user_id = $1 FOR UPDATE"#,
        cid.as_str(),
    )
    .fetch_optional(db::tx(conn))
    .await
}

/// The live row holding an address.
#[derive(Debug, Clone, FromRow)]
pub struct EmailHolder {
    pub id: Uuid,
    /// `None`: a row the app created, not linked to a Clerk user yet.
    pub clerk_user_id: Option<String>,
    pub clerk_updated_at: Option<i64>,
    pub email_verified: bool,
}

/// The live row other than `own_row` that holds `addr`, locked.
pub async fn lock_email_holder(
    conn: &mut PgConnection,
    addr: &EmailAddress,
    own_row: Option<Uuid>,
) -> Result<Option<EmailHolder>, sqlx::Error> {
    sqlx::query_as!(
        EmailHolder,
        "SELECT id, clerk_user_id, clerk_updated_at, email_verified FROM users \
         WHERE email = $1 AND deleted_at IS NULL AND id IS DISTINCT FROM $2 FOR UPDATE",
        addr.as_str(),
        own_row,
    )
    .fetch_optional(db::tx(conn))
    .await
}

/// Takes the address away from row `id`.
pub async fn release_email(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET email = NULL, email_verified = false, updated_at = now() WHERE id = $1",
        id,
    )
    .execute(db::tx(conn))
    .await?;
    Ok(())
}

/// What [`write`] wrote.
#[derive(Debug, Clone, Copy, FromRow)]
pub struct Written {
    pub id: Uuid,
    /// The row now holds a verified primary address.
    pub verified_email: bool,
}

/// An audit entry to write with a change.
pub struct Entry<'a> {
    pub origin: &'a Origin,
    pub action: &'a str,
    pub details: serde_json::Value,
}

/// Writes a snapshot into row `target` (a new row without one), attaches the memberships that
/// arrived before the user (locked in id order like every writer of several memberships),
/// and appends `entry`, all in one statement. `email` is the address the row may keep.
/// Composed with the audit insert at run time: runtime-checked.
pub async fn write(
    conn: &mut PgConnection,
    target: Option<Uuid>,
    snap: &UserSnapshot,
    email: Option<&EmailAddress>,
    entry: Entry<'_>,
) -> Result<Written, sqlx::Error> {
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
    let cid = snap.clerk_user_id.as_str();
    let query = db::query(WRITE[usize::from(target.is_none())].as_str())
        .bind(target)
        .bind(cid)
        .bind(email.map(EmailAddress::as_str))
        .bind(snap.email_verified && email.is_some())
        .bind(&snap.first_name)
        .bind(&snap.last_name)
        .bind(&snap.username)
        .bind(&snap.image_url)
        .bind(snap.role.as_str())
        .bind(snap.updated_at);
    let row = audit::bind(query, entry.origin, entry.action, cid, entry.details)
        .fetch_one(db::tx(conn))
        .await?;
    Written::from_row(&row)
}

/// Marks the live row of `cid` deleted at `at_ms` (Unix ms); its id, if there was one.
pub async fn mark_deleted(
    conn: &mut PgConnection,
    cid: &ClerkUserId,
    at_ms: i64,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE users SET deleted_at = to_timestamp($2::bigint::float8 / 1000), updated_at = now() \
         WHERE clerk_user_id = $1 AND deleted_at IS NULL RETURNING id",
        cid.as_str(),
        at_ms,
    )
    .fetch_optional(db::tx(conn))
    .await
}

/// Leaves a tombstone for a user never seen; its id, unless a row exists already.
pub async fn insert_tombstone(
    conn: &mut PgConnection,
    cid: &ClerkUserId,
    at_ms: i64,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "INSERT INTO users (clerk_user_id, deleted_at) \
         VALUES ($1, to_timestamp($2::bigint::float8 / 1000)) \
         ON CONFLICT (clerk_user_id) DO NOTHING RETURNING id",
        cid.as_str(),
        at_ms,
    )
    .fetch_optional(db::tx(conn))
    .await
}

/// The id of the row of `cid`, which exists.
pub async fn id_of(conn: &mut PgConnection, cid: &ClerkUserId) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM users WHERE clerk_user_id = $1",
        cid.as_str()
    )
    .fetch_one(db::tx(conn))
    .await
}

/// Whether a row is live, and its role.
#[derive(Debug, Clone, FromRow)]
pub struct LiveRole {
    pub live: bool,
    pub role: String,
}

/// [`LiveRole`] of row `id`, which exists.
pub async fn live_and_role(conn: &mut PgConnection, id: Uuid) -> Result<LiveRole, sqlx::Error> {
    sqlx::query_as!(
        LiveRole,
        r#"SELECT deleted_at IS NULL AS "live!", role FROM users WHERE id = $1"#,
        id,
    )
    .fetch_one(db::tx(conn))
    .await
}

/// A live row's id and role.
#[derive(Debug, Clone, FromRow)]
pub struct IdRole {
    pub id: Uuid,
    pub role: String,
}

/// [`IdRole`] of the live row of `cid`.
pub async fn live_id_and_role(
    pool: &PgPool,
    cid: &ClerkUserId,
) -> Result<Option<IdRole>, sqlx::Error> {
    sqlx::query_as!(
        IdRole,
        "SELECT id, role FROM users WHERE clerk_user_id = $1 AND deleted_at IS NULL",
        cid.as_str(),
    )
    .fetch_optional(db::on(pool))
    .await
}

/// The stored version of `cid`: `None` without a row, `Some(None)` for a row without one.
pub async fn version_of(
    pool: &PgPool,
    cid: &ClerkUserId,
) -> Result<Option<Option<i64>>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT clerk_updated_at FROM users WHERE clerk_user_id = $1",
        cid.as_str(),
    )
    .fetch_optional(db::on(pool))
    .await
}

/// The Clerk ids of live rows not written since `since`.
pub async fn live_unchanged_since(
    pool: &PgPool,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT clerk_user_id AS "clerk_user_id!" FROM users
           WHERE deleted_at IS NULL AND clerk_user_id IS NOT NULL AND updated_at < $1"#,
        since,
    )
    .fetch_all(db::on(pool))
    .await
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, FromRow)]
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
pub async fn find_live(pool: &PgPool, cid: &ClerkUserId) -> Result<Option<UserView>, sqlx::Error> {
    sqlx::query_as!(
        UserView,
        "SELECT id, clerk_user_id, email, email_verified, first_name, last_name, username, \
         image_url, role FROM users WHERE clerk_user_id = $1 AND deleted_at IS NULL",
        cid.as_str(),
    )
    .fetch_optional(db::on(pool))
    .await
}

/// The live user row-level security lets this transaction see (call as `authsync_user`, with
/// `authsync.clerk_user_id` set): no condition on the user here, the policy decides.
pub async fn visible(conn: &mut PgConnection) -> Result<Option<UserView>, sqlx::Error> {
    sqlx::query_as!(
        UserView,
        "SELECT id, clerk_user_id, email, email_verified, first_name, last_name, username, \
         image_url, role FROM users WHERE deleted_at IS NULL",
    )
    .fetch_optional(db::tx(conn))
    .await
}

/// A user as operators see it: any row, deleted ones and tombstones too.
#[derive(Debug, Clone, FromRow)]
pub struct OperatorView {
    pub id: Uuid,
    pub clerk_user_id: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub role: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub deleted_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The row of Clerk user `cid`, deleted or not.
pub async fn for_operator(pool: &PgPool, cid: &str) -> Result<Option<OperatorView>, sqlx::Error> {
    sqlx::query_as!(
        OperatorView,
        "SELECT id, clerk_user_id, email, email_verified, first_name, last_name, username, role, \
         created_at, updated_at, deleted_at FROM users WHERE clerk_user_id = $1",
        cid,
    )
    .fetch_optional(db::on(pool))
    .await
}

/// Users whose Clerk id is `q`, who are live members of organization `q`, or whose address
/// starts with `email_prefix` (lower-case), live ones first, then by address. Each condition
/// is an index scan: the prefix as a range on `users_email_prefix_idx` (`text_pattern_ops`
/// compares bytes; U+10FFFF sorts after any character), which a LIKE with a parameter would
/// not use once the plan is generic.
pub async fn search(
    pool: &PgPool,
    q: &str,
    email_prefix: &str,
    limit: i64,
) -> Result<Vec<OperatorView>, sqlx::Error> {
    sqlx::query_as!(
        OperatorView,
        r#"SELECT id, clerk_user_id, email, email_verified, first_name, last_name, username, role,
                  created_at, updated_at, deleted_at FROM users
           WHERE id IN (
             SELECT id FROM users WHERE clerk_user_id = $1
             UNION
             SELECT id FROM users WHERE email ~>=~ $2 AND email ~<~ ($2 || chr(1114111))
                                    AND starts_with(email, $2)
             UNION
             SELECT u.id FROM memberships m JOIN users u ON u.clerk_user_id = m.clerk_user_id
             WHERE m.clerk_org_id = $1 AND m.deleted_at IS NULL)
           ORDER BY deleted_at IS NOT NULL, email, clerk_user_id LIMIT $3"#,
        q,
        email_prefix,
        limit,
    )
    .fetch_all(db::on(pool))
    .await
}
