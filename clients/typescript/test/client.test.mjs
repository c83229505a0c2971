// The built client (dist/) against the real api and worker with fake Clerk: a ready user, a
// user provisioned on demand, a stopped worker (ensureUser gives up with the job id as its
// reference), and a bad token (a typed 401).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { AuthsyncHttpError, AuthsyncSetupError, createAuthsyncClient } from "../dist/index.js";
import { newUserId, startStack } from "./stack.mjs";

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

const clientFor = (userId) =>
  createAuthsyncClient({ baseUrl: stack.api, getToken: () => stack.token(userId) });

describe("createAuthsyncClient against the real api", () => {
  test("a ready user: sync() answers ready and ensureUser() resolves at once, without attempts", async () => {
    const id = newUserId();
    const { email } = await stack.putUser({ id, first_name: "Ready", provision: true });
    const client = clientFor(id);

    const synced = await client.sync();
    assert.equal(synced.status, "ready");
    assert.equal(synced.status === "ready" && synced.user.clerk_user_id, id);

    const attempts = [];
    const me = await client.ensureUser({ onAttempt: (n, max) => attempts.push([n, max]) });
    assert.equal(me.user.clerk_user_id, id);
    assert.equal(me.user.email, email);
    assert.equal(me.user.first_name, "Ready");
    assert.deepEqual(me.memberships, []);
    assert.deepEqual(attempts, [], "a ready user is never shown an attempt");
  });

  test("a user unknown here is provisioned on demand: ensureUser() follows the job and resolves to me()", async () => {
    const id = newUserId();
    const { email } = await stack.putUser({ id, first_name: "OnDemand" });
    const client = clientFor(id);
    await assert.rejects(client.me(), (e) => e instanceof AuthsyncHttpError && e.status === 404);

    const attempts = [];
    const me = await client.ensureUser({ waitMs: 5000, onAttempt: (n, max) => attempts.push([n, max]) });
    assert.equal(me.user.clerk_user_id, id);
    assert.equal(me.user.email, email);
    assert.equal(me.user.first_name, "OnDemand");
    assert.ok(attempts.length >= 1, "provisioning showed its first attempt");
    assert.deepEqual(attempts[0], [1, 10]);
    assert.deepEqual((await client.me()).user, me.user);
    assert.equal((await client.sync()).status, "ready");
  });

  test("job() reports the provisioning job to its owner only", async () => {
    const [owner, other] = [newUserId(), newUserId()];
    await stack.putUser({ id: owner });
    await stack.stopWorker();
    try {
      const started = await clientFor(owner).sync();
      assert.equal(started.status, "provisioning");
      const jobId = started.status === "provisioning" ? started.job_id : "";
      assert.equal((await clientFor(owner).sync()).job_id, jobId, "a second sync returns the same job");
      const report = await clientFor(owner).job(jobId, { waitMs: 200 });
      assert.equal(report.job_id, jobId);
      assert.equal(report.state, "queued");
      await assert.rejects(
        clientFor(other).job(jobId),
        (e) => e instanceof AuthsyncHttpError && e.status === 404 && e.code === "not_found",
      );
    } finally {
      await stack.startWorker();
    }
    const done = await clientFor(owner).ensureUser({ waitMs: 5000 });
    assert.equal(done.user.clerk_user_id, owner);
  });

  test("with the worker stopped, ensureUser() gives up after maxAttempts with the job id as reference", async () => {
    const id = newUserId();
    await stack.putUser({ id });
    await stack.stopWorker();
    const client = clientFor(id);
    const attempts = [];
    let error;
    let again;
    try {
      try {
        await client.ensureUser({ maxAttempts: 3, waitMs: 300, onAttempt: (n, max) => attempts.push([n, max]) });
        assert.fail("ensureUser resolved with no worker running");
      } catch (e) {
        error = e;
      }
      // Still without a worker (a restarted one could finish the job first): the api's
      // outstanding job for this user.
      again = await client.sync();
    } finally {
      await stack.startWorker();
    }
    assert.ok(error instanceof AuthsyncSetupError, `an AuthsyncSetupError, not ${error}`);
    assert.equal(error.attempts, 3);
    assert.deepEqual(attempts, [
      [1, 3],
      [2, 3],
      [3, 3],
    ]);
    // The reference is the job the api still reports as this user's outstanding one.
    assert.equal(again.status === "provisioning" ? again.job_id : again.status, error.reference);
    assert.match(error.message, new RegExp(error.reference));
    // With a worker back, the same loop succeeds (what "Try again" does).
    const me = await client.ensureUser({ waitMs: 5000 });
    assert.equal(me.user.clerk_user_id, id);
  });

  test("a bad token is a typed 401 from every call, and ensureUser() does not retry it", async () => {
    let asked = 0;
    const client = createAuthsyncClient({
      baseUrl: stack.api,
      getToken: () => {
        asked += 1;
        return "not-a-session-token";
      },
    });
    for (const call of [() => client.sync(), () => client.me(), () => client.job("01JOBID")]) {
      await assert.rejects(call(), (e) => {
        assert.ok(e instanceof AuthsyncHttpError, `${e}`);
        assert.equal(e.status, 401);
        assert.equal(e.code, "invalid_token");
        assert.ok(e.message.length > 0);
        return true;
      });
    }
    asked = 0;
    await assert.rejects(client.ensureUser(), (e) => e instanceof AuthsyncHttpError && e.status === 401);
    assert.equal(asked, 1, "one request, no retries");
  });

  test("no token is a typed 401 missing_token", async () => {
    const client = createAuthsyncClient({ baseUrl: stack.api, getToken: async () => null });
    await assert.rejects(client.sync(), (e) => e instanceof AuthsyncHttpError && e.code === "missing_token");
  });

  test("an aborted ensureUser() rejects with the signal's reason", async () => {
    const id = newUserId();
    await stack.putUser({ id });
    await stack.stopWorker();
    try {
      const controller = new AbortController();
      const pending = clientFor(id).ensureUser({ waitMs: 5000, signal: controller.signal });
      setTimeout(() => controller.abort(new Error("unmounted")), 300);
      await assert.rejects(pending, /unmounted/);
    } finally {
      await stack.startWorker();
    }
  });
});
