//! The DNS client's unit tests: names, malformed answers, the bound on
//! questions in flight.

use super::*;

#[test]
fn names_are_normalized_and_checked() {
    assert_eq!(
        display_name(&parse_name("_ACME-Challenge.Example.Test.").unwrap()),
        "_acme-challenge.example.test"
    );
    assert!(parse_name("").is_err());
    assert!(parse_name("a..b").is_err());
    assert!(parse_name(&format!("{}.test", "a".repeat(64))).is_err());
}

/// A server answering our ID with garbage: a typed error, no panic.
#[tokio::test]
async fn a_garbage_answer_is_malformed() {
    let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buffer = [0u8; 512];
        while let Ok((n, from)) = server.recv_from(&mut buffer).await {
            if n < 2 {
                continue;
            }
            // Our ID, QR set, then counts promising records never sent.
            let mut reply = vec![buffer[0], buffer[1], 0x80, 0, 0, 1, 0, 9, 0, 0, 0, 0];
            reply.extend_from_slice(&[0xff; 40]);
            let _ = server.send_to(&reply, from).await;
        }
    });
    let dns = Dns::new(DnsConfig::new(vec![addr]).query_timeout(Duration::from_secs(2)));
    let err = dns.txt_at(addr, "example.test").await.unwrap_err();
    assert!(matches!(err, DnsError::Malformed { .. }), "{err}");
    assert!(!err.is_transient());
    let err = dns.zone_of("example.test").await.unwrap_err();
    assert!(matches!(err, DnsError::Malformed { .. }), "{err}");
}

/// Issue 27, defect 5: however many questions are asked at once, no
/// more than `max_in_flight` are out (each holds a socket). A slow
/// loopback server counts the questions it holds unanswered.
#[tokio::test]
async fn questions_in_flight_are_bounded() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let server = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = server.local_addr().unwrap();
    let (held, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    {
        let (server, held, peak) = (server.clone(), held.clone(), peak.clone());
        tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            while let Ok((n, from)) = server.recv_from(&mut buffer).await {
                let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // An empty NOERROR answer to the question, 50 ms later.
                let mut reply = buffer[..n].to_vec();
                reply[2] |= 0x80;
                let (server, held) = (server.clone(), held.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    held.fetch_sub(1, Ordering::SeqCst);
                    let _ = server.send_to(&reply, from).await;
                });
            }
        });
    }
    let dns = Dns::new(
        DnsConfig::new(vec![addr])
            .query_timeout(Duration::from_secs(10))
            .max_in_flight(8),
    );
    assert_eq!(dns.config().in_flight_limit(), 8);
    let asked = futures_util::future::join_all(
        (0..100).map(|i| dns.clone().txt_at_owned(addr, format!("n{i}.example.test"))),
    )
    .await;
    assert!(asked.iter().all(Result::is_ok), "{asked:?}");
    assert_eq!(peak.load(Ordering::SeqCst), 8, "at most 8 out, and 8 used");
    assert_eq!(
        DnsConfig::new(vec![addr]).in_flight_limit(),
        DEFAULT_MAX_IN_FLIGHT
    );
}

impl Dns {
    async fn txt_at_owned(self, server: SocketAddr, name: String) -> Result<Vec<String>, DnsError> {
        self.txt_at(server, &name).await
    }
}

/// A valid answer holding CNAME, TXT and CAA records, encoded.
fn valid_answer() -> Vec<u8> {
    use hickory_proto::rr::rdata::{CAA, CNAME, TXT};
    let name = parse_name("x.example.test").unwrap();
    let mut message = Message::new(0x1234, MessageType::Response, OpCode::Query);
    message.add_query(Query::query(name.clone(), RecordType::CAA));
    message.add_answer(Record::from_rdata(
        name.clone(),
        60,
        RData::CNAME(CNAME(parse_name("y.example.test").unwrap())),
    ));
    message.add_answer(Record::from_rdata(
        name.clone(),
        60,
        RData::TXT(TXT::new(vec!["value".into()])),
    ));
    message.add_answer(Record::from_rdata(
        name,
        60,
        RData::CAA(CAA::new_issue(
            false,
            Some(parse_name("ca.example").unwrap()),
            vec![],
        )),
    ));
    message.to_vec().unwrap()
}

proptest::proptest! {
    /// Whatever bytes come back (random, or a valid answer with bytes
    /// changed, truncated or extended), parsing and reading them gives
    /// an answer or a typed error, never a panic.
    #[test]
    fn any_bytes_parse_or_fail_cleanly(
        random in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
        flips in proptest::collection::vec((0usize..200, proptest::num::u8::ANY), 0..8),
        cut in 0usize..200,
    ) {
        let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let name = parse_name("x.example.test").unwrap();
        let mut mutated = valid_answer();
        for (at, byte) in flips {
            if let Some(b) = mutated.get_mut(at) {
                *b = byte;
            }
        }
        mutated.truncate(cut.max(12));
        let mut extended = valid_answer();
        extended.extend_from_slice(&random);
        for bytes in [random.clone(), mutated, extended] {
            if wire::check_header(&bytes, 0x1234).is_err() {
                continue;
            }
            if let Ok(answer) = parse_answer(server, "CAA x", &bytes, Duration::ZERO) {
                let _ = answer.cname(&name);
                let _ = txt_values(&answer, &name);
                let _ = answer.records(&name, RecordType::CAA).count();
            }
        }
    }
}

#[test]
fn the_valid_answer_reads_back() {
    let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
    let name = parse_name("x.example.test").unwrap();
    let answer = parse_answer(server, "CAA x", &valid_answer(), Duration::ZERO).unwrap();
    assert_eq!(txt_values(&answer, &name), ["value"]);
    assert!(answer.cname(&name).is_some());
    assert_eq!(answer.records(&name, RecordType::CAA).count(), 1);
}

#[test]
fn transient_errors() {
    let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
    let servfail = DnsError::Rcode {
        server,
        query: "CAA x".into(),
        rcode: "SERVFAIL".into(),
    };
    assert!(servfail.is_transient());
    let refused = DnsError::Rcode {
        server,
        query: "UPDATE x".into(),
        rcode: "REFUSED".into(),
    };
    assert!(!refused.is_transient());
    assert!(!DnsError::InvalidKey("x".into()).is_transient());
}
