//! Access control through a real server on 127.0.0.1:0 (issue 4): every
//! method of every `fundledger.v1` service refuses a caller without a
//! token; every role may call exactly what its role allows, and a refusal
//! records nothing and says what was refused; four eyes and conflicts of
//! interest through the API; revocation; the actor of every event; TLS;
//! tokens only as hashes on disk; request and page limits.

use fundledger::api::auth;
use fundledger::api::pb;
use fundledger::api::server::{ServeOptions, REQUEST_BYTES_MAX};
use fundledger::ledger::{Ledger, LedgerConfig};
use prost::bytes::{Buf, BufMut};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;
use support::{Cast, TestServer, AUDITOR, OFFICER, SECOND_OFFICER};
use tokio_stream::StreamExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Status};

mod support;

// ------------------------------------------------------------------ a fund

fn meta() -> Option<pb::CommandMeta> {
    support::meta("access")
}

fn eur(value: &str) -> Option<pb::Money> {
    Some(pb::Money { value: value.into(), currency: "EUR".into() })
}

fn reason(status: &Status) -> &str {
    status.metadata().get("fundledger-reason").and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Asserts the code and the reason (in the metadata and at the start of
/// the message).
#[track_caller]
fn check_status(status: &Status, code: Code, expected_reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(status), expected_reason, "{status:?}");
    assert!(status.message().starts_with(&format!("{expected_reason}: ")), "{status:?}");
}

fn submit(application: &str, round: &str, amount: &str) -> pb::SubmitApplicationRequest {
    support::punda_application(meta(), application, round, amount, "2024-02-15")
}

fn award(application: &str, amount: &str) -> pb::AwardGrantRequest {
    pb::AwardGrantRequest {
        meta: meta(),
        application_id: application.into(),
        amount: eur(amount),
        reason: "fits the call".into(),
        decided_on: "2024-04-10".into(),
    }
}

fn payment(application: &str, amount: &str) -> pb::MakePaymentRequest {
    pb::MakePaymentRequest {
        meta: meta(),
        application_id: application.into(),
        amount: eur(amount),
        value_date: "2024-05-01".into(),
        bank_reference: "PAY".into(),
    }
}

fn open_round(round: &str) -> pb::OpenRoundRequest {
    pb::OpenRoundRequest {
        meta: meta(),
        round_id: round.into(),
        name: format!("Round {round}"),
        budget_ceiling: eur("200000.00"),
        grant_max: eur("15000.00"),
        opens_on: "2024-02-01".into(),
        closes_on: "2024-12-31".into(),
    }
}

/// The applications of [`fund`]: pending ones for each command that
/// decides on one, and `app-1`, awarded EUR 8,000 and paid EUR 2,000.
const PENDING: [&str; 5] = ["app-withdraw", "app-reject", "app-award", "app-propose", "app-conflict"];

/// A fund on a new ledger: the cast (admin, two officers, an auditor), the
/// partners porticus and bzk with their treasurers, who pledged EUR 50,000
/// and EUR 30,000 (received), rounds `r1` and `r-close`, the pending
/// applications of [`PENDING`], and `app-1` and `app-grant` awarded.
async fn fund(dir: &Path) -> (TestServer, Cast) {
    let server = TestServer::start(dir).await;
    let mut cast = server.cast().await;
    cast.admin()
        .open_fund(pb::OpenFundRequest { meta: meta(), name: "Loket D".into(), currency: "EUR".into(), minor_units: 2 })
        .await
        .unwrap();
    let officer = &mut cast.officer();
    for (partner, amount) in [("porticus", "50000.00"), ("bzk", "30000.00")] {
        cast.admit_partner(partner).await;
        cast.partner(partner)
            .pledge_contribution(pb::PledgeContributionRequest {
                meta: meta(),
                partner_id: partner.into(),
                amount: eur(amount),
                earmark_round_id: None,
                pledged_on: "2024-01-10".into(),
            })
            .await
            .unwrap();
        officer
            .record_receipt(pb::RecordReceiptRequest {
                meta: meta(),
                partner_id: partner.into(),
                amount: eur(amount),
                earmark_round_id: None,
                value_date: "2024-01-20".into(),
                bank_reference: format!("IN-{partner}"),
            })
            .await
            .unwrap();
    }
    for round in ["r1", "r-close"] {
        cast.admin().open_round(open_round(round)).await.unwrap();
    }
    for application in PENDING.into_iter().chain(["app-1", "app-grant"]) {
        officer.submit_application(submit(application, "r1", "12000.00")).await.unwrap();
    }
    officer.award_grant(award("app-1", "8000.00")).await.unwrap();
    officer.make_payment(payment("app-1", "2000.00")).await.unwrap();
    officer.award_grant(award("app-grant", "5000.00")).await.unwrap();
    (server, cast)
}

// ------------------------------------------------------------------ a raw client

/// Sends and receives message bytes as they are: a client for any method
/// of any service, knowing nothing of its types.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Calls `/{service}/{method}` with `body` (an encoded request) and an
/// optional `authorization` value; the status the server answers with, OK
/// when a unary call answered or a stream started.
async fn raw_call(channel: &Channel, path: &str, server_streaming: bool, authorization: Option<&str>) -> Status {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("the channel is ready");
    let mut request = tonic::Request::new(Vec::new());
    if let Some(value) = authorization {
        request.metadata_mut().insert(auth::AUTHORIZATION, value.parse().unwrap());
    }
    let path = PathAndQuery::try_from(path.to_owned()).unwrap();
    let answer = if server_streaming {
        grpc.server_streaming(request, path, RawCodec).await.map(drop)
    } else {
        grpc.unary(request, path, RawCodec).await.map(drop)
    };
    answer.err().unwrap_or_else(|| Status::ok(""))
}

/// Every method of every `fundledger.v1` service, from the descriptors the
/// server is built from: (gRPC path, server streaming).
fn every_method() -> Vec<(String, bool)> {
    let pool = prost_reflect::DescriptorPool::decode(fundledger::api::pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for service in pool.services().filter(|s| s.package_name() == "fundledger.v1") {
        for method in service.methods() {
            assert!(!method.is_client_streaming(), "{} streams requests: call it here", method.full_name());
            methods.push((format!("/{}/{}", service.full_name(), method.name()), method.is_server_streaming()));
        }
    }
    methods
}

// ------------------------------------------------------------------ (a) no credentials

/// Every method of every service, called with an empty request and no
/// token, a token nobody holds, or a header that is not a bearer token,
/// answers UNAUTHENTICATED and records nothing; a new RPC is covered
/// without touching this test. Health and reflection need no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_of_every_service_refuses_a_caller_without_a_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _cast) = fund(dir.path()).await;
    let head = server.ledger.head_seq();
    let methods = every_method();
    let services: BTreeSet<&str> = methods.iter().map(|(path, _)| path.split('/').nth(1).unwrap()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["fundledger.v1.Audit", "fundledger.v1.Export", "fundledger.v1.Ledger"]),
        "the services of the contract"
    );
    assert!(methods.len() >= 39, "the 39 methods of this version at least: {methods:?}");

    let stranger = format!("Bearer {}", auth::new_token().unwrap());
    let credentials = [None, Some(stranger.as_str()), Some("Basic YWRtaW46YWRtaW4="), Some("Bearer ")];
    let mut wrong = Vec::new();
    for (path, streaming) in &methods {
        for authorization in credentials {
            let status = raw_call(&server.channel, path, *streaming, authorization).await;
            let ok = status.code() == Code::Unauthenticated
                && reason(&status) == "unauthenticated"
                && status.message().starts_with("unauthenticated: ");
            if !ok {
                wrong.push(format!("{path} with authorization {authorization:?}: {status:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "not UNAUTHENTICATED:\n{}", wrong.join("\n"));
    assert_eq!(server.ledger.head_seq(), head, "a refused call recorded something");

    // Health and reflection stay open to generic tools.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    for service in ["fundledger.v1.Ledger", "fundledger.v1.Audit", "fundledger.v1.Export"] {
        let answer =
            health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(answer.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service}");
    }
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(server.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("{answer:?}") };
    let listed: BTreeSet<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(services.is_subset(&listed), "reflection lists {listed:?}");
    server.stop().await;
}

// ------------------------------------------------------------------ (b) the matrix

/// Who calls, in the matrix. A partner-scoped request names porticus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Admin,
    Officer,
    /// The treasurer of porticus.
    PartnerOwn,
    /// The treasurer of bzk, asking about porticus.
    PartnerOther,
    Auditor,
}

use Who::*;

const WHO: [Who; 5] = [Admin, Officer, PartnerOwn, PartnerOther, Auditor];

impl Who {
    fn principal(self) -> String {
        match self {
            Admin => support::ADMIN.into(),
            Officer => OFFICER.into(),
            PartnerOwn => support::treasurer("porticus"),
            PartnerOther => support::treasurer("bzk"),
            Auditor => AUDITOR.into(),
        }
    }

    /// The role as a refusal names it.
    fn role(self) -> &'static str {
        match self {
            Admin => "admin",
            Officer => "officer",
            PartnerOwn => "partner porticus",
            PartnerOther => "partner bzk",
            Auditor => "auditor",
        }
    }
}

const ADMIN_ONLY: &[Who] = &[Admin];
const OFFICER_ONLY: &[Who] = &[Officer];
const OWN_PARTNER_ONLY: &[Who] = &[PartnerOwn];
/// Applications, grants, the log, verification and exports.
const DETAIL_READERS: &[Who] = &[Admin, Officer, Auditor];
/// The alliance's shared figures.
const EVERYONE: &[Who] = &[Admin, Officer, PartnerOwn, PartnerOther, Auditor];
/// Porticus's balances: everyone but another partner.
const NOT_OTHER_PARTNERS: &[Who] = &[Admin, Officer, PartnerOwn, Auditor];
const PRINCIPAL_READERS: &[Who] = &[Admin, Auditor];

/// Who may call each RPC: the contract as issue 4 states it, written out
/// here rather than derived from the code under test.
const MATRIX: &[(&str, &[Who])] = &[
    // Ledger: administration.
    ("Ledger/OpenFund", ADMIN_ONLY),
    ("Ledger/AdmitPartner", ADMIN_ONLY),
    ("Ledger/OpenRound", ADMIN_ONLY),
    ("Ledger/CloseRound", ADMIN_ONLY),
    ("Ledger/SetApprovalThresholds", ADMIN_ONLY),
    ("Ledger/GrantAccess", ADMIN_ONLY),
    ("Ledger/RevokeAccess", ADMIN_ONLY),
    // Ledger: a partner's own money.
    ("Ledger/PledgeContribution", OWN_PARTNER_ONLY),
    ("Ledger/ReducePledge", OWN_PARTNER_ONLY),
    // Ledger: grant officers and treasurers.
    ("Ledger/RecordReceipt", OFFICER_ONLY),
    ("Ledger/SubmitApplication", OFFICER_ONLY),
    ("Ledger/WithdrawApplication", OFFICER_ONLY),
    ("Ledger/RejectApplication", OFFICER_ONLY),
    ("Ledger/AwardGrant", OFFICER_ONLY),
    ("Ledger/ReduceGrant", OFFICER_ONLY),
    ("Ledger/WithdrawGrant", OFFICER_ONLY),
    ("Ledger/SettleGrant", OFFICER_ONLY),
    ("Ledger/MakePayment", OFFICER_ONLY),
    ("Ledger/RecordRefund", OFFICER_ONLY),
    ("Ledger/ProposeAward", OFFICER_ONLY),
    ("Ledger/ApproveAward", OFFICER_ONLY),
    ("Ledger/ProposePayment", OFFICER_ONLY),
    ("Ledger/ApprovePayment", OFFICER_ONLY),
    ("Ledger/DeclareConflict", OFFICER_ONLY),
    // A batch of one receipt: the role is checked per command, as if each
    // had come through its own RPC (`call_as` turns its refusal into the
    // call's status).
    ("Ledger/SubmitCommands", OFFICER_ONLY),
    // Ledger: queries.
    ("Ledger/ListPrincipals", PRINCIPAL_READERS),
    ("Ledger/GetPartnerBalances", NOT_OTHER_PARTNERS),
    ("Ledger/GetFundSummary", EVERYONE),
    ("Ledger/GetRoundFigures", EVERYONE),
    ("Ledger/GetApplication", DETAIL_READERS),
    ("Ledger/GetGrant", DETAIL_READERS),
    ("Ledger/ListApplications", DETAIL_READERS),
    ("Ledger/ReadEvents", DETAIL_READERS),
    ("Ledger/Subscribe", DETAIL_READERS),
    // Audit and Export: the whole history.
    ("Audit/VerifyLog", DETAIL_READERS),
    ("Audit/GetCheckpoint", DETAIL_READERS),
    // A backup holds who has access: only those who may read that.
    ("Audit/Backup", PRINCIPAL_READERS),
    ("Export/ExportEvents", DETAIL_READERS),
    ("Export/ExportJournal", DETAIL_READERS),
    ("Export/Export360Giving", DETAIL_READERS),
    ("Export/ExportStatement", DETAIL_READERS),
];

/// The Ledger's RPCs that record nothing; its others are commands.
const LEDGER_QUERIES: &[&str] = &[
    "ListPrincipals",
    "GetPartnerBalances",
    "GetFundSummary",
    "GetRoundFigures",
    "GetApplication",
    "GetGrant",
    "ListApplications",
    "ReadEvents",
    "Subscribe",
];

/// Whether the RPC records events when it goes through.
fn is_command(rpc: &str) -> bool {
    rpc.strip_prefix("Ledger/").is_some_and(|method| !LEDGER_QUERIES.contains(&method))
}

/// The command a refusal of `rpc` names: the RPC's own, or for a batch,
/// the command in it.
fn command_named(rpc: &str) -> &str {
    match rpc {
        "Ledger/SubmitCommands" => "RecordReceipt",
        _ => rpc.split('/').nth(1).unwrap(),
    }
}

/// Calls `rpc` as `who` with a well-formed request (a partner-scoped one
/// names porticus), so that only the caller's role can stop it before the
/// business rules. A stream that starts counts as answered.
async fn call_as(server: &TestServer, cast: &Cast, rpc: &str, who: Who) -> Result<(), Status> {
    let token = cast.token(&who.principal()).to_owned();
    let mut l = server.client(&token);
    let mut audit = server.audit(&token);
    let mut export = server.export(&token);
    let n = support::request_id("n");
    let porticus = || "porticus".to_owned();
    let receipt = || pb::RecordReceiptRequest {
        meta: meta(),
        partner_id: porticus(),
        amount: eur("1.00"),
        earmark_round_id: None,
        value_date: "2024-02-03".into(),
        bank_reference: format!("IN-{n}"),
    };
    match rpc {
        "Ledger/OpenFund" => l
            .open_fund(pb::OpenFundRequest {
                meta: meta(),
                name: "Again".into(),
                currency: "EUR".into(),
                minor_units: 2,
            })
            .await
            .map(drop),
        "Ledger/AdmitPartner" => l
            .admit_partner(pb::AdmitPartnerRequest {
                meta: meta(),
                partner_id: format!("vsbfonds-{n}"),
                name: "VSBfonds".into(),
                organisation_id: "NL-KVK-41179132".into(),
            })
            .await
            .map(drop),
        "Ledger/OpenRound" => l.open_round(open_round(&format!("r-{n}"))).await.map(drop),
        "Ledger/CloseRound" => l
            .close_round(pb::CloseRoundRequest {
                meta: meta(),
                round_id: "r-close".into(),
                closed_on: "2024-06-30".into(),
            })
            .await
            .map(drop),
        "Ledger/SetApprovalThresholds" => l
            .set_approval_thresholds(pb::SetApprovalThresholdsRequest {
                meta: meta(),
                round_id: "r1".into(),
                award_above: eur("14000.00"),
                payment_above: eur("14000.00"),
            })
            .await
            .map(drop),
        "Ledger/GrantAccess" => l
            .grant_access(pb::GrantAccessRequest {
                meta: meta(),
                principal_id: format!("clerk-{n}"),
                role: Some(support::role(pb::RoleKind::Auditor, None)),
                token_sha256: hex::encode(auth::token_sha256(&auth::new_token().unwrap())),
            })
            .await
            .map(drop),
        "Ledger/RevokeAccess" => l
            .revoke_access(pb::RevokeAccessRequest {
                meta: meta(),
                principal_id: "temp-clerk".into(),
                reason: "left the alliance".into(),
            })
            .await
            .map(drop),
        "Ledger/PledgeContribution" => l
            .pledge_contribution(pb::PledgeContributionRequest {
                meta: meta(),
                partner_id: porticus(),
                amount: eur("100.00"),
                earmark_round_id: None,
                pledged_on: "2024-02-01".into(),
            })
            .await
            .map(drop),
        "Ledger/ReducePledge" => l
            .reduce_pledge(pb::ReducePledgeRequest {
                meta: meta(),
                partner_id: porticus(),
                amount: eur("1.00"),
                earmark_round_id: None,
                reason: "budget cut".into(),
                reduced_on: "2024-02-02".into(),
            })
            .await
            .map(drop),
        "Ledger/RecordReceipt" => l.record_receipt(receipt()).await.map(drop),
        "Ledger/SubmitCommands" => {
            let command = pb::BatchCommand { command: Some(pb::batch_command::Command::RecordReceipt(receipt())) };
            let answer =
                l.submit_commands(pb::SubmitCommandsRequest { commands: vec![command], positions_only: false }).await?;
            match answer.into_inner().outcomes.remove(0).outcome.expect("an outcome") {
                pb::command_outcome::Outcome::Accepted(_) => Ok(()),
                other @ pb::command_outcome::Outcome::Recorded(_) => panic!("positions were not asked for: {other:?}"),
                pb::command_outcome::Outcome::Refused(refusal) => {
                    let mut status = Status::new(Code::from(refusal.code), refusal.message);
                    status.metadata_mut().insert("fundledger-reason", refusal.reason.parse().unwrap());
                    Err(status)
                }
            }
        }
        "Ledger/SubmitApplication" => l.submit_application(submit(&format!("m-{n}"), "r1", "1000.00")).await.map(drop),
        "Ledger/WithdrawApplication" => l
            .withdraw_application(pb::WithdrawApplicationRequest {
                meta: meta(),
                application_id: "app-withdraw".into(),
                reason: "found other funding".into(),
                withdrawn_on: "2024-03-01".into(),
            })
            .await
            .map(drop),
        "Ledger/RejectApplication" => l
            .reject_application(pb::RejectApplicationRequest {
                meta: meta(),
                application_id: "app-reject".into(),
                reason: "outside the call".into(),
                decided_on: "2024-04-01".into(),
            })
            .await
            .map(drop),
        "Ledger/AwardGrant" => l.award_grant(award("app-award", "1000.00")).await.map(drop),
        "Ledger/ReduceGrant" => l
            .reduce_grant(pb::ReduceGrantRequest {
                meta: meta(),
                application_id: "app-1".into(),
                amount: eur("100.00"),
                reason: "smaller plan".into(),
                decided_on: "2024-06-01".into(),
            })
            .await
            .map(drop),
        "Ledger/WithdrawGrant" => l
            .withdraw_grant(pb::WithdrawGrantRequest {
                meta: meta(),
                application_id: "app-grant".into(),
                reason: "plan cancelled".into(),
                decided_on: "2024-06-02".into(),
            })
            .await
            .map(drop),
        "Ledger/SettleGrant" => l
            .settle_grant(pb::SettleGrantRequest {
                meta: meta(),
                application_id: "app-1".into(),
                final_amount: eur("7000.00"),
                reason: "final report".into(),
                decided_on: "2024-11-01".into(),
            })
            .await
            .map(drop),
        "Ledger/MakePayment" => l.make_payment(payment("app-1", "100.00")).await.map(drop),
        "Ledger/RecordRefund" => l
            .record_refund(pb::RecordRefundRequest {
                meta: meta(),
                application_id: "app-1".into(),
                amount: eur("50.00"),
                value_date: "2024-09-01".into(),
                bank_reference: format!("BACK-{n}"),
            })
            .await
            .map(drop),
        "Ledger/ProposeAward" => l
            .propose_award(pb::ProposeAwardRequest {
                meta: meta(),
                application_id: "app-propose".into(),
                amount: eur("2000.00"),
                reason: "fits".into(),
                proposed_on: "2024-04-02".into(),
            })
            .await
            .map(drop),
        "Ledger/ApproveAward" => l
            .approve_award(pb::ApproveAwardRequest {
                meta: meta(),
                application_id: "app-propose".into(),
                decided_on: "2024-04-03".into(),
            })
            .await
            .map(drop),
        "Ledger/ProposePayment" => l
            .propose_payment(pb::ProposePaymentRequest {
                meta: meta(),
                application_id: "app-1".into(),
                amount: eur("100.00"),
                value_date: "2024-05-02".into(),
                bank_reference: format!("PAY-{n}"),
            })
            .await
            .map(drop),
        "Ledger/ApprovePayment" => l
            .approve_payment(pb::ApprovePaymentRequest { meta: meta(), application_id: "app-1".into() })
            .await
            .map(drop),
        "Ledger/DeclareConflict" => l
            .declare_conflict(pb::DeclareConflictRequest {
                meta: meta(),
                application_id: "app-conflict".into(),
                reason: "board member of the applicant".into(),
                declared_on: "2024-03-01".into(),
            })
            .await
            .map(drop),
        "Ledger/ListPrincipals" => l.list_principals(pb::ListPrincipalsRequest {}).await.map(drop),
        "Ledger/GetPartnerBalances" => l
            .get_partner_balances(pb::GetPartnerBalancesRequest { partner_id: Some(porticus()), as_of: None })
            .await
            .map(drop),
        "Ledger/GetFundSummary" => l.get_fund_summary(pb::GetFundSummaryRequest { as_of: None }).await.map(drop),
        "Ledger/GetRoundFigures" => {
            l.get_round_figures(pb::GetRoundFiguresRequest { round_id: None, as_of: None }).await.map(drop)
        }
        "Ledger/GetApplication" => {
            l.get_application(pb::GetApplicationRequest { application_id: "app-1".into() }).await.map(drop)
        }
        "Ledger/GetGrant" => l.get_grant(pb::GetGrantRequest { application_id: "app-1".into() }).await.map(drop),
        "Ledger/ListApplications" => l.list_applications(pb::ListApplicationsRequest::default()).await.map(drop),
        "Ledger/ReadEvents" => {
            l.read_events(pb::ReadEventsRequest { from_seq: 1, limit: Some(1), filter: None }).await.map(drop)
        }
        "Ledger/Subscribe" => l.subscribe(pb::SubscribeRequest { from_seq: 1, filter: None }).await.map(drop),
        "Audit/VerifyLog" => audit.verify_log(pb::VerifyLogRequest::default()).await.map(drop),
        "Audit/GetCheckpoint" => audit.get_checkpoint(pb::GetCheckpointRequest {}).await.map(drop),
        // Read to its end, so that the next caller's backup does not find
        // this one still running.
        "Audit/Backup" => match audit.backup(pb::BackupRequest {}).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                while stream.message().await?.is_some() {}
                Ok(())
            }
            Err(status) => Err(status),
        },
        "Export/ExportEvents" => export.export_events(pb::ExportEventsRequest {}).await.map(drop),
        "Export/ExportJournal" => export.export_journal(pb::ExportJournalRequest {}).await.map(drop),
        "Export/Export360Giving" => export.export360_giving(pb::Export360GivingRequest::default()).await.map(drop),
        "Export/ExportStatement" => export
            .export_statement(pb::ExportStatementRequest { partner_id: None, period: None, format: String::new() })
            .await
            .map(drop),
        other => panic!("no request for {other}: add one to `call_as` and a row to MATRIX"),
    }
}

