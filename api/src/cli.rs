//! The `api` command line: serve (default), `migrate`, `simulate`.

use crate::config::ApiConfig;
use crate::simulate::{self, Simulation};
use crate::startup::Application;
use anyhow::{bail, Context};
use jobs::config::{process_env, DatabaseConfig};

const USAGE: &str = "usage: api                      serve the HTTP api
       api migrate              apply all migrations, then exit
       api simulate TYPE [--user-id ID] [--email ADDR] [--url URL]
                                post a signed sample event (TYPE: user.created, user.updated,
                                user.deleted, session.created) to a running api";

pub async fn run(args: Vec<String>) -> anyhow::Result<()> {
    let env = process_env();
    match args.first().map(String::as_str) {
        None => {
            let config = ApiConfig::from_env(&env)?;
            let pool = jobs::db::pool(&config.database)?;
            let app = Application::build(config, pool)
                .await
                .context("binding the listener")?;
            app.run_until(shutdown_signal()).await?;
        }
        Some("migrate") => {
            let db = DatabaseConfig::from_env(&env)?;
            let pool = jobs::db::pool(&db)?;
            jobs::db::migrate(&pool).await?;
            tracing::info!("migrations applied");
        }
        Some("simulate") => {
            let sim = parse_simulation(&args[1..], &env)?;
            let (status, body) = simulate::send(&sim).await?;
            println!("{status} {body}");
            if !(200..300).contains(&status) {
                bail!("the api answered {status}");
            }
        }
        Some("-h" | "--help" | "help") => println!("{USAGE}"),
        Some(other) => bail!("unknown command `{other}`\n{USAGE}"),
    }
    Ok(())
}

fn parse_simulation<F: Fn(&str) -> Option<String>>(
    args: &[String],
    env: &jobs::config::Env<F>,
) -> anyhow::Result<Simulation> {
    let Some(event_type) = args.first() else {
        bail!("simulate needs an event type\n{USAGE}")
    };
    let port = env.optional("PORT").unwrap_or_else(|| "8080".into());
    let mut sim = Simulation {
        event_type: event_type.clone(),
        user_id: None,
        email: None,
        url: format!("http://127.0.0.1:{port}/webhooks/clerk"),
        secret: env.required("CLERK_WEBHOOK_SECRET")?,
    };
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .clone();
        match flag.as_str() {
            "--user-id" => sim.user_id = Some(value),
            "--email" => sim.email = Some(value),
            "--url" => sim.url = value,
            _ => bail!("unknown option `{flag}`\n{USAGE}"),
        }
    }
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
