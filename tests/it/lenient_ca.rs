//! CAs that bend RFC 8555 (issue 27): what acme2certifier does, played by
//! the embedded CA's fault script, and what the client makes of it. Read
//! tolerantly what is unambiguous (an account at `Location`, an invalid
//! authorization of a "pending" order); refuse at once what is not (a
//! success answer that does not parse is a protocol error, never retried).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sturdy_acme::{
    AccountKey, AccountOptions, Client, Danger, Endpoint, Error, ErrorClass, KeyAlgorithm,
    NewOrder, OrderStatus, PollPolicy, RetryPolicy,
};
use sturdy_acme_testca::{Fault, FaultRule, TestCa, Trigger};

/// A retry policy that would retry a transient failure several times, so
/// a test sees whether an answer is taken for one.
fn patient() -> RetryPolicy {
    let defaults = RetryPolicy::default();
    defaults.with_transient(
        defaults
            .transient()
            .with_base(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(5))
            .with_max_attempts(5),
    )
}

/// Defect 17: acme2certifier answers newAccount for a known key `200`
/// with the right `Location` and a body of `{}`. The account is taken
/// from `Location` and read there; nothing is retried.
#[tokio::test]
async fn a_known_key_answered_with_an_empty_object_is_read_from_location() {
    let ca = TestCa::start().await.unwrap();
    let client = ca
        .client_builder()
        .retry_policy(patient())
        .build()
        .await
        .unwrap();
    let key = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
    let pem = key.to_pkcs8_pem();
    let first = client
        .create_account(key, &AccountOptions::agreeing_to_terms())
        .await
        .unwrap();
    ca.set_faults(vec![FaultRule::new(
        Endpoint::NewAccount,
        Trigger::Always,
        Fault::BodyAfterCommit { body: "{}".into() },
    )]);
    let again = client
        .create_account(
            AccountKey::from_pkcs8_pem(&pem).unwrap(),
            &AccountOptions::agreeing_to_terms(),
        )
        .await
        .unwrap();
    assert_eq!(again.url(), first.url());
    let resource = again.resource().expect("the account was read");
    assert_eq!(resource.status, sturdy_acme::AccountStatus::Valid);
    let ledger = ca.ledger();
    assert_eq!(ledger.requests_to(Endpoint::NewAccount), 2, "no retry");
    assert_eq!(ledger.requests_to(Endpoint::Account), 1, "one read");
    // The account works.
    again
        .new_order(&NewOrder::for_names(&["known-key.example"]).unwrap())
        .await
        .unwrap();
}

/// Defect 17: a success answer read in full that does not parse is a
/// protocol error, returned at once (a body cut short stays transient:
/// `retry_policies::truncated_invalid_and_oversized_bodies`).
#[tokio::test]
async fn a_complete_success_answer_that_does_not_parse_is_not_retried() {
    let ca = TestCa::builder()
        .faults(vec![FaultRule::new(
            Endpoint::NewAccount,
            Trigger::Always,
            Fault::BodyAfterCommit {
                body: "<html>welcome</html>".into(),
            },
        )])
        .start()
        .await
        .unwrap();
    let client = ca
        .client_builder()
        .retry_policy(patient())
        .build()
        .await
        .unwrap();
    let err = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::agreeing_to_terms(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Protocol, "{err}");
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    assert!(err.is_unusable_answer());
    assert_eq!(ca.ledger().requests_to(Endpoint::NewAccount), 1);

    // The same for an order read and an authorization read.
    ca.set_faults(vec![]);
    let account = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::agreeing_to_terms(),
        )
        .await
        .unwrap();
    let mut order = account
        .new_order(&NewOrder::for_names(&["garbage.example"]).unwrap())
        .await
        .unwrap();
    for endpoint in [Endpoint::Order, Endpoint::Authorization] {
        ca.set_faults(vec![FaultRule::new(
            endpoint,
            Trigger::Always,
            Fault::InvalidJsonAfterCommit,
        )]);
        let before = ca.ledger().requests_to(endpoint);
        let err = match endpoint {
            Endpoint::Order => order.refresh().await.map(|_| ()).unwrap_err(),
            _ => order.authorizations().await.map(|_| ()).unwrap_err(),
        };
        assert_eq!(err.class(), ErrorClass::Protocol, "{endpoint:?}: {err}");
        assert_eq!(
            ca.ledger().requests_to(endpoint),
            before + 1,
            "{endpoint:?}"
        );
    }
}

