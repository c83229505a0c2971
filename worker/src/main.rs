//! `worker`: runs every authsync job until SIGTERM. Everything lives in the library.

#[tokio::main]
async fn main() {
    jobs::telemetry::init_telemetry("info,sqlx=warn");
    let config = match worker::WorkerConfig::from_env(&jobs::config::process_env()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("worker: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = worker::run(config, shutdown_signal()).await {
        tracing::error!("{e:#}");
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
