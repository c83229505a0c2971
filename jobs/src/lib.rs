//! authsync's shared library: Clerk event types, the pure planner, the job modules, authsync's
//! side of the queue runtime (`queue`: the registry, planned jobs as rows; the runtime itself is
//! the `authsync-queue` crate), database access, configuration pieces and telemetry.
//! `api` and `worker` are thin binaries over it.

pub mod audit;
pub mod clerk;
pub mod clerk_api;
pub mod config;
pub mod context;
pub mod db;
pub mod error;
pub mod held_deletions;
pub mod ids;
pub mod intake;
pub mod json_error;
pub mod locks;
pub mod mailer;
pub mod planner;
pub mod provision_user;
pub mod queue;
pub mod reconcile;
pub mod retention;
pub mod send_welcome_email;
pub mod soft_delete;
pub mod store;
pub mod sync_membership;
pub mod sync_metadata;
pub mod sync_organization;
pub mod sync_user;
pub mod telemetry;
pub mod tenancy;
pub mod users;

pub use context::JobContext;
