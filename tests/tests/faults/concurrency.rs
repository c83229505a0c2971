//! Links and cascades converge under concurrent delivery (issue 10, item 1): users, the
//! organizations they created and their creator memberships, all posted at once in a random
//! order to the real api and run by two worker processes; then half the organizations are
//! deleted while a membership of each, older than the deletion, is delivered at the same
//! moment. No membership may stay unlinked, none may stay live in a deleted organization, no
//! job may die, and the database must have detected no deadlock.

use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tests::processes::WorkerProcess;
use tests::queue::Queue;
use tests::*;

/// Clerk versions: every event of the first round is older than every deletion.
const CREATED_AT: i64 = 1_700_000_000_000;
const DELETED_AT: i64 = 1_700_000_900_000;

fn user_id(tag: &str, i: usize) -> String {
    format!("user_{tag}_{i}")
}

fn org_id(tag: &str, i: usize) -> String {
    format!("org_{tag}_{i}")
}

fn org_created(tag: &str, i: usize) -> Vec<u8> {
    let mut v = fixture_json("organization.created");
    v["data"]["id"] = json!(org_id(tag, i));
    v["data"]["slug"] = json!(format!("{tag}-{i}"));
    v["data"]["created_by"] = json!(user_id(tag, i));
    v["data"]["updated_at"] = json!(CREATED_AT + i as i64);
    v["timestamp"] = json!(CREATED_AT + i as i64);
    serde_json::to_vec(&v).unwrap()
}

fn org_deleted(tag: &str, i: usize) -> Vec<u8> {
    let mut v = fixture_json("organization.deleted");
    v["data"]["id"] = json!(org_id(tag, i));
    v["timestamp"] = json!(DELETED_AT + i as i64);
    serde_json::to_vec(&v).unwrap()
}

/// A membership of `user` in organization `i`, at Clerk version `at`.
fn membership(tag: &str, id: &str, i: usize, user: &str, role: &str, at: i64) -> Vec<u8> {
    let mut v = fixture_json("organizationMembership.created");
    let d = &mut v["data"];
    d["id"] = json!(id);
    d["organization"]["id"] = json!(org_id(tag, i));
    d["public_user_data"]["user_id"] = json!(user);
    d["role"] = json!(role);
    d["updated_at"] = json!(at);
    v["timestamp"] = json!(at);
    serde_json::to_vec(&v).unwrap()
}

/// Round one for `n` users: each user, the organization it created and its creator
/// membership (3n events).
fn round_one(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .flat_map(|i| {
            let user = user_id(tag, i);
            let email = format!("{tag}-{i}@example.com");
            [
                user_event(
                    "user.created",
                    &user,
                    Some(&email),
                    CREATED_AT + i as i64,
                    None,
                ),
                org_created(tag, i),
                membership(
                    tag,
                    &format!("orgmem_{tag}_{i}"),
                    i,
                    &user,
                    "org:admin",
                    CREATED_AT + i as i64,
                ),
            ]
        })
        .collect()
}

/// Round two: every organization gets a member who joined before the deletions (the next
/// user), delivered late; the organizations with `deleted[i]` are deleted at the same moment.
fn round_two(tag: &str, deleted: &[bool]) -> Vec<Vec<u8>> {
    let n = deleted.len();
    (0..n)
        .flat_map(|i| {
            let late = membership(
                tag,
                &format!("orgmem_{tag}_{i}_late"),
                i,
                &user_id(tag, (i + 1) % n),
                "org:member",
                CREATED_AT + 500_000 + i as i64,
            );
            std::iter::once(late).chain(deleted[i].then(|| org_deleted(tag, i)))
        })
        .collect()
}

/// Posts every body at the same moment, in the given order; each must be accepted.
async fn post_all_at_once(app: &TestApp, bodies: &[Vec<u8>]) {
    let sends = bodies.iter().map(|b| async move {
        let resp = app.post_webhook(&new_svix_id(), b).await;
        (resp.status(), resp.text().await.unwrap_or_default())
    });
    for (status, body) in futures::future::join_all(sends).await {
        assert_eq!(status, 202, "{body}");
    }
}

/// What a user of the service would check, for the organizations of `tag`.
#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
struct Outcome {
    memberships: i64,
    /// `organization_id` or `user_id` still NULL, or pointing at the wrong row.
    unlinked: i64,
    live_in_deleted_orgs: i64,
    live: i64,
    deleted_orgs: i64,
}

