//! Datasets over HTTP: every format against pandas' statistics, the seeded
//! and stratified split, bad rows with their lines, preprocessors that fail
//! and trap, the limits, cut uploads and crashes leaving nothing behind,
//! tenancy, and other nodes on PostgreSQL.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use muon_tests::{Backend, Server, error_of, repo_file, target_dir};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

crate::on_both_databases!(
    every_format_agrees_with_pandas,
    a_seed_reproduces_the_split_and_stratification_keeps_proportions,
    bad_rows_are_reported_with_their_lines,
    preprocessors_clean_and_their_failures_and_traps_are_bad_rows,
    cut_uploads_and_kills_leave_nothing_behind,
    listing_paging_tenancy_and_deletion,
    concurrent_uploads_make_consecutive_versions,
    each_cleaning_option_does_what_it_says,
);

const WINE_QUERY: &str = "label=target&categorical=target&split=0.7,0.15,0.15&stratify=true&seed=7";

/// `PUT /v1/datasets/{name}?{query}` with `bytes` as `content_type`.
async fn push(
    server: &Server,
    client: &reqwest::Client,
    name: &str,
    query: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<reqwest::Response> {
    let url = server.url(&format!("/v1/datasets/{name}?{query}"));
    Ok(client.put(url).header("content-type", content_type).body(bytes).send().await?)
}

/// [`push`] that must answer `201`; returns the report.
async fn push_ok(
    server: &Server,
    name: &str,
    query: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<Value> {
    let response = push(server, &server.http, name, query, content_type, bytes).await?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status == 201, "PUT /v1/datasets/{name}?{query} answered {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

/// The statistics pandas and numpy compute from `file` (scripts/dataset-stats.py).
fn pandas_stats(file: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let python = target_dir().join("datasets-py/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dataset-stats.py");
    let output = std::process::Command::new(python).arg(script).arg(file).args(args).output()?;
    anyhow::ensure!(output.status.success(), "dataset-stats.py failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Every numeric column of `report` has pandas' statistics.
fn assert_stats_match(report: &Value, pandas: &Value) {
    assert_eq!(report["rows"]["kept"], pandas["rows"], "kept rows");
    let columns = report["columns"].as_array().cloned().unwrap_or_default();
    assert!(!columns.is_empty(), "the report has columns: {report}");
    for column in columns {
        let name = column["name"].as_str().unwrap_or_default();
        let theirs = &pandas["columns"][name];
        assert_eq!(column["missing"], theirs["missing"], "{name}: missing");
        assert_eq!(column["distinct"], theirs["distinct"], "{name}: distinct");
        if column["kind"] == "numeric" {
            for stat in ["min", "max", "mean", "std"] {
                let (ours, want) = (column["stats"][stat].as_f64(), theirs[stat].as_f64());
                assert!(
                    matches!((ours, want), (Some(a), Some(b)) if close(a, b)),
                    "{name}.{stat}: muon {ours:?}, pandas {want:?}"
                );
            }
        }
    }
}

async fn every_format_agrees_with_pandas(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let dir = tempfile::tempdir()?;
    let csv = repo_file("examples/datasets/wine.csv")?;
    let parquet = repo_file("examples/datasets/wine.parquet")?;
    let jsonl = jsonl_of_csv(&csv)?;
    let jsonl_path = dir.path().join("wine.jsonl");
    std::fs::write(&jsonl_path, &jsonl)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let pandas =
        pandas_stats(&root.join("examples/datasets/wine.csv"), &["--label", "target", "--categorical", "target"])?;
    let mut digests = Vec::new();
    for (name, content_type, bytes) in [
        ("wine-csv", "text/csv", csv),
        ("wine-parquet", "application/vnd.apache.parquet", parquet),
        ("wine-jsonl", "application/x-ndjson", jsonl),
    ] {
        let report = push_ok(&server, name, WINE_QUERY, content_type, bytes).await?;
        assert_eq!(report["rows"]["read"], 178, "{name}");
        assert_eq!(report["bad_rows"]["count"], 0, "{name}: {}", report["bad_rows"]);
        assert_stats_match(&report, &pandas);
        let shown: Value = server.http.get(server.url(&format!("/v1/datasets/{name}"))).send().await?.json().await?;
        assert_eq!(shown, report, "GET answers the report the upload did");
        digests.push(report["digest"].clone());
    }
    Ok(())
}

/// The wine CSV as JSON Lines: numbers as numbers, written by serde_json
/// from the CSV read by muon itself (its rows page would be circular, so the
/// header and cells are split here; wine.csv has no quoting).
fn jsonl_of_csv(csv: &[u8]) -> anyhow::Result<Vec<u8>> {
    let text = std::str::from_utf8(csv)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let mut out = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let mut record = serde_json::Map::new();
        for (key, cell) in header.iter().zip(line.split(',')) {
            let number: f64 = cell.parse()?;
            record.insert((*key).to_owned(), json!(number));
        }
        writeln!(out, "{}", Value::Object(record))?;
    }
    Ok(out)
}

async fn a_seed_reproduces_the_split_and_stratification_keeps_proportions(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let csv = repo_file("examples/datasets/wine.csv")?;
    let first = push_ok(&server, "wine", WINE_QUERY, "text/csv", csv.clone()).await?;
    let again = push_ok(&server, "wine", WINE_QUERY, "text/csv", csv.clone()).await?;
    assert_eq!((first["version"].as_u64(), again["version"].as_u64()), (Some(1), Some(2)));
    assert_eq!(first["digest"], again["digest"], "the same seed stores the same rows in the same splits");
    let rows = |version: u64| {
        let url = server.url(&format!("/v1/datasets/wine/rows?split=test&limit=1000&version={version}"));
        let http = server.http.clone();
        async move { anyhow::Ok(http.get(url).send().await?.json::<Value>().await?) }
    };
    assert_eq!(rows(1).await?["rows"], rows(2).await?["rows"]);
    let other = push_ok(&server, "wine", &WINE_QUERY.replace("seed=7", "seed=8"), "text/csv", csv).await?;
    assert_ne!(other["digest"], first["digest"], "another seed, another split");

    // Each class keeps its proportion in every split, within one row.
    let distribution = &first["label"]["distribution"];
    let sizes = &first["splits"];
    let total = first["rows"]["kept"].as_f64().unwrap_or_default();
    for (split, fraction) in [("train", 0.7), ("validation", 0.15), ("test", 0.15)] {
        let split_total: u64 =
            distribution[split].as_object().into_iter().flatten().filter_map(|(_, n)| n.as_u64()).sum();
        assert_eq!(Some(split_total), sizes[split].as_u64(), "{split}: the distribution adds up to the split");
        for class in ["0", "1", "2"] {
            let in_class: u64 =
                ["train", "validation", "test"].iter().filter_map(|s| distribution[s][class].as_u64()).sum();
            let expected = in_class as f64 * fraction;
            let got = distribution[split][class].as_f64().unwrap_or_default();
            assert!((got - expected).abs() <= 1.0, "{split}, class {class}: {got} rows, {expected:.2} expected");
        }
        let expected_size = total * fraction;
        let got = sizes[split].as_f64().unwrap_or_default();
        assert!((got - expected_size).abs() <= 3.0, "{split}: {got} rows, {expected_size:.1} expected");
    }
    Ok(())
}

async fn bad_rows_are_reported_with_their_lines(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let expected: Value = serde_json::from_slice(&repo_file("examples/datasets/dirty.expected.json")?)?;
    let dirty = repo_file("examples/datasets/dirty.csv")?;
    let query = expected["query"].as_str().unwrap_or_default();
    let report = push_ok(&server, "dirty", query, "text/csv", dirty.clone()).await?;
    assert_eq!(report["rows"], expected["rows"]);
    let lines = |rows: &Value| -> Vec<(Value, Value)> {
        rows.as_array().into_iter().flatten().map(|r| (r["line"].clone(), r["kind"].clone())).collect()
    };
    assert_eq!(lines(&report["bad_rows"]["first"]), lines(&expected["bad_rows"]));

    // Over max_bad_rows: refused, naming the first bad line, and nothing stored.
    let strict = query.replace("max_bad_rows=10", "max_bad_rows=2");
    let refused = push(&server, &server.http, "dirty-strict", &strict, "text/csv", dirty).await?;
    let (status, code, message) = error_of(refused).await?;
    assert_eq!((status, code.as_str()), (422, "bad_rows"), "{message}");
    assert!(message.contains("line 8"), "the message names the first bad row: {message}");
    let missing = server.http.get(server.url("/v1/datasets/dirty-strict")).send().await?;
    assert_eq!(missing.status(), 404, "a refused upload stores nothing");

    let unknown = push(&server, &server.http, "x", "label=y&colour=red", "text/csv", b"y\n1\n".to_vec()).await?;
    let (status, code, message) = error_of(unknown).await?;
    assert_eq!((status, code.as_str()), (400, "bad_request"), "{message}");
    assert!(message.contains("colour"), "{message}");
    let excel = push(&server, &server.http, "x", "", "application/vnd.ms-excel", b"y\n1\n".to_vec()).await?;
    assert_eq!(excel.status(), 415);
    Ok(())
}

async fn preprocessors_clean_and_their_failures_and_traps_are_bad_rows(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    server.deploy_ok("trapper", "fixture-preprocess-trap", "").await?;
    server.deploy_ok("clean-fields", "clean-fields", "").await?;
    let records =
        b"{\"v\": 1}\n{\"v\": \"trap\"}\n{\"v\": 3}\n{\"v\": \"a trap\"}\n{\"v\": 5}\nnot json\n{\"v\": \"wide\"}\n"
            .to_vec();
    let query = "preprocess=trapper&max_bad_rows=4&split=1,0";
    let report = push_ok(&server, "trapped", query, "application/x-ndjson", records).await?;
    let bad: Vec<(Value, Value)> = report["bad_rows"]["first"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["line"].clone(), r["kind"].clone()))
        .collect();
    let expected = [
        (json!(2), json!("preprocess_failed")),
        (json!(4), json!("preprocess_failed")),
        (json!(6), json!("invalid_record")),
        (json!(7), json!("shape_mismatch")),
    ];
    assert_eq!(bad, expected);
    assert_eq!(report["rows"]["kept"], 3);
    let rows: Value = server.http.get(server.url("/v1/datasets/trapped/rows?split=train")).send().await?.json().await?;
    assert_eq!(rows["rows"].as_array().map(Vec::len), Some(3), "{rows}");

    // One usage record for the build, with the guest's CPU summed.
    let records = server.usage_records(&server.http, None).await?;
    let builds: Vec<&Value> = records.iter().filter(|r| r["function"] == "trapper").collect();
    assert_eq!(builds.len(), 1, "one record per build: {records:?}");
    assert!(builds[0]["cpu_us"].as_u64().unwrap_or_default() > 0, "{:?}", builds[0]);

    // The example cleans text fields; a record it cannot clean is a bad row.
    let wines = concat!(
        "{\"text\": \"  A Great  Wine \", \"color\": \" RED \", \"alcohol\": 13.5}\n",
        "{\"text\": \"fresh\", \"color\": \"Rosé\", \"alcohol\": 11.0}\n",
        "{\"text\": \"odd\", \"color\": \"blue\", \"alcohol\": 12.0}\n",
    );
    let cleaned = push_ok(
        &server,
        "wines",
        "preprocess=clean-fields&max_bad_rows=1&split=1,0",
        "application/x-ndjson",
        wines.as_bytes().to_vec(),
    )
    .await?;
    assert_eq!(cleaned["bad_rows"]["first"][0]["line"], 3, "{cleaned}");
    let rows: Value = server.http.get(server.url("/v1/datasets/wines/rows?split=train")).send().await?.json().await?;
    assert_eq!(rows["rows"][0]["x"], json!([13.5, 0.0, 3.0]), "{rows}");
    assert_eq!(rows["rows"][1]["x"], json!([11.0, 2.0, 1.0]), "{rows}");

    let wrong_kind = push(&server, &server.http, "x", "preprocess=nope", "text/csv", b"a\n1\n".to_vec()).await?;
    assert_eq!(wrong_kind.status(), 400);
    Ok(())
}

async fn cut_uploads_and_kills_leave_nothing_behind(backend: Backend) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let flags = backend.flags()?;
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["--max-dataset-bytes", "100000"]);
    let server = Server::start_in(dir.path(), &args, None).await?;
    let key = server.admin_key.clone();

    // Over the limit: refused before the body is read, declared or chunked.
    let big = push(&server, &server.http, "big", "", "text/csv", vec![b'1'; 200_000]).await?;
    assert_eq!(big.status(), 413);
    let chunks = futures_util::stream::iter((0..50).map(|_| Ok::<_, std::io::Error>(vec![b'1'; 4096])));
    let chunked = server
        .http
        .put(server.url("/v1/datasets/big"))
        .header("content-type", "text/csv")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await?;
    assert_eq!(chunked.status(), 413);

    // A client that goes away mid-body.
    let mut stream = tokio::net::TcpStream::connect(server.address()).await?;
    let head = format!(
        "PUT /v1/datasets/cut HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: text/csv\r\ncontent-length: 90000\r\n\r\na,b\n1,2\n"
    );
    stream.write_all(head.as_bytes()).await?;
    drop(stream);

    // And a kill -9 while a body is arriving.
    let mut slow = tokio::net::TcpStream::connect(server.address()).await?;
    let head = head.replace("/cut ", "/killed ");
    slow.write_all(head.as_bytes()).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal("KILL")?;
    drop(slow);
    drop(server);

    let server = Server::start_in(dir.path(), &args, None).await?;
    let list: Value = server.http.get(server.url("/v1/datasets")).send().await?.json().await?;
    assert_eq!(list["datasets"], json!([]), "no version of a cut or killed upload");
    assert_eq!(files_in(&dir.path().join("datasets/spool")), Vec::<PathBuf>::new(), "no spooled file is left");
    let stored: Vec<PathBuf> = files_in(&dir.path().join("datasets"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert_eq!(stored, Vec::<PathBuf>::new(), "no dataset file is left");
    Ok(())
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect()
}

async fn listing_paging_tenancy_and_deletion(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let csv = repo_file("examples/datasets/wine.csv")?;
    let report = push_ok(&server, "wine", WINE_QUERY, "text/csv", csv.clone()).await?;
    let list: Value = server.http.get(server.url("/v1/datasets")).send().await?.json().await?;
    assert_eq!(list["datasets"][0]["name"], "wine");
    assert_eq!(list["datasets"][0]["rows"], report["rows"]["kept"]);
    let page: Value = server
        .http
        .get(server.url("/v1/datasets/wine/rows?split=train&offset=10&limit=5"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(page["rows"].as_array().map(Vec::len), Some(5));
    assert_eq!(page["total"], report["splits"]["train"]);
    let too_many = server.http.get(server.url("/v1/datasets/wine/rows?limit=1001")).send().await?;
    assert_eq!(too_many.status(), 400);

    // Another tenant sees none of it, and cannot delete it.
    let key = server.create_tenant("other").await?;
    let other = server.with_key(&key)?;
    for path in ["/v1/datasets/wine", "/v1/datasets/wine/rows"] {
        assert_eq!(other.get(server.url(path)).send().await?.status(), 404, "{path}");
    }
    assert_eq!(other.delete(server.url("/v1/datasets/wine")).send().await?.status(), 404);
    let theirs: Value = other.get(server.url("/v1/datasets")).send().await?.json().await?;
    assert_eq!(theirs["datasets"], json!([]));

    // The storage quota counts datasets.
    let quota = server
        .http
        .put(server.url("/v1/tenants/other/quotas"))
        .json(&json!({ "max_storage_bytes": 1000 }))
        .send()
        .await?;
    assert_eq!(quota.status(), 200);
    let over = push(&server, &other, "wine", WINE_QUERY, "text/csv", csv).await?;
    let (status, code, message) = error_of(over).await?;
    assert_eq!((status, code.as_str()), (429, "quota_exceeded"), "{message}");

    let deleted = server.http.delete(server.url("/v1/datasets/wine")).send().await?;
    assert_eq!(deleted.status(), 200);
    assert_eq!(server.http.get(server.url("/v1/datasets/wine")).send().await?.status(), 404);
    Ok(())
}

async fn concurrent_uploads_make_consecutive_versions(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let csv = repo_file("examples/datasets/wine.csv")?;
    let uploads = (0..4).map(|seed| {
        let query = WINE_QUERY.replace("seed=7", &format!("seed={seed}"));
        let (server, csv) = (&server, csv.clone());
        async move { push_ok(server, "wine", &query, "text/csv", csv).await }
    });
    let reports = futures_util::future::try_join_all(uploads).await?;
    let mut versions: Vec<u64> = reports.iter().filter_map(|r| r["version"].as_u64()).collect();
    versions.sort_unstable();
    assert_eq!(versions, [1, 2, 3, 4]);
    for report in &reports {
        let version = report["version"].as_u64().unwrap_or_default();
        let shown: Value =
            server.http.get(server.url(&format!("/v1/datasets/wine?version={version}"))).send().await?.json().await?;
        assert_eq!(&shown, report, "version {version} is whole");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn other_nodes_on_postgres_see_the_dataset() -> anyhow::Result<()> {
    let url = muon_tests::fresh_postgres_database()?;
    let one = Server::start(&["--database-url", &url]).await?;
    let two = Server::start(&["--database-url", &url]).await?;
    // Datasets are read from the catalog at each request: no follow delay.
    let two_http = two.with_key(&one.admin_key)?;
    let report = push_ok(&one, "wine", WINE_QUERY, "text/csv", repo_file("examples/datasets/wine.csv")?).await?;
    let shown: Value = two_http.get(two.url("/v1/datasets/wine")).send().await?.json().await?;
    assert_eq!(shown, report);
    let rows: Value = two_http.get(two.url("/v1/datasets/wine/rows?split=test")).send().await?.json().await?;
    assert_eq!(rows["total"], report["splits"]["test"], "{rows}");
    Ok(())
}

/// Two rows with a missing value (lines 3 and 6) and one repeated row (line 8).
const SMALL: &str = "x,y,c,label\n1,10,a,0\n2,,b,1\n3,30,a,0\n4,40,b,1\n,50,a,0\n6,60,b,1\n6,60,b,1\n8,80,a,0\n";

async fn each_cleaning_option_does_what_it_says(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let base = "label=label&categorical=c&split=1,0";
    let upload = |name: &'static str, options: &'static str| {
        let (server, query) = (&server, format!("{base}&{options}"));
        async move { push_ok(server, name, &query, "text/csv", SMALL.as_bytes().to_vec()).await }
    };
    let column = |report: &Value, name: &str| -> Value {
        report["columns"].as_array().into_iter().flatten().find(|c| c["name"] == name).cloned().unwrap_or_default()
    };

    // missing=error (the default) names the first row with a missing value.
    let refused = push(&server, &server.http, "e", base, "text/csv", SMALL.as_bytes().to_vec()).await?;
    let (status, code, message) = error_of(refused).await?;
    assert_eq!((status, code.as_str()), (422, "invalid_data"), "{message}");
    assert!(message.contains("line 3"), "{message}");

    let dropped = upload("drop", "missing=drop").await?;
    assert_eq!((dropped["rows"]["dropped_missing"].as_u64(), dropped["rows"]["kept"].as_u64()), (Some(2), Some(6)));
    let x = column(&dropped, "x");
    assert_eq!((x["stats"]["min"].as_f64(), x["stats"]["max"].as_f64()), (Some(1.0), Some(8.0)));
    assert!(close(x["stats"]["mean"].as_f64().unwrap_or_default(), 28.0 / 6.0), "{x}");

    let mean = upload("mean", "missing=mean").await?;
    assert!(close(column(&mean, "x")["imputed"].as_f64().unwrap_or_default(), 30.0 / 7.0), "{mean}");
    let median = upload("median", "missing=median").await?;
    assert_eq!(column(&median, "x")["imputed"].as_f64(), Some(4.0), "{median}");

    let deduped = upload("dedupe", "missing=drop&dedupe=true").await?;
    assert_eq!((deduped["rows"]["deduplicated"].as_u64(), deduped["rows"]["kept"].as_u64()), (Some(1), Some(5)));

    let zscore = upload("zscore", "missing=drop&normalize=zscore").await?;
    let scaling = &column(&zscore, "x")["normalization"];
    assert_eq!(scaling["method"], "zscore");
    assert!(close(scaling["offset"].as_f64().unwrap_or_default(), 28.0 / 6.0), "{scaling}");
    let stored = stored_column(&server, "zscore", "x").await?;
    assert!(stored.iter().sum::<f64>().abs() < 1e-9, "z-scores of the train split sum to 0: {stored:?}");

    let minmax = upload("minmax", "missing=drop&normalize=minmax").await?;
    let scaling = &column(&minmax, "x")["normalization"];
    assert_eq!((scaling["offset"].as_f64(), scaling["scale"].as_f64()), (Some(1.0), Some(7.0)), "{scaling}");
    let stored = stored_column(&server, "minmax", "x").await?;
    assert_eq!(stored.iter().copied().fold(f64::INFINITY, f64::min), 0.0);
    assert_eq!(stored.iter().copied().fold(f64::NEG_INFINITY, f64::max), 1.0);

    // categorical= one-hot encodes a feature; features= selects columns.
    let one_hot = stored_column(&server, "drop", "c=a").await?;
    assert_eq!(one_hot, [1.0, 1.0, 0.0, 0.0, 0.0, 1.0], "c=a per kept row");
    let only_x = upload("only-x", "missing=drop&features=x").await?;
    let names: Vec<&str> =
        only_x["columns"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["x", "label"]);
    Ok(())
}

/// Column `name` of a dataset's train split, as stored.
async fn stored_column(server: &Server, dataset: &str, name: &str) -> anyhow::Result<Vec<f64>> {
    let page: Value =
        server.http.get(server.url(&format!("/v1/datasets/{dataset}/rows?split=train"))).send().await?.json().await?;
    Ok(page["rows"].as_array().into_iter().flatten().filter_map(|row| row[name].as_f64()).collect())
}
