//! Whatever order and duplication a user's events arrive in, the final row equals applying
//! them in Clerk `updated_at` order (README, How correctness is kept: at-least-once in, exactly-once effect).

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use std::sync::atomic::{AtomicU32, Ordering};
use tests::*;

/// One user's history: (version, email choice, admin?) updates, then maybe a delete.
#[derive(Debug, Clone)]
struct History {
    updates: Vec<(i64, Option<u8>, bool)>,
    delete_at: Option<i64>,
}

fn history() -> impl Strategy<Value = History> {
    (
        prop::collection::vec((1i64..1000, prop::option::of(0u8..3), any::<bool>()), 1..6),
        any::<bool>(),
    )
        .prop_map(|(mut ups, del)| {
            ups.sort_by_key(|u| u.0);
            ups.dedup_by_key(|u| u.0);
            let last = ups.last().unwrap().0;
            History {
                updates: ups,
                delete_at: del.then_some(last + 1),
            }
        })
}

/// The events of `h` for user `tag` (emails are unique to the tag).
fn events(h: &History, tag: &str) -> Vec<Vec<u8>> {
    let clerk = format!("user_{tag}");
    let mut out: Vec<Vec<u8>> = h
        .updates
        .iter()
        .enumerate()
        .map(|(i, (v, email, admin))| {
            let email = email.map(|e| format!("{tag}-{e}@example.com"));
            let kind = if i == 0 {
                "user.created"
            } else {
                "user.updated"
            };
            user_event(kind, &clerk, email.as_deref(), *v, admin.then_some("admin"))
        })
        .collect();
    if let Some(t) = h.delete_at {
        out.push(user_deleted(&clerk, t));
    }
    out
}

/// The row with the tag taken out, so two tags' rows compare.
fn normalised(row: Option<UserRow>, tag: &str) -> Option<UserRow> {
    row.map(|mut r| {
        r.clerk_user_id = None;
        r.email = r.email.map(|e| e.replace(tag, "T"));
        r
    })
}

#[test]
fn any_order_with_duplicates_converges_to_in_order_application() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    let ctx = jobs::JobContext::new(db.pool.clone());
    let case = AtomicU32::new(0);
    let config = ProptestConfig {
        cases: 48,
        // Beside this file (convergence.proptest-regressions): the default would look under
        // tests/tests/proptest-regressions/, since faults/ has a main.rs.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    };
    proptest!(config, |(h in history(), seed in any::<u64>(), dups in prop::collection::vec(any::<prop::sample::Index>(), 0..6))| {
        let case = case.fetch_add(1, Ordering::Relaxed);
        let (ordered_tag, shuffled_tag) = (format!("o{case}"), format!("s{case}"));
        rt.block_on(async {
            for (i, body) in events(&h, &ordered_tag).iter().enumerate() {
                apply_directly(&ctx, &format!("msg_{ordered_tag}_{i}"), body).await;
            }
            let mut shuffled: Vec<Vec<u8>> = events(&h, &shuffled_tag);
            for d in &dups {
                let extra = shuffled[d.index(shuffled.len())].clone();
                shuffled.push(extra);
            }
            shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            for (i, body) in shuffled.iter().enumerate() {
                apply_directly(&ctx, &format!("msg_{shuffled_tag}_{i}"), body).await;
            }
        });
        let pool = &db.pool;
        let (a, b) = rt.block_on(async {
            (user(pool, &format!("user_{ordered_tag}")).await, user(pool, &format!("user_{shuffled_tag}")).await)
        });
        prop_assert!(a.is_some());
        prop_assert_eq!(normalised(a, &ordered_tag), normalised(b, &shuffled_tag));
    });
}

/// The same through HTTP: a few hundred shuffled, partly re-delivered events, two worker
/// processes, compared with the same events applied one by one in order.
#[tokio::test]
async fn shuffled_deliveries_through_http_and_two_workers_converge() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut in_order: Vec<Vec<u8>> = Vec::new();
    for u in 0..40 {
        let updates = (0..5)
            .map(|i| (100 + i * 10, Some(((u + i) % 3) as u8), (u + i) % 4 == 0))
            .collect();
        let h = History {
            updates,
            delete_at: (u % 5 == 0).then_some(200),
        };
        in_order.extend(events(&h, &format!("h{u}")));
    }

    // Expected: one by one, in version order.
    let expected_app = TestApp::spawn().await;
    for body in &in_order {
        assert!(expected_app
            .post_webhook(&new_svix_id(), body)
            .await
            .status()
            .is_success());
        expected_app.drain().await;
    }

    // Actual: shuffled, 10% re-delivered under the same svix-id, 8 at a time, two workers.
    let app = TestApp::spawn().await;
    let mut deliveries: Vec<(String, Vec<u8>)> = in_order
        .iter()
        .map(|b| (new_svix_id(), b.clone()))
        .collect();
    let redeliveries: Vec<(String, Vec<u8>)> = deliveries
        .choose_multiple(&mut rng, in_order.len() / 10)
        .cloned()
        .collect();
    deliveries.extend(redeliveries);
    deliveries.shuffle(&mut rng);
    let mut workers = [
        processes::WorkerProcess::start(&app.db.url, &[]),
        processes::WorkerProcess::start(&app.db.url, &[]),
    ];
    let mut accepted = 0;
    for chunk in deliveries.chunks(8) {
        let sends = chunk.iter().map(|(id, body)| app.post_webhook(id, body));
        for resp in futures::future::join_all(sends).await {
            match resp.status().as_u16() {
                202 => accepted += 1,
                200 => {}
                s => panic!("delivery answered {s}"),
            }
        }
    }
    assert_eq!(
        accepted,
        in_order.len(),
        "each distinct svix-id accepted once"
    );
    app.queue()
        .wait_for_idle(std::time::Duration::from_secs(120))
        .await;
    for w in &mut workers {
        assert!(w.terminate().success(), "worker exits cleanly on SIGTERM");
    }

    assert_eq!(users(app.pool()).await, users(expected_app.pool()).await);
    let unprocessed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE status <> 'processed'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(unprocessed, 0);
}