async fn outcome(pool: &sqlx::PgPool, tag: &str) -> Outcome {
    sqlx::query_as(
        "SELECT count(*) AS memberships, \
           count(*) FILTER (WHERE o.id IS DISTINCT FROM m.organization_id \
                               OR u.id IS DISTINCT FROM m.user_id) AS unlinked, \
           count(*) FILTER (WHERE o.deleted_at IS NOT NULL AND m.deleted_at IS NULL) AS live_in_deleted_orgs, \
           count(*) FILTER (WHERE m.deleted_at IS NULL) AS live, \
           (SELECT count(*) FROM organizations WHERE clerk_org_id LIKE 'org\\_' || $1 || '\\_%' \
              AND deleted_at IS NOT NULL) AS deleted_orgs \
         FROM memberships m \
         LEFT JOIN organizations o ON o.clerk_org_id = m.clerk_org_id \
         LEFT JOIN users u ON u.clerk_user_id = m.clerk_user_id \
         WHERE m.clerk_org_id LIKE 'org\\_' || $1 || '\\_%'",
    )
    .bind(tag)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Jobs that gave up, jobs that needed more than one attempt, and deadlocks Postgres detected
/// in this database so far.
async fn casualties(pool: &sqlx::PgPool) -> (i64, i64, i64) {
    let queue = Queue::on(pool);
    let deadlocks: i64 = sqlx::query_scalar(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    (queue.dead().await, queue.retried().await, deadlocks)
}

/// Both rounds for `tag`, each posted at once in the order `shuffle` gives, then the checks.
async fn scenario(
    app: &TestApp,
    tag: &str,
    deleted: &[bool],
    mut shuffle: impl FnMut(&mut Vec<Vec<u8>>),
) {
    let n = deleted.len();
    let started = Instant::now();
    let mut first = round_one(tag, n);
    shuffle(&mut first);
    post_all_at_once(app, &first).await;
    app.queue().wait_for_idle(Duration::from_secs(60)).await;
    let round_one_took = started.elapsed();
    eprintln!(
        "{tag}: round one, {} events, drained in {round_one_took:?}",
        first.len()
    );
    let after_first = outcome(app.pool(), tag).await;
    assert_eq!(
        (
            after_first.memberships,
            after_first.unlinked,
            after_first.live
        ),
        (n as i64, 0, n as i64),
        "after round one: {after_first:?}"
    );

    let mut second = round_two(tag, deleted);
    shuffle(&mut second);
    post_all_at_once(app, &second).await;
    app.queue().wait_for_idle(Duration::from_secs(60)).await;
    eprintln!(
        "{tag}: both rounds, {} events, drained in {:?}",
        first.len() + second.len(),
        started.elapsed()
    );

    let gone = deleted.iter().filter(|d| **d).count() as i64;
    assert_eq!(
        outcome(app.pool(), tag).await,
        Outcome {
            memberships: 2 * n as i64,
            unlinked: 0,
            live_in_deleted_orgs: 0,
            live: 2 * (n as i64 - gone),
            deleted_orgs: gone,
        }
    );
    let (dead, retried, deadlocks) = casualties(app.pool()).await;
    assert_eq!(dead, 0, "no job gave up");
    assert_eq!(deadlocks, 0, "no deadlock was detected");
    eprintln!("{tag}: {retried} jobs needed a retry");
}

/// Two worker processes, each running 8 jobs of a queue at once (and holding 12 connections
/// rather than the default 20: the test server is shared).
fn two_workers(app: &TestApp) -> [WorkerProcess; 2] {
    let env = [("WORKER_CONCURRENCY", "8")];
    [
        WorkerProcess::start(&app.db.url, &env),
        WorkerProcess::start(&app.db.url, &env),
    ]
}

#[tokio::test]
async fn concurrent_users_orgs_memberships_and_deletions_converge() {
    let app = TestApp::spawn().await;
    let _workers = two_workers(&app); // killed when dropped, also when an assertion fails
    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    let deleted: Vec<bool> = (0..40).map(|i| i % 2 == 0).collect();
    scenario(&app, "fixed", &deleted, |events| events.shuffle(&mut rng)).await;
}

/// The same over orderings proptest chooses (and shrinks): how many users, the order of each
/// round, and which organizations are deleted.
#[test]
fn any_delivery_order_converges() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(TestApp::spawn());
    let _workers = two_workers(&app);
    let case = AtomicU32::new(0);
    let config = ProptestConfig {
        cases: 8,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        (deleted, first, second) in (3usize..10).prop_flat_map(|n| (
            prop::collection::vec(any::<bool>(), n),
            Just((0..3 * n).collect::<Vec<usize>>()).prop_shuffle(),
            Just((0..2 * n).collect::<Vec<usize>>()).prop_shuffle(),
        ))
    )| {
        let tag = format!("p{}", case.fetch_add(1, Ordering::Relaxed));
        // Round one has 3n events; round two n + (number deleted): the permutation of 2n is
        // cut down to the indices that exist.
        let orders = [first, second];
        let mut round = 0;
        rt.block_on(scenario(&app, &tag, &deleted, |events| {
            let order: Vec<usize> = orders[round].iter().copied().filter(|i| *i < events.len()).collect();
            round += 1;
            *events = order.into_iter().map(|i| events[i].clone()).collect();
        }));
    });
}
