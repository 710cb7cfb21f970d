//! Issue 10: PostgresStore against a real PostgreSQL server (started per
//! test by `common::postgres`): the store contract, sealed keys, schema
//! migrations, typed errors across a restart, and the fleet's promises
//! (one certificate per set across nodes and processes, a shared ledger,
//! fencing of a partitioned or paused holder).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use std::time::Duration;

use crate::common::postgres::fresh_database;
use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::{FileStore, KeyEncryptionKey, Store, StoredAccount};
use sturdy_acme::{
    DatabaseErrorKind, Endpoint, EnsureOptions, Error, ErrorClass, Issuer, IssuerStep, Limit,
    RateLimits, StoreError,
};
use sturdy_acme_postgres::PostgresStore;
use sturdy_acme_testca::{TestCa, check_store};
use zeroize::Zeroizing;

use crate::common::postgres::Postgres;
use crate::common::tcp_proxy::TcpProxy;

/// Runs SQL on the database at `url` (for looking at what it holds).
pub(crate) async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

fn kek(id: &str, byte: u8) -> KeyEncryptionKey {
    KeyEncryptionKey::new(id, [byte; 32]).unwrap()
}

/// The one store contract, run against both stores (and each behind
/// `Arc<dyn DynStore>`), the PostgreSQL one with and without sealing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_pass_the_store_contract_checks() {
    let Some(pg) = Postgres::start() else { return };
    let plain = PostgresStore::connect(&fresh_database(&pg).await)
        .await
        .unwrap();
    check_store(&plain).await.unwrap();
    let sealed = PostgresStore::builder(fresh_database(&pg).await)
        .key_encryption_key(kek("k1", 1))
        .open()
        .await
        .unwrap();
    check_store(&sealed).await.unwrap();
    let dynamic: Arc<dyn sturdy_acme::store::DynStore> = Arc::new(
        PostgresStore::connect(&fresh_database(&pg).await)
            .await
            .unwrap(),
    );
    check_store(&dynamic).await.unwrap();
    let dir = crate::issuer::temp_store("pg-conformance-file");
    check_store(&FileStore::open(&dir).unwrap()).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// With a key-encryption key no private key is readable in the database;
