/**
 * `createAuthsyncClient`: the three dashboard routes of authsync as typed calls. Every request
 * carries the session token from `getToken()` (Clerk's `getToken()`), asked for anew each
 * time, since Clerk's session tokens live about a minute.
 */
import { AuthsyncHttpError } from "./errors.js";
import { ensureUser, type EnsureUserOptions } from "./ensure.js";
import type { AuthsyncMe, ErrorBody, JobReport, SyncResult } from "./types.js";

export interface AuthsyncClientOptions {
  /** Where authsync answers, e.g. `https://authsync.example.com` (no trailing path). */
  baseUrl: string;
  /** The signed-in user's Clerk session token; `null` when signed out. */
  getToken: () => Promise<string | null | undefined> | string | null | undefined;
  /** A fetch to use instead of the global one (tests, server runtimes). */
  fetch?: typeof fetch;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface JobOptions extends RequestOptions {
  /** Long-poll: wait up to this many milliseconds (the api caps it at 10,000) for the job to end. */
  waitMs?: number;
}

export interface AuthsyncClient {
  /** `POST /v1/sync`: `{status: "ready", user}` or `{status: "provisioning", job_id, poll_url}`. */
  sync(options?: RequestOptions): Promise<SyncResult>;
  /** `GET /v1/jobs/{id}`: the caller's provisioning job, long-polled with `waitMs`. */
  job(id: string, options?: JobOptions): Promise<JobReport>;
  /** `GET /v1/me`: the user's row and memberships; a 404 `AuthsyncHttpError` before provisioning. */
  me(options?: RequestOptions): Promise<AuthsyncMe>;
  /** Provisions the user if needed and resolves to `me()`, in a bounded number of attempts. */
  ensureUser(options?: EnsureUserOptions): Promise<AuthsyncMe>;
}

/** The api's longest long-poll. */
export const MAX_WAIT_MS = 10_000;

export function createAuthsyncClient(options: AuthsyncClientOptions): AuthsyncClient {
  const base = options.baseUrl.replace(/\/+$/, "");
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);

  async function call<T>(method: "GET" | "POST", path: string, signal?: AbortSignal): Promise<T> {
    const token = await options.getToken();
    const headers: Record<string, string> = { accept: "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    const init: RequestInit = { method, headers };
    if (signal) init.signal = signal;
    const resp = await doFetch(base + path, init);
    const body: unknown = await resp.json().catch(() => undefined);
    if (!resp.ok) throw httpError(resp, body);
    return body as T;
  }

  const client: AuthsyncClient = {
    sync: (o) => call<SyncResult>("POST", "/v1/sync", o?.signal),
    job: (id, o) => {
      const wait = o?.waitMs ? `?wait_ms=${Math.max(0, Math.min(Math.round(o.waitMs), MAX_WAIT_MS))}` : "";
      return call<JobReport>("GET", `/v1/jobs/${encodeURIComponent(id)}${wait}`, o?.signal);
    },
    me: (o) => call<AuthsyncMe>("GET", "/v1/me", o?.signal),
    ensureUser: (o) => ensureUser(client, o),
  };
  return client;
}

function httpError(resp: Response, body: unknown): AuthsyncHttpError {
  const detail = (body as Partial<ErrorBody> | undefined)?.error;
  const header = resp.headers.get("retry-after");
  const retryAfter = header !== null && /^\d+$/.test(header.trim()) ? Number(header) : undefined;
  return new AuthsyncHttpError(
    resp.status,
    typeof detail?.code === "string" ? detail.code : `http_${resp.status}`,
    typeof detail?.message === "string" ? detail.message : `authsync answered ${resp.status}`,
    retryAfter,
  );
}
