//! The journal (`ledger_sync = "interval"`): where a usage record goes before
//! its response leaves, in place of a database transaction.
//!
//! `DATA_DIR/ledger/` holds:
//! - `journal`: the live file: a [`HEADER`], then one frame per record (the
//!   record in postcard, COBS-encoded so that a zero byte ends it), each
//!   appended with one `write(2)` under a lock on the request's own thread
//!   (well under a microsecond). Once written it is in the kernel's page
//!   cache, so a crash or `kill -9` of muon loses nothing;
//! - `segment-N`: a former `journal`, renamed when the mover took its records
//!   (see [`super::mover`]), synced to disk, and deleted once those records
//!   are in the database;
//! - `lock`: locked by the muon using the directory, so that two processes
//!   never share (or replay) one journal.
//!
//! The records are not kept in memory: the mover reads each segment back
//! (from the page cache, where it still is) on its own thread ([`load`]), so
//! a request's record is built, appended and dropped on the request's thread
//! and nothing of it crosses threads; a start reads the files the same way
//! ([`replay`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Notify, watch};

use super::LedgerError;
use crate::db::UsageRecord;

/// The live file's name.
const LIVE: &str = "journal";
/// How every journal file starts: postcard records follow. A file without it
/// holds JSON lines, as muon wrote before (read on a start after an upgrade).
const HEADER: &[u8] = b"muon ledger journal: postcard 1\0";
/// Room on the stack for one frame; a larger record (never seen: names are
/// short) is encoded on the heap.
const FRAME: usize = 512;
/// Segments are named `segment-` and a sequence number.
const SEGMENT: &str = "segment-";

/// Records not yet in the database that the mover moves at once, rather than
/// waiting out [`super::mover::MOVE_EVERY`]: big enough that a transaction's
/// own cost is small beside its records', small enough to read back in a few
/// megabytes.
pub(super) const MOVE_BATCH: usize = 16_384;

/// Records appended and not yet in the database past which new records are
/// refused: about 10 MB of journal, and at the fastest measured rate (50k
/// requests/s) a couple of seconds' worth, so the age bound
/// ([`super::mover::OUTAGE_GRACE`]) is what usually trips first.
pub(super) const MAX_BACKLOG: usize = 131_072;

/// The live journal and the records in it not yet in the database.
pub(super) struct Journal {
    dir: PathBuf,
    state: Mutex<State>,
    /// Wakes the mover to move at once: a full batch, or a flush.
    pub(super) wake: Arc<Notify>,
    /// What the mover has done, for flushes to wait on.
    pub(super) progress: watch::Sender<Progress>,
    /// How old the oldest record not in the database may grow before new
    /// records are refused.
    max_age: Duration,
}

struct State {
    /// The live file, opened for appending.
    file: File,
    /// A failed append may have left part of a frame: the next one starts
    /// with a zero byte, so that the damage stays in a frame of its own.
    resync: bool,
    /// Records appended since the mover last took a batch.
    batch: usize,
    /// When the first of `batch` was appended.
    batch_since: Option<Instant>,
    /// Taken by the mover and not yet written to the database.
    held: usize,
    /// When the oldest of `held` was appended.
    held_since: Option<Instant>,
    /// Records appended since the start: a record's sequence number.
    appended: u64,
    /// The next segment's number.
    next_segment: u64,
}

/// How far the mover got, in the journal's sequence numbers.
#[derive(Debug, Clone, Default)]
pub(super) struct Progress {
    /// Every record up to this one is in the database.
    pub(super) moved: u64,
    /// The last attempt wrote, or tried to write, up to this one.
    pub(super) tried: u64,
    /// Why the last attempt failed, if it did.
    pub(super) error: Option<Arc<str>>,
}

/// The file holding the records the mover took from the journal.
pub(super) struct Taken {
    /// The segment the live file became.
    pub(super) segment: PathBuf,
    /// The segment, still open: synced before the records are written anywhere else.
    pub(super) file: File,
    /// The sequence number of the last record taken.
    pub(super) upto: u64,
}

impl Journal {
    /// Starts a fresh live file in `dir`, which [`replay`] emptied.
    pub(super) fn create(dir: &Path, max_age: Duration) -> anyhow::Result<Self> {
        let file = open_live(dir)?;
        sync_dir(dir)?;
        let state = State {
            file,
            resync: false,
            batch: 0,
            batch_since: None,
            held: 0,
            held_since: None,
            appended: 0,
            next_segment: 0,
        };
        Ok(Self {
            dir: dir.to_owned(),
            state: Mutex::new(state),
            wake: Arc::new(Notify::new()),
            progress: watch::Sender::new(Progress::default()),
            max_age,
        })
    }

