//! The CLI speaks the HTTP API.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use muon_tests::{Server, muon_bin, target_dir};

fn muon(server: &Server, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<Output> {
    let mut child = Command::new(muon_bin())
        .args(args)
        .env("MUON_SERVER", &server.base)
        .env("MUON_DATA_DIR", &server.data_dir)
        .env_remove("MUON_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or_default())?;
    }
    Ok(child.wait_with_output()?)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_invoke_list_and_rollback_from_the_cli() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let guest = target_dir().join("wasm32-wasip2/guest");
    let hello = guest.join("hello.wasm").display().to_string();
    let transform = guest.join("json_transform.wasm").display().to_string();

    let out = muon(&server, &["deploy", "greet", &hello, "--memory-mb", "64"], None)?;
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).starts_with("deployed greet version 1 (handler"), "{}", stdout(&out));

    let out = muon(&server, &["deploy", "greet", &transform, "--json"], None)?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["version"], 2);

    let out = muon(&server, &["invoke", "greet", "--data", r#"{"values":[1,3]}"#], None)?;
    assert!(stdout(&out).contains("\"mean\":2.0"), "{}", stdout(&out));
    let input = std::env::temp_dir().join(format!("muon-cli-{}.json", std::process::id()));
    std::fs::write(&input, r#"{"values":[5]}"#)?;
    let out = muon(&server, &["invoke", "greet", "--data", &format!("@{}", input.display())], None)?;
    assert!(stdout(&out).contains("\"count\":1"), "{}", stdout(&out));
    let out = muon(&server, &["invoke", "greet", "--data", "-"], Some(br#"{"values":[1,2,3,4]}"#))?;
    assert!(stdout(&out).contains("\"count\":4"), "{}", stdout(&out));

    let out = muon(&server, &["functions"], None)?;
    assert!(stdout(&out).lines().any(|l| l.starts_with("greet") && l.contains("handler")), "{}", stdout(&out));

    let out = muon(&server, &["rollback", "greet"], None)?;
    assert_eq!(stdout(&out).trim(), "greet is now at version 1");
    let out = muon(&server, &["invoke", "greet"], None)?;
    assert_eq!(stdout(&out), "hello, world!\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_exit_non_zero_with_one_line() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let out = muon(&server, &["invoke", "missing"], None)?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("404 not_found"), "{stderr}");
    let out = muon(&server, &["deploy", "x", "/no/such/file.wasm"], None)?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_keys_and_usage_from_the_cli() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let out = muon(&server, &["tenants", "create", "acme"], None)?;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let key = text.lines().find_map(|l| l.split("(shown once): ").nth(1)).unwrap_or_default().trim().to_owned();
    assert!(key.starts_with("muon_sk_"), "{text}");

    // The tenant's own key, from MUON_API_KEY.
    let guest = target_dir().join("wasm32-wasip2/guest/hello.wasm").display().to_string();
    let mut acme = Command::new(muon_bin());
    acme.env("MUON_SERVER", &server.base).env("MUON_API_KEY", &key);
    let deployed = acme.args(["deploy", "hi", &guest]).output()?;
    assert!(deployed.status.success(), "{deployed:?}");
    let listed = Command::new(muon_bin())
        .env("MUON_SERVER", &server.base)
        .env("MUON_API_KEY", &key)
        .arg("functions")
        .output()?;
    assert!(stdout(&listed).contains("hi"));
    let invoked = Command::new(muon_bin())
        .env("MUON_SERVER", &server.base)
        .env("MUON_API_KEY", &key)
        .args(["invoke", "hi"])
        .output()?;
    assert_eq!(stdout(&invoked), "hello, world!\n");

    let usage = muon(&server, &["usage", "--tenant", "acme", "--csv"], None)?;
    let csv = stdout(&usage);
    assert!(csv.starts_with("group,requests,"), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("hi,1,")), "{csv}");

    let issued = muon(&server, &["keys", "create", "--tenant", "acme", "--json"], None)?;
    let issued: serde_json::Value = serde_json::from_slice(&issued.stdout)?;
    let id = issued["id"].as_str().unwrap();
    let revoked = muon(&server, &["keys", "revoke", id], None)?;
    assert_eq!(stdout(&revoked).trim(), format!("revoked {id}"));
    let denied = Command::new(muon_bin())
        .env("MUON_SERVER", &server.base)
        .env("MUON_API_KEY", issued["key"].as_str().unwrap())
        .arg("functions")
        .output()?;
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("401 unauthorized"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn models_are_pushed_listed_used_and_deleted_from_the_cli() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/digits/digits.onnx");
    let model = model.display().to_string();
    let out = muon(&server, &["models", "push", "digits", &model, "--backend", "tract"], None)?;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with("pushed model digits (") && text.contains("tract on cpu"), "{text}");
    assert!(text.contains(r#"x fp32 ["N",64]"#), "{text}");

    let out = muon(&server, &["models"], None)?;
    assert!(stdout(&out).lines().any(|l| l.starts_with("digits") && l.contains("tract")), "{}", stdout(&out));

    let digits = target_dir().join("wasm32-wasip2/guest/digits.wasm").display().to_string();
    let out = muon(&server, &["deploy", "digits", &digits, "--models", "digits", "--json"], None)?;
    let deployed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(deployed["models"], serde_json::json!(["digits"]));
    let pixels = serde_json::json!({ "pixels": [0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0] });
    let out = muon(&server, &["invoke", "digits", "--data", &pixels.to_string()], None)?;
    assert!(stdout(&out).starts_with(r#"{"digit":0,"#), "{}", stdout(&out));

    let missing = muon(&server, &["models", "push", "broken", "/nonexistent.onnx"], None)?;
    assert!(!missing.status.success());
    let out = muon(&server, &["models", "delete", "digits"], None)?;
    assert_eq!(stdout(&out).trim(), "deleted model digits");
    let out = muon(&server, &["models", "delete", "digits"], None)?;
    assert!(!out.status.success(), "deleting twice fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"), "{out:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn datasets_are_pushed_shown_listed_and_deleted_from_the_cli() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let wine = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/datasets/wine.csv");
    let wine = wine.display().to_string();
    let push = ["datasets", "push", "wine", &wine, "--label", "target", "--categorical", "target", "--stratify"];
    let out = muon(&server, &push, None)?;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with("dataset wine version 1 ("), "{text}");
    assert!(text.contains("rows: 178 read, 178 kept"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("alcohol") && l.contains("13.000618")), "the mean of alcohol: {text}");

    let out = muon(&server, &["datasets", "show", "wine", "--json"], None)?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!((report["name"].as_str(), report["version"].as_u64()), (Some("wine"), Some(1)));
    let out = muon(&server, &["datasets"], None)?;
    assert!(stdout(&out).lines().any(|l| l.starts_with("wine") && l.contains("178")), "{}", stdout(&out));

    let unknown = muon(&server, &["datasets", "push", "x", "/tmp/data.xlsx"], None)?;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains(".csv, .jsonl or .parquet"), "{unknown:?}");
    let out = muon(&server, &["datasets", "delete", "wine"], None)?;
    assert_eq!(stdout(&out).trim(), "deleted dataset wine (every version)");
    Ok(())
}