/// Every role calls every RPC. Allowed: a query answers, a command is not
/// refused for who sent it (its business rules may still refuse it).
/// Denied: PERMISSION_DENIED with a message naming the caller, their role
/// and what they may not do, and nothing recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_may_call_exactly_what_its_role_allows() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cast) = fund(dir.path()).await;
    cast.add("temp-clerk", support::role(pb::RoleKind::Auditor, None)).await;

    // The matrix covers every RPC of the contract, and nothing else.
    let in_contract: BTreeSet<String> =
        every_method().into_iter().map(|(path, _)| path.trim_start_matches("/fundledger.v1.").to_owned()).collect();
    let in_matrix: BTreeSet<String> = MATRIX.iter().map(|(rpc, _)| rpc.to_string()).collect();
    assert_eq!(in_matrix, in_contract, "MATRIX must list exactly the RPCs of the contract");

    let mut wrong = Vec::new();
    let mut denials = 0;
    for (rpc, allowed) in MATRIX {
        for who in WHO {
            let head = server.ledger.head_seq();
            let answer = call_as(&server, &cast, rpc, who).await;
            let may = allowed.contains(&who);
            let verdict = match (&answer, may) {
                (Ok(()), true) => None,
                (Err(status), true) if is_command(rpc) => match status.code() {
                    Code::PermissionDenied | Code::Unauthenticated => Some(format!("refused: {status:?}")),
                    _ => None, // a business rule, not the role
                },
                (Err(status), true) => Some(format!("a query that should answer failed: {status:?}")),
                (Ok(()), false) => Some("went through".to_owned()),
                (Err(status), false) => {
                    denials += 1;
                    let refusal = format!("permission_denied: {} ({}) may not ", who.principal(), who.role());
                    if status.code() != Code::PermissionDenied || reason(status) != "permission_denied" {
                        Some(format!("not PERMISSION_DENIED: {status:?}"))
                    } else if !status.message().starts_with(&refusal) {
                        Some(format!("the message does not start with {refusal:?}: {:?}", status.message()))
                    } else if is_command(rpc) && !status.message().ends_with(command_named(rpc)) {
                        Some(format!("the message does not name the command: {:?}", status.message()))
                    } else if server.ledger.head_seq() != head {
                        Some(format!("recorded {} events", server.ledger.head_seq() - head))
                    } else {
                        None
                    }
                }
            };
            if let Some(problem) = verdict {
                wrong.push(format!("{rpc} as {who:?} ({}): {problem}", if may { "allowed" } else { "denied" }));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} calls not as the matrix says:\n{}",
        wrong.len(),
        MATRIX.len() * 5,
        wrong.join("\n")
    );
    assert!(denials > 100, "the matrix denies most calls; only {denials} denials seen");
    server.stop().await;
}

