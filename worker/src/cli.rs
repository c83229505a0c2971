//! The `worker` command line: no arguments runs it; `--help` and `--version` print and exit
//! without reading the environment or touching the database; anything else is a usage error
//! (exit 2).

/// `worker --help`.
pub const HELP: &str = "worker: runs every authsync job queue until SIGTERM or Ctrl-C

usage:
  worker                 run (as many processes as you like against one database)
  worker --help | -h     this text
  worker --version | -V  the version

At start it says in one line whether the database is ready, and if not what fixes it (for
example `run \\`api migrate\\``), and waits until it is.

environment:
  DATABASE_URL                 Postgres connection string (required)
  DATABASE_MAX_CONNECTIONS     the pool's size (6; at least 3)
  DATABASE_DIRECT_URL          direct connection for LISTEN beside a transaction pooler
  DATABASE_POOLER              transaction | none (default: guessed from the URLs)
  WORKER_CONCURRENCY           jobs of one queue at once (16)
  WORKER_URGENT_CONCURRENCY    jobs of each urgent queue at once, reserved (4)
  CLERK_SECRET_KEY             Clerk Backend API key (metadata write-back, fallback, Reconcile)
  CLERK_API_URL                Backend API base URL (https://api.clerk.com)
  CLERK_JWKS_URL               Reconcile's instance check
  SMTP_URL, MAIL_FROM          outgoing mail (unset: .eml files in MAIL_DIR)
  SMTP_CA_FILE                 extra root certificates for the SMTP server
  MAIL_DIR                     folder for .eml files (mail-out)
  PERSONAL_ORGANIZATIONS       true: an organization for every new user
  WORKER_METRICS_PORT          serve /healthz, /readyz and /metrics on this port
  RETENTION_INTERVAL_SECS, RETENTION_JOBS_DAYS, RETENTION_EVENTS_DAYS   (3600, 7, 30)
  RECONCILE_INTERVAL_SECS, RECONCILE_MAX_DELETIONS                      (3600, 10)
  RUST_LOG, LOG_FORMAT=json    log filter and format

The README lists every variable with its full meaning.";

/// What the arguments ask for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run,
    Help,
    Version,
}

/// Reads the arguments (without the program name); `Err` is the usage error's message.
pub fn parse(args: &[String]) -> Result<Command, String> {
    match args.first().map(String::as_str) {
        None => Ok(Command::Run),
        Some(_) if args.len() > 1 => Err(format!(
            "unexpected argument `{}` (the worker takes none)",
            args[1]
        )),
        Some("-h" | "--help" | "help") => Ok(Command::Help),
        Some("-V" | "--version") => Ok(Command::Version),
        Some(flag) if flag.starts_with('-') => Err(format!("unknown option `{flag}`")),
        Some(other) => Err(format!(
            "unexpected argument `{other}` (the worker takes none)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_read_as_commands_or_usage_errors() {
        let args =
            |line: &str| -> Vec<String> { line.split_whitespace().map(Into::into).collect() };
        assert_eq!(parse(&args("")), Ok(Command::Run));
        assert_eq!(parse(&args("--help")), Ok(Command::Help));
        assert_eq!(parse(&args("-h")), Ok(Command::Help));
        assert_eq!(parse(&args("-V")), Ok(Command::Version));
        assert!(parse(&args("--bogus"))
            .unwrap_err()
            .contains("unknown option `--bogus`"));
        assert!(parse(&args("run")).unwrap_err().contains("`run`"));
        assert!(parse(&args("--help extra"))
            .unwrap_err()
            .contains("`extra`"));
    }

    #[test]
    fn the_help_lists_every_variable_the_worker_reads() {
        let mut read = Vec::new();
        for source in [
            include_str!("lib.rs"),
            include_str!("../../jobs/src/config.rs"),
        ] {
            read.extend(
                source
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .filter(|s| {
                        s.len() > 3 && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                    })
                    .map(str::to_owned),
            );
        }
        for name in read {
            assert!(HELP.contains(&name), "`worker --help` does not list {name}");
        }
    }
}
