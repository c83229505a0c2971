// useAuthsyncUser in real headless Chromium: a page bundled with esbuild from
// test/browser/entry.jsx, served by this test on its own origin (listed in the api's
// CORS_ALLOWED_ORIGINS), calls the real api across origins. What the user sees: "Attempt X/10"
// while the worker is stopped, then their data once it runs; with few attempts, a failed state
// with the job id as the reference and a "Try again" that works.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { build } from "esbuild";
import { createAuthsyncClient } from "../dist/index.js";
import { newUserId, startStack } from "./stack.mjs";
import { startBrowser } from "./webdriver.mjs";

const PAGE = `<!doctype html>
<meta charset="utf-8"><title>dashboard</title>
<div id="root"></div>
<script type="module" src="/app.js"></script>`;

let stack, browser, server, origin, bundle;

before(async () => {
  const out = await build({
    entryPoints: [new URL("./browser/entry.jsx", import.meta.url).pathname],
    bundle: true,
    format: "esm",
    jsx: "automatic",
    define: { "process.env.NODE_ENV": '"production"' },
    write: false,
    logLevel: "silent",
  });
  bundle = out.outputFiles[0].text;
  server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://page");
    if (url.pathname === "/app.js") {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" }).end(bundle);
    } else if (url.pathname === "/token") {
      const token = await stack.token(url.searchParams.get("user"));
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token }));
    } else {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(PAGE);
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${server.address().port}`;
  stack = await startStack({ CORS_ALLOWED_ORIGINS: origin });
  browser = await startBrowser();
});

after(async () => {
  const left = await browser?.close();
  await stack?.stop();
  server?.closeAllConnections();
  server?.close();
  assert.deepEqual(left ?? [], [], "every Chromium process of the session ended");
});

const page = (user, params = {}) =>
  `${origin}/?${new URLSearchParams({ api: stack.api, user, ...params })}`;

test("the setup screen shows Attempt X/10 while the worker is stopped, then the user's data", async () => {
  const id = newUserId();
  const { email } = await stack.putUser({ id, first_name: "Browsing" });
  await stack.stopWorker();
  try {
    await browser.goto(page(id, { waitMs: "1000" }));
    await browser.waitFor("Setting up your account…", async () =>
      (await browser.text("#working")).includes("Setting up your account…"),
    );
    const seen = await browser.waitFor("a second attempt", async () => {
      const text = await browser.text("#attempt");
      return /^Attempt [2-9]\/10$/.test(text) && text;
    });
    assert.match(seen, /^Attempt [2-9]\/10$/);
  } finally {
    await stack.startWorker();
  }
  await browser.waitFor("the ready screen", async () => (await browser.text("#ready")) !== "");
  assert.equal(await browser.text("#ready h1"), "Welcome, Browsing");
  assert.equal(await browser.text("#email"), email);
});

test("after its last attempt the screen shows the reference id, and Try again provisions the user", async () => {
  const id = newUserId();
  const { email } = await stack.putUser({ id, first_name: "Retrying" });
  await stack.stopWorker();
  let reference;
  try {
    await browser.goto(page(id, { maxAttempts: "3", waitMs: "300" }));
    await browser.waitFor("the failed screen", async () => (await browser.text("#failed")) !== "");
    reference = await browser.text("#reference");
    assert.ok(reference, "a reference id is shown");
    // It is the user's provisioning job, still outstanding: a sync returns the same id.
    const client = createAuthsyncClient({ baseUrl: stack.api, getToken: () => stack.token(id) });
    const synced = await client.sync();
    assert.equal(synced.status === "provisioning" && synced.job_id, reference);
    assert.equal(await browser.text("#retry"), "Try again");
  } finally {
    await stack.startWorker();
  }
  await browser.click("#retry");
  await browser.waitFor("the ready screen after Try again", async () => (await browser.text("#ready")) !== "");
  assert.equal(await browser.text("#ready h1"), "Welcome, Retrying");
  assert.equal(await browser.text("#email"), email);
});