    /// Appends `record` with one write, unless too much waits for the
    /// database already (it is unreachable, or too slow): then it refuses,
    /// and the work must not be delivered.
    pub(super) fn append(&self, record: &UsageRecord) -> Result<(), LedgerError> {
        let (mut stack, mut heap) = ([0; FRAME], None);
        let frame = match encode(record, &mut stack) {
            Ok(frame) => frame,
            Err(postcard::Error::SerializeBufferFull) => {
                let heap = heap.insert(postcard::to_stdvec_cobs(record).map_err(|err| unencodable(&err))?);
                heap.insert(0, 0);
                &heap[..]
            }
            Err(err) => return Err(unencodable(&err)),
        };
        let mut state = self.lock()?;
        let now = Instant::now();
        state.admit(now, self.max_age)?;
        let bytes = if state.resync { frame } else { &frame[1..] };
        if let Err(err) = state.file.write_all(bytes) {
            state.resync = true;
            tracing::error!(error = %err, "cannot append to the ledger journal");
            return Err(LedgerError::Unavailable(format!("cannot append to the ledger journal: {err}")));
        }
        state.resync = false;
        if state.batch == 0 {
            state.batch_since = Some(now);
        }
        state.batch += 1;
        state.appended += 1;
        if state.batch + state.held == MOVE_BATCH {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The sequence number of the last record appended.
    pub(super) fn appended(&self) -> Result<u64, LedgerError> {
        Ok(self.lock()?.appended)
    }

    /// Records appended and not yet in the database.
    pub(super) fn backlog(&self) -> usize {
        self.state.lock().map(|state| state.batch + state.held).unwrap_or(0)
    }

    /// When the oldest record not yet in the database was appended.
    pub(super) fn oldest_waiting(&self) -> Option<Instant> {
        self.state.lock().ok().and_then(|state| state.held_since.or(state.batch_since))
    }

    /// Takes the records appended since the last take, and turns the live
    /// file holding them into a segment (a fresh live file takes its place).
    /// `None`: nothing was appended.
    pub(super) fn take(&self) -> anyhow::Result<Option<Taken>> {
        let mut state = self.lock()?;
        if state.batch == 0 {
            return Ok(None);
        }
        let live = self.dir.join(LIVE);
        let segment = self.dir.join(format!("{SEGMENT}{:010}", state.next_segment));
        std::fs::rename(&live, &segment).with_context(|| format!("cannot rename {}", live.display()))?;
        let fresh = match open_live(&self.dir) {
            Ok(file) => file,
            Err(err) => {
                // Appends go on into the old file, so it must stay the live one.
                drop(std::fs::rename(&segment, &live));
                return Err(err);
            }
        };
        state.next_segment += 1;
        state.resync = false;
        let file = std::mem::replace(&mut state.file, fresh);
        state.held += std::mem::take(&mut state.batch);
        state.held_since = state.held_since.or(state.batch_since.take());
        Ok(Some(Taken { segment, file, upto: state.appended }))
    }

    /// Everything taken so far is in the database.
    pub(super) fn moved(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.held = 0;
            state.held_since = None;
        }
    }

    /// The journal's directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, LedgerError> {
        self.state.lock().map_err(|_| LedgerError::Unavailable("the ledger journal is poisoned".to_owned()))
    }
}

/// Encodes `record` into `stack`: a zero byte (which ends a frame a failed
/// append cut short, when needed), then the record's frame.
fn encode<'a>(record: &UsageRecord, stack: &'a mut [u8; FRAME]) -> postcard::Result<&'a [u8]> {
    stack[0] = 0;
    let length = postcard::to_slice_cobs(record, &mut stack[1..])?.len();
    Ok(&stack[..=length])
}

fn unencodable(err: &postcard::Error) -> LedgerError {
    LedgerError::Unavailable(format!("cannot encode the usage record: {err}"))
}

/// Creates a live file in `dir` and writes its header.
fn open_live(dir: &Path) -> anyhow::Result<File> {
    let live = dir.join(LIVE);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&live)
        .with_context(|| format!("cannot create the ledger journal {}", live.display()))?;
    file.write_all(HEADER).with_context(|| format!("cannot write to {}", live.display()))?;
    Ok(file)
}

