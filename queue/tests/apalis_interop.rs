//! The rows are real apalis-postgres rows: a job pushed with apalis-postgres' own API is run by
//! our runtime, and a job we push reads back through apalis' own API with the same payload,
//! status and metadata. Real Postgres (`DATABASE_URL`), a fresh database per test, migrated
//! as `api migrate` does (apalis' schema, then the repo's `migrations/`).

use apalis_core::backend::{FetchById, Filter, ListTasks};
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use apalis_postgres::{Config, PostgresStorage};
use authsync_queue::db::TxLimits;
use authsync_queue::{drain, enqueue_one, Context, Job, JobError, Metadata, Registry, Status};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// A database of its own, dropped (best effort) with the value.
struct TestDb {
    admin_url: String,
    name: String,
    pool: PgPool,
}

impl TestDb {
    async fn new() -> Self {
        let admin_url = std::env::var("DATABASE_URL").expect("DATABASE_URL is set");
        let name = format!("authsync_queue_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await.expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let options = sqlx::postgres::PgConnectOptions::from_str(&admin_url)
            .expect("DATABASE_URL parses")
            .database(&name);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(5)
            .connect_with(options)
            .await
            .expect("connect to test database");
        authsync_queue::schema::setup(&pool)
            .await
            .expect("apalis schema");
        let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        sqlx::migrate::Migrator::new(migrations)
            .await
            .expect("migrations load")
            .run(&pool)
            .await
            .expect("migrations apply");
        Self {
            admin_url,
            name,
            pool,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    if let Ok(mut c) = PgConnection::connect(&admin).await {
                        let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                            .execute(&mut c)
                            .await;
                    }
                })
        })
        .join();
    }
}

/// A context that remembers what ran.
#[derive(Clone)]
struct Seen {
    pool: PgPool,
    ran: Arc<Mutex<Vec<u32>>>,
}

impl Context for Seen {
    fn pool(&self) -> &PgPool {
        &self.pool
    }
    fn with_limits(self, _: TxLimits) -> Self {
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    n: u32,
}

impl Job for Note {
    type Context = Seen;
    const QUEUE: &'static str = "test.note";
    const MAX_ATTEMPTS: u32 = 3;
    fn metadata(&self) -> Metadata {
        Metadata::default().with("note", self.n.to_string())
    }
    async fn handle(self, ctx: &Seen) -> Result<(), JobError> {
        ctx.ran.lock().unwrap().push(self.n);
        Ok(())
    }
}

fn storage(pool: &PgPool) -> PostgresStorage<Vec<u8>> {
    PostgresStorage::new(pool).with_config(Config::default().queue(Note::QUEUE))
}

#[tokio::test]
async fn a_job_pushed_with_apalis_postgres_own_api_is_run_by_our_runner() {
    let db = TestDb::new().await;
    let payload = serde_json::to_vec(&Note { n: 7 }).unwrap();
    let task = TaskBuilder::new(payload)
        .task_id(TaskId::from_ulid(ulid::Ulid::generate()))
        .max_attempts(3)
        .build();
    let mut tx = db.pool.begin().await.unwrap();
    apalis_postgres::queries::push_tasks(&mut *tx, Note::QUEUE, vec![task])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let ctx = Seen {
        pool: db.pool.clone(),
        ran: Default::default(),
    };
    let mut registry = Registry::default();
    registry.register::<Note>();
    let report = drain(&ctx, &registry).await.unwrap();

    assert_eq!(report.succeeded, 1, "{report:?}");
    assert_eq!(*ctx.ran.lock().unwrap(), vec![7]);
    let done = storage(&db.pool)
        .list_tasks(&Filter {
            status: Some(Status::Done),
            page: 1,
            page_size: Some(10),
        })
        .await
        .unwrap();
    assert_eq!(done.len(), 1, "apalis lists the job as done");
    assert_eq!(done[0].attempt(), 1);
}

#[tokio::test]
async fn a_job_we_push_reads_back_through_apalis_postgres_own_api() {
    let db = TestDb::new().await;
    let job = Note { n: 42 };
    let mut tx = db.pool.begin().await.unwrap();
    let id = enqueue_one(&mut tx, &job, Some("req-1")).await.unwrap();
    tx.commit().await.unwrap();

    let mut storage = storage(&db.pool);
    let task = storage
        .fetch_by_id(&TaskId::from_ulid(id))
        .await
        .unwrap()
        .expect("apalis finds the job by id");
    assert_eq!(serde_json::from_slice::<Note>(&task.args).unwrap(), job);
    assert_eq!(task.status(), Status::Pending);
    assert_eq!(task.max_attempts(), Some(3));
    assert_eq!(task.metadata().get("note"), Some("42"));
    assert_eq!(task.metadata().get(Metadata::REQUEST_ID), Some("req-1"));

    let pending = storage
        .list_tasks(&Filter {
            status: Some(Status::Pending),
            page: 1,
            page_size: Some(10),
        })
        .await
        .unwrap();
    let ids: Vec<String> = pending
        .iter()
        .map(|t| t.task_id().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![id.to_string()]);
}
