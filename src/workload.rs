//! A synthetic but realistic command workload, for benchmarks and load
//! tests: the fund's daily work at volume.
//!
//! [`setup`] opens a fund with [`PARTNERS`] partners, each pledging a large
//! unrestricted sum, and [`ROUNDS`] open rounds. Then each *officer client*
//! repeats a four-command cycle on a new application — record a receipt
//! from a partner, submit the application, award it (attributed pro rata
//! over every partner's pot, so the award event carries [`PARTNERS`]
//! shares) and pay it in full — and each *treasurer client* pledges for its
//! partner. The cycles spread over partners and rounds so that no pot runs
//! dry and no round's ceiling is reached for tens of millions of events
//! (see [`WorkloadClient::next`]).
//!
//! Everything is deterministic: client `c`'s `n`-th command is always the
//! same, so two runs (or a run and its PostgreSQL twin) do the same work.
//! Pure: no I/O, no clock.

use crate::domain::{
    Actor, Amount, Applicant, ApplicationId, Command, Currency, Date, FundState, MoneyInput, PartnerId, PotKey,
    PrincipalId, Role, RoundId,
};

/// Partners of the synthetic fund: as many as in the model case, Loket D.
pub const PARTNERS: usize = 6;
/// Rounds open at once.
pub const ROUNDS: usize = 16;
/// Commands in one officer cycle.
pub const CYCLE_COMMANDS: u64 = 4;

/// A command with who sends it.
#[derive(Clone, Debug)]
pub struct Step {
    pub actor: Actor,
    pub command: Command,
}

/// The principals the workload acts as: an admin for the setup, one
/// officer, and a treasurer per partner.
pub fn admin() -> Actor {
    Actor { principal: PrincipalId::new("wl-admin").expect("valid id"), role: Role::Admin }
}

pub fn officer() -> Actor {
    Actor { principal: PrincipalId::new("wl-officer").expect("valid id"), role: Role::Officer }
}

pub fn treasurer(partner: usize) -> Actor {
    Actor {
        principal: PrincipalId::new(&format!("wl-treasurer-{partner:02}")).expect("valid id"),
        role: Role::Partner(partner_id(partner)),
    }
}

pub fn partner_id(partner: usize) -> PartnerId {
    PartnerId::new(&format!("p{partner:02}")).expect("valid id")
}

pub fn round_id(round: usize) -> RoundId {
    RoundId::new(&format!("r{round:02}")).expect("valid id")
}

fn eur(text: &str) -> MoneyInput {
    MoneyInput::parse(text, "EUR").expect("valid amount")
}

fn date(text: &str) -> Date {
    Date::parse(text).expect("valid date")
}

/// Opens the fund, admits the partners, takes their pledges and opens the
/// rounds. (Granting the principals access is the caller's business: in
/// process nobody needs to, over gRPC the tokens are the client's.)
pub fn setup() -> Vec<Step> {
    let mut steps = vec![Step {
        actor: admin(),
        command: Command::OpenFund { name: "Workload fund".into(), currency: Currency::eur() },
    }];
    for p in 0..PARTNERS {
        steps.push(Step {
            actor: admin(),
            command: Command::AdmitPartner {
                partner: partner_id(p),
                name: format!("Partner fund {p:02}"),
                organisation_id: format!("NL-KVK-{:08}", 10_000_000 + p),
            },
        });
    }
    for round in 0..ROUNDS {
        steps.push(Step {
            actor: admin(),
            command: Command::OpenRound {
                round: round_id(round),
                name: format!("Round {round:02}"),
                budget_ceiling: eur("900000000.00"),
                grant_max: eur("15000.00"),
                opens_on: date("2024-01-01"),
                closes_on: date("2024-12-31"),
            },
        });
    }
    steps.extend((0..PARTNERS).map(|p| large_pledge(p, "2024-01-02")));
    steps
}

/// Partner `p`'s unrestricted pledge of 900 M euros, as the setup and
/// [`top_up_pledges`] send it.
fn large_pledge(p: usize, pledged_on: &str) -> Step {
    Step {
        actor: treasurer(p),
        command: Command::PledgeContribution {
            partner: partner_id(p),
            amount: eur("900000000.00"),
            earmark: None,
            pledged_on: date(pledged_on),
        },
    }
}

