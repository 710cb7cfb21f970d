//! Issue 27: PostgresStore where it meets the rest of the world, against a
//! real PostgreSQL server: a database whose clock is off from the node's
//! (libfaketime on the server), and a COMMIT answered late.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::{RateLimitRecord, Store};
use sturdy_acme::{
    CertificateSource, Endpoint, EnsureOptions, Error, Issuer, IssuerStep, StoreError,
};
use sturdy_acme_postgres::PostgresStore;
use sturdy_acme_testca::TestCa;

use crate::common::postgres::Postgres;
use crate::common::postgres::fresh_database;
use crate::postgres_store::sql;

/// The database's clock against the node's: 5 minutes and an hour, each
/// way (positive: the database is ahead, i.e. the node is behind).
const OFFSETS: [i64; 4] = [300, -300, 3600, -3600];

/// A server whose clock is `offset` seconds off from ours, a fresh database
/// on it, and proof that the offset is real (so a test cannot pass on an
/// unskewed server).
async fn skewed(offset: i64) -> Option<(Postgres, String)> {
    let pg = Postgres::start_with_clock_offset(offset)?;
    let url = fresh_database(&pg).await;
    let db_now: f64 = sql(&url)
        .await
        .query_one("SELECT extract(epoch FROM now())::float8", &[])
        .await
        .unwrap()
        .get(0);
    let ours = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let seen = db_now - ours;
    println!("database clock offset {offset:+} s: measured {seen:+.1} s");
    assert!(
        (seen - offset as f64).abs() < 30.0,
        "the server's clock is {seen:+.1} s off, not {offset:+} s"
    );
    Some((pg, url))
}

/// Issue 27, defect 2: a node whose clock is 5 minutes or an hour ahead of
/// (or behind) the database issues as usual. Before, a node ahead took
/// every lease for expired ("it expired before it was renewed").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_off_the_databases_clock_keeps_its_lease() {
    let ca = TestCa::start().await.unwrap();
    for offset in OFFSETS {
        let Some((_pg, url)) = skewed(offset).await else {
            return;
        };
        let issuer = Issuer::builder(
            ca.client().await.unwrap(),
            PostgresStore::connect(&url).await.unwrap(),
        )
        .solver(Arc::new(Http01Solver::unserved()))
        .lease_ttl(Duration::from_secs(30))
        .build();
        let name = format!("skew{}.clock.test", offset.unsigned_abs());
        let name = if offset < 0 {
            format!("behind-{name}")
        } else {
            name
        };
        let ensured = issuer
            .ensure(&[name.as_str()], &EnsureOptions::default())
            .await
            .unwrap_or_else(|e| panic!("database {offset:+} s: {e}"));
        assert_eq!(ensured.source, CertificateSource::New, "{offset:+} s");
    }
}

/// Issue 27, defect 2, the other way: an answer that arrives after the
/// lease expired does not count, however far the node's clock is from the
/// database's. The fenced journal write before finalize is held up (a
/// session holds the lease row locked) until well past the lease's TTL;
/// the write then succeeds (PostgreSQL judged the lease at the statement's
/// start), but its answer comes too late: the issuance stops with
/// `LeaseLost` and never finalizes. Before, a node behind the database
/// took the lease for valid for as long as it was behind (an hour).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_after_expiry_does_not_count_however_the_clocks_differ() {
    let ca = TestCa::start().await.unwrap();
    for offset in OFFSETS {
        let Some((_pg, url)) = skewed(offset).await else {
            return;
        };
        let blocker = Arc::new(sql(&url).await);
        let locked = Arc::new(tokio::sync::Notify::new());
        let store = PostgresStore::builder(url.clone())
            // The held-up write is waited for, not abandoned.
            .operation_timeout(Duration::from_secs(30))
            .open()
            .await
            .unwrap();
        let issuer = {
            let (blocker, locked) = (Arc::clone(&blocker), Arc::clone(&locked));
            Issuer::builder(ca.client().await.unwrap(), store)
                .solver(Arc::new(Http01Solver::unserved()))
                .lease_ttl(Duration::from_secs(2))
                .on_step(move |_, step| {
                    if step != IssuerStep::ChallengesAnswered {
                        return;
                    }
                    // Locked before the issuer goes on to its next write.
                    tokio::task::block_in_place(|| {
                        tokio::runtime::Handle::current().block_on(async {
                            blocker
                                .batch_execute(
                                    "BEGIN; SELECT 1 FROM sturdy_leases \
                                     WHERE name LIKE 'cert-%' FOR UPDATE",
                                )
                                .await
                                .unwrap();
                        })
                    });
                    locked.notify_one();
                })
                .build()
        };
        let name = format!("late{}-{}.clock.test", offset.unsigned_abs(), offset < 0);
        let finalized_before = ca.ledger().requests_to(Endpoint::Finalize);
        let task = tokio::spawn({
            let name = name.clone();
            async move { issuer.ensure(&[name], &EnsureOptions::default()).await }
        });
        tokio::time::timeout(Duration::from_secs(60), locked.notified())
            .await
            .unwrap_or_else(|_| {
                panic!("database {offset:+} s: the issuance never answered its challenges")
            });
        // Twice the TTL: the lease expires (its renewal is held up too).
        tokio::time::sleep(Duration::from_secs(4)).await;
        blocker.batch_execute("COMMIT").await.unwrap();
        let outcome = task.await.unwrap();
        assert!(
            matches!(outcome, Err(Error::LeaseLost { .. })),
            "database {offset:+} s: {outcome:?}"
        );
        assert_eq!(
            ca.ledger().requests_to(Endpoint::Finalize),
            finalized_before,
            "database {offset:+} s: finalized after its lease expired"
        );
        assert_eq!(ca.ledger().issued_for(&[name.as_str()]), 0);
    }
}

