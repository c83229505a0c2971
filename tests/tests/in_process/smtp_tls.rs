//! Welcome mail over STARTTLS (`smtp://…?tls=required`) and implicit TLS (`smtps://`)
//! against the local SMTP sink with a certificate authority made for each test, trusted
//! through `SMTP_CA_FILE`. A certificate the client must refuse (another host name, or an
//! authority nobody configured) fails the attempt retryably, with a clear error, and nothing
//! is sent.

use jobs::config::Env;
use jobs::mail::SmtpMailer;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::sync::Arc;
use tests::queue::Status;
use tests::smtp_sink::{SinkTls, SmtpSink};
use tests::*;

/// A certificate authority of the test's own.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate for `names`: (chain in DER, leaf first; PKCS#8 key in DER).
    fn server_cert(&self, names: &[&str]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (vec![cert.der().to_vec()], key.serialize_der())
    }

    /// The authority's certificate as a file, read back the way the worker reads
    /// `SMTP_CA_FILE`.
    fn as_configured(&self) -> Vec<u8> {
        let path = std::env::temp_dir().join(format!("authsync-ca-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&path, &self.pem).unwrap();
        let value = path.to_str().unwrap().to_owned();
        let env = Env(move |k: &str| (k == "SMTP_CA_FILE").then(|| value.clone()));
        let roots = jobs::config::smtp_ca_file(&env).unwrap().unwrap();
        let _ = std::fs::remove_file(&path);
        roots
    }
}

async fn app_with_mail(sink: &SmtpSink, roots: Option<&[u8]>) -> TestApp {
    let mut app = TestApp::spawn().await;
    let mailer = SmtpMailer::with_roots(
        &sink.url(),
        "authsync <welcome@authsync.test>".parse().unwrap(),
        roots,
    )
    .unwrap();
    app.ctx = app.ctx.clone().with_mailer(Arc::new(mailer));
    app
}

async fn sign_up(app: &TestApp) {
    let resp = app
        .post_webhook(&new_svix_id(), &fixture("user.created"))
        .await;
    assert_eq!(resp.status(), 202);
}

/// The welcome job's status and last error.
async fn welcome_job(app: &TestApp) -> (Status, String) {
    let jobs = app.queue().jobs(Some("authsync.send_welcome_email")).await;
    let [job] = jobs.as_slice() else {
        panic!("one welcome job: {jobs:?}")
    };
    (
        job.status.clone(),
        job.error().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn welcome_mail_goes_over_starttls_and_implicit_tls_with_a_configured_ca() {
    for mode in [SinkTls::StartTls, SinkTls::Implicit] {
        let ca = TestCa::new("authsync test CA");
        let (chain, key) = ca.server_cert(&["127.0.0.1"]);
        let sink = SmtpSink::start_tls(mode, chain, key).await;
        let app = app_with_mail(&sink, Some(&ca.as_configured())).await;

        sign_up(&app).await;
        let report = app.drain().await;

        assert_eq!(report.succeeded, 2, "{mode:?}: {report:?}");
        let mails = sink.received();
        assert_eq!(mails.len(), 1, "{mode:?}");
        assert!(mails[0].tls, "{mode:?}: the message travelled encrypted");
        assert_eq!(mails[0].to, vec!["alice@example.com".to_owned()]);
        assert_eq!(sink.tls_failures(), 0);
    }
}

#[tokio::test]
async fn a_certificate_the_client_must_refuse_fails_retryably_and_sends_nothing() {
    let trusted = TestCa::new("authsync test CA");
    let stranger = TestCa::new("someone else's CA");
    let cases = [
        (
            "another host name, STARTTLS",
            SinkTls::StartTls,
            trusted.server_cert(&["mail.authsync.test"]),
        ),
        (
            "another host name, implicit TLS",
            SinkTls::Implicit,
            trusted.server_cert(&["mail.authsync.test"]),
        ),
        (
            "untrusted authority, STARTTLS",
            SinkTls::StartTls,
            stranger.server_cert(&["127.0.0.1"]),
        ),
        (
            "untrusted authority, implicit TLS",
            SinkTls::Implicit,
            stranger.server_cert(&["127.0.0.1"]),
        ),
    ];
    for (name, mode, (chain, key)) in cases {
        let sink = SmtpSink::start_tls(mode, chain, key).await;
        let mut app = app_with_mail(&sink, Some(&trusted.as_configured())).await;

        sign_up(&app).await;
        let report = app.drain().await;

        assert_eq!(
            (report.succeeded, report.retrying),
            (1, 1),
            "{name}: {report:?}"
        );
        let (status, err) = welcome_job(&app).await;
        assert_eq!(status, Status::Failed, "{name}: retried later, not dead");
        assert!(
            err.contains("will retry") && err.contains("SMTP_CA_FILE"),
            "{name}: a clear error: {err}"
        );
        assert!(sink.received().is_empty(), "{name}: nothing sent");
        assert_eq!(
            sink.tls_failures(),
            1,
            "{name}: the client ended the handshake"
        );
        let sent: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sent_emails WHERE status = 'sent'")
                .fetch_one(app.pool())
                .await
                .unwrap();
        assert_eq!(sent, 0, "{name}");
        app.allow_unfinished_jobs = true;
    }
}

#[tokio::test]
async fn without_smtp_ca_file_a_private_authority_is_not_trusted() {
    let ca = TestCa::new("authsync test CA");
    let (chain, key) = ca.server_cert(&["127.0.0.1"]);
    let sink = SmtpSink::start_tls(SinkTls::StartTls, chain, key).await;
    let mut app = app_with_mail(&sink, None).await;

    sign_up(&app).await;
    assert_eq!(app.drain().await.retrying, 1);

    assert!(sink.received().is_empty());
    assert!(welcome_job(&app).await.1.contains("certificate"));
    app.allow_unfinished_jobs = true;
}
