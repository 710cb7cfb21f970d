//! The `acme` binary run as a person runs it (one test binary): issuing
//! (`issue.rs`), the store's subcommands and hints (`manage.rs`), secrets
//! and the output set (`tool.rs`), dns-01 by RFC 2136 with the CAA
//! pre-flight against a real Knot DNS (`dns.rs`).

use sturdy_acme_test_support as common;

mod dns;
mod harness;
mod issue;
mod manage;
mod postgres;
mod tool;
