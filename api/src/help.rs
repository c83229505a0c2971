//! The `api` binary's help texts: what each command does, its flags, and every environment
//! variable it reads (a unit test keeps the lists in step with `config.rs`).

/// `api --help`.
pub const MAIN: &str = "api: authsync's HTTP service

usage:
  api [serve]                      serve the HTTP api until SIGTERM or Ctrl-C (the default)
  api migrate                      apply all migrations, then exit (safe to run twice)
  api simulate TYPE [FLAGS]        post a correctly signed sample event to a running api
  api help [COMMAND]               this text, or a command's
  api COMMAND --help | -h          a command's flags and the variables it reads
  api --version | -V               the version

environment (api serve):
  DATABASE_URL                 Postgres connection string (required)
  CLERK_WEBHOOK_SECRET         whsec_… secret(s), space-separated (required)
  PORT, BIND_ADDR              listen port (8080) and address (0.0.0.0)
  DATABASE_MAX_CONNECTIONS     the main pool's size (10)
  DATABASE_DIRECT_URL          direct connection beside a transaction pooler
  DATABASE_POOLER              transaction | none (default: guessed from the URLs)
  ADMIN_TOKEN                  bearer token for /admin and /admin/api
  CLERK_SECRET_KEY             Clerk Backend API key (the dashboard fallback)
  CLERK_JWKS_URL, CLERK_ISSUER session-token verification (/v1/sync, /v1/jobs, /v1/me)
  CLERK_AUTHORIZED_PARTIES     origins allowed in a session token's azp
  CORS_ALLOWED_ORIGINS         origins whose pages may call /v1/*
  WEBHOOK_BODY_LIMIT           largest webhook body in bytes (524288)
  WEBHOOK_IP_ALLOWLIST         CIDRs allowed to post webhooks
  TRUSTED_PROXIES              CIDRs whose X-Forwarded-For is believed
  SETUP_REDIRECT_URL, SETUP_HOME_URL   where /setup goes on success, and its home link (/)
  HTTP_HEADER_TIMEOUT_SECS, HTTP_KEEP_ALIVE_SECS, HTTP_REQUEST_TIMEOUT_SECS   (10, 75, 30)
  RUST_LOG, LOG_FORMAT=json    log filter and format

The README lists every variable with its full meaning.";

/// `api serve --help`.
pub const SERVE: &str = "usage: api [serve]

Serves the HTTP api (webhooks, the dashboard fallback, /admin, /docs, /healthz, /readyz,
/metrics) until SIGTERM or Ctrl-C. At start it says in one line whether the database is
ready, and if not what fixes it; /readyz answers the same until it is.

The variables it reads are those of `api --help`.";

/// `api migrate --help`.
pub const MIGRATE: &str = "usage: api migrate

Applies authsync's migrations and the job queue's, then exits. Safe to run twice.

environment:
  DATABASE_URL                 Postgres connection string (required)
  DATABASE_DIRECT_URL          direct connection used instead, beside a transaction pooler
  DATABASE_POOLER              transaction | none
  DATABASE_MAX_CONNECTIONS     pool size while it runs
  RUST_LOG, LOG_FORMAT=json    log filter and format";

/// `api simulate --help`.
pub const SIMULATE: &str =
    "usage: api simulate TYPE [--user-id ID] [--email ADDR] [--first-name NAME]
                    [--role user|admin] [--url URL]

Posts a correctly signed sample Clerk event to a running api and prints what it sent (event
type, svix id, user id, email) and the api's answer.

TYPE: user.created, user.updated, user.deleted, session.created

flags:
  --user-id ID         the Clerk user id (default: the sample user, user_2abcFakeAlice…)
  --email ADDR         the primary email (default: <user id>@example.com, lower-cased;
                       alice@example.com for the sample user)
  --first-name NAME    the first name (default: Alice)
  --role user|admin    public_metadata.role (default: none, so the role is user)
  --url URL            where to post (default: http://127.0.0.1:$PORT/webhooks/clerk)

user.created and user.updated carry the whole user, as Clerk sends it: every field without a
flag has its default, so user.updated changes only what its flags say. user.deleted and
session.created take only --user-id and --url.

environment:
  CLERK_WEBHOOK_SECRET         the api's whsec_… secret (the first one signs; required)
  PORT                         the api's port, for the default --url (8080)";

/// The help text of a command name, `None` for an unknown one.
pub fn of(command: &str) -> Option<&'static str> {
    Some(match command {
        "serve" => SERVE,
        "migrate" => MIGRATE,
        "simulate" => SIMULATE,
        "help" => MAIN,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    /// The variables a source file reads through `env.optional/required/parsed/secret("…")`
    /// (or names as `name: "…"` in a reading helper).
    pub fn variables_read(source: &str) -> Vec<String> {
        let mut names: Vec<String> = source
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.len() > 3 && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn the_help_lists_every_variable_the_api_reads() {
        let mut read = variables_read(include_str!("config.rs"));
        read.extend(variables_read(include_str!("../../jobs/src/config.rs")));
        read.extend(["RUST_LOG".to_owned(), "LOG_FORMAT".to_owned()]);
        // SMTP_CA_FILE is the worker's (read through a helper in jobs' config).
        read.retain(|v| v != "SMTP_CA_FILE");
        for name in read {
            assert!(
                super::MAIN.contains(&name),
                "`api --help` does not list {name}"
            );
        }
    }
}
