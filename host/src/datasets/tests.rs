//! The datasets module on real files: every format, option and bad-row kind,
//! the seed, stratification, the reader and its cursor, and random bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, ensure};
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use super::*;
use crate::api::datasets::{BadRowKind, ColumnKind, DatasetOptions, DatasetReport, Split};
use crate::engine::{NamedTensor, Tensor, TensorType};

struct Built {
    report: DatasetReport,
    output: PathBuf,
    _dir: tempfile::TempDir,
}

fn build_bytes(bytes: &[u8], format: Format, query: &str) -> Result<Built, DatasetError> {
    build_with(bytes, format, query, None)
}

fn build_with(
    bytes: &[u8],
    format: Format,
    query: &str,
    preprocessor: Option<&dyn Preprocessor>,
) -> Result<Built, DatasetError> {
    let dir = tempfile::tempdir().map_err(|e| DatasetError::io("tempdir", e))?;
    let input = dir.path().join("upload");
    std::fs::write(&input, bytes).map_err(|e| DatasetError::io("writing", e))?;
    let options = DatasetOptions::parse(query).map_err(|e| DatasetError::Storage(e.0))?;
    let output = dir.path().join("dataset.parquet");
    let report = build(&input, format, &options, preprocessor, &output)?;
    Ok(Built { report, output, _dir: dir })
}

fn csv(text: &str, query: &str) -> Result<Built, DatasetError> {
    build_bytes(text.as_bytes(), Format::Csv, query)
}

/// `rows` rows: `a` = i, `b` = i * 0.5 - 3, label `y` = class i % 3 as text.
fn numbers_csv(rows: usize) -> String {
    let mut text = String::from("a,b,y\n");
    for i in 0..rows {
        text.push_str(&format!("{i},{},{}\n", i as f64 * 0.5 - 3.0, ["cat", "dog", "emu"][i % 3]));
    }
    text
}

fn all_rows(path: &Path, split: Split) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    Ok(rows_page(path, split, 0, u64::MAX)?.rows)
}

fn column(rows: &[serde_json::Map<String, serde_json::Value>], name: &str) -> Vec<f64> {
    rows.iter().filter_map(|r| r.get(name).and_then(serde_json::Value::as_f64)).collect()
}

fn relative(a: f64, b: f64) -> f64 {
    if a == b { 0.0 } else { (a - b).abs() / a.abs().max(b.abs()) }
}

#[test]
fn formats_come_from_content_types() {
    assert_eq!(Format::from_content_type("text/csv; charset=utf-8").ok(), Some(Format::Csv));
    assert_eq!(Format::from_content_type("application/x-ndjson").ok(), Some(Format::Jsonl));
    assert_eq!(Format::from_content_type("application/vnd.apache.parquet").ok(), Some(Format::Parquet));
    let error = Format::from_content_type("application/json").err().map(|e| e.to_string()).unwrap_or_default();
    for named in ["text/csv", "application/x-ndjson", "application/vnd.apache.parquet"] {
        assert!(error.contains(named), "{error}");
    }
}

#[test]
fn a_clean_csv_is_described_exactly() -> Result<()> {
    let built = csv(&numbers_csv(50), "label=y&categorical=y")?;
    let report = &built.report;
    assert_eq!((report.rows.read, report.rows.kept, report.bad_rows.count), (50, 50, 0));
    assert_eq!((report.splits.train, report.splits.validation, report.splits.test), (40, 5, 5));
    let a = &report.columns[0];
    let stats = a.stats.context("a has stats")?;
    // 0..49: mean 24.5, sample variance n(n+1)/12 = 50*51/12.
    assert_eq!((stats.count, stats.min, stats.max), (50, 0.0, 49.0));
    assert!(relative(stats.mean, 24.5) < 1e-12);
    assert!(relative(stats.std.context("std")?, (50.0 * 51.0 / 12.0f64).sqrt()) < 1e-12);
    assert_eq!((a.distinct, a.distinct_capped, a.kind), (50, false, ColumnKind::Numeric));
    let label = report.label.as_ref().context("label")?;
    let train: u64 = label.distribution[&Split::Train].values().sum();
    assert_eq!(train, 40);
    assert_eq!(report.columns[2].categories, Some(vec!["cat".into(), "dog".into(), "emu".into()]));
    let names: Vec<&str> = report.stored_columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "y"]);
    let rows = all_rows(&built.output, Split::Train)?;
    assert_eq!(rows.len(), 40);
    // Class indices: the row with a = 1 is a dog (1).
    if let Some(row) = rows.iter().find(|r| r["a"] == 1.0) {
        assert_eq!(row["y"], 1);
    }
    Ok(())
}

