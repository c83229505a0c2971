//! A local fake of Clerk's JWKS endpoint and Backend API, speaking their wire format, with
//! scripted failures (429 + Retry-After, 5xx, slow answers, 404) and request counters. The
//! Backend API's `GET /v1/jwks` serves the same keys as the public JWKS unless a test makes
//! them differ ([`FakeClerk::serve_backend_keys`]: a secret key of another instance).
//! Also mints RS256 session tokens with the test keys in `fixtures/keys/`.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json, Path, Query};
use poem::{get, handler, patch, EndpointExt, IntoResponse, Request, Response, Route, Server};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Backend API key the fake accepts.
pub const SECRET_KEY: &str = "sk_test_fake_authsync";
/// The party our tokens are issued for.
pub const AUTHORIZED_PARTY: &str = "http://localhost:3000";

/// One scripted answer for the next Backend API request.
#[derive(Debug, Clone)]
pub enum Scripted {
    Status { code: u16, retry_after: Option<u64> },
    Slow(Duration),
}

#[derive(Default)]
pub struct State {
    pub users: HashMap<String, Value>,
    pub jwks: Vec<Value>,
    /// What `GET /v1/jwks` serves; `None`: the same keys as the public JWKS.
    pub backend_jwks: Option<Vec<Value>>,
    pub script: VecDeque<Scripted>,
    pub jwks_fetches: usize,
    pub metadata_writes: usize,
    pub user_fetches: usize,
    /// Every metadata write takes this long (a slow Clerk), until set back to `None`.
    pub metadata_delay: Option<Duration>,
    /// The JWKS endpoint accepts requests but never answers (a hung key server).
    pub jwks_hang: bool,
    /// JWKS requests being held by the hang now, and the most ever held at once.
    pub jwks_in_flight: usize,
    pub jwks_max_in_flight: usize,
}

/// Counts a held JWKS request until its connection goes away.
struct InFlight(Arc<Mutex<State>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap().jwks_in_flight -= 1;
    }
}

pub struct FakeClerk {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

fn key_path(name: &str) -> String {
    format!("{}/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The public JWK of a test key (`key1`, `key2`, `foreign`).
pub fn jwk(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(key_path(&format!("{name}.jwk.json"))).unwrap())
        .unwrap()
}

fn now() -> i64 {
    crate::now_secs()
}

#[handler]
async fn jwks(state: Data<&Arc<Mutex<State>>>) -> Json<Value> {
    let hang = {
        let mut s = state.lock().unwrap();
        s.jwks_fetches += 1;
        if s.jwks_hang {
            s.jwks_in_flight += 1;
            s.jwks_max_in_flight = s.jwks_max_in_flight.max(s.jwks_in_flight);
        }
        s.jwks_hang
    };
    if hang {
        let _held = InFlight(Arc::clone(state.0));
        std::future::pending::<()>().await;
    }
    let s = state.lock().unwrap();
    Json(json!({ "keys": s.jwks }))
}

#[handler]
async fn backend_jwks(req: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    if let Some(r) = gate(req, &state).await {
        return r;
    }
    let s = state.lock().unwrap();
    let keys = s.backend_jwks.clone().unwrap_or_else(|| s.jwks.clone());
    Json(json!({ "keys": keys })).into_response()
}

/// Applies auth and the next scripted failure; `Some` is the answer to send instead.
async fn gate(req: &Request, state: &Arc<Mutex<State>>) -> Option<Response> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {SECRET_KEY}")) {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"errors": [{"code": "authentication_invalid"}]})),
            )
                .into_response(),
        );
    }
    let next = state.lock().unwrap().script.pop_front();
    match next {
        Some(Scripted::Slow(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(Scripted::Status { code, retry_after }) => {
            let mut resp = (
                StatusCode::from_u16(code).unwrap(),
                Json(json!({"errors": [{"code": "scripted", "message": "scripted failure"}]})),
            )
                .into_response();
            if let Some(s) = retry_after {
                resp.headers_mut().insert("retry-after", s.into());
            }
            Some(resp)
        }
        None => None,
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"errors": [{"code": "resource_not_found", "message": "not found"}]})),
    )
        .into_response()
}

#[handler]
async fn get_user(
    req: &Request,
    Path(id): Path<String>,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    if let Some(r) = gate(req, &state).await {
        return r;
    }
    let mut s = state.lock().unwrap();
    s.user_fetches += 1;
    match s.users.get(&id) {
        Some(u) => Json(u.clone()).into_response(),
        None => not_found(),
    }
}

