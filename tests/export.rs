//! The auditors' exports over the Loket D demo ledger: the event export
//! re-verifies from its own fields, the journal balances and reconciles with
//! the partner balances, the 360Giving package validates against the
//! official schemas (offline) and adds up to the ledger, the statement's
//! balances roll forward to each partner's cash held, and the offline and
//! server paths write the same bytes without touching the directory.

use fundledger::domain::{Event, FundState};
use fundledger::export::{self, statement, three_sixty_giving, Export, LogEvents, OfflineLog};
use fundledger::log::codec::{self, RecordBody};
use fundledger::projections::Projections;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod support;

// ------------------------------------------------------------------ fixtures

/// The demo ledger, told once per test binary (about 3 s) and shared. It
/// lives in cargo's scratch directory for integration tests, replaced on
/// every run (a static is never dropped, so a temporary directory would
/// stay behind).
fn demo_ledger() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let data_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("export-demo-ledger");
        if data_dir.exists() {
            std::fs::remove_dir_all(&data_dir).unwrap();
        }
        // Its own thread and runtime: tests may already be inside one.
        let config = fundledger::demo::DemoConfig { data_dir: Some(data_dir.clone()) };
        std::thread::spawn(|| tokio::runtime::Runtime::new().unwrap().block_on(fundledger::demo::run(config)))
            .join()
            .unwrap()
            .unwrap();
        data_dir
    })
}

