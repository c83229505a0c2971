//! The authsync HTTP api (Poem): Clerk webhook intake, the dashboard fallback, operator routes,
//! health and metrics, all described by one OpenAPI service (`openapi`). `main.rs` only loads
//! config and runs [`startup::Application`].

pub mod auth;
pub mod cli;
pub mod config;
pub mod cors;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod help;
pub mod ip_filter;
pub mod job_events;
pub mod openapi;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod session;
pub mod simulate;
pub mod startup;
pub mod verify;
