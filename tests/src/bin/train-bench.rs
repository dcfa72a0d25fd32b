//! The training benchmark's baseline: a plain Rust loop that runs the digits
//! MLP's train-step graph (`examples/training/digits-mlp-train.onnx`) on ONNX
//! Runtime directly through the `ort` crate, over shuffled batches (32 rows
//! unless told) of `examples/datasets/digits.csv`, and prints steps and epochs per
//! second. This is what a training step through Wasm and wasi-nn is
//! measured against (issue 12's acceptance: at least 0.8 of this).
//!
//! Each step does what any caller of the graph must: build the inputs from
//! the parameters, run, and copy the updated parameters out for the next
//! step (the host keeps them between steps the same way). The batches are
//! read before the clock starts, as the job's feed reads ahead of its steps.
//!
//! The arithmetic is the muon job's (`scripts/bench-train-muon.py`), number
//! for number, because the graph's speed depends on the numbers (subnormal
//! floats are slow): the MLP starts from the weights that
//! functions/train-digits' `init` makes for seed 0, and it trains on the
//! very batches the job does, in the same order: the dataset is built by
//! muon's own `datasets::build` with the bench's upload options, and each
//! epoch is read by muon's `SplitReader` with the job's shuffle seed
//! (`jobs::epoch_seed`). Both sides print the last epoch's loss, which
//! agree when they did the same work. After timing, it reports the
//! accuracy on the test split through the evaluation graph, so a run that
//! measures a broken graph shows it.
//!
//! Run it with `scripts/bench-train.sh`, which builds what it needs.
//! `TRAIN_BENCH_EPOCHS` (default 100), `TRAIN_BENCH_BATCH` (rows a step,
//! default 32), `TRAIN_BENCH_HIDDEN` (the hidden layer's width, default
//! 64), `TRAIN_BENCH_THREADS` (intra-op threads, default 1, as
//! muon's benchmarks run ONNX Runtime) and `TRAIN_BENCH_DEVICE` (`cpu` or
//! `gpu`, default `cpu`) set the run;
//! `MUON_ORT_DYLIB` the library (default `target/onnxruntime/`).

use std::time::Instant;

use std::path::Path;

use anyhow::{Context, ensure};
use muon::api::datasets::{DatasetOptions, Split};
use muon::datasets::{Format, SplitReader};
use muon::jobs::epoch_seed;
use muon_tests::{repo_file, target_dir};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor};

const FEATURES: usize = 64;
const CLASSES: usize = 10;
const LEARNING_RATE: f32 = 0.02;
const MOMENTUM: f32 = 0.9;
const PARAMETERS: [&str; 4] = ["w1", "b1", "w2", "b2"];
/// The bench's upload of digits.csv (scripts/bench-train-muon.py): 98% to
/// train on, and one call's worth of validation.
const DIGITS_OPTIONS: &str = "label=target&categorical=target&split=0.98,0.01,0.01&seed=0";

/// A named fp32 tensor held as Rust values between steps.
struct Named {
    name: String,
    shape: Vec<i64>,
    values: Vec<f32>,
}

