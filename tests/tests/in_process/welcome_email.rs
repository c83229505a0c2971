//! SendWelcomeEmail over a real SMTP conversation with a local sink: exactly once per new user
//! with an address, whatever duplicates and retries happen; SMTP outages back off and recover.

use jobs::mail::SmtpMailer;
use std::sync::Arc;
use tests::queue::Status;
use tests::smtp_sink::SmtpSink;
use tests::*;

async fn app_with_mail(sink: &SmtpSink) -> TestApp {
    let mut app = TestApp::spawn().await;
    let mailer = SmtpMailer::new(
        &sink.url(),
        "authsync <welcome@authsync.test>".parse().unwrap(),
    )
    .unwrap();
    app.ctx = app.ctx.clone().with_mailer(Arc::new(mailer));
    app
}

async fn make_all_due(app: &TestApp) {
    app.queue().make_failed_due().await;
}

#[tokio::test]
async fn twenty_users_with_duplicate_deliveries_get_exactly_twenty_mails() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink).await;
    let mut deliveries = Vec::new();
    for i in 0..20 {
        let body = user_event(
            "user.created",
            &format!("user_w{i}"),
            Some(&format!("w{i}@example.com")),
            1,
            None,
        );
        deliveries.push((new_svix_id(), body.clone()));
        // Clerk re-sends some events under a new delivery, and Svix repeats others.
        deliveries.push((new_svix_id(), body.clone()));
        if i % 3 == 0 {
            let again = deliveries.last().unwrap().clone();
            deliveries.push(again);
        }
        // Updates never send a welcome email.
        deliveries.push((
            new_svix_id(),
            user_event(
                "user.updated",
                &format!("user_w{i}"),
                Some(&format!("w{i}@example.com")),
                2,
                None,
            ),
        ));
    }
    for (id, body) in &deliveries {
        assert!(app.post_webhook(id, body).await.status().is_success());
    }
    // A phone-only user gets nothing.
    assert!(app
        .post_webhook(&new_svix_id(), &fixture("user.created.no-email"))
        .await
        .status()
        .is_success());
    app.drain().await;

    let mails = sink.received();
    assert_eq!(
        mails.len(),
        20,
        "{:#?}",
        mails.iter().map(|m| &m.to).collect::<Vec<_>>()
    );
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("w{i}@example.com")).collect();
    want.sort();
    assert_eq!(to, want);
    let m = &mails[0];
    assert_eq!(m.from, "welcome@authsync.test");
    assert!(m.data.contains("Subject: Welcome aboard"));
    assert!(
        m.data.contains("Content-Type: text/plain") && m.data.contains("Content-Type: text/html")
    );
    // The current first name at send time (the snapshot versions name it First1, First2).
    assert!(
        m.data.contains("Welcome, First1!") || m.data.contains("Welcome, First2!"),
        "greets by name: {}",
        m.data
    );
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM sent_emails WHERE status = 'sent'")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(sent, 20);
}

#[tokio::test]
async fn an_smtp_outage_is_retried_then_the_mail_is_sent_once() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink).await;
    sink.refuse(2);
    assert_eq!(
        app.post_webhook(&new_svix_id(), &fixture("user.created"))
            .await
            .status(),
        202
    );
    let first = app.drain().await;
    assert_eq!(first.retrying, 1, "{first:?}");
    let welcome = app.queue().jobs(Some("authsync.send_welcome_email")).await;
    assert_eq!(welcome[0].status, Status::Failed);
    assert!(
        welcome[0].error().unwrap().contains("451"),
        "the SMTP refusal is visible"
    );
    make_all_due(&app).await;
    assert_eq!(app.drain().await.retrying, 1);
    make_all_due(&app).await;
    assert_eq!(app.drain().await.succeeded, 1);
    assert_eq!(sink.refused(), 2);
    assert_eq!(sink.received().len(), 1);
    // Running the job again (a duplicate) sends nothing more.
    app.queue().requeue("authsync.send_welcome_email").await;
    app.drain().await;
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test]
async fn a_claim_left_by_a_crashed_worker_is_taken_over_after_the_lease() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink).await;
    assert_eq!(
        app.post_webhook(&new_svix_id(), &fixture("user.created"))
            .await
            .status(),
        202
    );
    // Provision only; then pretend a worker claimed the mail and died before sending.
    let user: uuid::Uuid = {
        let report = app.drain().await;
        assert_eq!(report.succeeded, 2);
        sqlx::query_scalar("SELECT id FROM users")
            .fetch_one(app.pool())
            .await
            .unwrap()
    };
    assert_eq!(sink.received().len(), 1);
    sqlx::query("UPDATE sent_emails SET status = 'sending', claimed_at = now() WHERE user_id = $1")
        .bind(user)
        .execute(app.pool())
        .await
        .unwrap();
    app.queue().requeue("authsync.send_welcome_email").await;
    // Within the lease: nobody else sends; the job waits.
    assert_eq!(app.drain().await.retrying, 1);
    assert_eq!(sink.received().len(), 1);
    // After the lease: taken over and sent.
    sqlx::query("UPDATE sent_emails SET claimed_at = now() - interval '1 hour' WHERE user_id = $1")
        .bind(user)
        .execute(app.pool())
        .await
        .unwrap();
    make_all_due(&app).await;
    assert_eq!(app.drain().await.succeeded, 1);
    assert_eq!(sink.received().len(), 2, "the lost send is made up for");
}

