//! placeholder
#![forbid(unsafe_code)]

pub mod client;
pub mod crypto;
pub mod error;
pub mod protocol;
pub mod solver;
pub mod store;
pub mod transport;

pub use client::{
    Account, AccountOptions, Authorization, CertificateChain, Challenge, Client, ClientBuilder,
    NewOrder, Order, PollPolicy, RevocationReason,
};
pub use crypto::{
    AccountKey, CertificateKey, CertificateKeyType, Csr, ExternalAccountKey, KeyAlgorithm,
};
pub use error::{Error, Problem, ProblemType, Result, RetryAfter};
pub use protocol::{ChallengeType, Identifier, OrderStatus};
pub use transport::{Endpoint, RequestStats};
