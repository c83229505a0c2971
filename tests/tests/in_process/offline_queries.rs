//! The offline-query check: every statement of `jobs/.sqlx` (the data the compile-time checked
//! queries build from, offline) described against a freshly migrated database must give the
//! committed columns, types, nullability and parameters. Together with the offline build,
//! which fails when a query's text has no data, this keeps the committed data true to the
//! migrations. The fix for a failure: `scripts/sqlx-prepare`, then commit `jobs/.sqlx`.

use serde_json::{json, Value};
use sqlx::{AssertSqlSafe, Executor, SqlSafeStr};
use std::path::Path;

/// The parts of a description the macros build from (the column origin is left out: it only
/// names the table a column comes from).
fn shape(describe: &Value) -> Value {
    let columns: Vec<Value> = describe["columns"]
        .as_array()
        .map(|cols| {
            cols.iter()
                .map(|c| json!({"name": c["name"], "type_info": c["type_info"]}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "columns": columns,
        "parameters": describe["parameters"],
        "nullable": describe["nullable"],
    })
}

#[tokio::test]
async fn committed_query_data_matches_the_migrated_schema() {
    let db = tests::db::TestDb::new().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs/.sqlx");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("jobs/.sqlx exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no query data in {}", dir.display());

    let mut stale = Vec::new();
    for file in &files {
        let committed: Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let sql = committed["query"].as_str().expect("query text").to_owned();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let first_line = sql.lines().next().unwrap_or_default().to_owned();
        match (&db.pool).describe(AssertSqlSafe(sql).into_sql_str()).await {
            Err(e) => stale.push(format!("{name} ({first_line}…): {e}")),
            Ok(live) => {
                let live = shape(&serde_json::to_value(&live).unwrap());
                let committed = shape(&committed["describe"]);
                if live != committed {
                    stale.push(format!(
                        "{name} ({first_line}…):\n  committed {committed}\n  migrated  {live}"
                    ));
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{} of {} committed queries differ from the migrated schema; run scripts/sqlx-prepare \
         and commit jobs/.sqlx:\n{}",
        stale.len(),
        files.len(),
        stale.join("\n")
    );
}
