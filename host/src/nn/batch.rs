//! Dynamic batching: concurrent computes on one model version, from any
//! number of instances, merged into one compute.
//!
//! A model uploaded with `batch_max` rows gets a [`Batcher`] per version: a
//! tokio task with a bounded queue. The first request to arrive opens a
//! window of `batch_wait_us`; requests whose inputs agree with it on every
//! dimension but the first join it until the window closes, the batch
//! holds `batch_max` rows, or every guest holding the model has joined (so
//! a lone request never waits out the window). Their rows are concatenated along dimension 0,
//! computed once on the inference threads, and the outputs split back by
//! rows. Each request was checked against the signature and its own memory
//! limit before it joined, so validation errors stay its own.
//!
//! A request whose deadline passes while it waits drops its answer channel
//! and is left out; one that leaves while the batch computes has its rows
//! computed anyway (the others need the compute) and its answer dropped.
//! Only when every member has left is the compute cancelled. Each member is
//! billed its share of the batch's compute time by rows, on the batch's
//! device; the shares add up to the batch's time to the microsecond.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::backend::{Device, LoadedModel, RunBudget, check_output_bytes};
use super::error::{ErrorCode, NnError};
use super::signature::{Dim, Signature, TensorSpec};
use super::tensor::HostTensor;
use super::{Caller, ComputeMeter, Inference};

/// The widest batch a model may ask for, in rows.
pub const MAX_BATCH_ROWS: u32 = 65_536;
/// The longest batching window a model may ask for, in microseconds.
pub const MAX_BATCH_WAIT_US: u64 = 1_000_000;
/// The window of a model given `batch_max` without `batch_wait_us`.
pub const DEFAULT_BATCH_WAIT_US: u64 = 1_000;
/// Requests waiting for a batcher, at most; a full queue makes callers wait
/// (under their deadlines), which the host's instance limits bound anyway.
const QUEUE: usize = 1024;

/// A model's batching settings, as uploaded or set later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Batching {
    /// Most rows in one batch; 0 or 1 turns batching off.
    pub max_rows: u32,
    /// How long the first request of a batch waits for others, in microseconds.
    pub wait_us: u64,
}

impl Batching {
    /// Checks the settings against [`MAX_BATCH_ROWS`] and [`MAX_BATCH_WAIT_US`].
    pub fn checked(max_rows: u32, wait_us: u64) -> Result<Self, String> {
        if max_rows > MAX_BATCH_ROWS {
            return Err(format!("batch_max is at most {MAX_BATCH_ROWS} rows, got {max_rows}"));
        }
        if wait_us > MAX_BATCH_WAIT_US {
            return Err(format!("batch_wait_us is at most {MAX_BATCH_WAIT_US}, got {wait_us}"));
        }
        Ok(Self { max_rows, wait_us })
    }

    /// Whether computes are merged at all.
    pub fn is_on(self) -> bool {
        self.max_rows > 1
    }
}

/// Whether a model can be batched: every input and output has a first
/// dimension, symbolic and under the same name (`N`), so that its rows are
/// the same rows everywhere. A fixed first dimension, or none, is never batched.
pub fn batchable(signature: &Signature) -> bool {
    let first = |spec: &TensorSpec| match spec.shape.first() {
        Some(Dim::Symbol(name)) => Some(name.clone()),
        _ => None,
    };
    let Some(symbol) = signature.inputs.first().and_then(first) else { return false };
    signature.inputs.iter().chain(&signature.outputs).all(|spec| first(spec).as_ref() == Some(&symbol))
}

/// What a batcher did since its model version was first served on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Batches computed.
    pub batches: u64,
    /// Requests in them.
    pub requests: u64,
    /// Rows in them.
    pub rows: u64,
    /// The most rows one batch held.
    pub widest: u64,
    /// Their compute time, every device, in microseconds.
    pub compute_us: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    requests: AtomicU64,
    rows: AtomicU64,
    widest: AtomicU64,
    compute_us: AtomicU64,
    /// Graphs of this version that guests hold now ([`Hold`]): who could join a batch.
    holders: AtomicUsize,
    /// Computes sent to the batcher and not answered yet.
    queued: AtomicUsize,
}

impl Counters {
    /// Whether every guest holding the model is already waiting on it: no
    /// one else can join until a guest loads it anew, so a window need not
    /// wait. A lone caller is then never held up by the window.
    fn everyone_joined(&self) -> bool {
        self.holders.load(Ordering::Relaxed) <= self.queued.load(Ordering::Relaxed)
    }
}

/// A guest's hold on a batched model, from `load-by-name` until it drops
/// its graph: counted so that a window closes once every holder has joined.
pub struct Hold(Arc<Batcher>);