#[test]
fn every_kind_of_bad_row_is_reported_with_its_line() -> Result<()> {
    let mut text = b"\xef\xbb\xbfa,b,y\n".to_vec(); // line 1, with a BOM
    text.extend_from_slice(b"1,2,x\n"); // 2 good
    text.extend_from_slice(b"1,2\n"); // 3 ragged
    text.extend_from_slice(b"1,abc,x\n"); // 4 unparsable
    text.extend_from_slice(b"1,\xff\xfe,x\n"); // 5 invalid UTF-8
    text.extend_from_slice(b"5,6,\n"); // 6 missing label
    text.extend_from_slice(b"7,\"8\",\"multi\nline\"\n"); // 7-8 good, quoted over two lines
    text.extend_from_slice(b"9,1e400,x\n"); // 9 not finite
    text.extend_from_slice(b"9,10,z\n"); // 10 good
    text.extend_from_slice(b"1,\"2,x\n3,4,x\n"); // 11-12 broken quoting (swallows line 12)
    let error = build_bytes(&text, Format::Csv, "label=y&categorical=y").err().context("refused")?;
    let DatasetError::BadRows { count, max, report, first } = &error else { return Err(anyhow!("{error}")) };
    assert_eq!((*count, *max), (6, 0));
    assert!(first.contains("line 3"), "{first}");
    let listed: Vec<(Option<u64>, BadRowKind)> = report.bad_rows.first.iter().map(|b| (b.line, b.kind)).collect();
    assert_eq!(
        listed,
        [
            (Some(3), BadRowKind::Ragged),
            (Some(4), BadRowKind::UnparsableNumber),
            (Some(5), BadRowKind::InvalidUtf8),
            (Some(6), BadRowKind::MissingLabel),
            (Some(9), BadRowKind::UnparsableNumber),
            (Some(11), BadRowKind::BrokenQuoting),
        ]
    );
    assert!(report.bad_rows.first[1].reason.contains("`abc`"), "{:?}", report.bad_rows.first[1]);
    let built = build_bytes(&text, Format::Csv, "label=y&categorical=y&max_bad_rows=6&split=1,0")?;
    assert_eq!((built.report.rows.read, built.report.rows.kept, built.report.rows.dropped_bad), (9, 3, 6));
    assert_eq!(built.report.bad_rows.by_kind.get(&BadRowKind::UnparsableNumber), Some(&2));
    let rows = all_rows(&built.output, Split::Train)?;
    assert_eq!(column(&rows, "a"), [1.0, 7.0, 9.0]);
    assert_eq!(built.report.columns[2].categories, Some(vec!["multi\nline".into(), "x".into(), "z".into()]));
    Ok(())
}

#[test]
fn bad_rows_are_counted_past_the_hundred_listed() -> Result<()> {
    let mut text = String::from("a\n");
    for i in 0..250 {
        text.push_str(if i % 2 == 0 { "x\n" } else { "1\n" });
    }
    let built = csv(&text, "max_bad_rows=1000")?;
    assert_eq!((built.report.bad_rows.count, built.report.bad_rows.first.len()), (125, 100));
    assert_eq!(built.report.bad_rows.first[99].line, Some(200));
    Ok(())
}

