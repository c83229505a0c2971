// Headless Chromium through chromedriver's W3C WebDriver HTTP protocol (a few fetch calls, as
// tests/src/browser.rs does in Rust). Debian's chromium and chromium-driver, which
// scripts/test installs when missing. close() ends chromedriver and every Chromium process
// of the session — found by the session's own profile folder on their command lines, since
// Chromium's crash handler leaves chromedriver's process group — also after a failure.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";
const first = (paths) => paths.find((p) => existsSync(p));

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Ids of processes (not this one) whose command line mentions `marker`. */
function pidsMentioning(marker) {
  const pids = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`).includes(marker)) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

async function killMentioning(marker) {
  const start = Date.now();
  for (;;) {
    const pids = pidsMentioning(marker);
    if (pids.length === 0 || Date.now() - start > 5000) return pids;
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startBrowser() {
  const driverBin = first(["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
  const chromium = first(["/usr/bin/chromium", "/usr/lib/chromium/chromium"]);
  if (!driverBin || !chromium) {
    throw new Error("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
  }
  const profile = mkdtempSync(path.join(tmpdir(), "authsync-node-chromium-"));
  const port = await freePort();
  const driver = spawn(driverBin, [`--port=${port}`], {
    env: { ...process.env, CHROME_CONFIG_HOME: profile, XDG_CONFIG_HOME: profile },
    stdio: "ignore",
  });
  const base = `http://127.0.0.1:${port}`;
  let session;
  // Interrupted (Ctrl-C, a runner's timeout): no after() hook runs, so end them here.
  const onSignal = (sig) => {
    driver.kill("SIGKILL");
    for (const pid of pidsMentioning(profile)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
    rmSync(profile, { recursive: true, force: true });
    process.exit(sig === "SIGINT" ? 130 : 143);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  async function close() {
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    if (session) {
      await fetch(`${base}/session/${session}`, { method: "DELETE" }).catch(() => {});
    }
    driver.kill("SIGKILL");
    const left = await killMentioning(profile);
    rmSync(profile, { recursive: true, force: true });
    return left;
  }

  try {
    const start = Date.now();
    while (!(await fetch(`${base}/status`).then((r) => r.ok, () => false))) {
      if (Date.now() - start > 20_000) throw new Error("chromedriver did not start within 20 s");
      await new Promise((r) => setTimeout(r, 100));
    }
    const caps = {
      capabilities: {
        alwaysMatch: {
          browserName: "chrome",
          "goog:chromeOptions": {
            binary: chromium,
            args: [
              "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-quic", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--window-size=1024,768",
              `--user-data-dir=${profile}`,
            ],
          },
        },
      },
    };
    const resp = await (await fetch(`${base}/session`, { method: "POST", body: JSON.stringify(caps) })).json();
    session = resp.value?.sessionId;
    if (!session) throw new Error(`no WebDriver session: ${JSON.stringify(resp)}`);
  } catch (e) {
    await close();
    throw e;
  }

  async function call(method, route, body) {
    const resp = await fetch(`${base}/session/${session}${route}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return (await resp.json()).value;
  }
  async function element(css) {
    const v = await call("POST", "/element", { using: "css selector", value: css });
    return v?.[ELEMENT];
  }

  return {
    profile,
    close,
    goto: (url) => call("POST", "/url", { url }),
    /** The visible text of the first element matching `css` ("" when there is none). */
    async text(css) {
      const id = await element(css);
      if (!id) return "";
      const v = await call("GET", `/element/${id}/text`);
      return typeof v === "string" ? v : "";
    },
    async click(css) {
      const id = await element(css);
      if (!id) throw new Error(`no element ${css}`);
      await call("POST", `/element/${id}/click`, {});
    },
    /** Polls (bounded) until `check()` is truthy; returns its value. */
    async waitFor(what, check, limitMs = 20_000) {
      const start = Date.now();
      for (;;) {
        const v = await check();
        if (v) return v;
        if (Date.now() - start > limitMs) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}
