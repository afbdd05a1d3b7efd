//! `fundledger demo`: the Loket D story, told through the real gRPC API.
//!
//! The alliance's partners pledge and pay in; three rounds open; in rounds 1
//! and 2 together 322 applications are handled and 159 awarded for more than
//! EUR 2,000,000 (none above EUR 15,000), from places across the Netherlands
//! and Curaçao; advances and final payments in tranches, a few refunds,
//! withdrawals and settlements below the award. Every figure comes from a
//! fixed seed, so every run prints the same balances (the hashes differ:
//! they cover the recording time).
//!
//! The demo starts a server on `127.0.0.1:0` over its own ledger, drives it
//! only through the client, prints the balances and round figures, then
//! stops the server and verifies the log and a full replay.
//!
//! Partner names are the model case's; organisation identifiers and bank
//! references are illustrative, not real registrations.

// Cents are written as `15_000_00` so that they read as EUR 15,000.00.
#![allow(clippy::inconsistent_digit_grouping)]

use crate::api::auth::{self, Client};
use crate::api::pb;
use crate::ledger::{Ledger, LedgerConfig};
use anyhow::{bail, ensure, Context as _};
use std::path::PathBuf;
use tonic::transport::Channel;

/// Applications handled in rounds 1 and 2, and how many were awarded — the
/// figures of the model case.
const ROUND_1_APPLICATIONS: usize = 170;
const ROUND_2_APPLICATIONS: usize = 152;
const ROUND_1_AWARDS: usize = 82;
const ROUND_2_AWARDS: usize = 77;
const ROUND_1_WITHDRAWN: usize = 6;
const ROUND_2_WITHDRAWN: usize = 5;
const ROUND_3_APPLICATIONS: usize = 24;
/// Awards above this (cents) need four eyes from round 2 on.
const FOUR_EYES_AWARD_ABOVE: i64 = 14_000_00;
/// The fixed seed of the scenario.
const SEED: u64 = 0x4c6f_6b65_7444; // "LoketD"

pub struct DemoConfig {
    /// Where to keep the ledger; a temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
}

/// Runs the demo; fails (non-zero exit) if any figure is off or the log
/// does not verify.
pub async fn run(config: DemoConfig) -> anyhow::Result<()> {
    let temp;
    let keep = config.data_dir.is_some();
    let data_dir = match config.data_dir {
        Some(dir) => {
            if dir.join("db").exists() {
                bail!(
                    "{} already holds a ledger; the demo writes a new one, so give it an empty or new directory",
                    dir.display()
                );
            }
            dir
        }
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path().to_owned()
        }
    };
    let ledger = Ledger::open(LedgerConfig::new(&data_dir))?;
    // The alliance's administrator is created in-process, as `fundledger
    // init` does; everyone else gets access through the API.
    let admin_token = auth::init_admin(&ledger, crate::domain::PrincipalId::new("alliance-admin")?).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::api::server::serve(ledger.clone(), listener, async {
        let _ = stopped.await;
    }));
    println!("fundledger demo — Loket D of the Alliance for Democratic Citizenship");
    println!("ledger in {}, server on {address}\n", data_dir.display());

    let channel = Channel::from_shared(format!("http://{address}"))?.connect().await?;
    let admin = auth::client(channel.clone(), &admin_token)?;
    let mut story = Story {
        channel,
        officer: admin.clone(),
        second_officer: admin.clone(),
        auditor: admin.clone(),
        admin,
        partners: std::collections::BTreeMap::new(),
        rng: SplitMix64(SEED),
        requests: 0,
        awards: Vec::new(),
        four_eyes_awards: 0,
    };
    let started = std::time::Instant::now();
    story.tell().await?;
    let elapsed = started.elapsed();
    println!(
        "{} commands sent through the gRPC API in {:.1} s, each acknowledged only once durable\n",
        story.requests,
        elapsed.as_secs_f64()
    );

    // The figures as the alliance's auditor reads them.
    let mut client = story.auditor.clone();
    let balances = client
        .get_partner_balances(pb::GetPartnerBalancesRequest { partner_id: None, as_of: None })
        .await?
        .into_inner();
    let rounds =
        client.get_round_figures(pb::GetRoundFiguresRequest { round_id: None, as_of: None }).await?.into_inner();
    let summary = client.get_fund_summary(pb::GetFundSummaryRequest { as_of: None }).await?.into_inner();
    println!("{}", crate::cli::render::partner_balances(&balances));
    println!("{}", crate::cli::render::round_figures(&rounds));
    println!("{}", crate::cli::render::fund_summary(&summary));
    check_figures(&rounds, &story.awards)?;

    // Stop the server, then check the log from the disk up.
    let _ = stop.send(());
    server.await??;
    ledger.shutdown().await;
    // The auditor's own verification: chain, payloads, request ids, stream
    // index, and a replay against the live and the stored projections.
    let verifying = ledger.clone();
    let report = tokio::task::spawn_blocking(move || crate::audit::verify::verify_ledger(&verifying, None)).await??;
    if let Some(broken) = &report.broken {
        anyhow::bail!("the log does not verify: {broken}");
    }
    println!(
        "log verified: {} events in {} streams, {} request ids, gapless, every hash linked; head {}",
        report.events,
        report.streams,
        report.requests,
        hex::encode(report.head_hash)
    );
    println!("replay from the first event gives byte-identical projections, live and stored");
    if keep {
        // The ledger stays for `serve`; as with `init`, its admin token is
        // shown this once (the ledger keeps only its hash).
        println!("\nadmin token of the kept ledger (alliance-admin), shown only now:\n{admin_token}");
    }
    Ok(())
}