#[test]
fn missing_values_error_drop_mean_and_median() -> Result<()> {
    let text = "a,b\n1,10\n,20\n3,NA\n5,40\n7,50\n";
    let error = csv(text, "").err().context("missing=error refuses")?.to_string();
    assert!(error.contains("line 3 (column `a`)") && error.contains("line 4 (column `b`)"), "{error}");
    let dropped = csv(text, "missing=drop&split=1,0")?;
    assert_eq!((dropped.report.rows.kept, dropped.report.rows.dropped_missing), (3, 2));
    assert_eq!((dropped.report.columns[0].missing, dropped.report.columns[1].missing), (1, 1));
    let mean = csv(text, "missing=mean&split=1,0")?;
    assert_eq!(mean.report.columns[0].imputed, Some(4.0));
    assert_eq!(mean.report.columns[1].imputed, Some(30.0));
    assert_eq!(column(&all_rows(&mean.output, Split::Train)?, "a"), [1.0, 4.0, 3.0, 5.0, 7.0]);
    let median = csv(text, "missing=median&split=1,0")?;
    assert_eq!(median.report.columns[0].imputed, Some(4.0));
    assert_eq!(median.report.columns[1].imputed, Some(30.0));
    let median = csv("a\n1\n\n2\n\n10\nNaN\n", "missing=median&split=1,0")?;
    assert_eq!(median.report.columns[0].imputed, Some(2.0));
    Ok(())
}

#[test]
fn imputation_uses_the_train_split_only() -> Result<()> {
    let mut text = String::from("a,b\n");
    for i in 0..100 {
        text.push_str(&format!("{},{i}\n", if i % 10 == 0 { String::new() } else { i.to_string() }));
    }
    let built = csv(&text, "missing=mean&split=0.5,0.5&seed=3")?;
    let train = all_rows(&built.output, Split::Train)?;
    let imputed = built.report.columns[0].imputed.context("imputed")?;
    let present: Vec<f64> = column(&train, "a").into_iter().filter(|x| *x != imputed).collect();
    let want = present.iter().sum::<f64>() / present.len() as f64;
    assert!(relative(imputed, want) < 1e-12, "{imputed} vs {want}");
    Ok(())
}

#[test]
fn dedupe_drops_repeats_and_keeps_the_first() -> Result<()> {
    let built = csv("a,b\n1,2\n1,2\n3,4\n1,2.0\n3,5\n", "dedupe=true&split=1,0")?;
    assert_eq!((built.report.rows.kept, built.report.rows.deduplicated), (3, 2));
    let kept = csv("a,b\n1,2\n1,2\n", "split=1,0")?;
    assert_eq!(kept.report.rows.kept, 2);
    Ok(())
}

#[test]
fn categorical_features_are_one_hot_and_labels_class_indices() -> Result<()> {
    let built = csv("color,n,y\nred,1,10\nblue,2,2\nred,3,1\ngreen,4,2\n", "label=y&categorical=color,y&split=1,0")?;
    let names: Vec<&str> = built.report.stored_columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["color=blue", "color=green", "color=red", "n", "y"]);
    // Numeric categories sort as numbers: 1, 2, 10.
    assert_eq!(built.report.columns[2].categories, Some(vec!["1".into(), "2".into(), "10".into()]));
    let rows = all_rows(&built.output, Split::Train)?;
    assert_eq!(column(&rows, "color=red"), [1.0, 0.0, 1.0, 0.0]);
    assert_eq!(column(&rows, "y"), [2.0, 1.0, 0.0, 1.0]);
    let label = built.report.label.context("label")?;
    assert_eq!(label.distribution[&Split::Train].get("2"), Some(&2));
    let text = csv("color,n\nred,1\n", "").err().context("text in a numeric column")?.to_string();
    assert!(text.contains("categorical="), "{text}");
    Ok(())
}

#[test]
fn normalization_uses_train_statistics() -> Result<()> {
    let built = csv(&numbers_csv(200), "label=y&categorical=y&normalize=zscore&seed=7")?;
    let train = all_rows(&built.output, Split::Train)?;
    let a = column(&train, "a");
    let mean = a.iter().sum::<f64>() / a.len() as f64;
    let std = (a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (a.len() - 1) as f64).sqrt();
    assert!(mean.abs() < 1e-12 && (std - 1.0).abs() < 1e-12, "{mean} {std}");
    let normalization = built.report.columns[0].normalization.context("normalized")?;
    // The report's statistics are over every kept row, before normalization.
    assert_eq!(built.report.columns[0].stats.map(|s| s.mean), Some(99.5));
    assert!(normalization.offset != 99.5);
    let minmax = csv(&numbers_csv(200), "normalize=minmax&features=a,b&seed=7")?;
    let train = column(&all_rows(&minmax.output, Split::Train)?, "b");
    let (lo, hi) = train.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    assert!((lo, hi) == (0.0, 1.0), "{lo} {hi}");
    let test = column(&all_rows(&minmax.output, Split::Test)?, "b");
    assert_eq!(test.len(), 20);
    Ok(())
}

