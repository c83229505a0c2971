//! Organizations, memberships, roles and the audit trail through the real webhook route and
//! queue; row-level security as `authsync_user`; `GET /v1/me`. Over 400 lines: organizations,
//! memberships and their policies are tested together, as they interact.

use serde_json::{json, Value};
use tests::bodies::{self, Me};
use tests::fake_clerk::FakeClerk;
use tests::*;

const ORG: &str = "org_2abcFakeAcmeOrg000000000001";
const BOB: &str = "user_2abcFakeBobPhone00000000001";
const MEM: &str = "orgmem_2abcFakeBobInAcme0000001";

async fn deliver(app: &TestApp, body: &[u8]) {
    let status = app.post_webhook(&new_svix_id(), body).await.status();
    assert!(status == 202 || status == 200, "delivery answered {status}");
    let r = app.drain().await;
    assert_eq!((r.retrying, r.exhausted, r.killed), (0, 0, 0), "{r:?}");
}

fn with(name: &str, patch: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = fixture_json(name);
    patch(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Org {
    name: Option<String>,
    slug: Option<String>,
    plan: Option<String>,
    deleted: bool,
}

async fn org(app: &TestApp) -> Option<Org> {
    sqlx::query_as("SELECT name, slug, public_metadata ->> 'plan' AS plan, deleted_at IS NOT NULL AS deleted FROM organizations WHERE clerk_org_id = $1")
        .bind(ORG)
        .fetch_optional(app.pool())
        .await
        .unwrap()
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Membership {
    role: String,
    deleted: bool,
    has_user: bool,
    has_org: bool,
}

async fn membership(app: &TestApp) -> Option<Membership> {
    sqlx::query_as(
        "SELECT role, deleted_at IS NOT NULL AS deleted, user_id IS NOT NULL AS has_user, organization_id IS NOT NULL AS has_org \
         FROM memberships WHERE clerk_membership_id = $1",
    )
    .bind(MEM)
    .fetch_optional(app.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn organizations_are_created_updated_and_never_rolled_back() {
    let app = TestApp::spawn().await;
    deliver(&app, &fixture("organization.created")).await;
    assert_eq!(
        org(&app).await.unwrap(),
        Org {
            name: Some("Acme Example Inc".into()),
            slug: Some("acme-example".into()),
            plan: None,
            deleted: false
        }
    );
    deliver(&app, &fixture("organization.updated")).await;
    let updated = Org {
        name: Some("Acme Example Holdings".into()),
        slug: Some("acme-example-holdings".into()),
        plan: Some("team".into()),
        deleted: false,
    };
    assert_eq!(org(&app).await.unwrap(), updated);
    deliver(&app, &fixture("organization.created")).await; // late and older
    assert_eq!(org(&app).await.unwrap(), updated);
    assert_eq!(
        audit_actions(app.pool(), ORG).await,
        vec!["organization.created", "organization.updated"]
    );
}

#[tokio::test]
async fn update_before_create_and_delete_first_converge() {
    let app = TestApp::spawn().await;
    deliver(&app, &fixture("organization.deleted")).await;
    deliver(&app, &fixture("organization.updated")).await;
    deliver(&app, &fixture("organization.created")).await;
    let o = org(&app).await.unwrap();
    assert!(o.deleted, "a tombstone is never revived");
    assert_eq!(
        o.name.as_deref(),
        Some("Acme Example Holdings"),
        "it took the newest data"
    );
}

#[tokio::test]
async fn a_membership_for_a_user_not_yet_provisioned_is_kept_and_attaches_later() {
    let app = TestApp::spawn().await;
    deliver(&app, &fixture("organizationMembership.created")).await;
    assert_eq!(
        membership(&app).await.unwrap(),
        Membership {
            role: "org:member".into(),
            deleted: false,
            has_user: false,
            has_org: false
        }
    );
    deliver(&app, &fixture("user.created.no-email")).await;
    deliver(&app, &fixture("organization.created")).await;
    assert_eq!(
        membership(&app).await.unwrap(),
        Membership {
            role: "org:member".into(),
            deleted: false,
            has_user: true,
            has_org: true
        }
    );
    let actions = audit_actions(app.pool(), BOB).await;
    assert!(
        actions.starts_with(&["membership.created".to_owned(), "ROLE_ADDED".to_owned()]),
        "{actions:?}"
    );
}

#[tokio::test]
async fn deleting_an_organization_ends_its_memberships() {
    let app = TestApp::spawn().await;
    deliver(&app, &fixture("organization.created")).await;
    deliver(&app, &fixture("organizationMembership.created")).await;
    deliver(&app, &fixture("organization.deleted")).await;
    assert!(org(&app).await.unwrap().deleted);
    assert!(membership(&app).await.unwrap().deleted);
    assert_eq!(
        audit_actions(app.pool(), BOB).await,
        vec!["membership.created", "ROLE_ADDED", "ROLE_REMOVED"]
    );
    // A membership event delayed past the deletion is stored already ended.
    let late = with("organizationMembership.created", |v| {
        v["data"]["id"] = json!("orgmem_late");
        v["data"]["public_user_data"]["user_id"] = json!("user_late");
    });
    deliver(&app, &late).await;
    let ended: bool = sqlx::query_scalar(
        "SELECT deleted_at IS NOT NULL FROM memberships WHERE clerk_membership_id = 'orgmem_late'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert!(ended);
}

#[tokio::test]
async fn membership_deletes_win_over_late_creates_and_role_changes_are_audited() {
    let app = TestApp::spawn().await;
    deliver(&app, &fixture("organizationMembership.created")).await;
    let promoted = with("organizationMembership.created", |v| {
        v["type"] = json!("organizationMembership.updated");
        v["data"]["role"] = json!("org:admin");
        v["data"]["updated_at"] = json!(1768100000000i64);
    });
    deliver(&app, &promoted).await;
    assert_eq!(membership(&app).await.unwrap().role, "org:admin");
    let details: Vec<Value> = sqlx::query_scalar(
        "SELECT details FROM audit_log WHERE subject = $1 AND action LIKE 'ROLE_%' ORDER BY id",
    )
    .bind(BOB)
    .fetch_all(app.pool())
    .await
    .unwrap();
    let roles: Vec<&str> = details
        .iter()
        .map(|d| d["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["org:member", "org:member", "org:admin"],
        "added member, removed member, added admin"
    );

    deliver(&app, &fixture("organizationMembership.deleted")).await;
    deliver(&app, &fixture("organizationMembership.created")).await; // a late redelivery
    let m = membership(&app).await.unwrap();
    assert!(m.deleted);
    assert_eq!(m.role, "org:member", "the delete's snapshot is the newest");
}

#[tokio::test]
async fn a_user_role_change_writes_role_removed_and_role_added() {
    let app = TestApp::spawn().await;
    deliver(&app, &user_event("user.created", "user_r", None, 1, None)).await;
    deliver(
        &app,
        &user_event("user.updated", "user_r", None, 2, Some("admin")),
    )
    .await;
    deliver(
        &app,
        &user_event("user.updated", "user_r", None, 3, Some("admin")),
    )
    .await;
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "SELECT action, details FROM audit_log WHERE subject = 'user_r' ORDER BY id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    let actions: Vec<&str> = rows.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.created",
            "user.updated",
            "ROLE_REMOVED",
            "ROLE_ADDED",
            "user.updated"
        ]
    );
    assert_eq!(rows[2].1["role"], "user");
    assert_eq!(rows[3].1["role"], "admin");
}

/// Runs `sql` as `authsync_user` with `authsync.clerk_user_id` = `who` (None: unset).
async fn as_user<T: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>>(
    app: &TestApp,
    who: Option<&str>,
    sql: &'static str,
) -> Result<Vec<T>, sqlx::Error> {
    let mut tx = app.pool().begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE authsync_user")
        .execute(&mut *tx)
        .await
        .unwrap();
    if let Some(w) = who {
        sqlx::query("SELECT set_config('authsync.clerk_user_id', $1, true)")
            .bind(w)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let r = sqlx::query_as(sql).fetch_all(&mut *tx).await;
    tx.rollback().await.unwrap();
    r
}

async fn two_users_two_orgs(app: &TestApp) {
    deliver(
        app,
        &user_event("user.created", "user_a", Some("a@example.com"), 1, None),
    )
    .await;
    deliver(
        app,
        &user_event("user.created", "user_b", Some("b@example.com"), 1, None),
    )
    .await;
    for (org, mem, user) in [
        ("org_one", "orgmem_a1", "user_a"),
        ("org_two", "orgmem_b2", "user_b"),
    ] {
        deliver(
            app,
            &with("organization.created", |v| v["data"]["id"] = json!(org)),
        )
        .await;
        deliver(
            app,
            &with("organizationMembership.created", |v| {
                v["data"]["id"] = json!(mem);
                v["data"]["organization"]["id"] = json!(org);
                v["data"]["public_user_data"]["user_id"] = json!(user);
            }),
        )
        .await;
    }
}

#[tokio::test]
async fn row_level_security_shows_each_user_only_their_rows() {
    let app = TestApp::spawn().await;
    two_users_two_orgs(&app).await;
    let users: Vec<(String,)> = as_user(&app, Some("user_a"), "SELECT clerk_user_id FROM users")
        .await
        .unwrap();
    assert_eq!(users, [("user_a".to_owned(),)]);
    let mems: Vec<(String,)> = as_user(
        &app,
        Some("user_a"),
        "SELECT clerk_membership_id FROM memberships",
    )
    .await
    .unwrap();
    assert_eq!(mems, [("orgmem_a1".to_owned(),)]);
    let orgs: Vec<(String,)> = as_user(
        &app,
        Some("user_a"),
        "SELECT clerk_org_id FROM organizations",
    )
    .await
    .unwrap();
    assert_eq!(orgs, [("org_one".to_owned(),)]);

    // Without the setting: nothing at all.
    for sql in [
        "SELECT clerk_user_id FROM users",
        "SELECT clerk_org_id FROM organizations",
        "SELECT clerk_user_id FROM memberships",
    ] {
        let rows: Vec<(String,)> = as_user(&app, None, sql).await.unwrap();
        assert!(rows.is_empty(), "{sql}: {rows:?}");
    }

    // Others' rows cannot be changed: updates match nothing, deletes are refused.
    let changed: Vec<(String,)> = as_user(
        &app,
        Some("user_a"),
        "UPDATE users SET first_name = 'x' WHERE clerk_user_id = 'user_b' RETURNING clerk_user_id",
    )
    .await
    .unwrap();
    assert!(changed.is_empty());
    let own: Vec<(String,)> = as_user(
        &app,
        Some("user_a"),
        "UPDATE users SET first_name = 'x' WHERE clerk_user_id = 'user_a' RETURNING clerk_user_id",
    )
    .await
    .unwrap();
    assert_eq!(own.len(), 1, "the own row can be updated");
    let refused = as_user::<(String,)>(
        &app,
        Some("user_a"),
        "DELETE FROM users WHERE clerk_user_id = 'user_b' RETURNING clerk_user_id",
    )
    .await;
    assert!(refused
        .unwrap_err()
        .to_string()
        .contains("permission denied"));
    let refused = as_user::<(String,)>(
        &app,
        Some("user_a"),
        "UPDATE users SET role = 'admin' WHERE clerk_user_id = 'user_a' RETURNING clerk_user_id",
    )
    .await;
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("permission denied"),
        "a user cannot make itself an admin"
    );
    let refused = as_user::<(String,)>(
        &app,
        Some("user_a"),
        "UPDATE organizations SET name = 'x' RETURNING clerk_org_id",
    )
    .await;
    assert!(refused
        .unwrap_err()
        .to_string()
        .contains("permission denied"));
}

#[tokio::test]
async fn get_me_reads_the_callers_rows_under_rls() {
    let clerk = FakeClerk::start().await;
    let app = TestApp::builder().clerk(&clerk).spawn().await;
    two_users_two_orgs(&app).await;
    let (status, me) = parse::<Me>(app.me(&clerk.token("user_a")).await).await;
    assert_eq!(status, 200);
    assert_eq!(me.user.clerk_user_id.as_deref(), Some("user_a"));
    assert_eq!(
        me.memberships,
        [bodies::Membership {
            organization: bodies::Organization {
                clerk_org_id: "org_one".into(),
                name: Some("Acme Example Inc".into()),
                slug: Some("acme-example".into()),
            },
            role: "org:member".into(),
        }]
    );
    assert_eq!(app.me(&clerk.token("user_nobody")).await.status(), 404);
    assert_eq!(app.me(Auth::None).await.status(), 401);
    app.drain().await;
}

#[tokio::test]
async fn with_personal_organizations_on_a_new_user_gets_one_in_the_same_transaction() {
    let mut app = TestApp::spawn().await;
    app.ctx.personal_organizations = true;
    deliver(&app, &fixture("user.created")).await;
    deliver(&app, &fixture("user.updated")).await; // not a new user: no second organization
    let orgs: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT clerk_org_id, name FROM organizations")
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(
        orgs,
        [(
            "personal_user_2abcFakeAlice0000000000001".to_owned(),
            Some("Alice's workspace".to_owned())
        )]
    );
    let role: String = sqlx::query_scalar("SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id JOIN organizations o ON o.id = m.organization_id")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(role, "org:admin");
    let created_together: bool = sqlx::query_scalar(
        "SELECT (SELECT created_at FROM users) = (SELECT created_at FROM organizations)",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert!(
        created_together,
        "now() is the transaction's start: one transaction made both"
    );

    // Off (the default): nothing but the user.
    let plain = TestApp::spawn().await;
    deliver(&plain, &fixture("user.created")).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM organizations")
        .fetch_one(plain.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
}
