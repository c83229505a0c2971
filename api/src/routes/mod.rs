//! HTTP routes, one file per resource. Each handler verifies, delegates to `jobs`, and returns
//! a typed response (`Result<SomeResponse, ApiError>`) from which poem-openapi builds the spec;
//! each file's `#[OpenApi]` impl is combined into the service in `crate::openapi`.

pub mod admin;
pub mod admin_reconcile;
pub mod admin_stats;
pub mod admin_users;
pub mod csrf;
pub mod health;
pub mod home;
pub mod me;
pub mod metrics;
pub mod redact;
pub mod setup;
pub mod sync;
pub mod user;
pub mod webhooks;

/// A time as the JSON bodies show it: RFC 3339, `Z`, fractional seconds as needed.
pub(crate) fn rfc3339(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A job's state as the API reports it.
#[derive(poem_openapi::Enum, Clone, Copy)]
#[oai(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    Retrying,
    Succeeded,
    Failed,
}

impl From<jobs::queue::status::JobState> for State {
    fn from(s: jobs::queue::status::JobState) -> Self {
        use jobs::queue::status::JobState as J;
        match s {
            J::Queued => State::Queued,
            J::Running => State::Running,
            J::Retrying => State::Retrying,
            J::Succeeded => State::Succeeded,
            J::Failed => State::Failed,
        }
    }
}