#[test]
fn the_same_seed_gives_the_same_split() -> Result<()> {
    let text = numbers_csv(1000);
    let split_of = |query: &str| -> Result<Vec<Vec<f64>>> {
        let built = csv(&text, query)?;
        Split::ALL.into_iter().map(|s| Ok(column(&all_rows(&built.output, s)?, "a"))).collect()
    };
    let first = split_of("features=a&seed=42")?;
    assert_eq!(first, split_of("features=a&seed=42")?);
    assert_ne!(first, split_of("features=a&seed=43")?);
    assert_eq!(first.iter().map(Vec::len).collect::<Vec<_>>(), [800, 100, 100]);
    // Fixed forever: ChaCha8 and our own Fisher-Yates, not a library's shuffle.
    assert_eq!(&first[2][..5], &split_of("features=a&seed=42")?[2][..5]);
    Ok(())
}

#[test]
fn split_sizes_are_within_one_row() {
    for rows in [0usize, 1, 2, 3, 7, 10, 11, 99, 1001] {
        for fractions in [(0.8, 0.1, 0.1), (0.7, 0.0, 0.3), (1.0, 0.0, 0.0), (0.34, 0.33, 0.33)] {
            let f =
                crate::api::datasets::SplitFractions { train: fractions.0, validation: fractions.1, test: fractions.2 };
            let sizes = clean::sizes(rows, f);
            assert_eq!(sizes.iter().sum::<usize>(), rows);
            for (size, fraction) in sizes.iter().zip([f.train, f.validation, f.test]) {
                assert!((*size as f64 - rows as f64 * fraction).abs() < 1.0, "{rows} {fractions:?} {sizes:?}");
            }
        }
    }
}

#[test]
fn stratification_keeps_class_proportions_within_one_row() -> Result<()> {
    let mut text = String::from("x,y\n");
    for i in 0..997 {
        let class = if i % 10 == 0 {
            "rare"
        } else if i % 3 == 0 {
            "mid"
        } else {
            "common"
        };
        text.push_str(&format!("{i},{class}\n"));
    }
    let built = csv(&text, "label=y&categorical=y&stratify=true&split=0.7,0.2,0.1&seed=5")?;
    let label = built.report.label.context("label")?;
    let totals: std::collections::BTreeMap<String, u64> = ["rare", "mid", "common"]
        .iter()
        .map(|c| (c.to_string(), Split::ALL.iter().map(|s| label.distribution[s].get(*c).copied().unwrap_or(0)).sum()))
        .collect();
    for (split, fraction) in Split::ALL.into_iter().zip([0.7, 0.2, 0.1]) {
        for (class, total) in &totals {
            let got = label.distribution[&split].get(class).copied().unwrap_or(0) as f64;
            assert!((got - *total as f64 * fraction).abs() < 1.0, "{split:?} {class}: {got} of {total}");
        }
    }
    Ok(())
}

#[test]
fn jsonl_records_and_bad_lines() -> Result<()> {
    let text = concat!(
        "{\"b\": 1.5, \"a\": 2, \"y\": \"p\"}\n",
        "{\"b\": 2.5, \"a\": null, \"y\": \"q\"}\n",
        "not json\n",
        "{\"b\": 1, \"a\": 1, \"y\": \"p\", \"extra\": 1}\n",
        "\n",
        "{\"b\": [1], \"a\": 1, \"y\": \"p\"}\n",
        "{\"b\": 3.5, \"a\": 4, \"y\": \"q\"}\n",
        "[1, 2]\n",
    );
    let built =
        build_bytes(text.as_bytes(), Format::Jsonl, "label=y&categorical=y&missing=drop&max_bad_rows=4&split=1,0")?;
    let kinds: Vec<(Option<u64>, BadRowKind)> = built.report.bad_rows.first.iter().map(|b| (b.line, b.kind)).collect();
    assert_eq!(
        kinds,
        [
            (Some(3), BadRowKind::InvalidRecord),
            (Some(4), BadRowKind::Ragged),
            (Some(6), BadRowKind::InvalidRecord),
            (Some(8), BadRowKind::InvalidRecord)
        ]
    );
    // Columns in the first record's order, not sorted.
    let names: Vec<&str> = built.report.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["b", "a", "y"]);
    assert_eq!((built.report.rows.read, built.report.rows.kept, built.report.rows.dropped_missing), (7, 2, 1));
    assert_eq!(column(&all_rows(&built.output, Split::Train)?, "b"), [1.5, 3.5]);
    Ok(())
}

