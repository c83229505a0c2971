//! `authsync-test-stack`: a fresh migrated database, fake Clerk, and the real `api` and
//! `worker` processes, for the TypeScript client's node tests (`clients/typescript/test/`).
//! Prints one JSON line — `{"api","control","clerk","database"}` — once everything is up,
//! then serves a small control API on `control`:
//!
//! - `GET /token/{user_id}` → `{"token"}`: a fresh session token from fake Clerk;
//! - `POST /users` `{"id","email"?,"first_name"?,"provision"?}`: puts the user into fake
//!   Clerk; with `"provision":true` also delivers a signed `user.created` webhook to the api and
//!   answers once the worker has written the row;
//! - `POST /worker/stop`, `POST /worker/start`: the worker process ends (SIGTERM) or a new one
//!   starts, so jobs wait in the queue meanwhile.
//!
//! It ends everything (worker, api, fake Clerk, the database) when its standard input closes,
//! on SIGTERM, SIGINT or SIGHUP. `CORS_ALLOWED_ORIGINS` in its environment goes to the api.

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json, Path};
use poem::{get, handler, post, EndpointExt, IntoResponse, Response, Route, Server};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::fake_clerk::{self, FakeClerk};
use tests::processes::{ApiProcess, WorkerProcess};
use tests::TestDb;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, SignalKind};

struct Stack {
    /// The database's pool and URL (main owns the `TestDb`, so it is dropped at the end
    /// even while a control connection still holds the stack).
    pool: sqlx::PgPool,
    database_url: String,
    mail_dir: String,
    clerk: FakeClerk,
    /// The api's address (`http://127.0.0.1:<port>`).
    address: String,
    api: Mutex<Option<ApiProcess>>,
    worker: Mutex<Option<WorkerProcess>>,
    http: reqwest::Client,
}

impl Stack {
    fn clerk_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CLERK_JWKS_URL", self.clerk.jwks_url()),
            ("CLERK_SECRET_KEY", fake_clerk::SECRET_KEY.into()),
            ("CLERK_API_URL", self.clerk.url.clone()),
            ("MAIL_DIR", self.mail_dir.clone()),
        ]
    }

    async fn start_worker(&self) {
        let env = self.clerk_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let worker = WorkerProcess::start(&self.database_url, &env);
        worker.wait_registered(&self.pool).await;
        *self.worker.lock().unwrap() = Some(worker);
    }

    fn stop_worker(&self) {
        let taken = self.worker.lock().unwrap().take();
        if let Some(mut w) = taken {
            w.terminate_within(Duration::from_secs(30));
        }
    }

    async fn provisioned(&self, clerk_id: &str) -> bool {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM users WHERE clerk_user_id = $1 AND deleted_at IS NULL",
        )
        .bind(clerk_id)
        .fetch_one(&self.pool)
        .await
        .is_ok_and(|n| n > 0)
    }
}

fn bad_request(message: String) -> Response {
    (
        poem::http::StatusCode::BAD_REQUEST,
        Json(json!({ "error": message })),
    )
        .into_response()
}

#[handler]
async fn token(Path(user_id): Path<String>, stack: Data<&Arc<Stack>>) -> Json<Value> {
    Json(json!({ "token": stack.clerk.token(&user_id) }))
}

#[derive(serde::Deserialize)]
struct NewUser {
    id: String,
    email: Option<String>,
    first_name: Option<String>,
    #[serde(default)]
    provision: bool,
}

