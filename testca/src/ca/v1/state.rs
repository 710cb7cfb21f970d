//! What only ACME v1 keeps in the CA's state (below `state.rs`, which holds
//! it, and the v1 front, which reads it).

use std::collections::HashMap;

use time::OffsetDateTime;

/// What only v1 keeps about a registration.
#[derive(Debug, Default)]
pub(in crate::ca) struct V1State {
    /// The agreement URL each registration agreed to.
    pub(super) agreements: HashMap<usize, String>,
    /// When each registration was created.
    pub(super) created: HashMap<usize, OffsetDateTime>,
}
