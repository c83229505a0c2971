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
        assert_eq!(app.post_webhook(&new_svix_id(), &body).await.status(), 202);
    }
    for i in 0..200 {
        let body = user_event(
            "user.created",
            &format!("user_free{i}"),
            Some(&format!("f{i}@example.com")),
            1,
            None,
        );
        assert_eq!(app.post_webhook(&new_svix_id(), &body).await.status(), 202);
    }
    // Wait until A holds the blocked jobs.
    let start = Instant::now();
    loop {
        let running = app.queue().claimed().await;
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
    app.queue().wait_for_idle(Duration::from_secs(150)).await;
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
    let requeued = app.queue().retried().await;
    assert!(
        requeued >= blocked.len() as i64,
        "the blocked jobs ran again after recovery"
    );
}

/// The header `name` of a raw message (first occurrence), unfolded.
fn header(data: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    data.lines()
        .take_while(|l| !l.is_empty())
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_owned())
}

/// Workers killed with SIGKILL again and again while a stream of a few thousand events comes
/// in: every user is provisioned once, no job is left behind, and every user gets exactly one
/// welcome email over a real SMTP conversation.
#[tokio::test]
async fn repeated_kill_9_during_a_stream_loses_and_doubles_nothing() {
    const EVENTS: usize = 2000;
    let app = TestApp::spawn().await;
    let sink = tests::smtp_sink::SmtpSink::start().await;
    let smtp = sink.url();
    let env = [
        ("SMTP_URL", smtp.as_str()),
        ("MAIL_FROM", "Authsync <hello@authsync.test>"),
    ];
    let mut workers = [
        WorkerProcess::start(&app.db.url, &env),
        WorkerProcess::start(&app.db.url, &env),
    ];
    // The stream: 8 senders posting distinct users as fast as the api takes them.
    let stream = {
        let (client, address) = (app.client.clone(), app.address.clone());
        tokio::spawn(async move {
            let senders = (0..8).map(|s| {
                let (client, address) = (client.clone(), address.clone());
                tokio::spawn(async move {
                    for i in (s..EVENTS).step_by(8) {
                        let body = user_event(
                            "user.created",
                            &format!("user_stream{i}"),
                            Some(&format!("s{i}@example.com")),
                            1,
                            None,
                        );
                        let req = signed_webhook(&client, &address, &new_svix_id(), &body);
                        let status = req.send().await.unwrap().status();
                        assert_eq!(status, 202, "event {i}");
                    }
                })
            });
            for s in futures::future::join_all(senders).await {
                s.unwrap();
            }
        })
    };
    // Kill a worker every second while the stream runs (at least 8, at most 20 times);
    // replace it at once.
    let mut kills = 0;
    let started = Instant::now();
    while (!stream.is_finished() && kills < 20) || kills < 8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let victim = kills % workers.len();
        workers[victim].kill_9();
        workers[victim] = WorkerProcess::start(&app.db.url, &env);
        kills += 1;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the stream did not finish"
        );
    }
    stream.await.unwrap();
    // Orphans are recovered once their worker is silent for 20 s; claimed mails after the
    // 45 s lease.
    app.queue().wait_for_idle(Duration::from_secs(240)).await;
    eprintln!(
        "{kills} workers killed; drained after {:?}",
        started.elapsed()
    );

    assert_eq!(users(app.pool()).await.len(), EVENTS, "every user, once");
    let (processed, total): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'processed'), count(*) FROM webhook_events",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!((processed, total), (EVENTS as i64, EVENTS as i64));
    let unfinished = app.queue().unfinished(None).await;
    assert_eq!(unfinished, 0, "no job stuck");

    // One welcome email per user: one Message-ID per recipient, none missing.
    let mut by_recipient: std::collections::HashMap<String, std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    let received = sink.received();
    for mail in &received {
        let to = mail.to.join(",");
        let id = header(&mail.data, "Message-ID").expect("every mail has a Message-ID");
        by_recipient.entry(to).or_default().insert(id);
    }
    assert_eq!(by_recipient.len(), EVENTS, "every user got a welcome email");
    let doubled: Vec<_> = by_recipient
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    assert!(
        doubled.is_empty(),
        "different welcome emails for one user: {doubled:?}"
    );
    // A kill between the server's "250 OK" and our commit re-delivers the same message
    // (same Message-ID, which mail systems collapse); report how often that happened.
    eprintln!(
        "{} deliveries for {} users ({} re-deliveries of the same message)",
        received.len(),
        EVENTS,
        received.len() - EVENTS
    );
}
