/**
 * `ensureUser`: the bounded retry loop of authsync's own `/setup` page, for a dashboard on
 * another origin. One attempt is: `POST /v1/sync` (200: ready; 202: a job id — the same job
 * while it is outstanding), then one long-poll of that job for up to `waitMs`. A job that
 * succeeded ends the loop with `me()`; one still queued, running or retrying is followed by
 * the next attempt; one that failed is replaced by the next attempt's `/v1/sync`. Answers
 * worth waiting for (429 and 5xx with `Retry-After`, a network error) use up an attempt and
 * wait as told (at most 30 s). Anything else — 401 for a bad token, 403, 404 — rejects at
 * once with the `AuthsyncHttpError`. After `maxAttempts` it rejects with
 * `AuthsyncSetupError`, whose `reference` is the job id. It never loops for ever.
 */
import type { AuthsyncClient } from "./client.js";
import { AuthsyncHttpError, AuthsyncSetupError, isAbortError } from "./errors.js";
import type { AuthsyncMe } from "./types.js";

export interface EnsureUserOptions {
  /** Attempts before giving up (default 10, as the `/setup` page). */
  maxAttempts?: number;
  /** How long each attempt long-polls the job, in ms (default 3000; the api caps it at 10,000). */
  waitMs?: number;
  /** Called as attempt `n` of `max` begins, once provisioning is under way (not for a user
   * who is ready at once): show "Attempt n/max". */
  onAttempt?: (n: number, max: number) => void;
  /** Aborts the loop (a component unmounting): rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** The longest pause a `Retry-After` may ask of a user waiting on a setup screen. */
const MAX_PAUSE_MS = 30_000;
/** The pause after a network error or an answer without `Retry-After`. */
const DEFAULT_PAUSE_MS = 1_000;

export async function ensureUser(client: AuthsyncClient, options: EnsureUserOptions = {}): Promise<AuthsyncMe> {
  const max = Math.max(1, Math.floor(options.maxAttempts ?? 10));
  const waitMs = Math.max(0, options.waitMs ?? 3000);
  const signal = options.signal;
  const req = signal ? { signal } : {};
  let reference: string | undefined;
  let lastError: unknown;
  let announced = false;
  const announce = (n: number) => {
    announced = true;
    options.onAttempt?.(n, max);
  };

  for (let attempt = 1; attempt <= max; attempt++) {
    signal?.throwIfAborted();
    if (announced) announce(attempt);
    try {
      const started = await client.sync(req);
      if (started.status === "ready") return await client.me(req);
      reference = started.job_id;
      if (!announced) announce(attempt);
      const job = await client.job(started.job_id, { ...req, waitMs });
      if (job.state === "succeeded") return await client.me(req);
      // queued, running, retrying: the next attempt follows the same job; failed: a new one.
    } catch (e) {
      if (isAbortError(e) || signal?.aborted) throw signal?.reason ?? e;
      const pause = pauseFor(e);
      if (pause === undefined) throw e;
      lastError = e;
      if (!announced) announce(attempt);
      if (attempt < max) await sleep(pause, signal);
    }
  }
  throw new AuthsyncSetupError(reference, max, lastError);
}

/** How long to wait before the next attempt after `e`; `undefined`: do not retry, rethrow. */
function pauseFor(e: unknown): number | undefined {
  if (e instanceof AuthsyncHttpError) {
    // 404 from /v1/me right after the job succeeded (a replica behind): try again.
    if (!e.retryable && !(e.status === 404 && e.code === "not_found")) return undefined;
    return e.retryAfter !== undefined ? Math.min(e.retryAfter * 1000, MAX_PAUSE_MS) : DEFAULT_PAUSE_MS;
  }
  // fetch rejects with a TypeError when the api cannot be reached (or CORS refuses).
  if (e instanceof TypeError) return DEFAULT_PAUSE_MS;
  return undefined;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