/// a sealed secret moved to another row, or read without its key, is a
/// typed error (never taken for absent); a rotated key still opens old
/// records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_keys_are_sealed_at_rest_and_bound_to_their_record() {
    let Some(pg) = Postgres::start() else { return };
    let url = fresh_database(&pg).await;
    let store = PostgresStore::builder(url.clone())
        .key_encryption_key(kek("k1", 1))
        .open()
        .await
        .unwrap();
    let account = |n: u8| StoredAccount {
        url: format!("https://ca.example/acct/{n}"),
        key_pem: Zeroizing::new(format!(
            "-----BEGIN PRIVATE KEY-----\nsecret-{n}\n-----END PRIVATE KEY-----\n"
        )),
        next_key_pem: None,
    };
    store
        .save_account("https://ca.example/dir", &account(1))
        .await
        .unwrap();
    store
        .save_account("https://other.example/dir", &account(2))
        .await
        .unwrap();
    let db = sql(&url).await;
    let rows = db
        .query(
            "SELECT directory, record::text, encode(sealed, 'escape'), kek_id FROM sturdy_accounts",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let record: String = row.get(1);
        let sealed: String = row.get(2);
        let kek_id: Option<String> = row.get(3);
        assert!(
            !record.contains("PRIVATE KEY") && !record.contains("secret-"),
            "{record}"
        );
        assert!(!sealed.contains("PRIVATE KEY") && !sealed.contains("secret-"));
        assert_eq!(kek_id.as_deref(), Some("k1"));
        assert!(record.contains("https://ca.example/acct/") || record.contains("acct/2"));
    }
    // Reads back whole.
    let read = store
        .load_account("https://ca.example/dir")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.key_pem, account(1).key_pem);
    // A sealed secret copied to another record does not open there.
    db.execute(
        "UPDATE sturdy_accounts SET sealed = (SELECT sealed FROM sturdy_accounts WHERE directory = $1) \
         WHERE directory = $2",
        &[&"https://ca.example/dir", &"https://other.example/dir"],
    )
    .await
    .unwrap();
    match store.load_account("https://other.example/dir").await {
        Err(StoreError::KeyEncryption { reason, .. }) => {
            assert!(reason.contains("another record"), "{reason}")
        }
        other => panic!("a moved secret opened: {other:?}"),
    }
    // Without the key: a typed error naming it.
    let keyless = PostgresStore::builder(url.clone())
        .key_encryption_key(kek("k2", 2))
        .open()
        .await
        .unwrap();
    match keyless.load_account("https://ca.example/dir").await {
        Err(StoreError::KeyEncryption { reason, .. }) => {
            assert!(reason.contains("\"k1\""), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Rotation: k2 current, k1 previous: old records open, new ones are
    // sealed with k2.
    let rotated = PostgresStore::builder(url.clone())
        .key_encryption_key(kek("k2", 2))
        .previous_key_encryption_key(kek("k1", 1))
        .open()
        .await
        .unwrap();
    let read = rotated
        .load_account("https://ca.example/dir")
        .await
        .unwrap()
        .unwrap();
    rotated
        .save_account("https://ca.example/dir", &read)
        .await
        .unwrap();
    let row = db
        .query_one(
            "SELECT kek_id FROM sturdy_accounts WHERE directory = $1",
            &[&"https://ca.example/dir"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("k2"));
}

/// Nodes opening an empty database together apply each migration once;
/// a database whose schema is newer than this build is refused with a
/// typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_for_nodes_starting_together_and_a_newer_schema_is_refused() {
    let Some(pg) = Postgres::start() else { return };
    let url = fresh_database(&pg).await;
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url).await })
        })
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }
    let db = sql(&url).await;
    let versions: Vec<i32> = db
        .query(
            "SELECT version FROM sturdy_schema_version ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7], "each migration once");
    db.execute(
        "INSERT INTO sturdy_schema_version (version) VALUES (99)",
        &[],
    )
    .await
    .unwrap();
    match PostgresStore::connect(&url).await {
        Err(StoreError::Database {
            kind: DatabaseErrorKind::Schema,
            message,
            ..
        }) => assert!(message.contains("99"), "{message}"),
        other => panic!("{other:?}"),
    }
}

/// `pg_ctl restart` while a store is busy: every operation still succeeds
/// (the transient failures are retried); a server that stays down is a
/// typed Transient error once the retry budget is spent, and the issuer
/// classes it Transient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_is_ridden_out_and_a_dead_server_is_a_typed_transient_error() {
    let Some(pg) = Postgres::start() else { return };
    let pg = Arc::new(pg);
    let url = fresh_database(&pg).await;
    let store = PostgresStore::builder(url.clone())
        .operation_timeout(Duration::from_secs(2))
        .retry_for(Duration::from_secs(30))
        .open()
        .await
        .unwrap();
    let restarter = {
        let pg = Arc::clone(&pg);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            pg.restart();
        })
    };
    let started = std::time::Instant::now();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(4) {
        let dir = format!("https://ca.example/{n}");
        let account = StoredAccount {
            url: format!("https://ca.example/acct/{n}"),
            key_pem: Zeroizing::new("-----BEGIN PRIVATE KEY-----\nk".into()),
            next_key_pem: None,
        };
        store.save_account(&dir, &account).await.unwrap();
        assert!(store.load_account(&dir).await.unwrap().is_some());
        n += 1;
    }
    restarter.join().unwrap();
    assert!(
        store.stats().retries > 0,
        "the restart was seen and retried: {:?}",
        store.stats()
    );
    let short = PostgresStore::builder(url.clone())
        .operation_timeout(Duration::from_millis(500))
        .retry_for(Duration::from_secs(1))
        .open()
        .await
        .unwrap();
    pg.stop();
    let err = short
        .load_account("https://ca.example/0")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Database {
                kind: DatabaseErrorKind::Transient,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(Error::Store(err).class(), ErrorClass::Transient);
    pg.start_again();
    assert!(
        short
            .load_account("https://ca.example/0")
            .await
            .unwrap()
            .is_some()
    );
}

