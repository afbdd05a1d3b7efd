//! Makes the upgrade fixture of the stored format this build writes,
//! `tests/fixtures/ledger-v<N>`: `cargo run --example make_upgrade_fixture`.
//! fundledger 0.1.0 made `ledger-v1`, the first version of stored format
//! v2 `ledger-v2`, the first of v3 `ledger-v3`, the first of v4 `ledger-v4`. It refuses to run when the fixture exists: **never
//! regenerate one** (see `tests/fixtures/README.md`); a new stored format
//! gets a new fixture beside the old ones.

#[path = "../tests/support/mod.rs"]
mod support;

use fundledger::api::auth;
use fundledger::domain::{
    Applicant, ApplicationId, Command, Currency, Date, MoneyInput, PartnerId, PrincipalId, Role, RoundId,
};
use fundledger::ledger::{CommandRequest, Ledger, LedgerConfig};
use std::path::{Path, PathBuf};

/// The events the fixture holds (`tests/upgrade.rs` checks the same).
const EVENTS: u64 = 33;

/// Where the fixture of this build's stored format lives.
fn fixture() -> PathBuf {
    let format = String::from_utf8_lossy(fundledger::log::StoreFormat::NEW.marker());
    let version = format.strip_prefix("fundledger-log-").expect("the marker names the format version");
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/ledger-{version}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn eur(value: &str) -> MoneyInput {
    MoneyInput::parse(value, "EUR").unwrap()
}

fn date(text: &str) -> Date {
    Date::parse(text).unwrap()
}

fn app(id: &str) -> ApplicationId {
    ApplicationId::new(id).unwrap()
}

/// As `actor` (a principal of the cast in `tests/support`).
fn by(actor: &str, role: Role, id: &str, command: Command) -> CommandRequest {
    let actor = fundledger::domain::Actor { principal: PrincipalId::new(actor).unwrap(), role };
    CommandRequest { command, request_id: id.into(), expected_version: None, actor }
}

/// Every command the fixture records after `init_admin`, in order. The
/// tokens are fixed (their hashes are what is stored), so that a test may
/// one day call the fixture's ledger through the API.
fn fixture_commands() -> Vec<CommandRequest> {
    use support::request;
    let grant = |id: &str, principal: &str, role: Role| {
        request(
            id,
            Command::GrantAccess {
                principal: PrincipalId::new(principal).unwrap(),
                role,
                token_sha256: auth::token_sha256(&format!("fixture-token-{principal}")),
            },
        )
    };
    let porticus = PartnerId::new("porticus").unwrap();
    let r1 = RoundId::new("r1").unwrap();
    let submit = |n: u32, amount: &str| {
        request(
            &format!("submit-{n}"),
            Command::SubmitApplication {
                application: app(&format!("app-{n}")),
                round: r1.clone(),
                applicant: Applicant {
                    name: format!("Bewonersgroep {n}").into(),
                    organisation_id: Default::default(),
                    place: "Willemstad".into(),
                    country: "CW".into(),
                },
                title: "Dialoogtafels".into(),
                description: String::new(),
                amount_requested: eur(amount),
                submitted_on: date("2024-02-15"),
            },
        )
    };
    let bram = |id: &str, command| by(support::SECOND_OFFICER, Role::Officer, id, command);
    vec![
        grant("grant-anna", support::OFFICER, Role::Officer),
        grant("grant-bram", support::SECOND_OFFICER, Role::Officer),
        grant("grant-carla", support::AUDITOR, Role::Auditor),
        request("open", Command::OpenFund { name: "Loket D".into(), currency: Currency::eur() }),
        request(
            "admit-porticus",
            Command::AdmitPartner {
                partner: porticus.clone(),
                name: "Porticus".into(),
                organisation_id: "NL-KVK-41198746".into(),
            },
        ),
        grant("grant-porticus", &support::treasurer("porticus"), Role::Partner(porticus.clone())),
        request(
            "pledge",
            Command::PledgeContribution {
                partner: porticus.clone(),
                amount: eur("50000.00"),
                earmark: None,
                pledged_on: date("2024-01-10"),
            },
        ),
        request(
            "reduce-pledge",
            Command::ReducePledge {
                partner: porticus.clone(),
                amount: eur("10000.00"),
                earmark: None,
                reason: "budget cut".into(),
                reduced_on: date("2024-01-15"),
            },
        ),
        request(
            "receipt",
            Command::RecordReceipt {
                partner: porticus.clone(),
                amount: eur("40000.00"),
                earmark: None,
                value_date: date("2024-01-20"),
                bank_reference: "NL91 receipt".into(),
            },
        ),
        request(
            "open-r1",
            Command::OpenRound {
                round: r1.clone(),
                name: "Round 1".into(),
                budget_ceiling: eur("100000"),
                grant_max: eur("15000"),
                opens_on: date("2024-02-01"),
                closes_on: date("2024-03-31"),
            },
        ),
        request(
            "thresholds",
            Command::SetApprovalThresholds {
                round: r1.clone(),
                award_above: Some(eur("10000.00")),
                payment_above: Some(eur("5000.00")),
            },
        ),
        submit(1, "8000.00"),
        submit(2, "12000.00"),
        submit(3, "3000.00"),
        submit(4, "3000.00"),
        submit(5, "5000.00"),
        request(
            "withdraw-3",
            Command::WithdrawApplication {
                application: app("app-3"),
                reason: "applied twice".into(),
                withdrawn_on: date("2024-03-01"),
            },
        ),
        request(
            "reject-4",
            Command::RejectApplication {
                application: app("app-4"),
                reason: "outside the call".into(),
                decided_on: date("2024-04-10"),
            },
        ),
        request(
            "award-1",
            Command::AwardGrant {
                application: app("app-1"),
                amount: eur("8000.00"),
                reason: "fits the call".into(),
                decided_on: date("2024-04-10"),
            },
        ),
        request(
            "propose-award-2",
            Command::ProposeAward {
                application: app("app-2"),
                amount: eur("12000.00"),
                reason: "fits the call".into(),
                proposed_on: date("2024-04-10"),
            },
        ),
        bram("approve-award-2", Command::ApproveAward { application: app("app-2"), decided_on: date("2024-04-11") }),
        request(
            "pay-1",
            Command::MakePayment {
                application: app("app-1"),
                amount: eur("4000.00"),
                value_date: date("2024-05-01"),
                bank_reference: "PAY-1".into(),
            },
        ),
        request(
            "propose-pay-2",
            Command::ProposePayment {
                application: app("app-2"),
                amount: eur("6000.00"),
                value_date: date("2024-05-01"),
                bank_reference: "PAY-2".into(),
            },
        ),
        bram("approve-pay-2", Command::ApprovePayment { application: app("app-2") }),
        request(
            "reduce-1",
            Command::ReduceGrant {
                application: app("app-1"),
                amount: eur("1000.00"),
                reason: "smaller venue".into(),
                decided_on: date("2024-06-01"),
            },
        ),
        request(
            "refund-2",
            Command::RecordRefund {
                application: app("app-2"),
                amount: eur("1000.00"),
                value_date: date("2024-07-01"),
                bank_reference: "REFUND-2".into(),
            },
        ),
        request(
            "settle-2",
            Command::SettleGrant {
                application: app("app-2"),
                final_amount: eur("5000.00"),
                reason: "final report".into(),
                decided_on: date("2024-09-01"),
            },
        ),
        bram(
            "conflict-5",
            Command::DeclareConflict {
                application: app("app-5"),
                reason: "board member of the applicant".into(),
                declared_on: date("2024-04-01"),
            },
        ),
        request(
            "award-5",
            Command::AwardGrant {
                application: app("app-5"),
                amount: eur("5000.00"),
                reason: "fits the call".into(),
                decided_on: date("2024-04-12"),
            },
        ),
        request(
            "withdraw-grant-5",
            Command::WithdrawGrant {
                application: app("app-5"),
                reason: "the project did not start".into(),
                decided_on: date("2024-10-01"),
            },
        ),
        request("close-r1", Command::CloseRound { round: r1.clone(), closed_on: date("2024-12-31") }),
        request(
            "revoke-carla",
            Command::RevokeAccess {
                principal: PrincipalId::new(support::AUDITOR).unwrap(),
                reason: "audit done".into(),
            },
        ),
    ]
}

#[tokio::main]
async fn main() {
    let target = fixture();
    assert!(!target.exists(), "{} exists: a fixture is never regenerated, only added to", target.display());
    let building = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(building.path())).unwrap();
    auth::init_admin(&ledger, PrincipalId::new(support::ADMIN).unwrap()).await.unwrap();
    // In batches of 10 commands (one group commit each): from stored
    // format v4 on, keys that hold several records (the first v4 fixture
    // is made so; older fixtures were made one command at a time).
    let commands = fixture_commands();
    for batch in commands.chunks(10) {
        let outcomes = ledger.submit_many(batch.to_vec()).await.unwrap();
        for (command, outcome) in batch.iter().zip(outcomes) {
            outcome.unwrap_or_else(|e| panic!("{}: {e}", command.request_id));
        }
    }
    assert_eq!(ledger.head_seq(), EVENTS);
    // Stopped as a server stops: the projections' checkpoint is stored.
    ledger.shutdown().await;
    drop(ledger);
    // sled's files and the key pair; sled makes `blobs/` again when it is
    // missing (and holds no blobs for records this small).
    copy_dir(building.path(), &target);
}
