//! The exactly-once issuer against the embedded test CA: stored
//! certificates reused without requests, crash-resume at every journal step
//! (a helper process killed with SIGKILL), single flight in-process and
//! across processes, the client-side rate-limit ledger, and store faults.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use sturdy_acme::StoreError;
use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::{FileStore, IdentifierSetKey, Store, StoreResult};
use sturdy_acme::{CertificateSource, IssuerStep, Limit, RateLimits};
use sturdy_acme::{Endpoint, EnsureOptions, Error, ErrorClass, Identifier, Issuer};
use sturdy_acme_testca::TestCa;

pub(crate) fn temp_store(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sturdy-issuer-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub(crate) async fn issuer(ca: &TestCa, store: &Path) -> Issuer<FileStore> {
    let client = ca.client().await.unwrap();
    Issuer::builder(client, FileStore::open(store).unwrap())
        .solver(Arc::new(Http01Solver::unserved()))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_certificate_is_returned_without_a_request() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("stored");
    let issuer = issuer(&ca, &dir).await;
    let restarted = self::issuer(&ca, &dir).await;
    let first = issuer
        .ensure(&["stored.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(first.source, CertificateSource::New);
    let requests: u64 = ca.ledger().requests.values().sum();

    // Same names in another order and case: the same certificate, no request.
    let again = issuer
        .ensure(&["STORED.example."], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(again.source, CertificateSource::Stored);
    assert_eq!(again.certificate.serial, first.certificate.serial);
    assert_eq!(ca.ledger().requests.values().sum::<u64>(), requests);

    // Another issuer on the same store (a restart): still no request.
    let third = restarted
        .ensure(&["stored.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(third.source, CertificateSource::Stored);
    assert_eq!(ca.ledger().requests.values().sum::<u64>(), requests);
    assert_eq!(ca.ledger().issued_for(&["stored.example"]), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_is_due_after_the_configured_fraction() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("renew");
    let client = ca.client().await.unwrap();
    // Renew as soon as any time has passed: every ensure renews.
    let issuer = Issuer::builder(client, FileStore::open(&dir).unwrap())
        .solver(Arc::new(Http01Solver::unserved()))
        .renew_after_fraction(0.0)
        .build();
    let a = issuer
        .ensure(&["renew.example"], &EnsureOptions::default())
        .await
        .unwrap();
    let b = issuer
        .ensure(&["renew.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_ne!(a.certificate.serial, b.certificate.serial);
    assert_eq!(ca.ledger().issued_for(&["renew.example"]), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------
// Crash-resume with a helper process killed by SIGKILL.

const CHILD: &str = "STURDY_ISSUER_CHILD";

/// The helper process: not a test unless `STURDY_ISSUER_CHILD` is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_entry() {
    if std::env::var(CHILD).is_err() {
        return;
    }
    let var = |n: &str| std::env::var(n).unwrap();
    let crash_at = std::env::var("CRASH_AT").ok();
    let client = sturdy_acme::Client::builder(var("DIRECTORY"))
        .root_certificates_pem(std::fs::read(var("ROOT_PEM")).unwrap())
        .built_in_roots(false)
        .build()
        .await
        .unwrap();
    let store = FileStore::open(var("STORE_DIR")).unwrap();
    // The default 60 s lease: a killed child's lease is freed at once
    // because its process is gone (same host), not by waiting it out.
    let issuer = Issuer::builder(client, store)
        .solver(Arc::new(Http01Solver::unserved()))
        .on_step(move |_, step| {
            let name = format!("{step:?}");
            println!("STEP {name}");
            if crash_at.as_deref() == Some(name.as_str()) {
                println!("REACHED {name}");
                use std::io::Write;
                let _ = std::io::stdout().flush();
                // Wait here for the parent's SIGKILL.
                std::thread::sleep(Duration::from_secs(3600));
            }
        })
        .build();
    let names: Vec<String> = var("NAMES").split(',').map(str::to_owned).collect();
    let ensured = issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    println!(
        "SERIAL {} SOURCE {:?}",
        ensured.certificate.serial, ensured.source
    );
}

fn spawn_child(
    ca: &TestCa,
    root: &Path,
    store: &Path,
    names: &str,
    crash_at: Option<&str>,
) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "issuer::child_process_entry",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, "1")
    .env("DIRECTORY", ca.directory_url())
    .env("ROOT_PEM", root)
    .env("STORE_DIR", store)
    .env("NAMES", names)
    .env_remove("CRASH_AT")
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(step) = crash_at {
        cmd.env("CRASH_AT", step);
    }
    cmd.spawn().unwrap()
}

/// Reads the child's stdout until a line starting with `prefix`.
fn wait_for_line(child: &mut Child, prefix: &str) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // libtest may print "test child_process_entry ... " on the same line.
    let found = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.find(prefix).map(|i| l[i..].to_owned()))
        .unwrap_or_else(|| panic!("the child never printed {prefix:?}"));
    // Keep draining in the background so the child never blocks on a pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_journal_step_resumes_the_same_order() {
    crash_resume_cases(TestCa::start().await.unwrap()).await;
}

/// ACME v1 has no order at the CA to re-read: the journal alone must keep
/// a killed process from sending new-cert twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_journal_step_resumes_the_same_v1_order() {
    let ca = TestCa::builder()
        .dialect(sturdy_acme::Dialect::V1)
        .start()
        .await
        .unwrap();
    crash_resume_cases(ca).await;
}

async fn crash_resume_cases(ca: TestCa) {
    let root = temp_store("root").with_extension("pem");
    std::fs::write(&root, ca.root_pem()).unwrap();
    for step in [
        "OrderCreated",
        "ChallengesAnswered",
        "FinalizeSent",
        "CertificateUrlKnown",
        "Downloaded",
    ] {
        let store = temp_store(step);
        let names = format!(
            "{}.crash.example,www.{}.crash.example",
            step.to_lowercase(),
            step.to_lowercase()
        );
        let mut child = spawn_child(&ca, &root, &store, &names, Some(step));
        let line = tokio::task::spawn_blocking({
            let mut c = child;
            move || {
                let l = wait_for_line(&mut c, "REACHED");
                (c, l)
            }
        })
        .await
        .unwrap();
        child = line.0;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        // A fresh process completes the same order.
        let mut child = spawn_child(&ca, &root, &store, &names, None);
        let (mut child, line) = tokio::task::spawn_blocking(move || {
            let l = wait_for_line(&mut child, "SERIAL");
            (child, l)
        })
        .await
        .unwrap();
        child.wait().unwrap();
        assert!(line.contains("SOURCE Resumed"), "{step}: {line}");
        let names: Vec<&str> = names.split(',').collect();
        let ledger = ca.ledger();
        assert_eq!(
            ledger.issued_for(&names),
            1,
            "{step}: exactly one certificate"
        );
        let serial = line.split_whitespace().nth(1).unwrap();
        assert!(
            ledger.certificates.iter().any(|c| c.serial == serial),
            "{step}: the stored certificate is the one the CA issued"
        );
        std::fs::remove_dir_all(&store).unwrap();
    }
    // One order per case: the resumed runs never ordered again (a v1
    // order is one new-authz per name: 2 per case).
    let per_order = match ca.dialect() {
        sturdy_acme::Dialect::V1 => 2,
        _ => 1,
    };
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), 5 * per_order);
    std::fs::remove_file(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_racing_on_one_set_issue_one_certificate() {
    let ca = TestCa::builder()
        .finalize_processing(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let root = temp_store("race-root").with_extension("pem");
    std::fs::write(&root, ca.root_pem()).unwrap();
    let store = temp_store("race");
    let a = spawn_child(&ca, &root, &store, "race.example", None);
    let b = spawn_child(&ca, &root, &store, "race.example", None);
    let (la, lb) = tokio::task::spawn_blocking(move || {
        let (mut a, mut b) = (a, b);
        let la = wait_for_line(&mut a, "SERIAL");
        let lb = wait_for_line(&mut b, "SERIAL");
        a.wait().unwrap();
        b.wait().unwrap();
        (la, lb)
    })
    .await
    .unwrap();
    let serial = |l: &str| l.split_whitespace().nth(1).unwrap().to_owned();
    assert_eq!(serial(&la), serial(&lb), "both get the same certificate");
    assert_eq!(ca.ledger().issued_for(&["race.example"]), 1);
    assert!(
        la.contains("SOURCE Stored") || lb.contains("SOURCE Stored"),
        "{la} / {lb}"
    );
    std::fs::remove_dir_all(&store).unwrap();
    std::fs::remove_file(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_ensures_over_ten_sets_issue_ten() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("concurrent");
    let issuer = issuer(&ca, &dir).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let issuer = issuer.clone();
        tasks.push(tokio::spawn(async move {
            let set = i % 10;
            let names = [format!("c{set}.example"), format!("www.c{set}.example")];
            issuer
                .ensure(&names, &EnsureOptions::default())
                .await
                .map(|e| (set, e))
        }));
    }
    let mut serials = std::collections::HashMap::new();
    for t in tasks {
        let (set, ensured) = t.await.unwrap().unwrap();
        let s = serials
            .entry(set)
            .or_insert_with(|| ensured.certificate.serial.clone());
        assert_eq!(*s, ensured.certificate.serial, "one certificate per set");
    }
    let ledger = ca.ledger();
    assert_eq!(ledger.certificates.len(), 10);
    assert_eq!(ledger.requests_to(Endpoint::NewAccount), 1, "one account");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_refuses_the_sixth_duplicate_locally_across_restarts() {
    let week = Duration::from_secs(7 * 24 * 3600);
    let limits = RateLimits {
        duplicate_certificates: Some(Limit::new(5, week)),
        ..RateLimits::none()
    };
    let ca = TestCa::builder()
        .rate_limits(limits.clone())
        .start()
        .await
        .unwrap();
    let dir = temp_store("ledger");
    let force = EnsureOptions::default().with_force_new(true);
    let client = ca.client().await.unwrap();
    let issuer = Issuer::builder(client, FileStore::open(&dir).unwrap())
        .solver(Arc::new(Http01Solver::unserved()))
        .rate_limits(limits.clone())
        .build();
    for _ in 0..5 {
        issuer.ensure(&["dup.example"], &force).await.unwrap();
    }
    let orders = ca.ledger().requests_to(Endpoint::NewOrder);
    let before = std::time::SystemTime::now();
    let err = issuer.ensure(&["dup.example"], &force).await.unwrap_err();
    assert!(matches!(err, Error::RateLimitedLocally { .. }), "{err}");
    assert!(matches!(
        err.class(),
        ErrorClass::RateLimited { local: true, .. }
    ));
    // One token's refill, started 60 s after the spend (the CA counts a
    // certificate at issuance, not at newOrder).
    let refill = week / 5 + Duration::from_secs(60);
    let wait = err.retry_at().unwrap().duration_since(before).unwrap();
    assert!(
        wait.abs_diff(refill) < Duration::from_secs(5),
        "{wait:?} vs {refill:?}"
    );
    assert_eq!(
        ca.ledger().requests_to(Endpoint::NewOrder),
        orders,
        "no request sent"
    );
    assert_eq!(ca.ledger().issued_for(&["dup.example"]), 5);

    // After a restart the refusal still holds.
    let client = ca.client().await.unwrap();
    let restarted = Issuer::builder(client, FileStore::open(&dir).unwrap())
        .solver(Arc::new(Http01Solver::unserved()))
        .rate_limits(limits)
        .build();
    let err = restarted
        .ensure(&["dup.example"], &force)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RateLimitedLocally { .. }), "{err}");
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), orders);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_faults_are_typed_and_lose_nothing() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("faults");
    let issuer = issuer(&ca, &dir).await;
    let first = issuer
        .ensure(&["faults.example"], &EnsureOptions::default())
        .await
        .unwrap();
    let store = FileStore::open(&dir).unwrap();
    let account = store
        .load_account(&ca.directory_url())
        .await
        .unwrap()
        .unwrap()
        .url;
    let scoped = |name: &str| {
        IdentifierSetKey::for_account(
            ca.directory_url(),
            account.clone(),
            &[Identifier::dns(name).unwrap()],
        )
    };
    let key = scoped("faults.example");
    let cert_dir = dir.join("certs").join(key.file_stem());

    // Issue 16, defect 10: a corrupted certificate file is copied aside,
    // kept, and treated as absent: renewal proceeds instead of failing
    // until the certificate expires.
    let cert_json = cert_dir.join("cert.json");
    let original = std::fs::read(&cert_json).unwrap();
    let mut bad = original.clone();
    let n = bad.len() / 2;
    bad[n] ^= 0x20;
    std::fs::write(&cert_json, &bad).unwrap();
    let renewed = issuer
        .ensure(&["faults.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(renewed.source, CertificateSource::New);
    assert_ne!(renewed.certificate.serial, first.certificate.serial);
    let copies: Vec<_> = std::fs::read_dir(&cert_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(copies.len(), 1, "the bad record is kept for a human");
    assert_eq!(std::fs::read(copies[0].path()).unwrap(), bad);
    let first = renewed;

    // A truncated journal with no order for its names in the account's
    // orders list: typed error naming it, the file kept.
    let other = scoped("journal.example");
    let journal_path = dir
        .join("journals")
        .join(format!("{}.json", other.file_stem()));
    std::fs::create_dir_all(journal_path.parent().unwrap()).unwrap();
    std::fs::write(
        &journal_path,
        b"{\"format\":\"sturdy-acme/1\",\"kind\":\"jour",
    )
    .unwrap();
    let err = issuer
        .ensure(&["journal.example"], &EnsureOptions::default())
        .await
        .unwrap_err();
    match &err {
        Error::Store(StoreError::Corrupted { path, .. }) => assert_eq!(path, &journal_path),
        other => panic!("{other:?}"),
    }
    assert!(store.load_journal(&other).await.is_err());
    std::fs::remove_file(&journal_path).unwrap();

    // An unusable store directory: a typed I/O error; the stored
    // certificate is intact afterwards.
    let journals = dir.join("journals");
    std::fs::remove_dir_all(&journals).unwrap();
    std::fs::write(&journals, b"not a directory").unwrap();
    let err = issuer
        .ensure(&["readonly.example"], &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::Io { .. })),
        "{err:?}"
    );
    std::fs::remove_file(&journals).unwrap();
    std::fs::create_dir(&journals).unwrap();
    let again = issuer
        .ensure(&["faults.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(again.source, CertificateSource::Stored);
    assert_eq!(again.certificate.serial, first.certificate.serial);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_are_reported_in_order() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("steps");
    let client = ca.client().await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let issuer = Issuer::builder(client, FileStore::open(&dir).unwrap())
        .solver(Arc::new(Http01Solver::unserved()))
        .on_step(move |_, step| log.lock().unwrap().push(step))
        .build();
    issuer
        .ensure(&["steps.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            IssuerStep::OrderCreated,
            IssuerStep::ChallengesAnswered,
            IssuerStep::FinalizeSent,
            IssuerStep::CertificateUrlKnown,
            IssuerStep::Downloaded,
            IssuerStep::Stored,
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The built-in tls-alpn-01 solver, served by a rustls listener through its
/// certificate resolver, really validated by the embedded CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_solver_through_a_rustls_resolver() {
    use sturdy_acme::solver::tls_alpn01::{TlsAlpn01Resolver, TlsAlpn01Solver};
    let resolver = Arc::new(TlsAlpn01Resolver::new(None));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        (*sturdy_acme::tls_provider()).clone(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });

    let ca = TestCa::builder()
        .real_validation(1, port, Arc::new(sturdy_acme_testca::StaticDns::new()))
        .start()
        .await
        .unwrap();
    let dir = temp_store("alpn");
    let client = ca.client().await.unwrap();
    let issuer = Issuer::builder(client, FileStore::open(&dir).unwrap())
        .solver(Arc::new(TlsAlpn01Solver::new(resolver.clone())))
        .build();
    let ensured = issuer
        .ensure(&["alpn.example", "127.0.0.1"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(ensured.source, CertificateSource::New);
    assert_eq!(ca.ledger().issued_for(&["alpn.example", "127.0.0.1"]), 1);
    assert!(
        format!("{resolver:?}").contains("names: []"),
        "cleaned up: {resolver:?}"
    );
    server.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------
// Issue 16: exactly once when the CA answers resume with garbage.

use sturdy_acme_testca::{CannedAnswer, Fault, FaultRule, Trigger};

/// An issuer whose client retries transient failures within milliseconds.
async fn fast_issuer(ca: &TestCa, store: &Path) -> Issuer<FileStore> {
    let defaults = sturdy_acme::RetryPolicy::default();
    let policy = defaults
        .with_transient(
            defaults
                .transient()
                .with_base(Duration::from_millis(2))
                .with_max_delay(Duration::from_millis(10)),
        )
        .with_seed(Some(16));
    let client = ca
        .client_builder()
        .retry_policy(policy)
        .build()
        .await
        .unwrap();
    Issuer::builder(client, FileStore::open(store).unwrap())
        .solver(Arc::new(Http01Solver::unserved()))
        .build()
}

fn journal_files(store: &Path) -> (usize, usize) {
    let count = |dir: PathBuf| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    };
    (
        count(store.join("journals")),
        count(store.join("journals").join("archive")),
    )
}

/// Defect 2: finalize was sent (its answer lost), then every read of the
/// order at resume is answered 404, a 403, a proxy's HTML page or garbage.
/// The issuer never orders again: it keeps the journal and the key, says
/// which order it could not read, and the next call after the CA recovers
/// stores the one certificate the CA issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalized_order_is_never_abandoned_on_a_bad_read() {
    let answers = [
        CannedAnswer::problem(404, "malformed", "no such order"),
        CannedAnswer::problem(403, "unauthorized", "not your order"),
        CannedAnswer::html(500),
        CannedAnswer::new(200, "application/json", "\u{1}garbage{"),
    ];
    for (i, answer) in answers.into_iter().enumerate() {
        let ca = TestCa::start().await.unwrap();
        let dir = temp_store(&format!("abandon-{i}"));
        let issuer = fast_issuer(&ca, &dir).await;
        let names = [format!("abandon{i}.example")];
        // The finalize takes effect but its answer never comes: the caller
        // gives up (a timeout, a crash) with the journal at Finalizing.
        ca.set_faults(vec![FaultRule::new(
            Endpoint::Finalize,
            Trigger::Nth(1),
            Fault::SlowAfterCommit { delay_ms: 60_000 },
        )]);
        let gave_up = tokio::time::timeout(
            Duration::from_secs(2),
            issuer.ensure(&names, &EnsureOptions::default()),
        )
        .await;
        assert!(gave_up.is_err(), "finalize was answered");
        assert_eq!(ca.ledger().issued_for(&names), 1);
        // Every read of the order now fails the way `answer` says.
        ca.set_faults(vec![FaultRule::new(
            Endpoint::Order,
            Trigger::Always,
            Fault::Canned(answer.clone()),
        )]);
        for attempt in 0..3 {
            let err = issuer
                .ensure(&names, &EnsureOptions::default())
                .await
                .unwrap_err();
            assert_eq!(
                ca.ledger().issued_for(&names),
                1,
                "{answer:?}, attempt {attempt}: {err}"
            );
            assert!(
                matches!(&err, Error::OrderUnresolved { url, .. } if url.contains("/order/")),
                "{answer:?}: {err}"
            );
            assert_eq!(journal_files(&dir).0, 1, "the journal is kept");
        }
        assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), 1, "{answer:?}");
        // The CA recovers: the same order's certificate is stored.
        ca.set_faults(Vec::new());
        let ensured = issuer
            .ensure(&names, &EnsureOptions::default())
            .await
            .unwrap();
        assert_eq!(ensured.source, CertificateSource::Resumed);
        assert_eq!(ca.ledger().issued_for(&names), 1);
        assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), 1);
        assert_eq!(journal_files(&dir), (0, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Defect 2: a journalled certificate URL is downloaded before anything
/// else, so a resume succeeds even while the order itself reads as 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_certificate_url_is_tried_before_the_order() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("cert-url-first");
    let issuer = issuer(&ca, &dir).await;
    let names = ["certurl.example"];
    ca.set_faults(vec![FaultRule::new(
        Endpoint::Certificate,
        Trigger::Nth(1),
        Fault::Canned(CannedAnswer::problem(404, "malformed", "try later")),
    )]);
    issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap_err();
    ca.set_faults(vec![FaultRule::new(
        Endpoint::Order,
        Trigger::Always,
        Fault::Canned(CannedAnswer::problem(404, "malformed", "no such order")),
    )]);
    let orders_before = ca.ledger().requests_to(Endpoint::Order);
    let ensured = issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(ensured.source, CertificateSource::Resumed);
    assert_eq!(ca.ledger().requests_to(Endpoint::Order), orders_before);
    assert_eq!(ca.ledger().issued_for(&names), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Defect 7: a CA that answers finalize with `ready` again is not sent
/// finalize forever: a typed protocol error, the journal kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_answered_ready_again_stops_with_a_protocol_error() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("ready-again");
    let issuer = issuer(&ca, &dir).await;
    let body = serde_json::json!({
        "status": "ready",
        "identifiers": [{"type": "dns", "value": "ready.example"}],
        "authorizations": [],
        "finalize": format!("{}/finalize/0", ca.directory_url().trim_end_matches("/directory")),
    })
    .to_string();
    ca.set_faults(vec![FaultRule::new(
        Endpoint::Finalize,
        Trigger::Always,
        Fault::Canned(CannedAnswer::new(200, "application/json", body)),
    )]);
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        issuer.ensure(&["ready.example"], &EnsureOptions::default()),
    )
    .await
    .expect("finalize is not repeated forever")
    .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Protocol, "{err}");
    assert!(ca.ledger().requests_to(Endpoint::Finalize) <= 3);
    assert_eq!(journal_files(&dir).0, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Defect 12: a wildcard with only an http-01 solver is refused before any
/// order is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_without_a_dns01_solver_is_refused_before_ordering() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("wildcard-http01");
    let issuer = issuer(&ca, &dir).await;
    let err = issuer
        .ensure(&["*.wild.example"], &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("dns-01")),
        "{err}"
    );
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Defect 5: one store used with two CAs (staging, then production) keeps
/// each CA's certificates and journals apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_for_two_cas_never_mixes_them() {
    let staging = TestCa::start().await.unwrap();
    let production = TestCa::start().await.unwrap();
    let dir = temp_store("two-cas");
    let a = issuer(&staging, &dir).await;
    let b = issuer(&production, &dir).await;
    let names = ["twoca.example"];
    let from_a = a.ensure(&names, &EnsureOptions::default()).await.unwrap();
    let from_b = b.ensure(&names, &EnsureOptions::default()).await.unwrap();
    assert_eq!(
        from_b.source,
        CertificateSource::New,
        "not the other CA's certificate"
    );
    assert_eq!(production.ledger().issued_for(&names), 1);
    assert_ne!(from_a.certificate.chain_pem, from_b.certificate.chain_pem);
    // Each CA's stored certificate is still its own.
    let again_a = a.ensure(&names, &EnsureOptions::default()).await.unwrap();
    assert_eq!(again_a.source, CertificateSource::Stored);
    assert_eq!(again_a.certificate.serial, from_a.certificate.serial);
    let again_b = b.ensure(&names, &EnsureOptions::default()).await.unwrap();
    assert_eq!(again_b.certificate.serial, from_b.certificate.serial);
    assert_eq!(staging.ledger().issued_for(&names), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Defect 10: a corrupted journal is never taken as "nothing in flight":
/// its order is found in the account's orders list and resumed, without a
/// second newOrder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_journal_resumes_its_order_from_the_orders_list() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("corrupt-journal");
    let issuer = issuer(&ca, &dir).await;
    let names = ["corruptjournal.example"];
    // Stop after the order exists (its authorization reads fail).
    ca.set_faults(vec![FaultRule::new(
        Endpoint::Authorization,
        Trigger::Always,
        Fault::Canned(CannedAnswer::problem(404, "malformed", "later")),
    )]);
    issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap_err();
    ca.set_faults(Vec::new());
    let journal = std::fs::read_dir(dir.join("journals"))
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&journal).unwrap();
    let n = bytes.len() / 2;
    bytes[n] ^= 0x20;
    std::fs::write(&journal, &bytes).unwrap();
    let ensured = issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(ensured.source, CertificateSource::Resumed);
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), 1);
    assert_eq!(ca.ledger().issued_for(&names), 1);
    let kept = std::fs::read_dir(dir.join("journals"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
    assert!(kept, "the corrupted journal is kept aside");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------
// Defect 4: fenced leases.

/// A FileStore whose lease renewals fail (a store outage for the renewer).
struct FailingRenewals(FileStore);

impl Store for FailingRenewals {
    fn load_account(
        &self,
        d: &str,
    ) -> impl Future<Output = StoreResult<Option<sturdy_acme::store::StoredAccount>>> + Send {
        self.0.load_account(d)
    }
    fn save_account(
        &self,
        d: &str,
        a: &sturdy_acme::store::StoredAccount,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.save_account(d, a)
    }
    fn load_certificate(
        &self,
        k: &IdentifierSetKey,
    ) -> impl Future<Output = StoreResult<Option<sturdy_acme::store::StoredCertificate>>> + Send
    {
        self.0.load_certificate(k)
    }
    fn save_certificate(
        &self,
        k: &IdentifierSetKey,
        c: &sturdy_acme::store::StoredCertificate,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.save_certificate(k, c)
    }
    fn list_certificates(
        &self,
        d: &str,
    ) -> impl Future<Output = StoreResult<Vec<IdentifierSetKey>>> + Send {
        self.0.list_certificates(d)
    }
    fn list_journals(
        &self,
        d: &str,
    ) -> impl Future<Output = StoreResult<Vec<IdentifierSetKey>>> + Send {
        self.0.list_journals(d)
    }
    fn list_managed(
        &self,
        d: &str,
    ) -> impl Future<Output = StoreResult<Vec<sturdy_acme::store::ManagedRecord>>> + Send {
        self.0.list_managed(d)
    }
    fn save_managed(
        &self,
        d: &str,
        r: &sturdy_acme::store::ManagedRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.save_managed(d, r)
    }
    fn delete_managed(&self, d: &str, id: &str) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.delete_managed(d, id)
    }
    fn load_journal(
        &self,
        k: &IdentifierSetKey,
    ) -> impl Future<Output = StoreResult<Option<sturdy_acme::store::Journal>>> + Send {
        self.0.load_journal(k)
    }
    fn save_journal(
        &self,
        k: &IdentifierSetKey,
        j: &sturdy_acme::store::Journal,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.save_journal(k, j)
    }
    fn delete_journal(&self, k: &IdentifierSetKey) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.delete_journal(k)
    }
    fn archive_journal(
        &self,
        k: &IdentifierSetKey,
        j: &sturdy_acme::store::Journal,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.archive_journal(k, j)
    }
    fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = StoreResult<sturdy_acme::store::ChangePage>> + Send {
        self.0.changes_since(after, limit)
    }
    fn wait_for_changes(
        &self,
        after: u64,
        timeout: Duration,
    ) -> impl Future<Output = StoreResult<u64>> + Send {
        self.0.wait_for_changes(after, timeout)
    }
    fn feed_snapshot(
        &self,
    ) -> impl Future<Output = StoreResult<sturdy_acme::store::FeedSnapshot>> + Send {
        self.0.feed_snapshot()
    }
    fn request_certificate(
        &self,
        name: &str,
        edge: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        self.0.request_certificate(name, edge)
    }
    fn list_requests(
        &self,
    ) -> impl Future<Output = StoreResult<Vec<sturdy_acme::store::CertificateRequest>>> + Send {
        self.0.list_requests()
    }
    fn delete_request(&self, name: &str) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.delete_request(name)
    }
    fn save_validation(
        &self,
        v: &sturdy_acme::store::ValidationCertificate,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.save_validation(v)
    }
    fn load_validation(
        &self,
        name: &str,
    ) -> impl Future<Output = StoreResult<Option<sturdy_acme::store::ValidationCertificate>>> + Send
    {
        self.0.load_validation(name)
    }
    fn delete_validation(&self, name: &str) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.delete_validation(name)
    }
    fn load_directory(
        &self,
        d: &str,
    ) -> impl Future<Output = StoreResult<Option<sturdy_acme::store::DirectoryRecord>>> + Send {
        self.0.load_directory(d)
    }
    fn save_directory(
        &self,
        d: &str,
        r: &sturdy_acme::store::DirectoryRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.save_directory(d, r)
    }
    fn load_ledger(
        &self,
        d: &str,
    ) -> impl Future<Output = StoreResult<Option<sturdy_acme::store::RateLimitRecord>>> + Send {
        self.0.load_ledger(d)
    }
    fn save_ledger(
        &self,
        d: &str,
        l: &sturdy_acme::store::RateLimitRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.save_ledger(d, l)
    }
    fn update_ledger(
        &self,
        d: &str,
        update: &mut sturdy_acme::store::LedgerUpdate<'_>,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.update_ledger(d, update)
    }
    fn load_ledger_entries(
        &self,
        d: &str,
        keys: Option<&[String]>,
    ) -> impl Future<Output = StoreResult<sturdy_acme::store::LedgerEntries>> + Send {
        self.0.load_ledger_entries(d, keys)
    }
    fn update_ledger_entries(
        &self,
        d: &str,
        keys: &[String],
        update: &mut sturdy_acme::store::LedgerEntriesUpdate<'_>,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.update_ledger_entries(d, keys, update)
    }
    fn acquire_lease(
        &self,
        n: &str,
        h: &str,
        t: Duration,
    ) -> impl Future<Output = StoreResult<sturdy_acme::store::Lease>> + Send {
        self.0.acquire_lease(n, h, t)
    }
    async fn renew_lease(
        &self,
        _: &sturdy_acme::store::Lease,
        _: Duration,
    ) -> StoreResult<sturdy_acme::store::Lease> {
        Err(StoreError::Other("renewal refused (test)".into()))
    }
    fn check_lease(
        &self,
        l: &sturdy_acme::store::Lease,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.check_lease(l)
    }
    fn release_lease(
        &self,
        l: &sturdy_acme::store::Lease,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.0.release_lease(l)
    }
}

/// An http-01 solver that takes `delay` to present (a slow deployment, or
/// a process paused past its lease).
struct SlowSolver(Http01Solver, Duration);

impl sturdy_acme::solver::Solver for SlowSolver {
    fn challenge_type(&self) -> sturdy_acme::ChallengeType {
        self.0.challenge_type()
    }
    fn present<'a>(
        &'a self,
        answer: &'a sturdy_acme::solver::ChallengeAnswer,
    ) -> sturdy_acme::solver::SolverFuture<'a> {
        Box::pin(async move {
            tokio::time::sleep(self.1).await;
            self.0.present(answer).await
        })
    }
    fn cleanup<'a>(
        &'a self,
        answer: &'a sturdy_acme::solver::ChallengeAnswer,
    ) -> sturdy_acme::solver::SolverFuture<'a> {
        self.0.cleanup(answer)
    }
}

