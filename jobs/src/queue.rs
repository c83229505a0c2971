//! authsync's side of the queue runtime (`authsync_queue`, re-exported here whole): the one
//! function that registers every job ([`registry`], re-exported from `handlers/`), planned jobs as `apalis.jobs` rows
//! ([`encode_planned`], [`enqueue`]), and the runtime's types bound to [`JobContext`].

/// The one function that registers every job (it lives beside them, in `handlers/`).
pub use crate::handlers::registry;
pub use authsync_queue::*;

use crate::planner::PlannedJob;
use crate::JobContext;
use sqlx::PgConnection;
use ulid::Ulid;

/// The registry of authsync's jobs.
pub type Registry = authsync_queue::Registry<JobContext>;
/// A worker process' pool over authsync's jobs.
pub type WorkerPool = authsync_queue::WorkerPool<JobContext>;

/// Planned jobs as `apalis.jobs` rows, in plan order, for one multi-row insert (alone:
/// [`enqueue`]; with the webhook event's row: intake).
pub fn encode_planned(jobs: &[PlannedJob], request_id: Option<&str>) -> Result<Rows, EnqueueError> {
    let mut rows = Rows::default();
    for job in jobs {
        match job {
            PlannedJob::ProvisionUser(j) => rows.push(j, request_id, None),
            PlannedJob::SoftDelete(j) => rows.push(j, request_id, None),
            PlannedJob::SyncOrganization(j) => rows.push(j, request_id, None),
            PlannedJob::SyncMembership(j) => rows.push(j, request_id, None),
            PlannedJob::RecordActivity(j) => rows.push(j, request_id, None),
        }?;
    }
    Ok(rows)
}

/// Pushes planned jobs on the caller's connection (normally inside its transaction), in one
/// multi-row insert. Returns the job ids in plan order.
pub async fn enqueue(
    conn: &mut PgConnection,
    jobs: &[PlannedJob],
    request_id: Option<&str>,
) -> Result<Vec<Ulid>, EnqueueError> {
    Ok(encode_planned(jobs, request_id)?.insert(conn).await?)
}