fn export_offline(dir: &Path, what: &Export) -> String {
    let log = OfflineLog::open(dir).unwrap();
    let reader = log.reader();
    let mut out = Vec::new();
    export::write(what, LogEvents::new(&reader, log.head_seq()), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// The fund state as a full replay of the log gives it.
fn replayed_state(dir: &Path) -> FundState {
    let log = OfflineLog::open(dir).unwrap();
    Projections::replay(&log.reader(), log.head_seq()).unwrap().state
}

fn events_of(dir: &Path) -> Vec<Event> {
    let log = OfflineLog::open(dir).unwrap();
    let reader = log.reader();
    LogEvents::new(&reader, log.head_seq()).map(|e| e.unwrap().event).collect()
}

fn giving(format: three_sixty_giving::Format) -> Export {
    Export::ThreeSixtyGiving(three_sixty_giving::Options { prefix: "360G-EXAMPLE-".into(), format })
}

/// An amount in minor units as the exports write it (EUR: two decimals).
fn eur(minor: i64) -> Decimal {
    Decimal::new(minor, 2)
}

fn decimal(text: &str) -> Decimal {
    assert!(!text.contains(['e', 'E']), "{text} is not plain decimal text");
    Decimal::from_str_exact(text).unwrap_or_else(|e| panic!("{text:?} is not an exact decimal: {e}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            files.extend(snapshot(&entry.path()));
        } else {
            files.insert(entry.path(), std::fs::read(entry.path()).unwrap());
        }
    }
    files
}

// ------------------------------------------------------------------ events

#[test]
fn every_exported_line_rehashes_to_its_hash_and_links_to_the_previous_one() {
    let text = export_offline(demo_ledger(), &Export::Events);
    let mut prev = [0u8; 32];
    let mut lines = 0;
    for (i, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 14, "line {}: {keys:?}", i + 1);
        assert_eq!(v["seq"], i as u64 + 1);
        assert_eq!(v["prev_hash"], hex::encode(prev));
        let payload = hex::decode(v["payload_hex"].as_str().unwrap()).unwrap();
        // The body rebuilt from the JSON alone, as docs/AUDIT.md says.
        let body = RecordBody {
            seq: v["seq"].as_u64().unwrap(),
            stream: v["stream"].as_str().unwrap().into(),
            stream_version: v["stream_version"].as_u64().unwrap(),
            event_type: v["event_type"].as_str().unwrap().into(),
            schema_version: v["schema_version"].as_u64().unwrap() as u16,
            recorded_at_micros: v["recorded_at_micros"].as_i64().unwrap(),
            actor: v["actor"].as_str().unwrap().into(),
            request_id: v["request_id"].as_str().unwrap().into(),
            payload: payload.clone(),
        };
        // A ledger of stored format v3 covers the command's fingerprint too.
        let fingerprint = hex::decode(v["fingerprint"].as_str().unwrap()).unwrap();
        assert_eq!(fingerprint.len(), 32, "line {}", i + 1);
        let hash = codec::chain_hash(&prev, &[codec::encode(&body), fingerprint].concat());
        assert_eq!(v["hash"], hex::encode(hash), "line {}", i + 1);
        // The decoded payload is what the bytes say.
        let event: Event = codec::decode(&payload).unwrap();
        assert_eq!(event.type_name(), v["event_type"]);
        let recorded_at = v["recorded_at"].as_str().unwrap();
        assert_eq!(recorded_at.len(), "2024-05-01T09:30:00.123456Z".len(), "{recorded_at}");
        assert_eq!(export::rfc3339_micros(body.recorded_at_micros).unwrap(), recorded_at);
        prev = hash;
        lines += 1;
    }
    assert!(lines > 1000, "the demo records over a thousand events, got {lines}");
    let head = fundledger::log::EventLog::open(copy_of(demo_ledger()).path()).unwrap().head_hash();
    assert_eq!(prev, head, "the export ends at the ledger's head");
}

/// A copy of a ledger's directory, removed when dropped.
fn copy_of(dir: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    copy_dir(dir, to.path());
    to
}

#[test]
fn payload_amounts_are_exact_decimal_strings_with_their_currency() {
    let text = export_offline(demo_ledger(), &Export::Events);
    let line = text.lines().find(|l| l.contains("\"event_type\":\"GrantAwarded\"")).unwrap();
    let v: Value = serde_json::from_str(line).unwrap();
    let event: Event = codec::decode(&hex::decode(v["payload_hex"].as_str().unwrap()).unwrap()).unwrap();
    let Event::GrantAwarded { amount, attribution, decided_on, application, .. } = event else { panic!() };
    let p = &v["payload"];
    assert_eq!(p["amount"]["value"].as_str().unwrap(), eur(amount.minor()).to_string());
    assert_eq!(p["amount"]["currency"], "EUR");
    assert_eq!(p["decided_on"], decided_on.to_string());
    assert_eq!(p["application"], application.as_str());
    let shares = p["attribution"].as_array().unwrap();
    assert_eq!(shares.len(), attribution.len());
    let sum: Decimal = shares.iter().map(|s| decimal(s["amount"]["value"].as_str().unwrap())).sum();
    assert_eq!(sum, decimal(p["amount"]["value"].as_str().unwrap()), "the parts add up to the award");
    assert!(!text.contains("e+") && !text.contains("E+"), "no number in exponent form");
}

#[test]
fn an_offline_export_leaves_the_directory_untouched_and_is_reproducible() {
    let copy = copy_of(demo_ledger());
    let dir = copy.path();
    let before = snapshot(dir);
    let first = export_offline(dir, &Export::Events);
    let second = export_offline(dir, &Export::Events);
    assert_eq!(first, second, "the same log exports to the same bytes");
    assert_eq!(snapshot(dir), before, "not a byte of the ledger's directory changed");
}

#[test]
fn an_offline_export_of_a_missing_ledger_says_so() {
    let empty = tempfile::tempdir().unwrap();
    let error = OfflineLog::open(empty.path()).err().unwrap();
    assert!(error.to_string().contains("holds no fundledger ledger"), "{error}");
}

// ------------------------------------------------------------------ journal

fn journal_rows(dir: &Path) -> Vec<csv::StringRecord> {
    let text = export_offline(dir, &Export::Journal);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers().unwrap(), &csv::StringRecord::from(export::journal::HEADER.to_vec()));
    reader.records().map(Result::unwrap).collect()
}

/// Debit − credit of one journal line.
fn signed(row: &csv::StringRecord) -> Decimal {
    let (debit, credit) = (&row[7], &row[8]);
    assert!(debit.is_empty() != credit.is_empty(), "a line has a debit or a credit: {row:?}");
    if debit.is_empty() {
        -decimal(credit)
    } else {
        decimal(debit)
    }
}

#[test]
fn the_journal_balances_per_event_and_in_total() {
    let rows = journal_rows(demo_ledger());
    assert!(rows.len() > 1000);
    let mut per_event: BTreeMap<u64, Decimal> = BTreeMap::new();
    for row in &rows {
        *per_event.entry(row[0].parse().unwrap()).or_default() += signed(row);
        assert_eq!(&row[9], "EUR");
        assert_eq!(row[1].len(), 64, "the event hash in hex");
    }
    for (seq, balance) in &per_event {
        assert_eq!(*balance, Decimal::ZERO, "event {seq}'s postings do not balance");
    }
    assert_eq!(rows.iter().map(signed).sum::<Decimal>(), Decimal::ZERO, "trial balance");
}

