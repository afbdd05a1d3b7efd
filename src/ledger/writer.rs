//! The single writer: group commit of decided commands.
//!
//! A group commit is decided, written to the log, made durable (flush +
//! fdatasync), indexed, published and answered, in that order. A large
//! one (a batch call's, [`OVERLAP_COMMANDS_MIN`] commands or more) is made
//! durable on the sync thread while the writer decides and writes the next
//! group; it is indexed, published and answered once its sync has
//! succeeded, and always before the group written after it. So nothing is
//! shown or acknowledged before it is durable, and a group decided on the
//! effects of one still being synced is answered after that one. A small
//! group is synced on the writer thread: handing it over costs more than
//! the overlap gains there (`docs/BENCHMARKS.md`, fifteenth session).
//!
//! After a failed write or sync the writer stops: the group in flight and
//! the one written behind it are answered "outcome unknown", whatever the
//! in-flight group's own sync then says, and nothing more is written or
//! synced (a write already under way when a sync fails is never synced).

use super::{CommandError, CommandOutcome, CommandRequest, RecordedEvent, Shared};
use crate::domain::{decide, Actor, Context, Event, FundState, Rejection, EVENT_SCHEMA_VERSION};
use crate::log::{codec, CheckpointFile, Entry, Envelope, EventLog, Hash, LogIndex, NewEvent, Syncer};
use crate::projections::Projections;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Commands from one caller, decided in order and committed in the same
/// group commit; answered together once durable. Holds its places in the
/// queue (one per command) until it is answered.
pub(super) struct Submission {
    pub requests: Vec<CommandRequest>,
    pub reply: oneshot::Sender<Vec<Result<CommandOutcome, CommandError>>>,
    /// Never read: released by [`Submission::answer`].
    pub _places: tokio::sync::OwnedSemaphorePermit,
}

impl Submission {
    /// Frees its places in the queue, then answers: a caller that sends its
    /// next command as soon as it has the answer must find them free.
    fn answer(self, answers: Vec<Result<CommandOutcome, CommandError>>) {
        let Submission { reply, _places, .. } = self;
        drop(_places);
        // The client may have gone away; the commands stand regardless.
        let _ = reply.send(answers);
    }
}

/// What reaches the writer through its queue.
pub(super) enum Message {
    Commands(Submission),
    /// The checkpoint thread could not store a checkpoint.
    CheckpointFailed(String),
}

pub(super) struct Writer {
    log: EventLog,
    /// The decision state: the projections' state plus, during a batch, the
    /// effects of the batch's earlier commands.
    state: FundState,
    shared: Arc<Shared>,
    limits: Limits,
    /// The head of the last checkpoint handed to the checkpoint thread (or
    /// loaded at start).
    checkpoint_seq: u64,
    /// Encodes and stores checkpoints beside the writer.
    checkpointer: Checkpointer,
    /// Whether this run removed the checkpoint older versions kept in sled.
    legacy_checkpoint_dropped: bool,
    /// Syncs the log on the writer thread, for small group commits.
    syncer: Syncer,
    /// Syncs the log on a thread of its own, for large group commits.
    sync_thread: SyncThread,
    /// The group commit written and being synced on the sync thread.
    in_flight: Option<Written>,
    /// Frees replaced states.
    reclaimer: Reclaimer,
}

/// The least group commit, in commands, that is synced on the sync thread
/// while the writer decides the next. A batch call's group commits hold
/// hundreds to thousands of commands; one command per call makes groups of
/// a few to a few dozen, whose hand-over to another thread and back cost
/// more than the overlap gained when it was measured (fifteenth session).
pub(super) const OVERLAP_COMMANDS_MIN: usize = 256;

/// While a group is decided, the writer looks whether the sync of the one
/// before has ended every this many commands.
const POLL_COMMANDS: usize = 64;

/// A group commit decided and written to the log, not yet durable.
struct Written {
    submissions: Vec<Submission>,
    pending: Vec<Pending>,
    entries: Vec<Entry>,
    envelopes: Vec<Vec<Envelope>>,
    /// The decision state after it: published once it is durable.
    state: FundState,
    /// Its accepted commands' request ids, hashed, once it is handed to
    /// the sync thread: a later group that repeats one waits until this
    /// one is durable and indexed.
    request_ids: HashSet<u64>,
}

