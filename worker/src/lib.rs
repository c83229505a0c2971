//! The authsync worker: serves every registered job queue (see `jobs::queue::registry`) until
//! SIGTERM, then finishes running jobs and exits. Run as many processes as you like against
//! one database.

pub mod cli;
pub mod metrics_server;

use jobs::clerk::api::{HttpClerkApi, DEFAULT_API_URL};
use jobs::config::{ConfigError, DatabaseConfig, Env};
use jobs::mail::{FileMailer, Mailer, SmtpMailer};
use jobs::queue::{registry, WorkerPool, WorkerSettings};
use jobs::JobContext;
use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

/// The worker's pool when `DATABASE_MAX_CONNECTIONS` is unset.
pub const DEFAULT_POOL: u32 = 6;

/// Smallest pool the worker runs with: its LISTEN connection stays checked out of the pool.
pub const MIN_POOL: u32 = 3;

/// The worker's configuration.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub database: DatabaseConfig,
    pub settings: WorkerSettings,
    /// `CLERK_SECRET_KEY`; without it metadata write-back is off.
    pub clerk_secret_key: Option<SecretString>,
    /// `CLERK_API_URL` (default https://api.clerk.com).
    pub clerk_api_url: String,
    pub mail: MailConfig,
    /// `PERSONAL_ORGANIZATIONS=true`: a personal organization for every new user.
    pub personal_organizations: bool,
    /// `WORKER_METRICS_PORT`: serve `/healthz` and `/metrics` there (unset: not served).
    pub metrics_port: Option<u16>,
    pub retention: RetentionConfig,
    /// `RECONCILE_INTERVAL_SECS` (default 3600); reconcile runs only with `CLERK_SECRET_KEY`.
    pub reconcile_interval_secs: u64,
    /// `RECONCILE_MAX_DELETIONS` (default 10) and `CLERK_JWKS_URL` (optional; the api reads it
    /// too): Reconcile's deletion guard and instance check.
    pub reconcile: jobs::handlers::reconcile::ReconcileSettings,
    /// `/readyz` on the metrics port answers 503 once the pool has been saturated this long
    /// (fixed at [`jobs::telemetry::POOL_SATURATED_AFTER`]; tests lower it).
    pub pool_saturated_after: std::time::Duration,
}

/// When retention runs and what it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// `RETENTION_INTERVAL_SECS` (default 3600): one run per interval across all workers.
    pub interval_secs: u64,
    /// `RETENTION_JOBS_DAYS` (default 7): finished jobs older than this go.
    pub jobs_days: u32,
    /// `RETENTION_EVENTS_DAYS` (default 30): processed and ignored events older than this go.
    pub events_days: u32,
}

/// Where welcome emails go.
#[derive(Debug, Clone)]
pub enum MailConfig {
    /// `SMTP_URL`, `MAIL_FROM` and `SMTP_CA_FILE`'s PEM roots.
    Smtp {
        url: SecretString,
        from: Mailbox,
        ca_roots: Option<Vec<u8>>,
    },
    /// No `SMTP_URL`: `.eml` files in `MAIL_DIR` (default `mail-out`).
    Files {
        dir: std::path::PathBuf,
        from: Mailbox,
    },
}

