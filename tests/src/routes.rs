//! One helper per route of the api on [`TestApp`], so a test reads like the route it calls,
//! and the readers of their answers: [`parse`] into a body of [`crate::bodies`], or
//! [`error_code`]. [`TestApp::request`] is left for the requests a test shapes by hand
//! (cookies, browser headers, malformed input).

use crate::app::TestApp;
use crate::bodies::ErrorBody;
use crate::{now_secs, svix_headers, SECRET};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;

/// Who a request says it is.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    None,
    /// `Authorization: Bearer …`: a session token or the admin token.
    Bearer(&'a str),
}

impl<'a> From<&'a str> for Auth<'a> {
    fn from(token: &'a str) -> Self {
        Auth::Bearer(token)
    }
}

impl<'a> From<&'a String> for Auth<'a> {
    fn from(token: &'a String) -> Self {
        Auth::Bearer(token)
    }
}

/// The status and the body as `T`; a body that is not a `T` fails the test, showing it.
pub async fn parse<T: DeserializeOwned>(resp: Response) -> (u16, T) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("a body");
    match serde_json::from_str(&text) {
        Ok(body) => (status, body),
        Err(e) => panic!(
            "{status} answer is not a {}: {e}\n{text}",
            std::any::type_name::<T>()
        ),
    }
}

/// The status and the error code of an error answer.
pub async fn error_code(resp: Response) -> (u16, String) {
    let (status, body) = parse::<ErrorBody>(resp).await;
    (status, body.error.code)
}

