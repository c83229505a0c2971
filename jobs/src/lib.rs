//! authsync's shared library, laid out by kind: `clerk/` (event types, ids, the Backend API
//! client), the pure planner, `handlers/` (one file per job), `store/` (every statement on our
//! tables), `mail/`, the domain logic (users, tenancy, intake), authsync's side of the queue
//! runtime (`queue`: the registry, planned jobs as rows; the runtime itself is the
//! `authsync-queue` crate), database access, configuration pieces and telemetry. `api` and
//! `worker` are thin binaries over it.

pub mod audit;
pub mod clerk;
pub mod config;
pub mod context;
pub mod db;
pub mod error;
pub mod handlers;
pub mod intake;
pub mod json_error;
pub mod locks;
pub mod mail;
pub mod planner;
pub mod queue;
pub mod readiness;
pub mod store;
pub mod telemetry;
pub mod tenancy;
pub mod users;

pub use context::JobContext;
