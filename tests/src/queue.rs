//! The queue as tests look at it: jobs by state, one job's row, and the few nudges tests give
//! it (make a backoff due, requeue, clear a backlog). The storage's status literals
//! (`apalis.jobs.status`) are spelled here and nowhere else in the tests, so pointing these
//! helpers at the queue crate's own state helpers is one file's change.

use jobs::queue::Predicate;
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// A job's `apalis.jobs.status`: apalis-core's own type, as the queue crate uses it.
pub use jobs::queue::Status;

fn parse_status(s: &str) -> Status {
    s.parse()
        .unwrap_or_else(|_| panic!("unknown job status {s:?}"))
}

/// What a job stopped with: `finished` (done), `dead` (killed, or failed with no attempt
/// left), `open` (anything else: pending, running, or failed and due to retry): the queue
/// crate's own conditions.
const DEAD: Predicate = Predicate::Dead;
const OPEN: Predicate = Predicate::Open;

/// One row of `apalis.jobs`, the columns tests read.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub job_type: String,
    pub status: Status,
    pub attempts: i32,
    pub max_attempts: i32,
    /// `{"Ok": …}` or `{"Err": "…"}` once an attempt ended.
    pub last_result: Option<serde_json::Value>,
    /// Milliseconds until `run_at` (negative: due).
    pub due_in_ms: f64,
    /// The svix id in the job's metadata (an hstore), if it came from a webhook.
    pub svix_id: Option<String>,
}

impl JobRow {
    /// The error of the last attempt, if it failed.
    pub fn error(&self) -> Option<&str> {
        self.last_result.as_ref()?["Err"].as_str()
    }
}

type RawRow = (
    String,
    String,
    String,
    i32,
    i32,
    Option<serde_json::Value>,
    f64,
    Option<String>,
);

const ROW: &str = "SELECT id, job_type, status, attempts, max_attempts, last_result, \
     (extract(epoch from run_at - now()) * 1000)::float8, metadata -> 'svix_id' FROM apalis.jobs";

fn row(r: RawRow) -> JobRow {
    JobRow {
        id: r.0,
        job_type: r.1,
        status: parse_status(&r.2),
        attempts: r.3,
        max_attempts: r.4,
        last_result: r.5,
        due_in_ms: r.6,
        svix_id: r.7,
    }
}

/// The queue of one test database.
#[derive(Clone, Copy)]
pub struct Queue<'a> {
    pool: &'a PgPool,
}

impl<'a> Queue<'a> {
    pub fn on(pool: &'a PgPool) -> Self {
        Self { pool }
    }

    async fn count_where(&self, condition: &str, job_type: Option<&str>) -> i64 {
        let sql = format!(
            "SELECT count(*) FROM apalis.jobs WHERE ({condition}) AND ($1::text IS NULL OR job_type = $1)"
        );
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(job_type)
            .fetch_one(self.pool)
            .await
            .unwrap()
    }

    async fn execute(&self, sql: String, bind: Option<&str>) {
        let query = sqlx::query(sqlx::AssertSqlSafe(sql));
        match bind {
            Some(b) => query.bind(b),
            None => query,
        }
        .execute(self.pool)
        .await
        .unwrap();
    }

    /// Jobs of `job_type` (every type when `None`) ever enqueued, done ones included.
    pub async fn count(&self, job_type: Option<&str>) -> i64 {
        self.count_where("true", job_type).await
    }

    /// Jobs of `job_type` (every type when `None`) in `status`.
    pub async fn in_state(&self, job_type: Option<&str>, status: Status) -> i64 {
        let condition = format!("status = '{status}'");
        self.count_where(&condition, job_type).await
    }

    /// Jobs of `job_type` (every type when `None`) not done: open or dead.
    pub async fn unfinished(&self, job_type: Option<&str>) -> i64 {
        self.count_where(&format!("NOT {}", Predicate::Done), job_type)
            .await
    }

    /// Jobs neither done nor dead: pending, running, or due to retry.
    pub async fn open(&self) -> i64 {
        self.count_where(OPEN.sql(), None).await
    }

    /// Jobs that will not run again: killed, or failed with no attempt left.
    pub async fn dead(&self) -> i64 {
        self.count_where(DEAD.sql(), None).await
    }

    /// Jobs that ran more than once.
    pub async fn retried(&self) -> i64 {
        self.count_where("attempts > 1", None).await
    }

    /// Jobs running and claimed by a worker right now.
    pub async fn claimed(&self) -> i64 {
        self.count_where(
            &format!("{} AND lock_by IS NOT NULL", Predicate::Running),
            None,
        )
        .await
    }

    /// Jobs of `job_type` that failed and wait out a backoff stored in the database: their
    /// next run is later than their failure.
    pub async fn backing_off(&self, job_type: &str) -> i64 {
        self.count_where(
            &format!("{} AND run_at > done_at", Predicate::Retrying),
            Some(job_type),
        )
        .await
    }

