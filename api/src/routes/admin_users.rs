//! The operator's look-ups: search by anything an operator has at hand (an address, a Clerk
//! user or organization id, a svix id, a job id), and one user with everything that happened
//! to them, newest first. Each part is an index scan and bounded, so a busy deployment answers
//! as fast as an idle one. Auth as in `admin`.

use super::admin::{db, event_summary, job_summary, EventSummary, JobSummary};
use super::rfc3339;
use crate::auth::Operator;
use crate::error::{ApiError, Code};
use crate::startup::AppState;
use jobs::store;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{param, ApiResponse, Object, OpenApi, Union};
use serde_json::Value;

/// At most this many of each kind in a search's answer.
const SEARCH_LIMIT: i64 = 50;
/// At most this many entries of each source (events, jobs, audit, activity) in a timeline,
/// and in all.
const TIMELINE_PER_SOURCE: i64 = 100;
const TIMELINE_LIMIT: usize = 200;
/// The longest `q` (an address may be 320 characters long).
const MAX_QUERY: usize = 320;

/// A row of `users` as operators see it: deleted rows and tombstones too.
#[derive(Object)]
pub struct UserSummary {
    /// Our id (`dbId`).
    id: String,
    /// Null for a row the app created that no Clerk user has claimed.
    clerk_user_id: Option<String>,
    email: Option<String>,
    email_verified: bool,
    first_name: Option<String>,
    last_name: Option<String>,
    username: Option<String>,
    /// `user` or `admin`.
    role: String,
    created_at: String,
    updated_at: String,
    /// Set when the user was deleted (a tombstone when the deletion arrived first).
    deleted_at: Option<String>,
}

#[derive(Object)]
pub struct SearchResult {
    /// The search term as understood (trimmed).
    q: String,
    /// Users with this Clerk id, members of this organization id, or whose address starts
    /// with it (case-insensitive).
    users: Vec<UserSummary>,
    /// The event with this svix id, and events about this user or organization, newest first.
    events: Vec<EventSummary>,
    /// The job with this id, the jobs of the delivery with this svix id, then the jobs of the
    /// events found and the dashboard-fallback jobs of the user with this Clerk id.
    jobs: Vec<JobSummary>,
}

#[derive(ApiResponse)]
pub enum SearchResponse {
    #[oai(status = 200)]
    Ok(Json<SearchResult>),
}

#[derive(Object)]
pub struct MembershipSummary {
    clerk_membership_id: String,
    clerk_org_id: String,
    /// The organization's name and slug, when it has arrived.
    name: Option<String>,
    slug: Option<String>,
    /// As Clerk sends it: `org:admin`, `org:member` or custom.
    role: String,
    since: String,
}

/// A webhook delivery about the user.
#[derive(Object)]
pub struct TimelineEvent {
    at: String,
    svix_id: String,
    event_type: String,
    status: String,
    attempts: i32,
    last_error: Option<String>,
}

/// A job about the user (of one of their deliveries, or their dashboard fallback).
#[derive(Object)]
pub struct TimelineJob {
    /// When its last run ended, or (before its first) when it runs.
    at: String,
    job: JobSummary,
}

/// An audit entry about the user.
#[derive(Object)]
pub struct TimelineAudit {
    at: String,
    /// `webhook:<svix-id>`, `user:<clerk-id>` or `system`.
    actor: String,
    action: String,
    /// Changed field names, roles; never addresses or codes.
    details: Value,
}

/// A session event of the user (`user_activity`).
#[derive(Object)]
pub struct TimelineActivity {
    at: String,
    /// `session.created`, `session.ended`, `session.removed` or `session.revoked`.
    activity: String,
    session_id: String,
    client_ip: Option<String>,
    user_agent: Option<String>,
    svix_id: String,
}

/// One thing that happened to a user; `kind` says which.
#[derive(Union)]
#[oai(discriminator_name = "kind")]
pub enum TimelineEntry {
    #[oai(mapping = "event")]
    Event(TimelineEvent),
    #[oai(mapping = "job")]
    Job(TimelineJob),
    #[oai(mapping = "audit")]
    Audit(TimelineAudit),
    #[oai(mapping = "activity")]
    Activity(TimelineActivity),
}