/// Defect 17, the non-idempotent side: a finalize answered `200` with a
/// body that is not an order took effect; the order read back says so,
/// and finalize is not sent again.
#[tokio::test]
async fn an_unreadable_finalize_answer_is_read_back_not_repeated() {
    let ca = TestCa::builder()
        .faults(vec![FaultRule::new(
            Endpoint::Finalize,
            Trigger::Always,
            Fault::InvalidJsonAfterCommit,
        )])
        .start()
        .await
        .unwrap();
    let client = ca
        .client_builder()
        .retry_policy(patient())
        .build()
        .await
        .unwrap();
    let account = crate::common::suite::account(&client, KeyAlgorithm::Es256).await;
    let mut order = crate::common::suite::ready_order(&account, "finalize.example").await;
    let key = sturdy_acme::CertificateKey::generate(Default::default()).unwrap();
    order.finalize(sturdy_acme::Csr::Key(&key)).await.unwrap();
    order.certificate().await.unwrap();
    let ledger = ca.ledger();
    assert_eq!(ledger.requests_to(Endpoint::Finalize), 1);
    assert_eq!(ledger.certificates.len(), 1);
}

/// Defect 18: acme2certifier marks the challenge and the authorization
/// `invalid` and leaves the order `pending`. The wait ends at the first
/// poll that finds the order still pending, with the authorization's
/// problem, classed Validation (before: polls until the poll budget).
#[tokio::test]
async fn an_invalid_authorization_of_a_pending_order_ends_the_wait() {
    let ca = TestCa::builder()
        // http-01 validated for real against a port where nothing listens:
        // the validation fails with `connection`.
        .http01_port(1)
        .faults(vec![FaultRule::new(
            Endpoint::Order,
            Trigger::Always,
            Fault::InvalidOrderStaysPending,
        )])
        .start()
        .await
        .unwrap();
    let polls = PollPolicy::default()
        .with_adaptive(false)
        .with_first_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_millis(40))
        .with_max_polls(40)
        .with_timeout(Duration::from_secs(60));
    let client = ca
        .client_builder()
        .retry_policy(patient())
        .poll_policy(polls)
        .build()
        .await
        .unwrap();
    let account = crate::common::suite::account(&client, KeyAlgorithm::Es256).await;
    let mut order = account
        .new_order(&NewOrder::for_names(&["fails.example"]).unwrap())
        .await
        .unwrap();
    let authz = order.authorizations().await.unwrap().remove(0);
    let mut challenge = authz
        .challenge(&sturdy_acme::ChallengeType::Http01)
        .unwrap();
    challenge.respond().await.unwrap();
    // The CA's validation runs on its own; wait until the authorization
    // says it failed, as seen from outside (the order keeps saying
    // "pending").
    let mut authz = authz;
    for _ in 0..200 {
        if authz.refresh().await.unwrap().status != sturdy_acme::AuthorizationStatus::Pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(authz.status(), sturdy_acme::AuthorizationStatus::Invalid);
    order.refresh().await.unwrap();
    assert_eq!(
        order.status(),
        OrderStatus::Pending,
        "the fault plays its part"
    );

    let before = ca.ledger().requests_to(Endpoint::Order);
    let err = order.wait_ready().await.unwrap_err();
    let order_polls = ca.ledger().requests_to(Endpoint::Order) - before;
    assert!(matches!(err, Error::ValidationFailed { .. }), "{err:?}");
    match err.class() {
        ErrorClass::Validation { problems } => {
            assert_eq!(problems.len(), 1);
            assert_eq!(problems[0].0.value, "fails.example");
            assert!(problems[0].1.is_some(), "the challenge's problem is kept");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(order_polls, 1, "the wait ends at the first poll");
    assert_eq!(order.status(), OrderStatus::Pending);
}

/// Defect 18, the usual case costs nothing: an order that becomes ready at
/// its first poll is not doubled by authorization reads.
#[tokio::test]
async fn a_ready_order_costs_no_authorization_reads() {
    let ca = TestCa::start().await.unwrap();
    let client = ca.client().await.unwrap();
    let account = crate::common::suite::account(&client, KeyAlgorithm::Es256).await;
    let mut order = account
        .new_order(&NewOrder::for_names(&["ready.example"]).unwrap())
        .await
        .unwrap();
    for authz in order.authorizations().await.unwrap() {
        authz
            .challenge(&sturdy_acme::ChallengeType::Http01)
            .unwrap()
            .respond()
            .await
            .unwrap();
    }
    // The always-valid CA: valid at once.
    let reads = ca.ledger().requests_to(Endpoint::Authorization);
    assert_eq!(order.wait_ready().await.unwrap(), OrderStatus::Ready);
    assert_eq!(ca.ledger().requests_to(Endpoint::Authorization), reads);
}

/// A plain-HTTP loopback "CA" that records the head of every request and
/// answers just enough for a directory read and a newAccount.
struct HeadRecorder {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl HeadRecorder {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (recorded, b) = (Arc::clone(&heads), base.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (recorded, b) = (Arc::clone(&recorded), b.clone());
                std::thread::spawn(move || serve(stream, &b, &recorded));
            }
        });
        Self {
            url: format!("{base}/directory"),
            heads,
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn serve(stream: std::net::TcpStream, base: &str, recorded: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut head = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut body = vec![0; length];
        std::io::Read::read_exact(&mut reader, &mut body).unwrap();
        recorded.lock().unwrap().push(head.clone());
        let (status, extra, body) = if head.starts_with("GET /directory") {
            let dir = format!(
                r#"{{"newNonce":"{base}/nonce","newAccount":"{base}/account","newOrder":"{base}/order","revokeCert":"{base}/revoke","keyChange":"{base}/key"}}"#
            );
            ("200 OK", String::new(), dir)
        } else if head.starts_with("HEAD /nonce") {
            ("200 OK", String::new(), String::new())
        } else {
            (
                "201 Created",
                format!("Location: {base}/account/1\r\n"),
                r#"{"status":"valid"}"#.to_owned(),
            )
        };
        // No nonce with the directory, so the client fetches one (HEAD).
        let nonce = if head.starts_with("GET") {
            ""
        } else {
            "Replay-Nonce: bm9uY2Vub25jZQ\r\n"
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{nonce}{extra}Content-Length: {}\r\n\r\n{}",
            body.len(),
            if head.starts_with("HEAD") { "" } else { &body }
        );
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn accept_languages(heads: &[String]) -> Vec<Option<String>> {
    heads
        .iter()
        .map(|h| {
            h.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("accept-language")
                    .then(|| value.trim().to_owned())
            })
        })
        .collect()
}

/// Defect 20: every request carries `Accept-Language` (RFC 8555 §6.1),
/// "en" unless the builder says otherwise.
#[tokio::test]
async fn every_request_carries_accept_language() {
    let ca = HeadRecorder::start();
    let client = Client::builder(&ca.url)
        .danger(Danger::new().accept_plain_http())
        .build()
        .await
        .unwrap();
    client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::agreeing_to_terms(),
        )
        .await
        .unwrap();
    let heads = ca.heads();
    let methods: Vec<&str> = heads.iter().map(|h| h.split(' ').next().unwrap()).collect();
    assert_eq!(methods, ["GET", "HEAD", "POST"], "{heads:?}");
    assert!(
        accept_languages(&heads)
            .iter()
            .all(|l| l.as_deref() == Some("en")),
        "{heads:?}"
    );

    let ca = HeadRecorder::start();
    Client::builder(&ca.url)
        .danger(Danger::new().accept_plain_http())
        .accept_language("de-CH, de;q=0.9, en;q=0.5")
        .build()
        .await
        .unwrap();
    assert_eq!(
        accept_languages(&ca.heads()),
        [Some("de-CH, de;q=0.9, en;q=0.5".to_owned())]
    );
    let err = Client::builder(&ca.url)
        .danger(Danger::new().accept_plain_http())
        .accept_language("en\r\nX-Evil: 1")
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::InvalidInput, "{err}");
}

