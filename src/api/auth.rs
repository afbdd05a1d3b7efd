//! Authentication: a bearer token names a principal, whose role the
//! projections know. Tokens are random, handed to their holder once, and
//! stored only as SHA-256 hashes (in `AccessGranted` events); a token is
//! never logged. Authorization — what a role may do — is the domain's
//! (`domain::access`); this module only establishes who is calling.

use crate::domain::{Actor, PrincipalId, Role};
use crate::ledger::Ledger;
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Status};

/// The metadata key of the bearer token.
pub const AUTHORIZATION: &str = "authorization";
/// What every token starts with, so that a leaked one is easy to recognise
/// (and to scan for).
pub const TOKEN_PREFIX: &str = "flt_";
/// Random bytes per token.
const TOKEN_RANDOM_BYTES: usize = 32;
/// The longest `authorization` value looked at.
const AUTHORIZATION_BYTES_MAX: usize = 256;

/// The SHA-256 of a token: what the ledger stores and compares.
pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token: `flt_` and 64 hex digits (256 bits).
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_RANDOM_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

fn unauthenticated(message: &str) -> Status {
    let mut status = Status::new(Code::Unauthenticated, format!("unauthenticated: {message}"));
    status.metadata_mut().insert(super::service::REASON_METADATA_KEY, "unauthenticated".parse().expect("ascii"));
    status
}

/// The principal a request's bearer token belongs to.
pub fn authenticate<T>(ledger: &Ledger, request: &Request<T>) -> Result<Actor, Status> {
    let value = request
        .metadata()
        .get(AUTHORIZATION)
        .ok_or_else(|| unauthenticated("no bearer token; send `authorization: Bearer <token>`"))?;
    let value = value
        .to_str()
        .ok()
        .filter(|v| v.len() <= AUTHORIZATION_BYTES_MAX)
        .ok_or_else(|| unauthenticated("the authorization header is not a bearer token"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthenticated("the authorization header is not `Bearer <token>`"))?;
    let hash = token_sha256(token);
    let projections = ledger.projections();
    let state = &projections.state;
    let principal = state
        .active_tokens
        .get(&hash)
        .ok_or_else(|| unauthenticated("the token is unknown, or its access was revoked"))?;
    let role = state.principals[principal].role.clone();
    Ok(Actor { principal: principal.clone(), role })
}

/// The actor of `fundledger init`, which creates the first admin before
/// anyone can authenticate.
pub fn bootstrap_actor() -> Actor {
    Actor { principal: PrincipalId::new("init").expect("valid id"), role: Role::Admin }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("this ledger already has principals; `init` only sets up a new ledger")]
    AlreadyInitialised,
    #[error("cannot generate a token: {0}")]
    Random(#[from] getrandom::Error),
    #[error("cannot record the admin: {0}")]
    Command(#[from] crate::ledger::CommandError),
}

/// Creates the first admin of a new ledger and returns their token — the
/// only time it is ever shown. Runs in-process, before any server.
pub async fn init_admin(ledger: &Ledger, admin: PrincipalId) -> Result<String, InitError> {
    if !ledger.projections().state.principals.is_empty() {
        return Err(InitError::AlreadyInitialised);
    }
    let token = new_token()?;
    ledger
        .submit(crate::ledger::CommandRequest {
            command: crate::domain::Command::GrantAccess {
                principal: admin,
                role: Role::Admin,
                token_sha256: token_sha256(&token),
            },
            request_id: "init".to_owned(),
            expected_version: None,
            actor: bootstrap_actor(),
        })
        .await?;
    Ok(token)
}

/// Adds `authorization: Bearer <token>` to every call of a client.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    /// Fails only if the token has characters a header cannot carry.
    pub fn new(token: &str) -> Result<Bearer, tonic::metadata::errors::InvalidMetadataValue> {
        Ok(Bearer(format!("Bearer {}", token.trim()).parse()?))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert(AUTHORIZATION, self.0.clone());
        Ok(request)
    }
}

/// A ledger client that sends a bearer token with every call.
pub type Client = super::pb::ledger_client::LedgerClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

/// A client on `channel` calling as the holder of `token`.
pub fn client(channel: tonic::transport::Channel, token: &str) -> Result<Client, Status> {
    let bearer =
        Bearer::new(token).map_err(|_| Status::invalid_argument("the token has characters a header cannot carry"))?;
    Ok(super::pb::ledger_client::LedgerClient::with_interceptor(channel, bearer))
}
