//! Load generators and probes for `bench/run`, which writes `BENCHMARKS.md`.
//! Each subcommand prints one JSON line on stdout. Over 400 lines: one function per subcommand,
//! sharing the option parser and the event maker; new probes go into modules (`observe`).
//!
//! ```text
//! bench sample-body                                    one realistic user.created body (pgbench baseline)
//! bench intake --url U --secret S --connections N --seconds D
//! bench enqueue --url U --secret S --connections N --count C
//! bench wait-drained --database-url URL [--timeout-secs T] [--metrics-ports P1,P2,…]
//! bench idle-wake --database-url URL --samples N
//! bench fake-clerk --port P                            Clerk's Backend API, answering at once
//! bench urgent --database-url URL --backlog N --samples S
//! bench noop --database-url URL --jobs N --workers W   the queue runtime alone (noop.rs)
//! bench noop-worker --database-url URL                one process running no-op jobs
//! ```

mod noop;
mod observe;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use ulid::Ulid;

const FIXTURE: &str = include_str!("../../tests/fixtures/clerk/user.created.json");

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        bail!("usage: bench sample-body|intake|enqueue|wait-drained|idle-wake|fake-clerk|urgent|noop|noop-worker [--flag value]…")
    };
    let opts = Opts::parse(&args[1..])?;
    let out = match cmd.as_str() {
        "sample-body" => {
            println!("{}", event_body(&template()?));
            return Ok(());
        }
        "intake" => {
            let secs = opts.num("seconds")?;
            let stop = Stop::Deadline(Instant::now() + Duration::from_secs_f64(secs));
            load(&opts, stop).await?
        }
        "enqueue" => {
            load(
                &opts,
                Stop::Count(Arc::new(AtomicU64::new(0)), opts.num("count")?),
            )
            .await?
        }
        "wait-drained" => wait_drained(&opts).await?,
        "idle-wake" => idle_wake(&opts).await?,
        "fake-clerk" => return fake_clerk(&opts).await,
        "urgent" => urgent(&opts).await?,
        "noop" => {
            noop::drain(
                opts.str("database-url")?,
                opts.num("jobs")?,
                opts.num("workers")?,
            )
            .await?
        }
        "noop-worker" => return noop::worker(opts.str("database-url")?).await,
        other => bail!("unknown subcommand `{other}`"),
    };
    println!("{out}");
    Ok(())
}