#[test]
fn the_journal_reconciles_with_the_partner_balances() {
    let rows = journal_rows(demo_ledger());
    let mut accounts: BTreeMap<String, Decimal> = BTreeMap::new();
    for row in &rows {
        *accounts.entry(row[6].to_string()).or_default() += signed(row);
    }
    let state = replayed_state(demo_ledger());
    let balance = |account: &str| accounts.get(account).copied().unwrap_or_default();
    let mut cash_held = 0;
    for (pot, figures) in &state.pots {
        let name = match &pot.earmark {
            None => pot.partner.to_string(),
            Some(round) => format!("{}/earmark/{round}", pot.partner),
        };
        // partner_funds is a credit balance, pledges_receivable a debit one.
        let available = -balance(&format!("partner_funds/{name}")) - balance(&format!("pledges_receivable/{name}"));
        assert_eq!(available, eur(figures.available().minor()), "available of pot {name}");
        assert_eq!(balance(&format!("pledges_receivable/{name}")), eur(figures.outstanding().minor()));
        cash_held += figures.cash_held().minor();
    }
    assert_eq!(balance("cash"), eur(cash_held), "cash = the partners' cash held");
    let payable: Decimal = accounts.iter().filter(|(a, _)| a.starts_with("grants_payable/")).map(|(_, b)| -b).sum();
    assert_eq!(payable, eur(state.fund_totals().open_commitments().minor()), "grants payable = open commitments");
    for (id, application) in &state.applications {
        if let Some(grant) = &application.grant {
            assert_eq!(-balance(&format!("grants_payable/{id}")), eur(grant.open().minor()), "grant {id}");
        }
    }
}

// ------------------------------------------------------------------ 360Giving

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/360giving")
}