/// The partner-scoped reads in detail: a partner asking for every
/// partner's balances gets its own only; it cannot read another partner's,
/// nor pledge or reduce a pledge for another, and the refusal says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_acts_and_reads_only_for_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cast) = fund(dir.path()).await;
    let bzk = &mut cast.partner("bzk");
    let all = bzk
        .get_partner_balances(pb::GetPartnerBalancesRequest { partner_id: None, as_of: None })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = all.partners.iter().map(|p| p.partner_id.as_str()).collect();
    assert_eq!(ids, ["bzk"], "a partner asking for all balances sees its own only");
    let auditor_sees = cast
        .auditor()
        .get_partner_balances(pb::GetPartnerBalancesRequest { partner_id: None, as_of: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(auditor_sees.partners.len(), 2);

    let head = server.ledger.head_seq();
    let err = bzk
        .get_partner_balances(pb::GetPartnerBalancesRequest { partner_id: Some("porticus".into()), as_of: None })
        .await
        .unwrap_err();
    check_status(&err, Code::PermissionDenied, "permission_denied");
    assert!(err.message().contains("treasurer-bzk") && err.message().contains("porticus"), "{err:?}");
    let err = bzk
        .pledge_contribution(pb::PledgeContributionRequest {
            meta: meta(),
            partner_id: "porticus".into(),
            amount: eur("1000.00"),
            earmark_round_id: None,
            pledged_on: "2024-02-01".into(),
        })
        .await
        .unwrap_err();
    check_status(&err, Code::PermissionDenied, "permission_denied");
    assert!(err.message().contains("treasurer-bzk (partner bzk) may not PledgeContribution"), "{err:?}");
    // A partner reads no dossier, not even one its money funds.
    let err = bzk.get_grant(pb::GetGrantRequest { application_id: "app-1".into() }).await.unwrap_err();
    check_status(&err, Code::PermissionDenied, "permission_denied");
    assert_eq!(server.ledger.head_seq(), head, "nothing recorded");

    // Its own pledge goes through and names it.
    let own = bzk
        .pledge_contribution(pb::PledgeContributionRequest {
            meta: meta(),
            partner_id: "bzk".into(),
            amount: eur("1000.00"),
            earmark_round_id: None,
            pledged_on: "2024-02-01".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.events[0].actor, "treasurer-bzk");
    server.stop().await;
}

/// The auditor reads everything and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_reads_everything_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cast) = fund(dir.path()).await;
    let auditor = &mut cast.auditor();
    let head = server.ledger.head_seq();
    let refusals = [
        auditor.submit_application(submit("app-by-auditor", "r1", "100.00")).await.unwrap_err(),
        auditor.award_grant(award("app-award", "100.00")).await.unwrap_err(),
        auditor.open_round(open_round("r-auditor")).await.unwrap_err(),
        auditor
            .grant_access(pb::GrantAccessRequest {
                meta: meta(),
                principal_id: "auditor-friend".into(),
                role: Some(support::role(pb::RoleKind::Admin, None)),
                token_sha256: hex::encode([7u8; 32]),
            })
            .await
            .unwrap_err(),
    ];
    for err in &refusals {
        check_status(err, Code::PermissionDenied, "permission_denied");
        assert!(err.message().starts_with("permission_denied: auditor-carla (auditor) may not "), "{err:?}");
    }
    assert_eq!(server.ledger.head_seq(), head, "the auditor recorded something");
    let events: Vec<_> = auditor
        .read_events(pb::ReadEventsRequest { from_seq: 1, limit: None, filter: None })
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(events.len() as u64, head);
    let principals = auditor.list_principals(pb::ListPrincipalsRequest {}).await.unwrap().into_inner();
    assert!(principals.principals.iter().any(|p| p.principal_id == AUDITOR));
    server.stop().await;
}

// ------------------------------------------------------------------ (c) four eyes

/// With round thresholds, an officer alone may award or pay up to them;
/// above them it takes a proposal and a second officer's approval, the
/// proposer cannot approve, and the log names both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_awards_and_payments_need_a_second_officer() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cast) = fund(dir.path()).await;
    cast.admin()
        .set_approval_thresholds(pb::SetApprovalThresholdsRequest {
            meta: meta(),
            round_id: "r1".into(),
            award_above: eur("10000.00"),
            payment_above: eur("5000.00"),
        })
        .await
        .unwrap();
    let anna = &mut cast.officer();
    let bram = &mut cast.second_officer();
    for application in ["big-1", "at-threshold"] {
        anna.submit_application(submit(application, "r1", "15000.00")).await.unwrap();
    }

    // Up to the threshold, one officer decides.
    anna.award_grant(award("at-threshold", "10000.00")).await.unwrap();
    // Above it, not alone.
    let head = server.ledger.head_seq();
    let err = anna.award_grant(award("big-1", "12000.00")).await.unwrap_err();
    check_status(&err, Code::FailedPrecondition, "four_eyes_required");
    assert!(err.message().contains("EUR 12,000.00") && err.message().contains("EUR 10,000.00"), "{err:?}");
    assert_eq!(server.ledger.head_seq(), head);

    let proposal = pb::ProposeAwardRequest {
        meta: meta(),
        application_id: "big-1".into(),
        amount: eur("12000.00"),
        reason: "strong local support".into(),
        proposed_on: "2024-04-01".into(),
    };
    anna.propose_award(proposal).await.unwrap();
    let approve =
        || pb::ApproveAwardRequest { meta: meta(), application_id: "big-1".into(), decided_on: "2024-04-05".into() };
    let head = server.ledger.head_seq();
    let err = anna.approve_award(approve()).await.unwrap_err();
    check_status(&err, Code::FailedPrecondition, "self_approval");
    assert!(err.message().contains(OFFICER), "{err:?}");
    assert_eq!(server.ledger.head_seq(), head);
    let approved = bram.approve_award(approve()).await.unwrap().into_inner();
    let Some(pb::recorded_event::Payload::GrantAwarded(awarded)) = &approved.events[0].payload else {
        panic!("{approved:?}")
    };
    assert_eq!(
        (awarded.decided_by.as_str(), awarded.amount.as_ref().unwrap().value.as_str()),
        (SECOND_OFFICER, "12000.00")
    );

    // Payments above EUR 5,000 likewise.
    let head = server.ledger.head_seq();
    let err = anna.make_payment(payment("big-1", "6000.00")).await.unwrap_err();
    check_status(&err, Code::FailedPrecondition, "four_eyes_required");
    assert_eq!(server.ledger.head_seq(), head);
    anna.make_payment(payment("big-1", "5000.00")).await.unwrap();
    anna.propose_payment(pb::ProposePaymentRequest {
        meta: meta(),
        application_id: "big-1".into(),
        amount: eur("7000.00"),
        value_date: "2024-06-01".into(),
        bank_reference: "PAY-2".into(),
    })
    .await
    .unwrap();
    let approve = || pb::ApprovePaymentRequest { meta: meta(), application_id: "big-1".into() };
    let err = anna.approve_payment(approve()).await.unwrap_err();
    check_status(&err, Code::FailedPrecondition, "self_approval");
    bram.approve_payment(approve()).await.unwrap();

    // The log names both officers of each decision.
    let history = cast
        .auditor()
        .get_grant(pb::GetGrantRequest { application_id: "big-1".into() })
        .await
        .unwrap()
        .into_inner()
        .history;
    let named: Vec<(&str, &str, String)> = history
        .iter()
        .map(|e| {
            let by = match &e.payload {
                Some(pb::recorded_event::Payload::AwardProposed(p)) => p.proposed_by.clone(),
                Some(pb::recorded_event::Payload::GrantAwarded(a)) => a.decided_by.clone(),
                Some(pb::recorded_event::Payload::PaymentProposed(p)) => p.proposed_by.clone(),
                _ => String::new(),
            };
            (e.event_type.as_str(), e.actor.as_str(), by)
        })
        .collect();
    assert_eq!(
        named,
        [
            ("ApplicationSubmitted", OFFICER, String::new()),
            ("AwardProposed", OFFICER, OFFICER.to_owned()),
            ("GrantAwarded", SECOND_OFFICER, SECOND_OFFICER.to_owned()),
            ("PaymentMade", OFFICER, String::new()),
            ("PaymentProposed", OFFICER, OFFICER.to_owned()),
            ("PaymentMade", SECOND_OFFICER, String::new()),
        ]
    );

    // Thresholds are per round: without one, an officer awards alone.
    cast.admin().open_round(open_round("r2")).await.unwrap();
    anna.submit_application(submit("r2-big", "r2", "15000.00")).await.unwrap();
    anna.award_grant(award("r2-big", "12000.00")).await.unwrap();
    server.stop().await;
}

