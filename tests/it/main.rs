//! The library's integration tests, one binary: the shared Pebble/embedded-CA suite
//! (the harness crate `tests/support`, as `common`) and one module per behaviour. One binary links the crate's
//! tests once instead of once per file.

// The harness (real Pebble, PostgreSQL and Knot; certificate checks) is
// a crate of its own, shared with the command-line tool's tests.
use sturdy_acme_test_support as common;

mod ca_events;
mod caa;
mod change_feed;
mod dns01;
mod edge_validation;
mod embedded_ca_behaviour;
mod embedded_faults;
mod embedded_v1;
mod embedded_v1_server;
mod embedded_v2;
mod events;
mod examples;
mod governor;
mod hostile_input;
mod integrator;
mod issuer;
mod issuer_management;
mod leftover_journal;
mod lenient_ca;
mod multi_ca;
mod on_demand;
mod pebble_harness;
mod pebble_v2;
mod poll_figures;
mod postgres_seams;
mod postgres_store;
mod renewal_info;
mod renewer;
mod replaces;
mod retry_policies;
mod retry_property;
mod seams;
mod serve;
mod test_ca_like_le;
