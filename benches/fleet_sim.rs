//! A CDN's fleet in virtual time: renewers (one per account) keep
//! thousands of certificates valid against the embedded CA with Let's
//! Encrypt's limits, on tokio's paused clock, through arrival bursts,
//! renewals, transient failures, a day of CAA timeouts and a CA outage.
//!
//! ```text
//! cargo bench --bench fleet_sim                 # the full size
//! cargo bench --bench fleet_sim -- --certificates 2000 --domains 50 --days 30
//! cargo bench --bench fleet_sim -- --drills --ari-share 1.0 --runs 2
//! ```
//!
//! `--drills` plays the CA's events of issue 29: on day 20 the CA moves a
//! share of the windows into the past (`--ari-share`, 10% by default) and
//! 1% of the fleet arrives as new customers, on
//! day 25 it revokes 2% behind the client's back (CRL only), on day 30 new
//! issuance moves to another chain, on day 40 `tlsserver` is withdrawn.
//! `--runs 2` runs twice with one seed and says whether the figures are
//! identical.
//!
//! `--second-ca` adds a second CA (issue 30): every renewer issues through
//! a CA set that prefers the first, so the first CA's outage
//! (`--outage-minutes`, `--outage-hour`) fails over to the second, and
//! the failover's figures are printed (certificates at each CA, requests
//! that reached the down CA, the slowest certificate that arrived during
//! the outage):
//!
//! ```text
//! cargo bench --bench fleet_sim -- --second-ca --outage-minutes 360 --outage-hour 6 --days 30
//! ```
//!
//! `--plan` is the capacity planner: for the fleet given (certificates,
//! domains), each step of Let's Encrypt's timeline for `classic` (90 days
//! and 30-day authorization reuse; 64 and 10 days from 2027-02-10; 45 days
//! and 7 hours from 2028-02-16) runs with 1, 2, 4, ... accounts (up to
//! `--max-accounts`) until one meets 0 429s, 0 expiries and everything
//! issued, and prints the requests per day by endpoint and the peak use
//! of each limit.
//!
//! It prints the figures (429s, certificates that ever expired, duplicate
//! certificates beyond renewals, requests per certificate, the initial
//! issuance's makespan next to the least the limits allow) and, last, a
//! JSON line with all of them. It exits 1 when a goal is missed.

use std::time::Duration;

use clap::Parser;
use sturdy_acme_testca::simulation::{
    Drills, SecondCa, SimulationConfig, fewest_accounts_from, lets_encrypt_timeline, simulate,
};

const DAY: u64 = 24 * 3600;

#[derive(Parser, Debug)]
#[command(about = "Simulate a fleet of renewers in virtual time")]
struct Args {
    /// Certificates (one name each).
    #[arg(long, default_value_t = 20_000)]
    certificates: usize,
    /// Registered domains.
    #[arg(long, default_value_t = 500)]
    domains: usize,
    /// ACME accounts.
    #[arg(long, default_value_t = 10)]
    accounts: usize,
    /// Simulated days.
    #[arg(long, default_value_t = 90)]
    days: u64,
    /// Arrival bursts ...
    #[arg(long, default_value_t = 4)]
    bursts: usize,
    /// ... this many hours apart.
    #[arg(long, default_value_t = 6)]
    burst_every_hours: u64,
    /// Share of tlsserver (45-day) certificates; the rest are classic.
    #[arg(long, default_value_t = 0.3)]
    tlsserver_share: f64,
    /// Chance of a transient failure per request.
    #[arg(long, default_value_t = 0.05)]
    transient: f64,
    /// Share of domains whose CAA lookups time out for a day ...
    #[arg(long, default_value_t = 0.02)]
    caa_share: f64,
    /// ... from this day.
    #[arg(long, default_value_t = 29)]
    caa_day: u64,
    /// Minutes of CA outage (503) ...
    #[arg(long, default_value_t = 60)]
    outage_minutes: u64,
    /// ... from this hour.
    #[arg(long, default_value_t = 1)]
    outage_hour: u64,
    /// Attempts in flight per renewer.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep each account's state in a FileStore under this directory (e.g.
    /// /dev/shm) instead of in memory.
    #[arg(long)]
    file_store: Option<std::path::PathBuf>,
    /// Play the CA's events (see the top of this file).
    #[arg(long)]
    drills: bool,
    /// A second CA the renewers fail over to (see the top of this file).
    #[arg(long)]
    second_ca: bool,
    /// Minutes a CA that failed with an outage is skipped by the set.
    #[arg(long, default_value_t = 5)]
    down_for_minutes: u64,
    /// The share of windows the day-20 drill moves.
    #[arg(long, default_value_t = 0.1)]
    ari_share: f64,
    /// Runs with the same seed (2: check that the figures are identical).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Run the capacity planner (see the top of this file).
    #[arg(long)]
    plan: bool,
    /// The most accounts the planner tries.
    #[arg(long, default_value_t = 16)]
    max_accounts: usize,
    /// The fewest accounts the planner tries (its search starts there).
    #[arg(long, default_value_t = 1)]
    start_accounts: usize,
    /// Plan only this step of the timeline (0: today, 1: 2027, 2: 2028),
    /// so the steps can run side by side.
    #[arg(long)]
    phase: Option<usize>,
}