fn read_schema(name: &str) -> Value {
    let path = schemas_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Validates against the package schema, offline: the grant schema it
/// refers to by URL is registered locally, formats are asserted (the
/// schemas' `oneOf` date fields need it) and the draft is 2020-12.
fn validation_errors(package: &Value) -> Vec<String> {
    let package_schema = read_schema("360-giving-package-schema.json");
    let grant_schema = read_schema("360-giving-schema.json");
    let reference = package_schema["properties"]["grants"]["items"]["$ref"].as_str().unwrap().to_owned();
    let own_id = grant_schema["$id"].as_str().unwrap().to_owned();
    let registry = jsonschema::Registry::new()
        .add(&reference, grant_schema.clone())
        .unwrap()
        .add(&own_id, grant_schema)
        .unwrap()
        .prepare()
        .unwrap();
    let validator = jsonschema::options()
        .offline()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .with_registry(&registry)
        .build(&package_schema)
        .unwrap();
    validator.iter_errors(package).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

#[test]
fn the_360giving_package_validates_against_the_official_schemas() {
    let text = export_offline(demo_ledger(), &giving(three_sixty_giving::Format::Json));
    let package: Value = serde_json::from_str(&text).unwrap();
    let errors = validation_errors(&package);
    assert!(errors.is_empty(), "{} errors, first: {:?}", errors.len(), errors.iter().take(5).collect::<Vec<_>>());
    let grants = package["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 159, "every grant the demo awarded");
    let curacao = grants.iter().filter(|g| g["beneficiaryLocation"][0]["countryCode"] == "CW").count();
    assert!(curacao > 0, "grants to Curaçao are in the package");
    // An applicant without an organisation id gets the generated one.
    assert!(grants[0]["recipientOrganization"][0]["id"].as_str().unwrap().starts_with("360G-EXAMPLE-ORG-"));
}

#[test]
fn the_validator_rejects_a_package_that_breaks_the_standard() {
    let text = export_offline(demo_ledger(), &giving(three_sixty_giving::Format::Json));
    let package: Value = serde_json::from_str(&text).unwrap();
    let broken = |change: fn(&mut Value)| {
        let mut p = package.clone();
        change(&mut p);
        validation_errors(&p)
    };
    assert!(!broken(|p| p["grants"][0]["currency"] = "EURO".into()).is_empty(), "a currency not in ISO 4217");
    assert!(!broken(|p| p["grants"][3]["awardDate"] = "2022-13-01".into()).is_empty(), "no 13th month");
    assert!(!broken(|p| p["grants"][5]["amountAwarded"] = "12000.00".into()).is_empty(), "amounts are numbers");
    assert!(
        !broken(|p| {
            p["grants"][7].as_object_mut().unwrap().remove("fundingOrganization");
        })
        .is_empty(),
        "a grant needs a funder"
    );
    assert!(!broken(|p| p["modified"] = "yesterday".into()).is_empty(), "dates are dates");
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExactGrant {
    id: String,
    amount_awarded: Box<serde_json::value::RawValue>,
    amount_disbursed: Box<serde_json::value::RawValue>,
    commitment_transaction: Vec<ExactTransaction>,
    disbursement_transaction: Vec<ExactTransaction>,
    fundledger_attribution: Vec<ExactAttribution>,
}

#[derive(serde::Deserialize)]
struct ExactTransaction {
    value: Box<serde_json::value::RawValue>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExactAttribution {
    partner_id: String,
    amount_awarded: Box<serde_json::value::RawValue>,
    amount_disbursed: Box<serde_json::value::RawValue>,
}

#[derive(serde::Deserialize)]
struct ExactPackage {
    grants: Vec<ExactGrant>,
}

fn raw(value: &serde_json::value::RawValue) -> Decimal {
    decimal(value.get())
}

#[test]
fn the_360giving_totals_match_the_ledger() {
    let text = export_offline(demo_ledger(), &giving(three_sixty_giving::Format::Json));
    // Read the numbers as the exact text they were written as.
    let package: ExactPackage = serde_json::from_str(&text).unwrap();
    let state = replayed_state(demo_ledger());
    let totals = state.fund_totals();
    let awarded: Decimal = package.grants.iter().map(|g| raw(&g.amount_awarded)).sum();
    let disbursed: Decimal = package.grants.iter().map(|g| raw(&g.amount_disbursed)).sum();
    assert_eq!(awarded, eur(totals.awarded.minor()), "awarded = the partners' awarded (net of releases)");
    assert_eq!(disbursed, eur(totals.paid.minor() - totals.refunded.minor()), "disbursed = paid − refunded");
    let mut per_partner: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    for g in &package.grants {
        let commitments: Decimal = g.commitment_transaction.iter().map(|t| raw(&t.value)).sum();
        let disbursements: Decimal = g.disbursement_transaction.iter().map(|t| raw(&t.value)).sum();
        assert_eq!(commitments, raw(&g.amount_awarded), "{}: commitment transactions", g.id);
        assert_eq!(disbursements, raw(&g.amount_disbursed), "{}: disbursement transactions", g.id);
        let parts: Decimal = g.fundledger_attribution.iter().map(|a| raw(&a.amount_awarded)).sum();
        assert_eq!(parts, raw(&g.amount_awarded), "{}: attribution adds up", g.id);
        for a in &g.fundledger_attribution {
            let entry = per_partner.entry(a.partner_id.clone()).or_default();
            entry.0 += raw(&a.amount_awarded);
            entry.1 += raw(&a.amount_disbursed);
        }
    }
    for (partner, (awarded, disbursed)) in per_partner {
        let pot = state.partner_totals(&fundledger::domain::PartnerId::new(&partner).unwrap());
        assert_eq!(awarded, eur(pot.awarded.minor()), "{partner}'s awarded");
        assert_eq!(disbursed, eur(pot.paid.minor() - pot.refunded.minor()), "{partner}'s disbursed");
    }
}

/// The schema path a spreadsheet title such as `Recipient Org:City` names,
/// found by the schema's own titles; `None` if no field has that title.
fn schema_path_of(title: &str, grant_schema: &Value) -> Option<String> {
    let defs = &grant_schema["$defs"];
    let resolve = |v: &Value| -> Value {
        let target = v.get("items").unwrap_or(v);
        match target.get("$ref").and_then(Value::as_str) {
            Some(r) => defs[r.trim_start_matches("#/$defs/")].clone(),
            None => target.clone(),
        }
    };
    // A property's title is its own, or that of the definition it refers to.
    let title_of = |p: &Value| p.get("title").cloned().unwrap_or_else(|| resolve(p)["title"].clone());
    let mut node = grant_schema.clone();
    let mut path = Vec::new();
    for part in title.split(':') {
        let properties = node["properties"].as_object()?;
        let (name, property) = properties.iter().find(|(_, p)| title_of(p) == part)?;
        path.push(name.clone());
        node = resolve(property);
    }
    Some(path.join("."))
}

#[test]
fn the_360giving_csv_uses_the_standards_column_titles_and_adds_up() {
    let grant_schema = read_schema("360-giving-schema.json");
    for title in three_sixty_giving::CSV_STANDARD_COLUMNS {
        assert!(schema_path_of(title, &grant_schema).is_some(), "{title:?} is not a title of the standard");
    }
    assert_eq!(
        schema_path_of("Recipient Org:City", &grant_schema).as_deref(),
        Some("recipientOrganization.addressLocality")
    );
    assert!(schema_path_of("Recipient Org:Favourite Colour", &grant_schema).is_none());

    let text = export_offline(demo_ledger(), &giving(three_sixty_giving::Format::Csv));
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header.iter().take(20).collect::<Vec<_>>(), &three_sixty_giving::CSV_STANDARD_COLUMNS);
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<_> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 159);
    let state = replayed_state(demo_ledger());
    let awarded: Decimal = rows.iter().map(|r| decimal(&r[column("Amount Awarded")])).sum();
    assert_eq!(awarded, eur(state.fund_totals().awarded.minor()));
    for partner in state.partners.keys() {
        let attributed: Decimal =
            rows.iter().map(|r| decimal(&r[column(&format!("Attributed Awarded:{partner}"))])).sum();
        assert_eq!(attributed, eur(state.partner_totals(partner).awarded.minor()), "{partner}");
    }
}

// ------------------------------------------------------------------ statement

fn all_quarters() -> statement::Request {
    statement::Request { partner: None, period: None, format: statement::Format::Csv }
}

#[test]
fn every_statement_row_rolls_forward_and_the_last_closing_is_the_cash_held() {
    let events = events_of(demo_ledger());
    let state = replayed_state(demo_ledger());
    let s = statement::Statement::from_events(&events, &all_quarters()).unwrap();
    assert_eq!(s.sections.len(), state.partners.len() + 1, "every partner and the fund");
    for section in &s.sections {
        let mut previous_closing = 0;
        for (period, row) in &section.rows {
            assert_eq!(
                row.closing_held,
                row.opening_held + row.contributions - row.transfers + row.refunds,
                "{:?} {}",
                section.scope,
                period.label
            );
            assert_eq!(row.opening_held, previous_closing, "a period opens where the last one closed");
            previous_closing = row.closing_held;
        }
        let (last, end) = section.rows.last().unwrap();
        let pot = match &section.scope {
            statement::Scope::Partner { id, .. } => state.partner_totals(id),
            statement::Scope::Fund => state.fund_totals(),
        };
        assert_eq!(end.closing_held, pot.cash_held().minor(), "{:?} at {}", section.scope, last.label);
        assert_eq!(end.open_commitments, pot.open_commitments().minor());
        assert_eq!(end.available, pot.available().minor());
    }
    // Quarters run without a gap from the first receipt (2022-Q3) to the last payment (2024-Q1).
    let labels: Vec<_> = s.sections[0].rows.iter().map(|(p, _)| p.label.as_str()).collect();
    assert_eq!(labels.first(), Some(&"2022-Q3"));
    assert_eq!(labels.last(), Some(&"2024-Q1"));
    assert_eq!(labels.len(), 7);
}

#[test]
fn one_partner_one_period_statement_matches_the_full_one() {
    let events = events_of(demo_ledger());
    let full = statement::Statement::from_events(&events, &all_quarters()).unwrap();
    let porticus = fundledger::domain::PartnerId::new("porticus").unwrap();
    let request = statement::Request {
        partner: Some(porticus.clone()),
        period: Some(statement::Period::parse("2023-Q3").unwrap()),
        format: statement::Format::Table,
    };
    let one = statement::Statement::from_events(&events, &request).unwrap();
    assert_eq!(one.sections.len(), 1);
    let from_full = full
        .sections
        .iter()
        .find(|s| s.scope == statement::Scope::Partner { id: porticus.clone(), name: "Porticus".into() })
        .unwrap()
        .rows
        .iter()
        .find(|(p, _)| p.label == "2023-Q3")
        .unwrap();
    assert_eq!(&one.sections[0].rows[0], from_full);
    let table = one.table();
    assert!(table.contains("porticus") && table.contains("2023-Q3"), "{table}");

    let unknown =
        statement::Request { partner: Some(fundledger::domain::PartnerId::new("nobody").unwrap()), ..request };
    let error = statement::Statement::from_events(&events, &unknown).unwrap_err();
    assert_eq!(error.to_string(), "the fund has no partner \"nobody\"");
}

#[test]
fn periods_parse_quarters_months_and_years_and_refuse_anything_else() {
    let check = |text: &str, expect: Option<(&str, &str, &str)>| {
        let got = statement::Period::parse(text)
            .ok()
            .map(|p| (p.label.clone(), p.start.to_string(), p.last_day().to_string()));
        let expect = expect.map(|(l, s, e)| (l.to_string(), s.to_string(), e.to_string()));
        assert_eq!(got, expect, "{text}");
    };
    check("2024-Q1", Some(("2024-Q1", "2024-01-01", "2024-03-31")));
    check("2024-Q4", Some(("2024-Q4", "2024-10-01", "2024-12-31")));
    check("2024-02", Some(("2024-02", "2024-02-01", "2024-02-29")));
    check("2023-12", Some(("2023-12", "2023-12-01", "2023-12-31")));
    check("2026", Some(("2026", "2026-01-01", "2026-12-31")));
    for bad in ["2024-Q5", "2024-Q0", "2024-13", "24-Q1", "2024-1", "Q1-2024", "", "2024-Q1x", "abcd"] {
        check(bad, None);
    }
    assert_eq!(
        statement::Period::parse("2024-Q5").unwrap_err().to_string(),
        "period \"2024-Q5\" is not a quarter (2024-Q1), a month (2024-03) or a year (2024)"
    );
}

#[test]
fn a_statement_books_money_by_value_date_at_the_quarter_boundaries() {
    use fundledger::domain::{Amount, ApplicationId, Currency, Date, PartnerId, PotKey, Share};
    let pot = PotKey { partner: PartnerId::new("porticus").unwrap(), earmark: None };
    let amount = |minor| Amount::from_minor(minor).unwrap();
    let date = |text| Date::parse(text).unwrap();
    let share = |minor| vec![Share { pot: pot.clone(), amount: amount(minor) }];
    let app = ApplicationId::new("a-1").unwrap();
    let events = vec![
        Event::FundOpened { name: "F".into(), currency: Currency::eur() },
        Event::PartnerAdmitted { partner: pot.partner.clone(), name: "Porticus".into(), organisation_id: "x".into() },
        Event::ContributionReceived {
            pot: pot.clone(),
            amount: amount(100_000),
            value_date: date("2024-03-31"),
            bank_reference: "b".into(),
        },
        Event::GrantAwarded {
            application: app.clone(),
            amount: amount(60_000),
            attribution: share(60_000),
            reason: "r".into(),
            decided_by: "o".into(),
            decided_on: date("2024-04-01"),
        },
        Event::PaymentMade {
            application: app.clone(),
            tranche: 1,
            amount: amount(60_000),
            attribution: share(60_000),
            value_date: date("2024-06-30"),
            bank_reference: "p".into(),
        },
        Event::RefundReceived {
            application: app.clone(),
            amount: amount(10_000),
            attribution: share(10_000),
            releases: true,
            value_date: date("2024-07-01"),
            bank_reference: "r".into(),
        },
    ];
    let s = statement::Statement::from_events(&events, &all_quarters()).unwrap();
    let rows: Vec<_> = s.sections[0].rows.iter().map(|(p, r)| (p.label.as_str(), r.clone())).collect();
    let row = |opening, contributions, transfers, refunds, closing, awards, releases, open, available| statement::Row {
        opening_held: opening,
        contributions,
        transfers,
        refunds,
        closing_held: closing,
        awards,
        releases,
        open_commitments: open,
        available,
    };
    assert_eq!(
        rows,
        vec![
            ("2024-Q1", row(0, 100_000, 0, 0, 100_000, 0, 0, 0, 100_000)),
            ("2024-Q2", row(100_000, 0, 60_000, 0, 40_000, 60_000, 0, 0, 40_000)),
            ("2024-Q3", row(40_000, 0, 0, 10_000, 50_000, 0, 10_000, 0, 50_000)),
        ]
    );
    let mut csv = Vec::new();
    s.write_csv(&mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.contains("porticus,Porticus,2024-Q2,2024-04-01,2024-06-30,1000.00,0.00,600.00,0.00,400.00,600.00,0.00,600.00,0.00,400.00,EUR"), "{csv}");
}

// ------------------------------------------------------------------ through the server

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_service_writes_the_same_bytes_as_the_offline_command() {
    use fundledger::api::pb;
    use tokio_stream::StreamExt;
    let copy = copy_of(demo_ledger());
    let dir = copy.path().to_owned();
    let exports: Vec<(Export, &str)> = vec![
        (Export::Events, "events"),
        (Export::Journal, "journal"),
        (giving(three_sixty_giving::Format::Csv), "360giving csv"),
        (Export::Statement(all_quarters()), "statement"),
    ];
    let mut online = Vec::new();
    {
        let ledger = fundledger::ledger::Ledger::open(fundledger::ledger::LedgerConfig::new(&dir)).unwrap();
        // The demo's tokens are gone with it: an auditor is added directly,
        // before the server starts, so both exports cover that event too.
        let auditor = support::grant_in_process(&ledger, support::AUDITOR, fundledger::domain::Role::Auditor).await;
        let server = support::TestServer::serve(ledger, String::new()).await;
        let mut client = server.export(&auditor);

        // A running ledger is refused offline, not copied mid-write.
        let running = OfflineLog::open(&dir).err().unwrap();
        assert!(running.to_string().contains("is running"), "{running}");

        for (_, name) in &exports {
            let mut stream = match *name {
                "events" => client.export_events(pb::ExportEventsRequest {}).await,
                "journal" => client.export_journal(pb::ExportJournalRequest {}).await,
                "360giving csv" => {
                    client
                        .export360_giving(pb::Export360GivingRequest { prefix: String::new(), format: "csv".into() })
                        .await
                }
                _ => {
                    client
                        .export_statement(pb::ExportStatementRequest {
                            partner_id: None,
                            period: None,
                            format: "csv".into(),
                        })
                        .await
                }
            }
            .unwrap()
            .into_inner();
            let mut text = String::new();
            let mut chunks = 0;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.unwrap().text;
                assert!(chunk.ends_with('\n'), "chunks end at line breaks");
                if *name == "events" {
                    assert_eq!(chunk.matches('\n').count(), 1, "one event per chunk");
                }
                text.push_str(&chunk);
                chunks += 1;
            }
            assert!(chunks > 0);
            online.push(text);
        }

        // Refusals carry a status a client can act on.
        let status = |r: Result<tonic::Response<tonic::Streaming<pb::ExportChunk>>, tonic::Status>| r.err().unwrap();
        let unknown = status(
            client
                .export_statement(pb::ExportStatementRequest {
                    partner_id: Some("nobody".into()),
                    period: None,
                    format: String::new(),
                })
                .await,
        );
        assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
        let period = status(
            client
                .export_statement(pb::ExportStatementRequest {
                    partner_id: None,
                    period: Some("2024-Q9".into()),
                    format: String::new(),
                })
                .await,
        );
        assert_eq!(period.code(), tonic::Code::InvalidArgument);
        assert!(period.message().contains("2024-Q9"), "{}", period.message());
        let format = status(
            client.export360_giving(pb::Export360GivingRequest { prefix: String::new(), format: "xml".into() }).await,
        );
        assert_eq!(format.code(), tonic::Code::InvalidArgument);

        server.stop().await;
    }
    for ((what, name), online) in exports.iter().zip(online) {
        assert_eq!(export_offline(&dir, what), online, "{name}: offline and online differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_a_ledger_without_a_fund_or_grants_is_refused_with_a_reason() {
    use fundledger::api::pb;
    let dir = tempfile::tempdir().unwrap();
    let server = support::TestServer::start(dir.path()).await;
    let cast = server.cast().await;
    let mut client = server.export(cast.token(support::AUDITOR));
    // Access events only: no fund yet.
    let empty = client.export_events(pb::ExportEventsRequest {}).await.err().unwrap();
    assert_eq!(empty.code(), tonic::Code::NotFound, "{empty:?}");

    cast.admin()
        .open_fund(pb::OpenFundRequest {
            meta: Some(pb::CommandMeta { request_id: "open".into(), expected_version: None, positions_only: false }),
            name: "F".into(),
            currency: "EUR".into(),
            minor_units: 2,
        })
        .await
        .unwrap();
    let no_grants = client.export360_giving(pb::Export360GivingRequest::default()).await.err().unwrap();
    assert_eq!(no_grants.code(), tonic::Code::FailedPrecondition);
    assert!(no_grants.message().starts_with("no_grants: "), "{}", no_grants.message());
    server.stop().await;
}