#[handler]
async fn put_user(Json(new): Json<NewUser>, stack: Data<&Arc<Stack>>) -> Response {
    let email = new
        .email
        .unwrap_or_else(|| format!("{}@example.test", new.id.to_lowercase()));
    let body = tests::user_event(
        "user.created",
        &new.id,
        Some(&email),
        tests::now_secs() * 1000,
        None,
    );
    let mut event: Value = serde_json::from_slice(&body).expect("fixture JSON");
    if let Some(name) = &new.first_name {
        event["data"]["first_name"] = name.as_str().into();
    }
    stack.clerk.put_user(event["data"].clone());
    if new.provision {
        let body = serde_json::to_vec(&event).expect("JSON");
        let sent = tests::signed_webhook(&stack.http, &stack.address, &tests::new_svix_id(), &body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => return bad_request(format!("the api answered {}", r.status())),
            Err(e) => return bad_request(format!("the api could not be reached: {e}")),
        }
        let start = Instant::now();
        while !stack.provisioned(&new.id).await {
            if start.elapsed() > Duration::from_secs(20) {
                return bad_request(format!("{} was not provisioned within 20 s", new.id));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Json(json!({ "id": new.id, "email": email })).into_response()
}

#[handler]
async fn worker_stop(stack: Data<&Arc<Stack>>) -> Json<Value> {
    let stack = Arc::clone(stack.0);
    tokio::task::spawn_blocking(move || stack.stop_worker())
        .await
        .expect("stop the worker");
    Json(json!({ "worker": "stopped" }))
}

#[handler]
async fn worker_start(stack: Data<&Arc<Stack>>) -> Json<Value> {
    if stack.worker.lock().unwrap().is_none() {
        stack.start_worker().await;
    }
    Json(json!({ "worker": "running" }))
}

async fn wait_until_up(address: &str) {
    let start = Instant::now();
    while reqwest::get(format!("{address}/readyz"))
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the api at {address} did not become ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM, SIGINT and SIGHUP, caught from the start, so one that arrives while the stack
/// starts ends it cleanly once started instead of leaving the api and worker behind.
struct StopSignals([tokio::signal::unix::Signal; 3]);

impl StopSignals {
    fn install() -> Self {
        let on = |kind| signal(kind).expect("install a signal handler");
        Self([
            on(SignalKind::terminate()),
            on(SignalKind::interrupt()),
            on(SignalKind::hangup()),
        ])
    }
}

/// Until standard input closes or a stop signal arrives.
async fn until_told_to_stop(StopSignals([mut term, mut int, mut hup]): StopSignals) {
    let stdin_closed = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        _ = stdin_closed => {}
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = hup.recv() => {}
    }
}

#[tokio::main]
async fn main() {
    let signals = StopSignals::install();
    let db = TestDb::new().await;
    let clerk = FakeClerk::start().await;
    let mut api_env = vec![
        ("CLERK_JWKS_URL", clerk.jwks_url()),
        ("CLERK_ISSUER", clerk.issuer()),
        (
            "CLERK_AUTHORIZED_PARTIES",
            fake_clerk::AUTHORIZED_PARTY.into(),
        ),
        ("CLERK_SECRET_KEY", fake_clerk::SECRET_KEY.into()),
    ];
    if let Ok(origins) = std::env::var("CORS_ALLOWED_ORIGINS") {
        api_env.push(("CORS_ALLOWED_ORIGINS", origins));
    }
    let env: Vec<(&str, &str)> = api_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let api = ApiProcess::start_with(&db.url, &env);
    wait_until_up(&api.address).await;
    let mail_dir = std::env::temp_dir().join(format!("authsync-stack-mail-{}", db.name));
    let stack = Arc::new(Stack {
        pool: db.pool.clone(),
        database_url: db.url.clone(),
        mail_dir: mail_dir.to_string_lossy().into_owned(),
        clerk,
        address: api.address.clone(),
        api: Mutex::new(Some(api)),
        worker: Mutex::new(None),
        http: reqwest::Client::new(),
    });
    stack.start_worker().await;

    let app = Route::new()
        .at("/token/:user_id", get(token))
        .at("/users", post(put_user))
        .at("/worker/stop", post(worker_stop))
        .at("/worker/start", post(worker_start))
        .data(Arc::clone(&stack));
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("bind the control port");
    let port = acceptor.local_addr()[0]
        .as_socket_addr()
        .expect("a TCP address")
        .port();
    let server = tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    println!(
        "{}",
        json!({
            "api": stack.address,
            "control": format!("http://127.0.0.1:{port}"),
            "clerk": stack.clerk.url,
            "database": db.name,
        })
    );

    until_told_to_stop(signals).await;
    server.abort();
    let _ = server.await;
    tokio::task::block_in_place(|| stack.stop_worker());
    drop(stack.api.lock().unwrap().take());
    let _ = std::fs::remove_dir_all(&mail_dir);
    stack.pool.close().await;
    drop(db);
    // Not a return: the runtime would wait for ever for the blocking read of standard input
    // when a signal, not its end, stopped us.
    std::process::exit(0);
}
