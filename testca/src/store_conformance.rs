//! The store contract as checks a team runs against its own [`Store`]
//! (the crate runs them against [`FileStore`](sturdy_acme::store::FileStore) and
//! `Arc<dyn DynStore>`).

use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use sturdy_acme::Identifier;
use sturdy_acme::StoreError;
use sturdy_acme::store::{
    ChangeKind, DirectoryRecord, IdentifierSetKey, Journal, JournalStep, RateLimitRecord, Store,
    StoredAccount, StoredCertificate,
};

use crate::conformance::{ConformanceFailure, expect, fail, ok};

/// A lease just acquired or renewed for `ttl` carries its validity, a time
/// left between nothing and the TTL (rounded up to the next second at most),
/// not yet expired.
fn check_validity(
    check: &'static str,
    lease: &sturdy_acme::store::Lease,
    ttl: Duration,
) -> Result<(), ConformanceFailure> {
    let Some(v) = lease.validity else {
        return Err(fail(check, "Lease::validity is None"));
    };
    expect(
        check,
        !v.expired() && v.remaining() <= ttl + Duration::from_secs(1),
        || format!("{v:?} for a TTL of {ttl:?}"),
    )
}

/// A real certificate and its key, so stores that look inside records can.
fn certificate(names: &[&str]) -> StoredCertificate {
    let key = rcgen::KeyPair::generate().expect("P-256 key");
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("names");
    let cert = params.self_signed(&key).expect("self-signed certificate");
    let now = SystemTime::now();
    StoredCertificate {
        identifiers: names
            .iter()
            .map(|n| Identifier::dns(n).expect("name"))
            .collect(),
        chain_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
        url: format!("https://ca.example/cert/{}", names[0]),
        not_before: now,
        not_after: now + Duration::from_secs(90 * 24 * 3600),
        serial: format!(
            "{:x}",
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ),
        revoked: None,
        renewal: None,
        // Kept by every backend (a spec that changes profile is renewed).
        profile: sturdy_acme::store::AskedProfile::Named("tlsserver".into()),
    }
}

fn journal(key: &IdentifierSetKey, step: JournalStep) -> Journal {
    let ca = key
        .ca()
        .cloned()
        .unwrap_or_else(|| sturdy_acme::store::CaScope {
            directory: String::new(),
            account: String::new(),
        });
    Journal {
        step,
        order_url: Some("https://ca.example/order/1".into()),
        key_pem: Some(Zeroizing::new("-----BEGIN PRIVATE KEY-----\n...".into())),
        order_attempts: 1,
        ..Journal::new(
            ca.directory,
            ca.account,
            key.identifiers().to_vec(),
            1_700_000_000,
        )
    }
}

