//! The tests that run the api (and workers) inside the test process: one binary, so the
//! harness and the api are compiled and linked once.

mod activity;
mod admin_api;
mod admin_views;
mod clerk_api;
mod connection_budget;
mod cors;
mod deadlines;
mod fallback;
mod fuzz_corpus;
mod home;
mod http_server;
mod ip_allowlist;
mod offline_queries;
mod openapi;
mod outages;
mod provisioning;
mod queue;
mod reconcile;
mod retention;
mod session_keys;
mod smtp_tls;
mod tenancy;
mod webhook_intake;
mod welcome_email;
