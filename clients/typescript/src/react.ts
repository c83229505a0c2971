/**
 * `@authsync/client/react`: `useAuthsyncUser(client, options)` runs `ensureUser` for a setup
 * screen and returns what to show: "Setting up your account… Attempt 3/10", the user once
 * ready, or the reference id and a `retry()` for a "Try again" button once it gave up.
 */
import { useCallback, useEffect, useState } from "react";
import type { AuthsyncClient } from "./client.js";
import type { EnsureUserOptions } from "./ensure.js";
import { AuthsyncSetupError } from "./errors.js";
import type { AuthsyncMembership, AuthsyncUser } from "./types.js";

export type AuthsyncUserStatus = "loading" | "provisioning" | "ready" | "failed";

export interface UseAuthsyncUserOptions {
  /** Default 10. */
  maxAttempts?: number;
  /** Each attempt's long-poll in ms; default 3000. */
  waitMs?: number;
  /** `false`: do nothing yet (e.g. until Clerk has loaded the session). Default `true`. */
  enabled?: boolean;
}

export interface AuthsyncUserState {
  /** `loading` until the api says the user is being provisioned (or ready); then
   * `provisioning` while attempts go on, `ready` with `user`, or `failed`. */
  status: AuthsyncUserStatus;
  user: AuthsyncUser | null;
  memberships: AuthsyncMembership[];
  /** The attempt under way (0 before the first). */
  attempt: number;
  maxAttempts: number;
  /** The provisioning job's id once one exists: show it on failure for support. */
  reference: string | null;
  /** Why it failed: an `AuthsyncSetupError`, or an `AuthsyncHttpError` (401: signed out). */
  error: Error | null;
  /** Starts again from the first attempt (a "Try again" button). */
  retry: () => void;
}

type Snapshot = Omit<AuthsyncUserState, "retry">;

function initial(maxAttempts: number): Snapshot {
  return { status: "loading", user: null, memberships: [], attempt: 0, maxAttempts, reference: null, error: null };
}

export function useAuthsyncUser(client: AuthsyncClient, options: UseAuthsyncUserOptions = {}): AuthsyncUserState {
  const maxAttempts = options.maxAttempts ?? 10;
  const waitMs = options.waitMs ?? 3000;
  const enabled = options.enabled ?? true;
  const [run, setRun] = useState(0);
  const [state, setState] = useState<Snapshot>(() => initial(maxAttempts));

  useEffect(() => {
    if (!enabled) return;
    const controller = new AbortController();
    const live = () => !controller.signal.aborted;
    setState(initial(maxAttempts));
    const ensure: EnsureUserOptions = {
      maxAttempts,
      waitMs,
      signal: controller.signal,
      onAttempt: (n, max) => {
        if (live()) setState((s) => ({ ...s, status: "provisioning", attempt: n, maxAttempts: max }));
      },
    };
    client.ensureUser(ensure).then(
      (me) => {
        if (live()) setState((s) => ({ ...s, status: "ready", user: me.user, memberships: me.memberships, error: null }));
      },
      (e: unknown) => {
        if (!live()) return;
        const error = e instanceof Error ? e : new Error(String(e));
        setState((s) => ({
          ...s,
          status: "failed",
          error,
          reference: e instanceof AuthsyncSetupError ? (e.reference ?? null) : s.reference,
          attempt: e instanceof AuthsyncSetupError ? e.attempts : s.attempt,
        }));
      },
    );
    return () => controller.abort();
  }, [client, maxAttempts, waitMs, enabled, run]);

  const retry = useCallback(() => setRun((r) => r + 1), []);
  return { ...state, retry };
}
