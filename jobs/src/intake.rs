//! Intake: a verified, parsed webhook becomes a `webhook_events` row and its jobs in ONE
//! statement, so a 2xx is only ever sent for an event that is durable with its work.

use crate::clerk::ids::SvixId;
use crate::clerk::ClerkEvent;
use crate::planner;
use crate::queue::{self, EnqueueError};
use crate::store::webhook_events::{self, NewEvent};
use futures::FutureExt;
use sqlx::PgPool;
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use ulid::Ulid;

/// What happened to a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeOutcome {
    /// New event; its jobs are queued.
    Accepted { job_ids: Vec<Ulid> },
    /// This svix-id was stored before: nothing was enqueued again.
    Duplicate,
    /// New event of a type we do not act on: stored as `ignored`.
    Ignored,
}

/// Storing failed; nothing was committed.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("database error during intake")]
    Database(#[from] sqlx::Error),
    /// The statement that carried this delivery with others failed (each of them gets it).
    #[error("database error during intake")]
    Shared(#[source] Arc<sqlx::Error>),
    #[error("enqueueing the event's jobs failed")]
    Enqueue(#[from] EnqueueError),
    #[error("the intake writer has stopped")]
    Stopped,
    #[error("storing the delivery took longer than {0:?}")]
    TimedOut(Duration),
    /// The database refuses this delivery's values (it passed our parser, not Postgres'); it
    /// is recorded as `rejected` with this reason.
    #[error("the database cannot store this event: {0}")]
    Refused(String),
}

/// One verified, parsed delivery, ready to be stored.
struct Delivery {
    svix_id: SvixId,
    event_type: String,
    body: String,
    /// Its planned jobs, as `apalis.jobs` rows (none: the event is `ignored`).
    rows: queue::Rows,
    queues: Vec<&'static str>,
}

impl Delivery {
    fn new(
        svix_id: &SvixId,
        event: &ClerkEvent,
        body: &str,
        request_id: Option<&str>,
    ) -> Result<Self, IntakeError> {
        let jobs = planner::plan(svix_id, event);
        Ok(Self {
            svix_id: svix_id.clone(),
            event_type: event.event_type.clone(),
            body: body.to_owned(),
            rows: queue::encode_planned(&jobs, request_id)?,
            queues: jobs.iter().map(|j| j.queue()).collect(),
        })
    }

    fn outcome(&self, inserted: &[String]) -> IntakeOutcome {
        if !inserted.iter().any(|s| s == self.svix_id.as_str()) {
            IntakeOutcome::Duplicate
        } else if self.queues.is_empty() {
            IntakeOutcome::Ignored
        } else {
            IntakeOutcome::Accepted {
                job_ids: self.rows.ids().to_vec(),
            }
        }
    }
}

/// Stores deliveries (sorted by svix-id, at most one per svix-id) and their jobs in ONE
/// statement, committed alone. Returns the svix-ids stored; the others were stored before.
async fn store(pool: &PgPool, deliveries: &[&Delivery]) -> Result<Vec<String>, sqlx::Error> {
    let mut rows = queue::Rows::default();
    for d in deliveries {
        rows.extend(&d.rows);
    }
    let events: Vec<NewEvent<'_>> = deliveries
        .iter()
        .map(|d| NewEvent {
            svix_id: d.svix_id.as_str(),
            event_type: &d.event_type,
            payload: &d.body,
            status: if d.queues.is_empty() {
                "ignored"
            } else {
                "queued"
            },
            pending_jobs: d.queues.len() as i32,
        })
        .collect();
    webhook_events::insert_with_jobs(pool, &events, &rows).await
}

/// Records the event and enqueues its planned jobs atomically, then wakes the workers.
/// `body` is the verified raw body. The api goes through [`Intake`], which stores the
/// deliveries of concurrent requests together; this stores one on its own.
pub async fn accept(
    pool: &PgPool,
    notifier: &queue::Notifier,
    svix_id: &SvixId,
    event: &ClerkEvent,
    body: &str,
    request_id: Option<&str>,
) -> Result<IntakeOutcome, IntakeError> {
    let delivery = Delivery::new(svix_id, event, body, request_id)?;
    let inserted = store(pool, &[&delivery]).await?;
    let outcome = delivery.outcome(&inserted);
    if matches!(outcome, IntakeOutcome::Accepted { .. }) {
        notifier.wake_all(delivery.queues.iter().copied());
    }
    Ok(outcome)
}

/// Connections the api's intake has to itself (see [`crate::db::derived_pool`]): one for the
/// writer's statement, one for recording a delivery that does not parse while it runs.
pub const INTAKE_CONNECTIONS: u32 = 2;

/// Most deliveries stored by one statement.
const INTAKE_BATCH: usize = 128;

/// Most body bytes stored by one statement (a Postgres value is at most 1 GB; bodies may be
/// large when `WEBHOOK_BODY_LIMIT` is raised).
const INTAKE_BATCH_BYTES: usize = 32 << 20;

/// How long a request waits for its delivery to be stored before answering 503. Svix retries
/// a 503; if the event was committed meanwhile, the retry is a duplicate.
const INTAKE_WAIT: Duration = Duration::from_secs(10);

type Reply = oneshot::Sender<Result<IntakeOutcome, IntakeError>>;

/// Stores the deliveries of concurrent requests together: one writer per api process takes
/// every delivery that arrived while its previous statement was in flight and stores them in
/// one statement (one round trip, one commit), the way the worker writes job results. A lone
/// delivery is stored at once. Each request is answered only after the commit that holds its
/// event, so a 2xx still means durable; if the database refuses one delivery's values, the
/// others are stored one by one and only that one fails.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<(Delivery, Reply)>,
    pool: PgPool,
}

impl Intake {
    /// Starts the writer on `pool` (give it connections no other traffic uses, so intake is
    /// never starved); it stops when the last clone of the returned handle is dropped.
    ///
    /// The writer runs on a thread of its own: its database round trips are then not queued
    /// behind whatever else the process is busy with (a burst of 1,500 long-polls kept intake
    /// waiting seconds per statement on the shared runtime of a debug build).
    pub fn spawn(pool: PgPool, notifier: queue::Notifier) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(4 * INTAKE_BATCH);
        let writer = write_deliveries(pool.clone(), notifier, rx);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("authsync-intake".into())
            .spawn(move || runtime.block_on(writer))?;
        Ok(Self { tx, pool })
    }

    /// The intake's own pool, for [`reject`] and the pool gauges.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// [`accept`], stored together with whatever other deliveries are waiting.
    pub async fn accept(
        &self,
        svix_id: &SvixId,
        event: &ClerkEvent,
        body: &str,
        request_id: Option<&str>,
    ) -> Result<IntakeOutcome, IntakeError> {
        let delivery = Delivery::new(svix_id, event, body, request_id)?;
        let (reply, answer) = oneshot::channel();
        let stored = async {
            self.tx
                .send((delivery, reply))
                .await
                .map_err(|_| IntakeError::Stopped)?;
            answer.await.map_err(|_| IntakeError::Stopped)?
        };
        tokio::time::timeout(INTAKE_WAIT, stored)
            .await
            .map_err(|_| IntakeError::TimedOut(INTAKE_WAIT))?
    }
}

