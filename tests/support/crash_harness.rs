//! The crash harness: a real `fundledger serve` killed with SIGKILL at
//! random moments while concurrent clients write, restarted on the same
//! data directory each time, and checked after every restart.
//!
//! Each client is one partner's treasurer plus an officer and sends its
//! commands one at a time ([`Cmd::nth`]: a pledge, its receipt, an
//! application, …), each with a request id of its own. It remembers every
//! acknowledged command with the sequence numbers it was answered with. A
//! command without an answer (the kill) is *pending*: after the restart the
//! client first retries it with the same request id, then re-sends its last
//! acknowledged command (a client that cannot tell whether its answer
//! arrived), then goes on with new commands.
//!
//! After every restart, with `ReadEvents` and the Audit service:
//! - the sequence is gapless from 1 and each request's events are one run
//!   (nothing recorded twice);
//! - every acknowledged command is in the log with the sequence numbers it
//!   was answered with; everything else in the log from a client is its
//!   pending command (answer lost, recorded once);
//! - a retry of an acknowledged command is answered `replayed` with exactly
//!   the original events, and a retry of a pending one is recorded at most
//!   once;
//! - `VerifyLog` passes: the hash chain, every index, and the projections
//!   equal to a full replay; and the log extends the signed checkpoint
//!   taken after the previous restart (nothing acknowledged was rewritten).
//!
//! At the end the server is stopped with SIGTERM (exit 0) and
//! `fundledger verify --data-dir` passes on the directory.
//!
//! The moments are random but seeded: the kill comes after a random number
//! of acknowledgements (0 to 60) in that round plus a random 0 to 10 ms, so
//! it falls during start-up retries, mid-batch, between batches. The same
//! seed gives the same sequence of choices (the interleaving of the
//! processes still varies). Nothing asserts on time except "it did not
//! hang" bounds.
//!
//! A SIGKILL ends the process, not the machine: what the process wrote
//! stays in the page cache. Power loss is a different failure (see
//! `tests/faults.rs` for what happens when the fsync itself fails).

use super::process::{self, ServerProcess};
use super::workload::{self, seqs, Cmd, Fund, Outcome};
use super::{AuditApi, SeededRng};
use fundledger::api::auth::{self, Bearer, Client};
use fundledger::api::pb::{self, audit_client::AuditClient};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A bound for "it did not hang", not a timing assertion.
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// How a run goes; [`CrashConfig::from_env`] reads it from `CRASH_KILLS`,
/// `CRASH_SEED` and `CRASH_CLIENTS`.
#[derive(Clone, Debug)]
pub struct CrashConfig {
    pub kills: usize,
    pub clients: usize,
    pub seed: u64,
}

impl CrashConfig {
    /// `CRASH_KILLS` (default `default_kills`), `CRASH_CLIENTS` (default 8),
    /// `CRASH_SEED` (default: from the clock; printed).
    pub fn from_env(default_kills: usize) -> CrashConfig {
        let number = |var: &str, default: usize| match std::env::var(var) {
            Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("{var}={text:?} is not a number")),
            Err(_) => default,
        };
        CrashConfig {
            kills: number("CRASH_KILLS", default_kills),
            clients: number("CRASH_CLIENTS", 8).max(1),
            seed: super::seed_from_env("CRASH_SEED"),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct CrashReport {
    pub seed: u64,
    pub kills: usize,
    pub clients: usize,
    /// Distinct commands acknowledged.
    pub acknowledged: usize,
    /// Commands without an answer (killed), retried with their request id
    /// after a restart; of them, found already recorded (answered
    /// `replayed`) or recorded by the retry.
    pub retries: usize,
    pub retries_replayed: usize,
    pub retries_recorded: usize,
    /// Acknowledged commands sent again; each answered with the same events.
    pub acknowledged_resent: usize,
    /// Events in the log at the end.
    pub events: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for CrashReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}: {} kills, {} clients, {} commands acknowledged, {} retried after a kill ({} had been recorded \
             and were replayed, {} recorded by the retry), {} acknowledged commands re-sent and replayed, {} events, \
             {:.1} s",
            self.seed,
            self.kills,
            self.clients,
            self.acknowledged,
            self.retries,
            self.retries_replayed,
            self.retries_recorded,
            self.acknowledged_resent,
            self.events,
            self.elapsed.as_secs_f64()
        )
    }
}

/// One client's memory, handed to its task for a round and back.
struct ClientState {
    client: usize,
    /// The number of its next new command; `Cmd::nth(client, next)`.
    next: u64,
    /// Sent without an answer: `Cmd::nth(client, next)`, retried first.
    pending: Option<Cmd>,
    /// Every acknowledged request id, with the seqs it was answered with.
    acknowledged: Vec<(String, Vec<u64>)>,
    /// The last acknowledged command and its answer's events.
    last_acknowledged: Option<(Cmd, Vec<pb::RecordedEvent>)>,
    /// Whether the last acknowledged command still has to be re-sent after
    /// the restart.
    resend_due: bool,
    retries: usize,
    retries_replayed: usize,
    acknowledged_resent: usize,
}

