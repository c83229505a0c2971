//! The static pages: `GET /setup`, the reference setup page (HTML + JS) a freshly signed-up user
//! lands on, and `GET /admin`, the operator console.
//! The setup page calls `/v1/sync`, long-polls the job, shows "Attempt X/10", redirects on success.

use crate::startup::AppState;
use poem::{IntoResponse, Response};

const PAGE: &str = include_str!("../../static/setup.html");
const ADMIN_PAGE: &str = include_str!("../../static/admin.html");
const ADMIN_SCRIPT: &str = include_str!("../../static/admin.js");
const SCRIPT: &str = include_str!("../../static/setup.js");

/// The page, with where to go afterwards (`SETUP_REDIRECT_URL`, `SETUP_HOME_URL`).
pub async fn page(state: &AppState) -> Response {
    let config = serde_json::json!({
        "redirect_url": state.setup.redirect_url,
        "home_url": state.setup.home_url,
    })
    .to_string()
    // Inside <script>: never let a value close the element.
    .replace('<', "\\u003c");
    html(PAGE.replace("__SETUP_CONFIG__", &config))
}

pub async fn script() -> Response {
    javascript(SCRIPT)
}

/// `GET /admin`: the operator console. The page itself is public and holds no data; everything
/// it shows comes from `/admin/api`, which checks the operator's credentials.
pub async fn admin_page() -> Response {
    html(ADMIN_PAGE)
}

pub async fn admin_script() -> Response {
    javascript(ADMIN_SCRIPT)
}

/// A page, never cached (the setup page carries its configuration).
fn html(page: impl Into<String>) -> Response {
    page.into()
        .into_response()
        .with_content_type("text/html; charset=utf-8")
        .with_header("cache-control", "no-store")
        .into_response()
}

fn javascript(source: &'static str) -> Response {
    source
        .into_response()
        .with_content_type("text/javascript; charset=utf-8")
        .into_response()
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