fn parquet_upload(dir: &Path) -> Result<PathBuf> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("x", DataType::Float64, true),
        Field::new("n", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Float64Array::from(vec![Some(1.0), None, Some(3.0), Some(4.0), Some(f64::NAN)])),
        Arc::new(Int64Array::from(vec![10, 20, 30, 40, 50])),
        Arc::new(StringArray::from(vec![Some("a"), Some("b"), Some("oops"), None, Some("a")])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let path = dir.join("in.parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path)?, schema, None)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(path)
}

#[test]
fn parquet_uploads_report_rows_by_index() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bytes = std::fs::read(parquet_upload(dir.path())?)?;
    // `s` holds text, so as a numeric feature row 0, 1, 2 and 4 are bad (row 3's null is missing).
    let error = build_bytes(&bytes, Format::Parquet, "missing=drop").err().context("refused")?;
    let DatasetError::BadRows { report, .. } = error else { return Err(anyhow!("{error}")) };
    assert_eq!(report.bad_rows.first[0].row, Some(0));
    assert_eq!(report.bad_rows.first[0].line, None);
    let built = build_bytes(&bytes, Format::Parquet, "label=n&categorical=s&missing=drop&split=1,0")?;
    assert_eq!((built.report.rows.read, built.report.rows.kept, built.report.rows.dropped_missing), (5, 2, 3));
    assert_eq!(built.report.columns[0].source_type, "float64");
    assert_eq!(built.report.columns[0].missing, 2);
    assert_eq!(column(&all_rows(&built.output, Split::Train)?, "n"), [10.0, 30.0]);
    let garbage = build_bytes(b"PAR1 not really", Format::Parquet, "").err().context("garbage")?;
    assert!(matches!(garbage, DatasetError::InvalidParquet(_)), "{garbage}");
    Ok(())
}

#[test]
fn a_restarted_reader_reads_each_pass_as_a_fresh_one_would() -> Result<()> {
    let built = csv(&numbers_csv(300), "label=y&categorical=y&split=1,0&seed=1")?;
    // Each batch's x and y bytes, and its cursor.
    type Pass = Vec<(Vec<u8>, Vec<u8>, Cursor)>;
    let pass = |reader: &mut SplitReader| -> Result<Pass> {
        let mut batches = Vec::new();
        while let Some(batch) = reader.next_batch()? {
            batches.push((batch.tensors[0].tensor.data.clone(), batch.tensors[1].tensor.data.clone(), batch.cursor));
        }
        Ok(batches)
    };
    let seeds = [Some(2), Some(3), None, Some(3)];
    let fresh = seeds
        .iter()
        .map(|&seed| pass(&mut SplitReader::open(&built.output, Split::Train, 64, seed, None)?))
        .collect::<Result<Vec<_>>>()?;
    let mut reused = SplitReader::open(&built.output, Split::Train, 64, Some(1), None)?;
    // Half a pass, then the next ones: nothing of the first carries over.
    reused.next_batch()?.context("a first batch")?;
    // The split is one row group, in memory now: the passes never read the file again.
    std::fs::remove_file(&built.output)?;
    for (seed, fresh) in seeds.into_iter().zip(fresh) {
        reused.restart(seed);
        assert_eq!(fresh.len(), 5);
        assert_eq!(pass(&mut reused)?, fresh, "seed {seed:?}");
    }
    Ok(())
}