fn main() -> anyhow::Result<()> {
    let epochs: usize = setting("TRAIN_BENCH_EPOCHS", "100")?.parse().context("TRAIN_BENCH_EPOCHS")?;
    let threads: usize = setting("TRAIN_BENCH_THREADS", "1")?.parse().context("TRAIN_BENCH_THREADS")?;
    let batch_size: usize = setting("TRAIN_BENCH_BATCH", "32")?.parse().context("TRAIN_BENCH_BATCH")?;
    let hidden: usize = setting("TRAIN_BENCH_HIDDEN", "64")?.parse().context("TRAIN_BENCH_HIDDEN")?;
    let gpu = setting("TRAIN_BENCH_DEVICE", "cpu")? == "gpu";
    let library = std::env::var_os("MUON_ORT_DYLIB")
        .map_or_else(|| target_dir().join("onnxruntime/libonnxruntime.so"), std::path::PathBuf::from);
    let environment = ort::init_from(&library)
        .with_context(|| format!("cannot load {}", library.display()))?
        .with_name("train-bench")
        .build()?;
    let session = |file: &str| -> anyhow::Result<Session> {
        // A builder's error holds the builder, which is not Send: keep the text.
        let text = |err: ort::Error<_>| anyhow::anyhow!("ONNX Runtime session for {file}: {err}");
        let builder = Session::builder(&environment)?.with_intra_threads(threads).map_err(text)?;
        let mut builder = builder.with_inter_threads(1).map_err(text)?;
        if gpu {
            let cuda = ort::ep::CUDA::default().build().error_on_failure();
            builder = builder.with_execution_providers([cuda]).map_err(text)?;
        }
        Ok(builder.commit_from_memory(&repo_file(file)?)?)
    };
    let mut train = session("examples/training/digits-mlp-train.onnx")?;
    let mut evaluate = session("examples/training/digits-mlp-eval.onnx")?;

    let dataset = tempfile::tempdir()?;
    let stored = dataset.path().join("digits.parquet");
    let options = DatasetOptions::parse(DIGITS_OPTIONS).map_err(|err| anyhow::anyhow!(err.0))?;
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/datasets/digits.csv");
    muon::datasets::build(&csv, Format::Csv, &options, None, &stored)?;
    // Read before timing, as the job's feed reads ahead of its steps.
    let epochs_batches = (1..=epochs as i64)
        .map(|epoch| read_split(&stored, Split::Train, batch_size, Some(epoch_seed(0, 0, epoch))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let train_rows: usize = epochs_batches.first().map_or(0, |batches| batches.iter().map(|b| b.rows).sum());
    // The job's only trial initialises from the spec's seed, 0.
    let mut state = initial_state(&mut SplitMix(0), hidden);

    let mut steps = 0usize;
    let mut last_epoch_loss = f64::NAN;
    let started = Instant::now();
    for batches in &epochs_batches {
        let mut loss_sum = 0.0;
        for batch in batches {
            let mut inputs: Vec<(String, SessionInputValue<'_>)> =
                vec![("x".to_owned(), (&batch.x).into()), ("y".to_owned(), (&batch.y).into())];
            for tensor in &state {
                inputs.push((tensor.name.clone(), tensor_value(&tensor.shape, tensor.values.clone())?.into()));
            }
            inputs.push(("learning_rate".to_owned(), tensor_value(&[1], vec![LEARNING_RATE])?.into()));
            inputs.push(("momentum".to_owned(), tensor_value(&[1], vec![MOMENTUM])?.into()));
            let outputs = train.run(inputs)?;
            for tensor in &mut state {
                let (_, values) = outputs[format!("{}.next", tensor.name).as_str()].try_extract_tensor::<f32>()?;
                tensor.values = values.to_vec();
            }
            loss_sum += f64::from(outputs["loss"].try_extract_tensor::<f32>()?.1[0]) * batch.rows as f64;
            steps += 1;
        }
        last_epoch_loss = loss_sum / train_rows as f64;
    }
    let elapsed = started.elapsed().as_secs_f64();

    let test = read_split(&stored, Split::Test, usize::MAX >> 1, None)?;
    let test = test.first().context("the test split is empty")?;
    let mut inputs: Vec<(String, SessionInputValue<'_>)> =
        vec![("x".to_owned(), (&test.x).into()), ("y".to_owned(), (&test.y).into())];
    for tensor in state.iter().filter(|t| PARAMETERS.contains(&t.name.as_str())) {
        inputs.push((tensor.name.clone(), tensor_value(&tensor.shape, tensor.values.clone())?.into()));
    }
    let outputs = evaluate.run(inputs)?;
    let accuracy = outputs["accuracy"].try_extract_tensor::<f32>()?.1[0];
    ensure!(accuracy > 0.9, "the trained MLP reached only {accuracy} test accuracy: the graph or the loop is broken");

    println!(
        "ONNX Runtime directly (ort crate, {} with {threads} intra-op thread(s)): digits MLP 64-{hidden}-10, batch {batch_size}, \
         {train_rows} training rows, {epochs} epochs, {steps} steps in {elapsed:.3} s",
        if gpu { "CUDA" } else { "CPU" },
    );
    println!(
        "  {:.0} steps/s, {:.2} epochs/s, {:.1} us/step; last epoch's loss {last_epoch_loss:.6}, test accuracy {accuracy:.4} ({} rows)",
        steps as f64 / elapsed,
        epochs as f64 / elapsed,
        elapsed * 1e6 / steps as f64,
        test.rows
    );
    Ok(())
}

fn setting(name: &str, default: &str) -> anyhow::Result<String> {
    match std::env::var(name) {
        Ok(value) => Ok(value),
        Err(std::env::VarError::NotPresent) => Ok(default.to_owned()),
        Err(err) => Err(err).context(name.to_owned()),
    }
}

fn tensor_value<T>(shape: &[i64], values: Vec<T>) -> anyhow::Result<DynValue>
where
    T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static,
{
    Ok(Tensor::from_array((shape.to_vec(), values))?.into_dyn())
}

/// One batch of the dataset, as ONNX Runtime values.
struct Batch {
    x: DynValue,
    y: DynValue,
    rows: usize,
}

/// The batches of `split` of the stored dataset at `path`, shuffled with
/// `seed`: what muon's reader gives a job.
fn read_split(path: &Path, split: Split, batch_size: usize, seed: Option<u64>) -> anyhow::Result<Vec<Batch>> {
    let mut reader = SplitReader::open(path, split, batch_size, seed, None)?;
    let mut batches = Vec::new();
    while let Some(batch) = reader.next_batch()? {
        let tensor = |name: &str| {
            batch.tensors.iter().find(|t| t.name == name).map(|t| &t.tensor).with_context(|| format!("no `{name}`"))
        };
        let (x, y) = (tensor("x")?, tensor("y")?);
        let shape = |t: &muon::engine::Tensor| t.dimensions.iter().map(|&d| i64::from(d)).collect::<Vec<_>>();
        let xs: Vec<f32> = x.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let ys: Vec<i64> = y
            .data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect();
        ensure!(y.ty == muon::engine::TensorType::I64, "the digits' labels should be class indices");
        batches.push(Batch { x: tensor_value(&shape(x), xs)?, y: tensor_value(&shape(y), ys)?, rows: batch.rows });
    }
    Ok(batches)
}

/// He-initialised weights, zero biases, zero velocities: what
/// functions/train-digits' `init` makes, number for number, from the same
/// seed (the same generator, draws in the same order).
fn initial_state(rng: &mut SplitMix, hidden: usize) -> Vec<Named> {
    let shapes: [(&str, Vec<i64>, usize); 4] = [
        ("w1", vec![FEATURES as i64, hidden as i64], FEATURES),
        ("b1", vec![hidden as i64], 0),
        ("w2", vec![hidden as i64, CLASSES as i64], hidden),
        ("b2", vec![CLASSES as i64], 0),
    ];
    let mut state = Vec::new();
    for (name, shape, fan_in) in &shapes {
        let count = shape.iter().product::<i64>() as usize;
        let values = if *fan_in == 0 {
            vec![0.0; count]
        } else {
            let std = (2.0 / *fan_in as f64).sqrt();
            (0..count).map(|_| (rng.normal() * std) as f32).collect()
        };
        state.push(Named { name: (*name).to_owned(), shape: shape.clone(), values });
    }
    for (name, shape, _) in shapes {
        let count = shape.iter().product::<i64>() as usize;
        state.push(Named { name: format!("optimizer.{name}"), shape, values: vec![0.0; count] });
    }
    state
}

/// The seeded generator train-digits initialises with.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
}
