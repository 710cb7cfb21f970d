//! An embedded ACME test CA (feature `testing`).
#![allow(dead_code)]

mod pki;
mod server;
pub mod validation;
mod wire;
