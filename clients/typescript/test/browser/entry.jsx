// The browser test's dashboard page: a setup screen built on useAuthsyncUser, as an app on
// another origin would write it. Configured by its query string: `api` (authsync), `user`
// (whose token the page's own server mints), `maxAttempts`, `waitMs`.
import { createRoot } from "react-dom/client";
import { createAuthsyncClient } from "../../dist/index.js";
import { useAuthsyncUser } from "../../dist/react.js";

const q = new URLSearchParams(location.search);
const client = createAuthsyncClient({
  baseUrl: q.get("api"),
  // Stands in for Clerk's `getToken()`: a fresh session token from the page's own server.
  getToken: async () => (await (await fetch(`/token?user=${encodeURIComponent(q.get("user"))}`)).json()).token,
});
const options = {
  maxAttempts: q.has("maxAttempts") ? Number(q.get("maxAttempts")) : undefined,
  waitMs: q.has("waitMs") ? Number(q.get("waitMs")) : undefined,
};

function Setup() {
  const s = useAuthsyncUser(client, options);
  if (s.status === "ready") {
    return (
      <main id="ready">
        <h1>Welcome, {s.user.first_name}</h1>
        <p id="email">{s.user.email}</p>
      </main>
    );
  }
  if (s.status === "failed") {
    return (
      <main id="failed">
        <p>We could not finish setting up your account.</p>
        {s.reference && (
          <p id="reference-line">
            Reference: <code id="reference">{s.reference}</code>
          </p>
        )}
        <button id="retry" onClick={s.retry}>
          Try again
        </button>
      </main>
    );
  }
  return (
    <main id="working">
      <p>Setting up your account…</p>
      <p id="attempt">{s.status === "provisioning" ? `Attempt ${s.attempt}/${s.maxAttempts}` : ""}</p>
    </main>
  );
}

createRoot(document.getElementById("root")).render(<Setup />);
