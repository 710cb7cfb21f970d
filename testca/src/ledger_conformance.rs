//! The rate-limit ledger's entries ([`check_ledger_entries`];
//! [`check_store`](crate::check_store) runs it).

use std::time::SystemTime;

use serde_json::{Value, json};
use sturdy_acme::StoreError;
use sturdy_acme::store::{LedgerEntries, Store};

use crate::conformance::{ConformanceFailure, expect, ok};

/// The ledger's entries on their own: an update reads only the keys it
/// names and writes only those (a `Null` deletes, `None` writes nothing),
/// concurrent increments of one entry all count, updates of other entries
/// run beside them, a key ending in `*` reads by prefix, and every entry
/// of a directory can be read at once, never another directory's.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// sturdy_acme_testca::check_ledger_entries(&sturdy_acme::store::MemoryStore::new()).await?;
/// # Ok(()) }
/// ```
pub async fn check_ledger_entries<S: Store>(store: &S) -> Result<(), ConformanceFailure> {
    let run = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let dir = format!("https://ledger-{run}.conformance.example/dir");
    let other = format!("https://ledger-{run}.conformance.example/other");
    let keys = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();

    let c = "ledger entries read back as written, only the keys named";
    let ab = keys(&["a", "b"]);
    let first = ok(c, store.load_ledger_entries(&dir, Some(&ab)).await)?;
    expect(c, first.is_empty(), || {
        format!("{first:?} before any write")
    })?;
    ok(
        c,
        store
            .update_ledger_entries(&dir, &ab, &mut |_| {
                Some(LedgerEntries::from([
                    ("a".to_owned(), json!({"tokens": 1.0})),
                    ("b".to_owned(), json!([1, 2])),
                    // Not named: never written.
                    ("z".to_owned(), json!("outside")),
                ]))
            })
            .await,
    )?;
    let read = ok(c, store.load_ledger_entries(&dir, Some(&ab)).await)?;
    expect(
        c,
        read.get("a") == Some(&json!({"tokens": 1.0})) && read.get("b") == Some(&json!([1, 2])),
        || format!("{read:?}"),
    )?;
    let all = ok(c, store.load_ledger_entries(&dir, None).await)?;
    expect(c, all.len() == 2 && !all.contains_key("z"), || {
        format!("every entry: {all:?}")
    })?;
    let elsewhere = ok(c, store.load_ledger_entries(&other, None).await)?;
    expect(c, elsewhere.is_empty(), || {
        format!("another directory: {elsewhere:?}")
    })?;

    let c = "an update sees only its keys; Null deletes; None writes nothing";
    let bc = keys(&["b", "c"]);
    let mut seen = LedgerEntries::new();
    ok(
        c,
        store
            .update_ledger_entries(&dir, &bc, &mut |current| {
                seen = current.clone();
                Some(LedgerEntries::from([
                    ("b".to_owned(), Value::Null),
                    ("c".to_owned(), json!(3)),
                ]))
            })
            .await,
    )?;
    expect(
        c,
        seen.len() == 1 && seen.get("b") == Some(&json!([1, 2])),
        || format!("saw {seen:?}"),
    )?;
    ok(
        c,
        store.update_ledger_entries(&dir, &bc, &mut |_| None).await,
    )?;
    let all = ok(c, store.load_ledger_entries(&dir, None).await)?;
    expect(
        c,
        all == LedgerEntries::from([
            ("a".to_owned(), json!({"tokens": 1.0})),
            ("c".to_owned(), json!(3)),
        ]),
        || format!("{all:?}"),
    )?;

    let c = "a key ending in * reads every entry with that prefix";
    let pfx = keys(&["p:one", "p:two", "q:three"]);
    ok(
        c,
        store
            .update_ledger_entries(&dir, &pfx, &mut |_| {
                Some(pfx.iter().map(|k| (k.clone(), json!(k))).collect())
            })
            .await,
    )?;
    let read = ok(
        c,
        store
            .load_ledger_entries(&dir, Some(&keys(&["p:*", "a"])))
            .await,
    )?;
    let names: Vec<&str> = read.keys().map(String::as_str).collect();
    expect(c, names == ["a", "p:one", "p:two"], || format!("{names:?}"))?;

    let c = "ledger entry updates are atomic: concurrent increments all count";
    let n = keys(&["n"]);
    let increment = |key: Vec<String>| {
        let dir = dir.clone();
        async move {
            for _ in 0..5 {
                store
                    .update_ledger_entries(&dir, &key, &mut |current| {
                        let k = key[0].clone();
                        let v = current.get(&k).and_then(Value::as_u64).unwrap_or(0);
                        Some(LedgerEntries::from([(k, json!(v + 1))]))
                    })
                    .await?;
            }
            Ok::<(), StoreError>(())
        }
    };
    let (r1, r2, r3, r4) = tokio::join!(
        increment(n.clone()),
        increment(n.clone()),
        increment(n.clone()),
        increment(keys(&["m"]))
    );
    for r in [r1, r2, r3, r4] {
        ok(c, r)?;
    }
    let read = ok(
        c,
        store
            .load_ledger_entries(&dir, Some(&keys(&["n", "m"])))
            .await,
    )?;
    expect(
        c,
        read.get("n") == Some(&json!(15)) && read.get("m") == Some(&json!(5)),
        || format!("15 and 5 increments left {read:?}"),
    )
}
