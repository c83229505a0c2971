//! The static pages: `GET /setup`, the reference setup page (HTML + JS) a freshly signed-up user
//! lands on, and `GET /admin`, the operator console.
//! The setup page calls `/v1/sync`, long-polls the job, shows "Attempt X/10", redirects on success.

use crate::startup::AppState;
use poem::web::Data;
use poem_openapi::payload::{Html, PlainText};
use poem_openapi::{ApiResponse, OpenApi};

const PAGE: &str = include_str!("../../static/setup.html");
const ADMIN_PAGE: &str = include_str!("../../static/admin.html");
const ADMIN_SCRIPT: &str = include_str!("../../static/admin.js");
const SCRIPT: &str = include_str!("../../static/setup.js");

#[derive(ApiResponse)]
pub enum PageResponse {
    /// The page, never cached (the setup page carries its configuration).
    #[oai(status = 200)]
    Ok(Html<String>, #[oai(header = "cache-control")] String),
}

fn page(html: impl Into<String>) -> PageResponse {
    PageResponse::Ok(Html(html.into()), "no-store".into())
}

#[derive(ApiResponse)]
pub enum ScriptResponse {
    #[oai(status = 200, content_type = "text/javascript; charset=utf-8")]
    Ok(PlainText<String>),
}

fn script(source: &str) -> ScriptResponse {
    ScriptResponse::Ok(PlainText(source.to_owned()))
}

#[derive(Default)]
pub struct PagesApi;

#[OpenApi]
impl PagesApi {
    /// The reference setup page
    ///
    /// With where to go afterwards (`SETUP_REDIRECT_URL`, `SETUP_HOME_URL`).
    #[oai(path = "/setup", method = "get", tag = "crate::openapi::Tag::Pages")]
    async fn setup_page(&self, state: Data<&AppState>) -> PageResponse {
        let config = serde_json::json!({
            "redirect_url": state.setup.redirect_url,
            "home_url": state.setup.home_url,
        })
        .to_string()
        // Inside <script>: never let a value close the element.
        .replace('<', "\\u003c");
        page(PAGE.replace("__SETUP_CONFIG__", &config))
    }

    /// The setup page's script
    #[oai(path = "/setup.js", method = "get", tag = "crate::openapi::Tag::Pages")]
    async fn setup_script(&self) -> ScriptResponse {
        script(SCRIPT)
    }

    /// The operator console
    ///
    /// The page itself is public and holds no data; everything it shows comes from
    /// `/admin/api`, which checks the operator's credentials.
    #[oai(path = "/admin", method = "get", tag = "crate::openapi::Tag::Pages")]
    async fn admin_page(&self) -> PageResponse {
        page(ADMIN_PAGE)
    }

    /// The operator console's script
    #[oai(path = "/admin.js", method = "get", tag = "crate::openapi::Tag::Pages")]
    async fn admin_script(&self) -> ScriptResponse {
        script(ADMIN_SCRIPT)
    }
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