/// `--name value` pairs.
struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .with_context(|| format!("unexpected `{flag}`"))?;
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            map.insert(name.to_owned(), value.clone());
        }
        Ok(Self(map))
    }

    fn str(&self, name: &str) -> Result<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("--{name} is required"))
    }

    fn num<T: std::str::FromStr>(&self, name: &str) -> Result<T> {
        self.str(name)?
            .parse()
            .ok()
            .with_context(|| format!("--{name} must be a number"))
    }

    fn num_or<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.0.get(name) {
            Some(_) => self.num(name),
            None => Ok(default),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn template() -> Result<Value> {
    Ok(serde_json::from_str(FIXTURE)?)
}

/// The fixture as a new user: unique Clerk id and email, stamped now.
fn event_body(template: &Value) -> String {
    let mut v = template.clone();
    let u = Ulid::generate();
    let now = now_ms();
    v["timestamp"] = json!(now);
    let data = &mut v["data"];
    data["id"] = json!(format!("user_bench{u}"));
    data["updated_at"] = json!(now);
    data["email_addresses"][0]["email_address"] = json!(format!(
        "bench-{}@example.com",
        u.to_string().to_lowercase()
    ));
    v.to_string()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

enum Stop {
    Deadline(Instant),
    /// Shared count of requests started, and how many to send in total.
    Count(Arc<AtomicU64>, u64),
}

impl Stop {
    fn next(&self) -> bool {
        match self {
            Stop::Deadline(t) => Instant::now() < *t,
            Stop::Count(sent, total) => sent.fetch_add(1, Ordering::Relaxed) < *total,
        }
    }
}

#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    statuses: BTreeMap<String, u64>,
}

/// `--connections` tasks, each with its own keep-alive client, post distinct signed
/// user.created events until `stop` says enough. Latency is measured for every request.
async fn load(opts: &Opts, stop: Stop) -> Result<Value> {
    let url = opts.str("url")?.to_owned();
    let secret = opts.str("secret")?.to_owned();
    let connections: usize = opts.num("connections")?;
    let template = Arc::new(template()?);
    let stop = Arc::new(stop);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (url, secret, template, stop) =
            (url.clone(), secret.clone(), template.clone(), stop.clone());
        tasks.spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let signer = svix::webhooks::Webhook::new(&secret)?;
            let mut tally = Tally::default();
            while stop.next() {
                let body = event_body(&template);
                let svix_id = format!("msg_{}", Ulid::generate());
                let ts = now_ms() / 1000;
                let sig = signer.sign(&svix_id, ts, body.as_bytes())?;
                let t0 = Instant::now();
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("svix-id", &svix_id)
                    .header("svix-timestamp", ts.to_string())
                    .header("svix-signature", sig)
                    .body(body)
                    .send()
                    .await;
                let key = match sent {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let _ = resp.bytes().await; // read fully so the connection is reused
                        status.to_string()
                    }
                    Err(e) => format!("error: {}", e.without_url()),
                };
                tally.latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                *tally.statuses.entry(key).or_default() += 1;
            }
            anyhow::Ok(tally)
        });
    }
    let mut all = Tally::default();
    while let Some(t) = tasks.join_next().await {
        let t = t??;
        all.latencies_ms.extend(t.latencies_ms);
        for (k, n) in t.statuses {
            *all.statuses.entry(k).or_default() += n;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    all.latencies_ms.sort_by(f64::total_cmp);
    let accepted = all.statuses.get("202").copied().unwrap_or(0);
    let total: u64 = all.statuses.values().sum();
    let l = &all.latencies_ms;
    Ok(json!({
        "connections": connections,
        "seconds": round(secs),
        "requests": total,
        "accepted": accepted,
        "accepted_per_sec": round(accepted as f64 / secs),
        "non_202": total - accepted,
        "statuses": all.statuses,
        "p50_ms": round(percentile(l, 0.50)),
        "p90_ms": round(percentile(l, 0.90)),
        "p99_ms": round(percentile(l, 0.99)),
        "max_ms": round(percentile(l, 1.0)),
    }))
}

async fn connect(opts: &Opts) -> Result<PgPool> {
    let url = opts.str("database-url")?;
    Ok(PgPoolOptions::new().max_connections(2).connect(url).await?)
}

/// Notes the jobs not yet done, says `ready` on stderr (the script then starts workers), and
/// polls every second until no job at all is left undone — including follow-up jobs the batch
/// enqueues while it runs (welcome emails) — or the timeout passes. With `--metrics-ports`,
/// also reports each of those workers' jobs and pool connections, and the most backends the
/// database had at one of the polls.
async fn wait_drained(opts: &Opts) -> Result<Value> {
    let timeout = Duration::from_secs(opts.num_or("timeout-secs", 300)?);
    let ports = observe::ports(opts.0.get("metrics-ports").map(String::as_str))?;
    let pool = connect(opts).await?;
    let mut peak_backends = 0;
    let (batch, since): (i64, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT count(*), clock_timestamp() FROM apalis.jobs WHERE status <> 'Done'",
    )
    .fetch_one(&pool)
    .await?;
    eprintln!("ready: {batch} jobs to drain");
    let started = Instant::now();
    let mut timed_out = false;
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE status <> 'Done'")
                .fetch_one(&pool)
                .await?;
        if left == 0 {
            break;
        }
        peak_backends = peak_backends.max(observe::backends(&pool).await?);
        if started.elapsed() > timeout {
            timed_out = true;
            break;
        }
        // Once a second: this count scans the whole table, and polling it faster took a
        // third of the database's time (pg_stat_statements). The rates below come from the
        // jobs' own timestamps, not from when this loop notices the end.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    // The database's own view over every job finished since `ready`: first lock to last done.
    let (done, span): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), EXTRACT(EPOCH FROM max(done_at) - min(lock_at))::float8 \
         FROM apalis.jobs WHERE status = 'Done' AND done_at >= $1",
    )
    .bind(since)
    .fetch_one(&pool)
    .await?;
    let by_queue: Vec<(String, i64)> = sqlx::query_as(
        "SELECT job_type, count(*) FROM apalis.jobs WHERE status = 'Done' AND done_at >= $1 \
         GROUP BY job_type",
    )
    .bind(since)
    .fetch_all(&pool)
    .await?;
    // ProvisionUser alone (the target's unit): its first lock to its last done. The welcome
    // emails its jobs enqueue run meanwhile and finish after it.
    let (provisioned, provision_span): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), EXTRACT(EPOCH FROM max(done_at) - min(lock_at))::float8 \
         FROM apalis.jobs WHERE status = 'Done' AND done_at >= $1 AND job_type = $2",
    )
    .bind(since)
    .bind(<jobs::handlers::provision_user::ProvisionUser as jobs::queue::Job>::QUEUE)
    .fetch_one(&pool)
    .await?;
    let not_done: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM apalis.jobs WHERE status <> 'Done' GROUP BY status",
    )
    .fetch_all(&pool)
    .await?;
    let multi_attempt: i64 =
        sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE done_at >= $1 AND attempts > 1")
            .bind(since)
            .fetch_one(&pool)
            .await?;
    let span = span.unwrap_or(f64::NAN);
    let (mut worker_jobs, mut worker_failed_runs, mut worker_connections) = (vec![], 0, vec![]);
    for port in ports {
        let (ok, failed, conns) = observe::worker(port).await?;
        worker_jobs.push(ok);
        worker_failed_runs += failed;
        worker_connections.push(conns);
    }
    Ok(json!({
        "worker_jobs": worker_jobs,
        "worker_failed_runs": worker_failed_runs,
        "worker_pool_connections": worker_connections,
        "peak_backends": peak_backends,
        "batch": batch,
        "done": done,
        "done_by_queue": by_queue.into_iter().collect::<BTreeMap<_, _>>(),
        "not_done": not_done.into_iter().collect::<BTreeMap<_, _>>(),
        "timed_out": timed_out,
        "wall_seconds": round(wall),
        "db_span_seconds": round(span),
        "batch_per_sec_db": round(batch as f64 / span),
        "jobs_per_sec_db": round(done as f64 / span),
        "jobs_per_sec_wall": round(done as f64 / wall),
        "provision_user_per_sec_db": round(provisioned as f64 / provision_span.unwrap_or(f64::NAN)),
        "more_than_one_attempt": multi_attempt,
    }))
}