impl WorkerConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let mut database = DatabaseConfig::from_env(env)?;
        let mut settings = WorkerSettings::default();
        settings.concurrency = env.parsed("WORKER_CONCURRENCY", settings.concurrency)?;
        settings.urgent_concurrency =
            env.parsed("WORKER_URGENT_CONCURRENCY", settings.urgent_concurrency)?;
        for (name, v) in [
            ("WORKER_CONCURRENCY", settings.concurrency),
            ("WORKER_URGENT_CONCURRENCY", settings.urgent_concurrency),
        ] {
            if v == 0 {
                return Err(ConfigError::Malformed {
                    name,
                    reason: "must be at least 1".into(),
                });
            }
        }
        // A small fixed pool, not one sized from the concurrency: a worker may run up to
        // `WORKER_CONCURRENCY` jobs per queue, but most of a job's time goes to Clerk or SMTP
        // or to its own few milliseconds of SQL, so jobs share few connections well; they
        // queue for one (`db::WORKER_ACQUIRE_TIMEOUT`) instead of failing. Keeping it small
        // lets an api and 4 workers fit well inside a 60-connection database (README:
        // connections per process); on a small database host more concurrent statements only
        // add contention.
        if env.optional("DATABASE_MAX_CONNECTIONS").is_none() {
            database.max_connections = DEFAULT_POOL;
        }
        if database.max_connections < MIN_POOL {
            return Err(ConfigError::Malformed {
                name: "DATABASE_MAX_CONNECTIONS",
                reason: format!(
                    "the worker needs at least {MIN_POOL}: its LISTEN connection, claims and results, and one job"
                ),
            });
        }
        let from = |default: Option<&str>| -> Result<Mailbox, ConfigError> {
            let raw = match (env.optional("MAIL_FROM"), default) {
                (Some(v), _) => v,
                (None, Some(d)) => d.to_owned(),
                (None, None) => return Err(ConfigError::Missing("MAIL_FROM")),
            };
            raw.parse().map_err(|e| ConfigError::Malformed {
                name: "MAIL_FROM",
                reason: format!("not a mailbox ({e})"),
            })
        };
        let mail = match env.optional("SMTP_URL") {
            Some(url) => MailConfig::Smtp {
                url: url.into(),
                from: from(None)?,
                ca_roots: jobs::config::smtp_ca_file(env)?,
            },
            None => MailConfig::Files {
                dir: env
                    .optional("MAIL_DIR")
                    .unwrap_or_else(|| "mail-out".into())
                    .into(),
                from: from(Some("authsync <no-reply@localhost>"))?,
            },
        };
        Ok(Self {
            pool_saturated_after: jobs::telemetry::POOL_SATURATED_AFTER,
            personal_organizations: env.parsed("PERSONAL_ORGANIZATIONS", false)?,
            retention: RetentionConfig {
                interval_secs: env.parsed("RETENTION_INTERVAL_SECS", 3600u64)?.max(1),
                jobs_days: env.parsed("RETENTION_JOBS_DAYS", 7u32)?,
                events_days: env.parsed("RETENTION_EVENTS_DAYS", 30u32)?,
            },
            reconcile_interval_secs: env.parsed("RECONCILE_INTERVAL_SECS", 3600u64)?.max(1),
            reconcile: jobs::handlers::reconcile::ReconcileSettings {
                max_deletions: env.parsed(
                    "RECONCILE_MAX_DELETIONS",
                    jobs::handlers::reconcile::DEFAULT_MAX_DELETIONS,
                )?,
                session_jwks_url: env.optional("CLERK_JWKS_URL"),
            },
            metrics_port: env
                .optional("WORKER_METRICS_PORT")
                .map(|_| env.parsed("WORKER_METRICS_PORT", 0u16))
                .transpose()?,
            database,
            settings,
            mail,
            clerk_secret_key: env.optional("CLERK_SECRET_KEY").map(SecretString::from),
            clerk_api_url: env
                .optional("CLERK_API_URL")
                .unwrap_or_else(|| DEFAULT_API_URL.to_owned()),
        })
    }
}

