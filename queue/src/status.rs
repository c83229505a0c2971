//! Job states: apalis-core's own [`Status`] (the values of `apalis.jobs.status`), defined
//! once here with the SQL conditions every reader uses ([`Predicate`]), and our view of a job
//! for the API ([`JobState`], [`job_status`]).

pub use apalis_core::task::status::Status;
use serde::Serialize;
use sqlx::PgPool;
use std::fmt;
use std::sync::LazyLock;

/// A condition on an `apalis.jobs` row, as SQL built from [`Status`]: for `WHERE` and
/// `FILTER` clauses, unqualified ([`Predicate::sql`], also its `Display`) or on a table alias
/// ([`Predicate::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Predicate {
    /// Waiting to run: `Pending`, or `Queued` (claimed, not started).
    Pending,
    /// What a claim may take once `run_at` has come: `Pending`, or failed with attempts left.
    /// The predicate of apalis' fetch and of its partial index `idx_apalis_jobs_fetch_partial`.
    Runnable,
    Running,
    /// Failed with attempts left: runs again after its backoff.
    Retrying,
    /// Failed for good: killed (fatal), or failed with no attempts left.
    Dead,
    /// Any failure, retrying or dead.
    Failing,
    /// Succeeded.
    Done,
    /// Not finished: pending, queued, running or retrying.
    Open,
}

impl Predicate {
    const ALL: [Predicate; 8] = [
        Predicate::Pending,
        Predicate::Runnable,
        Predicate::Running,
        Predicate::Retrying,
        Predicate::Dead,
        Predicate::Failing,
        Predicate::Done,
        Predicate::Open,
    ];

    /// The condition on unqualified columns.
    pub fn sql(self) -> &'static str {
        static SQL: LazyLock<Vec<String>> =
            LazyLock::new(|| Predicate::ALL.iter().map(|p| p.render("")).collect());
        let i = Self::ALL.iter().position(|p| *p == self).expect("listed");
        SQL[i].as_str()
    }

    /// The condition on the columns of table alias `alias` (`j` → `j.status …`).
    pub fn of(self, alias: &str) -> String {
        self.render(&format!("{alias}."))
    }

    fn render(self, t: &str) -> String {
        use Status::*;
        let is = |s: Status| format!("{t}status = '{s}'");
        let retrying = format!("({} AND {t}attempts < {t}max_attempts)", is(Failed));
        match self {
            Predicate::Pending => format!("{t}status IN ('{Pending}', '{Queued}')"),
            Predicate::Runnable => format!("({} OR {retrying})", is(Pending)),
            Predicate::Running => is(Running),
            Predicate::Retrying => retrying,
            Predicate::Dead => format!(
                "({} OR ({} AND {t}attempts >= {t}max_attempts))",
                is(Killed),
                is(Failed)
            ),
            Predicate::Failing => format!("{t}status IN ('{Killed}', '{Failed}')"),
            Predicate::Done => is(Done),
            Predicate::Open => {
                format!("({t}status IN ('{Pending}', '{Queued}', '{Running}') OR {retrying})")
            }
        }
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql())
    }
}

/// Our view of apalis' status column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Retrying,
    Succeeded,
    Failed,
}

/// A job as the API reports it.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub id: String,
    pub queue: String,
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub error: Option<String>,
}

impl JobStatus {
    /// What the job's owner may read about a failure: a generic sentence with the job id as
    /// the reference to quote to support. The stored error (Clerk's answer, host names, SQL)
    /// is for operators only (`/admin/api/jobs`); `None` while nothing has gone wrong.
    pub fn public_error(&self) -> Option<String> {
        self.error.as_ref()?;
        match self.state {
            JobState::Succeeded => None,
            JobState::Failed => Some(format!(
                "Setting up your account failed. Please contact support and quote reference {}.",
                self.id
            )),
            _ => Some(format!(
                "A temporary problem delayed setting up your account; it is being retried \
                 (reference {}).",
                self.id
            )),
        }
    }
}

/// Our state for an `apalis.jobs` row.
pub fn state(status: &str, attempts: i32, max_attempts: i32) -> JobState {
    match status.parse() {
        Ok(Status::Done) => JobState::Succeeded,
        Ok(Status::Killed) => JobState::Failed,
        Ok(Status::Failed) if attempts >= max_attempts => JobState::Failed,
        Ok(Status::Failed) => JobState::Retrying,
        Ok(Status::Running) => JobState::Running,
        // Pending, and Queued (claimed by a worker, not started yet).
        _ => JobState::Queued,
    }
}

