// The real authsync stack for the node tests: the `authsync-test-stack` binary of the Rust
// `tests` crate (a fresh database, fake Clerk, the real api and worker processes) and its
// control API. `scripts/test` builds it; AUTHSYNC_TEST_STACK overrides where it is.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_BINARY = path.resolve(here, "../../../target/debug/authsync-test-stack");

/**
 * Starts the stack; resolves once it printed its URLs. `env` goes to the stack (the api reads
 * CORS_ALLOWED_ORIGINS from it).
 */
export async function startStack(env = {}) {
  const binary = process.env.AUTHSYNC_TEST_STACK || DEFAULT_BINARY;
  const child = spawn(binary, [], {
    env: { ...process.env, ...env },
    // stdin stays open: the stack ends everything when it closes (also when this process dies).
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exited = new Promise((resolve) => child.once("exit", (code, sig) => resolve({ code, sig })));
  // A test process that ends without stop() must not leave the stack behind.
  const onExit = () => child.kill("SIGTERM");
  process.once("exit", onExit);

  const urls = await new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error(`${binary} printed nothing within 60 s`)), 60_000);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${binary} (build it with cargo build -p tests --bins): ${e.message}`));
    });
    exited.then(({ code, sig }) => {
      clearTimeout(timer);
      reject(new Error(`${binary} exited (${code ?? sig}) before it was ready`));
    });
    lines.once("line", (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line));
    });
  });

  async function control(method, route, body) {
    const resp = await fetch(urls.control + route, {
      method,
      headers: body ? { "content-type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const json = await resp.json();
    if (!resp.ok) throw new Error(`control ${method} ${route}: ${resp.status} ${JSON.stringify(json)}`);
    return json;
  }

  return {
    api: urls.api,
    /** A fresh session token for `userId`, signed by fake Clerk. */
    token: async (userId) => (await control("GET", `/token/${encodeURIComponent(userId)}`)).token,
    /** Puts a user into fake Clerk; `provision: true` also provisions it through a webhook. */
    putUser: (user) => control("POST", "/users", user),
    stopWorker: () => control("POST", "/worker/stop"),
    startWorker: () => control("POST", "/worker/start"),
    /** Ends the stack (closing its stdin, then SIGTERM) and waits until it has exited. */
    async stop() {
      process.removeListener("exit", onExit);
      child.stdin.end();
      const timer = setTimeout(() => child.kill("SIGTERM"), 40_000);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}

/** A user id no other test uses. */
export function newUserId(prefix = "user_node") {
  return `${prefix}_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
}