fn main() -> std::process::ExitCode {
    // `cargo bench` adds `--bench`: not one of ours.
    let args = Args::parse_from(std::env::args().filter(|a| a != "--bench"));
    let config = SimulationConfig {
        certificates: args.certificates,
        domains: args.domains,
        accounts: args.accounts,
        days: args.days,
        bursts: args.bursts,
        burst_every: Duration::from_secs(args.burst_every_hours * 3600),
        tlsserver_share: args.tlsserver_share,
        transient: args.transient,
        caa_share: args.caa_share,
        caa_at: Duration::from_secs(args.caa_day * 24 * 3600),
        outage: Duration::from_secs(args.outage_minutes * 60),
        outage_at: Duration::from_secs(args.outage_hour * 3600),
        concurrency: args.concurrency,
        seed: args.seed,
        file_store_root: args.file_store.clone(),
        drills: if args.drills {
            Drills {
                ari: Some((Duration::from_secs(20 * DAY), args.ari_share)),
                // 1% of the fleet arrives with the drill.
                new_customers_at_ari: args.certificates / 100,
                crl: Some((Duration::from_secs(25 * DAY), 0.02)),
                chain_change_at: Some(Duration::from_secs(30 * DAY)),
                withdraw_tlsserver_at: Some(Duration::from_secs(40 * DAY)),
            }
        } else {
            Drills::default()
        },
        second_ca: args.second_ca.then(|| {
            let mut second = SecondCa::default();
            second.down_for = Duration::from_secs(args.down_for_minutes * 60);
            second
        }),
        ..SimulationConfig::default()
    };
    if args.plan {
        return plan(&config, args.start_accounts, args.max_accounts, args.phase);
    }
    let mut reports = Vec::new();
    for _ in 0..args.runs.max(1) {
        // A runtime per run: each starts from a fresh paused clock.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a tokio runtime");
        match runtime.block_on(simulate(config.clone())) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("simulation failed: {e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let identical = reports.windows(2).all(|w| w[0].figures() == w[1].figures());
    let report = reports.remove(0);
    println!(
        "{} certificates over {} domains and {} accounts, {} simulated days in {:.1} s",
        report.managed, args.domains, args.accounts, report.days, report.wall_s
    );
    println!(
        "  issued:                         {} ({} renewals)",
        report.issued, report.renewals
    );
    println!(
        "  429s received:                  {} (goal 0)",
        report.rate_limited_429
    );
    println!(
        "  certificates that ever expired: {} (goal 0)",
        report.ever_expired
    );
    println!(
        "  never issued:                   {} (goal 0)",
        report.never_issued
    );
    println!(
        "  duplicates beyond renewals:     {} (goal 0)",
        report.duplicates
    );
    println!(
        "  requests per certificate:       {:.2} ({:.3} per managed certificate per day)",
        report.requests_per_certificate, report.requests_per_certificate_day
    );
    println!(
        "  initial issuance makespan:      {:.2} h, the limits allow {:.2} h: {:.3}x (goal <= 1.05)",
        report.initial_makespan_s / 3600.0,
        report.initial_makespan_bound_s / 3600.0,
        report.makespan_ratio
    );
    println!(
        "  503s (outage):                  {}, pauses {}; deferred by local limits {}",
        report.unavailable_503, report.pauses, report.deferred
    );
    println!(
        "  error answers by status:        {:?}",
        report.error_statuses
    );
    println!(
        "  alreadyReplaced answers:        {}, resolved by resuming the earlier order {}; replaces dropped {} (goal: every 409 resumed)",
        report.already_replaced_409, report.replacements_resumed, report.replaces_dropped
    );
    println!("  failed attempts by class:       {:?}", report.failures);
    for e in &report.rate_limited_errors {
        println!("  429: {e}");
    }
    if args.drills {
        let d = &report.drills;
        println!(
            "  drill (day 20): {} windows moved, {} replaced ({} as exempt ARI renewals), the slowest after {:.2} h (goal: all within 6 h, all exempt)",
            d.ari_moved,
            d.ari_replaced,
            d.ari_replaced_exempt,
            d.ari_slowest_replacement_s / 3600.0
        );
        println!(
            "  new customers arriving with it: {}, {} issued, the slowest after {:.2} h (goal: all within 1 h)",
            d.new_customers,
            d.new_customers_issued,
            d.new_customers_slowest_issue_s / 3600.0
        );
        println!(
            "  CRL only (day 25): {} revoked, {} replaced, the slowest after {:.2} h (goal: all within the 6 h cadence and the renewal)",
            d.crl_revoked,
            d.crl_replaced,
            d.crl_slowest_replacement_s / 3600.0
        );
        println!(
            "  chain change (day 30): {} reports for {} sets renewed after it, {} reported twice (goal: one each)",
            d.chain_changes_reported, d.renewed_after_chain_change, d.chain_changes_reported_twice
        );
        println!(
            "  tlsserver withdrawn (day 40): {} orders fell back to classic, {} failed attempts after it",
            d.profile_fallbacks, d.failures_after_withdrawal
        );
    }
    if let Some(s) = &report.second_ca {
        println!(
            "  two CAs: {} issued at the first, {} at the second ({} while the first was down, {} after it came back)",
            s.issued_first,
            s.issued_second,
            s.issued_second_during_outage,
            s.issued_second_after_outage
        );
        println!(
            "  the first CA's outage: {} requests reached it while down; {} certificates arrived during it, the slowest issued after {:.1} min",
            s.requests_to_down_ca,
            s.arrived_during_outage,
            s.slowest_during_outage_s / 60.0
        );
    }
    if args.runs > 1 {
        println!(
            "  {} runs with seed {}: figures identical: {identical}",
            args.runs, args.seed
        );
    }
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
    let met = report.rate_limited_429 == 0
        && report.ever_expired == 0
        && report.never_issued == 0
        && report.duplicates == 0
        && report.makespan_ratio <= 1.05
        && report.already_replaced_409 == report.replacements_resumed
        && (!args.drills || drills_met(&report.drills))
        && identical;
    if met {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("a goal was missed");
        std::process::ExitCode::from(1)
    }
}

/// The drills' goals: every moved window replaced within 6 hours as an
/// exempt ARI renewal, every new customer arriving with the drill issued
/// within an hour, every certificate revoked behind the client's back
/// replaced, each chain change reported once, nothing failing for the
/// withdrawn profile.
fn drills_met(d: &sturdy_acme_testca::simulation::DrillReport) -> bool {
    let hours = |h: u64| (h * 3600) as f64;
    d.ari_replaced == d.ari_moved
        && d.ari_replaced_exempt == d.ari_moved
        && d.ari_slowest_replacement_s <= hours(6)
        && d.new_customers_issued == d.new_customers
        && d.new_customers_slowest_issue_s <= hours(1)
        && d.crl_replaced == d.crl_revoked
        && d.chain_changes_reported == d.renewed_after_chain_change as u64
        && d.chain_changes_reported_twice == 0
        && d.failures_after_withdrawal == 0
}

/// The capacity planner: a row per step of the timeline.
fn plan(
    fleet: &SimulationConfig,
    start_accounts: usize,
    max_accounts: usize,
    only: Option<usize>,
) -> std::process::ExitCode {
    println!(
        "capacity plan: {} certificates over {} registered domains, {} days per step, seed {}",
        fleet.certificates, fleet.domains, fleet.days, fleet.seed
    );
    let mut rows = Vec::new();
    for (i, phase) in lets_encrypt_timeline().into_iter().enumerate() {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a tokio runtime");
        match runtime.block_on(fewest_accounts_from(
            fleet,
            &phase,
            start_accounts,
            max_accounts,
        )) {
            Ok(row) => {
                let r = &row.report;
                let per_day = |e: &str| r.requests_per_day.get(e).copied().unwrap_or(0.0);
                let peak = |k: &str| r.peak_limit_use.get(k).copied().unwrap_or(0.0) * 100.0;
                println!(
                    "  {}: fewest accounts {} (tried {:?}); requests/day {:.0} (newOrder {:.0}, authz {:.0}, challenge {:.0}, finalize {:.0}, renewalInfo {:.0}, crl {:.1}); peak use: new orders/account {:.0}%, certificates/domain {:.0}%, exact set {:.0}%; 429s {}, expired {}, never issued {}, initial makespan {:.1} h; {:.0} s",
                    row.phase,
                    row.accounts,
                    row.tried,
                    r.requests_per_day.values().sum::<f64>(),
                    per_day("newOrder"),
                    per_day("authz"),
                    per_day("challenge"),
                    per_day("finalize"),
                    per_day("renewalInfo"),
                    per_day("crl"),
                    peak("orders"),
                    peak("domain"),
                    peak("fqdnset"),
                    r.rate_limited_429,
                    r.ever_expired,
                    r.never_issued,
                    r.initial_makespan_s / 3600.0,
                    r.wall_s,
                );
                rows.push(row);
            }
            Err(e) => {
                eprintln!("simulation failed: {e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    println!("{}", serde_json::to_string(&rows).unwrap_or_default());
    if rows.iter().all(|r| r.accounts > 0) {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("a step met no goal within --max-accounts");
        std::process::ExitCode::from(1)
    }
}
