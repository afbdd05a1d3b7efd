//! A first smoke benchmark of the two hot paths: deciding commands in
//! memory, and committing them durably through the single writer.
//!
//! Run: `cargo bench --bench ledger`. The durable figure includes one
//! flush + fdatasync per group commit, so it depends on the disk.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fundledger::domain::{
    decide, Actor, Command, Context, Currency, Date, FundState, MoneyInput, PartnerId, PrincipalId, Role,
};
use fundledger::ledger::{CommandRequest, Ledger, LedgerConfig};

/// The admin sets the fund up; the partner's treasurer pledges. In process
/// nobody authenticates, but the domain still checks each role.
fn admin() -> Actor {
    Actor { principal: PrincipalId::new("bench-admin").unwrap(), role: Role::Admin }
}

fn treasurer() -> Actor {
    Actor {
        principal: PrincipalId::new("bench-treasurer").unwrap(),
        role: Role::Partner(PartnerId::new("bzk").unwrap()),
    }
}

fn setup_commands() -> Vec<Command> {
    vec![
        Command::OpenFund { name: "Bench fund".into(), currency: Currency::eur() },
        Command::AdmitPartner {
            partner: PartnerId::new("bzk").unwrap(),
            name: "Ministerie van BZK".into(),
            organisation_id: "NL-OIN-00000001003214345000".into(),
        },
    ]
}

fn pledge(i: u64) -> Command {
    Command::PledgeContribution {
        partner: PartnerId::new("bzk").unwrap(),
        amount: MoneyInput::parse(&format!("{}.{:02}", 1000 + i % 9000, i % 100), "EUR").unwrap(),
        earmark: None,
        pledged_on: Date::parse("2024-01-01").unwrap(),
    }
}

fn decide_and_evolve(c: &mut Criterion) {
    let setup = Context { actor: admin() };
    let ctx = Context { actor: treasurer() };
    let mut base = FundState::default();
    for command in setup_commands() {
        for event in decide(&base, &command, &setup).unwrap() {
            base.evolve(&event);
        }
    }
    let commands: Vec<Command> = (0..1000).map(pledge).collect();
    let mut group = c.benchmark_group("domain");
    group.throughput(Throughput::Elements(commands.len() as u64));
    group.bench_function("decide+evolve 1000 pledges", |b| {
        b.iter_batched(
            || base.clone(),
            |mut state| {
                for command in &commands {
                    for event in decide(&state, command, &ctx).unwrap() {
                        state.evolve(&event);
                    }
                }
                state
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn durable_commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let mut next_id = 0u64;
    runtime.block_on(async {
        for command in setup_commands() {
            next_id += 1;
            let request = CommandRequest {
                command,
                request_id: format!("setup-{next_id}"),
                expected_version: None,
                actor: admin(),
            };
            ledger.submit(request).await.unwrap();
        }
    });
    let in_flight = 256u64;
    let mut group = c.benchmark_group("ledger");
    group.sample_size(20);
    group.throughput(Throughput::Elements(in_flight));
    group.bench_function("256 concurrent durable pledges", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let tasks: Vec<_> = (0..in_flight)
                    .map(|i| {
                        next_id += 1;
                        let request = CommandRequest {
                            command: pledge(i),
                            request_id: format!("bench-{next_id}"),
                            expected_version: None,
                            actor: treasurer(),
                        };
                        let ledger = ledger.clone();
                        tokio::spawn(async move { ledger.submit(request).await.unwrap() })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            })
        })
    });
    group.finish();
    runtime.block_on(ledger.shutdown());
}

criterion_group!(benches, decide_and_evolve, durable_commit);
criterion_main!(benches);