    /// The most attempts any job of `job_type` has made (0 without jobs).
    pub async fn most_attempts(&self, job_type: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT coalesce(max(attempts), 0)::int8 FROM apalis.jobs WHERE job_type = $1",
        )
        .bind(job_type)
        .fetch_one(self.pool)
        .await
        .unwrap()
    }

    /// How many jobs are in each state, by state.
    pub async fn jobs_by_state(&self) -> Vec<(Status, i64)> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM apalis.jobs GROUP BY 1")
                .fetch_all(self.pool)
                .await
                .unwrap();
        let mut by_state: Vec<(Status, i64)> = rows
            .into_iter()
            .map(|(s, n)| (parse_status(&s), n))
            .collect();
        by_state.sort();
        by_state
    }

    /// (job type, state, count) of every job not done, for a harness that fails a test which
    /// leaves such jobs behind.
    pub async fn leftovers(&self) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT job_type, status, count(*) FROM apalis.jobs WHERE NOT {} GROUP BY 1, 2",
            Predicate::Done
        )))
        .fetch_all(self.pool)
        .await
    }

    /// One job's row.
    pub async fn job(&self, id: &str) -> JobRow {
        let sql = format!("{ROW} WHERE id = $1");
        row(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(self.pool)
            .await
            .unwrap_or_else(|e| panic!("job {id}: {e}")))
    }

    /// The rows matching `condition` (which may use `$1`, bound to `job_type`), by id.
    async fn rows(&self, condition: &str, job_type: Option<&str>) -> Vec<JobRow> {
        let sql = format!("{ROW} WHERE {condition} ORDER BY id");
        let rows: Vec<RawRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(job_type)
            .fetch_all(self.pool)
            .await
            .unwrap();
        rows.into_iter().map(row).collect()
    }

    /// Every job of `job_type` (every type when `None`), by id.
    pub async fn jobs(&self, job_type: Option<&str>) -> Vec<JobRow> {
        self.rows("$1::text IS NULL OR job_type = $1", job_type)
            .await
    }

    /// Jobs that will not run again, by id.
    pub async fn dead_jobs(&self) -> Vec<JobRow> {
        self.rows(&format!("{DEAD} AND $1::text IS NULL"), None)
            .await
    }

    /// Jobs that failed with attempts left, by id.
    pub async fn retrying_jobs(&self) -> Vec<JobRow> {
        self.rows(
            &format!("{} AND $1::text IS NULL", Predicate::Retrying),
            None,
        )
        .await
    }

    /// Makes job `id` due now (its backoff over).
    pub async fn make_due(&self, id: &str) {
        self.execute(
            "UPDATE apalis.jobs SET run_at = now() - interval '1 second' WHERE id = $1".into(),
            Some(id),
        )
        .await;
    }

    /// Makes every job due now.
    pub async fn make_all_due(&self) {
        self.execute(
            "UPDATE apalis.jobs SET run_at = now() - interval '1 second' ".into(),
            None,
        )
        .await;
    }

    /// Makes every failed job due now (retries without waiting out the backoff).
    pub async fn make_failed_due(&self) {
        self.execute(
            format!(
                "UPDATE apalis.jobs SET run_at = now() - interval '1 second' WHERE status = '{}'",
                Status::Failed
            ),
            None,
        )
        .await;
    }

    /// Ends every backoff still running; errors are ignored (callers poll it while
    /// processes come and go).
    pub async fn end_backoffs(&self) {
        let sql = format!(
            "UPDATE apalis.jobs SET run_at = now() - interval '1 second' WHERE {} AND run_at > now()",
            Predicate::Retrying
        );
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(self.pool)
            .await;
    }

    /// Puts every job of `job_type` back to pending and due, whatever became of it.
    pub async fn requeue(&self, job_type: &str) {
        self.execute(
            format!(
                "UPDATE apalis.jobs SET status = '{}', run_at = now() - interval '1 second' WHERE job_type = $1",
                Status::Pending
            ),
            Some(job_type),
        )
        .await;
    }

    /// Deletes the jobs of `job_type` not done (a backlog a test built on purpose).
    pub async fn delete_unfinished(&self, job_type: &str) {
        self.execute(
            format!(
                "DELETE FROM apalis.jobs WHERE job_type = $1 AND NOT {}",
                Predicate::Done
            ),
            Some(job_type),
        )
        .await;
    }

    /// Deletes every job.
    pub async fn delete_all(&self) {
        self.execute("DELETE FROM apalis.jobs".into(), None).await;
    }

    /// Inserts a job row of type `q` with an empty payload as it would look `age_days` after
    /// it stopped in `status`, held by worker `lock_by`.
    pub async fn insert_stopped(
        &self,
        id: &str,
        status: Status,
        (attempts, max_attempts): (i32, i32),
        age_days: i32,
        lock_by: Option<&str>,
    ) {
        sqlx::query(
            "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, done_at, lock_by) \
             VALUES ($1, 'q', '\\x7b7d', $2, $3, $4, now(), now() - make_interval(days => $5), $6)",
        )
        .bind(id)
        .bind(status.to_string())
        .bind(attempts)
        .bind(max_attempts)
        .bind(age_days)
        .bind(lock_by)
        .execute(self.pool)
        .await
        .unwrap();
    }

    /// Inserts a dead job of `job_type` (failed, no attempt left) that came due `age_secs`
    /// seconds ago.
    pub async fn insert_dead(&self, job_type: &str, age_secs: i32) {
        sqlx::query(
            "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, done_at) \
             VALUES ($1, $2, '\\x7b7d', $3, 3, 3, now() - make_interval(secs => $4), now())",
        )
        .bind(ulid::Ulid::generate().to_string())
        .bind(job_type)
        .bind(Status::Failed.to_string())
        .bind(age_secs)
        .execute(self.pool)
        .await
        .unwrap();
    }

    /// Waits (bounded) until no job is open.
    pub async fn wait_for_idle(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            let open = self.open().await;
            if open == 0 {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "{open} jobs still open after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
