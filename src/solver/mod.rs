//! Challenge solvers: what answers the CA's validation requests.
//!
//! [`http01`] serves http-01 key authorizations, standalone or from a
//! token map a caller's own server can read.

pub mod http01;