/// The ledger's spend count at `directory` (0: none yet).
async fn spent(store: &PostgresStore, directory: &str) -> u64 {
    store
        .load_ledger(directory)
        .await
        .unwrap()
        .and_then(|r| r.state["spent"].as_u64())
        .unwrap_or(0)
}

/// Issue 27, defect 7: a COMMIT that succeeds but answers after the
/// store's per-attempt timeout (a deferred constraint trigger sleeps 3 s
/// in it, once; the timeout is 1 s) is not retried as a transient failure:
/// the store reads the outcome back, recognises its own request, and the
/// ledger is spent exactly once; the caller sees the applied run's result.
/// Before, the update ran again once the first COMMIT was through, and
/// spent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_answered_late_spends_the_ledger_once() {
    const DIR: &str = "https://ca.example/late-commit";
    let Some(pg) = Postgres::start() else { return };
    let url = fresh_database(&pg).await;
    let store = PostgresStore::builder(url.clone())
        .operation_timeout(Duration::from_secs(1))
        .open()
        .await
        .unwrap();
    let db = sql(&url).await;
    db.batch_execute(
        "CREATE TABLE slow_once (n int);
         CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF EXISTS (SELECT 1 FROM slow_once) THEN
             DELETE FROM slow_once;
             PERFORM pg_sleep(3);
           END IF;
           RETURN NULL;
         END $$;
         CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE ON sturdy_ledgers
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();",
    )
    .await
    .unwrap();
    let spend = |store: PostgresStore| async move {
        let mut seen = Vec::new();
        let result = store
            .update_ledger(DIR, &mut |current| {
                let n = current.and_then(|r| r.state["spent"].as_u64()).unwrap_or(0);
                seen.push(n + 1);
                Some(RateLimitRecord {
                    state: serde_json::json!({ "spent": n + 1 }),
                })
            })
            .await;
        (result, seen)
    };
    // A quick one first: the trigger is harmless without its row.
    let (quick, _) = spend(store.clone()).await;
    quick.unwrap();
    assert_eq!(spent(&store, DIR).await, 1);

    db.batch_execute("INSERT INTO slow_once VALUES (1)")
        .await
        .unwrap();
    let retries_before = store.stats().retries;
    let started = std::time::Instant::now();
    let (result, seen) = spend(store.clone()).await;
    println!(
        "late COMMIT: {:?} after {:?}, update run {} time(s) (values {seen:?}), {} store retries",
        result.as_ref().map(drop),
        started.elapsed(),
        seen.len(),
        store.stats().retries - retries_before
    );
    let slow_left: i64 = db
        .query_one("SELECT count(*) FROM slow_once", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(slow_left, 0, "the slow COMMIT happened");
    assert_eq!(spent(&store, DIR).await, 2, "spent exactly once more");
    match result {
        // Read back: the applied run's result is the caller's.
        Ok(()) => assert_eq!(seen.last(), Some(&2), "{seen:?}"),
        Err(StoreError::CommitUnknown { .. }) => {}
        Err(other) => panic!("{other}"),
    }
}

