//! The api's HTTP server, talked to over raw sockets: connections that send nothing, or a
//! header line at a time, are closed; a kept-alive connection may idle longer than a head may
//! take, and is closed after that; a handler's panic is a JSON 500, not a dropped connection.

use api::server::Timeouts;
use std::time::Duration;
use tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on every wait below; the server's limits are a few seconds.
const PATIENCE: Duration = Duration::from_secs(30);

async fn app_with(header_read: u64, keep_alive: u64) -> TestApp {
    TestApp::builder()
        .configure(|c| {
            c.timeouts = Timeouts {
                header_read: Duration::from_secs(header_read),
                keep_alive: Duration::from_secs(keep_alive),
                ..Timeouts::default()
            }
        })
        .spawn()
        .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (or resets it); `None` if it is still open
/// after `PATIENCE`.
async fn read_to_close(s: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    closed
        .ok()
        .map(|_| String::from_utf8_lossy(&got).into_owned())
}

/// One complete response to `GET /healthz` on `s`.
async fn healthz(s: &mut TcpStream) -> String {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(PATIENCE, async {
        while !String::from_utf8_lossy(&got).contains("\"ok\"") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the response: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("a response");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let app = app_with(1, 4).await;
    let mut s = connect(&app).await;
    let said = read_to_close(&mut s)
        .await
        .expect("a silent connection is still open");
    assert!(!said.contains("200"), "{said}");
}

#[tokio::test]
async fn a_connection_sending_one_header_line_a_second_is_closed() {
    let app = app_with(2, 4).await;
    let mut s = connect(&app).await;
    let (mut rd, mut wr) = s.split();
    let lines = async {
        wr.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
            .await
            .unwrap();
        // Thirty seconds' worth of header lines, unless the server hangs up first.
        for i in 0..30 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if wr
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return true;
            }
        }
        false
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&got).into_owned(),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::select! {
        said = closed => assert!(!said.contains("200"), "answered a slow head: {said}"),
        refused = lines => assert!(refused, "30 header lines at one a second were all taken"),
    }
}

#[tokio::test]
async fn a_kept_alive_connection_may_idle_longer_than_a_head_may_take_then_is_closed() {
    let app = app_with(1, 4).await;
    let mut s = connect(&app).await;
    assert!(healthz(&mut s).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than a head may take, but within the keep-alive time.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert!(healthz(&mut s).await.starts_with("HTTP/1.1 200"));
    // Then nothing: closed once the keep-alive time is over.
    let said = read_to_close(&mut s)
        .await
        .expect("an idle kept-alive connection is still open");
    assert_eq!(said, "");
}

#[poem::handler]
fn boom() -> &'static str {
    panic!("boom: a handler bug (expected in this test)")
}

#[poem::handler]
fn fine() -> &'static str {
    "fine"
}

#[tokio::test]
async fn a_panicking_handler_is_a_json_500_and_the_server_goes_on() {
    let routes = poem::Route::new()
        .at("/boom", poem::get(boom))
        .at("/fine", poem::get(fine));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(api::server::serve(
        listener,
        api::startup::with_middleware(routes, Default::default()),
        Timeouts::default(),
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let client = reqwest::Client::new();
    let resp = client.get(format!("{address}/boom")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert!(resp.headers().contains_key("x-request-id"));
    let text = resp.text().await.unwrap();
    let body: tests::bodies::ErrorBody = serde_json::from_str(&text).unwrap();
    assert_eq!(body.error.code, "internal", "{text}");
    assert!(!text.contains("boom"), "the panic leaked: {text}");
    let next = client.get(format!("{address}/fine")).send().await.unwrap();
    assert_eq!(next.status(), 200);
}

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_gets_a_408_and_the_connection_closes() {
    let app = TestApp::builder()
        .configure(|c| {
            c.timeouts = Timeouts {
                request: Duration::from_secs(2),
                ..Timeouts::default()
            }
        })
        .spawn()
        .await;
    let mut s = connect(&app).await;
    s.write_all(
        b"POST /webhooks/clerk HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
    )
    .await
    .unwrap();
    // Keep sending one byte a second, longer than the limit allows.
    let (mut read, mut write) = s.into_split();
    let dribble = tokio::spawn(async move {
        for _ in 0..20 {
            if write.write_all(b"{").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut got = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    dribble.abort();
    let said = String::from_utf8_lossy(&got);
    assert!(closed.is_ok(), "the connection is still open: {said}");
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains("request_timeout"), "{said}");
}
