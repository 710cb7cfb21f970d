//! The renewer against the embedded CA, on tokio's paused clock (months in
//! seconds): pacing by the limits' refill without a 429, urgency, per
//! identifier backoff, the outage pause, restart from the store, two
//! processes sharing one store, and the fleet simulation at a small size.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sturdy_acme::renewer::{
    CertificateSpec, ManagedState, Renewer, RenewerEvent, RenewerPolicy, RenewerStatus,
};
use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::{FileStore, MemoryStore, Store};
use sturdy_acme::{Clock, Event, Issuer, Limit, RateLimits};
use sturdy_acme_testca::simulation::{SimulationConfig, simulate};
use sturdy_acme_testca::{CaaPolicy, Fault, FaultRule, RetryAfterForm, TestCa, Trigger};

use crate::issuer::temp_store;

pub(crate) const MIN: u64 = 60;
pub(crate) const HOUR: u64 = 3600;
pub(crate) const DAY: u64 = 24 * HOUR;

/// Answers by status, as the client saw them (and the profile fallbacks
/// it reported).
#[derive(Default)]
pub(crate) struct Statuses(
    Mutex<BTreeMap<u16, u64>>,
    Mutex<Vec<(String, Option<String>)>>,
);

impl Statuses {
    pub(crate) fn get(&self, status: u16) -> u64 {
        self.0.lock().unwrap().get(&status).copied().unwrap_or(0)
    }

    /// The `Event::ProfileFallback`s: (wanted, used).
    pub(crate) fn fallbacks(&self) -> Vec<(String, Option<String>)> {
        self.1.lock().unwrap().clone()
    }
}

/// An issuer on `store` for the in-process `ca`, on the tokio calendar,
/// with `limits` in its ledger; the statuses the CA answered are counted.
async fn issuer<S: Store>(ca: &TestCa, store: S, limits: RateLimits) -> (Issuer<S>, Arc<Statuses>) {
    issuer_with(ca, store, limits, |b| b).await
}

/// [`issuer`], with the builder adjusted by `adjust`.
pub(crate) async fn issuer_with<S: Store>(
    ca: &TestCa,
    store: S,
    limits: RateLimits,
    adjust: impl FnOnce(sturdy_acme::IssuerBuilder<S>) -> sturdy_acme::IssuerBuilder<S>,
) -> (Issuer<S>, Arc<Statuses>) {
    let statuses = Arc::new(Statuses::default());
    let seen = Arc::clone(&statuses);
    let client = ca
        .client_builder()
        .clock(Clock::tokio())
        .on_event(move |e| match e {
            Event::Exchange {
                status: Some(s), ..
            } => *seen.0.lock().unwrap().entry(*s).or_default() += 1,
            Event::ProfileFallback { wanted, used } => {
                seen.1.lock().unwrap().push((wanted.clone(), used.clone()))
            }
            _ => {}
        })
        .build()
        .await
        .unwrap();
    let issuer = adjust(
        Issuer::builder(client, store)
            .solver(Arc::new(Http01Solver::unserved()))
            .rate_limits(limits),
    )
    .build();
    (issuer, statuses)
}

pub(crate) fn policy() -> RenewerPolicy {
    RenewerPolicy::default()
        .with_concurrency(32)
        .with_seed(Some(7))
}

/// Starts `renewer.run()` in the background.
pub(crate) fn start<S: Store>(
    renewer: &Renewer<S>,
) -> tokio::task::JoinHandle<sturdy_acme::Result<()>> {
    let r = renewer.clone();
    tokio::spawn(async move { r.run().await })
}