/// The figures the model case promises.
fn check_figures(rounds: &pb::GetRoundFiguresResponse, awards: &[i64]) -> anyhow::Result<()> {
    let first_two: Vec<_> = rounds.rounds.iter().filter(|r| r.round_id != "loket-d-3").collect();
    let handled: u32 = first_two.iter().map(|r| r.applications_received).sum();
    let awarded: u32 = first_two.iter().map(|r| r.applications_awarded).sum();
    let pending: u32 = first_two.iter().map(|r| r.applications_pending).sum();
    let total_cents: i64 = awards.iter().sum();
    let largest = awards.iter().copied().max().unwrap_or(0);
    ensure!(
        handled == 322 && pending == 0,
        "rounds 1 and 2 handled {handled} applications ({pending} pending), not 322"
    );
    ensure!(awarded == 159, "rounds 1 and 2 awarded {awarded} grants, not 159");
    ensure!(total_cents > 2_000_000_00, "awards total {} cents, not over EUR 2,000,000", total_cents);
    ensure!(largest <= 15_000_00, "an award of {largest} cents exceeds EUR 15,000");
    println!(
        "rounds 1 and 2: {handled} applications handled, {awarded} awarded, EUR {} awarded in total, largest EUR {}",
        group_thousands(total_cents),
        group_thousands(largest)
    );
    Ok(())
}

fn group_thousands(cents: i64) -> String {
    let euros = (cents / 100).to_string();
    let mut out = String::new();
    for (i, c) in euros.chars().enumerate() {
        if i > 0 && (euros.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out}.{:02}", cents % 100)
}

/// SplitMix64: a tiny, well-known generator whose output is fixed by its
/// seed on every platform and every version of this program — which a
/// general-purpose RNG crate does not promise across releases.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const PARTNERS: &[(&str, &str, &str)] = &[
    ("bzk", "Ministerie van Binnenlandse Zaken en Koninkrijksrelaties", "NL-OIN-DEMO-BZK"),
    ("vfonds", "Vfonds", "NL-KVK-DEMO-VFONDS"),
    ("porticus", "Porticus", "NL-KVK-DEMO-PORTICUS"),
    ("janivo", "Janivo Stichting", "NL-KVK-DEMO-JANIVO"),
    ("vsbfonds", "VSBfonds", "NL-KVK-DEMO-VSBFONDS"),
    ("cirrus", "Cirrus Foundation", "NL-KVK-DEMO-CIRRUS"),
];