/// Runs every check of the store contract (see [`Store`]) against `store`,
/// which must be empty and not shared with anything else while it runs;
/// the first failure is returned. Leases are exercised with names starting
/// `conformance-` and TTLs of a few seconds.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sturdy_acme::store::FileStore;
/// use sturdy_acme_testca::check_store;
///
/// let dir = std::env::temp_dir().join(format!("sturdy-doc-conformance-{}", std::process::id()));
/// check_store(&FileStore::open(&dir)?).await?;
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
pub async fn check_store<S: Store>(store: &S) -> Result<(), ConformanceFailure> {
    const DIR_A: &str = "https://ca-a.example/dir";
    const DIR_B: &str = "https://ca-b.example/dir";
    let ids = [
        Identifier::dns("conformance.example").expect("name"),
        Identifier::dns("www.conformance.example").expect("name"),
    ];
    let key_a = IdentifierSetKey::for_account(DIR_A, "https://ca-a.example/acct/1", &ids);
    let key_b = IdentifierSetKey::for_account(DIR_B, "https://ca-b.example/acct/1", &ids);

    // Absence.
    let c = "an empty store has nothing";
    expect(c, ok(c, store.load_account(DIR_A).await)?.is_none(), || {
        "an account".into()
    })?;
    expect(
        c,
        ok(c, store.load_certificate(&key_a).await)?.is_none(),
        || "a certificate".into(),
    )?;
    expect(
        c,
        ok(c, store.load_journal(&key_a).await)?.is_none(),
        || "a journal".into(),
    )?;
    expect(c, ok(c, store.load_ledger(DIR_A).await)?.is_none(), || {
        "a ledger".into()
    })?;

    // Accounts, per directory.
    let c = "an account reads back as written, per directory";
    let account = StoredAccount {
        url: "https://ca-a.example/acct/1".into(),
        key_pem: Zeroizing::new("-----BEGIN PRIVATE KEY-----\naccount".into()),
        next_key_pem: None,
    };
    ok(c, store.save_account(DIR_A, &account).await)?;
    let read = ok(c, store.load_account(DIR_A).await)?;
    expect(
        c,
        read.as_ref()
            .is_some_and(|r| r.url == account.url && r.key_pem == account.key_pem),
        || format!("{read:?}"),
    )?;
    expect(c, ok(c, store.load_account(DIR_B).await)?.is_none(), || {
        "another directory's account".into()
    })?;
    let c = "an account's pending key rollover reads back, and its end";
    let rolling = StoredAccount {
        next_key_pem: Some(Zeroizing::new("-----BEGIN PRIVATE KEY-----\nnext".into())),
        ..account.clone()
    };
    ok(c, store.save_account(DIR_A, &rolling).await)?;
    let read = ok(c, store.load_account(DIR_A).await)?;
    expect(
        c,
        read.as_ref().is_some_and(|r| {
            r.next_key_pem == rolling.next_key_pem && r.key_pem == account.key_pem
        }),
        || format!("{read:?}"),
    )?;
    ok(c, store.save_account(DIR_A, &account).await)?;
    let read = ok(c, store.load_account(DIR_A).await)?;
    expect(
        c,
        read.as_ref().is_some_and(|r| r.next_key_pem.is_none()),
        || format!("{read:?}"),
    )?;

    // Certificates, per CA and account; replaced, not merged.
    let c = "a certificate reads back as written, and only for its CA";
    let first = certificate(&["conformance.example", "www.conformance.example"]);
    ok(c, store.save_certificate(&key_a, &first).await)?;
    let read =
        ok(c, store.load_certificate(&key_a).await)?.ok_or_else(|| fail(c, "nothing read back"))?;
    expect(
        c,
        read.serial == first.serial
            && read.chain_pem == first.chain_pem
            && read.key_pem == first.key_pem
            && read.url == first.url,
        || format!("read {read:?}"),
    )?;
    let secs = sturdy_acme::timestamp::to_unix;
    expect(c, secs(read.not_after) == secs(first.not_after), || {
        "not_after changed".into()
    })?;
    expect(
        c,
        ok(c, store.load_certificate(&key_b).await)?.is_none(),
        || "another CA's certificate".into(),
    )?;
    let c = "a saved certificate replaces the previous one";
    let second = certificate(&["conformance.example", "www.conformance.example"]);
    ok(c, store.save_certificate(&key_a, &second).await)?;
    let read = ok(c, store.load_certificate(&key_a).await)?;
    expect(
        c,
        read.as_ref()
            .is_some_and(|r| r.serial == second.serial && r.key_pem == second.key_pem),
        || format!("{read:?}"),
    )?;

    let c = "a revoked certificate reads back revoked";
    let revoked = StoredCertificate {
        revoked: Some(sturdy_acme::store::Revoked {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            reason: Some(4),
            found_in_crl: true,
        }),
        ..second.clone()
    };
    ok(c, store.save_certificate(&key_a, &revoked).await)?;
    let read = ok(c, store.load_certificate(&key_a).await)?;
    expect(
        c,
        read.as_ref().is_some_and(|r| r.revoked == revoked.revoked),
        || format!("{read:?}"),
    )?;
    let c = "certificates are listed per directory";
    let listed = ok(c, store.list_certificates(DIR_A).await)?;
    expect(c, listed == [key_a.clone()], || {
        format!("{DIR_A}: {listed:?}")
    })?;
    let listed = ok(c, store.list_certificates(DIR_B).await)?;
    expect(c, listed.is_empty(), || format!("{DIR_B}: {listed:?}"))?;

    // Journals.
    let c = "a journal reads back as written, step by step";
    for step in [
        JournalStep::Ordering,
        JournalStep::OrderCreated,
        JournalStep::Finalizing,
    ] {
        let j = journal(&key_a, step);
        ok(c, store.save_journal(&key_a, &j).await)?;
        let read = ok(c, store.load_journal(&key_a).await)?;
        expect(
            c,
            read.as_ref().is_some_and(|r| {
                r.step == step && r.order_url == j.order_url && r.key_pem == j.key_pem
            }),
            || format!("{read:?}"),
        )?;
    }
    expect(
        c,
        ok(c, store.load_journal(&key_b).await)?.is_none(),
        || "another CA's journal".into(),
    )?;
    let c = "a journal's last error, CAA methods and CA choice read back";
    let failed = Journal {
        last_error: Some(sturdy_acme::store::JournalError {
            at: 1_700_000_100,
            class: "caa".into(),
            message: "CAA recheck timed out".into(),
        }),
        caa_methods: [("*.a.example".to_owned(), vec!["dns-01".to_owned()])].into(),
        replaces_refused: None,
        chosen: Some(sturdy_acme::store::CaChoice {
            ca: "backup".into(),
            resumed: false,
            skipped: vec![sturdy_acme::store::SkippedCa {
                ca: "primary".into(),
                reason: sturdy_acme::store::SkipReason::RateLimited {
                    limit: "orders".into(),
                    until: 1_700_000_200,
                },
            }],
        }),
        ..journal(&key_a, JournalStep::Finalizing)
    };
    ok(c, store.save_journal(&key_a, &failed).await)?;
    let read = ok(c, store.load_journal(&key_a).await)?;
    expect(
        c,
        read.as_ref().is_some_and(|r| {
            r.last_error == failed.last_error
                && r.caa_methods == failed.caa_methods
                && r.chosen == failed.chosen
        }),
        || format!("{read:?}"),
    )?;
    let c = "in-flight journals are listed per directory";
    let listed = ok(c, store.list_journals(DIR_A).await)?;
    expect(c, listed == [key_a.clone()], || {
        format!("{DIR_A}: {listed:?}")
    })?;
    let listed = ok(c, store.list_journals(DIR_B).await)?;
    expect(c, listed.is_empty(), || format!("{DIR_B}: {listed:?}"))?;
    let c = "archiving a journal keeps the live one readable";
    ok(
        c,
        store
            .archive_journal(&key_a, &journal(&key_a, JournalStep::ChallengesAnswered))
            .await,
    )?;
    expect(
        c,
        ok(c, store.load_journal(&key_a).await)?.is_some_and(|r| r.step == JournalStep::Finalizing),
        || "the live journal changed".into(),
    )?;
    let c = "a deleted journal is gone";
    ok(c, store.delete_journal(&key_a).await)?;
    expect(
        c,
        ok(c, store.load_journal(&key_a).await)?.is_none(),
        || "still there".into(),
    )?;
    ok(
        "deleting a missing journal is not an error",
        store.delete_journal(&key_a).await,
    )?;
    let c = "a deleted journal is no longer listed";
    let listed = ok(c, store.list_journals(DIR_A).await)?;
    expect(c, listed.is_empty(), || format!("{listed:?}"))?;

    // The renewer's records.
    let c = "renewer records read back as written, replaced by id, per directory";
    expect(
        c,
        ok(c, store.list_managed(DIR_A).await)?.is_empty(),
        || "records in an empty store".into(),
    )?;
    let record = |id: &str, n: u64| sturdy_acme::store::ManagedRecord {
        id: id.to_owned(),
        value: serde_json::json!({ "names": [id], "n": n }),
    };
    ok(c, store.save_managed(DIR_A, &record("b.example", 1)).await)?;
    ok(c, store.save_managed(DIR_A, &record("a.example", 1)).await)?;
    ok(c, store.save_managed(DIR_A, &record("b.example", 2)).await)?;
    let mut listed = ok(c, store.list_managed(DIR_A).await)?;
    listed.sort_by(|x, y| x.id.cmp(&y.id));
    expect(
        c,
        listed == vec![record("a.example", 1), record("b.example", 2)],
        || format!("{listed:?}"),
    )?;
    expect(
        c,
        ok(c, store.list_managed(DIR_B).await)?.is_empty(),
        || "another directory's records".into(),
    )?;
    let c = "a deleted renewer record is gone, and deleting it again is no error";
    ok(c, store.delete_managed(DIR_A, "a.example").await)?;
    ok(c, store.delete_managed(DIR_A, "a.example").await)?;
    let listed = ok(c, store.list_managed(DIR_A).await)?;
    expect(c, listed == vec![record("b.example", 2)], || {
        format!("{listed:?}")
    })?;
    ok(c, store.delete_managed(DIR_A, "b.example").await)?;

    // The ledger.
    let c = "the rate-limit ledger reads back as written, per directory";
    let ledger = RateLimitRecord {
        state: serde_json::json!({"buckets": {"set:a": {"tokens": 3.5, "at_ms": 1}}}),
    };
    ok(c, store.save_ledger(DIR_A, &ledger).await)?;
    let read = ok(c, store.load_ledger(DIR_A).await)?;
    expect(
        c,
        read.as_ref().is_some_and(|r| r.state == ledger.state),
        || format!("{read:?}"),
    )?;
    expect(c, ok(c, store.load_ledger(DIR_B).await)?.is_none(), || {
        "another directory's ledger".into()
    })?;

    let c = "ledger updates are atomic: concurrent increments all count";
    let increment = || async {
        for _ in 0..5 {
            store
                .update_ledger(DIR_B, &mut |current| {
                    let n = current
                        .and_then(|r| r.state.get("n").and_then(serde_json::Value::as_u64))
                        .unwrap_or(0);
                    Some(RateLimitRecord {
                        state: serde_json::json!({ "n": n + 1 }),
                    })
                })
                .await?;
        }
        Ok::<(), StoreError>(())
    };
    let (a, b, d, e) = tokio::join!(increment(), increment(), increment(), increment());
    for r in [a, b, d, e] {
        ok(c, r)?;
    }
    let read = ok(c, store.load_ledger(DIR_B).await)?;
    expect(
        c,
        read.as_ref().and_then(|r| r.state.get("n")) == Some(&serde_json::json!(20)),
        || format!("20 increments left {read:?}"),
    )?;
    let c = "a ledger update that returns nothing changes nothing";
    let mut seen = None;
    ok(
        c,
        store
            .update_ledger(DIR_B, &mut |current| {
                seen = current.cloned();
                None
            })
            .await,
    )?;
    let after = ok(c, store.load_ledger(DIR_B).await)?;
    expect(c, seen == read && after == read, || {
        format!("saw {seen:?}, then {after:?}")
    })?;

    // The remembered directory.
    let c = "a remembered directory reads back as written, per directory, the last one kept";
    expect(
        c,
        ok(c, store.load_directory(DIR_A).await)?.is_none(),
        || "a directory before any was saved".into(),
    )?;
    let first = DirectoryRecord {
        document: r#"{"newNonce":"https://ca-a.example/nonce"}"#.into(),
        fetched_at: std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    };
    let second = DirectoryRecord {
        document: r#"{"newNonce":"https://ca-a.example/nonce2"}"#.into(),
        fetched_at: std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_600),
    };
    ok(c, store.save_directory(DIR_A, &first).await)?;
    ok(c, store.save_directory(DIR_A, &second).await)?;
    let read = ok(c, store.load_directory(DIR_A).await)?;
    expect(c, read.as_ref() == Some(&second), || format!("{read:?}"))?;
    expect(
        c,
        ok(c, store.load_directory(DIR_B).await)?.is_none(),
        || "another directory's document".into(),
    )?;

    // Leases: mutual exclusion and fencing.
    let ttl = Duration::from_secs(30);
    let c = "a held lease is refused to another holder";
    let a = ok(
        c,
        store.acquire_lease("conformance-1", "holder-a", ttl).await,
    )?;
    match store.acquire_lease("conformance-1", "holder-b", ttl).await {
        Err(StoreError::LeaseHeld { .. }) => {}
        other => return Err(fail(c, format!("holder-b got {other:?}"))),
    }
    let c = "a held lease is refused to its own holder too (the second acquisition waits)";
    match store.acquire_lease("conformance-1", "holder-a", ttl).await {
        Err(StoreError::LeaseHeld { .. }) => {}
        other => return Err(fail(c, format!("holder-a again got {other:?}"))),
    }
    let c = "an acquired lease says how long it is valid, by the store's clock";
    check_validity(c, &a, ttl)?;
    ok(
        "a current lease passes check_lease",
        store.check_lease(&a).await,
    )?;
    let c = "renewing keeps the fencing token";
    let renewed = ok(c, store.renew_lease(&a, ttl).await)?;
    expect(c, renewed.token == a.token, || {
        format!("{} became {}", a.token, renewed.token)
    })?;
    check_validity(
        "a renewed lease says how long it is valid, by the store's clock",
        &renewed,
        ttl,
    )?;
    let c = "fencing tokens only grow, across release";
    ok(c, store.release_lease(&renewed).await)?;
    let b = ok(
        c,
        store.acquire_lease("conformance-1", "holder-b", ttl).await,
    )?;
    expect(c, b.token > a.token, || {
        format!("{} after {}", b.token, a.token)
    })?;
    let c = "an older holder's lease fails check_lease with LeaseLost";
    match store.check_lease(&a).await {
        Err(StoreError::LeaseLost { .. }) => {}
        other => return Err(fail(c, format!("{other:?}"))),
    }
    let c = "an older holder cannot renew a lease taken over";
    match store.renew_lease(&a, ttl).await {
        Err(StoreError::LeaseHeld { .. } | StoreError::LeaseLost { .. }) => {}
        other => return Err(fail(c, format!("{other:?}"))),
    }
    let c = "a fenced journal write fails with LeaseLost for an older holder, and writes nothing";
    let stale = journal(&key_a, JournalStep::Finalizing);
    match store.save_journal_fenced(&key_a, &stale, &a).await {
        Err(StoreError::LeaseLost { .. }) => {}
        other => return Err(fail(c, format!("{other:?}"))),
    }
    expect(
        c,
        ok(c, store.load_journal(&key_a).await)?.is_none(),
        || "the stale holder's journal was written".into(),
    )?;
    let c = "a fenced journal write by the current holder is written";
    ok(c, store.save_journal_fenced(&key_a, &stale, &b).await)?;
    expect(
        c,
        ok(c, store.load_journal(&key_a).await)?.is_some_and(|j| j.step == JournalStep::Finalizing),
        || "not written".into(),
    )?;
    let c = "a fenced delete by an older holder fails with LeaseLost, and deletes nothing";
    match store.delete_journal_fenced(&key_a, &a).await {
        Err(StoreError::LeaseLost { .. }) => {}
        other => return Err(fail(c, format!("{other:?}"))),
    }
    expect(
        c,
        ok(c, store.load_journal(&key_a).await)?.is_some(),
        || "the stale holder deleted the journal".into(),
    )?;
    let c = "a fenced delete by the current holder deletes";
    ok(c, store.delete_journal_fenced(&key_a, &b).await)?;
    expect(
        c,
        ok(c, store.load_journal(&key_a).await)?.is_none(),
        || "still there".into(),
    )?;
    ok(c, store.release_lease(&b).await)?;
    let c = "an expired lease can be taken, and its old holder is fenced out";
    let expired = ok(
        c,
        store
            .acquire_lease("conformance-2", "holder-a", Duration::ZERO)
            .await,
    )?;
    expect(
        "a lease taken for no time is expired for its holder at once",
        expired.validity.is_some_and(|v| v.expired()),
        || format!("{:?}", expired.validity),
    )?;
    let taken = ok(
        c,
        store.acquire_lease("conformance-2", "holder-b", ttl).await,
    )?;
    expect(c, taken.token > expired.token, || {
        format!("{} after {}", taken.token, expired.token)
    })?;
    match store.check_lease(&expired).await {
        Err(StoreError::LeaseLost { .. }) => {}
        other => return Err(fail(c, format!("{other:?}"))),
    }
    ok(c, store.release_lease(&taken).await)?;
    check_feed(store).await?;
    crate::check_requests(store).await?;
    crate::check_validations(store).await?;
    crate::check_ledger_entries(store).await
}