#[derive(Object)]
pub struct UserDetail {
    user: UserSummary,
    /// Live memberships, oldest first.
    memberships: Vec<MembershipSummary>,
    /// Newest first: the user's webhook events, their jobs (attempts and errors), audit
    /// entries and session activity; at most 100 of each and 200 in all.
    timeline: Vec<TimelineEntry>,
}

#[derive(ApiResponse)]
pub enum UserResponse {
    #[oai(status = 200)]
    Ok(Json<UserDetail>),
}

#[derive(Default)]
pub struct UsersApi;

#[OpenApi(tag = "crate::openapi::Tag::Operator")]
impl UsersApi {
    /// Search
    ///
    /// By an address (or its start), a Clerk user or organization id, a svix id or a job id:
    /// the matching users, events and jobs (also those of the events found), at most 50 of
    /// each. A missing, empty or
    /// multi-word `q` is 400 `invalid_query`.
    #[oai(path = "/admin/api/search", method = "get")]
    async fn search(
        &self,
        _operator: Operator,
        state: Data<&AppState>,
        /// One term, e.g. `alice@`, `user_2abc…`, `org_2abc…`, `msg_2abc…` or a job id.
        q: param::Query<Option<String>>,
    ) -> Result<SearchResponse, ApiError> {
        search(&state, q.0.as_deref()).await
    }

    /// One user and their timeline
    ///
    /// 404 `not_found` for a Clerk user id we have no row of.
    #[oai(path = "/admin/api/users/:clerk_user_id", method = "get")]
    async fn user(
        &self,
        _operator: Operator,
        state: Data<&AppState>,
        clerk_user_id: param::Path<String>,
    ) -> Result<UserResponse, ApiError> {
        user(&state, &clerk_user_id.0).await
    }
}

/// `q` as one search term: trimmed, present, one word, not absurdly long.
pub(crate) fn search_term(q: Option<&str>) -> Result<&str, ApiError> {
    let bad = |why: &str| Err(ApiError::BadRequest(Code::InvalidQuery, why.to_owned()));
    let q = q.map(str::trim).unwrap_or_default();
    if q.is_empty() {
        return bad("q is required: an email address (or its start), a Clerk user or organization id, a svix id or a job id");
    }
    if q.chars().count() > MAX_QUERY {
        return bad("q is at most 320 characters long");
    }
    if q.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("q is one term, without spaces: an address, a Clerk id, a svix id or a job id");
    }
    Ok(q)
}

async fn search(state: &AppState, q: Option<&str>) -> Result<SearchResponse, ApiError> {
    let q = search_term(q)?;
    let pool = &state.pool;
    // One after the other: an operator's look-up holds one connection of the shared pool.
    let users = store::users::search(pool, q, &q.to_lowercase(), SEARCH_LIMIT)
        .await
        .map_err(db)?;
    let events = store::webhook_events::search(pool, q, SEARCH_LIMIT)
        .await
        .map_err(db)?;
    let mut jobs = store::queue_jobs::search(pool, q, SEARCH_LIMIT)
        .await
        .map_err(db)?;
    // And the jobs of the events found (a user's or an organization's), with the user's own
    // dashboard-fallback jobs: the latest first, each once.
    let svix_ids: Vec<String> = events.iter().map(|e| e.svix_id.clone()).collect();
    let related = store::queue_jobs::of_events_or_user(pool, &svix_ids, Some(q), SEARCH_LIMIT)
        .await
        .map_err(db)?;
    for job in related {
        if jobs.len() as i64 >= SEARCH_LIMIT {
            break;
        }
        if !jobs.iter().any(|j| j.id == job.id) {
            jobs.push(job);
        }
    }
    Ok(SearchResponse::Ok(Json(SearchResult {
        q: q.to_owned(),
        users: users.into_iter().map(user_summary).collect(),
        events: events.into_iter().map(event_summary).collect(),
        jobs: jobs.into_iter().map(job_summary).collect(),
    })))
}