fn issuer_on(
    client: sturdy_acme::Client,
    store: PostgresStore,
    ttl: Duration,
) -> Issuer<PostgresStore> {
    Issuer::builder(client, store)
        .solver(Arc::new(Http01Solver::unserved()))
        .lease_ttl(ttl)
        .build()
}

/// Three nodes (each its own client and connection pool) on one database
/// ensure the same 20 sets at once: 20 certificates at the CA, each
/// stored once with its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_a_database_issue_each_set_once() {
    let Some(pg) = Postgres::start() else { return };
    let url = fresh_database(&pg).await;
    let ca = TestCa::start().await.unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("n{i}.nodes.test")).collect();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let store = PostgresStore::connect(&url).await.unwrap();
        nodes.push(issuer_on(
            ca.client().await.unwrap(),
            store,
            Duration::from_secs(30),
        ));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (k, node) in nodes.iter().enumerate() {
        for i in 0..names.len() {
            let name = names[(i + k * 7) % names.len()].clone();
            let node = node.clone();
            tasks.spawn(async move { node.ensure(&[name], &EnsureOptions::default()).await });
        }
    }
    let mut serials = std::collections::BTreeMap::<String, String>::new();
    while let Some(done) = tasks.join_next().await {
        let ensured = done.unwrap().unwrap();
        let name = ensured.certificate.identifiers[0].value.clone();
        let serial = ensured.certificate.serial.clone();
        assert_eq!(
            serials.entry(name).or_insert(serial.clone()),
            &serial,
            "one certificate per set"
        );
    }
    assert_eq!(serials.len(), 20);
    assert_eq!(
        ca.ledger().certificates.len(),
        20,
        "one certificate per set at the CA"
    );
    let store = nodes[0].store();
    let listed = store.list_certificates(&ca.directory_url()).await.unwrap();
    assert_eq!(listed.len(), 20);
    for key in listed {
        let cert = store.load_certificate(&key).await.unwrap().unwrap();
        assert!(cert.key_pem.contains("PRIVATE KEY"));
    }
}

/// The acceptance's ledger: 4 nodes issuing distinct names under one
/// registered domain with a local limit of 20 per window: exactly 20
/// orders reach the CA between them, the rest are refused locally with a
/// retry time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_never_spend_more_than_the_shared_ledger_allows() {
    let Some(pg) = Postgres::start() else { return };
    let url = fresh_database(&pg).await;
    let ca = TestCa::start().await.unwrap();
    let limits = RateLimits {
        certificates_per_domain: Some(Limit::new(20, Duration::from_secs(3600))),
        ..RateLimits::none()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for node in 0..4 {
        let store = PostgresStore::connect(&url).await.unwrap();
        let issuer = Issuer::builder(ca.client().await.unwrap(), store)
            .solver(Arc::new(Http01Solver::unserved()))
            .rate_limits(limits.clone())
            .build();
        for i in 0..10 {
            let issuer = issuer.clone();
            tasks.spawn(async move {
                issuer
                    .ensure(
                        &[format!("p{node}-{i}.ledger.test")],
                        &EnsureOptions::default(),
                    )
                    .await
            });
        }
    }
    let (mut issued, mut refused) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(_) => issued += 1,
            Err(e) => {
                assert!(
                    matches!(e.class(), ErrorClass::RateLimited { local: true, .. }),
                    "{e}"
                );
                let retry_at = e.retry_at().expect("a refusal says when");
                assert!(retry_at > std::time::SystemTime::now());
                refused += 1;
            }
        }
    }
    let orders = ca
        .ledger()
        .requests
        .get(&Endpoint::NewOrder)
        .copied()
        .unwrap_or(0);
    assert_eq!((issued, refused, orders), (20, 20, 20));
}

