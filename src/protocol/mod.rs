//! ACME wire formats: the JSON resources and request payloads, with no I/O.
//!
//! [`resources`] holds the server's objects (directory, account, order,
//! authorization, challenge) shared by every dialect; [`v2`] holds the
//! RFC 8555 request payloads.

pub mod identifier;
pub mod resources;
pub mod v2;

pub use identifier::Identifier;
pub use resources::{
    Account as AccountResource, AccountStatus, Authorization as AuthorizationResource,
    AuthorizationStatus, Challenge as ChallengeResource, ChallengeStatus, ChallengeType, Directory,
    DirectoryMeta, Order as OrderResource, OrderStatus,
};