/// A holder whose renewals fail loses its lease when it expires and stops
/// with `LeaseLost` before finalize; it never goes on as if it held it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_be_renewed_stops_the_issuance_before_finalize() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("lease-lost");
    let issuer = Issuer::builder(
        ca.client().await.unwrap(),
        FailingRenewals(FileStore::open(&dir).unwrap()),
    )
    .solver(Arc::new(SlowSolver(
        Http01Solver::unserved(),
        Duration::from_millis(2500),
    )))
    .lease_ttl(Duration::from_secs(1))
    .build();
    let err = issuer
        .ensure(&["leaselost.example"], &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
    assert_eq!(ca.ledger().requests_to(Endpoint::Finalize), 0);
    assert_eq!(ca.ledger().issued_for(&["leaselost.example"]), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Dropping an `ensure` future (a caller's timeout) stops renewing and
/// releases its lease: another process's issuer takes over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_ensure_releases_its_lease() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("lease-cancel");
    let first = issuer(&ca, &dir).await;
    ca.set_faults(vec![FaultRule::new(
        Endpoint::Finalize,
        Trigger::Nth(1),
        Fault::SlowAfterCommit { delay_ms: 30_000 },
    )]);
    let names = ["cancelled.example"];
    assert!(
        tokio::time::timeout(
            Duration::from_secs(1),
            first.ensure(&names, &EnsureOptions::default())
        )
        .await
        .is_err()
    );
    drop(first);
    // Another holder (a restart, another node): it would wait the whole
    // lease_wait if the cancelled issuance still held the lease.
    let second = Issuer::builder(ca.client().await.unwrap(), FileStore::open(&dir).unwrap())
        .solver(Arc::new(Http01Solver::unserved()))
        .lease_wait(Duration::from_secs(3))
        .build();
    let ensured = second
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(ensured.source, CertificateSource::Resumed);
    assert_eq!(ca.ledger().issued_for(&names), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------
// Defect 10 (v1): a certificate the finder found is journalled with its
// chain at once, so a crash right after completes from the journal.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_found_v1_certificate_survives_a_crash_right_after_it_was_found() {
    let ca = Arc::new(
        TestCa::builder()
            .dialect(sturdy_acme::Dialect::V1)
            .faults(vec![FaultRule::new(
                Endpoint::Finalize,
                Trigger::Nth(1),
                Fault::DropAfterCommit,
            )])
            .start()
            .await
            .unwrap(),
    );
    let dir = temp_store("v1-found");
    let client = ca
        .client_builder()
        .certificate_finder(Arc::new(crate::common::LedgerFinder::new(&ca)))
        .build()
        .await
        .unwrap();
    let crashing = Issuer::builder(client, FileStore::open(&dir).unwrap())
        .solver(Arc::new(Http01Solver::unserved()))
        .on_step(|_, step| {
            if step == IssuerStep::FinalizeSent {
                panic!("crash right after the finder's certificate was journalled");
            }
        })
        .build();
    let names = ["found.example"];
    let crashed = tokio::spawn(async move {
        crashing
            .ensure(&names, &EnsureOptions::default())
            .await
            .map(|_| ())
    })
    .await;
    assert!(crashed.is_err_and(|e| e.is_panic()));
    assert_eq!(ca.ledger().issued_for(&names), 1);
    // A restart without a finder completes from what was journalled.
    let restarted = issuer(&ca, &dir).await;
    let ensured = restarted
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(ensured.source, CertificateSource::Resumed);
    assert_eq!(ca.ledger().issued_for(&names), 1);
    assert_eq!(ca.ledger().requests_to(Endpoint::Finalize), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Defect 8: a newOrder whose answer was lost is not repeated blindly: the
/// order it created is found in the account's orders list (on a CA that
/// would otherwise create a second pending order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_new_order_answer_is_found_in_the_orders_list() {
    let ca = TestCa::builder()
        .reuse_pending_orders(false)
        .faults(vec![FaultRule::new(
            Endpoint::NewOrder,
            Trigger::Nth(1),
            Fault::DropAfterCommit,
        )])
        .start()
        .await
        .unwrap();
    let client = ca.client().await.unwrap();
    let account = client
        .create_account(
            sturdy_acme::AccountKey::generate(sturdy_acme::KeyAlgorithm::Es256).unwrap(),
            &sturdy_acme::AccountOptions::agreeing_to_terms(),
        )
        .await
        .unwrap();
    let order = account
        .new_order(&sturdy_acme::NewOrder::for_names(&["lostorder.example"]).unwrap())
        .await
        .unwrap();
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), 1);
    let listed = account.order_urls(5).await.unwrap();
    assert_eq!(listed, vec![order.url().to_owned()]);
}

// ---------------------------------------------------------------------------
// The exactly-once campaign (issue 16): random fault scripts drawn from
// every fault the embedded CA knows, crashes at random steps (dropped
// futures in-process, and SIGKILL of a child process), garbage answers at
// resume. Over every run: never more than one certificate per identifier
// set, and every certificate the CA issued ends in the store with its key.
// `EXACTLY_ONCE_RUNS` sets the number of runs (default 200, plus a quarter
// as many on ACME v1 with a certificate finder).

use proptest::prelude::Rng;
use proptest::test_runner::{RngAlgorithm, TestRng};

fn pick<T: Clone>(rng: &mut TestRng, items: &[T]) -> T {
    items[(rng.next_u64() % items.len() as u64) as usize].clone()
}

fn any_fault(rng: &mut TestRng) -> Fault {
    let canned = [
        CannedAnswer::problem(404, "malformed", "no such thing"),
        CannedAnswer::problem(403, "unauthorized", "forbidden"),
        CannedAnswer::html(500),
        CannedAnswer::html(502),
        CannedAnswer::new(200, "application/json", "{\"status\": 7, \"garbage\""),
        CannedAnswer::problem(500, "serverInternal", "oops"),
    ];
    match rng.next_u64() % 13 {
        0 => Fault::Empty500,
        1 => Fault::Empty500AfterCommit,
        2 => Fault::Unavailable {
            retry_after: sturdy_acme_testca::RetryAfterForm::Seconds(0),
        },
        3 => Fault::BadNonce,
        4 => Fault::DropAfterCommit,
        5 => Fault::SlowAfterCommit { delay_ms: 1500 },
        6 => Fault::TruncatedAfterCommit,
        7 => Fault::InvalidJsonAfterCommit,
        8 => Fault::OversizedBody { bytes: 2 << 20 },
        9 => Fault::RateLimited {
            retry_after_secs: 0,
        },
        // After the work is done, only answers that do not claim a refusal
        // (a CA's 4xx problem document is its word that nothing happened;
        // a CA lying so is beyond any client).
        10 => Fault::CannedAfterCommit(pick(rng, &canned[2..])),
        _ => Fault::Canned(pick(rng, &canned)),
    }
}

fn any_rules(rng: &mut TestRng, endpoints: &[Endpoint]) -> Vec<FaultRule> {
    (0..1 + rng.next_u64() % 3)
        .map(|_| {
            let trigger = if rng.next_u64().is_multiple_of(2) {
                Trigger::Nth(1 + rng.next_u64() % 3)
            } else {
                Trigger::FirstN(1 + rng.next_u64() % 2)
            };
            FaultRule::new(pick(rng, endpoints), trigger, any_fault(rng))
        })
        .collect()
}

/// Garbage on reads of the order and the certificate, as a resume sees it;
/// with `foreign` (another certificate of the CA, for another key and
/// names), sometimes that chain served as this order's certificate.
fn resume_garbage(rng: &mut TestRng, foreign: Option<&str>) -> Vec<FaultRule> {
    let answer = pick(
        rng,
        &[
            CannedAnswer::problem(404, "malformed", "no such order"),
            CannedAnswer::problem(403, "unauthorized", "not yours"),
            CannedAnswer::html(500),
            CannedAnswer::new(200, "application/json", "\u{0}\u{1}not json"),
        ],
    );
    let n = 1 + rng.next_u64() % 2;
    let certificate = match foreign {
        Some(chain) if rng.next_u64().is_multiple_of(3) => {
            CannedAnswer::new(200, "application/pem-certificate-chain", chain.to_owned())
        }
        _ => answer.clone(),
    };
    vec![
        FaultRule::new(Endpoint::Order, Trigger::FirstN(n), Fault::Canned(answer)),
        FaultRule::new(
            Endpoint::Certificate,
            Trigger::FirstN(n),
            Fault::Canned(certificate),
        ),
    ]
}

/// A seam run after a stored certificate: its journal is put back beside
/// it (the delete after the save never happened), then the certificate is
/// revoked (and `ensure` must order a new one, never bring the revoked one
/// back) or ordered again with `force_new` (a new one, never the leftover).
/// Returns the certificates it deliberately adds for the set (1).
async fn leftover_seam(rng: &mut TestRng, ca: &Arc<TestCa>, dir: &Path, name: &str) -> usize {
    let issuer = campaign_issuer(ca, dir, false, None).await;
    let account = issuer.account().await.unwrap();
    let ids = vec![Identifier::dns(name).unwrap()];
    let key = IdentifierSetKey::for_account(ca.directory_url(), account.url(), &ids);
    let stored = issuer
        .store()
        .load_certificate(&key)
        .await
        .unwrap()
        .unwrap();
    let leftover = sturdy_acme::store::Journal {
        step: sturdy_acme::store::JournalStep::Downloaded,
        key_pem: Some(stored.key_pem.clone()),
        certificate_url: Some(stored.url.clone()),
        chain_pem: Some(stored.chain_pem.clone()),
        certificate_reserved: true,
        ..sturdy_acme::store::Journal::new(ca.directory_url(), account.url(), ids, 0)
    };
    issuer.store().save_journal(&key, &leftover).await.unwrap();
    let revoke = rng.next_u64().is_multiple_of(2);
    let options = if revoke {
        issuer
            .revoke(
                &[name],
                Some(sturdy_acme::RevocationReason::KeyCompromise),
                sturdy_acme::RevokeWith::AccountKey,
            )
            .await
            .unwrap();
        EnsureOptions::default()
    } else {
        EnsureOptions::default().with_force_new(true)
    };
    let next = issuer.ensure(&[name], &options).await.unwrap();
    assert_ne!(
        next.certificate.serial, stored.serial,
        "{name}: the leftover came back"
    );
    assert!(next.certificate.revoked.is_none());
    let now = issuer
        .store()
        .load_certificate(&key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        now.serial, next.certificate.serial,
        "{name}: the new one is stored"
    );
    1
}

async fn campaign_issuer(
    ca: &Arc<TestCa>,
    dir: &Path,
    finder: bool,
    crash_after: Option<(usize, Arc<tokio::sync::Notify>)>,
) -> Issuer<FileStore> {
    let defaults = sturdy_acme::RetryPolicy::default();
    let policy = defaults
        .with_transient(
            defaults
                .transient()
                .with_base(Duration::from_millis(2))
                .with_max_delay(Duration::from_millis(20))
                .with_max_attempts(3),
        )
        .with_seed(Some(7));
    let mut builder = ca
        .client_builder()
        .retry_policy(policy)
        .timeout(Duration::from_millis(800))
        .poll_policy(sturdy_acme::PollPolicy::default().with_timeout(Duration::from_secs(5)));
    if finder {
        builder = builder.certificate_finder(Arc::new(crate::common::LedgerFinder::new(ca)));
    }
    let mut issuer = Issuer::builder(
        builder.build().await.unwrap(),
        FileStore::open(dir).unwrap(),
    )
    .solver(Arc::new(Http01Solver::unserved()))
    // The embedded CA is not Let's Encrypt: its limits are not counted (a
    // long campaign orders more than 300 times on one account).
    .rate_limits(RateLimits::none())
    .lease_wait(Duration::from_secs(20));
    if let Some((after, notify)) = crash_after {
        let seen = std::sync::atomic::AtomicUsize::new(0);
        issuer = issuer.on_step(move |_, _| {
            if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == after {
                notify.notify_one();
            }
        });
    }
    issuer.build()
}

/// Reads a child's stdout until `prefix` or its end; true when seen.
fn child_reached(child: &mut Child, prefix: &str) -> bool {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let seen = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains(prefix));
    std::thread::spawn(move || for _ in lines.by_ref() {});
    seen
}

/// One run: returns whether the certificate ended up stored.
/// Resumes that met another certificate served as their own (refused).
static MISMATCHES_SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One campaign run's settings.
struct Run<'a> {
    name: &'a str,
    v1: bool,
    /// Crash by SIGKILL of a child process (else a dropped future).
    sigkill: bool,
    /// A chain of an earlier run a resume may be served as its certificate.
    foreign: Option<&'a str>,
}

