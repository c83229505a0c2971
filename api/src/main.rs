//! `api`: the authsync HTTP service. `api migrate` applies migrations; `api simulate` sends a
//! signed sample event. Everything lives in the library; this only starts it.

#[tokio::main]
async fn main() {
    jobs::telemetry::init_telemetry("info,sqlx=warn");
    // Said once, on stderr (not also through the log): the process ends with it.
    match api::cli::run(std::env::args().skip(1).collect()).await {
        Ok(()) => {}
        Err(api::cli::CliError::Usage(message)) => {
            eprintln!("api: {message}\nRun `api --help` for usage.");
            std::process::exit(2);
        }
        Err(api::cli::CliError::Failed(e)) => {
            eprintln!("api: {e:#}");
            std::process::exit(1);
        }
    }
}