impl State {
    fn admit(&self, now: Instant, max_age: Duration) -> Result<(), LedgerError> {
        let backlog = self.batch + self.held;
        if backlog >= MAX_BACKLOG {
            return Err(LedgerError::Unavailable(format!(
                "{backlog} usage records are waiting for the database; retry once it takes them"
            )));
        }
        if let Some(oldest) = self.held_since.or(self.batch_since)
            && now.duration_since(oldest) > max_age
        {
            return Err(LedgerError::Unavailable(format!(
                "the database has taken no usage records for {:.1} s; retry once it is reachable",
                now.duration_since(oldest).as_secs_f64()
            )));
        }
        Ok(())
    }
}

/// Locks the journal directory for this process, creating it if needed. The
/// lock lasts as long as the returned file is open.
pub(super) fn lock_dir(dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another muon process uses the ledger journal in {}: give each process a data dir of its own",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(err)) => Err(err).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// What a start finds in the journal directory: the records of every
/// segment and of the live file a previous run left, and those files.
pub(super) struct Leftovers {
    pub(super) records: Vec<UsageRecord>,
    pub(super) files: Vec<PathBuf>,
}

/// Reads what a previous run left in `dir`. A record cut short (a power loss
/// during an append) is skipped with a warning; every complete one is read.
pub(super) fn replay(dir: &Path) -> anyhow::Result<Leftovers> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let order = match name.strip_prefix(SEGMENT).map(str::parse::<u64>) {
            Some(Ok(number)) => number,
            _ if name == LIVE => u64::MAX,
            _ => continue,
        };
        files.push((order, entry.path()));
    }
    files.sort();
    let files: Vec<PathBuf> = files.into_iter().map(|(_, path)| path).collect();
    Ok(Leftovers { records: load(&files)?, files })
}

/// The records of journal files, in order.
pub(super) fn load(files: &[PathBuf]) -> anyhow::Result<Vec<UsageRecord>> {
    let mut records = Vec::new();
    for path in files {
        let mut bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        records.extend(parse(path, &mut bytes));
    }
    Ok(records)
}

fn parse(path: &Path, bytes: &mut [u8]) -> Vec<UsageRecord> {
    if bytes.starts_with(HEADER) {
        let frames = &mut bytes[HEADER.len()..];
        return split(path, frames, 0, |frame| postcard::from_bytes_cobs(frame).map_err(|err| err.to_string()));
    }
    if HEADER.starts_with(bytes) {
        // Created, and its header cut short: no record was appended.
        return Vec::new();
    }
    split(path, bytes, b'\n', |line| serde_json::from_slice(line).map_err(|err| err.to_string()))
}

/// The records of `bytes`, each ended by `end`; what follows the last `end`
/// is a record whose append was cut short, and is skipped with a warning, as
/// is a record that `decode` cannot read.
fn split(
    path: &Path,
    bytes: &mut [u8],
    end: u8,
    decode: impl Fn(&mut [u8]) -> Result<UsageRecord, String>,
) -> Vec<UsageRecord> {
    let mut pieces: Vec<&mut [u8]> = bytes.split_mut(|&b| b == end).collect();
    // What follows the last end: empty, or a record whose append was cut short.
    if let Some(torn) = pieces.pop().filter(|rest| !rest.is_empty()) {
        tracing::warn!(
            file = %path.display(),
            bytes = torn.len(),
            text = %String::from_utf8_lossy(&torn[..torn.len().min(200)]),
            "skipping a usage record cut short in the ledger journal (muon stopped during its append)"
        );
    }
    let mut records = Vec::with_capacity(pieces.len());
    for (number, piece) in pieces.into_iter().enumerate().filter(|(_, piece)| !piece.is_empty()) {
        let bytes = piece.len();
        match decode(piece) {
            Ok(record) => records.push(record),
            Err(error) => tracing::warn!(
                file = %path.display(),
                record = number + 1,
                bytes,
                %error,
                "skipping an unreadable record of the ledger journal"
            ),
        }
    }
    records
}