#[test]
fn the_reader_covers_a_split_once_and_resumes_from_a_cursor() -> Result<()> {
    let built = csv(&numbers_csv(300), "label=y&categorical=y&split=1,0&seed=1")?;
    let read_all = |seed: Option<u64>, resume: Option<Cursor>| -> Result<(Vec<f32>, Vec<Cursor>)> {
        let mut reader = SplitReader::open(&built.output, Split::Train, 64, seed, resume)?;
        let (mut a, mut cursors) = (Vec::new(), Vec::new());
        while let Some(batch) = reader.next_batch()? {
            let x = &batch.tensors[0];
            ensure!(x.name == "x" && x.tensor.ty == TensorType::Fp32);
            ensure!(x.tensor.dimensions == [batch.rows as u32, 2]);
            let y = &batch.tensors[1];
            ensure!(y.name == "y" && y.tensor.ty == TensorType::I64 && y.tensor.data.len() == batch.rows * 8);
            for row in x.tensor.data.chunks_exact(8) {
                a.push(f32::from_le_bytes([row[0], row[1], row[2], row[3]]));
            }
            cursors.push(batch.cursor);
        }
        Ok((a, cursors))
    };
    let (ordered, _) = read_all(None, None)?;
    assert_eq!(ordered, (0..300).map(|i| i as f32).collect::<Vec<_>>());
    let (shuffled, cursors) = read_all(Some(9), None)?;
    assert_ne!(shuffled, ordered);
    let mut sorted = shuffled.clone();
    sorted.sort_by(f32::total_cmp);
    assert_eq!(sorted, ordered);
    assert_eq!(read_all(Some(9), None)?.0, shuffled);
    // Resume after the second batch: the rest is the same.
    let cursor = serde_json::from_str::<Cursor>(&serde_json::to_string(&cursors[1])?)?;
    assert_eq!(cursor.position, 128);
    assert_eq!(read_all(Some(9), Some(cursor))?.0, shuffled[128..]);
    assert!(SplitReader::open(&built.output, Split::Test, 64, Some(9), Some(cursor)).is_err());
    assert!(
        SplitReader::open(&built.output, Split::Train, 64, Some(9), Some(Cursor { position: 301, ..cursor })).is_err()
    );
    Ok(())
}

#[test]
fn rows_pages_are_offset_and_bounded() -> Result<()> {
    let built = csv(&numbers_csv(30), "features=a&split=1,0")?;
    let page = rows_page(&built.output, Split::Train, 10, 5)?;
    assert_eq!((page.total, page.offset, page.rows.len()), (30, 10, 5));
    assert_eq!(column(&page.rows, "a"), [10.0, 11.0, 12.0, 13.0, 14.0]);
    assert!(rows_page(&built.output, Split::Test, 0, 10)?.rows.is_empty());
    Ok(())
}

/// Answers `v` = [value of `a` * 2, 1] as fp32; fails where `a` is 3; a longer tensor where `a` is 4.
struct Doubler;

impl Preprocessor for Doubler {
    fn preprocess(&self, content_type: &str, data: &[u8]) -> Result<Vec<NamedTensor>, String> {
        let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
        let a: f32 = match content_type {
            "text/csv" => text.lines().nth(1).and_then(|l| l.split(',').next()).and_then(|v| v.parse().ok()),
            _ => serde_json::from_str::<serde_json::Value>(text).ok().and_then(|v| v["a"].as_f64()).map(|v| v as f32),
        }
        .ok_or("no a")?;
        if a == 3.0 {
            return Err("trapped: unreachable".into());
        }
        let values: Vec<f32> = if a == 4.0 { vec![a * 2.0, 1.0, 0.0] } else { vec![a * 2.0, 1.0] };
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(vec![NamedTensor {
            name: "v".into(),
            tensor: Tensor { dimensions: vec![values.len() as u32], ty: TensorType::Fp32, data },
        }])
    }
}

