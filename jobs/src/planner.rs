//! The pure planner: a verified event in, the jobs it needs out. No I/O, so every rule of
//! "what does this event cause" is unit-tested here.

use crate::audit::Origin;
use crate::clerk::ids::SvixId;
use crate::clerk::{ClerkEvent, EventKind};
use crate::handlers::provision_user::ProvisionUser;
use crate::handlers::record_activity::RecordActivity;
use crate::handlers::soft_delete::SoftDelete;
use crate::handlers::sync_membership::SyncMembership;
use crate::handlers::sync_organization::{OrgChange, SyncOrganization};

/// One job to enqueue, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedJob {
    ProvisionUser(ProvisionUser),
    SoftDelete(SoftDelete),
    SyncOrganization(SyncOrganization),
    SyncMembership(SyncMembership),
    RecordActivity(RecordActivity),
}

impl PlannedJob {
    /// The queue the job goes to.
    pub fn queue(&self) -> &'static str {
        use crate::queue::Job;
        match self {
            PlannedJob::ProvisionUser(_) => ProvisionUser::QUEUE,
            PlannedJob::SoftDelete(_) => SoftDelete::QUEUE,
            PlannedJob::SyncOrganization(_) => SyncOrganization::QUEUE,
            PlannedJob::SyncMembership(_) => SyncMembership::QUEUE,
            PlannedJob::RecordActivity(_) => RecordActivity::QUEUE,
        }
    }
}

/// What to do with an event: an empty plan means we record it as `ignored`.
pub fn plan(svix_id: &SvixId, event: &ClerkEvent) -> Vec<PlannedJob> {
    let origin = Origin {
        svix_id: Some(svix_id.clone()),
        user: None,
        client_ip: event.attributes.client_ip.clone(),
        user_agent: event.attributes.user_agent.clone(),
    };
    match &event.kind {
        EventKind::UserCreated(user) | EventKind::UserUpdated(user) => {
            vec![PlannedJob::ProvisionUser(ProvisionUser {
                user: user.clone(),
                origin,
            })]
        }
        EventKind::UserDeleted { clerk_user_id } => vec![PlannedJob::SoftDelete(SoftDelete {
            clerk_user_id: clerk_user_id.clone(),
            deleted_at_ms: event.timestamp_ms,
            origin,
        })],
        EventKind::OrganizationUpserted(org) => {
            vec![PlannedJob::SyncOrganization(SyncOrganization {
                change: OrgChange::Upsert(org.clone()),
                origin,
            })]
        }
        EventKind::OrganizationDeleted { clerk_org_id } => {
            vec![PlannedJob::SyncOrganization(SyncOrganization {
                change: OrgChange::Delete {
                    clerk_org_id: clerk_org_id.clone(),
                    at_ms: event.timestamp_ms,
                },
                origin,
            })]
        }
        EventKind::MembershipUpserted(m) | EventKind::MembershipDeleted(m) => {
            vec![PlannedJob::SyncMembership(SyncMembership {
                membership: m.clone(),
                deleted: matches!(event.kind, EventKind::MembershipDeleted(_)),
                origin,
            })]
        }
        EventKind::Session(activity) => vec![PlannedJob::RecordActivity(RecordActivity {
            activity: activity.clone(),
            occurred_at_ms: event.timestamp_ms,
            origin,
        })],
        EventKind::Unhandled => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> ClerkEvent {
        let path = format!(
            "{}/../tests/fixtures/clerk/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        ClerkEvent::parse(&std::fs::read(path).unwrap()).unwrap()
    }

    fn svix() -> SvixId {
        SvixId::parse("msg_test").unwrap()
    }

    #[test]
    fn user_created_and_updated_provision_the_snapshot() {
        for name in [
            "user.created",
            "user.updated",
            "user.created.no-email",
            "user.created.oauth-google",
        ] {
            let ev = event(name);
            let jobs = plan(&svix(), &ev);
            let [PlannedJob::ProvisionUser(job)] = jobs.as_slice() else {
                panic!("{name}: {jobs:?}")
            };
            let (EventKind::UserCreated(u) | EventKind::UserUpdated(u)) = &ev.kind else {
                panic!()
            };
            assert_eq!(&job.user, u);
            assert_eq!(job.origin.svix_id, Some(svix()));
            assert_eq!(job.origin.client_ip.as_deref(), Some("203.0.113.7"));
        }
    }

    #[test]
    fn user_deleted_soft_deletes_at_the_event_time() {
        let jobs = plan(&svix(), &event("user.deleted"));
        let [PlannedJob::SoftDelete(job)] = jobs.as_slice() else {
            panic!("{jobs:?}")
        };
        assert_eq!(
            job.clerk_user_id.as_str(),
            "user_2abcFakeAlice0000000000001"
        );
        assert_eq!(job.deleted_at_ms, 1768819200000);
    }

    #[test]
    fn organization_events_plan_one_sync_each() {
        let one = |name: &str| {
            let jobs = plan(&svix(), &event(name));
            assert_eq!(jobs.len(), 1, "{name}: {jobs:?}");
            jobs.into_iter().next().unwrap()
        };
        let PlannedJob::SyncOrganization(j) = one("organization.created") else {
            panic!()
        };
        assert!(
            matches!(j.change, OrgChange::Upsert(ref o) if o.name.as_deref() == Some("Acme Example Inc"))
        );
        let PlannedJob::SyncOrganization(j) = one("organization.deleted") else {
            panic!()
        };
        let at = event("organization.deleted").timestamp_ms;
        assert!(matches!(j.change, OrgChange::Delete { at_ms, .. } if at_ms == at));
        let PlannedJob::SyncMembership(j) = one("organizationMembership.created") else {
            panic!()
        };
        assert!(!j.deleted);
        let PlannedJob::SyncMembership(j) = one("organizationMembership.deleted") else {
            panic!()
        };
        assert!(j.deleted);
    }

    #[test]
    fn session_events_record_activity_at_the_event_time_with_the_client() {
        for name in [
            "session.created",
            "session.ended",
            "session.removed",
            "session.revoked",
        ] {
            let ev = event(name);
            let jobs = plan(&svix(), &ev);
            let [PlannedJob::RecordActivity(job)] = jobs.as_slice() else {
                panic!("{name}: {jobs:?}")
            };
            assert_eq!(job.activity.change.as_str(), name);
            assert_eq!(job.occurred_at_ms, ev.timestamp_ms);
            assert_eq!(job.origin.svix_id, Some(svix()));
            assert_eq!(job.origin.client_ip, ev.attributes.client_ip, "{name}");
            assert_eq!(job.origin.user_agent, ev.attributes.user_agent, "{name}");
        }
    }

    #[test]
    fn events_we_do_not_handle_plan_nothing() {
        assert!(plan(&svix(), &event("email.created")).is_empty());
    }
}
