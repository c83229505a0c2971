//! The JSON answers tests read, written from the wire format (README's routes) and not
//! imported from the api crate on purpose: a renamed or dropped field fails the test that
//! reads it. Nullable fields are `#[serde(deserialize_with = "present")]`: `null` is fine,
//! a missing field is not.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// An `Option` field that must be in the body, possibly as `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// Every 4xx/5xx answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// `/healthz` (`ok`) and `/readyz` (`ready`).
#[derive(Debug, Clone, Deserialize)]
pub struct StatusBody {
    pub status: String,
}

/// `POST /webhooks/clerk`'s 2xx answer: `accepted` (with the jobs), `duplicate` or `ignored`.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookAnswer {
    pub status: String,
    pub svix_id: String,
    /// Only with `accepted`.
    pub job_ids: Option<Vec<String>>,
    /// Only with `ignored`.
    pub event_type: Option<String>,
}

/// A user as `/v1/sync`, `/v1/jobs/{id}` and `/v1/me` show it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(deserialize_with = "present")]
    pub clerk_user_id: Option<String>,
    #[serde(deserialize_with = "present")]
    pub email: Option<String>,
    pub email_verified: bool,
    #[serde(deserialize_with = "present")]
    pub first_name: Option<String>,
    #[serde(deserialize_with = "present")]
    pub last_name: Option<String>,
    #[serde(deserialize_with = "present")]
    pub username: Option<String>,
    #[serde(deserialize_with = "present")]
    pub image_url: Option<String>,
    pub role: String,
}

/// `POST /v1/sync`: 200 `ready` with the user, or 202 `provisioning` with the job to poll.
#[derive(Debug, Clone, Deserialize)]
pub struct SyncAnswer {
    pub status: String,
    /// Only with `ready`.
    pub user: Option<User>,
    /// Only with `provisioning`.
    pub job_id: Option<String>,
    /// Only with `provisioning`.
    pub poll_url: Option<String>,
}

impl SyncAnswer {
    /// The job of a `provisioning` answer.
    pub fn job_id(&self) -> &str {
        self.job_id
            .as_deref()
            .expect("a provisioning answer names its job")
    }
}

/// `GET /v1/jobs/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct JobStatus {
    pub job_id: String,
    /// `queued`, `running`, `retrying`, `succeeded` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    /// Once the job succeeded.
    pub user: Option<User>,
    /// Once the job failed.
    pub error: Option<String>,
}

/// `GET /v1/me`.
#[derive(Debug, Clone, Deserialize)]
pub struct Me {
    pub user: User,
    pub memberships: Vec<Membership>,
}

