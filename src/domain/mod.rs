//! The fund's business: commands, events, state, and the rules between them.
//!
//! **The domain is pure.** It knows nothing of sled, tokio, tonic, protobuf,
//! files or the clock: time, ids and the acting principal come in as
//! arguments. All business rules live in [`decide`]; [`FundState::evolve`]
//! only applies facts. Replay is a fold of `evolve` over the log.

pub mod access;
pub mod applications;
pub mod attribution;
pub mod command;
pub mod dated;
pub mod decide;
pub mod event;
pub mod ids;
pub mod journal;
pub mod money;
pub mod rejection;
pub mod state;
pub mod stream;

pub use access::{Actor, Role};
pub use applications::Applications;
pub use command::{Applicant, Command};
pub use decide::{decide, Context};
pub use event::{Event, PotKey, Share, EVENT_SCHEMA_VERSION, EVENT_TYPE_NAMES};
pub use ids::{ApplicationId, Date, PartnerId, PrincipalId, RoundId};
pub use money::{Amount, AmountError, Currency, MoneyInput, SignedAmount};
pub use rejection::{Rejection, RejectionKind};
pub use state::{ApplicationStatus, FundState, GrantStatus};
pub use stream::StreamId;
