// ensureUser's rules for answers the real stack cannot be made to give on cue (429 with
// Retry-After, 503 not_configured, an unreachable api, a failed job), through the client's
// `fetch` option: a scripted list of answers, one per request, checked in order.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AuthsyncHttpError, AuthsyncSetupError, createAuthsyncClient } from "../dist/index.js";

const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
const error = (status, code, headers) => json(status, { error: { code, message: `scripted ${code}` } }, headers);
const started = (jobId) => json(202, { status: "provisioning", job_id: jobId, poll_url: `/v1/jobs/${jobId}` });
const job = (jobId, state) => json(200, { job_id: jobId, state, attempts: 1, max_attempts: 10 });
const USER = { id: "3f0c", clerk_user_id: "user_1", email: "a@example.test", email_verified: true, role: "user" };
const ME = json(200, { user: USER, memberships: [] });

/** A client whose fetch answers from `script` — [expected "METHOD path", answer] — in order. */
function scripted(script) {
  const seen = [];
  const fetch = async (url, init) => {
    const u = new URL(url);
    const request = `${init.method} ${u.pathname}${u.search}`;
    seen.push(request);
    const next = script.shift();
    assert.ok(next, `unexpected request ${request}`);
    assert.equal(request, next[0]);
    if (next[1] instanceof Error) throw next[1];
    assert.equal(init.headers.authorization, "Bearer tok");
    return next[1];
  };
  const client = createAuthsyncClient({ baseUrl: "http://authsync.test/", getToken: () => "tok", fetch });
  return { client, seen, left: () => script.length };
}

test("a 429 on the long-poll waits for its Retry-After, uses up an attempt, and goes on", async () => {
  const { client, left } = scripted([
    ["POST /v1/sync", started("J1")],
    ["GET /v1/jobs/J1?wait_ms=50", error(429, "too_many_waiters", { "retry-after": "1" })],
    ["POST /v1/sync", started("J1")],
    ["GET /v1/jobs/J1?wait_ms=50", job("J1", "succeeded")],
    ["GET /v1/me", ME],
  ]);
  const attempts = [];
  const begun = Date.now();
  const me = await client.ensureUser({ waitMs: 50, onAttempt: (n, max) => attempts.push(`${n}/${max}`) });
  assert.ok(Date.now() - begun >= 900, "waited for Retry-After: 1");
  assert.deepEqual(me.user, USER);
  assert.deepEqual(attempts, ["1/10", "2/10"]);
  assert.equal(left(), 0);
});

test("503 not_configured is not retried: authsync cannot provision until it is configured", async () => {
  const { client, seen } = scripted([["POST /v1/sync", error(503, "not_configured", { "retry-after": "5" })]]);
  await assert.rejects(client.ensureUser(), (e) => {
    assert.ok(e instanceof AuthsyncHttpError);
    assert.equal(e.code, "not_configured");
    assert.equal(e.retryAfter, 5);
    return true;
  });
  assert.equal(seen.length, 1);
});

test("an unreachable api uses up the attempts and fails without a reference", async () => {
  const { client } = scripted([
    ["POST /v1/sync", new TypeError("fetch failed")],
    ["POST /v1/sync", new TypeError("fetch failed")],
  ]);
  await assert.rejects(client.ensureUser({ maxAttempts: 2 }), (e) => {
    assert.ok(e instanceof AuthsyncSetupError, `${e}`);
    assert.equal(e.reference, undefined);
    assert.equal(e.attempts, 2);
    assert.ok(e.cause instanceof TypeError);
    return true;
  });
});

test("a failed job is replaced by the next attempt's sync, and the reference is the newest job", async () => {
  const { client, left } = scripted([
    ["POST /v1/sync", started("J1")],
    ["GET /v1/jobs/J1?wait_ms=10", job("J1", "failed")],
    ["POST /v1/sync", started("J2")],
    ["GET /v1/jobs/J2?wait_ms=10", job("J2", "retrying")],
  ]);
  await assert.rejects(client.ensureUser({ maxAttempts: 2, waitMs: 10 }), (e) => {
    assert.ok(e instanceof AuthsyncSetupError);
    assert.equal(e.reference, "J2");
    assert.match(e.message, /J2/);
    return true;
  });
  assert.equal(left(), 0);
});

test("an error body that is not the api's still gives a typed error", async () => {
  const { client } = scripted([["GET /v1/me", new Response("<html>bad gateway</html>", { status: 502 })]]);
  await assert.rejects(client.me(), (e) => e instanceof AuthsyncHttpError && e.status === 502 && e.code === "http_502");
});