async fn write_deliveries(
    pool: PgPool,
    notifier: queue::Notifier,
    mut rx: mpsc::Receiver<(Delivery, Reply)>,
) {
    // A second delivery of a svix-id already in the batch waits for that statement: once the
    // event is stored it is a duplicate, as it would have been one request later; if storing
    // failed, it goes into the next statement.
    let mut waiting: Vec<(Delivery, Reply)> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut waiting);
        if batch.is_empty() {
            if rx.recv_many(&mut batch, INTAKE_BATCH).await == 0 {
                return;
            }
        } else {
            while batch.len() < INTAKE_BATCH {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
        }
        let mut seen = HashSet::new();
        let (mut now, later): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|(d, _)| seen.insert(d.svix_id.as_str().to_owned()));
        // Svix-id order: two api processes storing overlapping deliveries wait for each other
        // instead of deadlocking.
        now.sort_by(|(a, _), (b, _)| a.svix_id.as_str().cmp(b.svix_id.as_str()));
        let mut stored = HashSet::new();
        for chunk in by_size(now) {
            // A bug here must not stop intake for good: that batch's requests get a 503
            // (their replies are dropped) and the next batch is stored as usual.
            match AssertUnwindSafe(write_batch(&pool, &notifier, chunk))
                .catch_unwind()
                .await
            {
                Ok(s) => stored.extend(s),
                Err(_) => tracing::error!("the intake writer panicked; its batch was answered 503"),
            }
        }
        for (delivery, reply) in later {
            if stored.contains(delivery.svix_id.as_str()) {
                let _ = reply.send(Ok(IntakeOutcome::Duplicate));
            } else {
                waiting.push((delivery, reply));
            }
        }
    }
}

/// Splits a sorted batch into statements of at most [`INTAKE_BATCH_BYTES`] of bodies.
fn by_size(batch: Vec<(Delivery, Reply)>) -> Vec<Vec<(Delivery, Reply)>> {
    let mut chunks: Vec<Vec<(Delivery, Reply)>> = Vec::new();
    let mut bytes = 0;
    for item in batch {
        let size = item.0.body.len();
        match chunks.last_mut() {
            Some(chunk) if bytes + size <= INTAKE_BATCH_BYTES => chunk.push(item),
            _ => {
                bytes = 0;
                chunks.push(vec![item]);
            }
        }
        bytes += size;
    }
    chunks
}