/// The partition: the first holder's link to PostgreSQL blackholes right
/// after its challenges are answered, for longer than the lease TTL;
/// another node takes the lease and completes; when the link heals the
/// first holder does not finalize. One certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_holder_does_not_finalize_after_another_took_over() {
    let Some(pg) = Postgres::start() else { return };
    let url = fresh_database(&pg).await;
    PostgresStore::connect(&url).await.unwrap(); // schema
    let ca = TestCa::start().await.unwrap();
    let proxy = Arc::new(TcpProxy::start(pg.addr()));
    let proxied = url.replace(&format!(":{}/", pg.port()), &format!(":{}/", proxy.port()));
    let cut = Arc::new(tokio::sync::Notify::new());
    let first = {
        let store = PostgresStore::builder(proxied)
            .operation_timeout(Duration::from_millis(500))
            .retry_for(Duration::from_secs(8))
            .open()
            .await
            .unwrap();
        let (proxy, cut) = (Arc::clone(&proxy), Arc::clone(&cut));
        Issuer::builder(ca.client().await.unwrap(), store)
            .solver(Arc::new(Http01Solver::unserved()))
            .lease_ttl(Duration::from_secs(2))
            .on_step(move |_, step| {
                if step == IssuerStep::ChallengesAnswered {
                    proxy.partition();
                    cut.notify_one();
                }
            })
            .build()
    };
    let second = issuer_on(
        ca.client().await.unwrap(),
        PostgresStore::connect(&url).await.unwrap(),
        Duration::from_secs(30),
    );
    let names = ["partition.test"];
    let holder = tokio::spawn({
        let first = first.clone();
        async move { first.ensure(&names, &EnsureOptions::default()).await }
    });
    cut.notified().await;
    // Past the first holder's TTL (judged by the database's clock).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let taken_over = second
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    proxy.heal();
    let outcome = holder.await.unwrap();
    match &outcome {
        Err(Error::LeaseLost { .. }) => {}
        // It may also have found the other node's certificate on retry.
        Ok(e) => assert_eq!(e.certificate.serial, taken_over.certificate.serial),
        Err(other) => panic!("the partitioned holder failed otherwise: {other}"),
    }
    let ledger = ca.ledger();
    assert_eq!(ledger.certificates.len(), 1, "{outcome:?}");
    assert_eq!(ledger.requests.get(&Endpoint::Finalize).copied(), Some(1));
}

/// A fleet example process, its stdout piped.
fn fleet(ca: &TestCa, root: &std::path::Path, store: &str, extra: &[&str]) -> std::process::Child {
    Command::new(crate::examples::example("fleet"))
        .args(["--directory", &ca.directory_url(), "--root-ca"])
        .arg(root)
        .args(["--store", store])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the fleet example")
}

