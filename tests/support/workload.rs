//! A realistic write load through the API for the process-level tests
//! (`tests/shutdown.rs`, `tests/crash.rs`): a fund with one partner per
//! client, each client the partner's treasurer (who pledges) and an officer
//! (who records the receipt of the pledge and registers applications), and
//! the classification of every answer.

use super::process::{meta, ServerProcess};
use fundledger::api::auth::{self, Client};
use fundledger::api::pb;
use fundledger::api::service::REASON_METADATA_KEY;
use std::collections::BTreeMap;
use tonic::{Code, Status};

/// The principals of the fund the load runs against, by token.
#[derive(Clone, Debug)]
pub struct Fund {
    pub admin: String,
    pub officer: String,
    /// Per client `c`: partner `partner-{c}`'s treasurer's token.
    pub treasurers: Vec<String>,
}

pub fn partner_id(client: usize) -> String {
    format!("partner-{client}")
}

/// Opens the fund and a round, admits one partner per client and gives
/// access to an officer and each partner's treasurer (as the admin, through
/// the API; fixed request ids, so that it can be retried after a crash).
pub async fn set_up_fund(server: &ServerProcess, admin_token: &str, clients: usize) -> Fund {
    let mut admin = server.client(admin_token).await;
    admin
        .open_fund(pb::OpenFundRequest {
            meta: meta("setup-open-fund"),
            name: "Loket D".into(),
            currency: "EUR".into(),
            minor_units: 2,
        })
        .await
        .unwrap();
    admin
        .open_round(pb::OpenRoundRequest {
            meta: meta("setup-open-round"),
            round_id: "r1".into(),
            name: "Round 1".into(),
            budget_ceiling: Some(eur("1000000")),
            grant_max: Some(eur("15000")),
            opens_on: "2024-02-01".into(),
            closes_on: "2024-03-31".into(),
        })
        .await
        .unwrap();
    let officer = grant(&mut admin, "officer-anna", pb::RoleKind::Officer, None).await;
    let mut treasurers = Vec::with_capacity(clients);
    for c in 0..clients {
        let partner = partner_id(c);
        admin
            .admit_partner(pb::AdmitPartnerRequest {
                meta: meta(&format!("setup-admit-{partner}")),
                partner_id: partner.clone(),
                name: partner.to_uppercase(),
                organisation_id: format!("NL-KVK-{c}"),
            })
            .await
            .unwrap();
        treasurers
            .push(grant(&mut admin, &format!("treasurer-{partner}"), pb::RoleKind::Partner, Some(&partner)).await);
    }
    Fund { admin: admin_token.to_owned(), officer, treasurers }
}

async fn grant(admin: &mut Client, principal: &str, kind: pb::RoleKind, partner: Option<&str>) -> String {
    let token = auth::new_token().unwrap();
    admin
        .grant_access(pb::GrantAccessRequest {
            meta: meta(&format!("setup-grant-{principal}")),
            principal_id: principal.into(),
            role: Some(pb::Role { kind: kind as i32, partner_id: partner.map(str::to_owned) }),
            token_sha256: hex::encode(auth::token_sha256(&token)),
        })
        .await
        .unwrap();
    token
}

fn eur(value: &str) -> pb::Money {
    pb::Money { value: value.into(), currency: "EUR".into() }
}

/// One client's command: the `n`th of client `client`.
#[derive(Clone, Debug, PartialEq)]
pub enum Cmd {
    Pledge(pb::PledgeContributionRequest),
    Receipt(pb::RecordReceiptRequest),
    Application(pb::SubmitApplicationRequest),
}

impl Cmd {
    /// Client `client`'s `n`th command: a pledge, the receipt of that
    /// pledge, an application; again. Each is valid whatever the client's
    /// earlier commands were, as long as each of those was recorded once,
    /// so a retry after a crash is accepted if it was not recorded before.
    pub fn nth(client: usize, n: u64) -> Cmd {
        let id = format!("c{client}-{n}");
        let partner = partner_id(client);
        // Cents that differ per command, so that a double would show in sums.
        let amount = format!("{}.{:02}", 100 + n % 900, n % 100);
        match n % 3 {
            0 => Cmd::Pledge(pb::PledgeContributionRequest {
                meta: meta(&id),
                partner_id: partner,
                amount: Some(eur(&amount)),
                earmark_round_id: None,
                pledged_on: "2024-01-10".into(),
            }),
            1 => {
                // The receipt of the pledge just before, in full.
                let Cmd::Pledge(pledge) = Cmd::nth(client, n - 1) else { unreachable!() };
                Cmd::Receipt(pb::RecordReceiptRequest {
                    meta: meta(&id),
                    partner_id: partner,
                    amount: pledge.amount,
                    earmark_round_id: None,
                    value_date: "2024-01-20".into(),
                    bank_reference: format!("NL91ABNA0417164300 {id}"),
                })
            }
            _ => Cmd::Application(pb::SubmitApplicationRequest {
                meta: meta(&id),
                application_id: format!("app-{id}"),
                round_id: "r1".into(),
                applicant: Some(pb::Applicant {
                    name: "Bewonersgroep".into(),
                    organisation_id: Default::default(),
                    place: "Groningen".into(),
                    country: "NL".into(),
                }),
                title: "Buurtgesprekken".into(),
                description: String::new(),
                amount_requested: Some(eur("1000.00")),
                submitted_on: "2024-02-15".into(),
            }),
        }
    }

