//! Storage: quotas checked where deploys are written, deploys under load,
//! retention and reclamation of versions, orphan sweeps, fair compiles.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use muon::db::Db;
use muon_tests::{Backend, Server, component, error_of};
use serde_json::{Value, json};
use wasm_encoder::{
    CodeSection, Component, ComponentSection, CustomSection, Function, FunctionSection, Instruction, Module,
    ModuleSection, TypeSection, ValType,
};

crate::on_both_databases!(
    parallel_deploys_create_no_more_functions_than_the_quota,
    parallel_deploys_never_store_more_than_the_quota,
    deploys_succeed_while_functions_are_called,
    redeploys_keep_only_max_versions_kept,
    deploy_and_delete_cycles_free_everything,
    orphans_are_swept_at_start,
    a_kill_during_deploys_leaves_nothing_unreferenced,
);

/// A server on `backend` and a handle on its database.
async fn start(backend: Backend, flags: &[&str]) -> anyhow::Result<(Server, Db, Vec<String>)> {
    let mut all = backend.flags()?;
    all.extend(flags.iter().map(|f| (*f).to_owned()));
    let args: Vec<&str> = all.iter().map(String::as_str).collect();
    let server = Server::start(&args).await?;
    let db = open_db(backend, &server, &all).await?;
    Ok((server, db, all))
}

async fn open_db(backend: Backend, server: &Server, flags: &[String]) -> anyhow::Result<Db> {
    match backend {
        Backend::Sqlite => Db::open_sqlite(&server.data_dir).await,
        Backend::Postgres => Db::connect(&flags[1]).await,
    }
}

/// `base` with a custom section naming `tag` and `pad` bytes of padding:
/// the same code under a new digest.
fn variant(base: &[u8], tag: usize, pad: usize) -> Vec<u8> {
    let mut data = tag.to_string().into_bytes();
    data.resize(data.len() + pad, 0);
    let custom = CustomSection { name: "muon-test".into(), data: data.into() };
    let mut out = base.to_vec();
    custom.append_to_component(&mut out);
    out
}

/// A component whose one core module has `functions` functions of `groups`
/// dependent multiply-adds each: slow for Cranelift, cheap to send. It
/// exports nothing, so after compiling, the deploy is refused.
fn slow_component(functions: usize, groups: usize, tag: usize) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([ValType::I64, ValType::I64], [ValType::I64]);
    let mut declared = FunctionSection::new();
    let mut code = CodeSection::new();
    for f in 0..functions {
        declared.function(0);
        let mut body = Function::new([]);
        for g in 0..groups {
            let k = i64::try_from((f + g) % 60 + 1).unwrap_or(1);
            // local1 = local1 + local0 * k; local0 = local0 ^ local1
            for instruction in [
                Instruction::LocalGet(1),
                Instruction::LocalGet(0),
                Instruction::I64Const(k),
                Instruction::I64Mul,
                Instruction::I64Add,
                Instruction::LocalSet(1),
                Instruction::LocalGet(0),
                Instruction::LocalGet(1),
                Instruction::I64Xor,
                Instruction::LocalSet(0),
            ] {
                body.instruction(&instruction);
            }
        }
        body.instruction(&Instruction::LocalGet(1)).instruction(&Instruction::End);
        code.function(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&declared).section(&code);
    let mut wrapper = Component::new();
    wrapper.section(&ModuleSection(&module));
    variant(&wrapper.finish(), tag, 0)
}