/// Defect 18 through the issuer: `ensure` against a CA that leaves the
/// order of a failed validation pending ends with the validation's error
/// after a few polls (before: polled until the poll budget ran out, then
/// "try again later"), and the next `ensure` does not wait on the dead
/// order again.
#[tokio::test]
async fn the_issuer_ends_at_an_invalid_authorization_of_a_pending_order() {
    use sturdy_acme::solver::http01::Http01Solver;
    use sturdy_acme::store::FileStore;
    use sturdy_acme::{EnsureOptions, Issuer, RateLimits};

    let ca = TestCa::builder()
        .http01_port(1)
        .faults(vec![FaultRule::new(
            Endpoint::Order,
            Trigger::Always,
            Fault::InvalidOrderStaysPending,
        )])
        .start()
        .await
        .unwrap();
    let polls = PollPolicy::default()
        .with_adaptive(false)
        .with_first_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_millis(40))
        .with_max_polls(200)
        .with_timeout(Duration::from_secs(60));
    let client = ca
        .client_builder()
        .retry_policy(patient())
        .poll_policy(polls)
        .build()
        .await
        .unwrap();
    let dir = crate::issuer::temp_store("lenient-ca");
    let issuer = Issuer::builder(client, FileStore::open(&dir).unwrap())
        .solver(Arc::new(Http01Solver::unserved()))
        .rate_limits(RateLimits::none())
        .build();
    for run in 0..2 {
        let before = ca.ledger().requests_to(Endpoint::Order);
        let err = issuer
            .ensure(&["dead.example"], &EnsureOptions::default())
            .await
            .unwrap_err();
        let order_polls = ca.ledger().requests_to(Endpoint::Order) - before;
        assert!(
            matches!(err.class(), ErrorClass::Validation { .. }),
            "run {run}: {err}"
        );
        // The CA validates on its own time: a few polls, never the budget.
        assert!(order_polls < 20, "run {run}: {order_polls} order polls");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Defect 18, a large order: its authorizations are read at most 8 per
/// poll, in turns, and the failed one (the 11th of 12) is still found
/// within two polls.
#[tokio::test]
async fn a_large_pending_order_is_watched_in_turns() {
    use sturdy_acme_testca::StaticDns;
    let dns = Arc::new(StaticDns::new());
    let ca = TestCa::builder()
        .real_validation(0, 0, dns.clone())
        .faults(vec![FaultRule::new(
            Endpoint::Order,
            Trigger::Always,
            Fault::InvalidOrderStaysPending,
        )])
        .start()
        .await
        .unwrap();
    let polls = PollPolicy::default()
        .with_adaptive(false)
        .with_first_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_millis(40))
        .with_max_polls(40);
    let client = ca
        .client_builder()
        .poll_policy(polls)
        .build()
        .await
        .unwrap();
    let account = crate::common::suite::account(&client, KeyAlgorithm::Es256).await;
    let names: Vec<String> = (0..12).map(|i| format!("n{i}.large.example")).collect();
    let mut order = account
        .new_order(&NewOrder::for_names(&names).unwrap())
        .await
        .unwrap();
    let mut authzs = order.authorizations().await.unwrap();
    for (i, authz) in authzs.iter().enumerate() {
        let mut challenge = authz.challenge(&sturdy_acme::ChallengeType::Dns01).unwrap();
        if i != 10 {
            dns.add_txt(
                &challenge.dns01_record_name(),
                &challenge.dns01_txt_value().unwrap(),
            );
        }
        challenge.respond().await.unwrap();
    }
    // Every validation is over before the wait starts.
    for authz in &mut authzs {
        for _ in 0..200 {
            if authz.refresh().await.unwrap().status != sturdy_acme::AuthorizationStatus::Pending {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(
        authzs[10].status(),
        sturdy_acme::AuthorizationStatus::Invalid
    );
    let (orders, reads) = (
        ca.ledger().requests_to(Endpoint::Order),
        ca.ledger().requests_to(Endpoint::Authorization),
    );
    let err = order.wait_ready().await.unwrap_err();
    assert!(
        matches!(&err, Error::ValidationFailed { identifier, .. } if identifier.value == authzs[10].identifier().value),
        "{err:?}"
    );
    // Poll 1 reads the first 8 (valid, not read again), poll 2 the next
    // three: the failed one.
    assert_eq!(ca.ledger().requests_to(Endpoint::Order) - orders, 2);
    assert_eq!(ca.ledger().requests_to(Endpoint::Authorization) - reads, 11);
}
