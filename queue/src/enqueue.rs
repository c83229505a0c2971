//! Writing jobs: rows of `apalis.jobs` exactly as apalis-postgres' own `push_tasks` writes
//! them, pushed on the caller's connection (normally inside its transaction, so the jobs
//! commit with whatever caused them), in one multi-row insert.

use crate::db;
use crate::job::{Job, Metadata};
use sqlx::postgres::types::PgHstore;
use sqlx::postgres::PgArguments;
use sqlx::{PgConnection, PgPool, Postgres};
use std::sync::LazyLock;
use ulid::Ulid;

/// Enqueueing failed; nothing was written (the caller's transaction should roll back).
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("serialising the job payload failed")]
    Encode(#[from] serde_json::Error),
    #[error("inserting into apalis.jobs failed")]
    Push(#[from] sqlx::Error),
}

/// Jobs encoded as the columns of `apalis.jobs` rows, as apalis-postgres' own `push_tasks`
/// writes them (status `Pending`, no attempts, priority 0, metadata in an hstore), for one
/// multi-row insert of any mix of queues.
#[derive(Default)]
pub struct Rows {
    ids: Vec<Ulid>,
    id_texts: Vec<String>,
    queues: Vec<&'static str>,
    payloads: Vec<Vec<u8>>,
    max_attempts: Vec<i32>,
    metadata: Vec<PgHstore>,
    keys: Vec<Option<String>>,
}

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

impl Rows {
    /// Adds `job` with its [`Job::metadata`] and the enqueueing request's id; `key` is apalis'
    /// unique idempotency key. Returns the new job's id.
    pub fn push<J: Job>(
        &mut self,
        job: &J,
        request_id: Option<&str>,
        key: Option<&str>,
    ) -> Result<Ulid, EnqueueError> {
        let id = Ulid::generate();
        let mut meta = job.metadata();
        if let Some(rid) = request_id {
            meta = meta.with(Metadata::REQUEST_ID, rid);
        }
        self.payloads.push(serde_json::to_vec(job)?);
        self.ids.push(id);
        self.id_texts.push(id.to_string());
        self.queues.push(J::QUEUE);
        self.max_attempts.push(J::MAX_ATTEMPTS as i32);
        self.metadata.push(meta.into_hstore());
        self.keys.push(key.map(str::to_owned));
        Ok(id)
    }

    /// Appends copies of `other`'s rows.
    pub fn extend(&mut self, other: &Rows) {
        self.ids.extend_from_slice(&other.ids);
        self.id_texts.extend_from_slice(&other.id_texts);
        self.queues.extend_from_slice(&other.queues);
        self.payloads.extend_from_slice(&other.payloads);
        self.max_attempts.extend_from_slice(&other.max_attempts);
        self.metadata
            .extend(other.metadata.iter().map(|m| PgHstore(m.0.clone())));
        self.keys.extend_from_slice(&other.keys);
    }

    /// The job ids, in the order the jobs were added.
    pub fn ids(&self) -> &[Ulid] {
        &self.ids
    }

    /// Binds the six arrays that [`insert_jobs_sql`]`(first)` reads, in order.
    pub fn bind<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.id_texts)
            .bind(&self.queues)
            .bind(&self.payloads)
            .bind(&self.max_attempts)
            .bind(&self.metadata)
            .bind(&self.keys)
    }

    /// Inserts the rows on `conn`; returns their ids.
    pub async fn insert(self, conn: &mut PgConnection) -> Result<Vec<Ulid>, sqlx::Error> {
        static SQL: LazyLock<String> = LazyLock::new(|| insert_jobs_sql(1));
        self.bind(db::query(SQL.as_str())).execute(conn).await?;
        Ok(self.ids)
    }
}

/// `INSERT INTO apalis.jobs … SELECT … FROM unnest(…)` reading the six arrays of [`Rows::bind`]
/// as parameters `$first` to `$first + 5`. Callers may append a `WHERE` clause (the `unnest`
/// is aliased `r`) and embed it in a statement of their own (webhook intake does).
pub fn insert_jobs_sql(first: usize) -> String {
    let p: Vec<String> = (first..first + 6).map(|n| format!("${n}")).collect();
    format!(
        "INSERT INTO apalis.jobs \
         (id, job_type, job, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key) \
         SELECT r.id, r.job_type, r.job, '{}', 0, r.max_attempts, now(), 0, r.metadata, r.idempotency_key \
         FROM unnest({}::text[], {}::text[], {}::bytea[], {}::integer[], {}::hstore[], {}::text[]) \
         AS r (id, job_type, job, max_attempts, metadata, idempotency_key)",
        crate::Status::Pending,
        p[0],
        p[1],
        p[2],
        p[3],
        p[4],
        p[5]
    )
}

/// Pushes one typed job on the caller's connection (normally inside its transaction).
pub async fn enqueue_one<J: Job>(
    conn: &mut PgConnection,
    job: &J,
    request_id: Option<&str>,
) -> Result<Ulid, EnqueueError> {
    let mut rows = Rows::default();
    let id = rows.push(job, request_id, None)?;
    rows.insert(conn).await?;
    Ok(id)
}

/// Pushes `job` unless a job of its queue with the same `key` exists already (apalis'
/// unique idempotency key): how several worker processes schedule one run per period.
/// Returns whether it was pushed.
pub async fn enqueue_unique<J: Job>(
    pool: &PgPool,
    job: &J,
    key: &str,
) -> Result<bool, EnqueueError> {
    let mut rows = Rows::default();
    rows.push(job, None, Some(key))?;
    // In a transaction of its own, as every statement behind a transaction pooler (crate::db).
    let mut tx = pool.begin().await?;
    match rows.insert(&mut tx).await {
        Ok(_) => {
            tx.commit().await?;
            Ok(true)
        }
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}
