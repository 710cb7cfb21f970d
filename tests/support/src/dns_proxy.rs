//! A DNS proxy (UDP and TCP) in front of one nameserver that can drop or
//! delay CAA questions, to act out a customer's slow authoritative DNS (the
//! founding story's "Rechecking CAA: query timed out").
//!
//! Every other question is relayed as is. The proxy counts the CAA
//! questions it saw.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// The CAA record type (RFC 8659).
const CAA: u16 = 257;

#[derive(Default)]
struct Behaviour {
    /// Act as a recursive resolver would for names on one server: when the
    /// answer is only a CNAME, ask for its target and add those records.
    chase_cnames: AtomicBool,
    drop_caa: AtomicBool,
    delay_caa_ms: AtomicU64,
    caa_seen: AtomicUsize,
}

/// A running proxy; stopped on drop.
pub struct DnsProxy {
    addr: SocketAddr,
    behaviour: Arc<Behaviour>,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsProxy {
    /// A resolver in front of `upstream` (an authoritative server that
    /// does not chase CNAMEs into its other zones): answers are completed
    /// with the CNAME targets' records, as a CA's recursive resolver would.
    pub async fn start_resolver(addr: SocketAddr, upstream: SocketAddr) -> DnsProxy {
        let proxy = Self::start(addr, upstream).await;
        proxy.behaviour.chase_cnames.store(true, Ordering::SeqCst);
        proxy
    }

    /// Listens on `addr` (UDP and TCP) and relays to `upstream`.
    pub async fn start(addr: SocketAddr, upstream: SocketAddr) -> DnsProxy {
        let behaviour = Arc::new(Behaviour::default());
        let udp = Arc::new(UdpSocket::bind(addr).await.expect("bind proxy UDP"));
        let tcp = TcpListener::bind(addr).await.expect("bind proxy TCP");
        let b = Arc::clone(&behaviour);
        let udp_task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 65_535];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buffer).await else {
                    return;
                };
                let query = buffer[..n].to_vec();
                let (udp, b) = (Arc::clone(&udp), Arc::clone(&b));
                tokio::spawn(async move {
                    if !hold(&b, &query).await {
                        return;
                    }
                    let Ok(relay) = UdpSocket::bind("127.0.0.1:0").await else {
                        return;
                    };
                    if relay.send_to(&query, upstream).await.is_err() {
                        return;
                    }
                    let mut answer = vec![0u8; 65_535];
                    if let Ok(Ok((n, _))) =
                        tokio::time::timeout(Duration::from_secs(5), relay.recv_from(&mut answer))
                            .await
                    {
                        let mut answer = answer[..n].to_vec();
                        if b.chase_cnames.load(Ordering::SeqCst) {
                            answer = chase(&answer, upstream).await.unwrap_or(answer);
                        }
                        let _ = udp.send_to(&answer, from).await;
                    }
                });
            }
        });
        let b = Arc::clone(&behaviour);
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    return;
                };
                let b = Arc::clone(&b);
                tokio::spawn(async move {
                    let _ = relay_tcp(stream, upstream, &b).await;
                });
            }
        });
        DnsProxy {
            addr,
            behaviour,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drop every CAA question (no answer at all) while `on`.
    pub fn drop_caa(&self, on: bool) {
        self.behaviour.drop_caa.store(on, Ordering::SeqCst);
    }

    /// Hold every CAA question this long before relaying it.
    pub fn delay_caa(&self, delay: Duration) {
        self.behaviour
            .delay_caa_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// How many CAA questions arrived so far.
    pub fn caa_seen(&self) -> usize {
        self.behaviour.caa_seen.load(Ordering::SeqCst)
    }
}

impl Drop for DnsProxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Applies the behaviour to one question: false to drop it.
async fn hold(b: &Behaviour, query: &[u8]) -> bool {
    if question_type(query) != Some(CAA) {
        return true;
    }
    b.caa_seen.fetch_add(1, Ordering::SeqCst);
    if b.drop_caa.load(Ordering::SeqCst) {
        return false;
    }
    let delay = b.delay_caa_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    true
}

async fn relay_tcp(
    mut client: TcpStream,
    upstream: SocketAddr,
    b: &Behaviour,
) -> std::io::Result<()> {
    loop {
        let len = client.read_u16().await? as usize;
        let mut query = vec![0u8; len];
        client.read_exact(&mut query).await?;
        if !hold(b, &query).await {
            continue;
        }
        let mut server = TcpStream::connect(upstream).await?;
        server.write_u16(len as u16).await?;
        server.write_all(&query).await?;
        let answer_len = server.read_u16().await? as usize;
        let mut answer = vec![0u8; answer_len];
        server.read_exact(&mut answer).await?;
        client.write_u16(answer_len as u16).await?;
        client.write_all(&answer).await?;
    }
}

/// The QTYPE of a message's first question.
fn question_type(message: &[u8]) -> Option<u16> {
    let mut at = 12;
    loop {
        let len = *message.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        at += len;
    }
    Some(u16::from_be_bytes([
        *message.get(at)?,
        *message.get(at + 1)?,
    ]))
}

/// Completes an answer that is only a CNAME chain with the target's records
/// of the asked type (at most 8 hops), asking `upstream` over UDP.
async fn chase(answer: &[u8], upstream: SocketAddr) -> Option<Vec<u8>> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{RData, RecordType};
    let mut message = Message::from_vec(answer).ok()?;
    let query = message.queries.first()?.clone();
    let qtype = query.query_type();
    let mut name = query.name().clone();
    for _ in 0..8 {
        if message
            .answers
            .iter()
            .any(|r| r.name == name && r.record_type() == qtype)
        {
            break;
        }
        let Some(target) = message.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if r.name == name && qtype != RecordType::CNAME => Some(c.0.clone()),
            _ => None,
        }) else {
            break;
        };
        let mut ask = Message::query();
        ask.metadata.recursion_desired = true;
        ask.add_query(Query::query(target.clone(), qtype));
        let socket = UdpSocket::bind("127.0.0.1:0").await.ok()?;
        socket.send_to(&ask.to_vec().ok()?, upstream).await.ok()?;
        let mut buffer = vec![0u8; 65_535];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer))
            .await
            .ok()?
            .ok()?;
        let more = Message::from_vec(&buffer[..n]).ok()?;
        message.metadata.response_code = more.metadata.response_code;
        message.answers.extend(more.answers);
        name = target;
    }
    message.to_vec().ok()
}