/// The change feed's part of [`check_store`] (it runs last there), on its
/// own: a revision per change an edge serves, in order, none for
/// bookkeeping, pages that resume without losing a change, a wake-up, and
/// a snapshot. The store must not hold certificates for
/// `https://ca-feed.example/dir` yet.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// sturdy_acme_testca::check_feed(&sturdy_acme::store::MemoryStore::new()).await?;
/// # Ok(()) }
/// ```
pub async fn check_feed<S: Store>(store: &S) -> Result<(), ConformanceFailure> {
    const DIR: &str = "https://ca-feed.example/dir";
    let key = |name: &str| {
        IdentifierSetKey::for_account(
            DIR,
            "https://ca-feed.example/acct/1",
            &[Identifier::dns(name).expect("name")],
        )
    };
    let c = "the feed starts from a snapshot's revision";
    let start = ok(c, store.feed_snapshot().await)?;
    let page = ok(c, store.changes_since(start.revision, 100).await)?;
    expect(
        c,
        page.changes.is_empty() && page.head == start.revision,
        || format!("{page:?} after {}", start.revision),
    )?;

    let c = "each change an edge serves gets the next revision, bookkeeping none";
    let one = key("one.feed.example");
    let first = certificate(&["one.feed.example"]);
    ok(c, store.save_certificate(&one, &first).await)?;
    let rescheduled = StoredCertificate {
        renewal: Some(sturdy_acme::store::RenewalSchedule {
            window_start: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000)),
            window_end: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_086_400)),
            renew_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_100)),
            check_again_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            explanation_url: None,
            requested_early: false,
        }),
        ..first.clone()
    };
    ok(c, store.save_certificate(&one, &rescheduled).await)?;
    let revoked = StoredCertificate {
        revoked: Some(sturdy_acme::store::Revoked {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            reason: Some(4),
            found_in_crl: false,
        }),
        ..rescheduled.clone()
    };
    ok(c, store.save_certificate(&one, &revoked).await)?;
    let renewed = certificate(&["one.feed.example"]);
    ok(c, store.save_certificate(&one, &renewed).await)?;
    let other_chain = StoredCertificate {
        chain_pem: format!("{}{}", renewed.chain_pem, first.chain_pem),
        ..renewed.clone()
    };
    ok(c, store.save_certificate(&one, &other_chain).await)?;
    let page = ok(c, store.changes_since(start.revision, 100).await)?;
    let kinds: Vec<(ChangeKind, &str)> = page
        .changes
        .iter()
        .map(|ch| (ch.kind, ch.serial.as_str()))
        .collect();
    expect(
        c,
        kinds
            == [
                (ChangeKind::Issued, first.serial.as_str()),
                (ChangeKind::Revoked, first.serial.as_str()),
                (ChangeKind::Issued, renewed.serial.as_str()),
                (ChangeKind::Chain, renewed.serial.as_str()),
            ]
            && page.changes.iter().all(|ch| ch.key == one),
        || format!("{kinds:?}"),
    )?;
    let increasing = page
        .changes
        .windows(2)
        .all(|w| w[0].revision < w[1].revision);
    expect(
        c,
        increasing
            && page
                .changes
                .first()
                .is_some_and(|ch| ch.revision > start.revision)
            && page.changes.last().map(|ch| ch.revision) == Some(page.head),
        || format!("revisions {page:?}"),
    )?;

    let c = "concurrent saves each get a revision, none lost, and pages resume";
    let head = page.head;
    let names: Vec<String> = (0..8).map(|i| format!("c{i}.feed.example")).collect();
    let saves = names.iter().map(|n| {
        let k = key(n);
        let cert = certificate(&[n.as_str()]);
        async move { store.save_certificate(&k, &cert).await }
    });
    for r in futures_util::future::join_all(saves).await {
        ok(c, r)?;
    }
    let mut after = head;
    let mut seen = Vec::new();
    loop {
        let page = ok(c, store.changes_since(after, 3).await)?;
        expect(c, page.changes.len() <= 3, || format!("{page:?}"))?;
        let next = page.next_after(after, 3);
        seen.extend(page.changes);
        if next == after {
            break;
        }
        after = next;
    }
    let mut keys: Vec<IdentifierSetKey> = seen.iter().map(|ch| ch.key.clone()).collect();
    keys.sort();
    keys.dedup();
    expect(
        c,
        seen.len() == 8
            && keys.len() == 8
            && seen.windows(2).all(|w| w[0].revision < w[1].revision),
        || format!("{seen:?}"),
    )?;

    let c = "a waiting reader returns at its timeout with nothing new, and wakes on a change";
    let now = ok(
        c,
        store
            .wait_for_changes(after, Duration::from_millis(150))
            .await,
    )?;
    expect(c, now == after, || format!("head {now}, expected {after}"))?;
    let late = key("late.feed.example");
    let late_cert = certificate(&["late.feed.example"]);
    let waited = std::time::Instant::now();
    let (woke, saved) = tokio::join!(
        store.wait_for_changes(after, Duration::from_secs(10)),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            store.save_certificate(&late, &late_cert).await
        }
    );
    ok(c, saved)?;
    let woke = ok(c, woke)?;
    expect(
        c,
        woke > after && waited.elapsed() < Duration::from_secs(9),
        || format!("head {woke} after {:?}", waited.elapsed()),
    )?;

    let c = "a snapshot lists every certificate at its revision";
    let snapshot = ok(c, store.feed_snapshot().await)?;
    expect(
        c,
        snapshot.revision >= woke && snapshot.keys.contains(&one) && snapshot.keys.contains(&late),
        || format!("{snapshot:?}"),
    )?;
    Ok(())
}