async fn campaign_run(
    rng: &mut TestRng,
    ca: &Arc<TestCa>,
    root: &Path,
    dir: &Path,
    run: Run<'_>,
) -> bool {
    let Run {
        name,
        v1,
        sigkill,
        foreign,
    } = run;
    let endpoints: &[Endpoint] = if v1 {
        &[
            Endpoint::NewOrder,
            Endpoint::Authorization,
            Endpoint::Challenge,
            Endpoint::Finalize,
        ]
    } else {
        &[
            Endpoint::NewOrder,
            Endpoint::Order,
            Endpoint::Authorization,
            Endpoint::Challenge,
            Endpoint::Finalize,
            Endpoint::Certificate,
        ]
    };
    ca.set_faults(any_rules(rng, endpoints));
    let names = [name];
    if sigkill && !v1 {
        let step = pick(
            rng,
            &[
                "OrderCreated",
                "ChallengesAnswered",
                "FinalizeSent",
                "CertificateUrlKnown",
                "Downloaded",
            ],
        );
        let mut child = spawn_child(ca, root, dir, name, Some(step));
        let reached = tokio::task::spawn_blocking(move || {
            let reached = child_reached(&mut child, "REACHED");
            let _ = child.kill();
            let _ = child.wait();
            reached
        })
        .await
        .unwrap();
        let _ = reached;
    } else {
        // A crash in-process: the future is dropped right after step k.
        let notify = Arc::new(tokio::sync::Notify::new());
        let after = 1 + (rng.next_u64() % 7) as usize;
        let issuer = campaign_issuer(ca, dir, v1, Some((after, Arc::clone(&notify)))).await;
        let options = EnsureOptions::default();
        tokio::select! {
            _ = issuer.ensure(&names, &options) => {}
            _ = notify.notified() => {}
        }
    }
    // Resume: first against garbage reads, then against a healthy CA.
    ca.set_faults(if v1 {
        Vec::new()
    } else {
        resume_garbage(rng, foreign)
    });
    for attempt in 0..6 {
        if attempt == 2 {
            ca.set_faults(Vec::new());
        }
        let issuer = campaign_issuer(ca, dir, v1, None).await;
        let result = issuer.ensure(&names, &EnsureOptions::default()).await;
        if let Err(Error::CertificateMismatch { .. }) = &result {
            MISMATCHES_SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if attempt == 5
            && let Err(e) = &result
        {
            eprintln!("{name}: not stored: {e}");
        }
        if let Ok(ensured) = result {
            let issued: Vec<_> = ca
                .ledger()
                .certificates
                .into_iter()
                .filter(|c| c.identifiers.iter().map(|i| i.value.as_str()).eq([name]))
                .collect();
            assert_eq!(issued.len(), 1, "{name}: exactly one certificate");
            let stored_leaf = pem::parse(&ensured.certificate.chain_pem).unwrap();
            assert_eq!(
                stored_leaf.contents(),
                issued[0].leaf_der,
                "{name}: the CA's certificate is stored"
            );
            let key =
                sturdy_acme::CertificateKey::from_pkcs8_pem(&ensured.certificate.key_pem).unwrap();
            use x509_parser::prelude::{FromDer, X509Certificate};
            let (_, leaf) = X509Certificate::from_der(&issued[0].leaf_der).unwrap();
            assert_eq!(
                leaf.public_key().raw,
                key.public_key_der(),
                "{name}: with its key"
            );
            return true;
        }
    }
    // Not stored only when nothing was issued: an issued certificate is
    // never lost.
    assert_eq!(
        ca.ledger().issued_for(&names),
        0,
        "{name}: issued but not stored"
    );
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_campaign() {
    let runs: usize = std::env::var("EXACTLY_ONCE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[16; 32]);
    let mut stored = 0;
    let mut total = 0;
    for (dialect, count) in [
        (sturdy_acme::Dialect::V2, runs),
        (sturdy_acme::Dialect::V1, runs / 4),
    ] {
        let v1 = dialect == sturdy_acme::Dialect::V1;
        let ca = Arc::new(
            TestCa::builder()
                .dialect(dialect)
                .reuse_pending_orders(false)
                .start()
                .await
                .unwrap(),
        );
        let root = temp_store("campaign-root").with_extension("pem");
        std::fs::write(&root, ca.root_pem()).unwrap();
        let dir = temp_store(if v1 { "campaign-v1" } else { "campaign" });
        // Certificates the seams add on purpose (revoke, force_new), by name.
        let mut deliberate = std::collections::HashMap::new();
        // A chain of an earlier run: another key, other names.
        let mut foreign: Option<String> = None;
        for i in 0..count {
            let name = format!("run{i}-{}.example", if v1 { "v1" } else { "v2" });
            let sigkill = i % 10 == 9;
            let run = Run {
                name: &name,
                v1,
                sigkill,
                foreign: foreign.as_deref(),
            };
            if campaign_run(&mut rng, &ca, &root, &dir, run).await {
                stored += 1;
                if !v1 && i % 5 == 4 {
                    ca.set_faults(Vec::new());
                    let added = leftover_seam(&mut rng, &ca, &dir, &name).await;
                    deliberate.insert(name.clone(), added);
                }
                if foreign.is_none() && !v1 {
                    let issuer = campaign_issuer(&ca, &dir, false, None).await;
                    foreign = issuer
                        .stored_certificate(&[name.as_str()])
                        .await
                        .unwrap()
                        .map(|c| c.chain_pem);
                }
            }
            total += 1;
        }
        // Across the whole campaign: no identifier set was issued twice,
        // beyond what a seam run added on purpose.
        let ledger = ca.ledger();
        let mut per_set = std::collections::BTreeMap::new();
        for c in &ledger.certificates {
            *per_set.entry(c.identifiers.clone()).or_insert(0usize) += 1;
        }
        for (set, issued) in per_set {
            let extra = deliberate.get(&set[0].value).copied().unwrap_or(0);
            assert_eq!(issued, 1 + extra, "{set:?} was issued twice");
        }
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_file(&root).unwrap();
    }
    let mismatches = MISMATCHES_SEEN.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "exactly-once campaign: {stored} of {total} runs stored their one certificate; \
         {mismatches} resumes refused another certificate served as theirs"
    );
    assert!(mismatches > 0, "the foreign-chain fault was never met");
    // A campaign where everything fails proves nothing.
    assert!(
        stored * 10 >= total * 9,
        "only {stored} of {total} runs issued"
    );
}

/// Review finding: a v1 order whose new-cert may have been sent is not
/// given up when its authorizations read as invalid later (expired): the
/// new-cert guard decides, and new-cert is never sent blind for a new order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_order_after_new_cert_is_not_restarted_when_its_authorizations_expire() {
    let ca = TestCa::builder()
        .dialect(sturdy_acme::Dialect::V1)
        .faults(vec![FaultRule::new(
            Endpoint::Finalize,
            Trigger::Nth(1),
            Fault::DropAfterCommit,
        )])
        .start()
        .await
        .unwrap();
    let dir = temp_store("v1-expired");
    let issuer = issuer(&ca, &dir).await;
    let names = ["expired.example"];
    let err = issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err}");
    assert_eq!(ca.ledger().issued_for(&names), 1);
    let invalid = serde_json::json!({
        "identifier": {"type": "dns", "value": "expired.example"},
        "status": "invalid",
        "challenges": [],
    });
    ca.set_faults(vec![FaultRule::new(
        Endpoint::Authorization,
        Trigger::Nth(1),
        Fault::Canned(CannedAnswer::new(
            200,
            "application/json",
            invalid.to_string(),
        )),
    )]);
    // A restart: nothing of the first attempt in memory, only the journal.
    let restarted = self::issuer(&ca, &dir).await;
    let err = restarted
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err}");
    assert_eq!(
        ca.ledger().requests_to(Endpoint::Finalize),
        1,
        "never sent again"
    );
    assert_eq!(ca.ledger().issued_for(&names), 1);
    assert_eq!(journal_files(&dir).0, 1, "the journal and its key are kept");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Review finding: a v1 new-cert the CA refused (a 4xx, nothing issued) is