#[test]
fn preprocessors_make_tensor_columns_and_their_failures_bad_rows() -> Result<()> {
    let mut text = String::from("a,y\n");
    for i in 0..600 {
        text.push_str(&format!("{},{}\n", i % 7, i % 2));
    }
    let built = build_with(
        text.as_bytes(),
        Format::Csv,
        "label=y&preprocess=doubler&max_bad_rows=1000&split=1,0",
        Some(&Doubler),
    )?;
    let report = &built.report;
    let bad = &report.bad_rows.by_kind;
    assert_eq!((bad.get(&BadRowKind::PreprocessFailed), bad.get(&BadRowKind::ShapeMismatch)), (Some(&86), Some(&86)));
    assert_eq!(report.bad_rows.first[0].line, Some(5));
    let preprocess = report.preprocess.as_ref().context("metered")?;
    assert_eq!((preprocess.function.as_str(), preprocess.records), ("doubler", 600));
    assert!(preprocess.bytes_in > 600 * 6 && preprocess.bytes_out == (600 - 86 - 86) * 8 + 86 * 12);
    assert_eq!(report.stored_columns[0].shape, [2]);
    let mut reader = SplitReader::open(&built.output, Split::Train, 1000, None, None)?;
    let batch = reader.next_batch()?.context("a batch")?;
    let v = &batch.tensors[0];
    assert_eq!((v.name.as_str(), v.tensor.dimensions.as_slice()), ("v", &[428u32, 2][..]));
    assert_eq!(f32::from_le_bytes([v.tensor.data[8], v.tensor.data[9], v.tensor.data[10], v.tensor.data[11]]), 2.0);
    assert_eq!(batch.tensors[1].name, "y");
    let page = rows_page(&built.output, Split::Train, 1, 1)?;
    assert_eq!(page.rows[0]["v"], serde_json::json!([2.0, 1.0]));
    Ok(())
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = clean::rng(1);
    use rand_chacha::rand_core::RngCore;
    for round in 0..300 {
        let len = (rng.next_u32() % 400) as usize;
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        if round % 3 == 0 {
            // Mostly CSV-ish bytes, to get past the header.
            for b in &mut bytes {
                *b = b"a,1\"\n\r\xff x"[(*b % 9) as usize];
            }
        }
        for format in [Format::Csv, Format::Jsonl, Format::Parquet] {
            let _ = build_bytes(&bytes, format, "max_bad_rows=1000000&missing=drop");
            let _ = build_bytes(&bytes, format, "label=a&categorical=a&stratify=true&dedupe=true&missing=mean");
        }
    }
}

/// `examples/datasets/dirty.csv` against the report `scripts/make-datasets.py` expects of it.
#[test]
fn the_dirty_csv_gives_its_expected_report() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/datasets");
    let expected: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("dirty.expected.json"))?)?;
    let query = expected["query"].as_str().context("query")?;
    let built = build_bytes(&std::fs::read(dir.join("dirty.csv"))?, Format::Csv, query)?;
    let report = &built.report;
    assert_eq!(serde_json::to_value(report.rows)?, expected["rows"]);
    let bad: Vec<serde_json::Value> =
        report.bad_rows.first.iter().map(|b| serde_json::json!({"line": b.line, "kind": b.kind})).collect();
    assert_eq!(serde_json::Value::from(bad), expected["bad_rows"]);
    for column in &report.columns {
        let want = &expected["columns"][&column.name];
        if column.role == crate::api::datasets::ColumnRole::Label {
            continue;
        }
        assert_eq!(Some(column.missing), want["missing"].as_u64(), "{}", column.name);
        if let Some(stats) = column.stats {
            let close = |got: f64, key: &str| -> Result<()> {
                let w = want[key].as_f64().context("expected")?;
                ensure!(relative(got, w) < 1e-9, "{}.{key}: {got} vs {w}", column.name);
                Ok(())
            };
            close(stats.mean, "mean")?;
            close(stats.std.context("std")?, "std")?;
            close(stats.min, "min")?;
            close(stats.max, "max")?;
            match column.imputed {
                Some(imputed) => close(imputed, "imputed")?,
                None => ensure!(want["imputed"].is_null(), "{} was not imputed", column.name),
            }
            assert_eq!(Some(stats.count), want["count"].as_u64());
            assert_eq!(Some(column.distinct), want["distinct"].as_u64());
        } else {
            assert_eq!(serde_json::to_value(&column.categories)?, want["categories"]);
            assert_eq!(column.imputed_category.as_deref(), want["imputed_category"].as_str());
        }
    }
    let label = report.label.as_ref().context("label")?;
    assert_eq!(serde_json::to_value(&label.distribution[&Split::Train])?, expected["label"]);
    Ok(())
}

