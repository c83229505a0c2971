//! kill -9 of a worker with jobs in flight: another live worker finishes them, nothing lost.

use std::time::{Duration, Instant};
use tests::processes::WorkerProcess;
use tests::*;

#[tokio::test]
async fn jobs_of_a_killed_worker_are_finished_by_another() {
    let app = TestApp::spawn().await;
    // Hold the per-user lock the handlers take, so worker A's jobs for these users block
    // mid-transaction: they are certainly in flight when A dies.
    let blocked: Vec<String> = (0..5).map(|i| format!("user_blocked{i}")).collect();
    let mut holder = app.pool().begin().await.unwrap();
    for id in &blocked {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(id)
            .execute(&mut *holder)
            .await
            .unwrap();
    }
    let mail_dir = std::env::temp_dir().join(format!("authsync-crash-mail-{}", app.db.name));
    let mail_env = [("MAIL_DIR", mail_dir.to_str().unwrap())];
    let mut a = WorkerProcess::start(&app.db.url, &mail_env);
    for (i, id) in blocked.iter().enumerate() {
        let body = user_event(
            "user.created",
            id,
            Some(&format!("b{i}@example.com")),
            1,
            None,
        );
        assert_eq!(app.post_signed(&new_svix_id(), &body).await.status(), 202);
    }
    for i in 0..200 {
        let body = user_event(
            "user.created",
            &format!("user_free{i}"),
            Some(&format!("f{i}@example.com")),
            1,
            None,
        );
        assert_eq!(app.post_signed(&new_svix_id(), &body).await.status(), 202);
    }
    // Wait until A holds the blocked jobs.
    let start = Instant::now();
    loop {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM apalis.jobs WHERE status = 'Running' AND lock_by IS NOT NULL",
        )
        .fetch_one(app.pool())
        .await
        .unwrap();
        if running >= blocked.len() as i64 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "worker A never started the blocked jobs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.kill_9();
    holder.rollback().await.unwrap();

    let _b = WorkerProcess::start(&app.db.url, &mail_env);
    let recovered_by = Instant::now();
    wait_for_idle_queue(app.pool(), Duration::from_secs(150)).await;
    eprintln!("orphaned jobs recovered in {:?}", recovered_by.elapsed());

    let rows = users(app.pool()).await;
    assert_eq!(rows.len(), 205, "every user provisioned once");
    for id in &blocked {
        assert!(
            rows.iter()
                .any(|r| r.clerk_user_id.as_deref() == Some(id.as_str())),
            "{id} missing"
        );
    }
    let (processed, total): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'processed'), count(*) FROM webhook_events",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(processed, total);
    // Every new user's welcome email went out (as .eml files here): none lost to the crash.
    let mut recipients: Vec<String> = std::fs::read_dir(&mail_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .filter_map(|m| {
            m.lines()
                .find(|l| l.starts_with("To: "))
                .map(|l| l[4..].trim().to_owned())
        })
        .collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), 205);
    let _ = std::fs::remove_dir_all(&mail_dir);
    let requeued: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE attempts > 1")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert!(
        requeued >= blocked.len() as i64,
        "the blocked jobs ran again after recovery"
    );
}
