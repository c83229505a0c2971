//! Every wake-up of the runtime, in one place:
//! - [`Notifier`]: whoever commits jobs announces them after the commit, coalesced (apalis'
//!   per-row insert trigger is dropped by migration 0006: a NOTIFY inside a commit serialises
//!   commits cluster-wide);
//! - the workers' listener (`listen_for_jobs`): those announcements wake the queue loops of
//!   every worker process at once;
//! - [`spawn_job_done_listener`]: results of urgent jobs wake the api's long-polls.
//!
//! A wake-up is a hint: when one is lost (connection trouble, a crash right after commit, no
//! LISTEN behind a transaction pooler), polling finds the work within its interval.

mod job_done;
mod listen;
mod notifier;

pub use job_done::spawn_job_done_listener;
pub use listen::Heard;
pub(crate) use listen::{listen_for_jobs, Wakers};
pub use notifier::Notifier;

/// Channel on which new jobs are announced, payload `{"job_type": …}`: apalis-postgres' own
/// insert channel, so its workers would hear ours.
pub const JOB_INSERT_CHANNEL: &str = "apalis::job::insert";

/// Channel on which results of urgent jobs are announced (payload: the job id).
pub const JOB_DONE_CHANNEL: &str = "authsync_job_done";
