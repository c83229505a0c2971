//! Outgoing mail behind a small trait: SMTP through lettre (`SMTP_URL`: `smtp://` plain or
//! with `?tls=required` for STARTTLS, `smtps://` for TLS — Resend's SMTP service works), or,
//! without `SMTP_URL`, `.eml` files written to a local folder for development.
//!
//! TLS checks the server's certificate against the built-in web roots plus any PEM roots from
//! `SMTP_CA_FILE` (a company relay with its own CA); a certificate that does not verify, or is
//! for another host name, fails the attempt before anything is sent, and the job retries.

pub mod welcome;

use futures::future::BoxFuture;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;

/// A message to send.
#[derive(Debug, Clone)]
pub struct Mail {
    /// What this message is, stable across retries (`welcome.<user id>`): it becomes the
    /// Message-ID, so a re-delivery after a crash between the server's acceptance and our
    /// commit is the same message to the recipient's mail system, not a second one.
    pub key: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The server refused for now or could not be reached: try again later.
    #[error("mail not sent, will retry: {0}")]
    Transient(String),
    /// The message itself is unacceptable (e.g. a malformed address).
    #[error("mail refused: {0}")]
    Permanent(String),
}

pub trait Mailer: Send + Sync {
    fn send(&self, mail: Mail) -> BoxFuture<'_, Result<(), MailError>>;
}

fn build(from: &Mailbox, mail: Mail) -> Result<Message, MailError> {
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| MailError::Permanent(format!("bad recipient: {e}")))?;
    Message::builder()
        .message_id(Some(format!("<{}@{}>", mail.key, from.email.domain())))
        .from(from.clone())
        .to(to)
        .subject(mail.subject)
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(mail.text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(mail.html),
                ),
        )
        .map_err(|e| MailError::Permanent(e.to_string()))
}

/// SMTP via lettre.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// `url` as lettre reads it (`smtp://user:pass@host:port?tls=required`, `smtps://…`).
    pub fn new(url: &str, from: Mailbox) -> Result<Self, String> {
        Self::with_roots(url, from, None)
    }

    /// As [`SmtpMailer::new`], also trusting the PEM root certificates `extra_roots`
    /// (`SMTP_CA_FILE`) for the server's TLS certificate.
    pub fn with_roots(
        url: &str,
        from: Mailbox,
        extra_roots: Option<&[u8]>,
    ) -> Result<Self, String> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("not a valid SMTP URL ({e})"))?;
        if let Some(pem) = extra_roots {
            if let Some(tls) = tls_with_roots(url, pem)? {
                builder = builder.tls(tls);
            }
        }
        let transport = builder
            .timeout(Some(std::time::Duration::from_secs(15)))
            .build();
        Ok(Self { transport, from })
    }
}

/// The URL's TLS mode (as lettre's `from_url` reads it) with `pem`'s roots added; `None` for
/// plain SMTP, where there is no certificate to check.
fn tls_with_roots(url: &str, pem: &[u8]) -> Result<Option<Tls>, String> {
    let url = reqwest::Url::parse(url).map_err(|e| format!("not a valid SMTP URL ({e})"))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let tls_param = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let roots = Certificate::from_pem(pem).map_err(|e| format!("SMTP_CA_FILE: {e}"))?;
    let params = TlsParameters::builder(host)
        .add_root_certificate(roots)
        .build()
        .map_err(|e| format!("SMTP_CA_FILE: {e}"))?;
    Ok(match (url.scheme(), tls_param.as_deref()) {
        ("smtps", _) => Some(Tls::Wrapper(params)),
        ("smtp", Some("required")) => Some(Tls::Required(params)),
        ("smtp", Some("opportunistic")) => Some(Tls::Opportunistic(params)),
        _ => None,
    })
}

impl Mailer for SmtpMailer {
    fn send(&self, mail: Mail) -> BoxFuture<'_, Result<(), MailError>> {
        Box::pin(async move {
            let msg = build(&self.from, mail)?;
            match self.transport.send(msg).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(MailError::Permanent(e.to_string())),
                Err(e) => {
                    let mut reason = e.to_string();
                    if reason.contains("invalid peer certificate") {
                        reason.push_str(
                            " (the SMTP server's TLS certificate was refused: check the host \
                             name in SMTP_URL, or trust its authority with SMTP_CA_FILE)",
                        );
                    }
                    Err(MailError::Transient(reason))
                }
            }
        })
    }
}

/// Development: each message becomes `<folder>/<key>.eml`; a re-send overwrites it.
pub struct FileMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl FileMailer {
    pub fn new(dir: PathBuf, from: Mailbox) -> Self {
        Self { dir, from }
    }
}

/// `key` with anything but ASCII letters, digits, `.` and `-` replaced.
fn file_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Mailer for FileMailer {
    fn send(&self, mail: Mail) -> BoxFuture<'_, Result<(), MailError>> {
        Box::pin(async move {
            let name = format!("{}.eml", file_name(&mail.key));
            let msg = build(&self.from, mail)?;
            tokio::fs::create_dir_all(&self.dir)
                .await
                .map_err(|e| MailError::Transient(e.to_string()))?;
            tokio::fs::write(self.dir.join(name), msg.formatted())
                .await
                .map_err(|e| MailError::Transient(e.to_string()))
        })
    }
}