/// Unrestricted pledges in euros, paid in two instalments.
const PLEDGES: &[(&str, i64)] = &[
    ("bzk", 1_200_000),
    ("vfonds", 350_000),
    ("porticus", 300_000),
    ("janivo", 150_000),
    ("vsbfonds", 200_000),
    ("cirrus", 100_000),
];

const PLACES_NL: &[&str] = &[
    "Amsterdam",
    "Rotterdam",
    "Den Haag",
    "Utrecht",
    "Eindhoven",
    "Groningen",
    "Tilburg",
    "Almere",
    "Breda",
    "Nijmegen",
    "Enschede",
    "Arnhem",
    "Zwolle",
    "Leeuwarden",
    "Maastricht",
    "Middelburg",
    "Assen",
    "Lelystad",
    "Den Helder",
    "Heerlen",
    "Kerkrade",
    "Emmen",
    "Deventer",
    "Dordrecht",
    "Schiedam",
    "Vlaardingen",
    "Gouda",
    "Zaandam",
    "Hoorn",
    "Venlo",
];
const PLACES_CW: &[&str] = &["Willemstad", "Sint Michiel", "Barber", "Westpunt", "Soto"];
const ACTIVITIES: &[&str] = &[
    "Buurtgesprekken over democratie",
    "Jongerenparlement",
    "Debatavonden in de bibliotheek",
    "Burgerberaad over het plein",
    "Dialoogtafels voor nieuwkomers",
    "Democratie-atelier voor scholieren",
    "Wijkraad van bewoners",
    "Samen beslissen over het buurtbudget",
    "Stemmen met je buren",
    "Inspraakavonden in de wijk",
    "Podcast over lokale politiek",
    "Kinderburgemeester en kinderraad",
];
const APPLICANT_KINDS: &[&str] = &["Stichting Buurtkracht", "Bewonersgroep", "Vereniging Samen", "Jongerenplatform"];

struct Story {
    channel: Channel,
    /// One client per principal of the story, each with its own token.
    admin: Client,
    officer: Client,
    second_officer: Client,
    auditor: Client,
    partners: std::collections::BTreeMap<String, Client>,
    rng: SplitMix64,
    requests: u64,
    /// Amounts (cents) of every award in rounds 1 and 2, as decided.
    awards: Vec<i64>,
    /// Awards proposed by one officer and approved by another.
    four_eyes_awards: u32,
}

/// A grant as the story remembers it, to pay and settle it later.
struct Awarded {
    application: String,
    cents: i64,
    decided_on: time::Date,
}

fn money(cents: i64) -> Option<pb::Money> {
    Some(pb::Money { value: format!("{}.{:02}", cents / 100, cents % 100), currency: "EUR".into() })
}

fn day(date: time::Date) -> String {
    date.to_string()
}

fn date(y: i32, m: u8, d: u8) -> time::Date {
    time::Date::from_calendar_date(y, time::Month::try_from(m).expect("month"), d).expect("valid date")
}

impl Story {
    fn meta(&mut self) -> Option<pb::CommandMeta> {
        self.requests += 1;
        Some(pb::CommandMeta {
            request_id: format!("demo-{:05}", self.requests),
            expected_version: None,
            positions_only: false,
        })
    }

    /// Gives `principal` a role and returns a client calling with its token.
    async fn grant(&mut self, principal: &str, role: pb::RoleKind, partner: Option<&str>) -> anyhow::Result<Client> {
        let token = auth::new_token()?;
        let meta = self.meta();
        self.admin
            .grant_access(pb::GrantAccessRequest {
                meta,
                principal_id: principal.into(),
                role: Some(pb::Role { kind: role.into(), partner_id: partner.map(Into::into) }),
                token_sha256: hex::encode(auth::token_sha256(&token)),
            })
            .await?;
        Ok(auth::client(self.channel.clone(), &token)?)
    }

