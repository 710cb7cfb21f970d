//! `sturdy-test-ca`, the standalone server, run as another project's CI
//! runs it: a separate process on a free port, its root written to a file,
//! its directory URL on stdout.

use std::path::Path;
use std::process::Stdio;

use sturdy_acme_test_support::temp_dir;
use tokio::io::AsyncBufReadExt;

/// Starts the server on a free port, its root written to `root_path`;
/// returns the process and its directory URL.
async fn start_test_ca(root_path: &Path) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sturdy-test-ca"))
        .args(["--port", "0", "--root-out"])
        .arg(root_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    (child, line.trim().to_owned())
}

#[tokio::test]
async fn the_server_binary_serves_other_processes() {
    let dir = temp_dir("test-ca");
    std::fs::create_dir_all(&dir).unwrap();
    let root_path = dir.join("root.pem");
    let (mut child, directory) = start_test_ca(&root_path).await;
    assert!(directory.starts_with("https://127.0.0.1:"), "{directory:?}");
    let root = std::fs::read_to_string(&root_path).unwrap();
    let client = sturdy_acme::Client::builder(&directory)
        .root_certificates_pem(&root)
        .built_in_roots(false)
        .build()
        .await
        .unwrap();
    let account =
        sturdy_acme_test_support::suite::account(&client, sturdy_acme::KeyAlgorithm::Es256).await;
    let mut order = account
        .new_order(&sturdy_acme::NewOrder::for_names(&["other.example"]).unwrap())
        .await
        .unwrap();
    for authz in order.authorizations().await.unwrap() {
        authz.challenges()[0].clone().respond().await.unwrap();
    }
    order.wait_ready().await.unwrap();
    let key = sturdy_acme::CertificateKey::generate(Default::default()).unwrap();
    order.finalize(sturdy_acme::Csr::Key(&key)).await.unwrap();
    let chain = order.certificate().await.unwrap();
    sturdy_acme_test_support::verify::verify_chain(chain.pem(), &[root], &["other.example"], &[]);
    child.kill().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One HTTP/1.1 request to the management interface; the status and body.
async fn management(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.strip_prefix("http://").expect("an http URL");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// The management interface answers while the server runs (issue 28):
/// the ledger with the identifier sets issued twice, the limits table it
/// enforces (and announces), CAA and the fault script changed at run time,
/// the root; every refusal is a typed JSON error.
#[tokio::test]
async fn the_management_interface_answers_and_changes_the_ca_while_it_runs() {
    let dir = temp_dir("test-ca-management");
    std::fs::create_dir_all(&dir).unwrap();
    let root_path = dir.join("root.pem");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sturdy-test-ca"))
        .args([
            "--port",
            "0",
            "--management-port",
            "0",
            "--rate-limits",
            "lets-encrypt",
        ])
        .arg("--root-out")
        .arg(&root_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let directory = lines.next_line().await.unwrap().unwrap();
    let base = lines.next_line().await.unwrap().unwrap();
    assert!(base.starts_with("http://127.0.0.1:"), "{base:?}");
    let root = std::fs::read_to_string(&root_path).unwrap();
    let client = sturdy_acme::Client::builder(&directory)
        .root_certificates_pem(&root)
        .built_in_roots(false)
        .retry_policy(sturdy_acme::RetryPolicy::no_retries())
        .build()
        .await
        .unwrap();
    // The table it enforces, announced in the directory and served here.
    let (status, limits) = management(&base, "GET", "/rate-limits", "").await;
    assert_eq!(status, 200, "{limits}");
    let limits: sturdy_acme::RateLimits = serde_json::from_str(&limits).unwrap();
    assert_eq!(limits, sturdy_acme::RateLimits::lets_encrypt());
    assert_eq!(
        sturdy_acme::RateLimits::announced(&client.directory().meta),
        Some(limits)
    );
    let (status, served_root) = management(&base, "GET", "/root", "").await;
    assert_eq!((status, served_root.as_str()), (200, root.as_str()));

    let account =
        sturdy_acme_test_support::suite::account(&client, sturdy_acme::KeyAlgorithm::Es256).await;
    let issue = |name: &'static str| {
        let account = account.clone();
        async move {
            let mut order = account
                .new_order(&sturdy_acme::NewOrder::for_names(&[name])?)
                .await?;
            for authz in order.authorizations().await? {
                authz.challenges()[0].clone().respond().await?;
            }
            order.wait_ready().await?;
            let key = sturdy_acme::CertificateKey::generate(Default::default())?;
            order.finalize(sturdy_acme::Csr::Key(&key)).await?;
            order.certificate().await.map(|_| ())
        }
    };
    issue("twice.example").await.unwrap();
    issue("twice.example").await.unwrap();
    issue("once.example").await.unwrap();
    let (status, ledger) = management(&base, "GET", "/ledger", "").await;
    assert_eq!(status, 200, "{ledger}");
    let ledger: serde_json::Value = serde_json::from_str(&ledger).unwrap();
    assert_eq!(
        ledger["certificates"].as_array().unwrap().len(),
        3,
        "{ledger}"
    );
    assert_eq!(
        ledger["duplicates"],
        serde_json::json!([{"names": ["twice.example"], "issued": 2}]),
        "{ledger}"
    );
    assert_eq!(ledger["requests"]["newOrder"], 3, "{ledger}");
    assert_eq!(ledger["finalizations"].as_array().unwrap().len(), 3);

    // CAA changed while it runs: the next order for the name is refused.
    let (status, body) = management(&base, "PUT", "/caa/forbidden.example", "\"forbid\"").await;
    assert_eq!(status, 200, "{body}");
    let err = issue("forbidden.example").await.unwrap_err();
    assert_eq!(
        err.problem_type(),
        Some(&sturdy_acme::ProblemType::Caa),
        "{err}"
    );
    // The fault script replaced while it runs: the next newOrder is an
    // empty 500.
    let script = r#"[{"endpoint": "newOrder", "trigger": {"nth": 1}, "fault": "empty500"}]"#;
    let (status, body) = management(&base, "PUT", "/faults", script).await;
    assert_eq!(status, 200, "{body}");
    let err = issue("faulted.example").await.unwrap_err();
    assert_eq!(err.status(), Some(500), "{err}");
    let (status, _) = management(&base, "PUT", "/faults", "[]").await;
    assert_eq!(status, 200);
    issue("faulted.example").await.unwrap();

    // Refusals: typed, never a change.
    let (status, body) = management(&base, "PUT", "/faults", "{not json").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a fault script"), "{body}");
    let (status, body) = management(&base, "PUT", "/caa/x.example", "\"sometimes\"").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = management(&base, "POST", "/ledger", "").await;
    assert_eq!(status, 405);
    let (status, _) = management(&base, "GET", "/nothing", "").await;
    assert_eq!(status, 404);
    child.kill().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