/// not taken for a lost answer by later runs: a restart issues normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_v1_new_cert_does_not_block_later_runs() {
    let ca = TestCa::builder()
        .dialect(sturdy_acme::Dialect::V1)
        .faults(vec![FaultRule::new(
            Endpoint::Finalize,
            Trigger::Nth(1),
            Fault::Canned(CannedAnswer::problem(400, "badCSR", "refused (test)")),
        )])
        .start()
        .await
        .unwrap();
    let dir = temp_store("v1-refused");
    let first = issuer(&ca, &dir).await;
    let names = ["refused.example"];
    let err = first
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert_eq!(ca.ledger().issued_for(&names), 0);
    let restarted = issuer(&ca, &dir).await;
    let ensured = restarted
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(ensured.source, CertificateSource::Resumed);
    assert_eq!(ca.ledger().issued_for(&names), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 14: the default rate-limit table follows the directory; the
/// embedded CA is not Let's Encrypt, so 200 certificates under one
/// registered domain (four times Let's Encrypt's 50) all issue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limits_follow_the_ca_two_hundred_under_one_domain_issue() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("two-hundred");
    let issuer = issuer(&ca, &dir).await;
    for i in 0..200 {
        let name = format!("c{i}.one-domain.example");
        let ensured = issuer
            .ensure(&[name.as_str()], &EnsureOptions::default())
            .await
            .unwrap_or_else(|e| panic!("certificate {i}: {e}"));
        assert_eq!(ensured.source, CertificateSource::New);
    }
    assert_eq!(ca.ledger().certificates.len(), 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 28: a test CA enforcing a limits table announces it in its
/// directory, and an issuer told nothing counts the same table: the sixth
/// duplicate is refused locally, with no newOrder sent (before, the issuer
/// counted no limits against such a CA and the CA answered 429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_counts_the_limits_its_test_ca_announces() {
    let week = Duration::from_secs(7 * 24 * 3600);
    let limits = RateLimits {
        duplicate_certificates: Some(Limit::new(5, week)),
        ..RateLimits::none()
    };
    let ca = TestCa::builder()
        .rate_limits(limits.clone())
        .start()
        .await
        .unwrap();
    let client = ca.client().await.unwrap();
    assert_eq!(
        RateLimits::announced(&client.directory().meta),
        Some(limits.clone())
    );
    assert_eq!(ca.enforced_rate_limits(), limits);
    let dir = temp_store("announced-limits");
    let issuer = Issuer::builder(client, FileStore::open(&dir).unwrap())
        .solver(Arc::new(Http01Solver::unserved()))
        .build();
    let force = EnsureOptions::default().with_force_new(true);
    for _ in 0..5 {
        issuer.ensure(&["announced.example"], &force).await.unwrap();
    }
    let orders = ca.ledger().requests_to(Endpoint::NewOrder);
    let err = issuer
        .ensure(&["announced.example"], &force)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RateLimitedLocally { .. }), "{err}");
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), orders);
    // A CA enforcing nothing announces nothing.
    let plain = TestCa::start().await.unwrap();
    let client = plain.client().await.unwrap();
    assert_eq!(RateLimits::announced(&client.directory().meta), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 14: a store chosen at run time, as `Arc<dyn DynStore>`, serves the
/// issuer like the concrete one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_behind_a_trait_object_serves_the_issuer() {
    use sturdy_acme::store::DynStore;
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("dyn-store");
    let store: Arc<dyn DynStore> = Arc::new(FileStore::open(&dir).unwrap());
    let issuer = Issuer::builder(ca.client().await.unwrap(), store.clone())
        .solver(Arc::new(Http01Solver::unserved()))
        .build();
    let first = issuer
        .ensure(&["dyn.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(first.source, CertificateSource::New);
    let again = issuer
        .ensure(&["dyn.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(again.source, CertificateSource::Stored);
    assert_eq!(again.certificate.serial, first.certificate.serial);
    // The account the issuer registered, read through the trait object.
    let account = DynStore::load_account(&*store, &ca.directory_url())
        .await
        .unwrap();
    assert!(account.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 14: the store contract's checks pass on FileStore, directly and
/// behind `Arc<dyn DynStore>`.
#[tokio::test]
async fn file_store_passes_the_store_contract_checks() {
    use sturdy_acme::store::DynStore;
    use sturdy_acme_testca::check_store;
    let dir = temp_store("conformance");
    check_store(&FileStore::open(&dir).unwrap()).await.unwrap();
    check_store(&sturdy_acme::store::MemoryStore::new())
        .await
        .unwrap();
    let dyn_dir = temp_store("conformance-dyn");
    let store: Arc<dyn DynStore> = Arc::new(FileStore::open(&dyn_dir).unwrap());
    check_store(&store).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dyn_dir);
}

/// The contract checks can fail: a store that forgets to delete journals,
/// or that hands out one fencing token for ever, is caught.
#[tokio::test]
async fn the_store_contract_checks_catch_a_broken_store() {
    use sturdy_acme::store::{
        DynStore, Journal, Lease, RateLimitRecord, StoreFuture, StoredAccount, StoredCertificate,
    };
    use sturdy_acme_testca::check_store;

    struct Broken {
        inner: FileStore,
        keep_journals: bool,
        racy_ledger: bool,
        /// Loses every change with an even revision.
        lossy_feed: bool,
        forgetful_requests: bool,
    }
    impl DynStore for Broken {
        fn load_account<'a>(&'a self, d: &'a str) -> StoreFuture<'a, Option<StoredAccount>> {
            Box::pin(Store::load_account(&self.inner, d))
        }
        fn save_account<'a>(&'a self, d: &'a str, a: &'a StoredAccount) -> StoreFuture<'a, ()> {
            Box::pin(Store::save_account(&self.inner, d, a))
        }
        fn load_certificate<'a>(
            &'a self,
            k: &'a IdentifierSetKey,
        ) -> StoreFuture<'a, Option<StoredCertificate>> {
            Box::pin(Store::load_certificate(&self.inner, k))
        }
        fn save_certificate<'a>(
            &'a self,
            k: &'a IdentifierSetKey,
            c: &'a StoredCertificate,
        ) -> StoreFuture<'a, ()> {
            Box::pin(Store::save_certificate(&self.inner, k, c))
        }
        fn list_certificates<'a>(&'a self, d: &'a str) -> StoreFuture<'a, Vec<IdentifierSetKey>> {
            Box::pin(Store::list_certificates(&self.inner, d))
        }
        fn list_journals<'a>(&'a self, d: &'a str) -> StoreFuture<'a, Vec<IdentifierSetKey>> {
            Box::pin(Store::list_journals(&self.inner, d))
        }
        fn list_managed<'a>(
            &'a self,
            d: &'a str,
        ) -> StoreFuture<'a, Vec<sturdy_acme::store::ManagedRecord>> {
            Box::pin(Store::list_managed(&self.inner, d))
        }
        fn save_managed<'a>(
            &'a self,
            d: &'a str,
            r: &'a sturdy_acme::store::ManagedRecord,
        ) -> StoreFuture<'a, ()> {
            Box::pin(Store::save_managed(&self.inner, d, r))
        }
        fn delete_managed<'a>(&'a self, d: &'a str, id: &'a str) -> StoreFuture<'a, ()> {
            Box::pin(Store::delete_managed(&self.inner, d, id))
        }
        fn load_journal<'a>(&'a self, k: &'a IdentifierSetKey) -> StoreFuture<'a, Option<Journal>> {
            Box::pin(Store::load_journal(&self.inner, k))
        }
        fn save_journal<'a>(
            &'a self,
            k: &'a IdentifierSetKey,
            j: &'a Journal,
        ) -> StoreFuture<'a, ()> {
            Box::pin(Store::save_journal(&self.inner, k, j))
        }
        fn delete_journal<'a>(&'a self, k: &'a IdentifierSetKey) -> StoreFuture<'a, ()> {
            if self.keep_journals {
                return Box::pin(async { Ok(()) });
            }
            Box::pin(Store::delete_journal(&self.inner, k))
        }
        fn archive_journal<'a>(
            &'a self,
            k: &'a IdentifierSetKey,
            j: &'a Journal,
        ) -> StoreFuture<'a, ()> {
            Box::pin(Store::archive_journal(&self.inner, k, j))
        }
        fn changes_since<'a>(
            &'a self,
            after: u64,
            limit: usize,
        ) -> StoreFuture<'a, sturdy_acme::store::ChangePage> {
            Box::pin(async move {
                let mut page = Store::changes_since(&self.inner, after, limit).await?;
                if self.lossy_feed {
                    page.changes.retain(|c| c.revision % 2 == 1);
                }
                Ok(page)
            })
        }
        fn wait_for_changes<'a>(&'a self, after: u64, timeout: Duration) -> StoreFuture<'a, u64> {
            Box::pin(Store::wait_for_changes(&self.inner, after, timeout))
        }
        fn feed_snapshot<'a>(&'a self) -> StoreFuture<'a, sturdy_acme::store::FeedSnapshot> {
            Box::pin(Store::feed_snapshot(&self.inner))
        }
        fn request_certificate<'a>(
            &'a self,
            name: &'a str,
            edge: &'a str,
        ) -> StoreFuture<'a, bool> {
            Box::pin(async move {
                if self.forgetful_requests {
                    // Not one per name: a repeat replaces the pending one.
                    Store::delete_request(&self.inner, name).await?;
                }
                Store::request_certificate(&self.inner, name, edge).await
            })
        }
        fn list_requests<'a>(
            &'a self,
        ) -> StoreFuture<'a, Vec<sturdy_acme::store::CertificateRequest>> {
            Box::pin(Store::list_requests(&self.inner))
        }
        fn delete_request<'a>(&'a self, name: &'a str) -> StoreFuture<'a, ()> {
            Box::pin(Store::delete_request(&self.inner, name))
        }
        fn save_validation<'a>(
            &'a self,
            v: &'a sturdy_acme::store::ValidationCertificate,
        ) -> StoreFuture<'a, ()> {
            Box::pin(Store::save_validation(&self.inner, v))
        }
        fn load_validation<'a>(
            &'a self,
            name: &'a str,
        ) -> StoreFuture<'a, Option<sturdy_acme::store::ValidationCertificate>> {
            Box::pin(Store::load_validation(&self.inner, name))
        }
        fn delete_validation<'a>(&'a self, name: &'a str) -> StoreFuture<'a, ()> {
            Box::pin(Store::delete_validation(&self.inner, name))
        }
        fn load_directory<'a>(
            &'a self,
            d: &'a str,
        ) -> StoreFuture<'a, Option<sturdy_acme::store::DirectoryRecord>> {
            Box::pin(Store::load_directory(&self.inner, d))
        }
        fn save_directory<'a>(
            &'a self,
            d: &'a str,
            r: &'a sturdy_acme::store::DirectoryRecord,
        ) -> StoreFuture<'a, ()> {
            Box::pin(Store::save_directory(&self.inner, d, r))
        }
        fn load_ledger<'a>(&'a self, d: &'a str) -> StoreFuture<'a, Option<RateLimitRecord>> {
            Box::pin(Store::load_ledger(&self.inner, d))
        }
        fn save_ledger<'a>(&'a self, d: &'a str, l: &'a RateLimitRecord) -> StoreFuture<'a, ()> {
            Box::pin(Store::save_ledger(&self.inner, d, l))
        }
        fn update_ledger<'a>(
            &'a self,
            d: &'a str,
            update: &'a mut sturdy_acme::store::LedgerUpdate<'_>,
        ) -> StoreFuture<'a, ()> {
            if !self.racy_ledger {
                return Box::pin(Store::update_ledger(&self.inner, d, update));
            }
            // Broken atomicity: a read, then a write, with room between.
            Box::pin(async move {
                let current = Store::load_ledger(&self.inner, d).await?;
                tokio::task::yield_now().await;
                match update(current.as_ref()) {
                    Some(next) => Store::save_ledger(&self.inner, d, &next).await,
                    None => Ok(()),
                }
            })
        }
        fn load_ledger_entries<'a>(
            &'a self,
            d: &'a str,
            keys: Option<&'a [String]>,
        ) -> StoreFuture<'a, sturdy_acme::store::LedgerEntries> {
            Box::pin(Store::load_ledger_entries(&self.inner, d, keys))
        }
        fn update_ledger_entries<'a>(
            &'a self,
            d: &'a str,
            keys: &'a [String],
            update: &'a mut sturdy_acme::store::LedgerEntriesUpdate<'_>,
        ) -> StoreFuture<'a, ()> {
            if !self.racy_ledger {
                return Box::pin(Store::update_ledger_entries(&self.inner, d, keys, update));
            }
            // Broken atomicity: a read, then a write of what was read.
            Box::pin(async move {
                let read = Store::load_ledger_entries(&self.inner, d, Some(keys)).await?;
                tokio::task::yield_now().await;
                let changes = update(&read);
                Store::update_ledger_entries(&self.inner, d, keys, &mut |_| changes.clone()).await
            })
        }
        fn save_journal_fenced<'a>(
            &'a self,
            k: &'a IdentifierSetKey,
            j: &'a Journal,
            l: &'a Lease,
        ) -> StoreFuture<'a, ()> {
            Box::pin(Store::save_journal_fenced(&self.inner, k, j, l))
        }
        fn delete_journal_fenced<'a>(
            &'a self,
            k: &'a IdentifierSetKey,
            l: &'a Lease,
        ) -> StoreFuture<'a, ()> {
            Box::pin(Store::delete_journal_fenced(&self.inner, k, l))
        }
        fn acquire_lease<'a>(
            &'a self,
            n: &'a str,
            h: &'a str,
            ttl: Duration,
        ) -> StoreFuture<'a, Lease> {
            // Broken fencing: every lease gets token 1.
            Box::pin(async move {
                let mut lease = Store::acquire_lease(&self.inner, n, h, ttl).await?;
                lease.token = 1;
                Ok(lease)
            })
        }
        fn renew_lease<'a>(&'a self, l: &'a Lease, ttl: Duration) -> StoreFuture<'a, Lease> {
            Box::pin(Store::renew_lease(&self.inner, l, ttl))
        }
        fn check_lease<'a>(&'a self, l: &'a Lease) -> StoreFuture<'a, ()> {
            Box::pin(Store::check_lease(&self.inner, l))
        }
        fn release_lease<'a>(&'a self, l: &'a Lease) -> StoreFuture<'a, ()> {
            Box::pin(Store::release_lease(&self.inner, l))
        }
    }
    let dir = temp_store("broken-journals");
    let store: Arc<dyn DynStore> = Arc::new(Broken {
        inner: FileStore::open(&dir).unwrap(),
        keep_journals: true,
        racy_ledger: false,
        lossy_feed: false,
        forgetful_requests: false,
    });
    let err = check_store(&store).await.unwrap_err();
    assert_eq!(err.check, "a deleted journal is gone", "{err}");
    let dir2 = temp_store("broken-tokens");
    let store: Arc<dyn DynStore> = Arc::new(Broken {
        inner: FileStore::open(&dir2).unwrap(),
        keep_journals: false,
        racy_ledger: false,
        lossy_feed: false,
        forgetful_requests: false,
    });
    let err = check_store(&store).await.unwrap_err();
    assert!(
        err.check.contains("fencing")
            || err.check.contains("renew")
            || err.check.contains("check_lease"),
        "{err}"
    );
    let dir3 = temp_store("broken-ledger");
    let store: Arc<dyn DynStore> = Arc::new(Broken {
        inner: FileStore::open(&dir3).unwrap(),
        keep_journals: false,
        racy_ledger: true,
        lossy_feed: false,
        forgetful_requests: false,
    });
    let err = check_store(&store).await.unwrap_err();
    assert!(err.check.contains("atomic"), "{err}");
    let dir4 = temp_store("broken-feed");
    let store: Arc<dyn DynStore> = Arc::new(Broken {
        inner: FileStore::open(&dir4).unwrap(),
        keep_journals: false,
        racy_ledger: false,
        lossy_feed: true,
        forgetful_requests: false,
    });
    let err = sturdy_acme_testca::check_feed(&store).await.unwrap_err();
    assert!(err.check.contains("revision"), "{err}");
    let dir5 = temp_store("broken-requests");
    let store: Arc<dyn DynStore> = Arc::new(Broken {
        inner: FileStore::open(&dir5).unwrap(),
        keep_journals: false,
        racy_ledger: false,
        lossy_feed: false,
        forgetful_requests: true,
    });
    let err = sturdy_acme_testca::check_requests(&store)
        .await
        .unwrap_err();
    assert!(err.check.contains("once per name"), "{err}");
    let _ = std::fs::remove_dir_all(&dir4);
    let _ = std::fs::remove_dir_all(&dir5);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
    let _ = std::fs::remove_dir_all(&dir3);
}

