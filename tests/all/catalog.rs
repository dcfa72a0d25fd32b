//! The one catalog: a database an older muon left (functions and models in
//! tables of their own) moves onto it without losing a function or a model.

use std::path::Path;

use muon_tests::{Backend, Server, component, repo_file};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Executor;

crate::on_both_databases!(a_database_of_the_schema_before_the_catalog_keeps_its_functions_and_models);

/// The tables the schema before the catalog (version 11) kept functions and
/// models in, as that muon created them.
const OLD_TABLES: &[&str] = &[
    "CREATE TABLE functions (tenant TEXT NOT NULL, name TEXT NOT NULL, active_version BIGINT NOT NULL,
        PRIMARY KEY (tenant, name))",
    "CREATE TABLE function_versions (tenant TEXT NOT NULL, name TEXT NOT NULL, version BIGINT NOT NULL,
        digest TEXT NOT NULL, kind TEXT NOT NULL, size_bytes BIGINT NOT NULL, memory_mb BIGINT NOT NULL,
        timeout_ms BIGINT NOT NULL, max_concurrency BIGINT NOT NULL, public BIGINT NOT NULL,
        allowed_hosts TEXT NOT NULL, created_at_ms BIGINT NOT NULL, models TEXT,
        PRIMARY KEY (tenant, name, version))",
    "CREATE TABLE components (digest TEXT PRIMARY KEY, bytes BYTEA NOT NULL)",
    "CREATE TABLE models (tenant TEXT NOT NULL, name TEXT NOT NULL, digest TEXT NOT NULL,
        size_bytes BIGINT NOT NULL, backend TEXT NOT NULL, target TEXT NOT NULL, signature TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL, PRIMARY KEY (tenant, name))",
    "CREATE TABLE model_blobs (digest TEXT PRIMARY KEY, bytes BYTEA NOT NULL)",
    "DROP TABLE objects",
    "DROP TABLE object_versions",
    "DROP TABLE blobs",
    "DELETE FROM muon_schema WHERE version > 11",
];

async fn a_database_of_the_schema_before_the_catalog_keeps_its_functions_and_models(
    backend: Backend,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let flags = backend.flags()?;
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    // A current muon makes the tenants and keys; the catalog is then put
    // back as the older muon kept it.
    Server::start_in(dir.path(), &args, None).await?.stop().await?;
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("muon.db").display()),
        Backend::Postgres => flags[1].clone(),
    };
    let hello = component("hello")?;
    let model = repo_file("examples/digits/digits.onnx")?;
    write_old_catalog(&url, &hello, &model).await?;
    match backend {
        // SQLite nodes kept bytes only as files.
        Backend::Sqlite => {
            let hello_digest = hex::encode(Sha256::digest(&hello));
            std::fs::write(dir.path().join(format!("components/{hello_digest}.wasm")), &hello)?;
            std::fs::create_dir_all(dir.path().join("models"))?;
            std::fs::write(dir.path().join(format!("models/{}.onnx", hex::encode(Sha256::digest(&model)))), &model)?;
        }
        // Neither file is on this node: the bytes come from the database.
        Backend::Postgres => {
            remove_dir_if_present(&dir.path().join("components"))?;
            remove_dir_if_present(&dir.path().join("models"))?;
        }
    }

    let server = Server::start_in(dir.path(), &args, None).await?;
    let response = server.get_fn("hello", "").await?;
    assert_eq!(response.status(), 200, "the old function answers");
    let versions: Value = server.http.get(server.url("/v1/functions/hello")).send().await?.json().await?;
    let numbers: Vec<i64> =
        versions["versions"].as_array().into_iter().flatten().filter_map(|v| v["version"].as_i64()).collect();
    assert_eq!(numbers, [1, 2], "both versions are kept: {versions}");
    let shown: Value = server.http.get(server.url("/v1/models/digits")).send().await?.json().await?;
    assert_eq!(shown["inputs"], json!([{ "name": "x", "type": "fp32", "shape": ["N", 64] }]), "{shown}");
    assert_eq!(shown["digest"], hex::encode(Sha256::digest(&model)));

    // The moved catalog works like a new one: a redeploy is version 3, a
    // rollback goes back to 2, and the model computes.
    let redeployed = server.deploy_ok("hello", "hello", "public=true").await?;
    assert_eq!(redeployed["version"], 3, "{redeployed}");
    let rollback = server.http.post(server.url("/v1/functions/hello/rollback")).send().await?;
    assert_eq!(rollback.status(), 200);
    server.deploy_ok("digits", "digits", "models=digits").await?;
    let split: Value = serde_json::from_slice(&repo_file("examples/digits/test-split.json")?)?;
    let answer = server.post_json(&server.http, "/fn/default/digits", &json!({ "pixels": split["pixels"][0] })).await?;
    assert_eq!(answer["probabilities"].as_array().map(Vec::len), Some(10), "the old model computes: {answer}");
    Ok(())
}

async fn write_old_catalog(url: &str, hello: &[u8], model: &[u8]) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await?;
    for sql in OLD_TABLES {
        pool.execute(*sql).await?;
    }
    let digest = hex::encode(Sha256::digest(hello));
    for version in [1_i64, 2] {
        sqlx::query(
            "INSERT INTO function_versions VALUES ('default', 'hello', $1, $2, 'handler', $3, 64, 5000, 16, 1, '', $4, NULL)",
        )
        .bind(version)
        .bind(&digest)
        .bind(i64::try_from(hello.len())?)
        .bind(1_700_000_000_000 + version)
        .execute(&pool)
        .await?;
    }
    sqlx::query("INSERT INTO functions VALUES ('default', 'hello', 2)").execute(&pool).await?;
    sqlx::query("INSERT INTO components VALUES ($1, $2)").bind(&digest).bind(hello.to_vec()).execute(&pool).await?;
    let model_digest = hex::encode(Sha256::digest(model));
    let signature = serde_json::to_string(&muon::nn::inspect_onnx(model)?)?;
    sqlx::query("INSERT INTO models VALUES ('default', 'digits', $1, $2, 'tract', 'cpu', $3, 1700000000000)")
        .bind(&model_digest)
        .bind(i64::try_from(model.len())?)
        .bind(signature)
        .execute(&pool)
        .await?;
    sqlx::query("INSERT INTO model_blobs VALUES ($1, $2)")
        .bind(&model_digest)
        .bind(model.to_vec())
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

fn remove_dir_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}
