/**
 * The api's bodies, named: every one is taken from the generated OpenAPI types
 * (`src/generated/openapi.ts`), so a change in the api shows here as a type error.
 */
import type { components, paths } from "./generated/openapi.js";

type Schemas = components["schemas"];

/** A provisioned user, as `/v1/sync`, `/v1/jobs/{id}` and `/v1/me` show it. */
export type AuthsyncUser = Schemas["User"];
/** `GET /v1/me`: the user and their live memberships with organizations. */
export type AuthsyncMe = Schemas["Me"];
export type AuthsyncMembership = Schemas["Membership"];
export type AuthsyncOrganization = Schemas["Organization"];
/** `POST /v1/sync` 200: the user is provisioned already. */
export type SyncReady = Schemas["SyncReady"];
/** `POST /v1/sync` 202: an urgent job provisions the user; follow it with `job()`. */
export type SyncStarted = Schemas["SyncStarted"];
/** What `sync()` resolves to: `status` tells which. */
export type SyncResult = (SyncReady & { status: "ready" }) | (SyncStarted & { status: "provisioning" });
/** `GET /v1/jobs/{id}`. */
export type JobReport = Schemas["JobReport"];
export type JobState = Schemas["State"];
/** Every error the api sends: `{ "error": { "code", "message" } }`. */
export type ErrorBody = Schemas["ErrorBody"];

// Compile-time checks that the routes the client calls still answer these bodies.
type Json<R> = R extends { content: { [k: string]: infer B } } ? B : never;
type Check<A, B extends A> = B;
type _SyncOk = Check<SyncReady, Json<paths["/v1/sync"]["post"]["responses"][200]>>;
type _SyncStarted = Check<SyncStarted, Json<paths["/v1/sync"]["post"]["responses"][202]>>;
type _Job = Check<JobReport, Json<paths["/v1/jobs/{id}"]["get"]["responses"][200]>>;
type _Me = Check<AuthsyncMe, Json<paths["/v1/me"]["get"]["responses"][200]>>;