/// `GET /v1/me/activity`.
#[derive(Debug, Clone, Deserialize)]
pub struct ActivityPage {
    pub activity: Vec<Activity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Activity {
    pub kind: String,
    pub session_id: String,
    pub occurred_at: String,
    #[serde(deserialize_with = "present")]
    pub client_ip: Option<String>,
    #[serde(deserialize_with = "present")]
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Membership {
    pub organization: Organization,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Organization {
    pub clerk_org_id: String,
    #[serde(deserialize_with = "present")]
    pub name: Option<String>,
    #[serde(deserialize_with = "present")]
    pub slug: Option<String>,
}

/// `GET /admin/api/events`.
#[derive(Debug, Clone, Deserialize)]
pub struct EventList {
    pub events: Vec<EventSummary>,
    #[serde(deserialize_with = "present")]
    pub next_cursor: Option<String>,
}

impl EventList {
    pub fn svix_ids(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.svix_id.as_str()).collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventSummary {
    pub svix_id: String,
    pub event_type: String,
    pub status: String,
    pub received_at: String,
    pub attempts: i64,
    #[serde(deserialize_with = "present")]
    pub last_error: Option<String>,
    #[serde(deserialize_with = "present")]
    pub processed_at: Option<String>,
}

/// `GET /admin/api/events/{svix_id}`: the event with its (redacted) payload.
#[derive(Debug, Clone, Deserialize)]
pub struct EventDetail {
    pub svix_id: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i64,
    pub pending_jobs: i64,
    #[serde(deserialize_with = "present")]
    pub last_error: Option<String>,
    pub payload: Value,
    /// The jobs it caused, the latest first.
    pub jobs: Vec<JobSummary>,
}

/// `POST /admin/api/events/{svix_id}/replay`.
#[derive(Debug, Clone, Deserialize)]
pub struct Replayed {
    pub svix_id: String,
    pub job_ids: Vec<String>,
}

/// `GET /admin/api/jobs`.
#[derive(Debug, Clone, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobSummary>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JobSummary {
    pub job_id: String,
    pub queue: String,
    pub state: String,
    pub dead: bool,
    pub attempts: i64,
    pub max_attempts: i64,
    #[serde(deserialize_with = "present")]
    pub last_error: Option<String>,
    pub run_at: String,
    #[serde(deserialize_with = "present")]
    pub done_at: Option<String>,
    #[serde(deserialize_with = "present")]
    pub svix_id: Option<String>,
}

/// `POST /admin/api/reconcile`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReconcileStarted {
    pub job_id: String,
    pub already_queued: bool,
}

/// `GET /admin/api/reconcile`: the recent runs, newest first, and the one queued or running.
#[derive(Debug, Clone, Deserialize)]
pub struct ReconcileReport {
    /// False without `CLERK_SECRET_KEY`.
    pub configured: bool,
    pub runs: Vec<ReconcileRun>,
    #[serde(deserialize_with = "present")]
    pub current: Option<ReconcileCurrent>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReconcileRun {
    #[serde(deserialize_with = "present")]
    pub job_id: Option<String>,
    pub actor: String,
    #[serde(deserialize_with = "present")]
    pub scanned: Option<i64>,
    #[serde(deserialize_with = "present")]
    pub created: Option<i64>,
    #[serde(deserialize_with = "present")]
    pub updated: Option<i64>,
    #[serde(deserialize_with = "present")]
    pub deleted: Option<i64>,
    pub held_deletions: i64,
    pub confirmed_deletions: i64,
    #[serde(deserialize_with = "present")]
    pub error: Option<ErrorDetail>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReconcileCurrent {
    pub job_id: String,
    pub state: String,
}

/// `POST /admin/api/reconcile/{job_id}/confirm`.
#[derive(Debug, Clone, Deserialize)]
pub struct Confirmed {
    pub job_id: String,
    pub confirmed: i64,
    pub job_ids: Vec<String>,
}

/// A `users` row as operators see it (`/admin/api/search`, `/admin/api/users/{id}`).
#[derive(Debug, Clone, Deserialize)]
pub struct OperatorUser {
    pub id: String,
    #[serde(deserialize_with = "present")]
    pub clerk_user_id: Option<String>,
    #[serde(deserialize_with = "present")]
    pub email: Option<String>,
    pub email_verified: bool,
    pub role: String,
    pub created_at: String,
    #[serde(deserialize_with = "present")]
    pub deleted_at: Option<String>,
}

/// `GET /admin/api/search?q=`.
#[derive(Debug, Clone, Deserialize)]
pub struct SearchResult {
    pub q: String,
    pub users: Vec<OperatorUser>,
    pub events: Vec<EventSummary>,
    pub jobs: Vec<JobSummary>,
}

impl SearchResult {
    pub fn clerk_user_ids(&self) -> Vec<&str> {
        self.users
            .iter()
            .filter_map(|u| u.clerk_user_id.as_deref())
            .collect()
    }

    pub fn svix_ids(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.svix_id.as_str()).collect()
    }

    pub fn job_ids(&self) -> Vec<&str> {
        self.jobs.iter().map(|j| j.job_id.as_str()).collect()
    }
}

/// `GET /admin/api/users/{clerk_user_id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct UserDetail {
    pub user: OperatorUser,
    pub memberships: Vec<OperatorMembership>,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OperatorMembership {
    pub clerk_membership_id: String,
    pub clerk_org_id: String,
    #[serde(deserialize_with = "present")]
    pub name: Option<String>,
    pub role: String,
    pub since: String,
}

/// One entry of a user's timeline, by its `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TimelineEntry {
    Event {
        at: String,
        svix_id: String,
        event_type: String,
        status: String,
        attempts: i64,
        #[serde(deserialize_with = "present")]
        last_error: Option<String>,
    },
    Job {
        at: String,
        job: JobSummary,
    },
    Audit {
        at: String,
        actor: String,
        action: String,
        details: Value,
    },
    Activity {
        at: String,
        activity: String,
        session_id: String,
        #[serde(deserialize_with = "present")]
        client_ip: Option<String>,
        #[serde(deserialize_with = "present")]
        user_agent: Option<String>,
        svix_id: String,
    },
}

impl TimelineEntry {
    pub fn at(&self) -> &str {
        match self {
            TimelineEntry::Event { at, .. }
            | TimelineEntry::Job { at, .. }
            | TimelineEntry::Audit { at, .. }
            | TimelineEntry::Activity { at, .. } => at,
        }
    }

    /// `event user.created`, `job authsync.provision_user`, `audit user.created`,
    /// `activity session.created`: what a test compares.
    pub fn label(&self) -> String {
        match self {
            TimelineEntry::Event { event_type, .. } => format!("event {event_type}"),
            TimelineEntry::Job { job, .. } => format!("job {}", job.queue),
            TimelineEntry::Audit { action, .. } => format!("audit {action}"),
            TimelineEntry::Activity { activity, .. } => format!("activity {activity}"),
        }
    }
}

/// `GET /admin/api/stats?window=`.
#[derive(Debug, Clone, Deserialize)]
pub struct Stats {
    pub window: String,
    pub bucket_seconds: i64,
    pub buckets: Vec<StatsBucket>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatsBucket {
    pub at: String,
    pub received: i64,
    pub processed: i64,
    pub failed: i64,
    pub retried: i64,
    #[serde(deserialize_with = "present")]
    pub p50_ms: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub p95_ms: Option<f64>,
}
