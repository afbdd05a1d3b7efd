//! What the integration tests share: a real server on 127.0.0.1:0 over a
//! ledger whose first admin was created as `fundledger init` does, and
//! clients for every role, each with its own token, given access through
//! the API (GrantAccess) as an operator would.
//!
//! The principals a [`Cast`] holds, by id:
//!
//! | principal          | role                                  |
//! |--------------------|---------------------------------------|
//! | `admin`            | admin (from `init_admin`)             |
//! | `officer-anna`     | officer                               |
//! | `officer-bram`     | officer, the second pair of eyes      |
//! | `auditor-carla`    | auditor                               |
//! | `treasurer-{p}`    | partner `p`, once `admit_partner` ran |
//!
//! Each test binary uses part of this module.
#![allow(dead_code)]

/// SIGKILL at random moments under that load, and the checks after each restart.
pub mod crash_harness;
/// The real binary as a child process (`init`, `serve`, SIGTERM, SIGKILL, `verify`).
pub mod process;
/// A log's event records in its sled tree, whatever the stored format.
pub mod stored;
/// A write load through the API, and what its answers mean.
pub mod workload;

use fundledger::api::auth::{self, Bearer};
use fundledger::api::pb::{self, audit_client::AuditClient, export_client::ExportClient};
use fundledger::api::server::ServeError;
use fundledger::domain::{Actor, Command, PartnerId, PrincipalId, Role};
use fundledger::ledger::{CommandRequest, Ledger, LedgerConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use fundledger::api::auth::Client;
pub type AuditApi = AuditClient<InterceptedService<Channel, Bearer>>;
pub type ExportApi = ExportClient<InterceptedService<Channel, Bearer>>;

/// The principal `init_admin` creates here.
pub const ADMIN: &str = "admin";
pub const OFFICER: &str = "officer-anna";
pub const SECOND_OFFICER: &str = "officer-bram";
pub const AUDITOR: &str = "auditor-carla";

/// The principal that acts for partner `partner`.
pub fn treasurer(partner: &str) -> String {
    format!("treasurer-{partner}")
}

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// A fresh request id, unique within the test binary.
pub fn request_id(prefix: &str) -> String {
    format!("{prefix}-{}", NEXT_REQUEST.fetch_add(1, Ordering::Relaxed))
}

pub fn meta(prefix: &str) -> Option<pb::CommandMeta> {
    Some(pb::CommandMeta { request_id: request_id(prefix), expected_version: None, positions_only: false })
}

/// The tests' usual application, Bewonersgroep Punda's dialogue tables in
/// Willemstad, as the API takes it: `amount` in EUR.
#[allow(dead_code)] // Each test binary uses part of this module.
pub fn punda_application(
    meta: Option<pb::CommandMeta>,
    id: &str,
    round: &str,
    amount: &str,
    submitted_on: &str,
) -> pb::SubmitApplicationRequest {
    pb::SubmitApplicationRequest {
        meta,
        application_id: id.into(),
        round_id: round.into(),
        applicant: Some(pb::Applicant {
            name: "Bewonersgroep Punda".into(),
            organisation_id: Default::default(),
            place: "Willemstad".into(),
            country: "CW".into(),
        }),
        title: "Dialoogtafels".into(),
        description: String::new(),
        amount_requested: Some(pb::Money { value: amount.into(), currency: "EUR".into() }),
        submitted_on: submitted_on.into(),
    }
}

pub fn role(kind: pb::RoleKind, partner: Option<&str>) -> pb::Role {
    pb::Role { kind: kind as i32, partner_id: partner.map(str::to_owned) }
}

// ------------------------------------------------------------------ the server

pub struct TestServer {
    pub ledger: Ledger,
    pub address: SocketAddr,
    /// `http://127.0.0.1:PORT`, for the binary's `--server`.
    pub url: String,
    pub channel: Channel,
    /// The token of [`ADMIN`].
    pub admin_token: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl TestServer {
    /// A new ledger in `dir` with its first admin, served.
    pub async fn start(dir: &Path) -> TestServer {
        TestServer::start_with(LedgerConfig::new(dir)).await
    }

    pub async fn start_with(config: LedgerConfig) -> TestServer {
        let ledger = Ledger::open(config).expect("the ledger opens");
        let admin_token =
            auth::init_admin(&ledger, PrincipalId::new(ADMIN).unwrap()).await.expect("init_admin on a new ledger");
        TestServer::serve(ledger, admin_token).await
    }

    /// Serves a ledger that already has principals again (after a restart),
    /// recording nothing.
    pub async fn resume(config: LedgerConfig, admin_token: &str) -> TestServer {
        let ledger = reopen(config);
        TestServer::serve(ledger, admin_token.to_owned()).await
    }

    /// Serves `ledger` on 127.0.0.1:0; `admin_token` is only remembered.
    pub async fn serve(ledger: Ledger, admin_token: String) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(fundledger::api::server::serve(ledger.clone(), listener, async {
            let _ = stopped.await;
        }));
        let url = format!("http://{address}");
        let channel = Channel::from_shared(url.clone()).unwrap().connect().await.expect("the server accepts");
        TestServer { ledger, address, url, channel, admin_token, stop: Some(stop), task }
    }

    /// Graceful stop: the server answers in-flight calls, the writer commits.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().expect("serve returns Ok");
        self.ledger.shutdown().await;
    }

    /// A Ledger client calling with `token`.
    pub fn client(&self, token: &str) -> Client {
        auth::client(self.channel.clone(), token).unwrap()
    }

    pub fn audit(&self, token: &str) -> AuditApi {
        AuditClient::with_interceptor(self.channel.clone(), Bearer::new(token).unwrap())
    }

    pub fn export(&self, token: &str) -> ExportApi {
        ExportClient::with_interceptor(self.channel.clone(), Bearer::new(token).unwrap())
    }

    pub fn admin(&self) -> Client {
        self.client(&self.admin_token)
    }

    /// Gives `principal` `role` with a new token, through the API as the
    /// admin; returns the token.
    pub async fn grant(&self, principal: &str, role: pb::Role) -> String {
        grant(&mut self.admin(), principal, role).await
    }

    /// The admin, two officers and an auditor, on this server.
    pub async fn cast(&self) -> Cast {
        let mut tokens = BTreeMap::from([(ADMIN.to_owned(), self.admin_token.clone())]);
        for (principal, kind) in [
            (OFFICER, pb::RoleKind::Officer),
            (SECOND_OFFICER, pb::RoleKind::Officer),
            (AUDITOR, pb::RoleKind::Auditor),
        ] {
            tokens.insert(principal.to_owned(), self.grant(principal, role(kind, None)).await);
        }
        Cast { channel: self.channel.clone(), tokens }
    }
}

