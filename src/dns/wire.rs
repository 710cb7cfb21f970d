//! One DNS exchange with one server: UDP first, TCP when the answer is
//! truncated (RFC 1035 §4.2, RFC 7766), a deadline over the whole exchange,
//! and the checks that keep a stray or forged datagram out (source address,
//! message ID, QR bit).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::DnsError;

/// The largest DNS message (both transports carry a 16-bit length at most).
const MAX_MESSAGE: usize = 65_535;

/// What came back from one exchange.
pub(crate) struct RawAnswer {
    /// The response message, as sent by the server.
    pub bytes: Vec<u8>,
    /// From sending the query to reading the whole answer.
    pub latency: Duration,
}

/// Sends `request` (an encoded message whose ID is `id`) to `server` and
/// returns its answer. UDP unless `tcp`; a UDP answer with the TC bit set is
/// asked again over TCP. `timeout` bounds the whole exchange.
///
/// `what` names the query in errors ("CAA example.com").
pub(crate) async fn exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    tcp: bool,
    timeout: Duration,
    what: &str,
) -> Result<RawAnswer, DnsError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let io_error = |source: io::Error| DnsError::Io {
        server,
        query: what.to_owned(),
        source,
    };
    let timed_out = || DnsError::Timeout {
        server,
        query: what.to_owned(),
        after: started.elapsed(),
    };
    let bytes = if tcp {
        tokio::time::timeout_at(deadline, over_tcp(server, request))
            .await
            .map_err(|_| timed_out())?
            .map_err(io_error)?
    } else {
        let resend = (timeout / UDP_TRIES).max(MIN_RESEND);
        let udp = tokio::time::timeout_at(deadline, over_udp(server, request, id, resend))
            .await
            .map_err(|_| timed_out())?
            .map_err(io_error)?;
        if truncated(&udp) {
            tokio::time::timeout_at(deadline, over_tcp(server, request))
                .await
                .map_err(|_| timed_out())?
                .map_err(io_error)?
        } else {
            udp
        }
    };
    check_header(&bytes, id).map_err(|reason| DnsError::Malformed {
        server,
        query: what.to_owned(),
        reason,
    })?;
    Ok(RawAnswer {
        bytes,
        latency: started.elapsed(),
    })
}

/// How many times a UDP question is sent within its deadline: a datagram
/// lost on the way is asked again, as resolvers do, rather than making one
/// lost packet a timeout.
const UDP_TRIES: u32 = 3;

/// The shortest pause before a UDP question is sent again.
const MIN_RESEND: Duration = Duration::from_millis(50);

/// Sends `request` and waits for the answer to `id`, sending it again each
/// `resend` (the caller's deadline ends the wait).
async fn over_udp(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    resend: Duration,
) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(request).await?;
    let mut buffer = vec![0u8; MAX_MESSAGE];
    let mut next_send = tokio::time::Instant::now() + resend;
    loop {
        // A connected socket only receives from `server`; anything not
        // answering our ID (a late answer to an earlier query) is skipped.
        match tokio::time::timeout_at(next_send, socket.recv(&mut buffer)).await {
            Ok(received) => {
                let n = received?;
                if n >= 2 && u16::from_be_bytes([buffer[0], buffer[1]]) == id {
                    buffer.truncate(n);
                    return Ok(buffer);
                }
            }
            Err(_) => {
                socket.send(request).await?;
                next_send = tokio::time::Instant::now() + resend;
            }
        }
    }
}

async fn over_tcp(server: SocketAddr, request: &[u8]) -> io::Result<Vec<u8>> {
    let length = u16::try_from(request.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "DNS message over 64 KiB"))?;
    let mut stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await?;
    let length = stream.read_u16().await? as usize;
    let mut buffer = vec![0u8; length];
    stream.read_exact(&mut buffer).await?;
    Ok(buffer)
}

/// The TC bit of an encoded message.
fn truncated(message: &[u8]) -> bool {
    message.len() >= 3 && message[2] & 0x02 != 0
}

/// A response to our query: 12-byte header at least, our ID, QR set.
pub(crate) fn check_header(message: &[u8], id: u16) -> Result<(), String> {
    if message.len() < 12 {
        return Err(format!(
            "{} bytes, shorter than a DNS header",
            message.len()
        ));
    }
    let got = u16::from_be_bytes([message[0], message[1]]);
    if got != id {
        return Err(format!("message ID {got}, expected {id}"));
    }
    if message[2] & 0x80 == 0 {
        return Err("not a response (QR bit clear)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        assert!(check_header(&[0; 4], 0).unwrap_err().contains("shorter"));
        let mut m = [0u8; 12];
        m[0] = 0x12;
        m[1] = 0x34;
        assert!(check_header(&m, 0x1234).unwrap_err().contains("QR"));
        m[2] = 0x80;
        check_header(&m, 0x1234).unwrap();
        assert!(check_header(&m, 1).unwrap_err().contains("ID"));
        assert!(!truncated(&m));
        m[2] |= 0x02;
        assert!(truncated(&m));
    }

    #[tokio::test]
    async fn a_lost_datagram_is_sent_again() {
        // A server that ignores the first copy of each question.
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let answering = tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            let (_, _) = server.recv_from(&mut buffer).await.unwrap();
            let (n, from) = server.recv_from(&mut buffer).await.unwrap();
            buffer[2] |= 0x80;
            server.send_to(&buffer[..n], from).await.unwrap();
        });
        let request = [0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let answer = exchange(
            addr,
            &request,
            0x1234,
            false,
            Duration::from_millis(600),
            "CAA example.test",
        )
        .await
        .unwrap();
        assert_eq!(answer.bytes[..2], [0x12, 0x34]);
        answering.await.unwrap();
    }

    #[tokio::test]
    async fn silence_is_a_timeout_naming_the_server() {
        // A bound socket that never answers.
        let mute = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = mute.local_addr().unwrap();
        let err = exchange(
            server,
            &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            1,
            false,
            Duration::from_millis(100),
            "CAA example.test",
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(err, DnsError::Timeout { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&server.to_string()) && text.contains("CAA example.test"),
            "{text}"
        );
    }
}
