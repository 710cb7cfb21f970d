//! What edges need from the store besides certificates: on-demand
//! requests ([`check_requests`]) and tls-alpn-01 validation certificates
//! ([`check_validations`]); [`check_store`](crate::check_store) runs both.

use std::time::SystemTime;

use sturdy_acme::StoreError;
use sturdy_acme::store::request::request_key;
use sturdy_acme::store::validation::validation_key;
use sturdy_acme::store::{ChangeKind, Store, ValidationCertificate};

use crate::conformance::{ConformanceFailure, expect, fail, ok};

/// On-demand requests on their own: one pending request per name however
/// many ask at once (also in another case or with a trailing dot), listed
/// with who asked first, a [`ChangeKind::Requested`] change for each
/// request recorded (and none for a repeat), names that are not one
/// host's DNS name refused as [`StoreError::InvalidRequest`], and a
/// deleted request that can be made again.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// sturdy_acme_testca::check_requests(&sturdy_acme::store::MemoryStore::new()).await?;
/// # Ok(()) }
/// ```
pub async fn check_requests<S: Store>(store: &S) -> Result<(), ConformanceFailure> {
    // Names of their own, so a store that already holds requests (a
    // database a test ran against before) is checked as well.
    let run = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let name = |i: usize| format!("od{i}-{run}.conformance.example");
    let ours = |n: &str| n.ends_with(&format!("-{run}.conformance.example"));

    let c = "a request is recorded once per name, with its change";
    let before = ok(c, store.feed_snapshot().await)?.revision;
    let first = name(0);
    let recorded = ok(c, store.request_certificate(&first, "edge-a").await)?;
    expect(c, recorded, || "the first request was not recorded".into())?;
    let again = ok(
        c,
        store
            .request_certificate(&format!("{}.", first.to_uppercase()), "edge-b")
            .await,
    )?;
    expect(c, !again, || {
        "the same name in capitals with a trailing dot was recorded again".into()
    })?;
    let pending: Vec<_> = ok(c, store.list_requests().await)?
        .into_iter()
        .filter(|r| ours(&r.name))
        .collect();
    expect(
        c,
        pending.len() == 1 && pending[0].name == first && pending[0].edge == "edge-a",
        || format!("{pending:?}"),
    )?;
    let page = ok(c, store.changes_since(before, 1000).await)?;
    let requested: Vec<_> = page
        .changes
        .iter()
        .filter(|ch| ch.kind == ChangeKind::Requested)
        .collect();
    let key = request_key(&first).map_err(|e| fail(c, e.to_string()))?;
    expect(
        c,
        requested.len() == 1 && requested[0].key == key && requested[0].serial.is_empty(),
        || format!("the changes after {before}: {:?}", page.changes),
    )?;

    let c = "requests made at once record each name once";
    let asks = (0..12).map(|i| {
        let n = name(1 + i % 3);
        async move { store.request_certificate(&n, &format!("edge-{i}")).await }
    });
    let mut recorded = 0;
    for r in futures_util::future::join_all(asks).await {
        recorded += usize::from(ok(c, r)?);
    }
    expect(c, recorded == 3, || {
        format!("{recorded} of 12 requests for 3 names were recorded")
    })?;
    let pending = ok(c, store.list_requests().await)?
        .into_iter()
        .filter(|r| ours(&r.name))
        .count();
    expect(c, pending == 4, || format!("{pending} pending, 4 expected"))?;

    let c = "a name that is not one host's DNS name is refused";
    for bad in [
        "*.wild.example",
        "192.0.2.1",
        "a/b.example",
        "no_such..example",
        "",
    ] {
        match store.request_certificate(bad, "edge-a").await {
            Err(StoreError::InvalidRequest { .. }) => {}
            other => return Err(fail(c, format!("{bad:?}: {other:?}"))),
        }
    }

    let c = "a deleted request is gone and can be made again";
    ok(c, store.delete_request(&first).await)?;
    ok(c, store.delete_request(&first).await)?;
    let left: Vec<String> = ok(c, store.list_requests().await)?
        .into_iter()
        .filter(|r| ours(&r.name))
        .map(|r| r.name)
        .collect();
    expect(c, !left.contains(&first) && left.len() == 3, || {
        format!("{left:?}")
    })?;
    let head = ok(c, store.feed_snapshot().await)?.revision;
    expect(
        c,
        ok(c, store.request_certificate(&first, "edge-c").await)?,
        || "a request made again after its deletion was not recorded".into(),
    )?;
    let page = ok(c, store.changes_since(head, 1000).await)?;
    expect(
        c,
        page.changes
            .iter()
            .any(|ch| ch.kind == ChangeKind::Requested && ch.key == key),
        || format!("no change for the request made again: {:?}", page.changes),
    )?;

    let c = "requests are not certificates";
    let snapshot = ok(c, store.feed_snapshot().await)?;
    expect(c, !snapshot.keys.contains(&key), || {
        "the snapshot lists a request's key".into()
    })?;
    for i in 0..4 {
        ok(c, store.delete_request(&name(i)).await)?;
    }
    Ok(())
}