/// GrantAccess through `admin`, with a token generated here; returns it.
pub async fn grant(admin: &mut Client, principal: &str, role: pb::Role) -> String {
    let token = auth::new_token().unwrap();
    admin
        .grant_access(pb::GrantAccessRequest {
            meta: meta("grant"),
            principal_id: principal.to_owned(),
            role: Some(role),
            token_sha256: hex::encode(auth::token_sha256(&token)),
        })
        .await
        .unwrap_or_else(|status| panic!("granting access to {principal}: {status:?}"));
    token
}

// ------------------------------------------------------------------ the cast

/// The principals of a fund and their tokens; hands out a client per role.
#[derive(Clone)]
pub struct Cast {
    channel: Channel,
    /// Token per principal id.
    pub tokens: BTreeMap<String, String>,
}

impl Cast {
    pub fn token(&self, principal: &str) -> &str {
        self.tokens.get(principal).unwrap_or_else(|| panic!("no principal {principal} in the cast"))
    }

    pub fn client(&self, principal: &str) -> Client {
        auth::client(self.channel.clone(), self.token(principal)).unwrap()
    }

    pub fn admin(&self) -> Client {
        self.client(ADMIN)
    }

    pub fn officer(&self) -> Client {
        self.client(OFFICER)
    }

    pub fn second_officer(&self) -> Client {
        self.client(SECOND_OFFICER)
    }

    pub fn auditor(&self) -> Client {
        self.client(AUDITOR)
    }

    /// The treasurer of `partner`, once admitted with [`Cast::admit_partner`].
    pub fn partner(&self, partner: &str) -> Client {
        self.client(&treasurer(partner))
    }

    /// Admits `partner` (as the admin) and gives its treasurer access.
    pub async fn admit_partner(&mut self, partner: &str) {
        self.admin()
            .admit_partner(pb::AdmitPartnerRequest {
                meta: meta("admit"),
                partner_id: partner.into(),
                name: partner.to_uppercase(),
                organisation_id: format!("NL-KVK-{partner}"),
            })
            .await
            .unwrap_or_else(|status| panic!("admitting {partner}: {status:?}"));
        self.add(&treasurer(partner), role(pb::RoleKind::Partner, Some(partner))).await;
    }

    /// Gives `principal` `role` (as the admin) and keeps their token.
    pub async fn add(&mut self, principal: &str, role: pb::Role) -> String {
        let token = grant(&mut self.admin(), principal, role).await;
        self.tokens.insert(principal.to_owned(), token.clone());
        token
    }