// ------------------------------------------------------------------ (d) conflicts of interest

/// An officer who declared a conflict on an application can neither
/// decide, approve nor pay on it; another officer can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_with_a_conflict_of_interest_cannot_decide_approve_or_pay() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cast) = fund(dir.path()).await;
    cast.add("officer-cees", support::role(pb::RoleKind::Officer, None)).await;
    let anna = &mut cast.officer();
    let bram = &mut cast.second_officer();
    let declare = || pb::DeclareConflictRequest {
        meta: meta(),
        application_id: "app-conflict".into(),
        reason: "board member of the applicant".into(),
        declared_on: "2024-03-01".into(),
    };
    let declared = anna.declare_conflict(declare()).await.unwrap().into_inner();
    let Some(pb::recorded_event::Payload::ConflictDeclared(conflict)) = &declared.events[0].payload else {
        panic!("{declared:?}")
    };
    assert_eq!((conflict.officer.as_str(), declared.events[0].actor.as_str()), (OFFICER, OFFICER));
    check_status(
        &anna.declare_conflict(declare()).await.unwrap_err(),
        Code::FailedPrecondition,
        "conflict_already_declared",
    );

    let head = server.ledger.head_seq();
    let refused = [
        anna.award_grant(award("app-conflict", "5000.00")).await.unwrap_err(),
        anna.reject_application(pb::RejectApplicationRequest {
            meta: meta(),
            application_id: "app-conflict".into(),
            reason: "no".into(),
            decided_on: "2024-04-01".into(),
        })
        .await
        .unwrap_err(),
        anna.propose_award(pb::ProposeAwardRequest {
            meta: meta(),
            application_id: "app-conflict".into(),
            amount: eur("5000.00"),
            reason: "fits".into(),
            proposed_on: "2024-04-01".into(),
        })
        .await
        .unwrap_err(),
    ];
    for err in &refused {
        check_status(err, Code::FailedPrecondition, "conflict_of_interest");
        assert!(err.message().contains(OFFICER) && err.message().contains("app-conflict"), "{err:?}");
    }
    assert_eq!(server.ledger.head_seq(), head);

    // Another officer proposes; the conflicted one may not approve.
    bram.propose_award(pb::ProposeAwardRequest {
        meta: meta(),
        application_id: "app-conflict".into(),
        amount: eur("5000.00"),
        reason: "fits".into(),
        proposed_on: "2024-04-01".into(),
    })
    .await
    .unwrap();
    let approve = || pb::ApproveAwardRequest {
        meta: meta(),
        application_id: "app-conflict".into(),
        decided_on: "2024-04-02".into(),
    };
    check_status(&anna.approve_award(approve()).await.unwrap_err(), Code::FailedPrecondition, "conflict_of_interest");
    // A third officer approves; the conflicted one may not pay on the grant
    // either.
    let approved = cast.client("officer-cees").approve_award(approve()).await.unwrap().into_inner();
    assert_eq!(approved.events[0].event_type, "GrantAwarded");
    let conflicted_pay = anna.make_payment(payment("app-conflict", "100.00")).await.unwrap_err();
    check_status(&conflicted_pay, Code::FailedPrecondition, "conflict_of_interest");
    let application = cast
        .auditor()
        .get_application(pb::GetApplicationRequest { application_id: "app-conflict".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(application.application.unwrap().conflicts, [OFFICER]);
    server.stop().await;
}

// ------------------------------------------------------------------ (e) revocation

/// A revoked token stops working at once; the principal stays listed as
/// revoked, and the revocation is an event by the admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cast) = fund(dir.path()).await;
    cast.add("officer-cees", support::role(pb::RoleKind::Officer, None)).await;
    let cees = &mut cast.client("officer-cees");
    cees.submit_application(submit("by-cees", "r1", "1000.00")).await.unwrap();
    // A subscription opened before the revocation ends with it.
    let mut following = cees
        .subscribe(pb::SubscribeRequest { from_seq: server.ledger.head_seq() + 1, filter: None })
        .await
        .unwrap()
        .into_inner();
    let revoked = cast
        .admin()
        .revoke_access(pb::RevokeAccessRequest {
            meta: meta(),
            principal_id: "officer-cees".into(),
            reason: "left the fund".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (revoked.events[0].event_type.as_str(), revoked.events[0].stream.as_str(), revoked.events[0].actor.as_str()),
        ("AccessRevoked", "principal/officer-cees", support::ADMIN)
    );
    let head = server.ledger.head_seq();
    let err = cees.submit_application(submit("by-cees-2", "r1", "1000.00")).await.unwrap_err();
    check_status(&err, Code::Unauthenticated, "unauthenticated");
    let err = cees.get_fund_summary(pb::GetFundSummaryRequest { as_of: None }).await.unwrap_err();
    check_status(&err, Code::Unauthenticated, "unauthenticated");
    assert!(err.message().contains("revoked"), "{err:?}");
    assert_eq!(server.ledger.head_seq(), head);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match following.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the subscription ended without saying why"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("a revoked principal's subscription must end");
    check_status(&ended, Code::Unauthenticated, "unauthenticated");
    let listed = cast.auditor().list_principals(pb::ListPrincipalsRequest {}).await.unwrap().into_inner();
    let cees = listed.principals.iter().find(|p| p.principal_id == "officer-cees").expect("still listed");
    assert!(cees.revoked);
    server.stop().await;
}

// ------------------------------------------------------------------ (f) the actor of every event

/// Every event's envelope names the principal whose command recorded it:
/// the events each command answered name its sender, and the whole log
/// read back agrees, with every actor a principal of the ledger (`init`
/// for the first admin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_names_the_actor_of_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cast) = fund(dir.path()).await;
    let mut expected: BTreeMap<u64, String> = BTreeMap::new();
    let mut note = |principal: &str, response: pb::CommandResponse| {
        assert!(!response.events.is_empty());
        for event in response.events {
            assert_eq!(event.actor, principal, "{event:?}");
            expected.insert(event.seq, principal.to_owned());
        }
    };
    let from = server.ledger.head_seq() + 1;
    note(support::ADMIN, cast.admin().open_round(open_round("r-actors")).await.unwrap().into_inner());
    let treasurer = support::treasurer("porticus");
    let pledge = pb::PledgeContributionRequest {
        meta: meta(),
        partner_id: "porticus".into(),
        amount: eur("10.00"),
        earmark_round_id: None,
        pledged_on: "2024-03-01".into(),
    };
    note(&treasurer, cast.partner("porticus").pledge_contribution(pledge).await.unwrap().into_inner());
    note(OFFICER, cast.officer().submit_application(submit("actors-1", "r1", "500.00")).await.unwrap().into_inner());
    note(SECOND_OFFICER, cast.second_officer().award_grant(award("actors-1", "500.00")).await.unwrap().into_inner());
    note(OFFICER, cast.officer().make_payment(payment("actors-1", "500.00")).await.unwrap().into_inner());

    let events: Vec<pb::RecordedEvent> = cast
        .auditor()
        .read_events(pb::ReadEventsRequest { from_seq: 1, limit: None, filter: None })
        .await
        .unwrap()
        .into_inner()
        .map(|e| e.unwrap())
        .collect()
        .await;
    let principals: BTreeSet<String> = cast
        .auditor()
        .list_principals(pb::ListPrincipalsRequest {})
        .await
        .unwrap()
        .into_inner()
        .principals
        .into_iter()
        .map(|p| p.principal_id)
        .collect();
    assert_eq!(events.len() as u64, server.ledger.head_seq());
    assert_eq!((events[0].event_type.as_str(), events[0].actor.as_str()), ("AccessGranted", "init"));
    for event in &events[1..] {
        assert!(principals.contains(&event.actor), "event {} names {:?}, not a principal", event.seq, event.actor);
    }
    let noted: BTreeMap<u64, String> =
        events.iter().filter(|e| e.seq >= from).map(|e| (e.seq, e.actor.clone())).collect();
    assert_eq!(noted, expected, "the log read back names the senders the commands answered");
    // The setup's events name their roles too: access by the admin,
    // pledges by the partner's treasurer, receipts by an officer.
    for event in &events[1..from as usize - 1] {
        let want = match event.event_type.as_str() {
            "AccessGranted" | "FundOpened" | "PartnerAdmitted" | "RoundOpened" => support::ADMIN.to_owned(),
            "ContributionPledged" => support::treasurer(event.stream.trim_start_matches("partner/")),
            _ => OFFICER.to_owned(),
        };
        assert_eq!(event.actor, want, "{} at {}", event.event_type, event.seq);
    }
    server.stop().await;
}

