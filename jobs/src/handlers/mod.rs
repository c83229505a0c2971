//! One file per job: its payload (ids plus the few fields the handler needs), its handler, its
//! queue name (a constant that never changes), its retry and deadline values, and its unit
//! tests. [`crate::queue::registry`] registers every one of them.

pub mod provision_user;
pub mod reconcile;
pub mod retention;
pub mod send_welcome_email;
pub mod soft_delete;
pub mod sync_membership;
pub mod sync_metadata;
pub mod sync_organization;
pub mod sync_user;