    async fn tell(&mut self) -> anyhow::Result<()> {
        self.officer = self.grant("officer-anna", pb::RoleKind::Officer, None).await?;
        self.second_officer = self.grant("officer-bram", pb::RoleKind::Officer, None).await?;
        self.auditor = self.grant("auditor-ines", pb::RoleKind::Auditor, None).await?;
        let meta = self.meta();
        self.admin
            .open_fund(pb::OpenFundRequest {
                meta,
                name: "Alliantie Democratisch Burgerschap — Loket D".into(),
                currency: "EUR".into(),
                minor_units: 2,
            })
            .await?;
        for (id, name, org) in PARTNERS {
            let meta = self.meta();
            self.admin
                .admit_partner(pb::AdmitPartnerRequest {
                    meta,
                    partner_id: (*id).into(),
                    name: (*name).into(),
                    organisation_id: (*org).into(),
                })
                .await?;
            let client = self.grant(&format!("{id}-treasurer"), pb::RoleKind::Partner, Some(id)).await?;
            self.partners.insert((*id).to_owned(), client);
        }
        println!("principals: an admin, two grant officers, an auditor and a treasurer per partner, each with a token");
        for (partner, euros) in PLEDGES {
            self.pledge(partner, euros * 100, None, date(2022, 6, 15)).await?;
            // The first instalment, 60 %, before round 1.
            self.receive(partner, euros * 60, None, date(2022, 8, 1)).await?;
        }
        println!("six partners pledged EUR 2,300,000 and paid 60 % in");

        // Round 1.
        self.open_round("loket-d-1", "Loket D, ronde 1", 1_150_000, date(2022, 9, 1), date(2022, 10, 31)).await?;
        let round_1 = self
            .round_of_applications(
                "loket-d-1",
                "r1",
                ROUND_1_APPLICATIONS,
                ROUND_1_AWARDS,
                ROUND_1_WITHDRAWN,
                date(2022, 9, 1),
                date(2022, 12, 1),
                None,
            )
            .await?;
        self.close_round("loket-d-1", date(2022, 12, 15)).await?;
        println!("round 1: {ROUND_1_APPLICATIONS} applications handled, {} awarded", round_1.len());

        // The second instalment, 40 %, before round 2.
        for (partner, euros) in PLEDGES {
            self.receive(partner, euros * 40, None, date(2023, 1, 16)).await?;
        }
        self.open_round("loket-d-2", "Loket D, ronde 2", 1_100_000, date(2023, 3, 1), date(2023, 4, 30)).await?;
        // From round 2 on, awards above EUR 14,000 need a second officer.
        let meta = self.meta();
        self.admin
            .set_approval_thresholds(pb::SetApprovalThresholdsRequest {
                meta,
                round_id: "loket-d-2".into(),
                award_above: money(FOUR_EYES_AWARD_ABOVE),
                payment_above: None,
            })
            .await?;
        let round_2 = self
            .round_of_applications(
                "loket-d-2",
                "r2",
                ROUND_2_APPLICATIONS,
                ROUND_2_AWARDS,
                ROUND_2_WITHDRAWN,
                date(2023, 3, 1),
                date(2023, 6, 1),
                Some(FOUR_EYES_AWARD_ABOVE),
            )
            .await?;
        self.close_round("loket-d-2", date(2023, 6, 30)).await?;
        println!(
            "round 2: {ROUND_2_APPLICATIONS} applications handled, {} awarded ({} above EUR 14,000 proposed by one \
             officer and approved by another)",
            round_2.len(),
            self.four_eyes_awards
        );

        // Round 1's projects report; most are settled in full, some lower,
        // two were called off and paid their advance back.
        self.settle_round(&round_1, date(2023, 9, 1), true).await?;
        // Round 2's projects are half way: about half have been settled.
        self.settle_round(&round_2, date(2024, 2, 1), false).await?;
        println!("advances paid, round 1 settled, round 2 half settled; refunds and settlements below award recorded");

        // Round 3 opens with money earmarked for it; applications come in.
        self.open_round("loket-d-3", "Loket D, ronde 3", 800_000, date(2024, 3, 1), date(2024, 4, 30)).await?;
        self.pledge("bzk", 300_000_00, Some("loket-d-3"), date(2024, 2, 15)).await?;
        self.receive("bzk", 300_000_00, Some("loket-d-3"), date(2024, 2, 29)).await?;
        self.pledge("cirrus", 50_000_00, Some("loket-d-3"), date(2024, 2, 15)).await?;
        self.receive("cirrus", 25_000_00, Some("loket-d-3"), date(2024, 3, 4)).await?;
        for i in 0..ROUND_3_APPLICATIONS {
            let application = format!("r3-{:03}", i + 1);
            self.submit(&application, "loket-d-3", date(2024, 3, 1), date(2024, 4, 30), 2_500_00).await?;
        }
        println!("round 3 open: {ROUND_3_APPLICATIONS} applications waiting for a decision\n");
        Ok(())
    }

