//! The HTTP/1.1 server under the api's routes. poem's own `Server` runs hyper without a timer,
//! so a connection that sends nothing, or one header line a second, is held open for ever (and
//! its auto-detection of HTTP/2 waits without a limit). This one serves each connection with
//! hyper's HTTP/1 builder and a timer per connection that closes it when
//! - a request head is not complete [`Timeouts::header_read`] after its first byte (or, on a
//!   new connection, after the accept), or
//! - a kept-alive connection sends nothing for [`Timeouts::keep_alive`] after a response.
//!
//! hyper has one timeout for both (the head timer starts as soon as it waits for a head); the
//! timer here tells the two apart by counting the bytes the connection has read, so the idle
//! allowance can exceed a load balancer's (60 s at AWS, for one) while a slow head is cut
//! short.

use futures::FutureExt;
use hyper::rt::{Sleep, Timer};
use hyper_util::rt::TokioIo;
use poem::endpoint::BoxEndpoint;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How long a client may take over a request head, and stay idle between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From a head's first byte (or a new connection's accept) to its blank line.
    pub header_read: Duration,
    /// From the end of a response to the next request's first byte.
    pub keep_alive: Duration,
    /// From a complete head to the response: covers a body sent a byte at a time, which the
    /// head timer no longer watches. Longer than any route's own wait (long-polls and webhook
    /// intake give up after 10 s).
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            keep_alive: Duration::from_secs(75),
            request: Duration::from_secs(30),
        }
    }
}

/// Pending connections the kernel may queue for us (capped by `net.core.somaxconn`, 4096 on
/// current Linux). The usual 1024 overflows in a burst: the connections beyond it lose their
/// SYN and their clients retry one, three, seven seconds later — measured as 2–4 s webhook
/// latencies during a burst of 1,500 long-polls.
pub const BACKLOG: u32 = 4096;

/// Binds `addr` with [`BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// for up to `grace` (idle connections close at once).
pub async fn serve(
    listener: TcpListener,
    app: BoxEndpoint<'static>,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
) -> std::io::Result<()> {
    let app: Arc<BoxEndpoint<'static>> = Arc::new(app);
    let local = LocalAddr(Addr::SocketAddr(listener.local_addr()?));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = serve_connection(stream, peer, local.clone(), app.clone(), timeouts, stop_rx.clone());
                    connections.spawn(conn);
                }
                Err(e) => {
                    // Out of file descriptors, most likely: pause instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "shutdown grace over; closing connections"
        );
        connections.shutdown().await;
    }
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    local: LocalAddr,
    app: Arc<BoxEndpoint<'static>>,
    timeouts: Timeouts,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let reads = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Counted {
        inner: stream,
        reads: reads.clone(),
    });
    let remote = RemoteAddr(Addr::SocketAddr(peer));
    let service = hyper::service::service_fn(move |req| {
        let req = poem::Request::from((req, local.clone(), remote.clone(), http_scheme()));
        let app = app.clone();
        async move {
            let resp = match tokio::time::timeout(timeouts.request, app.get_response(req)).await {
                Ok(resp) => resp,
                Err(_) => request_timed_out(timeouts.request),
            };
            let resp: hyper::Response<_> = resp.into();
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(HeadTimer {
            reads,
            timeouts,
            heads: Default::default(),
        })
        .header_read_timeout(timeouts.header_read)
        .keep_alive(true)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and malformed requests: the client's doing, not ours.
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// `408` for a request not answered within [`Timeouts::request`] (its handler is dropped), and
/// the connection closed: its body may still be arriving.
fn request_timed_out(limit: Duration) -> poem::Response {
    tracing::info!(?limit, "request timed out");
    let mut resp = poem::IntoResponse::into_response(crate::error::ApiError::RequestTimeout(limit));
    resp.headers_mut().insert(
        poem::http::header::CONNECTION,
        poem::http::HeaderValue::from_static("close"),
    );
    resp
}

fn http_scheme() -> poem::http::uri::Scheme {
    poem::http::uri::Scheme::HTTP
}

/// The socket, counting the reads that brought bytes.
struct Counted {
    inner: tokio::net::TcpStream,
    reads: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.reads.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// hyper asks its timer for one sleep per request head it waits for (and for nothing else on
/// an HTTP/1 server connection); this timer makes that sleep end by the rules above.
struct HeadTimer {
    reads: Arc<AtomicU64>,
    timeouts: Timeouts,
    heads: AtomicU64,
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let first = self.heads.fetch_add(1, Ordering::Relaxed) == 0;
        let now = tokio::time::Instant::now();
        let limit = if first {
            self.timeouts.header_read
        } else {
            self.timeouts.keep_alive
        };
        Box::pin(HeadSleep {
            reads: self.reads.clone(),
            reads_at_start: self.reads.load(Ordering::Relaxed),
            header_read: self.timeouts.header_read,
            head_began: first,
            sleep: Box::pin(tokio::time::sleep_until(now + limit)),
        })
    }
}

/// Ends `keep_alive` after it began while nothing arrives, and `header_read` after the first
/// byte of the head (on a new connection: after it began).
struct HeadSleep {
    reads: Arc<AtomicU64>,
    reads_at_start: u64,
    header_read: Duration,
    head_began: bool,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls this right after each read that leaves the head incomplete, so the first
        // poll that sees new bytes is when the head began.
        if !self.head_began && self.reads.load(Ordering::Relaxed) != self.reads_at_start {
            self.head_began = true;
            let deadline = tokio::time::Instant::now() + self.header_read;
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll_unpin(cx)
    }
}

impl Sleep for HeadSleep {}
