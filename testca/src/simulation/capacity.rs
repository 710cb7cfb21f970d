//! A capacity planner across Let's Encrypt's published timeline: for a
//! fleet (certificates, registered domains), each step's lifetimes and
//! authorization reuse are simulated with the fewest accounts that keep
//! it at 0 429s, 0 expiries and every certificate issued, reporting the
//! requests per day by endpoint and the peak use of each limit.

use std::time::Duration;

use super::{SimulationConfig, SimulationReport, simulate};
use sturdy_acme::Result;

const DAY: u64 = 24 * 3600;

/// One step of the CA's timeline.
///
/// Example: [`fewest_accounts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// Its name (when it takes effect).
    pub name: &'static str,
    /// `classic`'s lifetime.
    pub classic_lifetime: Duration,
    /// How long a validated authorization is reused.
    pub authorization_reuse: Duration,
}

/// Let's Encrypt's timeline for `classic` (its announcement of 2025-12):
/// 90 days and 30-day authorization reuse today, 64 days and 10 days from
/// 2027-02-10, 45 days and 7 hours from 2028-02-16.
pub fn lets_encrypt_timeline() -> [Phase; 3] {
    [
        Phase {
            name: "today (90 d, reuse 30 d)",
            classic_lifetime: Duration::from_secs(90 * DAY),
            authorization_reuse: Duration::from_secs(30 * DAY),
        },
        Phase {
            name: "2027-02-10 (64 d, reuse 10 d)",
            classic_lifetime: Duration::from_secs(64 * DAY),
            authorization_reuse: Duration::from_secs(10 * DAY),
        },
        Phase {
            name: "2028-02-16 (45 d, reuse 7 h)",
            classic_lifetime: Duration::from_secs(45 * DAY),
            authorization_reuse: Duration::from_secs(7 * 3600),
        },
    ]
}

/// What the planner found for one phase.
///
/// Example: [`fewest_accounts`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct CapacityRow {
    /// The phase.
    pub phase: String,
    /// The fewest accounts that met the goals (0: none up to the most
    /// tried).
    pub accounts: usize,
    /// Each number of accounts tried, and whether it met the goals.
    pub tried: Vec<(usize, bool)>,
    /// The run with `accounts` accounts (or the last one tried).
    pub report: SimulationReport,
}

/// Whether a run met the planner's goals: 0 429s, nothing expired,
/// everything issued.
fn meets(r: &SimulationReport) -> bool {
    r.rate_limited_429 == 0 && r.ever_expired == 0 && r.never_issued == 0
}

/// Runs `base` under `phase` (only `classic` certificates) with 1, 2, 4,
/// ... accounts up to `max_accounts`, and returns the first that meets the
/// goals. Call it on tokio's paused clock, as [`simulate`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use std::time::Duration;
/// use sturdy_acme_testca::simulation::{SimulationConfig, fewest_accounts, lets_encrypt_timeline};
///
/// let fleet = SimulationConfig {
///     certificates: 40,
///     domains: 4,
///     days: 5,
///     transient: 0.0,
///     caa_share: 0.0,
///     outage: Duration::ZERO,
///     ..SimulationConfig::default()
/// };
/// let row = fewest_accounts(&fleet, &lets_encrypt_timeline()[2], 4).await?;
/// assert_eq!(row.accounts, 1);
/// assert!(row.report.requests_per_day["newOrder"] > 0.0);
/// # Ok(()) }
/// ```
pub async fn fewest_accounts(
    base: &SimulationConfig,
    phase: &Phase,
    max_accounts: usize,
) -> Result<CapacityRow> {
    fewest_accounts_from(base, phase, 1, max_accounts).await
}

/// [`fewest_accounts`] starting the search at `from` accounts (a large
/// fleet whose initial issuance one account cannot carry within the days
/// simulated skips the runs that cannot meet the goals; a row found this
/// way says only that fewer were not tried).
pub async fn fewest_accounts_from(
    base: &SimulationConfig,
    phase: &Phase,
    from: usize,
    max_accounts: usize,
) -> Result<CapacityRow> {
    let mut tried = Vec::new();
    let mut accounts = from.max(1);
    loop {
        let report = simulate(SimulationConfig {
            accounts,
            tlsserver_share: 0.0,
            classic_lifetime: phase.classic_lifetime,
            authorization_reuse: phase.authorization_reuse,
            ..base.clone()
        })
        .await?;
        let ok = meets(&report);
        tried.push((accounts, ok));
        if ok || accounts >= max_accounts.max(1) {
            return Ok(CapacityRow {
                phase: phase.name.to_owned(),
                accounts: if ok { accounts } else { 0 },
                tried,
                report,
            });
        }
        accounts = (accounts * 2).min(max_accounts.max(1));
    }
}
