//! Retention deletes old finished work and keeps everything an operator may still need;
//! the schedule lets one run per period through however many workers try.

use jobs::audit::Origin;
use jobs::handlers::retention::Retention;
use tests::queue::Status;
use tests::*;

async fn exec(app: &TestApp, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(app.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn retention_keeps_what_it_must() {
    let app = TestApp::spawn().await;
    // Events: two old processed/ignored, one old failed, one old rejected, one recent processed.
    for (id, status, age) in [
        ("msg_old_ok", "processed", 40),
        ("msg_old_ign", "ignored", 40),
        ("msg_old_fail", "failed", 40),
        ("msg_old_rej", "rejected", 40),
        ("msg_new_ok", "processed", 1),
    ] {
        exec(&app, &format!("INSERT INTO webhook_events (svix_id, event_type, payload, status, received_at) VALUES ('{id}', 't', '{{}}', '{status}', now() - interval '{age} days')")).await;
    }
    // Jobs: old done, recent done, old killed, old dead (failed, no attempts left), old retrying.
    exec(&app, "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) VALUES ('w_dead', 'q', 's', '', now() - interval '3 days'), ('w_busy', 'q', 's', '', now() - interval '3 days'), ('w_live', 'q', 's', '', now())").await;
    for (id, status, attempts, age, lock) in [
        ("01J0000000000000000000DONE", Status::Done, (1, 5), 10, None),
        ("01J00000000000000000NEWDON", Status::Done, (1, 5), 1, None),
        (
            "01J0000000000000000KILLED0",
            Status::Killed,
            (1, 5),
            10,
            None,
        ),
        (
            "01J00000000000000000DEAD00",
            Status::Failed,
            (5, 5),
            10,
            None,
        ),
        (
            "01J0000000000000000RETRY00",
            Status::Failed,
            (1, 5),
            10,
            Some("w_busy"),
        ),
    ] {
        app.queue()
            .insert_stopped(id, status, attempts, age, lock)
            .await;
    }
    let job = Retention {
        jobs_older_than_secs: 7 * 86_400,
        events_older_than_secs: 30 * 86_400,
        origin: Origin::system(),
    };
    let deleted = jobs::handlers::retention::run(&app.ctx, &job)
        .await
        .unwrap();
    assert_eq!((deleted.jobs, deleted.events, deleted.workers), (1, 2, 1));

    let events: Vec<String> = sqlx::query_scalar("SELECT svix_id FROM webhook_events ORDER BY 1")
        .fetch_all(app.pool())
        .await
        .unwrap();
    assert_eq!(events, ["msg_new_ok", "msg_old_fail", "msg_old_rej"]);
    let jobs: Vec<String> = app
        .queue()
        .jobs(None)
        .await
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(
        jobs,
        [
            "01J00000000000000000DEAD00",
            "01J00000000000000000NEWDON",
            "01J0000000000000000KILLED0",
            "01J0000000000000000RETRY00"
        ]
    );
    let workers: Vec<String> = sqlx::query_scalar("SELECT id FROM apalis.workers ORDER BY 1")
        .fetch_all(app.pool())
        .await
        .unwrap();
    assert!(
        workers.contains(&"w_busy".to_owned())
            && workers.contains(&"w_live".to_owned())
            && !workers.contains(&"w_dead".to_owned()),
        "{workers:?}"
    );
    // Leave the queue clean for the harness' check.
    app.queue().delete_all().await;
}

#[tokio::test]
async fn one_run_per_period_however_many_workers_schedule_it() {
    let app = TestApp::spawn().await;
    let job = Retention {
        jobs_older_than_secs: 1,
        events_older_than_secs: 1,
        origin: Origin::system(),
    };
    let mut pushed = 0;
    for _ in 0..3 {
        if jobs::queue::enqueue_unique(app.pool(), &job, "retention:42")
            .await
            .unwrap()
        {
            pushed += 1;
        }
    }
    assert_eq!(pushed, 1);
    assert!(
        jobs::queue::enqueue_unique(app.pool(), &job, "retention:43")
            .await
            .unwrap(),
        "the next period runs again"
    );
    let report = app.drain().await;
    assert_eq!(report.succeeded, 2);
    let runs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'retention.run' AND actor = 'system'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(runs, 2);
}