/// What [`top_up_pledges`] keeps outstanding on each partner's pot, in
/// whole euros: far more than the receipts of any batch of commands.
pub const PLEDGE_HEADROOM_EUR: i64 = 100_000_000;

/// A further pledge of each partner whose unrestricted pot has less than
/// [`PLEDGE_HEADROOM_EUR`] pledged and not yet received, as large as the
/// setup's. The officers' receipts draw the setup's pledges down by about
/// 2,000 euros a cycle, which runs them out at about 12 M events; a run
/// that goes further (the restart benchmark's builder) sends these first.
/// (The next limit of a long run is the rounds' budgets: 16 × 900 M euros
/// against about 900 awarded a cycle, about 70 M events.) Pure: what to
/// send, from the state.
pub fn top_up_pledges(state: &FundState) -> Vec<Step> {
    let headroom = Amount::from_minor(PLEDGE_HEADROOM_EUR * 100).expect("positive");
    (0..PARTNERS)
        .filter(|&p| {
            let pot = PotKey { partner: partner_id(p), earmark: None };
            state.pots.get(&pot).is_some_and(|pot| pot.outstanding() < headroom)
        })
        .map(|p| large_pledge(p, "2024-03-01"))
        .collect()
}

/// What one client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// Receipts, applications, awards and payments.
    Officer,
    /// Pledges for one partner.
    Treasurer { partner: usize },
}

/// `commands` steps of run `run`'s clients 0 to `clients - 1`, each in turn
/// (after [`setup`], which this does not include).
pub fn in_turn(run: &str, clients: u64, commands: u64) -> impl Iterator<Item = Step> {
    let mut all: Vec<WorkloadClient> = (0..clients).map(|c| WorkloadClient::new(run, c)).collect();
    (0..commands).map(move |n| all[(n % clients) as usize].next_step())
}

/// One client's deterministic command sequence.
#[derive(Clone, Debug)]
pub struct WorkloadClient {
    /// Distinguishes this client's application ids from every other's (and
    /// from another run's against the same ledger).
    prefix: String,
    kind: ClientKind,
    client: u64,
    n: u64,
}

impl WorkloadClient {
    /// Client `client` of a run whose ids start with `run` (letters and
    /// digits; keep it short: ids are at most 64 bytes). Every eighth client
    /// is a treasurer; the rest are officers.
    pub fn new(run: &str, client: u64) -> WorkloadClient {
        let kind = if client % 8 == 7 {
            ClientKind::Treasurer { partner: (client / 8) as usize % PARTNERS }
        } else {
            ClientKind::Officer
        };
        WorkloadClient::of_kind(run, client, kind)
    }

    pub fn of_kind(run: &str, client: u64, kind: ClientKind) -> WorkloadClient {
        WorkloadClient { prefix: format!("{run}c{client}"), kind, client, n: 0 }
    }

    pub fn kind(&self) -> ClientKind {
        self.kind
    }

    /// The request id of the next command: unique per run and client.
    pub fn request_id(&self) -> String {
        format!("{}-{}", self.prefix, self.n)
    }