impl ClientState {
    fn new(client: usize) -> ClientState {
        ClientState {
            client,
            next: 0,
            pending: None,
            acknowledged: Vec::new(),
            last_acknowledged: None,
            resend_due: false,
            retries: 0,
            retries_replayed: 0,
            acknowledged_resent: 0,
        }
    }

    /// Sends: the re-send of the last acknowledged command if due, the
    /// pending command if any, then (up to `new_commands`) new ones, until
    /// a call gets no answer. Panics on any answer that breaks a promise.
    async fn drive(
        mut self,
        mut treasurer: Client,
        mut officer: Client,
        acknowledged: Arc<AtomicUsize>,
        new_commands: u64,
    ) -> ClientState {
        if self.resend_due {
            let (cmd, events) = self.last_acknowledged.clone().expect("due only after an acknowledgement");
            match call(&cmd, &mut treasurer, &mut officer).await {
                Outcome::Acknowledged(answer) => {
                    let id = cmd.request_id();
                    assert!(answer.replayed, "{id} was acknowledged before, and recorded again on a re-send");
                    assert_eq!(answer.events, events, "{id}: a re-send answered other events than the original");
                    self.acknowledged_resent += 1;
                    self.resend_due = false;
                }
                Outcome::Unavailable(_) | Outcome::Transport(_) => return self,
            }
        }
        let stop_at = self.next + new_commands;
        loop {
            let (cmd, retry) = match self.pending.take() {
                Some(cmd) => (cmd, true),
                None if self.next < stop_at => (Cmd::nth(self.client, self.next), false),
                None => return self,
            };
            match call(&cmd, &mut treasurer, &mut officer).await {
                Outcome::Acknowledged(answer) => {
                    let id = cmd.request_id().to_owned();
                    if retry {
                        self.retries += 1;
                        self.retries_replayed += usize::from(answer.replayed);
                    } else {
                        assert!(!answer.replayed, "{id} is new, but was answered as a retry");
                    }
                    self.acknowledged.push((id, seqs(&answer)));
                    self.last_acknowledged = Some((cmd, answer.events));
                    self.next += 1;
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Unavailable(_) | Outcome::Transport(_) => {
                    self.pending = Some(cmd);
                    return self;
                }
            }
        }
    }

    /// Whether `n` is a number this client has used: acknowledged ones and
    /// the pending one.
    fn sent(&self, n: u64) -> bool {
        n < self.next || (n == self.next && self.pending.is_some())
    }
}

/// One call, classified; panics if it hangs or breaks a promise.
async fn call(cmd: &Cmd, treasurer: &mut Client, officer: &mut Client) -> Outcome {
    let answer = tokio::time::timeout(CALL_LIMIT, cmd.send(treasurer, officer))
        .await
        .unwrap_or_else(|_| panic!("{} got no answer and no error: the call hung", cmd.request_id()));
    Outcome::of(answer).unwrap_or_else(|status| panic!("{} was answered {status:?}", cmd.request_id()))
}

/// Runs the harness; panics (naming the seed) at the first broken promise.
pub async fn run(config: &CrashConfig) -> CrashReport {
    let started = Instant::now();
    let mut rng = SeededRng::new(config.seed);
    let dir = tempfile::tempdir().unwrap();
    let admin_token = process::init(dir.path());
    let mut server = ServerProcess::start(dir.path());
    let fund = workload::set_up_fund(&server, &admin_token, config.clients).await;
    let auditor = grant_auditor(&server, &fund).await;
    let mut clients: Vec<ClientState> = (0..config.clients).map(ClientState::new).collect();
    let mut checkpoint = None;

    for kill in 0..=config.kills {
        let last = kill == config.kills;
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for state in clients.drain(..) {
            let treasurer = server.client(&fund.treasurers[state.client]).await;
            let officer = server.client(&fund.officer).await;
            // The last round only settles what is pending.
            let new_commands = if last { 0 } else { u64::MAX / 2 };
            tasks.push(tokio::spawn(state.drive(treasurer, officer, acknowledged.clone(), new_commands)));
        }
        if !last {
            let target = rng.between(0, 60) as usize;
            let extra = Duration::from_millis(rng.between(0, 10));
            let deadline = Instant::now() + Duration::from_secs(120);
            while acknowledged.load(Ordering::Relaxed) < target {
                assert!(Instant::now() < deadline, "seed {}: no progress before kill {kill}", config.seed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tokio::time::sleep(extra).await;
            server.kill();
        }
        for task in tasks {
            clients.push(task.await.unwrap_or_else(|e| panic!("seed {}: a client failed: {e}", config.seed)));
        }
        if last {
            break;
        }
        drop(server);
        server = ServerProcess::start(dir.path());
        checkpoint = Some(check(&server, &fund, &auditor, &clients, checkpoint.as_ref(), config.seed).await);
        for state in &mut clients {
            state.resend_due = state.last_acknowledged.is_some();
        }
        if (kill + 1) % 25 == 0 {
            let acknowledged: usize = clients.iter().map(|c| c.acknowledged.len()).sum();
            eprintln!("crash harness: {} kills, {acknowledged} acknowledged, {:.0?}", kill + 1, started.elapsed());
        }
    }
    assert!(clients.iter().all(|c| c.pending.is_none()), "seed {}: a command is still pending", config.seed);
    check(&server, &fund, &auditor, &clients, checkpoint.as_ref(), config.seed).await;
    let events = server_head(&server, &fund).await;

    server.terminate();
    let status = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(60)))
        .unwrap_or_else(|| panic!("the server did not exit after SIGTERM: {}", server.log()));
    assert!(status.success(), "the server exited {status} after SIGTERM: {}", server.log());
    drop(server);
    process::verify(dir.path());

    let retries: usize = clients.iter().map(|c| c.retries).sum();
    let retries_replayed: usize = clients.iter().map(|c| c.retries_replayed).sum();
    CrashReport {
        seed: config.seed,
        kills: config.kills,
        clients: config.clients,
        acknowledged: clients.iter().map(|c| c.acknowledged.len()).sum(),
        retries,
        retries_replayed,
        retries_recorded: retries - retries_replayed,
        acknowledged_resent: clients.iter().map(|c| c.acknowledged_resent).sum(),
        events,
        elapsed: started.elapsed(),
    }
}

/// An auditor for `VerifyLog`, given access by the admin (fixed request id).
async fn grant_auditor(server: &ServerProcess, fund: &Fund) -> String {
    let token = auth::new_token().unwrap();
    let mut admin = server.client(&fund.admin).await;
    admin
        .grant_access(pb::GrantAccessRequest {
            meta: process::meta("setup-grant-auditor"),
            principal_id: "auditor-carla".into(),
            role: Some(pb::Role { kind: pb::RoleKind::Auditor as i32, partner_id: None }),
            token_sha256: hex::encode(auth::token_sha256(&token)),
        })
        .await
        .unwrap();
    token
}

async fn server_head(server: &ServerProcess, fund: &Fund) -> u64 {
    let mut admin = server.client(&fund.admin).await;
    admin.get_fund_summary(pb::GetFundSummaryRequest { as_of: None }).await.unwrap().into_inner().head_seq
}

/// The checks after a restart (see the module documentation); returns a
/// signed checkpoint of the head for the next one.
async fn check(
    server: &ServerProcess,
    fund: &Fund,
    auditor: &str,
    clients: &[ClientState],
    previous: Option<&pb::Checkpoint>,
    seed: u64,
) -> pb::Checkpoint {
    let mut reader = server.client(&fund.admin).await;
    let logged = workload::events_by_request(&mut reader).await;
    for state in clients {
        for (id, answered) in &state.acknowledged {
            assert_eq!(logged.get(id), Some(answered), "seed {seed}: acknowledged {id} is not in the log as answered");
        }
    }
    let mut from_clients = 0;
    for id in logged.keys().filter(|id| id.starts_with('c')) {
        let (client, n) = parse_id(id);
        assert!(
            clients.get(client).is_some_and(|state| state.sent(n)),
            "seed {seed}: {id} is in the log but was never sent"
        );
        from_clients += 1;
    }
    let acknowledged: usize = clients.iter().map(|c| c.acknowledged.len()).sum();
    let pending_recorded =
        clients.iter().filter_map(|c| c.pending.as_ref()).filter(|cmd| logged.contains_key(cmd.request_id())).count();
    assert_eq!(from_clients, acknowledged + pending_recorded, "seed {seed}");

    let channel = server.channel().await;
    let mut audit: AuditApi = AuditClient::with_interceptor(channel, Bearer::new(auditor).unwrap());
    let request = pb::VerifyLogRequest {
        checkpoint: previous.cloned(),
        trusted_public_key: previous.map(|c| c.public_key.clone()).unwrap_or_default(),
    };
    let report = audit.verify_log(request).await.unwrap().into_inner();
    assert!(report.verified, "seed {seed}: the log does not verify: {:?}", report.first_broken);
    assert!(report.live_projections_checked, "seed {seed}: the live projections were not checked against a replay");
    assert_eq!(report.events, logged.values().map(Vec::len).sum::<usize>() as u64);
    if previous.is_some() {
        assert!(report.checkpoint_verified, "seed {seed}: the log does not extend the last signed checkpoint");
    }
    audit.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap().into_inner().checkpoint.unwrap()
}

/// `c{client}-{n}` → (client, n).
fn parse_id(id: &str) -> (usize, u64) {
    let (client, n) = id[1..].split_once('-').unwrap_or_else(|| panic!("unexpected request id {id}"));
    (client.parse().unwrap(), n.parse().unwrap())
}
