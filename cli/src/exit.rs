//! The exit status per error class (also in `--help` and the README).

use sturdy_acme::ErrorClass;
use sturdy_acme::timestamp::DisplayTime;

/// The certificate is written (or the command did what it said).
pub const SUCCESS: u8 = 0;
/// A bug, a local crypto failure, or a CA breaking the protocol.
pub const INTERNAL: u8 = 1;
/// Bad arguments or input, or a request the CA refuses for good.
pub const INVALID_INPUT: u8 = 2;
/// A rate limit: the message says when it lifts.
pub const RATE_LIMITED: u8 = 3;
/// CAA: the domain's DNS forbids the CA or did not answer it.
pub const CAA: u8 = 4;
/// The CA could not validate an identifier.
pub const VALIDATION: u8 = 5;
/// The CA or the network kept failing after every retry.
pub const TRANSIENT: u8 = 6;
/// The store (`--store`, the output or key files) failed.
pub const STORE: u8 = 7;

pub const HELP: &str = "Exit status: 0 success; 1 internal error (a bug, or the CA broke the \
protocol); 2 invalid input (arguments, names, files, or a request the CA refuses for good); \
3 rate limited (the message says when it lifts); 4 CAA (the domain's DNS); 5 validation failed; \
6 the CA or network kept failing after every retry; 7 store error.";

/// The exit status for an error, by its class, and a line saying what it
/// means for the person at the terminal.
pub fn status(e: &(dyn std::error::Error + 'static)) -> (u8, String) {
    let Some(e) = e.downcast_ref::<sturdy_acme::Error>() else {
        if e.downcast_ref::<sturdy_acme::StoreError>().is_some() {
            return (STORE, "the store failed".into());
        }
        if e.downcast_ref::<super::outputs::OutputError>().is_some() {
            return (
                STORE,
                "the output files could not be written (the set shown before is whole)".into(),
            );
        }
        return (INVALID_INPUT, "invalid input".into());
    };
    match e.class() {
        ErrorClass::RateLimited {
            retry_at, scope, ..
        } => (
            RATE_LIMITED,
            match retry_at {
                Some(t) => format!(
                    "rate limited by \"{}\" ({scope}) until {}",
                    scope.limit_name(),
                    DisplayTime(t)
                ),
                None => format!(
                    "rate limited by \"{}\" ({scope}); the CA gave no time",
                    scope.limit_name()
                ),
            },
        ),
        ErrorClass::Caa { names, .. } => (
            CAA,
            format!(
                "CAA for {}: the domain's DNS, not this tool",
                names.join(", ")
            ),
        ),
        ErrorClass::Validation { .. } => (VALIDATION, "validation failed".into()),
        ErrorClass::Transient | ErrorClass::BadNonce => (
            TRANSIENT,
            "the CA or the network kept failing; try again later".into(),
        ),
        ErrorClass::Store => (STORE, "the store failed".into()),
        ErrorClass::InvalidInput | ErrorClass::Permanent => {
            (INVALID_INPUT, "the request cannot succeed as it is".into())
        }
        _ => (INTERNAL, "internal error".into()),
    }
}
