//! Components built with the Spin SDKs, unmodified: Spin SDK 7's
//! `#[http_service]` (WASI 0.3, component-model async) and Spin SDK 3's
//! `#[http_component]` (WASI 0.2) deploy and answer over real HTTP, are
//! metered; a 0.3 guest computes through wasi-nn; and a WASI 0.3 import muon
//! does not provide is named at deploy.

use muon::engine::{EngineSettings, Runtime};
use muon_tests::{Server, component, error_of, record_of, repo_file};
use serde_json::{Value, json};
use wasm_encoder::{
    Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, ComponentValType, InstanceType,
    PrimitiveValType,
};

/// Both fixtures, with what each answers at `/`.
const FIXTURES: [(&str, &str); 2] = [
    ("fixture-spin-p3", "hello from a WASI 0.3 component\n"),
    ("fixture-spin-p2", "hello from a WASI 0.2 component\n"),
];

/// Only WASI 0.3 components go to the engine with component-model async on:
/// with it, every call takes wasmtime's concurrent path, which cost WASI 0.2
/// components 9-22% of their requests/s.
#[test]
fn only_wasi_0_3_components_are_compiled_with_component_model_async() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let settings = EngineSettings {
        compiled_dir: dir.path().to_path_buf(),
        max_instances: 4,
        max_memory_mb: 64,
        max_wasm_stack: 512 << 10,
    };
    let runtime = Runtime::new(&settings)?;
    for (name, needs_async) in
        [("hello", false), ("http-hello", false), ("fixture-spin-p2", false), ("fixture-spin-p3", true)]
    {
        let compiled = runtime.precompile(&component(name)?)?;
        assert_eq!(compiled.needs_async(), needs_async, "{name}");
        let loaded = runtime.store_artifact(name, &compiled)?;
        runtime.prepare(&loaded)?;
        assert!(runtime.cached(name).is_some(), "{name}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn spin_sdk_components_of_wasi_0_3_and_0_2_deploy_and_answer() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    for (component, hello) in FIXTURES {
        let deployed = server.deploy_ok(component, component, "").await?;
        assert_eq!(deployed["kind"], "http", "{deployed}");

        let response = server.get_fn(component, "/").await?;
        assert_eq!(response.status(), 200, "{component}");
        let request_id = response.headers()["x-muon-request-id"].to_str()?.to_owned();
        assert_eq!(response.text().await?, hello);
        let record = record_of(&server, &request_id).await?;
        assert_eq!(record["outcome"], "ok", "{record}");
        assert_eq!(record["bytes_out"], hello.len(), "{record}");

        let body = "a body to echo, ".repeat(4096);
        let url = server.url(&format!("/fn/default/{component}/echo?x=1"));
        let echoed = server.http.post(url).body(body.clone()).send().await?;
        assert_eq!(echoed.status(), 200, "{component}");
        assert_eq!(echoed.headers()["x-method"], "POST", "{component}");
        assert_eq!(echoed.headers()["x-path"], "/echo", "{component}");
        assert_eq!(echoed.text().await?, body, "{component}");
    }
    Ok(())
}

/// A component whose one import is `wasi:keyvalue/store@0.3.0`, an instance
/// with an async function taking a `stream<u8>`: valid only with the
/// component-model async feature, and not provided by muon.
fn component_importing_an_unknown_0_3_interface() -> Vec<u8> {
    let mut types = ComponentTypeSection::new();
    let mut instance = InstanceType::new();
    instance.ty().defined_type().stream(Some(ComponentValType::Primitive(PrimitiveValType::U8)));
    instance.ty().function().async_(true).params([("data", ComponentValType::Type(0))]).result(None);
    instance.export("set", ComponentTypeRef::Func(1));
    types.instance(&instance);
    let mut imports = ComponentImportSection::new();
    imports.import("wasi:keyvalue/store@0.3.0", ComponentTypeRef::Instance(0));
    let mut component = Component::new();
    component.section(&types).section(&imports);
    component.finish()
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_wasi_0_3_imports_are_named_at_deploy() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let url = server.url("/v1/functions/kv");
    let response = server
        .http
        .put(url)
        .header("content-type", "application/wasm")
        .body(component_importing_an_unknown_0_3_interface())
        .send()
        .await?;
    let (status, code, message) = error_of(response).await?;
    assert_eq!((status, code.as_str()), (400, "unknown_import"), "{message}");
    assert!(message.contains("wasi:keyvalue/store@0.3.0"), "{message}");
    assert!(message.contains("wasi:http/client"), "the message lists what muon provides: {message}");
    Ok(())
}

/// A WASI 0.3 guest reaches the tenant's models through the same `wasi:nn`
/// as a 0.2 one: the same answer as the `digits` function's, and its compute
/// metered.
#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_3_component_computes_through_wasi_nn() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.push_model_ok("digits", repo_file("examples/digits/digits.onnx")?, "backend=tract").await?;
    server.deploy_ok("p3", "fixture-spin-p3", "").await?;
    server.deploy_ok("digits", "digits", "").await?;

    let response = server.get_fn("p3", "/digits").await?;
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-muon-request-id"].to_str()?.to_owned();
    let p3: Vec<f64> = response.text().await?.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let blank = json!({ "pixels": vec![0; 64] });
    let p2: Value = server.http.post(server.url("/fn/default/digits")).json(&blank).send().await?.json().await?;
    let p2: Vec<f64> = p2["probabilities"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
    assert_eq!(p3.len(), 10);
    assert!(p3.iter().zip(&p2).all(|(a, b)| (a - b).abs() < 1e-6), "{p3:?} against {p2:?}");

    let record = record_of(&server, &request_id).await?;
    assert_eq!(record["outcome"], "ok", "{record}");
    assert!(record["nn_cpu_us"].as_i64().unwrap_or(0) > 0, "{record}");
    Ok(())
}