    async fn pledge(&mut self, partner: &str, cents: i64, earmark: Option<&str>, on: time::Date) -> anyhow::Result<()> {
        let meta = self.meta();
        let mut client = self.partners[partner].clone();
        client
            .pledge_contribution(pb::PledgeContributionRequest {
                meta,
                partner_id: partner.into(),
                amount: money(cents),
                earmark_round_id: earmark.map(Into::into),
                pledged_on: day(on),
            })
            .await?;
        Ok(())
    }

    async fn receive(
        &mut self,
        partner: &str,
        cents: i64,
        earmark: Option<&str>,
        on: time::Date,
    ) -> anyhow::Result<()> {
        let meta = self.meta();
        let bank_reference = format!("DEMO-{}-{}", partner.to_uppercase(), on);
        self.officer
            .record_receipt(pb::RecordReceiptRequest {
                meta,
                partner_id: partner.into(),
                amount: money(cents),
                earmark_round_id: earmark.map(Into::into),
                value_date: day(on),
                bank_reference,
            })
            .await?;
        Ok(())
    }

    async fn open_round(
        &mut self,
        id: &str,
        name: &str,
        ceiling_euros: i64,
        opens: time::Date,
        closes: time::Date,
    ) -> anyhow::Result<()> {
        let meta = self.meta();
        self.admin
            .open_round(pb::OpenRoundRequest {
                meta,
                round_id: id.into(),
                name: name.into(),
                budget_ceiling: money(ceiling_euros * 100),
                grant_max: money(15_000_00),
                opens_on: day(opens),
                closes_on: day(closes),
            })
            .await?;
        Ok(())
    }

    async fn close_round(&mut self, id: &str, on: time::Date) -> anyhow::Result<()> {
        let meta = self.meta();
        self.admin.close_round(pb::CloseRoundRequest { meta, round_id: id.into(), closed_on: day(on) }).await?;
        Ok(())
    }