impl TestApp {
    /// A request to `path` (with its query), authenticated as `auth`, to shape by hand.
    pub fn request<'a>(
        &self,
        method: Method,
        path: &str,
        auth: impl Into<Auth<'a>>,
    ) -> RequestBuilder {
        let req = self
            .client
            .request(method, format!("{}{path}", self.address));
        match auth.into() {
            Auth::None => req,
            Auth::Bearer(token) => req.bearer_auth(token),
        }
    }

    async fn send<'a>(&self, method: Method, path: &str, auth: impl Into<Auth<'a>>) -> Response {
        self.request(method, path, auth)
            .send()
            .await
            .expect("api reachable")
    }

    /// `POST /webhooks/clerk` with `body` signed now with the test secret under `svix_id`.
    pub async fn post_webhook(&self, svix_id: &str, body: &[u8]) -> Response {
        self.post_webhook_with(
            &svix_headers(SECRET, svix_id, now_secs(), body),
            body.to_vec(),
        )
        .await
    }

    /// `POST /webhooks/clerk` with `body` and exactly the given (svix) headers.
    pub async fn post_webhook_with(&self, headers: &[(&str, String)], body: Vec<u8>) -> Response {
        let mut req = self
            .request(Method::POST, "/webhooks/clerk", Auth::None)
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.body(body).send().await.expect("api reachable")
    }

    /// `POST /v1/sync`.
    pub async fn sync<'a>(&self, auth: impl Into<Auth<'a>>) -> Response {
        self.send(Method::POST, "/v1/sync", auth).await
    }

    /// `GET /v1/jobs/{id}`, long-polling for `wait_ms` if given.
    pub async fn job<'a>(
        &self,
        auth: impl Into<Auth<'a>>,
        id: &str,
        wait_ms: Option<u64>,
    ) -> Response {
        let path = match wait_ms {
            Some(w) => format!("/v1/jobs/{id}?wait_ms={w}"),
            None => format!("/v1/jobs/{id}"),
        };
        self.send(Method::GET, &path, auth).await
    }

    /// `GET /v1/me`.
    pub async fn me<'a>(&self, auth: impl Into<Auth<'a>>) -> Response {
        self.send(Method::GET, "/v1/me", auth).await
    }

    /// `GET /v1/me/activity?{query}` (`query` may be empty).
    pub async fn me_activity<'a>(&self, auth: impl Into<Auth<'a>>, query: &str) -> Response {
        self.send(Method::GET, &with_query("/v1/me/activity", query), auth)
            .await
    }

    /// `GET /admin/api/events?{query}` (`query` may be empty).
    pub async fn admin_events<'a>(&self, auth: impl Into<Auth<'a>>, query: &str) -> Response {
        self.send(Method::GET, &with_query("/admin/api/events", query), auth)
            .await
    }

    /// `GET /admin/api/events/{svix_id}`.
    pub async fn admin_event<'a>(&self, auth: impl Into<Auth<'a>>, svix_id: &str) -> Response {
        self.send(Method::GET, &format!("/admin/api/events/{svix_id}"), auth)
            .await
    }

    /// `POST /admin/api/events/{svix_id}/replay`.
    pub async fn replay<'a>(&self, auth: impl Into<Auth<'a>>, svix_id: &str) -> Response {
        self.send(
            Method::POST,
            &format!("/admin/api/events/{svix_id}/replay"),
            auth,
        )
        .await
    }

    /// `GET /admin/api/jobs?{query}` (`query` may be empty).
    pub async fn admin_jobs<'a>(&self, auth: impl Into<Auth<'a>>, query: &str) -> Response {
        self.send(Method::GET, &with_query("/admin/api/jobs", query), auth)
            .await
    }

    /// `POST /admin/api/jobs/{id}/retry`.
    pub async fn retry_job<'a>(&self, auth: impl Into<Auth<'a>>, id: &str) -> Response {
        self.send(Method::POST, &format!("/admin/api/jobs/{id}/retry"), auth)
            .await
    }

    /// `GET /admin/api/search?q=…` (`q` is sent encoded; `None` sends no `q`).
    pub async fn admin_search<'a>(&self, auth: impl Into<Auth<'a>>, q: Option<&str>) -> Response {
        let mut req = self.request(Method::GET, "/admin/api/search", auth);
        if let Some(q) = q {
            req = req.query(&[("q", q)]);
        }
        req.send().await.expect("api reachable")
    }

    /// `GET /admin/api/users/{clerk_user_id}`.
    pub async fn admin_user<'a>(&self, auth: impl Into<Auth<'a>>, clerk_user_id: &str) -> Response {
        self.send(
            Method::GET,
            &format!("/admin/api/users/{clerk_user_id}"),
            auth,
        )
        .await
    }

    /// `GET /admin/api/stats?{query}` (`query` may be empty).
    pub async fn admin_stats<'a>(&self, auth: impl Into<Auth<'a>>, query: &str) -> Response {
        self.send(Method::GET, &with_query("/admin/api/stats", query), auth)
            .await
    }

    /// `GET /admin/api/queues`.
    pub async fn admin_queues<'a>(&self, auth: impl Into<Auth<'a>>) -> Response {
        self.send(Method::GET, "/admin/api/queues", auth).await
    }

    /// `POST /admin/api/reconcile`: asks for a run.
    pub async fn reconcile<'a>(&self, auth: impl Into<Auth<'a>>) -> Response {
        self.send(Method::POST, "/admin/api/reconcile", auth).await
    }

    /// `GET /admin/api/reconcile`: the runs.
    pub async fn reconcile_runs<'a>(&self, auth: impl Into<Auth<'a>>) -> Response {
        self.send(Method::GET, "/admin/api/reconcile", auth).await
    }

    /// `POST /admin/api/reconcile/{job_id}/confirm`.
    pub async fn confirm_reconcile<'a>(&self, auth: impl Into<Auth<'a>>, job_id: &str) -> Response {
        self.send(
            Method::POST,
            &format!("/admin/api/reconcile/{job_id}/confirm"),
            auth,
        )
        .await
    }

    /// `GET /healthz`.
    pub async fn healthz(&self) -> Response {
        self.send(Method::GET, "/healthz", Auth::None).await
    }

    /// `GET /readyz`.
    pub async fn readyz(&self) -> Response {
        self.send(Method::GET, "/readyz", Auth::None).await
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> Response {
        self.send(Method::GET, "/metrics", Auth::None).await
    }

    /// `GET /setup`, the setup page.
    pub async fn setup_page(&self) -> Response {
        self.send(Method::GET, "/setup", Auth::None).await
    }

    /// `GET /admin`, the operator console.
    pub async fn admin_page(&self) -> Response {
        self.send(Method::GET, "/admin", Auth::None).await
    }

    /// `GET /admin.js`, the operator console's script.
    pub async fn admin_script(&self) -> Response {
        self.send(Method::GET, "/admin.js", Auth::None).await
    }

    /// `GET /openapi.json`.
    pub async fn openapi(&self) -> Response {
        self.send(Method::GET, "/openapi.json", Auth::None).await
    }
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}