/// Looks a job up by id.
pub async fn job_status(pool: &PgPool, id: &str) -> Result<Option<JobStatus>, sqlx::Error> {
    let row: Option<(String, String, String, i32, i32, Option<serde_json::Value>)> = crate::db::query_as(
        "SELECT id, job_type, status, attempts, max_attempts, last_result FROM apalis.jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(crate::db::on(pool))
    .await?;
    Ok(row.map(
        |(id, queue, status, attempts, max_attempts, last)| JobStatus {
            state: state(&status, attempts, max_attempts),
            error: last
                .as_ref()
                .and_then(|v| v.get("Err"))
                .and_then(|e| e.as_str())
                .map(str::to_owned)
                .filter(|_| !matches!(status.parse(), Ok(Status::Done))),
            id,
            queue,
            attempts,
            max_attempts,
        },
    ))
}

/// Counts of jobs by queue and apalis status, for tests and operators.
pub async fn counts(pool: &PgPool) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    crate::db::query_as(
        "SELECT job_type, status, count(*) FROM apalis.jobs GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(crate::db::on(pool))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_are_written_with_apalis_status_names() {
        assert_eq!(
            Predicate::Runnable.sql(),
            "(status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))"
        );
        assert_eq!(
            Predicate::Dead.of("j"),
            "(j.status = 'Killed' OR (j.status = 'Failed' AND j.attempts >= j.max_attempts))"
        );
        assert_eq!(Predicate::Done.to_string(), "status = 'Done'");
    }

    #[test]
    fn apalis_statuses_map_to_ours() {
        assert_eq!(state("Pending", 0, 5), JobState::Queued);
        assert_eq!(state("Queued", 0, 5), JobState::Queued);
        assert_eq!(state("Running", 0, 5), JobState::Running);
        assert_eq!(state("Failed", 2, 5), JobState::Retrying);
        assert_eq!(state("Failed", 5, 5), JobState::Failed);
        assert_eq!(state("Killed", 1, 5), JobState::Failed);
        assert_eq!(state("Done", 1, 5), JobState::Succeeded);
    }

    #[test]
    fn owners_see_a_reference_not_the_stored_error() {
        let status = |state, error: Option<&str>| JobStatus {
            id: "01JOBID".into(),
            queue: "q".into(),
            state,
            attempts: 1,
            max_attempts: 10,
            error: error.map(str::to_owned),
        };
        let raw = "Clerk answered 500: upstream clerk-api-7.internal.example timed out";
        for (state, error, want) in [
            (JobState::Retrying, Some(raw), Some("being retried")),
            (JobState::Failed, Some(raw), Some("contact support")),
            (JobState::Running, Some(raw), Some("being retried")),
            (JobState::Succeeded, Some(raw), None),
            (JobState::Queued, None, None),
        ] {
            let shown = status(state, error).public_error();
            assert_eq!(shown.is_some(), want.is_some(), "{state:?}");
            if let (Some(shown), Some(want)) = (shown, want) {
                assert!(shown.contains(want) && shown.contains("01JOBID"), "{shown}");
                assert!(
                    !shown.contains("internal") && !shown.contains("500"),
                    "{shown}"
                );
            }
        }
    }
}

/// Depth of one queue by state, and how long its oldest due job has waited.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueStats {
    pub queue: String,
    pub pending: i64,
    pub running: i64,
    pub retrying: i64,
    pub dead: i64,
    pub oldest_pending_seconds: f64,
}

/// Stats of every queue that has unfinished jobs.
pub async fn queue_stats(pool: &PgPool) -> Result<Vec<QueueStats>, sqlx::Error> {
    use Predicate::*;
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT job_type, \
               count(*) FILTER (WHERE {Pending}), count(*) FILTER (WHERE {Running}), \
               count(*) FILTER (WHERE {Retrying}), count(*) FILTER (WHERE {Dead}), \
               extract(epoch from now() - min(run_at) FILTER (WHERE {Runnable} AND run_at <= now()))::float8 \
             FROM apalis.jobs WHERE NOT {Done} GROUP BY 1 ORDER BY 1"
        )
    });
    crate::db::query_as::<(String, i64, i64, i64, i64, Option<f64>)>(SQL.as_str())
        .fetch_all(crate::db::on(pool))
        .await
        .map(|rows| {
            rows.into_iter()
                .map(
                    |(queue, pending, running, retrying, dead, age)| QueueStats {
                        queue,
                        pending,
                        running,
                        retrying,
                        dead,
                        oldest_pending_seconds: age.unwrap_or(0.0),
                    },
                )
                .collect()
        })
}