/// An http-01 solver that takes a while to present: an issuance that stays
/// in flight long enough for a revoke to come in.
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

/// Issue 27, defect 8: one `Issuer` revoking a set while its own `ensure`
/// of that set is renewing it: the revoke waits for the lease (the same
/// holder is refused like any other) and then revokes the certificate the
/// ensure stored. Before, the revoke re-took its own holder's lease, revoked
/// the old certificate under the renewal's feet, and the renewal lost its
/// lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_waits_for_an_ensure_of_the_same_issuer() {
    let Some(pg) = Postgres::start() else { return };
    let url = fresh_database(&pg).await;
    let ca = TestCa::start().await.unwrap();
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let in_flight = Arc::new(tokio::sync::Notify::new());
    let issuer = {
        let (armed, in_flight) = (Arc::clone(&armed), Arc::clone(&in_flight));
        Issuer::builder(
            ca.client().await.unwrap(),
            PostgresStore::connect(&url).await.unwrap(),
        )
        .solver(Arc::new(SlowSolver(
            Http01Solver::unserved(),
            Duration::from_millis(1500),
        )))
        .on_step(move |_, step| {
            if step == IssuerStep::OrderCreated && armed.load(std::sync::atomic::Ordering::SeqCst) {
                in_flight.notify_one();
            }
        })
        .build()
    };
    let names = ["race.revoke.test"];
    let first = issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let renewing = tokio::spawn({
        let issuer = issuer.clone();
        async move {
            let force = EnsureOptions::default().with_force_new(true);
            issuer.ensure(&names, &force).await
        }
    });
    in_flight.notified().await;
    let revoked = issuer
        .revoke(&names, None, sturdy_acme::RevokeWith::AccountKey)
        .await
        .unwrap();
    let renewed = renewing.await.unwrap().expect("the renewal kept its lease");
    assert_ne!(renewed.certificate.serial, first.certificate.serial);
    assert_eq!(
        revoked.serial, renewed.certificate.serial,
        "the revoke waited and revoked what the renewal stored"
    );
    let ledger = ca.ledger();
    let at_ca = |serial: &str| {
        ledger
            .certificates
            .iter()
            .find(|c| c.serial.eq_ignore_ascii_case(serial))
            .unwrap_or_else(|| panic!("{serial} at the CA"))
            .revoked
    };
    assert!(at_ca(&renewed.certificate.serial).is_some());
    assert_eq!(at_ca(&first.certificate.serial), None);
}

/// Issue 27, defects 7 and 8 together: an acquisition whose answer is lost
/// (its statement commits, slowly, after the store's per-attempt timeout)
/// is retried and recognised as this very call (its claim), so the lease
/// is taken rather than refused to its own holder until it expires; any
/// other acquisition by the same holder is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquisition_whose_answer_was_lost_takes_its_own_lease() {
    let Some(pg) = Postgres::start() else { return };
    let url = fresh_database(&pg).await;
    let store = PostgresStore::builder(url.clone())
        .operation_timeout(Duration::from_secs(1))
        .open()
        .await
        .unwrap();
    let db = sql(&url).await;
    db.batch_execute(
        "CREATE TABLE slow_once (n int);
         INSERT INTO slow_once VALUES (1);
         CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF EXISTS (SELECT 1 FROM slow_once) THEN
             DELETE FROM slow_once;
             PERFORM pg_sleep(3);
           END IF;
           RETURN NULL;
         END $$;
         CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT OR UPDATE ON sturdy_leases
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();",
    )
    .await
    .unwrap();
    let ttl = Duration::from_secs(60);
    let retries = store.stats().retries;
    let lease = store
        .acquire_lease("lost-answer", "holder-a", ttl)
        .await
        .unwrap();
    assert!(store.stats().retries > retries, "the first answer was lost");
    store.check_lease(&lease).await.unwrap();
    assert!(lease.validity.is_some_and(|v| !v.expired()));
    assert!(matches!(
        store.acquire_lease("lost-answer", "holder-a", ttl).await,
        Err(StoreError::LeaseHeld { .. })
    ));
}