/// Stores one batch and answers its requests. Returns the svix-ids now stored (new or not).
async fn write_batch(
    pool: &PgPool,
    notifier: &queue::Notifier,
    batch: Vec<(Delivery, Reply)>,
) -> HashSet<String> {
    let deliveries: Vec<&Delivery> = batch.iter().map(|(d, _)| d).collect();
    let stored = match store(pool, &deliveries).await {
        Ok(inserted) => Ok(inserted),
        // One refused delivery fails the whole statement: store them one at a time, so only
        // that one fails.
        Err(e) if crate::db::refused(&e) => {
            if batch.len() > 1 {
                tracing::warn!(error = %e, deliveries = batch.len(), "the database refused a batch of deliveries; storing them one by one");
            }
            let mut stored = HashSet::new();
            // After an error other than a refusal (the database went away), the rest get
            // that error at once instead of each waiting for a connection.
            let mut outage: Option<Arc<sqlx::Error>> = None;
            for (delivery, reply) in batch {
                let result = match &outage {
                    Some(e) => Err(IntakeError::Shared(e.clone())),
                    None => match store_alone(pool, &delivery).await {
                        Err(IntakeError::Database(e)) => {
                            let e = Arc::new(e);
                            outage = Some(e.clone());
                            Err(IntakeError::Shared(e))
                        }
                        other => other,
                    },
                };
                if matches!(result, Ok(_) | Err(IntakeError::Refused(_))) {
                    stored.insert(delivery.svix_id.as_str().to_owned());
                }
                answer(notifier, &delivery, reply, result);
            }
            return stored;
        }
        Err(e) => Err(Arc::new(e)),
    };
    let mut known = HashSet::new();
    for (delivery, reply) in batch {
        let result = match &stored {
            Ok(inserted) => {
                known.insert(delivery.svix_id.as_str().to_owned());
                Ok(delivery.outcome(inserted))
            }
            Err(e) => Err(IntakeError::Shared(e.clone())),
        };
        answer(notifier, &delivery, reply, result);
    }
    known
}

/// Stores one delivery on its own. If the database refuses its values, records it as
/// `rejected` instead (as a body that does not parse would be), so it is neither lost nor
/// retried forever.
async fn store_alone(pool: &PgPool, delivery: &Delivery) -> Result<IntakeOutcome, IntakeError> {
    match store(pool, &[delivery]).await {
        Ok(inserted) => Ok(delivery.outcome(&inserted)),
        Err(e) if crate::db::refused(&e) => {
            let reason = format!("the database cannot store this event: {e}");
            tracing::warn!(svix_id = %delivery.svix_id, %reason, "signed event rejected");
            reject(pool, &delivery.svix_id, delivery.body.as_bytes(), &reason).await?;
            Err(IntakeError::Refused(reason))
        }
        Err(e) => Err(e.into()),
    }
}

fn answer(
    notifier: &queue::Notifier,
    delivery: &Delivery,
    reply: Reply,
    result: Result<IntakeOutcome, IntakeError>,
) {
    if let Ok(IntakeOutcome::Accepted { .. }) = &result {
        notifier.wake_all(delivery.queues.iter().copied());
    }
    // A request that went away meanwhile (client timeout) is not answered; its event is
    // stored all the same, and Svix' retry gets a duplicate.
    let _ = reply.send(result);
}

/// Records a signed delivery whose body we could not parse, so nothing is dropped silently.
/// A repeat of the same svix-id keeps the first record. Returns whether it was new.
pub async fn reject(
    pool: &PgPool,
    svix_id: &SvixId,
    body: &[u8],
    reason: &str,
) -> Result<bool, sqlx::Error> {
    // The payload column is jsonb: keep valid JSON as is, wrap anything else as text. jsonb
    // cannot hold NUL: JSON with a \u0000 escape is kept as text (where the escape is just six
    // characters), and raw NUL bytes become U+FFFD.
    let parsed = if crate::clerk::has_nul_escape(body) {
        None
    } else {
        serde_json::from_slice::<serde_json::Value>(body).ok()
    };
    let payload = parsed.unwrap_or_else(
        || serde_json::json!({ "raw": String::from_utf8_lossy(body).replace('\0', "\u{FFFD}") }),
    );
    let event_type = payload
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("unknown")
        .chars()
        .filter(|&c| c != '\0')
        .take(200)
        .collect::<String>();
    webhook_events::insert_rejected(pool, svix_id.as_str(), &event_type, payload, reason).await
}