impl Written {
    /// After a storage failure, before or during its sync: its events may
    /// or may not have reached the disk.
    fn answer_unknown(self, failure: &str) {
        for submission in self.submissions {
            let commands = submission.requests.len();
            submission.answer(vec![Err(outcome_unknown(failure)); commands]);
        }
    }
}

/// A thread that syncs the log when asked, one sync at a time. Each
/// request carries the blob files known whole ([`Syncer::sync_marking`]).
struct SyncThread {
    requests: Option<std::sync::mpsc::SyncSender<HashSet<std::ffi::OsString>>>,
    results: std::sync::mpsc::Receiver<Result<(), String>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Hashes request ids for [`Written::request_ids`].
    ids: RandomState,
}

impl SyncThread {
    fn start(syncer: Syncer) -> std::io::Result<SyncThread> {
        let (requests, received) = std::sync::mpsc::sync_channel::<HashSet<std::ffi::OsString>>(1);
        let (answer, results) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new().name("fundledger-sync".into()).spawn(move || {
            for whole in received {
                if answer.send(syncer.sync_marking(Some(&whole)).map_err(|e| e.to_string())).is_err() {
                    return;
                }
            }
        })?;
        Ok(SyncThread { requests: Some(requests), results, thread: Some(thread), ids: RandomState::new() })
    }

    /// Starts a sync of everything written so far; `whole`: the blob files
    /// there are now.
    fn begin(&self, whole: HashSet<std::ffi::OsString>) -> Result<(), String> {
        self.requests.as_ref().ok_or_else(sync_thread_ended)?.send(whole).map_err(|_| sync_thread_ended())
    }

    /// The result of the sync begun last.
    fn wait(&self) -> Result<(), String> {
        self.results.recv().unwrap_or_else(|_| Err(sync_thread_ended()))
    }

    /// The result of the sync begun last, if it has ended.
    fn poll(&self) -> Option<Result<(), String>> {
        match self.results.try_recv() {
            Ok(result) => Some(result),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Some(Err(sync_thread_ended())),
        }
    }

    fn stop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A thread that frees the state a publish replaced. What only that view
/// still held (the applications and map nodes the writer copied since the
/// publish before) is freed there instead of on the writer: in a profile
/// of the in-process writer that freeing was 6.6% of the writer thread's
/// samples (`docs/BENCHMARKS.md`, twenty-first session). The queue is
/// bounded: when the thread is behind, or has ended, the writer frees the
/// state itself.
struct Reclaimer {
    states: Option<std::sync::mpsc::SyncSender<FundState>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// States queued for the [`Reclaimer`], at most.
const RECLAIM_QUEUE: usize = 4;

impl Reclaimer {
    fn start() -> std::io::Result<Reclaimer> {
        let (states, received) = std::sync::mpsc::sync_channel::<FundState>(RECLAIM_QUEUE);
        let thread = std::thread::Builder::new()
            .name("fundledger-free".into())
            .spawn(move || received.into_iter().for_each(drop))?;
        Ok(Reclaimer { states: Some(states), thread: Some(thread) })
    }

