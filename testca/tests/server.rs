//! `sturdy-test-ca`, the standalone server, run as another project's CI
//! runs it: a separate process on a free port, its root written to a file,
//! its directory URL on stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncBufReadExt;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sturdy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

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