/// Runs the worker until `shutdown` resolves.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let pool = jobs::db::pool_waiting(&config.database, jobs::db::WORKER_ACQUIRE_TIMEOUT)?;
    let max = config.database.max_connections;
    tracing::info!(
        pool = max,
        notify = 1,
        total = max + 1,
        concurrency = config.settings.concurrency,
        urgent_concurrency = config.settings.urgent_concurrency,
        "database connections: a pool of {max} (its LISTEN connection included) and 1 for wake-up NOTIFYs, at most {} in all",
        max + 1
    );
    let watch = jobs::telemetry::PoolWatch::spawn("main", pool.clone());
    if let Some(port) = config.metrics_port {
        let health = metrics_server::Health {
            pool: pool.clone(),
            watch,
            saturated_after: config.pool_saturated_after,
        };
        metrics_server::spawn(([0, 0, 0, 0], port).into(), health).await?;
    }
    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        _ = wait_for_database(&pool) => {}
        _ = &mut shutdown => return Ok(()),
    }
    let mut ctx = JobContext::new(pool);
    ctx.reconcile = config.reconcile.clone();
    match config.clerk_secret_key {
        Some(key) => ctx = ctx.with_clerk(Arc::new(HttpClerkApi::new(&config.clerk_api_url, key))),
        None => tracing::info!(
            "CLERK_SECRET_KEY not set: metadata write-back and fallback fetches are off"
        ),
    }
    let mailer: Arc<dyn Mailer> = match config.mail {
        MailConfig::Smtp {
            url,
            from,
            ca_roots,
        } => Arc::new(
            SmtpMailer::with_roots(url.expose_secret(), from, ca_roots.as_deref())
                .map_err(|reason| anyhow::anyhow!("SMTP_URL is malformed: {reason}"))?,
        ),
        MailConfig::Files { dir, from } => {
            tracing::info!(dir = %dir.display(), "SMTP_URL not set: welcome emails are written as .eml files");
            Arc::new(FileMailer::new(dir, from))
        }
    };
    let r = config.retention.clone();
    spawn_schedule(&ctx, "retention", r.interval_secs, move || {
        jobs::handlers::retention::Retention {
            jobs_older_than_secs: i64::from(r.jobs_days) * 86_400,
            events_older_than_secs: i64::from(r.events_days) * 86_400,
            origin: jobs::audit::Origin::system(),
        }
    });
    if ctx.clerk.is_some() {
        if ctx.reconcile.session_jwks_url.is_none() {
            tracing::info!("CLERK_JWKS_URL not set: Reconcile cannot check that CLERK_SECRET_KEY belongs to the session keys' instance");
        }
        spawn_schedule(&ctx, "reconcile", config.reconcile_interval_secs, || {
            jobs::handlers::reconcile::Reconcile {
                page_size: jobs::handlers::reconcile::PAGE_SIZE,
                origin: jobs::audit::Origin::system(),
            }
        });
    }
    let mut ctx = ctx.with_mailer(mailer);
    ctx.personal_organizations = config.personal_organizations;
    WorkerPool::new(ctx, registry(), config.settings)
        .run(shutdown)
        .await?;
    Ok(())
}