#[handler]
async fn patch_metadata(
    req: &Request,
    Path(id): Path<String>,
    body: Json<Value>,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    if let Some(r) = gate(req, &state).await {
        return r;
    }
    let delay = state.lock().unwrap().metadata_delay;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut s = state.lock().unwrap();
    s.metadata_writes += 1;
    let Some(user) = s.users.get_mut(&id) else {
        return not_found();
    };
    if let Some(patch) = body.0.get("public_metadata").and_then(Value::as_object) {
        let meta = user["public_metadata"].as_object_mut().expect("object");
        for (k, v) in patch {
            if v.is_null() {
                meta.remove(k);
            } else {
                meta.insert(k.clone(), v.clone());
            }
        }
    }
    user["updated_at"] = json!(user["updated_at"].as_i64().unwrap_or(0) + 1000);
    Json(user.clone()).into_response()
}

#[derive(serde::Deserialize)]
struct Page {
    limit: Option<usize>,
    offset: Option<usize>,
}

#[handler]
async fn list_users(
    req: &Request,
    Query(p): Query<Page>,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    if let Some(r) = gate(req, &state).await {
        return r;
    }
    let s = state.lock().unwrap();
    let mut all: Vec<&Value> = s.users.values().collect();
    all.sort_by_key(|u| {
        (
            u["created_at"].as_i64(),
            u["id"].as_str().map(str::to_owned),
        )
    });
    let page: Vec<Value> = all
        .into_iter()
        .skip(p.offset.unwrap_or(0))
        .take(p.limit.unwrap_or(10))
        .cloned()
        .collect();
    Json(json!(page)).into_response()
}

impl FakeClerk {
    /// Starts the fake with `key1` published.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            jwks: vec![jwk("key1")],
            ..Default::default()
        }));
        let app = Route::new()
            .at("/.well-known/jwks.json", get(jwks))
            .at("/v1/jwks", get(backend_jwks))
            .at("/v1/users", get(list_users))
            .at("/v1/users/:id", get(get_user))
            .at("/v1/users/:id/metadata", patch(patch_metadata))
            .data(state.clone());
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
                app,
                async {
                    let _ = rx.await;
                },
                None,
            ),
        );
        Self {
            url: format!("http://127.0.0.1:{port}"),
            state,
            _shutdown: tx,
        }
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }

    /// The `iss` of tokens this instance issues.
    pub fn issuer(&self) -> String {
        "https://clerk.authsync.test".into()
    }

    /// Stores a user as Clerk would return it (a webhook fixture's `data`).
    pub fn put_user(&self, user: Value) {
        let id = user["id"].as_str().unwrap().to_owned();
        self.state.lock().unwrap().users.insert(id, user);
    }

    pub fn user(&self, id: &str) -> Option<Value> {
        self.state.lock().unwrap().users.get(id).cloned()
    }

    /// Queues answers for the next Backend API requests, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.state.lock().unwrap().script.extend(answers);
    }

    pub fn publish_keys(&self, names: &[&str]) {
        self.state.lock().unwrap().jwks = names.iter().map(|n| jwk(n)).collect();
    }

    /// Makes the Backend API's `GET /v1/jwks` serve these keys instead of the public ones.
    pub fn serve_backend_keys(&self, names: &[&str]) {
        self.state.lock().unwrap().backend_jwks = Some(names.iter().map(|n| jwk(n)).collect());
    }

    /// Makes every metadata write answer after `delay` (`None`: at once again).
    pub fn slow_metadata_writes(&self, delay: Option<Duration>) {
        self.state.lock().unwrap().metadata_delay = delay;
    }

    pub fn metadata_writes(&self) -> usize {
        self.state.lock().unwrap().metadata_writes
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.lock().unwrap().jwks_fetches
    }

    /// `true`: JWKS requests are accepted and never answered, like a hung key server.
    pub fn hang_jwks(&self, hang: bool) {
        self.state.lock().unwrap().jwks_hang = hang;
    }

    /// The most JWKS requests the hang has held at once.
    pub fn jwks_max_in_flight(&self) -> usize {
        self.state.lock().unwrap().jwks_max_in_flight
    }

    /// A valid session token for `user_id` signed with `key1`.
    pub fn token(&self, user_id: &str) -> String {
        self.token_with("key1", self.claims(user_id))
    }

    /// Default claims of a fresh session token.
    pub fn claims(&self, user_id: &str) -> Value {
        let t = now();
        json!({"sub": user_id, "iss": self.issuer(), "azp": AUTHORIZED_PARTY, "sid": "sess_test", "iat": t, "nbf": t - 1, "exp": t + 60})
    }

    /// A token with the given claims, signed by test key `key` (its `kid` is the key's name).
    pub fn token_with(&self, key: &str, claims: Value) -> String {
        let pem = std::fs::read(key_path(&format!("{key}.pem"))).unwrap();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.to_owned());
        encode(&header, &claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
    }
}