    /// The same principals on another server (the same ledger, restarted).
    pub fn on(&self, server: &TestServer) -> Cast {
        Cast { channel: server.channel.clone(), tokens: self.tokens.clone() }
    }
}

// ------------------------------------------------------------------ in process

/// Gives `principal` `role` on a ledger that already has principals whose
/// tokens the test does not know (a copy of the demo's): recorded directly,
/// in process, as one of its active admins — what only someone holding the
/// data directory can do. Returns the new token.
pub async fn grant_in_process(ledger: &Ledger, principal: &str, role: Role) -> String {
    let admin = {
        let projections = ledger.projections();
        let mut admins = projections.state.principals.iter().filter(|(_, p)| p.role == Role::Admin && !p.revoked);
        let (id, _) = admins.next_back().expect("the ledger has an active admin");
        Actor { principal: id.clone(), role: Role::Admin }
    };
    let token = auth::new_token().unwrap();
    ledger
        .submit(CommandRequest {
            command: Command::GrantAccess {
                principal: PrincipalId::new(principal).unwrap(),
                role,
                token_sha256: auth::token_sha256(&token),
            },
            request_id: request_id("grant-in-process"),
            expected_version: None,
            actor: admin,
        })
        .await
        .unwrap_or_else(|e| panic!("granting {principal} in process: {e}"));
    token
}

/// The actor a test that submits to the ledger directly acts as: the role
/// that may send `command` — the treasurer of the partner for a pledge,
/// the admin for administration, `officer-anna` for the rest. The domain
/// checks the role; nobody authenticates in process.
pub fn actor_for(command: &Command) -> Actor {
    let officer = Actor { principal: PrincipalId::new(OFFICER).unwrap(), role: Role::Officer };
    let admin = Actor { principal: PrincipalId::new(ADMIN).unwrap(), role: Role::Admin };
    match command {
        Command::PledgeContribution { partner, .. } | Command::ReducePledge { partner, .. } => partner_actor(partner),
        _ if fundledger::domain::access::may_send(&Role::Officer, command) => officer,
        _ => admin,
    }
}

pub fn partner_actor(partner: &PartnerId) -> Actor {
    Actor { principal: PrincipalId::new(&treasurer(partner.as_str())).unwrap(), role: Role::Partner(partner.clone()) }
}

/// A command as a test submits it directly, acting as [`actor_for`] it.
pub fn request(id: &str, command: Command) -> CommandRequest {
    let actor = actor_for(&command);
    CommandRequest { command, request_id: id.into(), expected_version: None, actor }
}

/// Who may send a command: written down in `tests/invariants/`, which the
/// fuzz targets share.
#[path = "../invariants/mod.rs"]
pub mod invariants;
#[allow(unused_imports)] // Each test binary uses part of this module.
pub use invariants::permitted_role;

/// Opens a ledger that this process has just closed. sled lets go of its
/// lock on the data directory only when its last I/O thread drops the file,
/// a moment after the last handle: `InUse` is retried for up to 10 s.
pub fn reopen(config: LedgerConfig) -> Ledger {
    let started = std::time::Instant::now();
    loop {
        match Ledger::open(config.clone()) {
            Ok(ledger) => return ledger,
            Err(fundledger::ledger::LedgerError::Log(fundledger::log::LogError::InUse { .. }))
                if started.elapsed() < std::time::Duration::from_secs(10) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(error) => panic!("the ledger does not open again: {error}"),
        }
    }
}

/// Opens something (a log, sled itself) in a directory this process has
/// just closed, retrying for up to 10 s, as [`reopen`] does.
#[allow(dead_code)] // Each test binary uses part of this module.
pub fn open_retrying<T>(mut open: impl FnMut() -> Result<T, String>) -> T {
    let started = std::time::Instant::now();
    loop {
        match open() {
            Ok(opened) => return opened,
            Err(error) if started.elapsed() > std::time::Duration::from_secs(10) => panic!("does not open: {error}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// The names of sled's snapshot files in a data directory (`snap.` and the
/// log position each is up to date with), sorted.
pub fn sled_snapshots(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("snap."))
        .collect();
    names.sort();
    names
}

// ------------------------------------------------------------------ randomness

/// A small seeded generator (SplitMix64) for tests that pick random moments
/// or call numbers: the same seed gives the same run. Not for anything but
/// tests.
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> SeededRng {
        SeededRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// The seed from the environment variable `var` (to reproduce a run), or a
/// new one from the clock; printed either way, so that a failure can be
/// replayed with `var=SEED`.
pub fn seed_from_env(var: &str) -> u64 {
    let seed = match std::env::var(var) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("{var}={text:?} is not a number")),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    eprintln!("{var}={seed} (set it to reproduce this run)");
    seed
}
