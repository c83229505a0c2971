/**
 * `@authsync/client`: a typed client for authsync's dashboard routes and the bounded setup
 * loop (`ensureUser`). The React hook is `@authsync/client/react`.
 */
export { createAuthsyncClient, MAX_WAIT_MS } from "./client.js";
export type { AuthsyncClient, AuthsyncClientOptions, JobOptions, RequestOptions } from "./client.js";
export type { EnsureUserOptions } from "./ensure.js";
export { AuthsyncHttpError, AuthsyncSetupError } from "./errors.js";
export type {
  AuthsyncMe,
  AuthsyncMembership,
  AuthsyncOrganization,
  AuthsyncUser,
  ErrorBody,
  JobReport,
  JobState,
  SyncReady,
  SyncResult,
  SyncStarted,
} from "./types.js";
export type { components, paths } from "./generated/openapi.js";
