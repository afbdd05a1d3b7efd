//! Double entry: every event that moves money posts journal lines that add
//! up to zero, so the trial balance of the whole ledger is zero after every
//! event. Debits are positive, credits negative.
//!
//! Chart of accounts (one account per partner pot where it says *pot*):
//! - `cash`: the fund's bank account (asset);
//! - `pledges_receivable/pot`: pledged, not yet received (asset);
//! - `partner_funds/pot`: the partner's capital in the fund not yet
//!   committed to grants, i.e. pledged − awarded (equity, credit balance);
//! - `grants_payable/application`: awarded, not yet (net) paid (liability).
//!
//! A pot's available money is `partner_funds` (credit) less
//! `pledges_receivable` (debit): received − awarded.

use super::event::{Event, PotKey, Share};
use super::ids::ApplicationId;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Account {
    Cash,
    PledgesReceivable(PotKey),
    PartnerFunds(PotKey),
    GrantsPayable(ApplicationId),
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pot = |pot: &PotKey| match &pot.earmark {
            None => pot.partner.to_string(),
            Some(round) => format!("{}/earmark/{round}", pot.partner),
        };
        match self {
            Account::Cash => f.write_str("cash"),
            Account::PledgesReceivable(p) => write!(f, "pledges_receivable/{}", pot(p)),
            Account::PartnerFunds(p) => write!(f, "partner_funds/{}", pot(p)),
            Account::GrantsPayable(a) => write!(f, "grants_payable/{a}"),
        }
    }
}

/// One journal line: a debit (positive) or credit (negative) in minor units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posting {
    pub account: Account,
    pub amount: i64,
}

/// The journal lines of one event; empty for events that move no money.
pub fn postings(event: &Event) -> Vec<Posting> {
    use Account::*;
    use Event::*;
    let mut lines = Vec::new();
    let mut post = |debit: Account, credit: Account, amount: i64| {
        lines.push(Posting { account: debit, amount });
        lines.push(Posting { account: credit, amount: -amount });
    };
    let per_share = |shares: &[Share], post: &mut dyn FnMut(&PotKey, i64)| {
        for share in shares {
            post(&share.pot, share.amount.minor());
        }
    };
    match event {
        ContributionPledged { pot, amount, .. } => {
            post(PledgesReceivable(pot.clone()), PartnerFunds(pot.clone()), amount.minor())
        }
        PledgeReduced { pot, amount, .. } => {
            post(PartnerFunds(pot.clone()), PledgesReceivable(pot.clone()), amount.minor())
        }
        ContributionReceived { pot, amount, .. } => post(Cash, PledgesReceivable(pot.clone()), amount.minor()),
        GrantAwarded { application, attribution, .. } => {
            per_share(attribution, &mut |pot, a| post(PartnerFunds(pot.clone()), GrantsPayable(application.clone()), a))
        }
        GrantReduced { application, released, .. }
        | GrantWithdrawn { application, released, .. }
        | GrantSettled { application, released, .. } => {
            per_share(released, &mut |pot, a| post(GrantsPayable(application.clone()), PartnerFunds(pot.clone()), a))
        }
        PaymentMade { application, amount, .. } => post(GrantsPayable(application.clone()), Cash, amount.minor()),
        RefundReceived { application, amount, attribution, releases, .. } => {
            if *releases {
                per_share(attribution, &mut |pot, a| post(Cash, PartnerFunds(pot.clone()), a))
            } else {
                post(Cash, GrantsPayable(application.clone()), amount.minor())
            }
        }
        FundOpened { .. }
        | PartnerAdmitted { .. }
        | RoundOpened { .. }
        | RoundClosed { .. }
        | ApplicationSubmitted { .. }
        | ApplicationWithdrawn { .. }
        | ApplicationRejected { .. }
        | ApprovalThresholdsSet { .. }
        | AccessGranted { .. }
        | AccessRevoked { .. }
        | AwardProposed { .. }
        | PaymentProposed { .. }
        | ConflictDeclared { .. } => {}
    }
    lines
}