    /// Submits an application with a requested amount of at least
    /// `min_cents`; returns the amount requested.
    async fn submit(
        &mut self,
        application: &str,
        round: &str,
        opens: time::Date,
        closes: time::Date,
        min_cents: i64,
    ) -> anyhow::Result<i64> {
        let window = (closes - opens).whole_days() as u64;
        let submitted_on = opens + time::Duration::days(self.rng.below(window + 1) as i64);
        let curacao = self.rng.below(100) < 8;
        let place = if curacao { *self.rng.pick(PLACES_CW) } else { *self.rng.pick(PLACES_NL) };
        let kind = *self.rng.pick(APPLICANT_KINDS);
        let activity = *self.rng.pick(ACTIVITIES);
        // Requests in steps of EUR 50 between the minimum and EUR 15,000;
        // one in five asks for an amount with cents.
        let steps = (15_000_00 - min_cents) / 50_00;
        let mut cents = min_cents + 50_00 * self.rng.below(steps as u64 + 1) as i64;
        if self.rng.below(5) == 0 && cents < 15_000_00 {
            cents += self.rng.below(100) as i64 * 7 % 100 + 1;
        }
        let meta = self.meta();
        self.officer
            .submit_application(pb::SubmitApplicationRequest {
                meta,
                application_id: application.into(),
                round_id: round.into(),
                applicant: Some(pb::Applicant {
                    name: format!("{kind} {place}"),
                    organisation_id: String::new(),
                    place: place.into(),
                    country: if curacao { "CW" } else { "NL" }.into(),
                }),
                title: format!("{activity} in {place}"),
                description: format!("{activity}: bewoners van {place} praten en beslissen mee."),
                amount_requested: money(cents),
                submitted_on: day(submitted_on),
            })
            .await?;
        Ok(cents)
    }

    /// Handles a whole round: submissions, then decisions. Returns the grants.
    #[allow(clippy::too_many_arguments)]
    async fn round_of_applications(
        &mut self,
        round: &str,
        prefix: &str,
        applications: usize,
        awards: usize,
        withdrawn: usize,
        opens: time::Date,
        decided_on: time::Date,
        four_eyes_above: Option<i64>,
    ) -> anyhow::Result<Vec<Awarded>> {
        let closes = opens + time::Duration::days(59);
        // Which applications are awarded and which withdrawn is drawn from
        // the seed; awarded plans ask for more on average (they are the
        // larger, better prepared plans of the window).
        let mut outcome = vec![0u8; applications]; // 0 rejected, 1 awarded, 2 withdrawn
        for (kind, count) in [(1u8, awards), (2u8, withdrawn)] {
            let mut placed = 0;
            while placed < count {
                let i = self.rng.below(applications as u64) as usize;
                if outcome[i] == 0 {
                    outcome[i] = kind;
                    placed += 1;
                }
            }
        }
        let mut requested = Vec::with_capacity(applications);
        for (i, kind) in outcome.iter().enumerate() {
            let id = format!("{prefix}-{:03}", i + 1);
            let min = if *kind == 1 { 11_000_00 } else { 2_500_00 };
            requested.push(self.submit(&id, round, opens, closes, min).await?);
        }
        let mut grants = Vec::new();
        for (i, kind) in outcome.iter().enumerate() {
            let application = format!("{prefix}-{:03}", i + 1);
            let meta = self.meta();
            match kind {
                1 => {
                    // One in seven is awarded 90 % of the request, in whole euros.
                    let cents = if self.rng.below(7) == 0 { requested[i] * 9 / 10 / 100 * 100 } else { requested[i] };
                    let reason = "Past goed bij de oproep: laagdrempelig, lokaal, met bewoners.";
                    if four_eyes_above.is_some_and(|threshold| cents > threshold) {
                        // Above the round's threshold: Anna proposes, Bram approves.
                        self.officer
                            .propose_award(pb::ProposeAwardRequest {
                                meta,
                                application_id: application.clone(),
                                amount: money(cents),
                                reason: reason.into(),
                                proposed_on: day(decided_on),
                            })
                            .await?;
                        let meta = self.meta();
                        self.second_officer
                            .approve_award(pb::ApproveAwardRequest {
                                meta,
                                application_id: application.clone(),
                                decided_on: day(decided_on),
                            })
                            .await?;
                        self.four_eyes_awards += 1;
                    } else {
                        self.officer
                            .award_grant(pb::AwardGrantRequest {
                                meta,
                                application_id: application.clone(),
                                amount: money(cents),
                                reason: reason.into(),
                                decided_on: day(decided_on),
                            })
                            .await?;
                    }
                    self.awards.push(cents);
                    grants.push(Awarded { application, cents, decided_on });
                }
                2 => {
                    self.officer
                        .withdraw_application(pb::WithdrawApplicationRequest {
                            meta,
                            application_id: application,
                            reason: "De aanvrager trekt het plan terug.".into(),
                            withdrawn_on: day(opens + time::Duration::days(60)),
                        })
                        .await?;
                }
                _ => {
                    self.officer
                        .reject_application(pb::RejectApplicationRequest {
                            meta,
                            application_id: application,
                            reason: "Valt buiten de criteria van de regeling of het budget van de ronde.".into(),
                            decided_on: day(decided_on),
                        })
                        .await?;
                }
            }
        }
        Ok(grants)
    }