fn summary(child: std::process::Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The paused holder: a process stopped with SIGSTOP just before finalize,
/// past its TTL, while another process takes the set over and completes;
/// resumed, it does not finalize. One certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_does_not_finalize_after_another_took_over() {
    let Some(pg) = Postgres::start() else { return };
    let url = fresh_database(&pg).await;
    let ca = TestCa::start().await.unwrap();
    let dir = crate::issuer::temp_store("pg-paused");
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.join("root.pem");
    std::fs::write(&root, ca.root_pem()).unwrap();
    let one = ["--sets", "1", "--prefix", "paused", "--lease-ttl", "2"];
    let mut paused = fleet(
        &ca,
        &root,
        &url,
        &[&one[..], &["--stop-before-finalize"]].concat(),
    );
    let mut lines = BufReader::new(paused.stdout.take().unwrap()).lines();
    let line = tokio::task::spawn_blocking(move || (lines.next(), lines))
        .await
        .unwrap();
    let (first, rest) = line;
    assert!(
        first
            .unwrap()
            .unwrap()
            .starts_with("stopping before finalize")
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let other = summary(fleet(&ca, &root, &url, &one));
    // It takes the set over (resuming the paused holder's order, which the
    // shared journal names) and completes it.
    assert_eq!(other["ensured"], 1, "{other}");
    assert_eq!(other["stored"], 0, "{other}");
    Command::new("kill")
        .args(["-CONT", &paused.id().to_string()])
        .status()
        .unwrap();
    let status = paused.wait().unwrap();
    assert!(status.success());
    let resumed: serde_json::Value =
        serde_json::from_str(&rest.map(|l| l.unwrap()).last().unwrap()).unwrap();
    assert_eq!(
        resumed["issued"], 0,
        "the paused holder did not issue: {resumed}"
    );
    assert_eq!(
        resumed["stored"], 1,
        "it found the other's certificate: {resumed}"
    );
    assert!(
        resumed["retries"]["lease_lost"].as_u64().unwrap_or(0) >= 1,
        "{resumed}"
    );
    let ledger = ca.ledger();
    assert_eq!(ledger.certificates.len(), 1);
    assert_eq!(ledger.requests.get(&Endpoint::Finalize).copied(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The fleet (reduced for CI: 4 processes x 300 sets, 50 in flight each;
/// `STURDY_FLEET_SETS=1000` for the acceptance's size):
/// a random process is SIGKILLed and restarted every 0.4 s, and PostgreSQL
/// is restarted once. At the end every set has exactly one certificate at
/// the CA and in the store, with its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_with_kills_and_a_database_restart_issues_each_set_once() {
    let sets_wanted: usize = std::env::var("STURDY_FLEET_SETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let sets_wanted = sets_wanted.max(1);
    let Some(pg) = Postgres::start() else { return };
    let url = fresh_database(&pg).await;
    let ca = TestCa::start().await.unwrap();
    let dir = crate::issuer::temp_store("pg-fleet");
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.join("root.pem");
    std::fs::write(&root, ca.root_pem()).unwrap();
    let sets = sets_wanted.to_string();
    let start = |seed: u64| {
        let seed = seed.to_string();
        fleet(
            &ca,
            &root,
            &url,
            &[
                "--sets",
                &sets,
                "--concurrency",
                "50",
                "--seed",
                &seed,
                "--lease-ttl",
                "5",
                "--db-timeout-ms",
                "3000",
            ],
        )
    };
    let mut nodes: Vec<std::process::Child> = (1..=4).map(start).collect();
    let mut seed = 10;
    let mut kills = 0;
    let mut restarted_db = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(240 + sets_wanted as u64 / 2);
    loop {
        // Often enough that the faults land while the fleet still works
        // (it issues 300 sets in a few seconds since polling learned the
        // CA's pace).
        tokio::time::sleep(Duration::from_millis(400)).await;
        let running: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].try_wait().unwrap().is_none())
            .collect();
        if running.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fleet did not finish"
        );
        if kills == 3 && !restarted_db {
            pg.restart();
            restarted_db = true;
        } else if kills < 6 {
            let victim = running[seed as usize % running.len()];
            nodes[victim].kill().unwrap();
            let _ = nodes[victim].wait();
            seed += 1;
            nodes[victim] = start(seed);
            kills += 1;
        }
    }
    for node in nodes {
        let s = summary(node);
        eprintln!("fleet node: {s}");
        assert_eq!(s["failed"], 0, "{s}");
        assert_eq!(s["ensured"], sets_wanted, "{s}");
    }
    assert!(
        kills >= 3 && restarted_db,
        "the faults happened: {kills} kills"
    );
    let ledger = ca.ledger();
    let mut per_set = std::collections::BTreeMap::<String, usize>::new();
    for cert in &ledger.certificates {
        let names: Vec<&str> = cert.identifiers.iter().map(|i| i.value.as_str()).collect();
        *per_set.entry(names.join(",")).or_default() += 1;
    }
    assert_eq!(per_set.len(), sets_wanted);
    assert!(
        per_set.values().all(|&n| n == 1),
        "a set issued twice: {per_set:?}"
    );
    let store = PostgresStore::connect(&url).await.unwrap();
    let listed = store.list_certificates(&ca.directory_url()).await.unwrap();
    assert_eq!(listed.len(), sets_wanted);
    for key in &listed {
        let cert = store.load_certificate(key).await.unwrap().unwrap();
        assert!(cert.key_pem.contains("PRIVATE KEY"));
        let cas = ledger
            .certificates
            .iter()
            .filter(|c| c.serial == cert.serial)
            .count();
        assert_eq!(cas, 1, "the stored certificate is the CA's");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The ledger acceptance with real processes: 4 `examples/fleet`
/// processes issuing 10 distinct names each under one registered domain,
/// each with a local limit of 20 certificates per hour for it: exactly 20
/// orders reach the CA between them, the other 20 sets are refused locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_never_spend_more_than_the_shared_ledger_allows() {
    let Some(pg) = Postgres::start() else { return };
    let url = fresh_database(&pg).await;
    let ca = TestCa::start().await.unwrap();
    let dir = crate::issuer::temp_store("pg-ledger-processes");
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.join("root.pem");
    std::fs::write(&root, ca.root_pem()).unwrap();
    let limits = dir.join("limits.json");
    let twenty = RateLimits {
        certificates_per_domain: Some(Limit::new(20, Duration::from_secs(3600))),
        ..RateLimits::none()
    };
    std::fs::write(&limits, serde_json::to_string(&twenty).unwrap()).unwrap();
    let limits = limits.to_string_lossy().into_owned();
    let nodes: Vec<_> = (0..4)
        .map(|k| {
            let prefix = format!("p{k}-");
            fleet(
                &ca,
                &root,
                &url,
                &[
                    "--sets",
                    "10",
                    "--prefix",
                    &prefix,
                    "--domain",
                    "ledger.test",
                    "--rate-limits",
                    &limits,
                ],
            )
        })
        .collect();
    let (mut issued, mut refused) = (0, 0);
    for node in nodes {
        let s = summary(node);
        assert_eq!(s["failed"], 0, "{s}");
        issued += s["issued"].as_u64().unwrap();
        refused += s["refused"].as_u64().unwrap();
    }
    let orders = ca
        .ledger()
        .requests
        .get(&Endpoint::NewOrder)
        .copied()
        .unwrap_or(0);
    assert_eq!((issued, refused, orders), (20, 20, 20));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 32: the ledger split in entries. A database whose ledger is one
/// document per CA (schema 6) is migrated into one row per entry: its
/// buckets keep their keys and levels, its remembered 429s become one
/// entry per account and scope, so an issuer after the upgrade refuses
/// what the old ledger would have refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_document_is_split_into_entries_by_the_migration() {
    let Some(pg) = Postgres::start() else { return };
    let url = fresh_database(&pg).await;
    let ca = TestCa::start().await.unwrap();
    drop(PostgresStore::connect(&url).await.unwrap());
    // Back to schema 6, holding a ledger document as 6 wrote it: the
    // account's new orders spent, and a 429 remembered for one set.
    let db = sql(&url).await;
    let account = "https://ca.example/acct/legacy";
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let document = serde_json::json!({
        "buckets": {format!("orders:{account}"): {"tokens": 0.0, "at_ms": now_ms}},
        "blocks": [{
            "account": account,
            "key": "set:blocked.example",
            "retry_at_ms": now_ms + 3_600_000,
            "reason": "too many certificates (remembered)",
        }],
    });
    db.batch_execute(
        "DROP TABLE sturdy_ledger_entries; DELETE FROM sturdy_schema_version WHERE version = 7;",
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO sturdy_ledgers (directory, state) VALUES ($1, $2)",
        &[&ca.directory_url(), &document],
    )
    .await
    .unwrap();
    let store = PostgresStore::connect(&url).await.unwrap();
    let entries = store
        .load_ledger_entries(&ca.directory_url(), None)
        .await
        .unwrap();
    assert_eq!(
        entries.get(&format!("orders:{account}")),
        Some(&serde_json::json!({"tokens": 0.0, "at_ms": now_ms}))
    );
    let block = sturdy_acme::store::ledger::block_key(account, "set:blocked.example");
    let blocks = entries
        .get(&block)
        .and_then(|v| v.as_array())
        .expect("the 429 kept");
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0]["reason"], "too many certificates (remembered)");
    assert_eq!(entries.len(), 2, "{entries:?}");
}