    pub fn request_id(&self) -> &str {
        let meta = match self {
            Cmd::Pledge(r) => &r.meta,
            Cmd::Receipt(r) => &r.meta,
            Cmd::Application(r) => &r.meta,
        };
        &meta.as_ref().unwrap().request_id
    }

    /// Sends it: a pledge as the partner's treasurer, the rest as the officer.
    pub async fn send(&self, treasurer: &mut Client, officer: &mut Client) -> Result<pb::CommandResponse, Status> {
        let answer = match self.clone() {
            Cmd::Pledge(r) => treasurer.pledge_contribution(r).await,
            Cmd::Receipt(r) => officer.record_receipt(r).await,
            Cmd::Application(r) => officer.submit_application(r).await,
        };
        answer.map(tonic::Response::into_inner)
    }
}

/// What an answer says about a command.
#[derive(Debug)]
pub enum Outcome {
    /// Recorded and durable.
    Acknowledged(pb::CommandResponse),
    /// The server answered UNAVAILABLE: it did not take the command
    /// (shutting down), or could not make it durable (a storage failure:
    /// outcome unknown). Either way the client may retry it.
    Unavailable(Status),
    /// No answer from the server: the connection failed or was closed
    /// before one came. The command may or may not be recorded.
    Transport(Status),
}

impl Outcome {
    /// Classifies an answer; anything but the three outcomes above (an
    /// INTERNAL, a rejection of a command that is valid, …) is an error.
    pub fn of(answer: Result<pb::CommandResponse, Status>) -> Result<Outcome, Status> {
        let status = match answer {
            Ok(response) => return Ok(Outcome::Acknowledged(response)),
            Err(status) => status,
        };
        // The server's own statuses carry its reason code; the client
        // library's (connection refused, reset, closed) do not.
        let from_server = status.metadata().get(REASON_METADATA_KEY).is_some();
        match (from_server, status.code()) {
            (true, Code::Unavailable) => Ok(Outcome::Unavailable(status)),
            (false, Code::Unavailable | Code::Unknown | Code::Cancelled) => Ok(Outcome::Transport(status)),
            // The server's graceful GOAWAY (shutting down) can end a call the
            // client had just sent on that connection; the client library
            // reports it as INTERNAL "h2 protocol error". No answer came.
            (false, Code::Internal) if format!("{status:?}").contains("GoAway") => Ok(Outcome::Transport(status)),
            _ => Err(status),
        }
    }

    /// The server's reason code, if it answered.
    pub fn reason(status: &Status) -> Option<&str> {
        status.metadata().get(REASON_METADATA_KEY).and_then(|v| v.to_str().ok())
    }
}

/// Reads the whole log through `ReadEvents` and returns, per request id,
/// the sequence numbers of its events; panics if a request's events are
/// not one contiguous run (recorded twice) or the sequence has a gap.
pub async fn events_by_request(client: &mut Client) -> BTreeMap<String, Vec<u64>> {
    use tokio_stream::StreamExt;
    let mut stream = client
        .read_events(pb::ReadEventsRequest { from_seq: 1, limit: None, filter: None })
        .await
        .unwrap()
        .into_inner();
    let mut by_request: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let (mut last_request, mut expected_seq) = (String::new(), 1);
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        assert_eq!(event.seq, expected_seq, "the sequence has a gap");
        expected_seq += 1;
        let seqs = by_request.entry(event.request_id.clone()).or_default();
        assert!(seqs.is_empty() || last_request == event.request_id, "request {} was recorded twice", event.request_id);
        seqs.push(event.seq);
        last_request = event.request_id;
    }
    by_request
}

pub fn seqs(response: &pb::CommandResponse) -> Vec<u64> {
    response.events.iter().map(|e| e.seq).collect()
}