/// Sleeps (virtual time) in steps of `step` until `done(status)` or `limit`.
pub(crate) async fn wait_until<S: Store>(
    renewer: &Renewer<S>,
    step: Duration,
    limit: Duration,
    done: impl Fn(&RenewerStatus) -> bool,
) -> RenewerStatus {
    let started = tokio::time::Instant::now();
    loop {
        let status = renewer.status();
        if done(&status) {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "not done after {limit:?}: {:?}",
            status
                .certificates
                .iter()
                .filter(|c| c.state != ManagedState::Valid)
                .take(3)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(step).await;
    }
}

pub(crate) fn all_valid(n: usize) -> impl Fn(&RenewerStatus) -> bool {
    move |s| s.certificates.len() == n && s.count(ManagedState::Valid) == n
}

pub(crate) fn specs(names: impl IntoIterator<Item = String>) -> Vec<CertificateSpec> {
    names
        .into_iter()
        .map(|n| CertificateSpec::new([n]).unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_1000_under_one_domain_is_paced_by_the_refill_without_a_429() {
    // 100 certificates per registered domain per hour (a token every 36 s),
    // Let's Encrypt's 300 new orders per account per 3 hours.
    let limits = RateLimits {
        certificates_per_domain: Some(Limit::new(100, Duration::from_secs(HOUR))),
        ..RateLimits::lets_encrypt()
    };
    let ca = TestCa::builder()
        .rate_limits(limits.clone())
        .start_in_process()
        .unwrap();
    let (issuer, statuses) = issuer(&ca, MemoryStore::new(), limits).await;
    let renewer = Renewer::builder(issuer).policy(policy()).build();
    let t0 = Clock::tokio().now();
    renewer
        .add_all(specs((0..1000).map(|i| format!("c{i}.burst.example"))))
        .await
        .unwrap();
    let running = start(&renewer);
    wait_until(
        &renewer,
        Duration::from_secs(10 * MIN),
        Duration::from_secs(2 * DAY),
        all_valid(1000),
    )
    .await;
    renewer.shutdown();
    running.await.unwrap().unwrap();

    assert_eq!(statuses.get(429), 0, "the CA never refused with 429");
    let ledger = ca.ledger();
    assert_eq!(ledger.certificates.len(), 1000, "each issued once");
    let mut issued: Vec<Duration> = ledger
        .certificates
        .iter()
        .map(|c| c.issued_at.duration_since(t0).unwrap())
        .collect();
    issued.sort();
    // Spread over the refill: the k-th beyond the burst no sooner than k
    // tokens' refill ...
    let interval = Duration::from_secs(36);
    for (k, at) in issued.iter().enumerate().skip(100) {
        let earliest = interval * (k as u32 + 1 - 100);
        assert!(
            *at + Duration::from_secs(1) >= earliest,
            "certificate {k} at {at:?}, before {earliest:?}"
        );
    }
    // ... and not much later: within 5% of the least the limit allows.
    let bound = interval * 900;
    let makespan = *issued.last().unwrap();
    assert!(
        makespan.as_secs_f64() <= bound.as_secs_f64() * 1.05,
        "makespan {makespan:?} against {bound:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_renewal_does_not_wait_behind_new_orders_held_by_the_account_budget() {
    // 5 new orders per hour: 30 new customers take 6 hours.
    let limits = RateLimits {
        new_orders_per_account: Some(Limit::new(5, Duration::from_secs(HOUR))),
        ..RateLimits::lets_encrypt()
    };
    let ca = TestCa::builder()
        .rate_limits(limits.clone())
        .start_in_process()
        .unwrap();
    let (issuer, statuses) = issuer(&ca, MemoryStore::new(), limits).await;
    let renewer = Renewer::builder(issuer).policy(policy()).build();
    renewer
        .add(CertificateSpec::new(["old.example"]).unwrap())
        .await
        .unwrap();
    let running = start(&renewer);
    let status = wait_until(
        &renewer,
        Duration::from_secs(MIN),
        Duration::from_secs(HOUR),
        all_valid(1),
    )
    .await;
    let first = status.certificates[0].clone();
    // A classic certificate is due at 2/3 of its 90 days (day 60). Just
    // before, 30 new customers arrive and spend the account's budget.
    tokio::time::sleep(Duration::from_secs(60 * DAY - 2 * HOUR)).await;
    renewer
        .add_all(specs((0..30).map(|i| format!("new{i}.example"))))
        .await
        .unwrap();
    let due = Clock::tokio().now() + Duration::from_secs(2 * HOUR);
    wait_until(
        &renewer,
        Duration::from_secs(10 * MIN),
        Duration::from_secs(DAY),
        all_valid(31),
    )
    .await;
    renewer.shutdown();
    running.await.unwrap().unwrap();

    assert_eq!(statuses.get(429), 0);
    let ledger = ca.ledger();
    let renewed = ledger
        .certificates
        .iter()
        .filter(|c| c.identifiers[0].value == "old.example")
        .map(|c| c.issued_at)
        .max()
        .unwrap();
    let last_new = ledger
        .certificates
        .iter()
        .filter(|c| c.identifiers[0].value.starts_with("new"))
        .map(|c| c.issued_at)
        .max()
        .unwrap();
    assert_eq!(ledger.issued_for(&["old.example"]), 2, "renewed once");
    assert_ne!(renewer.status().certificates[0].serial, first.serial);
    assert!(
        renewed < last_new,
        "the renewal went while new orders waited for the budget"
    );
    let late = renewed.duration_since(due).unwrap_or_default();
    assert!(
        late < Duration::from_secs(10 * MIN),
        "renewed {late:?} after it was due"
    );
}

#[tokio::test(start_paused = true)]
async fn caa_timeouts_back_off_per_identifier_and_it_issues_once_dns_answers() {
    let ca = TestCa::builder()
        // A failed recheck fails the order, as Let's Encrypt does: each
        // attempt after the back-off supersedes it with a new one.
        .caa("slow.example", CaaPolicy::Timeout)
        .start_in_process()
        .unwrap();
    let (issuer, statuses) = issuer(&ca, MemoryStore::new(), RateLimits::lets_encrypt()).await;
    let failures = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&failures);
    let renewer = Renewer::builder(issuer)
        .policy(policy())
        .on_event(move |e| {
            if let RenewerEvent::Failed { class: "caa", .. } = e {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build();
    renewer
        .add_all(specs([
            "www.slow.example".to_owned(),
            "fine.example".to_owned(),
        ]))
        .await
        .unwrap();
    let running = start(&renewer);
    tokio::time::sleep(Duration::from_secs(3 * HOUR)).await;
    let status = renewer.status();
    let fine = &status.certificates[0];
    let slow = &status.certificates[1];
    assert_eq!(fine.names, ["fine.example"]);
    assert_eq!(
        fine.state,
        ManagedState::Valid,
        "the other customer is not held up"
    );
    assert_eq!(slow.state, ManagedState::BackingOff);
    assert_eq!(slow.last_error.as_ref().unwrap().class, "caa");
    assert!(slow.next_attempt.unwrap() > Clock::tokio().now());
    // 10, 20, 40, 80 minutes (±25%): four or five attempts in 3 hours,
    // not one a minute.
    let attempts = failures.load(Ordering::SeqCst);
    assert!((3..=5).contains(&attempts), "{attempts} failed attempts");
    assert_eq!(slow.consecutive_failures as u64, attempts);

    // The customer's DNS answers again: issued at the next attempt.
    ca.set_caa("slow.example", CaaPolicy::Allow);
    wait_until(
        &renewer,
        Duration::from_secs(10 * MIN),
        Duration::from_secs(8 * HOUR),
        all_valid(2),
    )
    .await;
    renewer.shutdown();
    running.await.unwrap().unwrap();
    assert_eq!(statuses.get(429), 0);
    assert_eq!(ca.ledger().issued_for(&["www.slow.example"]), 1);
    let slow = &renewer.status().certificates[1];
    assert_eq!(slow.consecutive_failures, 0);
    assert!(slow.last_error.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_ca_outage_pauses_every_start_until_its_retry_after() {
    let ca = TestCa::builder().start_in_process().unwrap();
    let (issuer, _) = issuer(&ca, MemoryStore::new(), RateLimits::lets_encrypt()).await;
    let paused = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&paused);
    let renewer = Renewer::builder(issuer)
        .policy(policy())
        .on_event(move |e| {
            if let RenewerEvent::Paused { .. } = e {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build();
    ca.set_faults(vec![FaultRule::everywhere(
        Trigger::Always,
        Fault::Unavailable {
            retry_after: RetryAfterForm::Seconds(30 * MIN),
        },
    )]);
    // Added while the CA is down: kept, and issued when it is back.
    renewer
        .add_all(specs((0..10).map(|i| format!("o{i}.example"))))
        .await
        .unwrap();
    let running = start(&renewer);
    let requests = |ca: &TestCa| ca.ledger().requests.clone();
    tokio::time::sleep(Duration::from_secs(MIN)).await;
    let first = requests(&ca);
    // The outage lasts what the CA said: nothing is sent meanwhile.
    tokio::time::sleep(Duration::from_secs(28 * MIN)).await;
    assert_eq!(
        requests(&ca),
        first,
        "no request while the CA asked for a pause"
    );
    tokio::time::sleep(Duration::from_secs(MIN)).await;
    ca.set_faults(Vec::new());
    wait_until(
        &renewer,
        Duration::from_secs(MIN),
        Duration::from_secs(HOUR),
        all_valid(10),
    )
    .await;
    renewer.shutdown();
    running.await.unwrap().unwrap();
    assert_eq!(ca.ledger().certificates.len(), 10);
    // The client's governor held the requests (the renewer pauses too
    // when an attempt gives up on a 503).
    let _ = paused.load(Ordering::SeqCst);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_renewer_picks_up_its_certificates_and_their_backoff_from_the_store() {
    let dir = temp_store("renewer-restart");
    let ca = TestCa::builder()
        .caa("broken.example", CaaPolicy::Timeout)
        .start_in_process()
        .unwrap();
    let limits = RateLimits::lets_encrypt();
    let before = {
        let (issuer, _) = issuer(&ca, FileStore::open(&dir).unwrap(), limits.clone()).await;
        let renewer = Renewer::builder(issuer).policy(policy()).build();
        renewer
            .add_all(specs([
                "kept.example".to_owned(),
                "www.broken.example".to_owned(),
            ]))
            .await
            .unwrap();
        let running = start(&renewer);
        let status = wait_until(
            &renewer,
            Duration::from_secs(MIN),
            Duration::from_secs(HOUR),
            |s| s.count(ManagedState::Valid) == 1 && s.count(ManagedState::BackingOff) == 1,
        )
        .await;
        renewer.shutdown();
        running.await.unwrap().unwrap();
        status
    };
    // A new process: nothing added, everything read back from the store.
    let (issuer, _) = issuer(&ca, FileStore::open(&dir).unwrap(), limits).await;
    let renewer = Renewer::builder(issuer).policy(policy()).build();
    let running = start(&renewer);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = renewer.status();
    renewer.shutdown();
    running.await.unwrap().unwrap();
    assert_eq!(after.certificates.len(), 2);
    let (kept, broken) = (&after.certificates[0], &after.certificates[1]);
    assert_eq!(kept.names, ["kept.example"]);
    assert_eq!(kept.state, ManagedState::Valid);
    assert_eq!(
        kept.serial, before.certificates[0].serial,
        "the stored certificate, not a new one"
    );
    assert_eq!(ca.ledger().issued_for(&["kept.example"]), 1);
    assert_eq!(broken.state, ManagedState::BackingOff);
    assert!(broken.consecutive_failures >= 1);
    assert_eq!(
        broken.consecutive_failures,
        before.certificates[1].consecutive_failures
    );
    // Its backoff survives (kept to the millisecond).
    let ms = |t: Option<std::time::SystemTime>| {
        t.unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    assert_eq!(
        ms(broken.next_attempt),
        ms(before.certificates[1].next_attempt)
    );
    assert!(broken.next_attempt.unwrap() > Clock::tokio().now());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn two_processes_share_one_store_and_issue_each_certificate_once() {
    // A real CA over HTTPS with some latency, so the two nodes overlap.
    let ca = TestCa::builder()
        .latency(Duration::from_millis(40))
        .start()
        .await
        .unwrap();
    let dir = temp_store("renewer-two-nodes");
    let root = dir.with_extension("root.pem");
    std::fs::write(&root, ca.root_pem()).unwrap();
    let exe = crate::examples::example("renewer_node");
    let names: Vec<String> = (0..40).map(|i| format!("n{i}.shared.example")).collect();
    // The store exists (with its account) before both start.
    FileStore::open(&dir).unwrap();
    let spawn = |node: &str| {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["--directory", &ca.directory_url()])
            .arg("--root-ca")
            .arg(&root)
            .arg("--store")
            .arg(&dir)
            .args(["--node", node, "--until-valid", "--run-secs", "120"]);
        for n in &names {
            cmd.args(["--add", n]);
        }
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let outputs: Vec<serde_json::Value> = tokio::task::spawn_blocking(move || {
        [a, b]
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let stdout = String::from_utf8_lossy(&out.stdout);
                serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
            })
            .collect()
    })
    .await
    .unwrap();
    let ledger = ca.ledger();
    assert_eq!(
        ledger.certificates.len(),
        names.len(),
        "each set issued once by the two"
    );
    for n in &names {
        assert_eq!(ledger.issued_for(&[n]), 1, "{n}");
    }
    let issued: Vec<usize> = outputs
        .iter()
        .map(|o| o["issued"].as_array().unwrap().len())
        .collect();
    assert_eq!(issued.iter().sum::<usize>(), names.len(), "{outputs:?}");
    assert!(
        issued.iter().all(|n| *n > 0),
        "both nodes did some of the work: {issued:?}"
    );
    for o in &outputs {
        assert_eq!(o["valid"], names.len(), "{o}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&root);
}

#[tokio::test(start_paused = true)]
async fn the_fleet_simulation_meets_its_goals_at_a_small_size() {
    // Sized by STURDY_SIM_CERTIFICATES (default 600): 50 simulated days,
    // with tlsserver renewals, 5% transient failures, a day of CAA
    // timeouts and a 1-hour outage when the second burst arrives.
    let certificates = std::env::var("STURDY_SIM_CERTIFICATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let report = simulate(SimulationConfig {
        certificates,
        domains: 20,
        accounts: 2,
        days: 50,
        caa_share: 0.1,
        // The second burst arrives during the outage.
        outage_at: Duration::from_secs(6 * HOUR - 10 * MIN),
        file_store_root: None,
        ..SimulationConfig::default()
    })
    .await
    .unwrap();
    eprintln!("{}", serde_json::to_string(&report).unwrap());
    assert_eq!(report.rate_limited_429, 0);
    assert_eq!(report.ever_expired, 0);
    assert_eq!(report.never_issued, 0);
    assert_eq!(report.duplicates, 0);
    assert!(report.renewals > 0, "tlsserver certificates renewed");
    assert!(
        report.unavailable_503 > 0 && report.pauses > 0,
        "the outage happened"
    );
    assert!(
        report.failures.get("caa").copied().unwrap_or(0) > 0,
        "CAA timeouts happened"
    );
    assert!(report.makespan_ratio <= 1.05, "{}", report.makespan_ratio);
    // Issue 27, defect 11: every alreadyReplaced is resolved by resuming
    // the earlier replacement order, never dodged by dropping replaces.
    assert_eq!(
        report.already_replaced_409, report.replacements_resumed,
        "{report:?}"
    );
}

/// Issue 27, defect 8: a run that ends while attempts are in progress
/// (`shutdown()`, or its future dropped) leaves them due, with their
/// budget released, so the next `run()` finishes them.
#[tokio::test(start_paused = true)]
async fn attempts_a_stopped_run_left_unfinished_are_picked_up_by_the_next_run() {
    let ca = TestCa::builder().start_in_process().unwrap();
    let (issuer, _) = issuer(&ca, MemoryStore::new(), RateLimits::lets_encrypt()).await;
    let renewer = Renewer::builder(issuer).policy(policy()).build();
    renewer
        .add_all(specs((0..3).map(|i| format!("u{i}.example"))))
        .await
        .unwrap();
    for stop in ["shutdown", "drop"] {
        // Every newOrder waits out a 10-minute 503 first: the attempts are
        // in progress when the run ends.
        ca.set_faults(vec![FaultRule::new(
            sturdy_acme::Endpoint::NewOrder,
            Trigger::FirstN(1),
            Fault::Unavailable {
                retry_after: RetryAfterForm::Seconds(10 * MIN),
            },
        )]);
        let running = start(&renewer);
        tokio::time::sleep(Duration::from_secs(MIN)).await;
        let status = renewer.status();
        assert!(
            status.count(ManagedState::Running) > 0 || status.count(ManagedState::Valid) == 3,
            "{stop}: {status:?}"
        );
        match stop {
            "shutdown" => {
                renewer.shutdown();
                running.await.unwrap().unwrap();
            }
            _ => {
                running.abort();
                let _ = running.await;
            }
        }
        let status = renewer.status();
        assert_eq!(
            status.count(ManagedState::Running),
            0,
            "{stop}: nothing is left running: {status:?}"
        );
        if stop == "shutdown" {
            assert_eq!(
                status.count(ManagedState::Valid),
                0,
                "{stop}: stopped before any finished"
            );
        }
        // The client remembers the CA's pause (issue 28: the renewer asks
        // it before starting anything): let it end before the next run.
        tokio::time::sleep(Duration::from_secs(10 * MIN)).await;
    }
    // The next run finishes every one of them.
    ca.set_faults(Vec::new());
    let running = start(&renewer);
    wait_until(
        &renewer,
        Duration::from_secs(MIN),
        Duration::from_secs(HOUR),
        all_valid(3),
    )
    .await;
    renewer.shutdown();
    running.await.unwrap().unwrap();
    for i in 0..3 {
        assert_eq!(
            ca.ledger().issued_for(&[format!("u{i}.example").as_str()]),
            1,
            "issued once"
        );
    }
}
