//! `api`: the authsync HTTP service. `api migrate` applies migrations; `api simulate` sends a
//! signed sample event. Everything lives in the library; this only starts it.

#[tokio::main]
async fn main() {
    jobs::telemetry::init_telemetry("info,sqlx=warn");
    if let Err(e) = api::cli::run(std::env::args().skip(1).collect()).await {
        tracing::error!("{e:#}");
        eprintln!("api: {e:#}");
        std::process::exit(1);
    }
}