impl Hold {
    /// The batcher held.
    pub(super) fn batcher(&self) -> &Batcher {
        &self.0
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.counters.holders.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A compute counted as queued until it is answered or its caller leaves.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request waiting in a batch.
struct Member {
    inputs: Vec<HostTensor>,
    rows: u32,
    model: Arc<dyn LoadedModel>,
    tenant: Arc<str>,
    memory_limit: u64,
    meter: Arc<ComputeMeter>,
    reply: oneshot::Sender<Result<Vec<HostTensor>, NnError>>,
}

impl Member {
    fn gone(&self) -> bool {
        self.reply.is_closed()
    }

    /// Whether `other` can share a compute with this one: every input agrees
    /// on every dimension but the first.
    fn agrees(&self, other: &Member) -> bool {
        self.inputs.len() == other.inputs.len()
            && self.inputs.iter().zip(&other.inputs).all(|(a, b)| a.dimensions.get(1..) == b.dimensions.get(1..))
    }
}

/// The batcher of one model version: its queue, and what it did.
pub struct Batcher {
    queue: mpsc::Sender<Member>,
    max_rows: u32,
    counters: Arc<Counters>,
}

impl Batcher {
    /// Starts the batching task of a model version with `settings` (which are on).
    pub(super) fn start(inference: Arc<Inference>, settings: Batching) -> Self {
        let (queue, arrivals) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        tokio::spawn(serve(arrivals, inference, settings, Arc::clone(&counters)));
        Self { queue, max_rows: settings.max_rows, counters }
    }

    /// A guest's hold on this batcher, for as long as it keeps the graph.
    pub(super) fn hold(self: &Arc<Self>) -> Hold {
        self.counters.holders.fetch_add(1, Ordering::Relaxed);
        Hold(Arc::clone(self))
    }

    /// The rows of checked `inputs` if they may join a batch: every input's
    /// first dimension is the same, and no wider than a batch. A request
    /// wider than a batch is computed alone.
    pub(super) fn rows_of(&self, inputs: &[HostTensor]) -> Option<u32> {
        let rows = *inputs.first()?.dimensions.first()?;
        let same = inputs.iter().all(|tensor| tensor.dimensions.first() == Some(&rows));
        (same && (1..=self.max_rows).contains(&rows)).then_some(rows)
    }

    /// Computes checked `inputs` of `rows` rows in a batch, adding this
    /// request's share of the batch's compute time to `meter`.
    pub(super) async fn compute(
        &self,
        model: Arc<dyn LoadedModel>,
        inputs: Vec<HostTensor>,
        rows: u32,
        caller: &Caller,
        meter: Arc<ComputeMeter>,
    ) -> Result<Vec<HostTensor>, NnError> {
        let (reply, answer) = oneshot::channel();
        let member = Member {
            inputs,
            rows,
            model,
            tenant: Arc::clone(&caller.tenant),
            memory_limit: caller.memory_limit,
            meter,
            reply,
        };
        let stopped = || NnError::new(ErrorCode::RuntimeError, "the model's batcher stopped without an answer");
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        let _queued = Queued(&self.counters.queued);
        self.queue.send(member).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// What this batcher did so far.
    pub fn counts(&self) -> BatchCounts {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let c = &self.counters;
        BatchCounts {
            batches: read(&c.batches),
            requests: read(&c.requests),
            rows: read(&c.rows),
            widest: read(&c.widest),
            compute_us: read(&c.compute_us),
        }
    }
}

/// The batching task: gathers a batch whenever an inference thread is free
/// for it, and computes it on its own task, until the batcher is dropped.
async fn serve(
    mut arrivals: mpsc::Receiver<Member>,
    inference: Arc<Inference>,
    settings: Batching,
    counters: Arc<Counters>,
) {
    // As many batches in flight as there are inference threads: while they
    // are all busy, arrivals queue up and the next batch is the fuller.
    let slots = Arc::new(Semaphore::new(inference.pool.threads()));
    let mut held = VecDeque::new();
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let Some(batch) = gather(&mut arrivals, &mut held, settings, &counters).await else { return };
        tokio::spawn(compute_batch(Arc::clone(&inference), batch, Arc::clone(&counters), slot));
    }
}

/// The next batch: the first request still waiting opens a window of
/// `wait_us`, and agreeing requests join until it closes, the batch is
/// full, or every guest holding the model has joined. Requests that cannot
/// join are held for the next batch, first. `None` once the batcher is
/// dropped and nothing is left.
async fn gather(
    arrivals: &mut mpsc::Receiver<Member>,
    held: &mut VecDeque<Member>,
    settings: Batching,
    counters: &Counters,
) -> Option<Vec<Member>> {
    let first = loop {
        let next = match held.pop_front() {
            Some(member) => member,
            None => arrivals.recv().await?,
        };
        if !next.gone() {
            break next;
        }
    };
    let closes = tokio::time::Instant::now() + Duration::from_micros(settings.wait_us);
    let mut batch = Gathering { rows: first.rows, max_rows: settings.max_rows, members: vec![first] };
    for member in std::mem::take(held) {
        batch.offer(member, held);
    }
    while batch.rows < batch.max_rows {
        // Those already sent are taken whatever the holders say.
        let ready = match arrivals.try_recv() {
            Ok(member) => Some(member),
            Err(_) if counters.everyone_joined() => break,
            Err(_) => None,
        };
        if let Some(member) = ready {
            batch.offer(member, held);
            continue;
        }
        match tokio::time::timeout_at(closes, arrivals.recv()).await {
            Ok(Some(member)) => batch.offer(member, held),
            Ok(None) | Err(_) => break,
        }
    }
    Some(batch.members)
}

/// A batch being gathered.
struct Gathering {
    members: Vec<Member>,
    rows: u32,
    max_rows: u32,
}

impl Gathering {
    /// Takes `member` if it agrees with the batch and fits, else holds it
    /// for the next batch; forgets it if it has left.
    fn offer(&mut self, member: Member, held: &mut VecDeque<Member>) {
        if member.gone() {
            return;
        }
        let agrees = self.members.first().is_none_or(|first| first.agrees(&member));
        if agrees && self.rows + member.rows <= self.max_rows {
            self.rows += member.rows;
            self.members.push(member);
        } else {
            held.push_back(member);
        }
    }
}

/// Computes one batch and answers its members. Holds an inference `_slot`
/// of the batcher until done.
async fn compute_batch(
    inference: Arc<Inference>,
    mut members: Vec<Member>,
    counters: Arc<Counters>,
    _slot: OwnedSemaphorePermit,
) {
    members.retain(|member| !member.gone());
    let Some(first) = members.first() else { return };
    let (model, tenant) = (Arc::clone(&first.model), Arc::clone(&first.tenant));
    let rows: Vec<u32> = members.iter().map(|member| member.rows).collect();
    let inputs = concatenate(&mut members);
    // The batch's outputs are its members' together: each must fit its own limit.
    let limit = members.iter().map(|member| member.memory_limit).fold(0, u64::saturating_add);
    let shares: Vec<(Arc<ComputeMeter>, u32)> =
        members.iter().map(|member| (Arc::clone(&member.meter), member.rows)).collect();
    let mut replies: Vec<_> = members.into_iter().map(|member| (member.reply, member.memory_limit)).collect();
    counters.batches.fetch_add(1, Ordering::Relaxed);
    counters.requests.fetch_add(replies.len() as u64, Ordering::Relaxed);
    let total: u64 = rows.iter().map(|&r| u64::from(r)).sum();
    counters.rows.fetch_add(total, Ordering::Relaxed);
    counters.widest.fetch_max(total, Ordering::Relaxed);
    metrics::histogram!("muon_nn_batch_rows").record(total as f64);
    let billed = Arc::clone(&counters);
    let work = inference.run_timed(&tenant, model, inputs, RunBudget::outputs(limit), move |device, elapsed| {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        billed.compute_us.fetch_add(micros, Ordering::Relaxed);
        bill(&shares, device, micros);
    });
    let outcome = tokio::select! {
        outcome = work => outcome,
        // Everyone left: dropping `work` cancels the compute.
        _ = join_all(replies.iter_mut().map(|(reply, _)| reply.closed())) => return,
    };
    match outcome.and_then(|outputs| split(outputs, &rows)) {
        Ok(parts) => {
            for ((reply, limit), part) in replies.into_iter().zip(parts) {
                let bytes = part.iter().map(|tensor| tensor.data.len() as u128).sum();
                let _ = reply.send(check_output_bytes(bytes, limit).map(|()| part));
            }
        }
        Err(err) => {
            for (reply, _) in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

/// Each member's inputs, concatenated along dimension 0 in member order.
fn concatenate(members: &mut [Member]) -> Vec<HostTensor> {
    let Some(first) = members.first() else { return Vec::new() };
    let mut batch: Vec<HostTensor> = first
        .inputs
        .iter()
        .map(|tensor| HostTensor { dimensions: tensor.dimensions.clone(), ty: tensor.ty, data: Vec::new() })
        .collect();
    let rows: u32 = members.iter().map(|member| member.rows).sum();
    for (index, tensor) in batch.iter_mut().enumerate() {
        if let Some(dim) = tensor.dimensions.first_mut() {
            *dim = rows;
        }
        let bytes = members.iter().filter_map(|member| member.inputs.get(index)).map(|t| t.data.len()).sum();
        tensor.data.reserve_exact(bytes);
        for member in members.iter_mut() {
            if let Some(input) = member.inputs.get_mut(index) {
                tensor.data.append(&mut input.data);
            }
        }
    }
    batch
}

/// The batch's outputs split back by rows, in member order: each output's
/// first dimension must be the batch's rows.
fn split(outputs: Vec<HostTensor>, rows: &[u32]) -> Result<Vec<Vec<HostTensor>>, NnError> {
    let total: u32 = rows.iter().sum();
    let mut parts: Vec<Vec<HostTensor>> = rows.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    for output in outputs {
        if output.dimensions.first() != Some(&total) {
            return Err(NnError::new(
                ErrorCode::RuntimeError,
                format!(
                    "the model's output has dimensions {:?} for a batch of {total} rows, so it cannot be split \
                     by rows; set the model's batch_max to 0",
                    output.dimensions
                ),
            ));
        }
        let row_bytes = output.data.len() / total as usize;
        let mut data = output.data.as_slice();
        for (part, &count) in parts.iter_mut().zip(rows) {
            let (own, rest) = data.split_at(row_bytes * count as usize);
            data = rest;
            let mut dimensions = output.dimensions.clone();
            if let Some(first) = dimensions.first_mut() {
                *first = count;
            }
            part.push(HostTensor { dimensions, ty: output.ty, data: own.to_vec() });
        }
    }
    Ok(parts)
}

/// Bills each member its share of `micros` of compute on `device`, by
/// rows; the first members get the microseconds that rounding leaves, so
/// the shares add up to `micros` exactly.
fn bill(shares: &[(Arc<ComputeMeter>, u32)], device: Device, micros: u64) {
    let total: u128 = shares.iter().map(|(_, rows)| u128::from(*rows)).sum();
    if total == 0 {
        return;
    }
    let owed: Vec<u64> = shares
        .iter()
        .map(|(_, rows)| u64::try_from(u128::from(micros) * u128::from(*rows) / total).unwrap_or(u64::MAX))
        .collect();
    let mut left = micros - owed.iter().sum::<u64>();
    for ((meter, _), share) in shares.iter().zip(owed) {
        let extra = u64::from(left > 0);
        left -= extra;
        meter.add_us(device, share + extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::tensor::ElementType;

    fn spec(name: &str, first: Dim) -> TensorSpec {
        TensorSpec { name: name.to_owned(), ty: ElementType::Fp32, shape: vec![first, Dim::Fixed(4)] }
    }

    #[test]
    fn only_a_shared_symbolic_first_dimension_is_batchable() {
        let n = || Dim::Symbol("N".to_owned());
        let signature =
            |input: Dim, output: Dim| Signature { inputs: vec![spec("x", input)], outputs: vec![spec("y", output)] };
        assert!(batchable(&signature(n(), n())));
        assert!(!batchable(&signature(Dim::Fixed(1), Dim::Fixed(1))), "a fixed first dimension");
        assert!(!batchable(&signature(n(), Dim::Symbol("M".to_owned()))), "outputs of other rows");
        let scalar = Signature {
            inputs: vec![TensorSpec { shape: Vec::new(), ..spec("x", n()) }],
            outputs: vec![spec("y", n())],
        };
        assert!(!batchable(&scalar), "no dimension at all");
    }

    #[test]
    fn outputs_split_back_by_rows() -> Result<(), NnError> {
        let data: Vec<u8> = (0..6u8).collect();
        let output = HostTensor { dimensions: vec![3, 2], ty: ElementType::U8, data };
        let parts = split(vec![output.clone()], &[1, 2])?;
        assert_eq!(parts[0][0].dimensions, vec![1, 2]);
        assert_eq!(parts[0][0].data, vec![0, 1]);
        assert_eq!(parts[1][0].dimensions, vec![2, 2]);
        assert_eq!(parts[1][0].data, vec![2, 3, 4, 5]);
        assert!(split(vec![output], &[1, 1]).is_err(), "an output of other rows cannot be split");
        Ok(())
    }

    #[test]
    fn shares_follow_rows_and_add_up_exactly() {
        let meters: Vec<_> = [1u32, 2, 4].iter().map(|&rows| (Arc::new(ComputeMeter::default()), rows)).collect();
        bill(&meters, Device::Cpu, 1000);
        let cpu: Vec<u64> = meters.iter().map(|(meter, _)| meter.totals().0).collect();
        assert_eq!(cpu.iter().sum::<u64>(), 1000);
        assert_eq!(cpu, vec![143, 286, 571]);
        assert!(meters.iter().all(|(meter, _)| meter.totals().1 == 0), "billed on the batch's device only");
    }
}