type Time = chrono::DateTime<chrono::Utc>;

/// Commits `tx`, returning the database clock just before the COMMIT.
async fn commit_timed(mut tx: sqlx::Transaction<'_, sqlx::Postgres>) -> Result<Time> {
    let at: Time = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(at)
}

/// Polls job `id` every `poll` until it is done (an error after `limit`, or when it failed);
/// returns its `lock_at` and `done_at` as milliseconds after `since`, on the database clock.
async fn wait_done(
    pool: &PgPool,
    id: &str,
    since: Time,
    limit: Duration,
    poll: Duration,
) -> Result<(f64, f64)> {
    let deadline = Instant::now() + limit;
    loop {
        let (status, locked_ms, done_ms): (String, Option<f64>, Option<f64>) = sqlx::query_as(
            "SELECT status, EXTRACT(EPOCH FROM lock_at - $2)::float8 * 1000, \
             EXTRACT(EPOCH FROM done_at - $2)::float8 * 1000 FROM apalis.jobs WHERE id = $1",
        )
        .bind(id)
        .bind(since)
        .fetch_one(pool)
        .await?;
        if status == "Done" {
            return Ok((
                locked_ms.context("done job without lock_at")?,
                done_ms.context("done job without done_at")?,
            ));
        }
        if status == "Killed" || status == "Failed" {
            bail!("job {id} ended {status}");
        }
        if Instant::now() > deadline {
            bail!("job {id} not done after {limit:?} (status {status})");
        }
        tokio::time::sleep(poll).await;
    }
}

/// Enqueues one ProvisionUser job at a time into an idle worker and measures, on the database
/// clock, from just before commit to the job being locked (picked up) and marked done.
async fn idle_wake(opts: &Opts) -> Result<Value> {
    let samples: usize = opts.num("samples")?;
    let pool = connect(opts).await?;
    let template = template()?;
    let (mut pickup, mut done) = (Vec::new(), Vec::new());
    let notifier = jobs::queue::Notifier::new(pool.clone());
    for _ in 0..samples {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let body = event_body(&template);
        let event = jobs::clerk::ClerkEvent::parse(body.as_bytes())?;
        let svix_id = jobs::clerk::ids::SvixId::parse(&format!("msg_{}", Ulid::generate()))?;
        let planned = jobs::planner::plan(&svix_id, &event);
        let mut tx = pool.begin().await?;
        let ids = jobs::queue::enqueue(&mut tx, &planned, None).await?;
        let committed_at = commit_timed(tx).await?;
        // As the api does: the coalesced wake-up after commit.
        notifier.wake_all(planned.iter().map(|j| j.queue()));
        let id = ids
            .first()
            .context("user.created planned no job")?
            .to_string();
        let (locked_ms, done_ms) = wait_done(
            &pool,
            &id,
            committed_at,
            Duration::from_secs(10),
            Duration::from_millis(5),
        )
        .await?;
        pickup.push(locked_ms);
        done.push(done_ms);
    }
    pickup.sort_by(f64::total_cmp);
    done.sort_by(f64::total_cmp);
    Ok(json!({
        "samples": samples,
        "pickup_p50_ms": round(percentile(&pickup, 0.50)),
        "pickup_p99_ms": round(percentile(&pickup, 0.99)),
        "pickup_max_ms": round(percentile(&pickup, 1.0)),
        "done_p50_ms": round(percentile(&done, 0.50)),
        "done_p99_ms": round(percentile(&done, 0.99)),
    }))
}