// ------------------------------------------------------------------ (g) TLS

/// A CA, and a certificate for `localhost` it signed: (CA PEM, server
/// certificate PEM, server key PEM).
fn certificates(ca_name: &str) -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = server.signed_by(&key, &Issuer::from_params(&ca, &ca_key)).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// A TLS channel to 127.0.0.1:`port` that trusts `ca_pem` and expects the
/// name `localhost`.
async fn tls_channel(port: u16, ca_pem: &str) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name("localhost"))?
        .connect()
        .await
}

/// Served over TLS with a certificate made here: a client trusting its CA
/// makes authenticated calls; a plaintext client and one trusting another
/// CA get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_round_trip_with_a_certificate_made_in_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates("fundledger test CA");
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let admin = auth::init_admin(&ledger, fundledger::domain::PrincipalId::new(support::ADMIN).unwrap()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ServeOptions { tls: Some(Identity::from_pem(cert, key)) };
    let task = tokio::spawn(fundledger::api::server::serve_with(
        ledger.clone(),
        listener,
        async {
            let _ = stopped.await;
        },
        options,
    ));

    let channel = tls_channel(port, &ca).await.expect("a TLS client trusting the CA connects");
    let mut client = auth::client(channel, &admin).unwrap();
    let principals = client.list_principals(pb::ListPrincipalsRequest {}).await.unwrap().into_inner();
    assert_eq!(principals.principals[0].principal_id, support::ADMIN);
    let opened = client
        .open_fund(pb::OpenFundRequest { meta: meta(), name: "Loket D".into(), currency: "EUR".into(), minor_units: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((opened.events[0].event_type.as_str(), opened.events[0].actor.as_str()), ("FundOpened", "admin"));
    // Over TLS too, no token is no access.
    let anonymous = tls_channel(port, &ca).await.unwrap();
    let err = pb::ledger_client::LedgerClient::new(anonymous)
        .get_fund_summary(pb::GetFundSummaryRequest { as_of: None })
        .await
        .unwrap_err();
    check_status(&err, Code::Unauthenticated, "unauthenticated");

    // Plaintext to a TLS server: no answer.
    let plaintext = async {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect()
            .await?;
        let answer =
            auth::client(channel, &admin).unwrap().get_fund_summary(pb::GetFundSummaryRequest { as_of: None }).await;
        Ok::<_, tonic::transport::Error>(answer)
    };
    match tokio::time::timeout(Duration::from_secs(20), plaintext).await.expect("the plaintext attempt ends") {
        Err(_connect_error) => {}
        Ok(answer) => assert!(answer.is_err(), "a plaintext client got an answer from the TLS server: {answer:?}"),
    }
    // A client that trusts another CA refuses the server's certificate.
    let (other_ca, _, _) = certificates("another CA");
    let untrusting = async {
        let channel = tls_channel(port, &other_ca).await?;
        Ok::<_, tonic::transport::Error>(
            auth::client(channel, &admin).unwrap().get_fund_summary(pb::GetFundSummaryRequest { as_of: None }).await,
        )
    };
    match tokio::time::timeout(Duration::from_secs(20), untrusting).await.expect("the untrusting attempt ends") {
        Err(_connect_error) => {}
        Ok(answer) => assert!(answer.is_err(), "a client trusting another CA got an answer: {answer:?}"),
    }

    let _ = stop.send(());
    task.await.unwrap().unwrap();
    ledger.shutdown().await;
}

// ------------------------------------------------------------------ (h) tokens on disk

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            all.extend(files(&entry.path()));
        } else {
            all.push((entry.path(), std::fs::read(entry.path()).unwrap()));
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// After principals were given access, no file of the data directory holds
/// any of their tokens, whole, as hex digits or as raw bytes; each token's
/// SHA-256 is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_holds_token_hashes_only() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cast) = fund(dir.path()).await;
    server.stop().await;
    let files = files(dir.path());
    assert!(files.len() > 1, "{files:?}");
    assert_eq!(cast.tokens.len(), 6, "admin, two officers, an auditor, two treasurers");
    for (principal, token) in &cast.tokens {
        let hex_part = token.strip_prefix(auth::TOKEN_PREFIX).expect("a token starts with its prefix");
        let secrets: [(&str, Vec<u8>); 3] = [
            ("the token", token.as_bytes().to_vec()),
            ("its hex digits", hex_part.as_bytes().to_vec()),
            ("its random bytes", hex::decode(hex_part).unwrap()),
        ];
        for (path, bytes) in &files {
            for (what, secret) in &secrets {
                assert!(!contains(bytes, secret), "{} holds {what} of {principal}", path.display());
            }
        }
        let hash = auth::token_sha256(token);
        assert!(
            files.iter().any(|(_, bytes)| contains(bytes, &hash)),
            "the SHA-256 of {principal}'s token is stored nowhere: is the data read at all?"
        );
    }
}

// ------------------------------------------------------------------ (i) limits

/// A request above the server's maximum size is refused with a clear status
/// before it is decoded, records nothing and leaves the server serving; a
/// page size above the maximum is INVALID_ARGUMENT naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_pages_above_the_limits_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cast) = fund(dir.path()).await;
    let officer = &mut cast.officer();
    let head = server.ledger.head_seq();
    let mut huge = submit("huge", "r1", "100.00");
    huge.description = "x".repeat(REQUEST_BYTES_MAX + 1);
    let err = officer.submit_application(huge).await.unwrap_err();
    assert!(matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted), "{err:?}");
    assert!(err.message().contains("too large"), "{err:?}");
    assert!(err.message().contains(&REQUEST_BYTES_MAX.to_string()), "the limit is named: {err:?}");
    assert_eq!(server.ledger.head_seq(), head);
    // Without a token the size is refused all the same, before anything.
    let mut raw = tonic::client::Grpc::new(server.channel.clone());
    raw.ready().await.unwrap();
    let path = PathAndQuery::from_static("/fundledger.v1.Ledger/SubmitApplication");
    let err = raw.unary(tonic::Request::new(vec![0u8; REQUEST_BYTES_MAX + 1]), path, RawCodec).await.unwrap_err();
    assert!(matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted), "{err:?}");
    // Still serving.
    officer.submit_application(submit("after-huge", "r1", "100.00")).await.unwrap();

    let list = |page_size: u32| pb::ListApplicationsRequest { page_size, ..Default::default() };
    let err = officer.list_applications(list(501)).await.unwrap_err();
    check_status(&err, Code::InvalidArgument, "invalid_field");
    assert_eq!(err.metadata().get("fundledger-field").unwrap(), "page_size");
    assert!(err.message().contains("500"), "{err:?}");
    let page = officer.list_applications(list(500)).await.unwrap().into_inner();
    assert_eq!(page.applications.len(), PENDING.len() + 3);
    let first = officer.list_applications(list(2)).await.unwrap().into_inner();
    assert_eq!(first.applications.len(), 2);
    assert!(!first.next_page_token.is_empty());
    server.stop().await;
}
