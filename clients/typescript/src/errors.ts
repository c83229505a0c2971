/** The errors the client throws: HTTP answers the api refused, and setup that gave up. */

/** A non-2xx answer from the api, with the `code` and `message` of its error body. */
export class AuthsyncHttpError extends Error {
  override name = "AuthsyncHttpError";
  /** The HTTP status (401 for a bad or expired session token). */
  readonly status: number;
  /** The api's stable error code (`invalid_token`, `token_expired`, `too_many_waiters`, …),
   * or `http_<status>` when the body was not the api's error shape. */
  readonly code: string;
  /** Seconds from `Retry-After`, when the api sent one (429, 503). */
  readonly retryAfter: number | undefined;

  constructor(status: number, code: string, message: string, retryAfter?: number) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  /** Worth another attempt: rate limits, an api or database briefly away. */
  get retryable(): boolean {
    if (this.code === "not_configured") return false;
    return this.status === 429 || this.status === 408 || this.status >= 500;
  }
}

/** `ensureUser` gave up: the account was not ready after `attempts` attempts. */
export class AuthsyncSetupError extends Error {
  override name = "AuthsyncSetupError";
  /** The provisioning job's id, for the user to quote to support (`undefined` when no job
   * was ever started, e.g. the api could not be reached). */
  readonly reference: string | undefined;
  /** How many attempts were made (the `maxAttempts` asked for). */
  readonly attempts: number;

  constructor(reference: string | undefined, attempts: number, cause?: unknown) {
    super(
      `Setting up your account did not finish after ${attempts} attempts` +
        (reference ? ` (reference ${reference})` : ""),
      cause === undefined ? undefined : { cause },
    );
    this.reference = reference;
    this.attempts = attempts;
  }
}

/** Thrown by the fetch of an aborted request, and by `ensureUser` when its signal aborts. */
export function isAbortError(e: unknown): boolean {
  return e instanceof Error && (e.name === "AbortError" || e.name === "TimeoutError");
}
