//! One file per job: its payload (ids plus the few fields the handler needs), its handler, its
//! queue name (a constant that never changes), its retry and deadline values, and its unit
//! tests. [`registry`] registers every one of them: a new job is a file here plus one line there.

pub mod provision_user;
pub mod reconcile;
pub mod record_activity;
pub mod retention;
pub mod send_welcome_email;
pub mod soft_delete;
pub mod sync_membership;
pub mod sync_metadata;
pub mod sync_organization;
pub mod sync_user;

/// The one function that registers every job (the worker and the tests use it).
pub fn registry() -> crate::queue::Registry {
    let mut r = crate::queue::Registry::default();
    r.register::<provision_user::ProvisionUser>()
        .register::<soft_delete::SoftDelete>()
        .register::<sync_metadata::SyncMetadata>()
        .register::<sync_user::SyncUser>()
        .register::<sync_organization::SyncOrganization>()
        .register::<sync_membership::SyncMembership>()
        .register::<send_welcome_email::SendWelcomeEmail>()
        .register::<retention::Retention>()
        .register::<reconcile::Reconcile>()
        .register::<record_activity::RecordActivity>();
    r
}