/// `body` with its primary address not verified (yet), as Clerk reports one.
fn unverified(body: Vec<u8>) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["data"]["email_addresses"][0]["verification"]["status"] = "unverified".into();
    serde_json::to_vec(&v).unwrap()
}

/// Issue 10, item 6: the welcome mail waits until the primary address is verified, goes with
/// the update that verifies it, and still goes exactly once.
#[tokio::test]
async fn the_welcome_mail_waits_for_a_verified_address_and_goes_once() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink).await;
    let ev = |kind: &str, id: &str, addr: &str, at: i64| user_event(kind, id, Some(addr), at, None);
    // Each case: its user's deliveries (a repeated svix id is a Svix re-delivery), each with
    // the number of welcome mails its address has received once it has run.
    type Step = (Option<&'static str>, Vec<u8>, usize);
    let cases: Vec<(&str, &str, Vec<Step>)> = vec![
        (
            "unverified: nothing is sent",
            "u1@example.com",
            vec![(
                None,
                unverified(ev("user.created", "user_v1", "u1@example.com", 1)),
                0,
            )],
        ),
        (
            "sent on the update that verifies the address",
            "u2@example.com",
            vec![
                (
                    None,
                    unverified(ev("user.created", "user_v2", "u2@example.com", 1)),
                    0,
                ),
                (
                    None,
                    unverified(ev("user.updated", "user_v2", "u2@example.com", 2)),
                    0,
                ),
                (None, ev("user.updated", "user_v2", "u2@example.com", 3), 1),
                (None, ev("user.updated", "user_v2", "u2@example.com", 4), 1),
            ],
        ),
        (
            "the verifying update delivered twice, by Svix and by Clerk",
            "u3@example.com",
            vec![
                (
                    None,
                    unverified(ev("user.created", "user_v3", "u3@example.com", 1)),
                    0,
                ),
                (
                    Some("msg_verify_v3"),
                    ev("user.updated", "user_v3", "u3@example.com", 2),
                    1,
                ),
                (
                    Some("msg_verify_v3"),
                    ev("user.updated", "user_v3", "u3@example.com", 2),
                    1,
                ),
                (None, ev("user.updated", "user_v3", "u3@example.com", 2), 1),
            ],
        ),
        (
            "the verifying update before the create",
            "u4@example.com",
            vec![
                (None, ev("user.updated", "user_v4", "u4@example.com", 2), 1),
                (
                    None,
                    unverified(ev("user.created", "user_v4", "u4@example.com", 1)),
                    1,
                ),
            ],
        ),
        (
            "verified, moved to an unverified address, verified again: still one mail",
            "u5@example.com",
            vec![
                (None, ev("user.created", "user_v5", "u5@example.com", 1), 1),
                (
                    None,
                    unverified(ev("user.updated", "user_v5", "u5b@example.com", 2)),
                    1,
                ),
                (None, ev("user.updated", "user_v5", "u5@example.com", 3), 1),
            ],
        ),
        (
            "a Google sign-up arrives verified",
            "carol@example.com",
            vec![(None, fixture("user.created.oauth-google"), 1)],
        ),
    ];
    for (name, addr, steps) in cases {
        for (i, (svix_id, body, mails)) in steps.into_iter().enumerate() {
            let svix_id = svix_id.map_or_else(new_svix_id, str::to_owned);
            assert!(app
                .post_webhook(&svix_id, &body)
                .await
                .status()
                .is_success());
            let report = app.drain().await;
            assert_eq!(
                (report.retrying, report.exhausted, report.killed),
                (0, 0, 0)
            );
            let sent = sink
                .received()
                .iter()
                .filter(|m| {
                    m.to.iter()
                        .any(|t| t.starts_with(addr.split('@').next().unwrap()))
                })
                .count();
            assert_eq!(sent, mails, "{name}, after step {i}");
        }
    }
}
