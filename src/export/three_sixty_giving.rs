//! The fund's grants in the 360Giving Data Standard (1.4): a JSON package
//! that validates against the standard's package and grant schemas, or the
//! spreadsheet flavour, CSV with the standard's column titles.
//!
//! One record per awarded application. Its amounts are the ledger's current
//! figures, so that they add up to the ledger's: `amountAwarded` is the
//! grant's amount after reductions, withdrawals and settlements (the sum of
//! its commitment transactions: the award, then one negative transaction per
//! release), `amountDisbursed` its net payments (payments less refunds, the
//! sum of its disbursement transactions). Amounts are JSON numbers written
//! from exact decimal text, never through a float. Whose money funds a grant
//! has no field in the standard: it goes in the additional field
//! `fundledgerAttribution` (JSON) and in `Attributed Awarded:{partner}` /
//! `Attributed Disbursed:{partner}` columns (CSV), documented in
//! `docs/AUDIT.md`.

use super::{rfc3339_micros, signed_plain, ExportError, LoggedEvent};
use crate::domain::state::{Application, Grant};
use crate::domain::{ApplicationId, Currency, Event, FundState, PartnerId, Share};
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::io::Write;

/// The 360Giving prefix used when none is given. It is the standard's
/// example prefix: a publisher registers its own with 360Giving.
pub const PREFIX_DEFAULT: &str = "360G-EXAMPLE-";
/// The version of the standard the package declares.
pub const STANDARD_VERSION: &str = "1.4";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The publisher's 360Giving prefix, e.g. `360G-EXAMPLE-`; grant ids are
    /// the prefix followed by the application id.
    pub prefix: String,
    pub format: Format,
}

/// Writes the package (or spreadsheet) of every awarded grant.
pub fn write(
    options: &Options,
    events: impl Iterator<Item = Result<LoggedEvent, ExportError>>,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    let package = package(&options.prefix, events)?;
    match options.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &package)?;
            out.write_all(b"\n")?;
        }
        Format::Csv => write_csv(&package, out)?,
    }
    Ok(())
}

// ------------------------------------------------------------------ the model

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    pub grants: Vec<GrantRecord>,
    pub version: &'static str,
    pub title: String,
    pub description: String,
    /// The recording time of the last event exported.
    pub modified: String,
    pub publisher: Publisher,
    /// Additional field: the log position the package was made from.
    pub fundledger_head: Head,
    /// The partners, in id order (for the CSV's attribution columns).
    #[serde(skip)]
    pub partners: Vec<PartnerId>,
    #[serde(skip)]
    pub currency: Currency,
}

#[derive(Serialize)]
pub struct Publisher {
    pub name: String,
}

#[derive(Serialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantRecord {
    pub id: String,
    pub title: String,
    pub description: String,
    pub currency: String,
    pub amount_applied_for: Box<RawValue>,
    pub amount_awarded: Box<RawValue>,
    pub amount_disbursed: Box<RawValue>,
    pub award_date: String,
    pub recipient_organization: Vec<Organization>,
    pub beneficiary_location: Vec<Location>,
    pub funding_organization: Vec<Organization>,
    pub grant_programme: Vec<GrantProgramme>,
    pub from_open_call: &'static str,
    pub date_modified: String,
    pub commitment_transaction: Vec<Transaction>,
    pub disbursement_transaction: Vec<Transaction>,
    /// Additional field: `active`, `settled` or `withdrawn`.
    pub fundledger_grant_status: &'static str,
    /// Additional field: whose money funds the grant, per partner pot.
    pub fundledger_attribution: Vec<Attribution>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_locality: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_country: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    pub name: String,
    pub country_code: String,
}

