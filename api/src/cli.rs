//! The `api` command line: serve (default), `migrate`, `simulate`, help and version. The
//! arguments are read in full before anything runs, so `--help` and `--version` never read
//! the environment or touch the database, and a mistake in them is a usage error (exit 2)
//! rather than a failure (exit 1).

use crate::config::ApiConfig;
use crate::help;
use crate::simulate::{self, Simulation};
use crate::startup::Application;
use anyhow::Context;
use jobs::config::{process_env, DatabaseConfig};
use jobs::readiness::DbState;

/// Why the command did not succeed.
#[derive(Debug)]
pub enum CliError {
    /// The arguments are wrong: say so and point at `--help` (exit 2).
    Usage(String),
    /// The command ran and failed (exit 1).
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Failed(e)
    }
}

impl CliError {
    /// The process' exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}

/// What the arguments ask for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Serve,
    Migrate,
    /// The arguments after `simulate`.
    Simulate(Vec<String>),
    /// Print this help text.
    Help(&'static str),
    Version,
}

fn is_help(arg: &str) -> bool {
    matches!(arg, "-h" | "--help")
}

/// Reads the arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Command, CliError> {
    let first = args.first().map(String::as_str);
    let rest = args.get(1..).unwrap_or_default();
    let no_more = |command: &'static str, then: Command| -> Result<Command, CliError> {
        match rest.first().map(String::as_str) {
            None => Ok(then),
            Some(h) if is_help(h) => Ok(Command::Help(help::of(command).expect("known"))),
            Some(other) => Err(CliError::Usage(format!(
                "`api {command}` takes no argument `{other}`"
            ))),
        }
    };
    match first {
        None => Ok(Command::Serve),
        Some("serve") => no_more("serve", Command::Serve),
        Some("migrate") => no_more("migrate", Command::Migrate),
        Some("simulate") if rest.iter().any(|a| is_help(a)) => Ok(Command::Help(help::SIMULATE)),
        Some("simulate") => Ok(Command::Simulate(rest.to_vec())),
        Some("help") => match rest.first() {
            None => Ok(Command::Help(help::MAIN)),
            Some(topic) => help::of(topic)
                .map(Command::Help)
                .ok_or_else(|| CliError::Usage(format!("no help for unknown command `{topic}`"))),
        },
        Some(h) if is_help(h) => Ok(Command::Help(help::MAIN)),
        Some("-V" | "--version") => Ok(Command::Version),
        Some(flag) if flag.starts_with('-') => {
            Err(CliError::Usage(format!("unknown option `{flag}`")))
        }
        Some(other) => Err(CliError::Usage(format!(
            "unknown command `{other}` (commands: serve, migrate, simulate, help)"
        ))),
    }
}

pub async fn run(args: Vec<String>) -> Result<(), CliError> {
    match parse(&args)? {
        Command::Help(text) => println!("{text}"),
        Command::Version => println!("api {}", env!("CARGO_PKG_VERSION")),
        Command::Serve => {
            let env = process_env();
            let config = ApiConfig::from_env(&env).map_err(anyhow::Error::from)?;
            let pool = jobs::db::pool(&config.database).map_err(anyhow::Error::from)?;
            let app = Application::build(config, pool)
                .await
                .context("binding the listener")?;
            app.run_until(shutdown_signal())
                .await
                .map_err(anyhow::Error::from)?;
        }
        Command::Migrate => {
            let env = process_env();
            let db = DatabaseConfig::from_env(&env).map_err(anyhow::Error::from)?;
            let pool = jobs::db::pool(&db).map_err(anyhow::Error::from)?;
            if let Err(e) = jobs::db::migrate(&pool).await {
                // An unreachable server or a missing database: its one line, with the fix.
                let state = jobs::readiness::check(&pool).await;
                return Err(match state {
                    DbState::Unreachable { .. } | DbState::Missing { .. } => {
                        anyhow::anyhow!(state.message())
                    }
                    _ => anyhow::Error::from(e),
                }
                .into());
            }
            tracing::info!("migrations applied");
        }
        Command::Simulate(args) => {
            let env = process_env();
            let sim = parse_simulation(&args, &env)?;
            let sent = simulate::send(&sim).await?;
            println!("{sent}");
            if !(200..300).contains(&sent.status) {
                return Err(anyhow::anyhow!("the api answered {}", sent.status).into());
            }
        }
    }
    Ok(())
}

fn parse_simulation<F: Fn(&str) -> Option<String>>(
    args: &[String],
    env: &jobs::config::Env<F>,
) -> Result<Simulation, CliError> {
    let usage = |m: String| CliError::Usage(m);
    let Some(event_type) = args.first().filter(|a| !a.starts_with('-')) else {
        return Err(usage(format!(
            "`api simulate` needs an event type first: one of {}",
            simulate::EVENT_TYPES.join(", ")
        )));
    };
    if !simulate::EVENT_TYPES.contains(&event_type.as_str()) {
        return Err(usage(format!(
            "unknown event type `{event_type}`: one of {}",
            simulate::EVENT_TYPES.join(", ")
        )));
    }
    let port = env.optional("PORT").unwrap_or_else(|| "8080".into());
    let mut sim = Simulation {
        event_type: event_type.clone(),
        user_id: None,
        email: None,
        first_name: None,
        role: None,
        url: format!("http://127.0.0.1:{port}/webhooks/clerk"),
        secret: String::new(),
    };
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .ok_or_else(|| usage(format!("`{flag}` needs a value")))?
            .clone();
        match flag.as_str() {
            "--user-id" => sim.user_id = Some(value),
            "--email" => sim.email = Some(value),
            "--first-name" => sim.first_name = Some(value),
            "--role" => sim.role = Some(value),
            "--url" => sim.url = value,
            _ => return Err(usage(format!("unknown option `{flag}` for `api simulate`"))),
        }
    }
    simulate::check_flags(&sim).map_err(usage)?;
    sim.secret = env
        .required("CLERK_WEBHOOK_SECRET")
        .map_err(anyhow::Error::from)?;
    Ok(sim)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn arguments_read_as_commands_or_usage_errors() {
        for (line, want) in [
            ("", Ok(Command::Serve)),
            ("serve", Ok(Command::Serve)),
            ("migrate", Ok(Command::Migrate)),
            ("--help", Ok(Command::Help(help::MAIN))),
            ("-h", Ok(Command::Help(help::MAIN))),
            ("help", Ok(Command::Help(help::MAIN))),
            ("help migrate", Ok(Command::Help(help::MIGRATE))),
            ("migrate --help", Ok(Command::Help(help::MIGRATE))),
            ("serve -h", Ok(Command::Help(help::SERVE))),
            ("simulate --help", Ok(Command::Help(help::SIMULATE))),
            (
                "simulate user.created -h",
                Ok(Command::Help(help::SIMULATE)),
            ),
            ("--version", Ok(Command::Version)),
            ("-V", Ok(Command::Version)),
            ("bogus", Err("unknown command `bogus`")),
            ("--bogus", Err("unknown option `--bogus`")),
            ("migrate now", Err("takes no argument `now`")),
            ("help bogus", Err("unknown command `bogus`")),
        ] {
            match (parse(&args(line)), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{line:?}"),
                (Err(CliError::Usage(got)), Err(want)) => {
                    assert!(got.contains(want), "{line:?}: {got}")
                }
                (got, want) => panic!("{line:?}: {got:?}, wanted {want:?}"),
            }
        }
    }
}
