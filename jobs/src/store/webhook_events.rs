//! `webhook_events`: the bookkeeping that follows a webhook's jobs to completion, as the queue
//! runtime's completion hook ([`WebhookEventProgress`]): its CTEs run in the same statement
//! that writes the jobs' results (see `authsync_queue::CompletionHook` for what `done` holds).

use authsync_queue::CompletionHook;

/// Keeps each finished job's webhook event (its `svix_id` metadata) up to date. Several
/// results of one event are summed: attempts, finished jobs; any final failure marks the event
/// failed, and its error is the one kept. Event rows are locked in svix-id order first, so two
/// processes writing results of the same events wait for each other instead of deadlocking.
pub struct WebhookEventProgress;

impl CompletionHook for WebhookEventProgress {
    fn ctes(&self) -> &'static str {
        ", per_event AS (\
           SELECT metadata -> 'svix_id' AS svix_id, count(*)::int AS runs, \
                  count(*) FILTER (WHERE outcome = 'succeeded')::int AS ok, \
                  bool_or(outcome IN ('exhausted', 'killed')) AS failed, \
                  (array_agg(error ORDER BY outcome IN ('exhausted', 'killed') DESC) \
                     FILTER (WHERE error IS NOT NULL))[1] AS error \
           FROM done WHERE metadata -> 'svix_id' IS NOT NULL GROUP BY 1), \
         locked AS MATERIALIZED (\
           SELECT w.svix_id FROM webhook_events AS w JOIN per_event USING (svix_id) \
           ORDER BY w.svix_id FOR NO KEY UPDATE OF w), \
         events AS (\
           UPDATE webhook_events AS w SET attempts = w.attempts + e.runs, \
             pending_jobs = GREATEST(w.pending_jobs - e.ok, 0), \
             last_error = CASE WHEN w.status = 'failed' AND NOT e.failed THEN w.last_error \
                               ELSE COALESCE(e.error, w.last_error) END, \
             status = CASE WHEN e.failed THEN 'failed' \
                           WHEN e.ok > 0 AND w.status = 'queued' AND w.pending_jobs <= e.ok THEN 'processed' \
                           ELSE w.status END, \
             processed_at = CASE WHEN NOT e.failed AND e.ok > 0 AND w.status = 'queued' \
                                      AND w.pending_jobs <= e.ok THEN now() \
                                 ELSE w.processed_at END \
           FROM per_event AS e JOIN locked USING (svix_id) WHERE w.svix_id = e.svix_id)"
    }
}