/// Syncs `dir`, so that the files created, renamed or removed in it stay so
/// after a power loss.
pub(super) fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)?.sync_all().with_context(|| format!("cannot sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::sqlite::tests::record;

    fn temp_dir(name: &str) -> anyhow::Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!("muon-journal-{name}-{}", std::process::id()));
        drop(std::fs::remove_dir_all(&dir));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    #[test]
    fn a_torn_last_record_is_skipped_and_every_complete_one_read() -> anyhow::Result<()> {
        let dir = temp_dir("torn")?;
        let journal = Journal::create(&dir, Duration::from_secs(60))?;
        for id in 0..3 {
            journal.append(&record(id))?;
        }
        let taken = journal.take()?.map(|taken| load(&[taken.segment])).transpose()?.map(|records| records.len());
        assert_eq!(taken, Some(3));
        journal.append(&record(3))?;
        let frame = postcard::to_stdvec_cobs(&record(4))?;
        let mut live = OpenOptions::new().append(true).open(dir.join(LIVE))?;
        live.write_all(&frame[..frame.len() / 2])?;
        // A damaged record in the middle (a failed append) costs that record only.
        let damaged = [HEADER, &frame[..9], &[0], &postcard::to_stdvec_cobs(&record(5))?].concat();
        std::fs::write(dir.join(format!("{SEGMENT}0000000007")), damaged)?;
        // Only its header was written: no records.
        std::fs::write(dir.join(format!("{SEGMENT}0000000008")), &HEADER[..5])?;
        let leftovers = replay(&dir)?;
        let ids: Vec<&str> = leftovers.records.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids, ["r000000000", "r000000001", "r000000002", "r000000005", "r000000003"]);
        assert_eq!(leftovers.files.len(), 4, "three segments and the live file: {:?}", leftovers.files);
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    /// Files that muon wrote before the journal was binary, JSON lines, are
    /// read on the first start after an upgrade.
    #[test]
    fn a_journal_of_json_lines_is_read() -> anyhow::Result<()> {
        let dir = temp_dir("json")?;
        let lines: Vec<String> = (0..3).map(|id| serde_json::to_string(&record(id))).collect::<Result<_, _>>()?;
        let torn = r#"{"request_id":"r000000009","ten"#;
        std::fs::write(dir.join(format!("{SEGMENT}0000000000")), format!("{}\n", lines[..2].join("\n")))?;
        std::fs::write(dir.join(LIVE), format!("{}\n{{\"request_id\n\n{torn}", lines[2]))?;
        let leftovers = replay(&dir)?;
        assert_eq!(leftovers.records, [record(0), record(1), record(2)]);
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn records_are_refused_past_the_age_bound_until_moved() -> anyhow::Result<()> {
        let dir = temp_dir("age")?;
        let journal = Journal::create(&dir, Duration::from_millis(100))?;
        journal.append(&record(0))?;
        let taken = journal.take()?.map(|taken| taken.upto);
        assert_eq!(taken, Some(1));
        journal.append(&record(1))?;
        std::thread::sleep(Duration::from_millis(150));
        let refused = journal.append(&record(2));
        assert!(matches!(refused, Err(LedgerError::Unavailable(_))), "{refused:?}");
        assert_eq!(journal.backlog(), 2, "a refused record is not appended");
        journal.moved();
        assert!(journal.append(&record(3)).is_err(), "record 1 is still waiting");
        journal.take()?;
        journal.moved();
        journal.append(&record(4))?;
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn the_oldest_waiting_record_is_known_until_moved() -> anyhow::Result<()> {
        let dir = temp_dir("oldest")?;
        let journal = Journal::create(&dir, Duration::from_secs(60))?;
        assert_eq!(journal.oldest_waiting(), None);
        journal.append(&record(0))?;
        let first = journal.oldest_waiting();
        assert!(first.is_some());
        journal.take()?;
        journal.append(&record(1))?;
        assert_eq!(journal.oldest_waiting(), first, "the taken record is older than the new one");
        journal.moved();
        assert!(journal.oldest_waiting() > first, "now the one appended after");
        journal.take()?;
        journal.moved();
        assert_eq!(journal.oldest_waiting(), None);
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn a_second_process_cannot_take_the_journal() -> anyhow::Result<()> {
        let dir = temp_dir("lock")?;
        let held = lock_dir(&dir)?;
        let err = lock_dir(&dir).err().map(|err| err.to_string()).unwrap_or_default();
        assert!(err.contains("another muon process"), "{err}");
        drop(held);
        lock_dir(&dir)?;
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }
}
