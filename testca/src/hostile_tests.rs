//! The embedded CA against hostile requests (issue #16): extreme dates and
//! cursors are refused with problems instead of panics, and what the CA
//! records stays bounded however many large requests arrive. Raw signed
//! requests go through the library's own client (`Account::post_raw`).

use serde_json::{Value, json};

use super::TestCa;
use sturdy_acme::Endpoint;
use sturdy_acme::RetryPolicy;
use sturdy_acme::{
    Account, AccountKey, AccountOptions, CertificateKey, Csr, KeyAlgorithm, ProblemType,
};

/// An account at `ca` whose client does not retry.
async fn account(ca: &TestCa) -> Account {
    let client = ca
        .client_builder()
        .retry_policy(RetryPolicy::no_retries())
        .build()
        .await
        .unwrap();
    client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::agreeing_to_terms(),
        )
        .await
        .unwrap()
}

/// A signed newOrder with this payload: the order JSON and its URL.
async fn raw_new_order(account: &Account, payload: Value) -> sturdy_acme::Result<(Value, String)> {
    let url = account.client().directory().new_order.clone();
    let answer = account
        .post_raw(Endpoint::NewOrder, &url, Some(&payload))
        .await?;
    let order = answer.json::<Value>()?;
    let location = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((order, location))
}

/// Issues a certificate for `name` (the CA must still work).
async fn issue(account: &Account, name: &str) {
    let mut order = account
        .new_order(&sturdy_acme::NewOrder::for_names(&[name]).unwrap())
        .await
        .unwrap();
    for authz in order.authorizations().await.unwrap() {
        authz.challenges()[0].clone().respond().await.unwrap();
    }
    order.wait_ready().await.unwrap();
    let key = CertificateKey::generate(Default::default()).unwrap();
    order.finalize(Csr::Key(&key)).await.unwrap();
}

