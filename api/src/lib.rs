//! The authsync HTTP api (Poem): Clerk webhook intake, health, and later the dashboard
//! fallback and operator routes. `main.rs` only loads config and runs [`startup::Application`].

pub mod cli;
pub mod config;
pub mod error;
pub mod ip_filter;
pub mod job_events;
pub mod request_id;
pub mod routes;
pub mod session;
pub mod simulate;
pub mod startup;
pub mod verify;
