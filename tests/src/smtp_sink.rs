//! A local SMTP server that speaks enough of RFC 5321 for a real client (EHLO, MAIL, RCPT,
//! DATA, RSET, NOOP, QUIT) and keeps what it receives. It can refuse mail for a while (451),
//! like a provider having an outage, and can require TLS — STARTTLS (RFC 3207) or implicit TLS
//! — with a certificate the test makes, as production SMTP services do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// One delivered message.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
    /// Whether it arrived over TLS.
    pub tls: bool,
}

/// How the sink requires TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkTls {
    /// Plain connection, `STARTTLS` offered and required before `MAIL` (port 587 style).
    StartTls,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    refuse_next: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    tls: Option<(SinkTls, TlsAcceptor)>,
    tls_failures: Arc<AtomicUsize>,
}

/// How a command loop ended.
#[derive(PartialEq)]
enum Ended {
    Closed,
    StartTls,
}

impl SmtpSink {
    /// A plain SMTP sink.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A sink that requires TLS in `mode`, presenting `chain` (DER, leaf first) and `key`
    /// (PKCS#8 DER).
    pub async fn start_tls(mode: SinkTls, chain: Vec<Vec<u8>>, key: Vec<u8>) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                chain.into_iter().map(Into::into).collect(),
                rustls::pki_types::PrivatePkcs8KeyDer::from(key).into(),
            )
            .expect("the test certificate and key fit");
        Self::start_with(Some((mode, TlsAcceptor::from(Arc::new(config))))).await
    }

    async fn start_with(tls: Option<(SinkTls, TlsAcceptor)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Self {
            port: listener.local_addr().unwrap().port(),
            received: Arc::default(),
            refuse_next: Arc::default(),
            refused: Arc::default(),
            tls,
            tls_failures: Arc::default(),
        };
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.serve(sock).await;
                });
            }
        });
        sink
    }

    /// The URL lettre needs for this sink: `smtp://127.0.0.1:<port>` (plain),
    /// `…?tls=required` (STARTTLS) or `smtps://…` (implicit TLS).
    pub fn url(&self) -> String {
        match &self.tls {
            None => format!("smtp://127.0.0.1:{}", self.port),
            Some((SinkTls::StartTls, _)) => {
                format!("smtp://127.0.0.1:{}?tls=required", self.port)
            }
            Some((SinkTls::Implicit, _)) => format!("smtps://127.0.0.1:{}", self.port),
        }
    }

    /// TLS handshakes that failed (e.g. the client refused the certificate).
    pub fn tls_failures(&self) -> usize {
        self.tls_failures.load(Ordering::SeqCst)
    }

    async fn serve(&self, sock: tokio::net::TcpStream) -> std::io::Result<()> {
        let Some((mode, acceptor)) = &self.tls else {
            self.session(&mut BufReader::new(sock), true, false, false)
                .await?;
            return Ok(());
        };
        let sock = if *mode == SinkTls::StartTls {
            let mut plain = BufReader::new(sock);
            if self.session(&mut plain, true, true, false).await? != Ended::StartTls {
                return Ok(());
            }
            plain.into_inner()
        } else {
            sock
        };
        let tls = acceptor.accept(sock).await.inspect_err(|_| {
            self.tls_failures.fetch_add(1, Ordering::SeqCst);
        })?;
        // After STARTTLS the client starts over with EHLO, without a new greeting.
        let greet = *mode == SinkTls::Implicit;
        self.session(&mut BufReader::new(tls), greet, false, true)
            .await?;
        Ok(())
    }

    /// Answer `451` to the next `n` MAIL commands.
    pub fn refuse(&self, n: usize) {
        self.refuse_next.store(n, Ordering::SeqCst);
    }

    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// One command loop. `offer_starttls`: a plain connection that must upgrade before mail;
    /// `tls`: the connection is already encrypted.
    async fn session<S: AsyncBufRead + AsyncWrite + Unpin>(
        &self,
        io: &mut S,
        greet: bool,
        offer_starttls: bool,
        tls: bool,
    ) -> std::io::Result<Ended> {
        if greet {
            io.write_all(b"220 sink.test ESMTP ready\r\n").await?;
            io.flush().await?;
        }
        let (mut from, mut to) = (String::new(), Vec::new());
        let mut line = String::new();
        loop {
            line.clear();
            if io.read_line(&mut line).await? == 0 {
                return Ok(Ended::Closed);
            }
            let cmd = line.trim_end().to_owned();
            let upper = cmd.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") && offer_starttls {
                b"250-sink.test\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 SMTPUTF8\r\n"
            } else if upper.starts_with("EHLO") {
                b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
            } else if upper == "STARTTLS" && offer_starttls {
                io.write_all(b"220 2.0.0 ready to start TLS\r\n").await?;
                io.flush().await?;
                return Ok(Ended::StartTls);
            } else if offer_starttls
                && (upper.starts_with("MAIL") || upper.starts_with("RCPT") || upper == "DATA")
            {
                b"530 5.7.0 must issue a STARTTLS command first\r\n"
            } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
                b"250 ok\r\n"
            } else if upper.starts_with("RSET") {
                from.clear();
                to.clear();
                b"250 ok\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                let refuse = self
                    .refuse_next
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if refuse {
                    self.refused.fetch_add(1, Ordering::SeqCst);
                    b"451 4.3.0 try again later\r\n"
                } else {
                    from = cmd[10..]
                        .trim()
                        .trim_matches(|c| c == '<' || c == '>')
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .trim_end_matches('>')
                        .to_owned();
                    b"250 ok\r\n"
                }
            } else if upper.starts_with("RCPT TO:") {
                to.push(
                    cmd[8..]
                        .trim()
                        .trim_matches(|c| c == '<' || c == '>')
                        .to_owned(),
                );
                b"250 ok\r\n"
            } else if upper == "DATA" {
                io.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                io.flush().await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if io.read_line(&mut line).await? == 0 {
                        return Ok(Ended::Closed);
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(
                        line.strip_prefix('.')
                            .filter(|_| line.starts_with(".."))
                            .unwrap_or(&line),
                    );
                }
                self.received.lock().unwrap().push(Received {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                    tls,
                });
                b"250 ok queued\r\n"
            } else if upper == "QUIT" {
                io.write_all(b"221 bye\r\n").await?;
                io.flush().await?;
                return Ok(Ended::Closed);
            } else {
                b"502 command not implemented\r\n"
            };
            io.write_all(reply).await?;
            io.flush().await?;
        }
    }
}
