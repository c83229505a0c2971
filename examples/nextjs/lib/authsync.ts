// One place for where authsync answers. NEXT_PUBLIC_ because the setup screen calls it from
// the browser (list this app's origin in authsync's CORS_ALLOWED_ORIGINS).
import { createAuthsyncClient, type AuthsyncClient } from "@authsync/client";

export const AUTHSYNC_URL = process.env.NEXT_PUBLIC_AUTHSYNC_URL ?? "http://localhost:8080";

/** A client that sends `token` (a server component's `(await auth()).getToken()`). */
export function serverClient(token: string | null): AuthsyncClient {
  return createAuthsyncClient({ baseUrl: AUTHSYNC_URL, getToken: () => token });
}