async fn put(
    server: &Server,
    client: &reqwest::Client,
    name: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<reqwest::Response> {
    Ok(client.put(server.url(&format!("/v1/functions/{name}"))).body(bytes).send().await?)
}

async fn set_quotas(server: &Server, quotas: Value) -> anyhow::Result<()> {
    server.http.put(server.url("/v1/tenants/default/quotas")).json(&quotas).send().await?.error_for_status()?;
    Ok(())
}

/// Bytes of the files under `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Names of the files in `dir`.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Bytes the server keeps for components: files, artifacts and database copies.
async fn stored(server: &Server, db: &Db) -> anyhow::Result<(u64, u64, i64)> {
    let (_, blob_bytes) = db.stored_blobs().await?;
    Ok((dir_bytes(&server.data_dir.join("components")), dir_bytes(&server.data_dir.join("compiled")), blob_bytes))
}

async fn parallel_deploys_create_no_more_functions_than_the_quota(backend: Backend) -> anyhow::Result<()> {
    let (server, _db, _) = start(backend, &[]).await?;
    set_quotas(&server, json!({ "max_functions": 5 })).await?;
    let server = Arc::new(server);
    // Collected, so all are in flight before the first answer is read.
    let deploys: Vec<_> = (0..30)
        .map(|i| {
            let server = Arc::clone(&server);
            tokio::spawn(async move { server.deploy(&format!("f{i}"), "hello", "").await })
        })
        .collect();
    let created = count_created(deploys).await?;
    assert_eq!(created, 5, "exactly max_functions deploys succeed");
    let listed: Value = server.http.get(server.url("/v1/functions")).send().await?.json().await?;
    assert_eq!(listed["functions"].as_array().map(Vec::len), Some(5));
    Ok(())
}

async fn parallel_deploys_never_store_more_than_the_quota(backend: Backend) -> anyhow::Result<()> {
    let (server, db, _) = start(backend, &[]).await?;
    let hello = component("hello")?;
    let size = variant(&hello, 0, 0).len() as u64;
    let quota = size * 7 / 2;
    set_quotas(&server, json!({ "max_storage_bytes": quota })).await?;
    let server = Arc::new(server);
    let deploys: Vec<_> = (0..12)
        .map(|i| {
            let (server, bytes) = (Arc::clone(&server), variant(&hello, i, 0));
            tokio::spawn(async move { put(&server, &server.http, &format!("f{i}"), bytes).await })
        })
        .collect();
    let created = count_created(deploys).await?;
    assert_eq!(created, 3, "three components of {size} bytes fit in {quota}, a fourth does not");
    let (file_bytes, _, blobs) = stored(&server, &db).await?;
    assert!(file_bytes <= quota, "component files hold {file_bytes} bytes, over the quota of {quota}");
    assert!(u64::try_from(blobs)? <= quota, "database copies hold {blobs} bytes, over the quota of {quota}");
    assert_eq!(
        files_in_compiled(&server),
        3,
        "refused deploys left compiled artifacts: {:?}",
        files(&server.data_dir.join("compiled"))
    );
    Ok(())
}

fn files_in_compiled(server: &Server) -> usize {
    files(&server.data_dir.join("compiled")).len()
}

async fn deploys_succeed_while_functions_are_called(backend: Backend) -> anyhow::Result<()> {
    let (server, _db, _) = start(backend, &[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (server, stop, calls) = (Arc::clone(&server), Arc::clone(&stop), Arc::clone(&calls));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if server.get_fn("hello", "").await.is_ok_and(|r| r.status() == 200) {
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let deployers: Vec<_> = (0..4)
        .map(|d| {
            let (server, calls) = (Arc::clone(&server), Arc::clone(&calls));
            tokio::spawn(async move {
                let mut failures = Vec::new();
                // At least 25 deploys each, and on until the callers have made 200 calls.
                let mut i = 0;
                while i < 25 || (calls.load(Ordering::Relaxed) < 200 && i < 500) {
                    i += 1;
                    let name = if i % 2 == 0 { format!("busy{d}") } else { format!("new{d}-{i}") };
                    let response = server.deploy(&name, "hello", "").await?;
                    if response.status() != 201 {
                        failures.push(format!("{}: {}", response.status(), response.text().await?));
                    }
                }
                anyhow::Ok((i, failures))
            })
        })
        .collect();
    let (mut deploys, mut failures) = (0, Vec::new());
    for deployer in deployers {
        let (made, failed) = deployer.await??;
        deploys += made;
        failures.extend(failed);
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await?;
    }
    assert!(
        failures.is_empty(),
        "{} of {deploys} deploys failed under load, the first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(calls.load(Ordering::Relaxed) >= 200, "the callers made too few calls to load the database");
    Ok(())
}

async fn redeploys_keep_only_max_versions_kept(backend: Backend) -> anyhow::Result<()> {
    let (server, db, _) = start(backend, &["--max-versions-kept", "3"]).await?;
    let hello = component("hello")?;
    let mut after_three = (0, 0, 0);
    for i in 0..30 {
        let response = put(&server, &server.http, "greeter", variant(&hello, i, 0)).await?;
        assert_eq!(response.status(), 201, "redeploy {i}: {}", response.text().await?);
        if i == 2 {
            after_three = stored(&server, &db).await?;
        }
    }
    let shown: Value = server.http.get(server.url("/v1/functions/greeter")).send().await?.json().await?;
    let versions: Vec<i64> =
        shown["versions"].as_array().into_iter().flatten().filter_map(|v| v["version"].as_i64()).collect();
    assert_eq!(versions, [28, 29, 30]);
    assert_eq!(files(&server.data_dir.join("components")).len(), 3);
    assert_eq!(files_in_compiled(&server), 3);
    let after_thirty = stored(&server, &db).await?;
    assert!(
        after_thirty.0 <= after_three.0 + 64
            && after_thirty.1 <= after_three.1 * 11 / 10
            && after_thirty.2 <= after_three.2 + 64,
        "30 versions store more than 3 did: (files, artifacts, database) {after_thirty:?} against {after_three:?}"
    );
    let back: Value = server.http.post(server.url("/v1/functions/greeter/rollback")).send().await?.json().await?;
    assert_eq!(back["version"], 29, "the rollback target is kept");
    assert_eq!(server.get_fn("greeter", "").await?.text().await?, "hello, world!\n");
    Ok(())
}

async fn deploy_and_delete_cycles_free_everything(backend: Backend) -> anyhow::Result<()> {
    let (server, db, _) = start(backend, &[]).await?;
    let hello = component("hello")?;
    let big = |i| variant(&hello, i, 460_000);
    let quota = big(0).len() as u64 * 11 / 10;
    set_quotas(&server, json!({ "max_storage_bytes": quota })).await?;
    let empty = stored(&server, &db).await?;
    for i in 0..20 {
        let response = put(&server, &server.http, "cycle", big(i)).await?;
        assert_eq!(response.status(), 201, "cycle {i}: {}", response.text().await?);
        let deleted = server.http.delete(server.url("/v1/functions/cycle")).send().await?;
        assert_eq!(deleted.status(), 200);
    }
    assert_eq!(stored(&server, &db).await?, empty, "(files, artifacts, database) after 20 deploy-and-delete cycles");
    assert!(files(&server.data_dir.join("components")).is_empty());
    Ok(())
}

async fn orphans_are_swept_at_start(backend: Backend) -> anyhow::Result<()> {
    let (server, db, flags) = start(backend, &[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    let components = server.data_dir.join("components");
    let compiled = server.data_dir.join("compiled");
    let (kept_components, kept_artifacts) = (files(&components), files(&compiled));
    let artifact = &kept_artifacts[0];
    let (_, compat) = artifact.rsplit_once('-').unwrap();
    let orphan = "0".repeat(64);
    let planted = [
        components.join(format!("{orphan}.wasm")),
        components.join(format!("{orphan}.wasm.tmp1234-0")),
        components.join(format!("{orphan}.tmp99")),
        compiled.join(format!("{orphan}-{compat}")),
        compiled.join(format!("{artifact}.tmp1234-1")),
        compiled.join(format!("{}-00000000deadbeef.cwasm", kept_components[0].trim_end_matches(".wasm"))),
    ];
    server.signal("KILL")?;
    let (data_dir, temp) = (server.data_dir.clone(), server.temp());
    drop(server);
    for path in &planted {
        std::fs::write(path, b"left by a crash")?;
    }
    db.put_blob(&orphan, b"an orphan blob").await?;

    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let restarted = Server::start_in(&data_dir, &args, temp).await?;
    assert_eq!(files(&components), kept_components, "component files after the sweep");
    assert_eq!(files(&compiled), kept_artifacts, "artifacts after the sweep");
    assert_eq!(db.blob(&orphan).await?, None, "the orphan blob is gone");
    assert_eq!(restarted.get_fn("hello", "").await?.text().await?, "hello, world!\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_deploys_leave_no_artifact() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let compiled = server.data_dir.join("compiled");
    let (status, code, _) = error_of(server.deploy("imports", "fixture-unknown-import", "").await?).await?;
    assert_eq!((status, code.as_str()), (400, "unknown_import"));
    let (status, code, _) = error_of(put(&server, &server.http, "slow", slow_component(4, 100, 0)).await?).await?;
    assert_eq!((status, code.as_str()), (400, "invalid_component"), "compiled, then refused: it exports nothing");
    assert_eq!(files(&compiled), Vec::<String>::new(), "compiled after all, then refused");

    let hello = component("hello")?;
    set_quotas(&server, json!({ "max_storage_bytes": hello.len() * 3 / 2 })).await?;
    server.deploy_ok("one", "hello", "").await?;
    let (status, code, _) = error_of(put(&server, &server.http, "two", variant(&hello, 1, 0)).await?).await?;
    assert_eq!((status, code.as_str()), (429, "quota_exceeded"));
    assert_eq!(files(&compiled).len(), 1, "only the stored version's artifact: {:?}", files(&compiled));
    assert_eq!(files(&server.data_dir.join("components")).len(), 1);
    Ok(())
}

/// Functions and multiply-adds that make [`slow_component`] take about two seconds to compile here.
const SLOW: (usize, usize) = (100, 2_000);

#[tokio::test(flavor = "multi_thread")]
async fn one_tenants_slow_compiles_do_not_hold_another_tenants_deploy() -> anyhow::Result<()> {
    let server = Arc::new(Server::start(&[]).await?);
    let quick_key = server.create_tenant("quick").await?;
    let quick = server.with_key(&quick_key)?;
    let started = Instant::now();
    let slow: Vec<_> = (0..4)
        .map(|i| {
            let server = Arc::clone(&server);
            tokio::spawn(async move {
                let response =
                    put(&server, &server.http, &format!("slow{i}"), slow_component(SLOW.0, SLOW.1, i)).await?;
                anyhow::Ok((response.status().as_u16(), started.elapsed()))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    let response = put(&server, &quick, "hello", component("hello")?).await?;
    let quick_took = asked.elapsed();
    assert_eq!(response.status(), 201, "{}", response.text().await?);
    let mut slowest = Duration::ZERO;
    for deploy in slow {
        let (status, took) = deploy.await??;
        assert_eq!(status, 400, "the slow components compile, then are refused (no exports)");
        slowest = slowest.max(took);
    }
    eprintln!("tenant quick's deploy took {quick_took:?}; tenant default's four compiles {slowest:?}");
    assert!(
        quick_took * 3 < slowest,
        "tenant quick waited {quick_took:?} for a small deploy while tenant default's compiles took {slowest:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn compiles_are_bounded_in_time_and_size() -> anyhow::Result<()> {
    let server = Server::start(&["--compile-timeout-ms", "300"]).await?;
    let asked = Instant::now();
    // Several seconds of compiling on two cores, still far over 300 ms on many.
    let slow = slow_component(SLOW.0 * 4, SLOW.1, 0);
    let (status, code, message) = error_of(put(&server, &server.http, "slow", slow).await?).await?;
    let took = asked.elapsed();
    assert_eq!((status, code.as_str()), (422, "compile_timeout"), "{message}");
    assert!(took < Duration::from_millis(2500), "answered after {took:?}");
    // One function body over the limit is refused before compiling, at once.
    let (status, code, message) =
        error_of(put(&server, &server.http, "huge", slow_component(1, 130_000, 0)).await?).await?;
    assert_eq!((status, code.as_str()), (400, "invalid_component"), "{message}");
    assert!(message.contains("function body"), "{message}");
    // The abandoned compile holds the tenant's slot until it ends, then
    // writes nothing. (On a busy machine hello itself may pass the deadline.)
    let started = Instant::now();
    loop {
        let response = server.deploy("hello", "hello", "").await?;
        if response.status() == 201 {
            break;
        }
        let (status, code, message) = error_of(response).await?;
        let retry = [(503, "compile_busy"), (422, "compile_timeout")];
        assert!(retry.contains(&(status, code.as_str())), "{status} {code}: {message}");
        assert!(started.elapsed() < Duration::from_secs(60), "the abandoned compile never ended");
    }
    assert_eq!(files(&server.data_dir.join("compiled")).len(), 1, "only hello's artifact");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_sharing_postgres_check_quotas_together() -> anyhow::Result<()> {
    let url = muon_tests::fresh_postgres_database()?;
    let first = Arc::new(Server::start(&["--database-url", &url]).await?);
    let second = Arc::new(Server::start(&["--database-url", &url]).await?);
    let acme_key = first.create_tenant("acme").await?;
    let hello = component("hello")?;
    let quota = variant(&hello, 0, 0).len() * 7 / 2;
    for (tenant, quotas) in
        [("default", json!({ "max_functions": 5 })), ("acme", json!({ "max_storage_bytes": quota }))]
    {
        let url = first.url(&format!("/v1/tenants/{tenant}/quotas"));
        first.http.put(url).json(&quotas).send().await?.error_for_status()?;
    }
    // Half of each tenant's deploys go to each node; the nodes share only the database.
    let clients = [
        (muon_tests::client_with_key(Some(&first.admin_key))?, muon_tests::client_with_key(Some(&acme_key))?),
        (muon_tests::client_with_key(Some(&first.admin_key))?, muon_tests::client_with_key(Some(&acme_key))?),
    ];
    let deploys: Vec<_> = (0..40)
        .map(|i| {
            let node = Arc::clone(if i % 2 == 0 { &first } else { &second });
            let (admin, acme) = clients[i % 2].clone();
            let (client, bytes) = if i < 30 { (admin, hello.clone()) } else { (acme, variant(&hello, i, 0)) };
            tokio::spawn(async move {
                anyhow::Ok((i, put(&node, &client, &format!("f{i}"), bytes).await?.status().as_u16()))
            })
        })
        .collect();
    let (mut functions, mut stored) = (0, 0);
    for deploy in deploys {
        let (i, status) = deploy.await??;
        assert!(status == 201 || status == 429, "deploy {i} answered {status}");
        if status == 201 {
            *(if i < 30 { &mut functions } else { &mut stored }) += 1;
        }
    }
    assert_eq!(functions, 5, "max_functions = 5 across two nodes");
    assert_eq!(stored, 3, "three components fit in the storage quota across two nodes");
    Ok(())
}

async fn a_kill_during_deploys_leaves_nothing_unreferenced(backend: Backend) -> anyhow::Result<()> {
    let (server, db, flags) = start(backend, &[]).await?;
    server.deploy_ok("keep", "hello", "").await?;
    let hello = component("hello")?;
    let server = Arc::new(server);
    let deploys: Vec<_> = (0..8)
        .map(|i| {
            let (server, bytes) = (Arc::clone(&server), variant(&hello, i, 300_000));
            tokio::spawn(async move { put(&server, &server.http, &format!("f{i}"), bytes).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.signal("KILL")?;
    let mut cut_off = 0;
    for deploy in deploys {
        // Answered before the kill, or cut off by it: either is fine here.
        cut_off += usize::from(deploy.await?.is_err());
    }
    // One compile at a time per tenant: eight take far longer than 150 ms.
    assert!(cut_off > 0, "the kill came after every deploy had answered");
    let (data_dir, temp) = (server.data_dir.clone(), server.temp());
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let restarted = Server::start_in(&data_dir, &args, temp).await?;

    let listed: Value = restarted.http.get(restarted.url("/v1/functions")).send().await?.json().await?;
    let mut digests = std::collections::HashSet::new();
    for function in listed["functions"].as_array().into_iter().flatten() {
        let name = function["name"].as_str().unwrap_or_default();
        let shown: Value =
            restarted.http.get(restarted.url(&format!("/v1/functions/{name}"))).send().await?.json().await?;
        digests.extend(
            shown["versions"].as_array().into_iter().flatten().filter_map(|v| v["digest"].as_str().map(str::to_owned)),
        );
    }
    let belongs = |name: &str| digests.iter().any(|d| name.starts_with(d.as_str()) && !name.contains(".tmp"));
    for dir in ["components", "compiled"] {
        let names = files(&data_dir.join(dir));
        assert!(
            names.iter().all(|n| belongs(n)),
            "{dir} holds files no version references: {names:?}, versions: {digests:?}"
        );
    }
    let (blobs, _) = db.stored_blobs().await?;
    let expected = if backend == Backend::Postgres { digests.len() } else { 0 };
    assert_eq!(
        usize::try_from(blobs)?,
        expected,
        "database copies: one per referenced component on PostgreSQL, none on SQLite"
    );
    assert_eq!(restarted.get_fn("keep", "").await?.text().await?, "hello, world!\n");
    Ok(())
}

/// How many of `deploys` answered `201`; every other must be a quota refusal.
async fn count_created(
    deploys: Vec<tokio::task::JoinHandle<anyhow::Result<reqwest::Response>>>,
) -> anyhow::Result<usize> {
    let mut created = 0;
    for deploy in deploys {
        let response = deploy.await??;
        if response.status() == 201 {
            created += 1;
        } else {
            let (status, code, message) = error_of(response).await?;
            assert_eq!((status, code.as_str()), (429, "quota_exceeded"), "{message}");
        }
    }
    Ok(created)
}
