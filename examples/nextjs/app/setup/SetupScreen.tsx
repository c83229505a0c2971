"use client";
// The setup screen for a user authsync has not provisioned yet: "Setting up your account…
// Attempt X/10" while the job runs, then a refresh of the dashboard; after the last attempt,
// the reference id to quote and "Try again".
import { useAuth } from "@clerk/nextjs";
import { useRouter } from "next/navigation";
import { useEffect, useMemo, useRef } from "react";
import { createAuthsyncClient } from "@authsync/client";
import { useAuthsyncUser } from "@authsync/client/react";
import { AUTHSYNC_URL } from "../../lib/authsync";

export function SetupScreen() {
  const { getToken, isLoaded, isSignedIn } = useAuth();
  const router = useRouter();
  // One client for the screen's life; it asks Clerk for a fresh token on every request.
  const tokens = useRef(getToken);
  tokens.current = getToken;
  const client = useMemo(
    () => createAuthsyncClient({ baseUrl: AUTHSYNC_URL, getToken: () => tokens.current() }),
    [],
  );
  const setup = useAuthsyncUser(client, { enabled: isLoaded && !!isSignedIn });

  useEffect(() => {
    // The server component renders the dashboard now that the user exists.
    if (setup.status === "ready") router.refresh();
  }, [setup.status, router]);

  if (setup.status === "failed") {
    return (
      <main>
        <h1>We could not finish setting up your account</h1>
        {setup.reference && (
          <p>
            If this keeps happening, contact support with the reference <code>{setup.reference}</code>.
          </p>
        )}
        <button type="button" onClick={setup.retry}>
          Try again
        </button>
      </main>
    );
  }
  return (
    <main aria-busy="true">
      <h1>Setting up your account…</h1>
      <p>{setup.status === "provisioning" ? `Attempt ${setup.attempt}/${setup.maxAttempts}` : " "}</p>
    </main>
  );
}