    fn free(&self, state: FundState) {
        if let Some(states) = &self.states {
            // Full or ended: the state comes back in the error, and is freed
            // here.
            let _ = states.try_send(state);
        }
    }
}

impl Drop for Reclaimer {
    /// Waits for the states queued to be freed: the writer's run ends with
    /// its memory given back.
    fn drop(&mut self) {
        drop(self.states.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Checkpoint bytes written per event recorded, at most, on average. A
/// checkpoint holds the whole state, which grows with the fund; writing one
/// every `checkpoint_events_interval` events would, in a large fund, cost
/// more than the events themselves. So the interval grows with the state:
/// a 1 GB checkpoint is written at most every 4 million events (a restart
/// after a crash replays at most that many; a clean stop writes one).
const CHECKPOINT_BYTES_PER_EVENT: usize = 256;

pub(super) struct Limits {
    pub batch_commands_max: usize,
    pub checkpoint_events_interval: u64,
}

/// What will answer a submission once the batch is durable.
enum Pending {
    Done(Result<CommandOutcome, CommandError>),
    /// Accepted: its events are entry `n` of the batch.
    Appended(usize, Vec<Event>),
    /// A retry of entry `n` of this very batch.
    SameAs(usize),
}

/// The thread that encodes and stores projection checkpoints, so that the
/// writer only hands over a snapshot (an O(1) clone of the published
/// projections) and goes on committing. A 1 GB checkpoint takes seconds to
/// encode, write and fsync; on the writer it held up every command. A v3
/// log's indexes are stored with it, at the same head.
struct Checkpointer {
    /// A rendezvous channel: a snapshot is handed over only when the thread
    /// is idle, never queued behind one still being stored.
    snapshots: Option<std::sync::mpsc::SyncSender<Snapshot>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The size of the last checkpoint stored.
    stored_bytes: Arc<AtomicUsize>,
    /// The head of the last checkpoint stored.
    stored_seq: Arc<AtomicU64>,
}

/// The published projections and, for a v3 log, its indexes, at one head.
type Snapshot = (Projections, Option<LogIndex>);

impl Checkpointer {
    fn start(file: CheckpointFile, queue: mpsc::WeakSender<Message>) -> std::io::Result<Checkpointer> {
        let (snapshots, received) = std::sync::mpsc::sync_channel::<Snapshot>(0);
        let stored_bytes = Arc::new(AtomicUsize::new(0));
        let stored_seq = Arc::new(AtomicU64::new(0));
        let (stored, stored_at) = (stored_bytes.clone(), stored_seq.clone());
        let thread = std::thread::Builder::new().name("fundledger-checkpoint".into()).spawn(move || {
            for (snapshot, index) in received {
                let (seq, bytes) = (snapshot.head_seq, snapshot.checkpoint_bytes());
                // What only the snapshot still holds is freed before the write.
                drop(snapshot);
                let length = bytes.len();
                let result = file.store(&bytes).and_then(|()| {
                    drop(bytes);
                    index.map_or(Ok(()), |index| file.store_index(&index))
                });
                match result {
                    Ok(()) => {
                        stored.store(length, Ordering::Relaxed);
                        stored_at.store(seq, Ordering::Relaxed);
                        tracing::debug!(seq, bytes = length, "projection checkpoint stored");
                    }
                    Err(failure) => {
                        tracing::error!(%failure, "storing a projection checkpoint failed");
                        // Gone at shutdown: the failure is only logged then.
                        if let Some(queue) = queue.upgrade() {
                            let _ = queue.blocking_send(Message::CheckpointFailed(format!("checkpoint: {failure}")));
                        }
                        return;
                    }
                }
            }
        })?;
        Ok(Checkpointer { snapshots: Some(snapshots), thread: Some(thread), stored_bytes, stored_seq })
    }

    /// Hands `snapshot` over if the thread is idle; false if it is busy.
    /// With `wait`, waits until the thread takes it (false only if it
    /// stopped on a failure).
    fn offer(&self, snapshot: Snapshot, wait: bool) -> bool {
        self.snapshots.as_ref().is_some_and(|snapshots| {
            if wait {
                snapshots.send(snapshot).is_ok()
            } else {
                snapshots.try_send(snapshot).is_ok()
            }
        })
    }

    /// Stores a last checkpoint of `snapshot` (if any) and waits for the
    /// thread. False if the thread had stopped on a failure, or failed to
    /// store this one.
    fn finish(&mut self, snapshot: Option<Snapshot>) -> bool {
        let wanted = snapshot.as_ref().map(|(snapshot, _)| snapshot.head_seq);
        let handed_over = match (self.snapshots.take(), snapshot) {
            // Fails only if the thread has stopped on an earlier failure.
            (Some(snapshots), Some(snapshot)) => snapshots.send(snapshot).is_ok(),
            (_, None) => true,
            (None, Some(_)) => false,
        };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        handed_over && wanted.is_none_or(|seq| self.stored_seq.load(Ordering::Relaxed) == seq)
    }
}

impl Writer {
    pub fn new(
        log: EventLog,
        state: FundState,
        shared: Arc<Shared>,
        limits: Limits,
        checkpoint_seq: u64,
        queue: mpsc::WeakSender<Message>,
    ) -> std::io::Result<Writer> {
        // The writer's own queue, for the checkpoint thread to report a
        // failure on; weak, so that it does not keep the queue open.
        let checkpointer = Checkpointer::start(log.checkpoint_file(), queue)?;
        // A v3 log's stored indexes may be older than the checkpoint (or
        // missing, and rebuilt from the whole log): the next checkpoint is
        // due by the older of the two.
        let checkpoint_seq = checkpoint_seq.min(log.index_stored_seq().unwrap_or(u64::MAX));
        let syncer = log.syncer();
        let sync_thread = SyncThread::start(syncer.clone())?;
        let reclaimer = Reclaimer::start()?;
        Ok(Writer {
            log,
            state,
            shared,
            limits,
            checkpoint_seq,
            checkpointer,
            legacy_checkpoint_dropped: false,
            syncer,
            sync_thread,
            in_flight: None,
            reclaimer,
        })
    }

    /// Hands the published projections to the checkpoint thread when a
    /// checkpoint is due and the thread is idle (or, with `wait`, once it
    /// is), so that a restart replays only what came after it.
    fn offer_checkpoint(&mut self, wait: bool) -> Result<(), String> {
        self.drop_legacy_checkpoint()?;
        let stored_bytes = self.checkpointer.stored_bytes.load(Ordering::Relaxed);
        let interval = self.limits.checkpoint_events_interval.max((stored_bytes / CHECKPOINT_BYTES_PER_EVENT) as u64);
        if self.log.head_seq() - self.checkpoint_seq < interval {
            return Ok(());
        }
        let snapshot = self.snapshot();
        let seq = snapshot.0.head_seq;
        if self.checkpointer.offer(snapshot, wait) {
            self.checkpoint_seq = seq;
        }
        Ok(())
    }

    /// The published projections and the log's indexes, both at the head:
    /// the writer publishes the projections of every commit before it
    /// takes the next.
    fn snapshot(&self) -> Snapshot {
        let projections = self.shared.projections.read().expect("projection lock").clone();
        let index = self.log.index_snapshot();
        debug_assert!(index.as_ref().is_none_or(|index| index.head_seq() == projections.head_seq));
        (projections, index)
    }

    /// Older versions kept the checkpoint inside sled: removed once this run
    /// has stored a checkpoint file to replace it. It syncs the log, so a
    /// failure is a storage failure like any other.
    fn drop_legacy_checkpoint(&mut self) -> Result<(), String> {
        if self.legacy_checkpoint_dropped || self.checkpointer.stored_bytes.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        // One sync at a time: the group being synced is answered first.
        self.complete_in_flight()?;
        self.log.drop_legacy_checkpoint().map_err(|e| format!("removing the in-sled checkpoint: {e}"))?;
        self.legacy_checkpoint_dropped = true;
        Ok(())
    }

    pub fn run(mut self, mut queue: mpsc::Receiver<Message>) {
        let mut batch = Vec::with_capacity(self.limits.batch_commands_max);
        // A start that replayed a checkpoint interval or more (no checkpoint,
        // one of an older layout or one that did not verify) stores one now,
        // not at the next interval or shutdown: a quiet fund may reach
        // neither before a crash, and would pay that replay at every start.
        // The thread has only just started: wait for it to take the state.
        if let Err(failure) = self.offer_checkpoint(true) {
            self.stop(&failure, false, &mut batch, &mut queue);
            return;
        }
        loop {
            // With a group being synced, the writer takes what is queued
            // now, or else answers that group before it waits.
            let message = if self.in_flight.is_some() {
                match queue.try_recv() {
                    Ok(message) => Some(message),
                    Err(_) => {
                        if let Err(failure) = self.complete_in_flight() {
                            self.stop(&failure, true, &mut batch, &mut queue);
                            return;
                        }
                        continue;
                    }
                }
            } else {
                // None once every sender is gone and the queue is drained:
                // that is the graceful end.
                queue.blocking_recv()
            };
            let Some(message) = message else { break };
            let mut failed_checkpoint = None;
            let mut commands = 0;
            match message {
                Message::Commands(first) => {
                    commands += first.requests.len();
                    batch.push(first);
                }
                Message::CheckpointFailed(failure) => failed_checkpoint = Some(failure),
            }
            // A submission is never split: a batch call of up to the
            // maximum may make one group commit on its own.
            while failed_checkpoint.is_none() && commands < self.limits.batch_commands_max {
                match queue.try_recv() {
                    Ok(Message::Commands(next)) => {
                        commands += next.requests.len();
                        batch.push(next);
                    }
                    Ok(Message::CheckpointFailed(failure)) => failed_checkpoint = Some(failure),
                    Err(_) => break,
                }
            }
            let result = match failed_checkpoint {
                // Nothing of this batch was written: it is refused below.
                Some(failure) => Err((failure, false)),
                None => self.commit(&mut batch),
            };
            // The batch is answered by now, or written and being synced (then
            // its sync answers it): a failure here refuses only what comes
            // after it.
            let result = result.and_then(|()| self.offer_checkpoint(false).map_err(|failure| (failure, false)));
            if let Err((failure, written)) = result {
                self.stop(&failure, written, &mut batch, &mut queue);
                return;
            }
        }
        self.sync_thread.stop();
        let snapshot = (self.log.head_seq() != self.checkpoint_seq).then(|| self.snapshot());
        if !self.checkpointer.finish(snapshot) {
            tracing::warn!("no checkpoint at shutdown; the next start replays more of the log");
        } else if let Err(failure) = self.drop_legacy_checkpoint() {
            // Nothing is acknowledged after this: a failure only leaves the
            // unused old checkpoint in place for the next run.
            tracing::warn!(%failure, "at shutdown");
        }
        tracing::info!(head = self.log.head_seq(), "writer stopped");
    }

    /// After a storage failure: the writer stops, and the ledger refuses
    /// commands. `written` says whether `batch` may have reached the disk.
    /// The writer's run ends after this.
    fn stop(&mut self, failure: &str, written: bool, batch: &mut Vec<Submission>, queue: &mut mpsc::Receiver<Message>) {
        // A group still being synced was written before the failure. After
        // a failed write or read of the log (`written`) its sync proves
        // nothing: sled may have written part of it in the buffer write that
        // failed, so it is answered "outcome unknown" whatever its sync says.
        // After a checkpoint's failure, the log is sound: its sync answers it.
        if let Some(in_flight) = self.in_flight.take() {
            let synced = self.sync_thread.wait();
            match synced {
                Ok(()) if !written => self.complete(in_flight, true),
                Ok(()) => in_flight.answer_unknown(failure),
                Err(sync_failure) => in_flight.answer_unknown(&sync_failure),
            }
        }
        // The in-memory state may now be ahead of the disk: stop rather
        // than decide on facts that were never recorded. It never retries:
        // after a failed fsync the kernel may have dropped the unwritten
        // pages and marked them clean, so a second fsync could "succeed"
        // over lost data (fsyncgate).
        tracing::error!(%failure, "storage failure; the writer stops and the ledger refuses commands");
        let refusal = format!(
            "a storage failure stopped the writer ({failure}); it does not retry, since what reached the \
             disk is unknown: restart to recover from the log"
        );
        *self.shared.failure.lock().expect("failure lock") = Some(refusal.clone());
        // Closed before the failure is announced: whoever learns of it and
        // submits is refused by `submit`, not queued.
        queue.close();
        self.shared.failed.send_replace(true);
        for submission in batch.drain(..) {
            let commands = submission.requests.len();
            let answer = if written { outcome_unknown(failure) } else { CommandError::Unavailable(refusal.clone()) };
            submission.answer(vec![Err(answer); commands]);
        }
        // Queued behind the failed batch, never written: refused.
        while let Ok(message) = queue.try_recv() {
            if let Message::Commands(submission) = message {
                let commands = submission.requests.len();
                submission.answer(vec![Err(CommandError::Unavailable(refusal.clone())); commands]);
            }
        }
        // No checkpoint at the end, and no more syncs.
        self.checkpointer.finish(None);
        self.sync_thread.stop();
    }

    /// Decides and writes one batch, then makes it durable and answers it:
    /// here, or (a large one) on the sync thread while the writer goes on,
    /// answered by [`Writer::complete_in_flight`]. An error says whether
    /// the batch may have been written.
    fn commit(&mut self, batch: &mut Vec<Submission>) -> Result<(), (String, bool)> {
        // A command that repeats one of the group being synced must find it
        // indexed: that group is answered first.
        if let Some(in_flight) = &self.in_flight {
            let ids = &self.sync_thread.ids;
            let repeats = batch
                .iter()
                .flat_map(|submission| &submission.requests)
                .any(|request| in_flight.request_ids.contains(&ids.hash_one(request.request_id.as_str())));
            if repeats {
                self.complete_in_flight().map_err(|failure| (failure, false))?;
            }
        }
        let mut written = self.write(batch)?;
        let commands = written.pending.len();
        let overlap = commands >= OVERLAP_COMMANDS_MIN && !written.entries.is_empty();
        // The group before it was synced meanwhile: answered first.
        if self.in_flight.is_some() {
            if let Err(failure) = self.complete_in_flight() {
                written.answer_unknown(&failure);
                return Err((failure, true));
            }
        }
        if overlap {
            let begun = self.syncer.blobs().map_err(|e| e.to_string()).and_then(|whole| self.sync_thread.begin(whole));
            if let Err(failure) = begun {
                written.answer_unknown(&failure);
                return Err((failure, true));
            }
            let ids = &self.sync_thread.ids;
            written.request_ids = written.entries.iter().map(|entry| ids.hash_one(entry.request_id.as_str())).collect();
            self.in_flight = Some(written);
            return Ok(());
        }
        if !written.entries.is_empty() {
            if let Err(failure) = self.syncer.sync() {
                let failure = failure.to_string();
                written.answer_unknown(&failure);
                return Err((failure, true));
            }
        }
        self.complete(written, false);
        Ok(())
    }

    /// Waits for the sync of the group in flight, then indexes, publishes
    /// and answers it; after a failed sync, answers it "outcome unknown".
    fn complete_in_flight(&mut self) -> Result<(), String> {
        if self.in_flight.is_none() {
            return Ok(());
        }
        let synced = self.sync_thread.wait();
        self.synced(synced)
    }

    /// Completes the group in flight if its sync has ended: called while
    /// the next group is decided, so that a group is answered as soon as
    /// it is durable, not once the next one is written.
    fn poll_in_flight(&mut self) -> Result<(), String> {
        match self.in_flight.as_ref().and_then(|_| self.sync_thread.poll()) {
            Some(synced) => self.synced(synced),
            None => Ok(()),
        }
    }

    /// Answers the group in flight by how its sync ended.
    fn synced(&mut self, synced: Result<(), String>) -> Result<(), String> {
        let written = self.in_flight.take().expect("a group in flight");
        if let Err(failure) = synced {
            written.answer_unknown(&failure);
            return Err(failure);
        }
        self.complete(written, true);
        Ok(())
    }

    /// Decides a batch and writes what it records to the log (not yet
    /// durable). On an error the batch is not answered (it stays in
    /// `batch`); the error says whether it may have been written.
    fn write(&mut self, batch: &mut Vec<Submission>) -> Result<Written, (String, bool)> {
        let mut pending = Vec::with_capacity(batch.len());
        // Sized for the batch up front: grown from empty, these maps were
        // rehashed several times in every group commit.
        let requests: usize = batch.iter().map(|submission| submission.requests.len()).sum();
        let mut entries: Vec<Entry> = Vec::with_capacity(requests);
        let mut batch_requests: HashMap<&str, (Hash, usize)> = HashMap::with_capacity(requests);
        // Only a command with an expected version needs its stream's
        // version: the log's (written ones included), plus the events on it
        // earlier in this batch. (A lookup in the log's index compares
        // stream names; the log finds the version of each event it appends
        // itself.)
        let versions_wanted = batch.iter().flat_map(|s| &s.requests).any(|r| r.expected_version.is_some());
        let mut batch_events: HashMap<String, u64> = HashMap::new();
        for (n, request) in batch.iter().flat_map(|submission| &submission.requests).enumerate() {
            if n % POLL_COMMANDS == POLL_COMMANDS - 1 {
                self.poll_in_flight().map_err(|failure| (failure, false))?;
            }
            let fingerprint = fingerprint(request);
            if let Some(&(earlier, entry)) = batch_requests.get(request.request_id.as_str()) {
                pending.push(if earlier == fingerprint {
                    Pending::SameAs(entry)
                } else {
                    Pending::Done(Err(conflict(request)))
                });
                continue;
            }
            match self.log.request(&request.request_id).map_err(|e| (e.to_string(), true))? {
                Some(record) if record.fingerprint == fingerprint => {
                    pending.push(Pending::Done(self.replay(record.first_seq, record.count).map_err(|e| (e, true))?));
                    continue;
                }
                Some(_) => {
                    pending.push(Pending::Done(Err(conflict(request))));
                    continue;
                }
                None => {}
            }
            if let Some(expected) = request.expected_version {
                let stream = request.command.stream().to_string();
                let written = self.log.stream_version(&stream).map_err(|e| (e.to_string(), true))?;
                let actual = written + batch_events.get(&stream).copied().unwrap_or(0);
                if expected != actual {
                    pending.push(Pending::Done(Err(CommandError::WrongExpectedVersion { stream, expected, actual })));
                    continue;
                }
            }
            // Authentication happened when the command arrived; a
            // revocation committed since (even earlier in this batch) wins.
            if let Some(refusal) = stale_actor(&self.state, &request.actor, &request.command) {
                pending.push(Pending::Done(Err(CommandError::Rejected(refusal))));
                continue;
            }
            let ctx = Context { actor: request.actor.clone() };
            match decide(&self.state, &request.command, &ctx) {
                Err(rejection) => pending.push(Pending::Done(Err(CommandError::Rejected(rejection)))),
                Ok(events) => {
                    let mut new_events = Vec::with_capacity(events.len());
                    for event in &events {
                        self.state.evolve(event);
                        let stream = event.stream().to_string();
                        if versions_wanted {
                            *batch_events.entry(stream.clone()).or_default() += 1;
                        }
                        new_events.push(NewEvent {
                            stream,
                            event_type: event.type_name().to_owned(),
                            schema_version: EVENT_SCHEMA_VERSION,
                            payload: codec::encode(event),
                        });
                    }
                    batch_requests.insert(request.request_id.as_str(), (fingerprint, entries.len()));
                    pending.push(Pending::Appended(entries.len(), events));
                    entries.push(Entry {
                        request_id: request.request_id.clone(),
                        fingerprint,
                        actor: request.actor.principal.to_string(),
                        events: new_events,
                    });
                }
            }
        }
        drop(batch_requests);
        let envelopes = if entries.is_empty() {
            Vec::new()
        } else {
            // The group in flight is answered first if it is durable by now.
            self.poll_in_flight().map_err(|failure| (failure, false))?;
            self.log.write(now_micros(), &entries).map_err(|e| (e.to_string(), true))?
        };
        Ok(Written {
            submissions: std::mem::take(batch),
            pending,
            entries,
            envelopes,
            // What is published once this is durable: a clone shares every
            // application with the decision state (O(1), see
            // `domain::applications`) instead of folding the events in a
            // second time into a second copy.
            state: self.state.clone(),
            request_ids: HashSet::new(),
        })
    }

    /// Indexes, publishes and answers a group commit once it is durable
    /// (`overlapped`: synced on the sync thread).
    fn complete(&mut self, written: Written, overlapped: bool) {
        let Written { submissions, mut pending, entries, envelopes, state, .. } = written;
        let mut outcomes: Vec<Vec<RecordedEvent>> = Vec::new();
        if !entries.is_empty() {
            self.log.made_durable(&entries, &envelopes);
            drop(entries);
            // Durable: now the read side may see it.
            let mut events_by_entry: Vec<Option<Vec<Event>>> = vec![None; envelopes.len()];
            for p in &mut pending {
                if let Pending::Appended(n, events) = p {
                    events_by_entry[*n] = Some(std::mem::take(events));
                }
            }
            for (envelopes, events) in envelopes.into_iter().zip(events_by_entry) {
                let events = events.expect("every entry came from one submission");
                let recorded: Vec<RecordedEvent> = envelopes
                    .into_iter()
                    .zip(events)
                    .map(|(envelope, event)| RecordedEvent { envelope, event })
                    .collect();
                outcomes.push(recorded);
            }
            let first = outcomes.iter().flatten().next();
            if let (Some(first), Some(last)) = (first, outcomes.iter().flatten().next_back()) {
                #[cfg(debug_assertions)]
                self.check_published(&outcomes, &state);
                let previous = self.shared.projections.write().expect("projection lock").advance(
                    state,
                    &first.envelope,
                    &last.envelope,
                );
                // Freed outside the lock, and off the writer.
                self.reclaimer.free(previous);
            }
            self.shared.head.send_replace(self.log.head_seq());
        }

        let commands = pending.len() as u64;
        let events = outcomes.iter().map(|o| o.len() as u64).sum();
        // Each entry's events go to the one command that recorded them;
        // only a retry within the batch (rare) needs a copy.
        let retried: std::collections::HashSet<usize> =
            pending.iter().filter_map(|p| if let Pending::SameAs(n) = p { Some(*n) } else { None }).collect();
        let mut pending = pending.into_iter();
        for submission in submissions {
            let answers = pending
                .by_ref()
                .take(submission.requests.len())
                .map(|p| match p {
                    Pending::Done(answer) => answer,
                    Pending::Appended(n, _) if retried.contains(&n) => {
                        Ok(CommandOutcome { events: outcomes[n].clone(), replayed: false })
                    }
                    Pending::Appended(n, _) => {
                        Ok(CommandOutcome { events: std::mem::take(&mut outcomes[n]), replayed: false })
                    }
                    Pending::SameAs(n) => Ok(CommandOutcome { events: outcomes[n].clone(), replayed: true }),
                })
                .collect();
            submission.answer(answers);
        }
        self.shared.stats.record_commit(commands, events, overlapped);
    }

    /// Debug builds: the published state must be what folding the batch's
    /// recorded events into the previous projections gives.
    #[cfg(debug_assertions)]
    fn check_published(&self, outcomes: &[Vec<RecordedEvent>], published: &FundState) {
        let mut folded = self.shared.projections.read().expect("projection lock").clone();
        for recorded in outcomes.iter().flatten() {
            folded.apply(&recorded.envelope.link(), &recorded.event);
        }
        assert_eq!(&folded.state, published, "live projection and decision state diverged");
    }

    /// The original outcome of an earlier request.
    fn replay(&self, first_seq: u64, count: u32) -> Result<Result<CommandOutcome, CommandError>, String> {
        let last = first_seq + u64::from(count) - 1;
        let events = self
            .shared
            .reader
            .read(first_seq, last, count as usize)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(envelope, payload)| {
                crate::projections::decode_event(&envelope, &payload).map(|event| RecordedEvent { envelope, event })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(Ok(CommandOutcome { events, replayed: true }))
    }
}

/// Once anyone has access, only an active principal in its recorded role
/// may act. (Before that, `init` records the first admin.)
fn stale_actor(state: &FundState, actor: &Actor, command: &crate::domain::Command) -> Option<Rejection> {
    if state.principals.is_empty() {
        return None;
    }
    let current = state.principals.get(&actor.principal);
    if current.is_some_and(|p| !p.revoked && p.role == actor.role) {
        return None;
    }
    Some(Rejection::PermissionDenied {
        principal: actor.principal.to_string(),
        role: actor.role.to_string(),
        action: format!("{}: their access was revoked or changed", command.name()),
    })
}

fn sync_thread_ended() -> String {
    String::from("the sync thread ended")
}

/// The answer to a command whose events may or may not have reached the
/// disk when a storage failure stopped the writer.
fn outcome_unknown(failure: &str) -> CommandError {
    CommandError::Unavailable(format!(
        "a storage failure stopped the writer ({failure}); the outcome of this command is unknown: \
         after a restart, retry it with the same request id"
    ))
}

fn conflict(request: &CommandRequest) -> CommandError {
    CommandError::RequestIdConflict { request_id: request.request_id.clone() }
}

/// What makes two requests "the same": command, expected version and actor.
fn fingerprint(request: &CommandRequest) -> Hash {
    codec::digest(&codec::encode(&(&request.command, request.expected_version, &request.actor)))
}

fn now_micros() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}
