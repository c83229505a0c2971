//! The static pages: `GET /setup`, the reference setup page (HTML + JS) a freshly signed-up user
//! lands on, and `GET /admin`, the operator console.
//! The setup page calls `/v1/sync`, long-polls the job, shows "Attempt X/10", redirects on success.

use crate::startup::AppState;
use poem::web::{Data, Html};
use poem::{get, handler, IntoResponse, Response, Route};

const PAGE: &str = include_str!("../../static/setup.html");
const ADMIN_PAGE: &str = include_str!("../../static/admin.html");
const ADMIN_SCRIPT: &str = include_str!("../../static/admin.js");
const SCRIPT: &str = include_str!("../../static/setup.js");

/// `route` with the pages and their scripts. They are not API operations, so they are served
/// beside the OpenAPI service rather than in it (the docs list only what a client calls).
pub fn pages(route: Route) -> Route {
    route
        .at("/setup", get(setup_page))
        .at("/setup.js", get(setup_script))
        .at("/admin", get(admin_page))
        .at("/admin.js", get(admin_script))
}

/// A page, never cached (the setup page carries its configuration).
fn page(html: String) -> Response {
    Html(html)
        .with_header("cache-control", "no-store")
        .into_response()
}

fn script(source: &'static str) -> Response {
    source
        .with_content_type("text/javascript; charset=utf-8")
        .into_response()
}

/// The reference setup page, with where to go afterwards (`SETUP_REDIRECT_URL`,
/// `SETUP_HOME_URL`). Without session verification it cannot work: the page then tells the
/// user, in their words, that setup is unavailable, and the log tells the operator why.
#[handler]
fn setup_page(state: Data<&AppState>) -> Response {
    let available = state.sessions.is_some();
    if !available {
        tracing::warn!(
            "GET /setup: session verification is not configured (set CLERK_JWKS_URL and \
             CLERK_ISSUER), so the setup page tells the user that account setup is unavailable"
        );
    } else if !state.clerk_api_enabled {
        tracing::warn!(
            "GET /setup: CLERK_SECRET_KEY is not set, so the setup page can only confirm users \
             that webhooks already provisioned"
        );
    }
    let config = serde_json::json!({
        "redirect_url": state.setup.redirect_url,
        "home_url": state.setup.home_url,
        "available": available,
    })
    .to_string()
    // Inside <script>: never let a value close the element.
    .replace('<', "\\u003c");
    page(PAGE.replace("__SETUP_CONFIG__", &config))
}

#[handler]
fn setup_script() -> Response {
    script(SCRIPT)
}

/// The operator console. The page itself is public and holds no data; everything it shows
/// comes from `/admin/api`, which checks the operator's credentials.
#[handler]
fn admin_page() -> Response {
    page(ADMIN_PAGE.to_owned())
}

#[handler]
fn admin_script() -> Response {
    script(ADMIN_SCRIPT)
}

/// Where the setup page sends the user.
#[derive(Debug, Clone)]
pub struct SetupPage {
    pub redirect_url: String,
    pub home_url: String,
}

impl Default for SetupPage {
    fn default() -> Self {
        Self {
            redirect_url: "/".into(),
            home_url: "/".into(),
        }
    }
}