/// Wine as CSV and as Parquet: the same rows, the same statistics, and those equal pandas'
/// (`scripts/dataset-stats.py examples/datasets/wine.csv --label target --categorical target`).
#[test]
fn wine_as_csv_and_parquet_gives_pandas_statistics() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/datasets");
    let query = "label=target&categorical=target&stratify=true&seed=1";
    let from_csv = build_bytes(&std::fs::read(dir.join("wine.csv"))?, Format::Csv, query)?.report;
    let from_parquet = build_bytes(&std::fs::read(dir.join("wine.parquet"))?, Format::Parquet, query)?.report;
    assert_eq!((from_csv.rows.kept, from_csv.splits, from_csv.columns.len()), (178, from_parquet.splits, 14));
    for (a, b) in from_csv.columns.iter().zip(&from_parquet.columns) {
        assert_eq!((&a.name, a.stats, a.distinct), (&b.name, b.stats, b.distinct));
    }
    let alcohol = from_csv.columns[0].stats.context("stats")?;
    assert!(relative(alcohol.mean, 13.00061797752809) < 1e-12 && relative(alcohol.min, 11.03) == 0.0);
    assert!(relative(alcohol.std.context("std")?, 0.8118265380058575) < 1e-12);
    assert_eq!(from_csv.columns[0].distinct, 126);
    let label = from_csv.label.context("label")?;
    let classes: Vec<u64> = label.distribution[&Split::Train].values().copied().collect();
    // 59, 71 and 48 rows per class; 80% of each, rounded.
    assert_eq!(classes, [47, 57, 38]);
    Ok(())
}

#[test]
fn splits_span_several_row_groups_and_never_share_one() -> Result<()> {
    let built = csv(&numbers_csv(140_000), "features=a&split=0.5,0.5&seed=2")?;
    let layout = StoredLayout::read(&built.output)?;
    let (train, test) = (layout.groups(Split::Train), layout.groups(Split::Test));
    assert_eq!((train.first, train.count, train.rows), (0, 2, 70_000));
    assert_eq!((test.first, test.count, test.rows), (2, 2, 70_000));
    assert_eq!(layout.groups(Split::Validation).count, 0);
    let page = rows_page(&built.output, Split::Test, ROW_GROUP_ROWS as u64 - 2, 4)?;
    assert_eq!(page.rows.len(), 4);
    let all = column(&all_rows(&built.output, Split::Test)?, "a");
    assert_eq!(column(&page.rows, "a"), all[ROW_GROUP_ROWS - 2..ROW_GROUP_ROWS + 2]);
    let mut reader = SplitReader::open(&built.output, Split::Test, 10_000, Some(4), None)?;
    let mut seen = Vec::new();
    while let Some(batch) = reader.next_batch()? {
        seen.extend(batch.tensors[0].tensor.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
    }
    let mut want: Vec<f32> = all.iter().map(|a| *a as f32).collect();
    assert_ne!(seen, want);
    seen.sort_by(f32::total_cmp);
    want.sort_by(f32::total_cmp);
    assert_eq!(seen, want);
    Ok(())
}

#[test]
fn jsonl_lines_with_bad_bytes_or_no_label_are_bad_rows() -> Result<()> {
    let mut text = b"\xef\xbb\xbf{\"a\": 1, \"y\": 2}\n".to_vec();
    text.extend_from_slice(b"{\"a\": 2, \"y\": \"\xff\"}\n");
    text.extend_from_slice(b"{\"a\": 3, \"y\": null}\n");
    text.extend_from_slice(b"{\"a\": 4}\n");
    text.extend_from_slice(b"{\"a\": \"x\", \"y\": 1}\n");
    text.extend_from_slice(b"{\"a\": true, \"y\": 5}");
    let built = build_bytes(&text, Format::Jsonl, "label=y&max_bad_rows=4&split=1,0")?;
    let kinds: Vec<(Option<u64>, BadRowKind)> = built.report.bad_rows.first.iter().map(|b| (b.line, b.kind)).collect();
    assert_eq!(
        kinds,
        [
            (Some(2), BadRowKind::InvalidUtf8),
            (Some(3), BadRowKind::MissingLabel),
            (Some(4), BadRowKind::MissingLabel),
            (Some(5), BadRowKind::UnparsableNumber)
        ]
    );
    let rows = all_rows(&built.output, Split::Train)?;
    assert_eq!((column(&rows, "a"), column(&rows, "y")), (vec![1.0, 1.0], vec![2.0, 5.0]));
    assert_eq!(built.report.columns[0].source_type, "number");
    Ok(())
}