/// A dns-01 solver that records whether two presents at one record name
/// ever overlapped, and whether presents at different names ran side by
/// side.
#[derive(Default)]
struct OverlapWatch {
    in_flight: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    same_name_overlap: std::sync::atomic::AtomicBool,
    max_in_flight: std::sync::atomic::AtomicUsize,
    presents: std::sync::atomic::AtomicUsize,
}

impl sturdy_acme::solver::Solver for OverlapWatch {
    fn challenge_type(&self) -> sturdy_acme::ChallengeType {
        sturdy_acme::ChallengeType::Dns01
    }
    fn present<'a>(
        &'a self,
        answer: &'a sturdy_acme::solver::ChallengeAnswer,
    ) -> sturdy_acme::solver::SolverFuture<'a> {
        use std::sync::atomic::Ordering::SeqCst;
        Box::pin(async move {
            {
                let mut in_flight = self.in_flight.lock().unwrap();
                let here = in_flight.entry(answer.dns_name.clone()).or_default();
                *here += 1;
                if *here > 1 {
                    self.same_name_overlap.store(true, SeqCst);
                }
                let total: usize = in_flight.values().sum();
                self.max_in_flight.fetch_max(total, SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            *self
                .in_flight
                .lock()
                .unwrap()
                .get_mut(&answer.dns_name)
                .unwrap() -= 1;
            self.presents.fetch_add(1, SeqCst);
            Ok(())
        })
    }
    fn cleanup<'a>(
        &'a self,
        _: &'a sturdy_acme::solver::ChallengeAnswer,
    ) -> sturdy_acme::solver::SolverFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// A wildcard and its apex share `_acme-challenge.<name>`: their presents
/// run one after another; another name's present runs beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_at_one_record_name_are_presented_one_after_another() {
    use std::sync::atomic::Ordering::SeqCst;
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("present-order");
    let watch = Arc::new(OverlapWatch::default());
    let issuer = Issuer::builder(ca.client().await.unwrap(), FileStore::open(&dir).unwrap())
        .solver(Arc::clone(&watch) as Arc<dyn sturdy_acme::solver::Solver>)
        .build();
    issuer
        .ensure(
            &["shared.example", "*.shared.example", "other.example"],
            &EnsureOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(watch.presents.load(SeqCst), 3);
    assert!(
        !watch.same_name_overlap.load(SeqCst),
        "two presents at _acme-challenge.shared.example overlapped"
    );
    assert_eq!(
        watch.max_in_flight.load(SeqCst),
        2,
        "other.example presented beside shared.example"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
