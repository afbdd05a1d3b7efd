//! Who may do what. Roles are facts in the log (granting and revoking access
//! are events), so an auditor sees who could do what, when. This module is
//! pure: it decides from the acting principal's role; proving who is acting
//! (tokens, TLS) is the shell's job.

use super::command::Command;
use super::ids::{PartnerId, PrincipalId};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Opens the fund and rounds, admits partners, grants and revokes access.
    Admin,
    /// Grant officer or treasurer: applications, decisions, receipts,
    /// payments, refunds, settlements.
    Officer,
    /// A partner fund: pledges for itself, reads its own balance and the
    /// alliance's shared figures.
    Partner(PartnerId),
    /// Reads everything, writes nothing.
    Auditor,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Admin => f.write_str("admin"),
            Role::Officer => f.write_str("officer"),
            Role::Partner(p) => write!(f, "partner {p}"),
            Role::Auditor => f.write_str("auditor"),
        }
    }
}

/// The authenticated principal a command or query acts for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub principal: PrincipalId,
    pub role: Role,
}

/// What a query reads, for [`may_read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read<'a> {
    /// One partner's balances.
    PartnerBalances(&'a PartnerId),
    /// Every partner's balances.
    AllPartnerBalances,
    /// Fund totals and round figures: what the alliance shares.
    SharedFigures,
    /// Applications, grants, the event log, exports, verification.
    Details,
    /// Who has access (admins and auditors).
    Principals,
    /// The whole ledger at once, for a backup: every event, who has access
    /// (token hashes) included. Admins (the operator backs up) and auditors
    /// (who read everything anyway); not officers, who may not read who has
    /// access.
    Backup,
}

/// Whether `role` may send `command`. A partner may only act for itself.
pub fn may_send(role: &Role, command: &Command) -> bool {
    use Command::*;
    match command {
        OpenFund { .. }
        | AdmitPartner { .. }
        | OpenRound { .. }
        | CloseRound { .. }
        | SetApprovalThresholds { .. }
        | GrantAccess { .. }
        | RevokeAccess { .. } => *role == Role::Admin,
        PledgeContribution { partner, .. } | ReducePledge { partner, .. } => {
            matches!(role, Role::Partner(own) if own == partner)
        }
        RecordReceipt { .. }
        | SubmitApplication { .. }
        | WithdrawApplication { .. }
        | RejectApplication { .. }
        | AwardGrant { .. }
        | ProposeAward { .. }
        | ApproveAward { .. }
        | ReduceGrant { .. }
        | WithdrawGrant { .. }
        | SettleGrant { .. }
        | MakePayment { .. }
        | ProposePayment { .. }
        | ApprovePayment { .. }
        | RecordRefund { .. }
        | DeclareConflict { .. } => *role == Role::Officer,
    }
}

/// Whether `role` may read `what`.
pub fn may_read(role: &Role, what: Read<'_>) -> bool {
    match role {
        Role::Admin | Role::Auditor => true,
        Role::Officer => !matches!(what, Read::Principals | Read::Backup),
        Role::Partner(own) => match what {
            Read::PartnerBalances(partner) => partner == own,
            Read::SharedFigures => true,
            Read::AllPartnerBalances | Read::Details | Read::Principals | Read::Backup => false,
        },
    }
}