/// Validation certificates on their own: one per name, read back as saved
/// (the key too, under the name normalized), a
/// [`ChangeKind::Validation`] change for each save and for each delete of
/// one that was there (none for deleting nothing), listed in the snapshot
/// while saved, and wildcards refused.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// sturdy_acme_testca::check_validations(&sturdy_acme::store::MemoryStore::new()).await?;
/// # Ok(()) }
/// ```
pub async fn check_validations<S: Store>(store: &S) -> Result<(), ConformanceFailure> {
    let run = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let name = format!("alpn-{run}.conformance.example");
    let key = |n: &str| validation_key(n).map_err(|e| fail("the name's key", e.to_string()));
    let issued = |label: &str| {
        let key = rcgen::KeyPair::generate().expect("P-256 key");
        let cert = rcgen::CertificateParams::new(vec![name.clone()])
            .expect("name")
            .self_signed(&key)
            .expect("self-signed certificate");
        ValidationCertificate {
            name: format!("{}.", name.to_uppercase()),
            certificate_pem: format!("{}{label}", cert.pem()),
            key_pem: key.serialize_pem().into(),
        }
    };

    let c = "a validation certificate reads back as saved, with its change";
    let before = ok(c, store.feed_snapshot().await)?.revision;
    let first = issued("");
    ok(c, store.save_validation(&first).await)?;
    let back = ok(c, store.load_validation(&name).await)?;
    expect(
        c,
        back.as_ref().is_some_and(|b| {
            b.name == name
                && b.certificate_pem == first.certificate_pem
                && *b.key_pem == *first.key_pem
        }),
        || format!("{back:?}"),
    )?;
    let second = issued("\n");
    ok(c, store.save_validation(&second).await)?;
    let back = ok(c, store.load_validation(&name).await)?;
    expect(
        c,
        back.is_some_and(|b| b.certificate_pem == second.certificate_pem),
        || "the second save did not replace the first".into(),
    )?;
    let snapshot = ok(c, store.feed_snapshot().await)?;
    expect(c, snapshot.validations.contains(&name), || {
        format!("the snapshot lists {:?}", snapshot.validations)
    })?;
    let page = ok(c, store.changes_since(before, 1000).await)?;
    let ours = key(&name)?;
    let changes = |page: &sturdy_acme::store::ChangePage| {
        page.changes
            .iter()
            .filter(|ch| ch.kind == ChangeKind::Validation && ch.key == ours)
            .count()
    };
    expect(c, changes(&page) == 2, || format!("{:?}", page.changes))?;

    let c = "a deleted validation certificate is gone, with its change";
    let head = page.head;
    ok(c, store.delete_validation(&name).await)?;
    ok(c, store.delete_validation(&name).await)?;
    expect(
        c,
        ok(c, store.load_validation(&name).await)?.is_none(),
        || "still there".into(),
    )?;
    let page = ok(c, store.changes_since(head, 1000).await)?;
    expect(c, changes(&page) == 1, || {
        format!("deleting once, then nothing: {:?}", page.changes)
    })?;
    let snapshot = ok(c, store.feed_snapshot().await)?;
    expect(c, !snapshot.validations.contains(&name), || {
        "the snapshot still lists it".into()
    })?;

    let c = "a wildcard gets no validation certificate";
    let wildcard = ValidationCertificate {
        name: "*.wild.conformance.example".into(),
        ..issued("")
    };
    match store.save_validation(&wildcard).await {
        Err(StoreError::InvalidRequest { .. }) => Ok(()),
        other => Err(fail(c, format!("{other:?}"))),
    }
}
