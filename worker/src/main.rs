//! `worker`: runs every authsync job until SIGTERM. Everything lives in the library.

use worker::cli::{self, Command};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args) {
        Ok(Command::Run) => {}
        Ok(Command::Help) => return println!("{}", cli::HELP),
        Ok(Command::Version) => return println!("worker {}", env!("CARGO_PKG_VERSION")),
        Err(message) => {
            eprintln!("worker: {message}\nRun `worker --help` for usage.");
            std::process::exit(2);
        }
    }
    jobs::telemetry::init_telemetry("info,sqlx=warn");
    let config = match worker::WorkerConfig::from_env(&jobs::config::process_env()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("worker: {e}");
            std::process::exit(2);
        }
    };
    // Said once, on stderr (not also through the log): the process ends with it.
    if let Err(e) = worker::run(config, shutdown_signal()).await {
        eprintln!("worker: {e:#}");
        std::process::exit(1);
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
