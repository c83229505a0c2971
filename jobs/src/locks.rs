//! The advisory locks every write to `users`, `organizations` and `memberships` takes, and
//! the one order they are taken in.
//!
//! A membership row links an organization and a user, and each of the three is written by
//! its own job. When each writer locked only its own Clerk id, an organization being created
//! and a membership of it being inserted at the same moment could each miss the other's
//! uncommitted row, and the link stayed NULL for good (likewise user ↔ membership, and an
//! organization deleted while a membership of it was inserted). Now a membership write also
//! takes its organization's and its user's locks, *shared*: it waits for a writer of either
//! to commit (and then reads its row), and a writer of either waits for it (and then sees
//! the membership), while memberships of one organization still run side by side.
//!
//! We chose locks over links resolved by a join at read time because the stored uuid links
//! are part of the public contract (apps join on `memberships.organization_id`) and row-level
//! security already reads them. The locks cost no extra round trip (all of a write's locks
//! are one statement). Measured with `tests/tests/faults/concurrency.rs` (40 users, organizations
//! and memberships posted at once, two debug-build workers, a shared 2-core machine): round
//! one drained in 2.4–3.1 s before and 2.0–3.2 s after, both rounds in 3.1–4.1 s before and
//! 2.9–3.9 s after: no difference beyond noise, and none of the 10 lost links and 3–5 live
//! memberships in deleted organizations the old code left.
//!
//! **Order** (never the reverse, so two writers cannot wait on each other in a cycle:
//! deadlocks stay exceptional): organization → user → email address → membership, whatever
//! order the caller lists them in. Every transaction of ours locks at most one key of each
//! kind. Personal organizations (`personal_<user id>`) are written only in their user's
//! transaction, under the user's lock: no Clerk event can name them.
//!
//! Only transaction-scoped locks (`pg_advisory_xact_lock*`): they end with the transaction,
//! so they work behind a transaction-mode pooler, and a crash cannot leave one held.

use sqlx::PgConnection;

/// What a lock guards; the variant order is the lock order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key<'a> {
    /// A Clerk organization id (`org_…`).
    Org(&'a str),
    /// A Clerk user id (`user_…`).
    User(&'a str),
    /// A (lower-cased) primary email address: two users claiming it serialise.
    Email(&'a str),
    /// A Clerk membership id (`orgmem_…`).
    Membership(&'a str),
}

impl Key<'_> {
    /// The text hashed into the lock id. Clerk ids carry their kind in their prefix and are
    /// hashed as they are (an operator or a test can take the same lock by the bare id);
    /// addresses get a prefix of their own.
    fn text(&self) -> String {
        match self {
            Key::Org(id) | Key::User(id) | Key::Membership(id) => (*id).to_owned(),
            Key::Email(addr) => format!("email:{addr}"),
        }
    }
}

/// How a lock is held: exclusive for the writer of the row itself, shared for a writer that
/// only links to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// Takes `locks` in the fixed order (see the module header) in one statement, and holds them
/// until the transaction ends. Call before reading the rows they guard: in READ COMMITTED,
/// the next statement then sees what the previous holder committed.
pub async fn take(conn: &mut PgConnection, locks: &[(Key<'_>, Mode)]) -> Result<(), sqlx::Error> {
    let mut sorted = locks.to_vec();
    sorted.sort_by_key(|(key, _)| *key);
    let keys: Vec<String> = sorted.iter().map(|(k, _)| k.text()).collect();
    let shared: Vec<bool> = sorted.iter().map(|(_, m)| *m == Mode::Shared).collect();
    crate::db::query(
        "SELECT CASE WHEN s THEN pg_advisory_xact_lock_shared(hashtextextended(k, 0)) \
                     ELSE pg_advisory_xact_lock(hashtextextended(k, 0)) END \
         FROM (SELECT k, s FROM unnest($1::text[], $2::bool[]) WITH ORDINALITY AS t(k, s, n) \
               ORDER BY n) ordered",
    )
    .bind(keys)
    .bind(shared)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_into_the_lock_order_whatever_their_ids() {
        let mut keys = vec![
            Key::Membership("a"),
            Key::Email("a@example.com"),
            Key::User("user_z"),
            Key::Org("org_z"),
        ];
        keys.sort();
        assert_eq!(
            keys,
            [
                Key::Org("org_z"),
                Key::User("user_z"),
                Key::Email("a@example.com"),
                Key::Membership("a"),
            ]
        );
    }

    #[test]
    fn addresses_do_not_share_lock_ids_with_clerk_ids() {
        assert_eq!(Key::User("user_1").text(), "user_1");
        assert_eq!(Key::Email("user_1").text(), "email:user_1");
    }
}
