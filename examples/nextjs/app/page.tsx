// The dashboard, a server component. It asks authsync for the signed-in user with the
// session token (the reference apps' server-side fallback): a user provisioned already
// (by the webhook, usually) is shown at once; a brand-new one, whose webhook has not been
// processed yet, gets the setup screen, which follows the provisioning job from the browser.
import { auth } from "@clerk/nextjs/server";
import { AuthsyncHttpError, type AuthsyncUser } from "@authsync/client";
import { serverClient } from "../lib/authsync";
import { SetupScreen } from "./setup/SetupScreen";

export const dynamic = "force-dynamic";

export default async function DashboardPage() {
  const { getToken } = await auth();
  const client = serverClient(await getToken());
  let user: AuthsyncUser | null = null;
  try {
    const synced = await client.sync();
    if (synced.status === "ready") user = synced.user;
  } catch (e) {
    // authsync away or refusing: the setup screen retries from the browser and says so.
    if (!(e instanceof AuthsyncHttpError) && !(e instanceof TypeError)) throw e;
  }
  if (!user) return <SetupScreen />;
  return <Dashboard user={user} />;
}

function Dashboard({ user }: { user: AuthsyncUser }) {
  return (
    <main>
      <h1>Welcome, {user.first_name ?? user.email}</h1>
      <p>
        Your account id is <code>{user.id}</code> ({user.role}).
      </p>
    </main>
  );
}