    /// Pays the advances (80 %), then settles grants: all of them when
    /// `all`, otherwise every other one.
    async fn settle_round(&mut self, grants: &[Awarded], settle_on: time::Date, all: bool) -> anyhow::Result<()> {
        for grant in grants {
            let advance = grant.cents * 8 / 10;
            self.pay(&grant.application, advance, grant.decided_on + time::Duration::days(21)).await?;
        }
        for (i, grant) in grants.iter().enumerate() {
            if !all && i % 2 == 1 {
                continue;
            }
            let advance = grant.cents * 8 / 10;
            let roll = self.rng.below(100);
            if roll < 3 {
                // Called off: the advance comes back, the grant is withdrawn.
                self.refund(&grant.application, advance, settle_on).await?;
                let meta = self.meta();
                self.officer
                    .withdraw_grant(pb::WithdrawGrantRequest {
                        meta,
                        application_id: grant.application.clone(),
                        reason: "Het project is niet doorgegaan; het voorschot is terugbetaald.".into(),
                        decided_on: day(settle_on),
                    })
                    .await?;
            } else if roll < 8 {
                // Spent less than the advance: refund the difference first.
                let final_cents = grant.cents * 7 / 10;
                self.refund(&grant.application, advance - final_cents, settle_on).await?;
                self.settle(&grant.application, final_cents, settle_on).await?;
            } else if roll < 20 {
                // Spent less than awarded but more than the advance.
                let final_cents = grant.cents * 9 / 10;
                self.settle(&grant.application, final_cents, settle_on).await?;
                self.pay(&grant.application, final_cents - advance, settle_on + time::Duration::days(14)).await?;
            } else {
                self.settle(&grant.application, grant.cents, settle_on).await?;
                self.pay(&grant.application, grant.cents - advance, settle_on + time::Duration::days(14)).await?;
            }
        }
        Ok(())
    }

    async fn pay(&mut self, application: &str, cents: i64, on: time::Date) -> anyhow::Result<()> {
        let meta = self.meta();
        self.officer
            .make_payment(pb::MakePaymentRequest {
                meta,
                application_id: application.into(),
                amount: money(cents),
                value_date: day(on),
                bank_reference: format!("DEMO-PAY-{application}-{on}"),
            })
            .await?;
        Ok(())
    }

    async fn refund(&mut self, application: &str, cents: i64, on: time::Date) -> anyhow::Result<()> {
        let meta = self.meta();
        self.officer
            .record_refund(pb::RecordRefundRequest {
                meta,
                application_id: application.into(),
                amount: money(cents),
                value_date: day(on),
                bank_reference: format!("DEMO-REFUND-{application}-{on}"),
            })
            .await?;
        Ok(())
    }

    async fn settle(&mut self, application: &str, cents: i64, on: time::Date) -> anyhow::Result<()> {
        let meta = self.meta();
        self.officer
            .settle_grant(pb::SettleGrantRequest {
                meta,
                application_id: application.into(),
                final_amount: money(cents),
                reason: "Vaststelling na het eindverslag.".into(),
                decided_on: day(on),
            })
            .await?;
        Ok(())
    }
}