/// notBefore at the end of time is refused with `malformed` at newOrder
/// (it used to be accepted and then panic `OffsetDateTime + Duration` in
/// finalize, under the state lock); the CA keeps serving.
#[tokio::test]
async fn far_future_not_before_is_malformed_and_the_ca_keeps_serving() {
    let ca = TestCa::start().await.unwrap();
    let account = account(&ca).await;
    for not_before in [
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-23:59", // not even representable in UTC
        "9999-10-15T00:00:00Z",      // + 90 days is past 9999
    ] {
        let err = raw_new_order(
            &account,
            json!({
                "identifiers": [{"type": "dns", "value": "late.example.com"}],
                "notBefore": not_before,
            }),
        )
        .await
        .unwrap_err();
        assert_eq!(err.problem_type(), Some(&ProblemType::Malformed), "{err}");
        assert_eq!(err.status(), Some(400), "{err}");
    }
    let err = raw_new_order(
        &account,
        json!({
            "identifiers": [{"type": "dns", "value": "late.example.com"}],
            "notAfter": "9999-12-31T23:59:59-23:59",
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.problem_type(), Some(&ProblemType::Malformed), "{err}");

    // A window that ends within year 9999 is fine, all the way to issuance.
    let (order, url) = raw_new_order(
        &account,
        json!({
            "identifiers": [{"type": "dns", "value": "last.example.com"}],
            "notBefore": "9999-12-30T00:00:00+01:00",
            "notAfter": "9999-12-31T23:59:59Z",
        }),
    )
    .await
    .unwrap();
    assert_eq!(order["notBefore"], "9999-12-29T23:00:00Z", "{order}");
    let mut order = account.order(&url).await.unwrap();
    for authz in order.authorizations().await.unwrap() {
        authz.challenges()[0].clone().respond().await.unwrap();
    }
    order.wait_ready().await.unwrap();
    let key = CertificateKey::generate(Default::default()).unwrap();
    order.finalize(Csr::Key(&key)).await.unwrap();
    assert_eq!(ca.ledger().issued_for(&["last.example.com"]), 1);

    // Still serving.
    issue(&account, "after.example.com").await;
    assert_eq!(ca.ledger().issued_for(&["after.example.com"]), 1);
}

/// `?cursor=` with huge values answers an empty page (it used to overflow
/// `cursor * per_page`).
#[tokio::test]
async fn orders_list_cursor_at_u64_max_is_an_empty_page() {
    let ca = TestCa::builder()
        .orders_per_page(2)
        .reuse_pending_orders(false)
        .start()
        .await
        .unwrap();
    let account = account(&ca).await;
    for i in 0..3 {
        account
            .new_order(&sturdy_acme::NewOrder::for_names(&[format!("c{i}.example.com")]).unwrap())
            .await
            .unwrap();
    }
    let orders = account.resource().unwrap().orders.unwrap();
    for cursor in [u64::MAX, u64::MAX / 2 + 1, u64::MAX / 2] {
        let answer = account
            .post_raw(Endpoint::Orders, &format!("{orders}?cursor={cursor}"), None)
            .await
            .unwrap();
        let list = answer.json::<Value>().unwrap();
        assert_eq!(list["orders"], json!([]), "cursor {cursor}: {list}");
        assert!(answer.headers().get("link").is_some());
        assert!(answer.links("next").is_empty(), "cursor {cursor}");
    }
    // Paging itself still works.
    assert_eq!(account.order_urls(10).await.unwrap().len(), 3);
}

/// Sizes of the recorded requests as JSON text.
fn recorded_text_bytes(ca: &TestCa) -> usize {
    ca.recorded_jws()
        .iter()
        .map(|r| {
            r.path.len()
                + r.protected.to_string().len()
                + r.payload.as_ref().map_or(0, |p| p.to_string().len())
        })
        .sum()
}

/// Many large signed requests: the recorded ones stay within the entry
/// and byte budgets (configured, and the defaults), newest kept; finalize
/// records stay within theirs.
#[tokio::test]
async fn recorded_requests_stay_bounded() {
    // Configured: 50 entries, 1 MiB.
    let ca = TestCa::builder()
        .recorded_jws_limit(50, 1 << 20)
        .recorded_finalizations_limit(5)
        .start()
        .await
        .unwrap();
    let account = account(&ca).await;
    let url = account.url().to_owned();
    let junk = "j".repeat(200_000);
    for seq in 0..20 {
        account
            .post_raw(
                Endpoint::Account,
                &url,
                Some(&json!({"seq": seq, "junk": junk})),
            )
            .await
            .unwrap();
    }
    let recorded = ca.recorded_jws();
    let text = recorded_text_bytes(&ca);
    assert!(text <= 1 << 20, "{} requests, {text} bytes", recorded.len());
    assert!(recorded.len() >= 2, "{}", recorded.len());
    let last = recorded.last().unwrap().payload.as_ref().unwrap();
    assert_eq!(last["seq"], 19);
    // Small ones: the entry cap.
    for _ in 0..60 {
        account.refresh().await.unwrap();
    }
    assert_eq!(ca.recorded_jws().len(), 50);

    // Finalize records: the latest 5 of 8 (raw finalizes of a pending order).
    let order = account
        .new_order(&sturdy_acme::NewOrder::for_names(&["fin.example.com"]).unwrap())
        .await
        .unwrap();
    let finalize = order.state().finalize.clone();
    for _ in 0..8 {
        let err = account
            .post_raw(Endpoint::Finalize, &finalize, Some(&json!({"csr": "AA"})))
            .await
            .unwrap_err();
        assert_eq!(
            err.problem_type(),
            Some(&ProblemType::OrderNotReady),
            "{err}"
        );
    }
    assert_eq!(ca.ledger().finalizations.len(), 5);

    // Off.
    let ca = TestCa::builder()
        .recorded_jws_limit(0, 1 << 20)
        .start()
        .await
        .unwrap();
    let account_off = self::account(&ca).await;
    account_off.refresh().await.unwrap();
    assert!(ca.recorded_jws().is_empty());

    // The defaults: 30 requests of 700 kB (about 0.9 MiB on the wire, under
    // the 1 MiB body cap) stay under 16 MiB.
    let ca = TestCa::start().await.unwrap();
    let account = self::account(&ca).await;
    let url = account.url().to_owned();
    let junk = "j".repeat(700_000);
    for seq in 0..30 {
        account
            .post_raw(
                Endpoint::Account,
                &url,
                Some(&json!({"seq": seq, "junk": junk})),
            )
            .await
            .unwrap();
    }
    let text = recorded_text_bytes(&ca);
    assert!(text <= 16 << 20, "{text} bytes recorded");
    let recorded = ca.recorded_jws();
    assert_eq!(
        recorded.last().unwrap().payload.as_ref().unwrap()["seq"],
        29
    );
}