/// Waits until the database is ready (reachable, existing, migrated), saying in one line
/// what is wrong and what fixes it — once at start and again only when that changes — so a
/// worker started before `api migrate` neither spins on failing claims nor exits.
pub async fn wait_for_database(pool: &sqlx::PgPool) {
    use jobs::readiness::{check, DbState};
    let mut said: Option<DbState> = None;
    loop {
        let state = check(pool).await;
        if state == DbState::Ready {
            if said.is_some() {
                tracing::info!("database ready: starting the job queues");
            }
            return;
        }
        if said.as_ref() != Some(&state) {
            tracing::error!(code = state.code(), "{}; waiting for it", state.message());
        }
        said = Some(state);
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// Enqueues `make()` once per `interval_secs` across all worker processes: every process
/// tries, apalis' idempotency key (`<name>:<period>`) lets one through.
pub fn spawn_schedule<J: jobs::queue::Job>(
    ctx: &JobContext,
    name: &'static str,
    interval_secs: u64,
    make: impl Fn() -> J + Send + 'static,
) {
    let (pool, notifier) = (ctx.pool.clone(), ctx.notifier.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(interval_secs.max(1)));
        loop {
            tick.tick().await;
            let period = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() / interval_secs.max(1));
            match jobs::queue::enqueue_unique(&pool, &make(), &format!("{name}:{period}")).await {
                Ok(true) => {
                    notifier.wake(J::QUEUE);
                    tracing::info!(name, period, "scheduled");
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(name, error = %e, "scheduling failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_needs_a_sender() {
        let env = Env(|k: &str| match k {
            "DATABASE_URL" => Some("postgres://x".to_owned()),
            "SMTP_URL" => Some("smtp://localhost:25".to_owned()),
            _ => None,
        });
        assert_eq!(
            WorkerConfig::from_env(&env).unwrap_err(),
            ConfigError::Missing("MAIL_FROM")
        );
        let env = Env(|k: &str| match k {
            "DATABASE_URL" => Some("postgres://x".to_owned()),
            "MAIL_FROM" => Some("not an address".to_owned()),
            _ => None,
        });
        assert!(WorkerConfig::from_env(&env)
            .unwrap_err()
            .to_string()
            .starts_with("MAIL_FROM is malformed"));
    }

    #[test]
    fn reconcile_guard_settings_are_read_by_name() {
        let base = |k: &str| match k {
            "DATABASE_URL" => Some("postgres://x".to_owned()),
            _ => None,
        };
        let c = WorkerConfig::from_env(&Env(base)).unwrap();
        assert_eq!(
            c.reconcile,
            jobs::handlers::reconcile::ReconcileSettings::default()
        );
        assert_eq!(c.reconcile.max_deletions, 10);
        let env = Env(|k: &str| match k {
            "RECONCILE_MAX_DELETIONS" => Some("0".to_owned()),
            "CLERK_JWKS_URL" => Some("https://clerk.example.com/.well-known/jwks.json".to_owned()),
            k => base(k),
        });
        let c = WorkerConfig::from_env(&env).unwrap();
        assert_eq!(c.reconcile.max_deletions, 0);
        assert_eq!(
            c.reconcile.session_jwks_url.as_deref(),
            Some("https://clerk.example.com/.well-known/jwks.json")
        );
        let env = Env(|k: &str| match k {
            "RECONCILE_MAX_DELETIONS" => Some("-1".to_owned()),
            k => base(k),
        });
        assert!(WorkerConfig::from_env(&env)
            .unwrap_err()
            .to_string()
            .starts_with("RECONCILE_MAX_DELETIONS is malformed"));
    }

    #[test]
    fn the_pool_is_small_by_default_and_never_too_small() {
        let with = |pairs: &'static [(&'static str, &'static str)]| {
            WorkerConfig::from_env(&Env(move |k: &str| match k {
                "DATABASE_URL" => Some("postgres://x".to_owned()),
                k => pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string()),
            }))
        };
        let cases: &[(&[(&str, &str)], u32)] = &[
            (&[], DEFAULT_POOL),
            (&[("WORKER_CONCURRENCY", "64")], DEFAULT_POOL),
            (&[("DATABASE_MAX_CONNECTIONS", "40")], 40),
            (&[("DATABASE_MAX_CONNECTIONS", "3")], 3),
        ];
        for (pairs, want) in cases {
            let got = with(pairs).unwrap().database.max_connections;
            assert_eq!(got, *want, "{pairs:?}");
        }
        let e = with(&[("DATABASE_MAX_CONNECTIONS", "2")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("DATABASE_MAX_CONNECTIONS is malformed"),
            "{e}"
        );
    }

    #[test]
    fn concurrency_must_be_positive() {
        let env = Env(|k: &str| match k {
            "DATABASE_URL" => Some("postgres://x".to_owned()),
            "WORKER_CONCURRENCY" => Some("0".to_owned()),
            _ => None,
        });
        assert!(WorkerConfig::from_env(&env)
            .unwrap_err()
            .to_string()
            .starts_with("WORKER_CONCURRENCY"));
    }
}