/// The template's user as Clerk's Backend API returns it, under `id`.
fn clerk_user(template: &Value, id: &str) -> Value {
    let mut u = template["data"].clone();
    u["id"] = json!(id);
    u["email_addresses"][0]["email_address"] = json!(format!("{}@example.com", id.to_lowercase()));
    u
}

/// A stand-in for Clerk's Backend API that answers at once: `GET /v1/users/{id}` (any id
/// exists), `PATCH /v1/users/{id}/metadata` (echoes the user), `GET /v1/users` (an empty
/// page). Runs until killed.
async fn fake_clerk(opts: &Opts) -> Result<()> {
    use poem::web::Json;
    use poem::{get, handler, patch, Route, Server};
    let port: u16 = opts.num("port")?;
    let template = Arc::new(template()?);
    let t1 = template.clone();
    let t2 = template.clone();
    #[handler]
    fn list() -> Json<Value> {
        Json(json!([]))
    }
    let app = Route::new()
        .at("/v1/users", get(list))
        .at(
            "/v1/users/:id",
            get(poem::endpoint::make(move |req: poem::Request| {
                let t = t1.clone();
                async move {
                    let id = req.path_params::<String>().unwrap_or_default();
                    Json(clerk_user(&t, &id))
                }
            })),
        )
        .at(
            "/v1/users/:id/metadata",
            patch(poem::endpoint::make(move |req: poem::Request| {
                let t = t2.clone();
                async move {
                    let id = req.path_params::<String>().unwrap_or_default();
                    Json(clerk_user(&t, &id))
                }
            })),
        );
    eprintln!("fake clerk on 127.0.0.1:{port}");
    Server::new(poem::listener::TcpListener::bind(format!(
        "127.0.0.1:{port}"
    )))
    .run(app)
    .await?;
    Ok(())
}

/// Urgent fallback latency: enqueues `--backlog` ordinary ProvisionUser jobs, then `--samples`
/// urgent SyncUser jobs one after another (as `POST /v1/sync` does), each measured on the
/// database clock from just before its commit to its `done_at`. Reports how many backlog jobs
/// were still undone when the last sample finished.
async fn urgent(opts: &Opts) -> Result<Value> {
    use jobs::queue::Job;
    let backlog: usize = opts.num("backlog")?;
    let samples: usize = opts.num("samples")?;
    let pool = connect(opts).await?;
    let template = template()?;
    let notifier = jobs::queue::Notifier::new(pool.clone());
    let mut left = backlog;
    while left > 0 {
        let n = left.min(2000);
        let mut planned = Vec::with_capacity(n);
        for _ in 0..n {
            let event = jobs::clerk::ClerkEvent::parse(event_body(&template).as_bytes())?;
            let svix_id = jobs::clerk::ids::SvixId::parse(&format!("msg_{}", Ulid::generate()))?;
            planned.extend(jobs::planner::plan(&svix_id, &event));
        }
        let mut tx = pool.begin().await?;
        jobs::queue::enqueue(&mut tx, &planned, None).await?;
        tx.commit().await?;
        left -= n;
    }
    notifier.wake(jobs::handlers::provision_user::ProvisionUser::QUEUE);
    let undone = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM apalis.jobs WHERE job_type = $1 AND status <> 'Done'",
        )
        .bind(jobs::handlers::provision_user::ProvisionUser::QUEUE)
        .fetch_one(&pool)
        .await
    };
    let backlog_at_start = undone().await?;
    let mut latencies = Vec::new();
    for _ in 0..samples {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let job = jobs::handlers::sync_user::SyncUser {
            clerk_user_id: jobs::clerk::ids::ClerkUserId::parse(&format!(
                "user_urgent{}",
                Ulid::generate()
            ))?,
            origin: jobs::audit::Origin::system(),
        };
        let mut tx = pool.begin().await?;
        let id = jobs::queue::enqueue_one(&mut tx, &job, None)
            .await?
            .to_string();
        let committed_at = commit_timed(tx).await?;
        notifier.wake(jobs::handlers::sync_user::SyncUser::QUEUE);
        let (_, done_ms) = wait_done(
            &pool,
            &id,
            committed_at,
            Duration::from_secs(30),
            Duration::from_millis(2),
        )
        .await?;
        latencies.push(done_ms);
    }
    let backlog_at_end = undone().await?;
    latencies.sort_by(f64::total_cmp);
    Ok(json!({
        "backlog": backlog,
        "samples": samples,
        "backlog_undone_at_start": backlog_at_start,
        "backlog_undone_at_end": backlog_at_end,
        "p50_ms": round(percentile(&latencies, 0.50)),
        "p99_ms": round(percentile(&latencies, 0.99)),
        "max_ms": round(percentile(&latencies, 1.0)),
    }))
}