#[derive(Serialize)]
pub struct GrantProgramme {
    pub code: String,
    pub title: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    /// `{grant id}-{seq}`: the event it comes from.
    pub id: String,
    pub transaction_date: String,
    pub currency: String,
    pub value: Box<RawValue>,
    pub description: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribution {
    pub partner_id: String,
    pub partner_name: String,
    pub organisation_id: String,
    /// The round the money is earmarked for; `null` for unrestricted money.
    pub earmark: Option<String>,
    /// The pot's part of `amountAwarded`.
    pub amount_awarded: Box<RawValue>,
    /// The pot's part of `amountDisbursed`.
    pub amount_disbursed: Box<RawValue>,
    #[serde(skip)]
    pub awarded_minor: i64,
    #[serde(skip)]
    pub disbursed_minor: i64,
}

/// A JSON number written from exact decimal text.
fn number(currency: &Currency, minor: i64) -> Box<RawValue> {
    RawValue::from_string(signed_plain(currency, minor)).expect("decimal text is a JSON number")
}

/// The transactions of one grant, collected from its events.
#[derive(Default)]
struct Dossier {
    commitments: Vec<(u64, crate::domain::Date, i64, String)>,
    disbursements: Vec<(u64, crate::domain::Date, i64, String)>,
    last_recorded_micros: i64,
}

/// Folds the events into the package.
pub fn package(
    prefix: &str,
    events: impl Iterator<Item = Result<LoggedEvent, ExportError>>,
) -> Result<Package, ExportError> {
    let mut state = FundState::default();
    let mut dossiers: BTreeMap<ApplicationId, Dossier> = BTreeMap::new();
    let mut head = None;
    for event in events {
        let LoggedEvent { envelope, event, .. } = event?;
        // Only access (granted by `fundledger init`) may come before the fund.
        let opens_or_access =
            matches!(event, Event::FundOpened { .. } | Event::AccessGranted { .. } | Event::AccessRevoked { .. });
        if state.fund.is_none() && !opens_or_access {
            return Err(ExportError::FundNotOpened { seq: envelope.seq, event_type: envelope.event_type });
        }
        let released = |shares: &[Share]| -> i64 { -crate::domain::attribution::total(shares).minor() };
        use Event as E;
        let seq = envelope.seq;
        if let crate::domain::StreamId::Application(id) = event.stream() {
            let dossier = dossiers.entry(id).or_default();
            dossier.last_recorded_micros = envelope.recorded_at_micros;
            match &event {
                E::GrantAwarded { amount, decided_on, .. } => {
                    dossier.commitments.push((seq, *decided_on, amount.minor(), "award".into()))
                }
                E::GrantReduced { released: r, reason, decided_on, .. } => {
                    dossier.commitments.push((seq, *decided_on, released(r), format!("reduction: {reason}")))
                }
                E::GrantWithdrawn { released: r, reason, decided_on, .. } if !r.is_empty() => {
                    dossier.commitments.push((seq, *decided_on, released(r), format!("withdrawal: {reason}")))
                }
                E::GrantSettled { released: r, final_amount, decided_on, .. } if !r.is_empty() => {
                    let currency = state.currency().expect("the fund is open: checked above");
                    let text = format!("settled at {}", currency.plain(*final_amount));
                    dossier.commitments.push((seq, *decided_on, released(r), text))
                }
                E::PaymentMade { amount, tranche, value_date, .. } => dossier.disbursements.push((
                    seq,
                    *value_date,
                    amount.minor(),
                    format!("payment, tranche {tranche}"),
                )),
                E::RefundReceived { amount, releases, value_date, .. } => {
                    dossier.disbursements.push((seq, *value_date, -amount.minor(), "refund".into()));
                    if *releases {
                        let text = "refund on a closed grant, released".to_string();
                        dossier.commitments.push((seq, *value_date, -amount.minor(), text));
                    }
                }
                _ => {}
            }
        }
        state.evolve(&event);
        head = Some((envelope.seq, envelope.hash, envelope.recorded_at_micros));
    }
    let (Some(fund), Some((head_seq, head_hash, head_micros))) = (&state.fund, head) else {
        return Err(ExportError::EmptyLedger);
    };
    let currency = &fund.currency;
    let mut grants = Vec::new();
    for (id, application) in &state.applications {
        let Some(grant) = &application.grant else { continue };
        let dossier = dossiers.remove(id).unwrap_or_default();
        grants.push(grant_record(prefix, &state, currency, id, application, grant, dossier)?);
    }
    if grants.is_empty() {
        return Err(ExportError::NoGrants);
    }
    Ok(Package {
        grants,
        version: STANDARD_VERSION,
        title: format!("{}: grants", fund.name),
        description: format!(
            "The grants of {} as recorded in its fundledger event log up to event {head_seq} (hash {}). \
             Amounts are the current figures: awarded after reductions, withdrawals and settlements; \
             disbursed net of refunds.",
            fund.name,
            hex::encode(head_hash)
        ),
        modified: rfc3339_micros(head_micros)?,
        publisher: Publisher { name: fund.name.clone() },
        fundledger_head: Head { seq: head_seq, hash: hex::encode(head_hash) },
        partners: state.partners.keys().cloned().collect(),
        currency: currency.clone(),
    })
}

fn grant_record(
    prefix: &str,
    state: &FundState,
    currency: &Currency,
    id: &ApplicationId,
    application: &Application,
    grant: &Grant,
    dossier: Dossier,
) -> Result<GrantRecord, ExportError> {
    let grant_id = format!("{prefix}{id}");
    let applicant = &application.applicant;
    let recipient_id = if applicant.organisation_id.is_empty() {
        format!("{prefix}ORG-{id}")
    } else {
        applicant.organisation_id.to_string()
    };
    // Funders: the partners with a share in the grant, the largest first.
    let mut per_partner: BTreeMap<&PartnerId, i64> = BTreeMap::new();
    for (pot, share) in &grant.shares {
        *per_partner.entry(&pot.partner).or_default() += share.amount.minor();
    }
    let mut funders: Vec<(&PartnerId, i64)> = per_partner.into_iter().collect();
    funders.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let partner = |id: &PartnerId| state.partners.get(id).expect("a share's partner was admitted");
    let transactions = |list: Vec<(u64, crate::domain::Date, i64, String)>| -> Vec<Transaction> {
        list.into_iter()
            .map(|(seq, date, minor, description)| Transaction {
                id: format!("{grant_id}-{seq}"),
                transaction_date: date.to_string(),
                currency: currency.code.clone(),
                value: number(currency, minor),
                description,
            })
            .collect()
    };
    let round = state.rounds.get(&application.round).expect("an application's round was opened");
    Ok(GrantRecord {
        id: grant_id.clone(),
        title: application.title.to_string(),
        description: if application.description.is_empty() {
            application.title.to_string()
        } else {
            application.description.to_string()
        },
        currency: currency.code.clone(),
        amount_applied_for: number(currency, application.amount_requested.minor()),
        amount_awarded: number(currency, grant.amount.minor()),
        amount_disbursed: number(currency, grant.net_paid().minor()),
        award_date: grant.awarded_on.to_string(),
        recipient_organization: vec![Organization {
            id: recipient_id,
            name: applicant.name.to_string(),
            address_locality: Some(applicant.place.to_string()),
            address_country: Some(country_name(&applicant.country)),
        }],
        beneficiary_location: vec![Location {
            name: applicant.place.to_string(),
            country_code: applicant.country.to_string(),
        }],
        funding_organization: funders
            .iter()
            .map(|(id, _)| {
                let p = partner(id);
                Organization {
                    id: p.organisation_id.clone(),
                    name: p.name.clone(),
                    address_locality: None,
                    address_country: None,
                }
            })
            .collect(),
        grant_programme: vec![GrantProgramme { code: application.round.to_string(), title: round.name.clone() }],
        // A round of the grant window is an open call for applications.
        from_open_call: "Yes",
        date_modified: rfc3339_micros(dossier.last_recorded_micros)?,
        commitment_transaction: transactions(dossier.commitments),
        disbursement_transaction: transactions(dossier.disbursements),
        fundledger_grant_status: grant.status.as_str(),
        fundledger_attribution: grant
            .shares
            .iter()
            .map(|(pot, share)| {
                let p = partner(&pot.partner);
                Attribution {
                    partner_id: pot.partner.to_string(),
                    partner_name: p.name.clone(),
                    organisation_id: p.organisation_id.clone(),
                    earmark: pot.earmark.as_ref().map(|r| r.to_string()),
                    amount_awarded: number(currency, share.amount.minor()),
                    amount_disbursed: number(currency, share.net_paid().minor()),
                    awarded_minor: share.amount.minor(),
                    disbursed_minor: share.net_paid().minor(),
                }
            })
            .collect(),
    })
}

/// The country's English name for `addressCountry` (the standard asks for
/// a name there, and for the ISO code in `countryCode`); the code itself
/// for countries the fund has not met.
fn country_name(code: &str) -> String {
    match code {
        "NL" => "Netherlands",
        "CW" => "Curaçao",
        "AW" => "Aruba",
        "SX" => "Sint Maarten",
        "BQ" => "Caribbean Netherlands",
        "BE" => "Belgium",
        "DE" => "Germany",
        other => other,
    }
    .to_string()
}

// ------------------------------------------------------------------ CSV

/// The standard's column titles, in the order written.
pub const CSV_STANDARD_COLUMNS: [&str; 20] = [
    "Identifier",
    "Title",
    "Description",
    "Currency",
    "Amount Applied For",
    "Amount Awarded",
    "Amount Disbursed",
    "Award Date",
    "Recipient Org:Identifier",
    "Recipient Org:Name",
    "Recipient Org:City",
    "Recipient Org:Country",
    "Beneficiary Location:Name",
    "Beneficiary Location:Country Code",
    "Funding Org:Identifier",
    "Funding Org:Name",
    "Grant Programme:Code",
    "Grant Programme:Title",
    "From An Open Call?",
    "Last Modified",
];

/// One row per grant. A spreadsheet row has room for one funding
/// organisation: the partner with the largest share; the full attribution
/// follows in two additional columns per partner.
fn write_csv(package: &Package, out: &mut dyn Write) -> Result<(), ExportError> {
    let mut csv = csv::Writer::from_writer(out);
    let mut header: Vec<String> = CSV_STANDARD_COLUMNS.iter().map(|c| c.to_string()).collect();
    header.push("Grant Status".into());
    for partner in &package.partners {
        header.push(format!("Attributed Awarded:{partner}"));
        header.push(format!("Attributed Disbursed:{partner}"));
    }
    csv.write_record(&header)?;
    for g in &package.grants {
        let recipient = &g.recipient_organization[0];
        let location = &g.beneficiary_location[0];
        let funder = g.funding_organization.first();
        let mut record = vec![
            g.id.clone(),
            g.title.clone(),
            g.description.clone(),
            g.currency.clone(),
            g.amount_applied_for.get().to_string(),
            g.amount_awarded.get().to_string(),
            g.amount_disbursed.get().to_string(),
            g.award_date.clone(),
            recipient.id.clone(),
            recipient.name.clone(),
            recipient.address_locality.clone().unwrap_or_default(),
            recipient.address_country.clone().unwrap_or_default(),
            location.name.clone(),
            location.country_code.clone(),
            funder.map(|f| f.id.clone()).unwrap_or_default(),
            funder.map(|f| f.name.clone()).unwrap_or_default(),
            g.grant_programme[0].code.clone(),
            g.grant_programme[0].title.clone(),
            g.from_open_call.to_string(),
            g.date_modified.clone(),
            g.fundledger_grant_status.to_string(),
        ];
        for partner in &package.partners {
            // A partner may fund one grant from two pots (unrestricted and
            // earmarked): the columns add them up, exactly.
            let mine = g.fundledger_attribution.iter().filter(|a| a.partner_id == partner.as_str());
            let (awarded, disbursed) = mine.fold((0, 0), |(aw, di), a| (aw + a.awarded_minor, di + a.disbursed_minor));
            record.push(signed_plain(&package.currency, awarded));
            record.push(signed_plain(&package.currency, disbursed));
        }
        csv.write_record(&record)?;
    }
    csv.flush()?;
    Ok(())
}