    /// The next command.
    pub fn next_step(&mut self) -> Step {
        let n = self.n;
        self.n += 1;
        match self.kind {
            ClientKind::Treasurer { partner } => Step {
                actor: treasurer(partner),
                command: Command::PledgeContribution {
                    partner: partner_id(partner),
                    amount: eur(&format!("{}.{:02}", 500 + n % 1000, n % 100)),
                    earmark: None,
                    pledged_on: date("2024-03-01"),
                },
            },
            ClientKind::Officer => {
                let cycle = n / CYCLE_COMMANDS;
                // Spread over partners and rounds by a global cycle number,
                // whatever the number of clients.
                let spread = cycle.wrapping_mul(7919).wrapping_add(self.client);
                let application = ApplicationId::new(&format!("{}-a{cycle}", self.prefix)).expect("valid id");
                let cents = spread % 100;
                let command = match n % CYCLE_COMMANDS {
                    0 => Command::RecordReceipt {
                        partner: partner_id(spread as usize % PARTNERS),
                        amount: eur(&format!("2000.{cents:02}")),
                        earmark: None,
                        value_date: date("2024-03-15"),
                        bank_reference: format!("NL91ABNA0417164300-{}", self.request_id()),
                    },
                    1 => Command::SubmitApplication {
                        application,
                        round: round_id(spread as usize % ROUNDS),
                        applicant: Applicant {
                            name: format!("Buurtinitiatief {}", cycle % 9973).into(),
                            organisation_id: format!("NL-KVK-{:08}", 20_000_000 + cycle % 9_999_999).into(),
                            place: "Utrecht".into(),
                            country: "NL".into(),
                        },
                        title: "Samen sterker in de wijk".into(),
                        description: "Activities for residents of all ages in the neighbourhood centre.".into(),
                        amount_requested: eur(&format!("1000.{cents:02}")),
                        submitted_on: date("2024-04-01"),
                    },
                    2 => Command::AwardGrant {
                        application,
                        amount: eur(&format!("900.{cents:02}")),
                        reason: "meets the criteria".into(),
                        decided_on: date("2024-05-01"),
                    },
                    _ => Command::MakePayment {
                        application,
                        amount: eur(&format!("900.{cents:02}")),
                        value_date: date("2024-05-15"),
                        bank_reference: format!("PAY-{}", self.request_id()),
                    },
                };
                Step { actor: officer(), command }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{decide, Context, FundState};

    fn apply(state: &mut FundState, step: &Step) {
        let events = decide(state, &step.command, &Context { actor: step.actor.clone() })
            .unwrap_or_else(|r| panic!("{:?} refused: {r}", step.command));
        for event in &events {
            state.evolve(event);
        }
    }

    #[test]
    fn every_command_of_the_workload_is_accepted() {
        let mut state = FundState::default();
        for step in setup() {
            apply(&mut state, &step);
        }
        let mut clients: Vec<WorkloadClient> = (0..16).map(|c| WorkloadClient::new("t", c)).collect();
        assert_eq!(clients[7].kind(), ClientKind::Treasurer { partner: 0 });
        for _ in 0..200 {
            for client in &mut clients {
                let step = client.next_step();
                apply(&mut state, &step);
            }
        }
        assert_eq!(state.applications.len(), 14 * 50);
    }

    #[test]
    fn a_partner_short_of_pledges_is_topped_up_and_the_others_are_not() {
        let mut state = FundState::default();
        for step in setup() {
            apply(&mut state, &step);
        }
        assert!(top_up_pledges(&state).is_empty());
        // Partner 3's setup pledge received down to just under the headroom.
        let received = 900_000_000 - PLEDGE_HEADROOM_EUR + 1;
        apply(
            &mut state,
            &Step {
                actor: officer(),
                command: Command::RecordReceipt {
                    partner: partner_id(3),
                    amount: eur(&format!("{received}.00")),
                    earmark: None,
                    value_date: date("2024-03-15"),
                    bank_reference: "NL91ABNA0417164300".into(),
                },
            },
        );
        let top_ups = top_up_pledges(&state);
        assert_eq!(top_ups.len(), 1);
        assert_eq!(top_ups[0].actor, treasurer(3));
        apply(&mut state, &top_ups[0]);
        assert!(top_up_pledges(&state).is_empty());
        let pot = &state.pots[&PotKey { partner: partner_id(3), earmark: None }];
        assert_eq!(pot.outstanding(), Amount::from_minor((1_800_000_000 - received) * 100).unwrap());
    }

    #[test]
    fn a_client_says_the_same_thing_twice() {
        let mut a = WorkloadClient::new("run1", 3);
        let mut b = WorkloadClient::new("run1", 3);
        for _ in 0..9 {
            assert_eq!(a.request_id(), b.request_id());
            assert_eq!(a.next_step().command, b.next_step().command);
        }
    }
}