fn user_summary(u: store::users::OperatorView) -> UserSummary {
    UserSummary {
        id: u.id.to_string(),
        clerk_user_id: u.clerk_user_id,
        email: u.email,
        email_verified: u.email_verified,
        first_name: u.first_name,
        last_name: u.last_name,
        username: u.username,
        role: u.role,
        created_at: rfc3339(&u.created_at),
        updated_at: rfc3339(&u.updated_at),
        deleted_at: u.deleted_at.as_ref().map(rfc3339),
    }
}

async fn user(state: &AppState, cid: &str) -> Result<UserResponse, ApiError> {
    let pool = &state.pool;
    let found = store::users::for_operator(pool, cid).await.map_err(db)?;
    let user = found.ok_or(ApiError::NotFound("no such user"))?;
    let memberships = store::memberships::of_user(pool, cid).await.map_err(db)?;
    let events = store::webhook_events::of_subject(pool, cid, TIMELINE_PER_SOURCE)
        .await
        .map_err(db)?;
    let audit = store::audit::of_subject(pool, cid, TIMELINE_PER_SOURCE)
        .await
        .map_err(db)?;
    let activity = store::user_activity::of_user(pool, cid, TIMELINE_PER_SOURCE)
        .await
        .map_err(db)?;
    let svix_ids: Vec<String> = events.iter().map(|e| e.svix_id.clone()).collect();
    let jobs =
        store::queue_jobs::of_events_or_user(pool, &svix_ids, Some(cid), TIMELINE_PER_SOURCE)
            .await
            .map_err(db)?;
    let mut timeline: Vec<(chrono::DateTime<chrono::Utc>, TimelineEntry)> = Vec::new();
    timeline.extend(events.into_iter().map(|e| {
        let entry = TimelineEntry::Event(TimelineEvent {
            at: rfc3339(&e.received_at),
            svix_id: e.svix_id,
            event_type: e.event_type,
            status: e.status,
            attempts: e.attempts,
            last_error: e.last_error,
        });
        (e.received_at, entry)
    }));
    timeline.extend(jobs.into_iter().map(|j| {
        let at = j.done_at.unwrap_or(j.run_at);
        let entry = TimelineEntry::Job(TimelineJob {
            at: rfc3339(&at),
            job: job_summary(j),
        });
        (at, entry)
    }));
    timeline.extend(audit.into_iter().map(|a| {
        let entry = TimelineEntry::Audit(TimelineAudit {
            at: rfc3339(&a.at),
            actor: a.actor,
            action: a.action,
            details: a.details,
        });
        (a.at, entry)
    }));
    timeline.extend(activity.into_iter().map(|a| {
        let entry = TimelineEntry::Activity(TimelineActivity {
            at: rfc3339(&a.occurred_at),
            activity: a.kind,
            session_id: a.session_id,
            client_ip: a.client_ip,
            user_agent: a.user_agent,
            svix_id: a.svix_id,
        });
        (a.occurred_at, entry)
    }));
    // Newest first; the sort is stable, so equal times keep the sources' own order.
    timeline.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    timeline.truncate(TIMELINE_LIMIT);
    Ok(UserResponse::Ok(Json(UserDetail {
        user: user_summary(user),
        memberships: memberships
            .into_iter()
            .map(|m| MembershipSummary {
                clerk_membership_id: m.clerk_membership_id,
                clerk_org_id: m.clerk_org_id,
                name: m.name,
                slug: m.slug,
                role: m.role,
                since: rfc3339(&m.created_at),
            })
            .collect(),
        timeline: timeline.into_iter().map(|(_, e)| e).collect(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_term_is_one_word_of_sane_length() {
        let long = "x".repeat(321);
        for (q, ok, why) in [
            (Some("alice@"), true, "an address prefix"),
            (Some("  user_2abc  "), true, "trimmed"),
            (None, false, "missing"),
            (Some(""), false, "empty"),
            (Some("   "), false, "blank"),
            (Some("alice bob"), false, "two words"),
            (Some("a\u{0}b"), false, "a control character"),
            (Some(long.as_str()), false, "too long"),
        ] {
            assert_eq!(search_term(q).is_ok(), ok, "{why}");
        }
    }
}
