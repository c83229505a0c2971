//! The real `api` and `worker` binaries' command lines, table-driven: help and version exit 0
//! and never touch the database (before, `api migrate --help` migrated and `worker --help`
//! started a worker); mistakes exit 2 with one clear line; a failure is printed once.

use std::process::Output;
use std::time::Duration;
use tests::processes::binary;
use tests::*;
use tokio::process::Command;

/// Runs `bin args` against `database_url`, bounded: a binary that starts serving instead of
/// answering fails the test rather than hanging it.
async fn run(bin: &str, args: &[&str], database_url: &str) -> Output {
    let mut cmd = Command::new(binary(bin));
    cmd.args(args)
        .env("DATABASE_URL", database_url)
        .env("CLERK_WEBHOOK_SECRET", SECRET)
        .env("PORT", free_port().to_string())
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(15), cmd.output()).await {
        Ok(out) => out.expect("the binary runs"),
        Err(_) => panic!("`{bin} {}` did not exit within 15 s", args.join(" ")),
    }
}

#[tokio::test]
async fn help_and_version_exit_0_without_touching_the_database() {
    let db = TestDb::empty().await;
    // (binary, arguments, what stdout must contain)
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "api",
            &["--help"],
            &[
                "usage:",
                "api migrate",
                "DATABASE_URL",
                "CLERK_WEBHOOK_SECRET",
                "ADMIN_TOKEN",
            ],
        ),
        ("api", &["-h"], &["usage:", "api simulate"]),
        ("api", &["help"], &["usage:"]),
        ("api", &["help", "simulate"], &["--user-id", "--first-name"]),
        ("api", &["serve", "--help"], &["usage: api [serve]"]),
        (
            "api",
            &["migrate", "--help"],
            &["usage: api migrate", "DATABASE_URL", "DATABASE_DIRECT_URL"],
        ),
        ("api", &["migrate", "-h"], &["usage: api migrate"]),
        (
            "api",
            &["simulate", "--help"],
            &[
                "usage: api simulate",
                "--user-id",
                "CLERK_WEBHOOK_SECRET",
                "PORT",
            ],
        ),
        (
            "api",
            &["simulate", "user.created", "-h"],
            &["usage: api simulate"],
        ),
        (
            "api",
            &["--version"],
            &[concat!("api ", env!("CARGO_PKG_VERSION"))],
        ),
        ("api", &["-V"], &["api "]),
        (
            "worker",
            &["--help"],
            &["usage:", "DATABASE_URL", "WORKER_CONCURRENCY", "SMTP_URL"],
        ),
        ("worker", &["-h"], &["usage:"]),
        (
            "worker",
            &["--version"],
            &[concat!("worker ", env!("CARGO_PKG_VERSION"))],
        ),
        ("worker", &["-V"], &["worker "]),
    ];
    for (bin, args, wants) in cases {
        let case = format!("{bin} {}", args.join(" "));
        let out = run(bin, args, &db.url).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{case}: {stdout}{stderr}");
        for want in *wants {
            assert!(stdout.contains(want), "{case}: no {want:?} in\n{stdout}");
        }
        assert!(stderr.is_empty(), "{case}: {stderr}");
    }
    // Nothing was migrated: no history table, no queue schema.
    let (ours, queue): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT to_regclass('public._sqlx_migrations')::text, to_regnamespace('apalis')::text",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (ours, queue),
        (None, None),
        "a help or version run migrated"
    );
    let workers: Option<String> = sqlx::query_scalar("SELECT to_regclass('apalis.workers')::text")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(workers, None);
}

#[tokio::test]
async fn mistakes_exit_2_with_one_clear_line() {
    let db = TestDb::empty().await;
    // (binary, arguments, what the first line of stderr must contain)
    let cases: &[(&str, &[&str], &str)] = &[
        ("api", &["bogus"], "api: unknown command `bogus`"),
        ("api", &["--bogus"], "api: unknown option `--bogus`"),
        (
            "api",
            &["migrate", "--bogus"],
            "api: `api migrate` takes no argument `--bogus`",
        ),
        (
            "api",
            &["serve", "now"],
            "api: `api serve` takes no argument `now`",
        ),
        (
            "api",
            &["help", "bogus"],
            "api: no help for unknown command `bogus`",
        ),
        (
            "api",
            &["simulate"],
            "api: `api simulate` needs an event type first",
        ),
        (
            "api",
            &["simulate", "user.exploded"],
            "api: unknown event type `user.exploded`",
        ),
        (
            "api",
            &["simulate", "user.created", "--bogus", "x"],
            "api: unknown option `--bogus` for `api simulate`",
        ),
        (
            "api",
            &["simulate", "user.created", "--user-id"],
            "api: `--user-id` needs a value",
        ),
        (
            "api",
            &["simulate", "user.deleted", "--email", "a@example.com"],
            "api: `--email` does not apply to user.deleted",
        ),
        ("worker", &["--bogus"], "worker: unknown option `--bogus`"),
        ("worker", &["run"], "worker: unexpected argument `run`"),
    ];
    for (bin, args, want) in cases {
        let case = format!("{bin} {}", args.join(" "));
        let out = run(bin, args, &db.url).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{case}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "{case}: one line and the pointer to --help: {stderr}"
        );
        assert!(lines[0].starts_with(want), "{case}: {stderr}");
        assert_eq!(lines[1], format!("Run `{bin} --help` for usage."), "{case}");
        assert!(
            out.stdout.is_empty(),
            "{case}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[tokio::test]
async fn a_failure_is_printed_once() {
    // `api migrate` against a server that is not there: one line, on stderr, naming the fix;
    // not a second copy through the log on stdout.
    let out = run(
        "api",
        &["migrate"],
        "postgres://postgres@127.0.0.1:1/authsync",
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("api: the database cannot be reached")
            && lines[0].contains("check DATABASE_URL"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("cannot be reached"),
        "printed twice: {stdout}"
    );
}
