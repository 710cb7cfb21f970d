//! `acme issue` (and its subcommands sharing a store) run as a person runs
//! them, against the embedded test CA in the tool's own process or the
//! test CA served beside it.

use crate::common;
use crate::harness::{acme, acme_issue, start_test_ca, start_test_ca_with, temp_dir};

use std::process::{Command, Stdio};

use common::verify;

#[test]
fn issue_against_the_embedded_ca_writes_a_verifying_certificate() {
    for challenge in ["http-01", "dns-01"] {
        let out = temp_dir(&format!("issue-{challenge}"));
        let output = acme_issue()
            .args(["--directory", "embedded", "--domain", "demo.example"])
            .args(["--domain", "*.demo.example", "--challenge", challenge])
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        // dns-01 can do the wildcard; http-01 cannot (the CA offers only dns-01).
        if challenge == "http-01" {
            assert!(!output.status.success(), "{stderr}");
            assert!(stderr.contains("offers no http-01 challenge"), "{stderr}");
            continue;
        }
        assert!(output.status.success(), "{stderr}");
        assert!(stderr.contains("[sturdy-acme] wrote"), "{stderr}");
        let root = std::fs::read_to_string(out.join("ca-root.pem")).unwrap();
        let full = std::fs::read_to_string(out.join("fullchain.pem")).unwrap();
        verify::verify_chain(&full, &[root], &["demo.example", "x.demo.example"], &[]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(out.join("key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&out).unwrap();
    }

    let out = temp_dir("issue-http");
    let output = acme_issue()
        .args(["--directory", "embedded", "--domain", "demo.example"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let root = std::fs::read_to_string(out.join("ca-root.pem")).unwrap();
    let full = std::fs::read_to_string(out.join("fullchain.pem")).unwrap();
    verify::verify_chain(&full, &[root], &["demo.example"], &[]);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn issue_fails_clearly_on_bad_input() {
    let output = acme_issue()
        .args(["--directory", "embedded", "--domain", "bad..name"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Issue 17: exit status per class; a bad name is invalid input.
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid DNS name"), "{stderr}");

    let output = acme_issue()
        .args([
            "--directory",
            "https://127.0.0.1:1/dir",
            "--domain",
            "a.example",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // No CA listening: the network kept failing after every retry.
    assert_eq!(output.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("error:"), "{stderr}");
}

/// Two runs against one CA (the standalone test CA): the second returns the
/// stored certificate without an order. A run against another CA (a fresh
/// embedded one) never gets the first CA's certificate from the same store.
#[tokio::test]
async fn issue_with_a_store_reuses_the_stored_certificate() {
    let store = temp_dir("issue-store");
    let out = temp_dir("issue-store-out");
    std::fs::create_dir_all(&out).unwrap();
    let root_path = out.join("test-ca-root.pem");
    let (mut ca, directory) = start_test_ca(&root_path).await;
    let run = |directory: &str| {
        let mut cmd = acme_issue();
        cmd.args(["--directory", directory, "--domain", "stored.example"])
            .args(["--http-bind", "127.0.0.1", "--http-port", "0"])
            .arg("--store")
            .arg(&store)
            .arg("--out")
            .arg(&out);
        if directory != "embedded" {
            cmd.arg("--root-ca").arg(&root_path);
        }
        cmd.output().unwrap()
    };
    let first = run(&directory);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(stderr.contains("issued serial"), "{stderr}");
    let second = run(&directory);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(stderr.contains("is still good: not due until"), "{stderr}");
    assert!(stderr.contains("no order sent"), "{stderr}");
    assert!(!stderr.contains("newOrder="), "no order request: {stderr}");
    // Another CA, the same store: its own certificate, ordered there.
    let other = run("embedded");
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(other.status.success(), "{stderr}");
    assert!(stderr.contains("issued serial"), "{stderr}");
    ca.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&store);
    let _ = std::fs::remove_dir_all(&out);
}

/// Issue 11: against `test_ca --ari-renew-after 0`, a second `issue
/// --store` renews at once with one order naming the certificate it
/// replaces (2 certificates in all); with `--ari-renew-after 3600` the
/// second run sends no order and says until when it is not due.
#[tokio::test]
async fn issue_with_a_store_renews_when_ari_says_so() {
    for (after, renews) in [("0", true), ("3600", false)] {
        let store = temp_dir(&format!("ari-store-{after}"));
        let out = temp_dir(&format!("ari-out-{after}"));
        std::fs::create_dir_all(&out).unwrap();
        let root_path = out.join("test-ca-root.pem");
        let (mut ca, directory) =
            start_test_ca_with(&root_path, &["--ari-renew-after".as_ref(), after.as_ref()]).await;
        let run = || {
            let output = std::process::Command::new(acme())
                .args([
                    "issue",
                    "--directory",
                    &directory,
                    "--domain",
                    "ari.example",
                ])
                .args(["--http-bind", "127.0.0.1", "--http-port", "0", "--root-ca"])
                .arg(&root_path)
                .arg("--store")
                .arg(&store)
                .arg("--out")
                .arg(&out)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(output.status.success(), "{stderr}");
            stderr
        };
        let first = run();
        assert!(first.contains("issued serial"), "{first}");
        let first_pem = std::fs::read_to_string(out.join("cert.pem")).unwrap();
        let second = run();
        if renews {
            let id = sturdy_acme::CertId::from_pem(&first_pem).unwrap();
            assert!(
                second.contains(&format!("replaces {id}")),
                "the renewal names the certificate it replaces: {second}"
            );
            assert!(second.contains("newOrder=1"), "one order: {second}");
            assert!(second.contains("issued serial"), "{second}");
            let second_pem = std::fs::read_to_string(out.join("cert.pem")).unwrap();
            assert_ne!(first_pem, second_pem, "2 certificates in all");
        } else {
            assert!(second.contains("not due until"), "{second}");
            assert!(!second.contains("newOrder="), "no order: {second}");
            assert!(!second.contains("replaces"), "{second}");
        }
        ca.kill().await.unwrap();
        let _ = std::fs::remove_dir_all(&store);
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn issue_works_unchanged_against_an_embedded_v1_ca() {
    for challenge in ["http-01", "dns-01"] {
        let out = temp_dir(&format!("issue-v1-{challenge}"));
        let output = acme_issue()
            .args(["--directory", "embedded-v1", "--domain", "v1.example"])
            .args(["--domain", "www.v1.example", "--challenge", challenge])
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(stderr.contains("(ACME v1)"), "{stderr}");
        assert!(stderr.contains("finalize=1"), "one new-cert: {stderr}");
        let root = std::fs::read_to_string(out.join("ca-root.pem")).unwrap();
        let full = std::fs::read_to_string(out.join("fullchain.pem")).unwrap();
        assert_eq!(common::pem_certs(&full).len(), 2, "leaf + issuer");
        verify::verify_chain(&full, &[root], &["v1.example", "www.v1.example"], &[]);
        std::fs::remove_dir_all(&out).unwrap();
    }

    // The exactly-once issuer too (its journal keeps the v1 order's URL).
    let store = temp_dir("issue-v1-store");
    let out = temp_dir("issue-v1-store-out");
    let output = acme_issue()
        .args([
            "--directory",
            "embedded-v1",
            "--domain",
            "stored.v1.example",
        ])
        .arg("--store")
        .arg(&store)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("issued serial"), "{stderr}");
    let _ = std::fs::remove_dir_all(&store);
    let _ = std::fs::remove_dir_all(&out);
}

/// Issue 17: the EAB HMAC key comes from a file or the environment, not the
/// command line (the old flag still works, with a warning); with
/// `--directory embedded` the test CA requires and verifies the binding.
#[test]
fn issue_takes_the_eab_key_from_a_file_or_the_environment() {
    let hmac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let run = |name: &str, extra: &[&str], env: Option<&str>| {
        let out = temp_dir(&format!("eab-{name}"));
        let mut cmd = acme_issue();
        cmd.args(["--directory", "embedded", "--domain", "eab.example"])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .env_remove("STURDY_ACME_EAB_HMAC_KEY")
            .stdin(Stdio::null());
        if let Some(v) = env {
            cmd.env("STURDY_ACME_EAB_HMAC_KEY", v);
        }
        let output = cmd.output().unwrap();
        let _ = std::fs::remove_dir_all(&out);
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let key_file = temp_dir("eab-key").with_extension("b64");
    std::fs::write(&key_file, format!("{hmac}\n")).unwrap();
    let file = key_file.to_str().unwrap();

    let (ok, stderr) = run(
        "file",
        &["--eab-kid", "kid-1", "--eab-hmac-key-file", file],
        None,
    );
    assert!(ok, "{stderr}");
    assert!(!stderr.contains(hmac), "the key was printed: {stderr}");
    let (ok, stderr) = run("env", &["--eab-kid", "kid-1"], Some(hmac));
    assert!(ok, "{stderr}");
    let (ok, stderr) = run(
        "flag",
        &["--eab-kid", "kid-1", "--eab-hmac-key", hmac],
        None,
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("warning: --eab-hmac-key"), "{stderr}");
    let (ok, stderr) = run("missing", &["--eab-kid", "kid-1"], None);
    assert!(!ok && stderr.contains("--eab-hmac-key-file"), "{stderr}");
    let (ok, stderr) = run(
        "unreadable",
        &[
            "--eab-kid",
            "kid-1",
            "--eab-hmac-key-file",
            "/nonexistent/eab.key",
        ],
        None,
    );
    assert!(!ok && stderr.contains("/nonexistent/eab.key"), "{stderr}");
    let _ = std::fs::remove_file(&key_file);
}

/// Issue 17: the tool's exit status says what kind of failure it was, and
/// a rate limit says when it lifts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_exits_with_a_status_per_error_class() {
    use sturdy_acme::Endpoint;
    use sturdy_acme_testca::{CaaPolicy, Fault, FaultRule, TestCa, Trigger};

    let ca = TestCa::builder()
        .faults(vec![FaultRule::new(
            Endpoint::NewOrder,
            Trigger::Always,
            Fault::RateLimited {
                retry_after_secs: 3600,
            },
        )])
        .start()
        .await
        .unwrap();
    let caa = TestCa::builder()
        .caa("forbidden.example", CaaPolicy::Forbid)
        .start()
        .await
        .unwrap();
    let dir = temp_dir("exit-codes");
    std::fs::create_dir_all(&dir).unwrap();
    let run = |directory: String, root: String, domain: &'static str| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let root_path = dir.join(format!("root-{domain}.pem"));
            std::fs::write(&root_path, root).unwrap();
            let output = acme_issue()
                .args(["--directory", &directory, "--domain", domain])
                .args(["--http-bind", "127.0.0.1", "--http-port", "0"])
                .arg("--root-ca")
                .arg(&root_path)
                .arg("--out")
                .arg(dir.join(domain))
                .stdin(Stdio::null())
                .output()
                .unwrap();
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        })
    };
    let (code, stderr) = run(ca.directory_url(), ca.root_pem(), "limited.example")
        .await
        .unwrap();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("exit 3: rate limited") && stderr.contains("until 20"),
        "{stderr}"
    );
    let (code, stderr) = run(caa.directory_url(), caa.root_pem(), "forbidden.example")
        .await
        .unwrap();
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("the domain's DNS"), "{stderr}");
    let (code, stderr) = run(caa.directory_url(), caa.root_pem(), "exa mple.com")
        .await
        .unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 17: every wait is a line before it starts, from the library's
/// events: the founding story's CAA recheck timeout at finalize (plain),
/// and the same run as JSON lines that parse and carry each retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_explains_every_wait_in_plain_and_json() {
    use sturdy_acme_testca::{CaaPolicy, TestCa};

    let dir = temp_dir("waits");
    std::fs::create_dir_all(&dir).unwrap();
    let run = |format: &'static str| {
        let dir = dir.clone();
        async move {
            let ca = TestCa::builder()
                .caa("slow-dns.example", CaaPolicy::TimeoutTimes(1))
                // Boulder before CAARechecksFailOrder (the order stays
                // ready); issue 27 #11: the default now fails the order.
                .caa_recheck_fails_order(false)
                .start()
                .await
                .unwrap();
            let root_path = dir.join(format!("root-{format}.pem"));
            std::fs::write(&root_path, ca.root_pem()).unwrap();
            let out = dir.join(format);
            let directory = ca.directory_url();
            let (status, stderr) = tokio::task::spawn_blocking(move || {
                let output = acme_issue()
                    .args(["--directory", &directory, "--domain", "slow-dns.example"])
                    .args(["--http-bind", "127.0.0.1", "--http-port", "0"])
                    .args(["--log-format", format])
                    .arg("--root-ca")
                    .arg(&root_path)
                    .arg("--out")
                    .arg(&out)
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                (
                    output.status,
                    String::from_utf8_lossy(&output.stderr).into_owned(),
                )
            })
            .await
            .unwrap();
            assert!(status.success(), "{stderr}");
            eprintln!("--- {format} ---\n{stderr}");
            if format == "plain" {
                let wait = stderr
                    .lines()
                    .find(|l| l.contains("CAA recheck failed at the CA for slow-dns.example"))
                    .unwrap_or_else(|| panic!("no wait line: {stderr}"));
                assert!(wait.contains("the domain's DNS, not this tool"), "{wait}");
                assert!(
                    wait.contains("retrying at 20") && wait.contains("attempt 2 of 4"),
                    "{wait}"
                );
                // The line comes before the step that follows the wait.
                let at = stderr.find(wait).unwrap();
                assert!(stderr[at..].contains("wrote"), "{stderr}");
            } else {
                let mut retries = 0;
                for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
                    let value: serde_json::Value = serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                    if value["event"] == "retry" {
                        retries += 1;
                        assert_eq!(value["class"], "caa", "{line}");
                        assert!(
                            value["retry_at"].as_str().unwrap().starts_with("20"),
                            "{line}"
                        );
                    }
                }
                assert_eq!(retries, 1, "{stderr}");
            }
        }
    };
    // Both at once: each waits the CAA schedule's first delay (about 30 s).
    tokio::join!(run("plain"), run("json"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 17: every subcommand of `acme`, as processes sharing one
/// store against the standalone test CA: issue → list → renew (nothing
/// due) → account show / update-contact / rotate-key → revoke → list shows
/// it revoked → renew replaces it → account deactivate.
#[tokio::test]
async fn acme_subcommands_share_one_store() {
    let store = temp_dir("acme-store");
    let out = temp_dir("acme-out");
    std::fs::create_dir_all(&out).unwrap();
    let root_path = out.join("test-ca-root.pem");
    let (mut ca, directory) = start_test_ca(&root_path).await;
    let acme = |args: &[&str]| {
        let mut cmd = Command::new(acme());
        cmd.arg(args[0])
            .args(["--directory", &directory])
            .arg("--root-ca")
            .arg(&root_path)
            .arg("--store")
            .arg(&store)
            .args(&args[1..])
            .stdin(Stdio::null());
        let output = cmd.output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let serial_in = |stderr: &str, after: &str| -> String {
        let at = stderr
            .find(after)
            .unwrap_or_else(|| panic!("{after:?} in {stderr}"));
        stderr[at + after.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };

    // issue
    let (code, _, stderr) = acme(&[
        "issue",
        "--domain",
        "sub.example",
        "--http-bind",
        "127.0.0.1",
        "--http-port",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let first = serial_in(&stderr, "issued serial ");
    let full = std::fs::read_to_string(out.join("fullchain.pem")).unwrap();
    let root = std::fs::read_to_string(&root_path).unwrap();
    verify::verify_chain(&full, &[root], &["sub.example"], &[]);

    // list, plain and JSON
    let (code, stdout, stderr) = acme(&["list"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("sub.example"), "{stdout}");
    assert!(stdout.contains(&format!("serial {first}")), "{stdout}");
    assert!(stdout.contains("state: valid"), "{stdout}");
    assert!(stdout.contains(&format!("ca {directory}")), "{stdout}");
    let (code, stdout, stderr) = acme(&["list", "--log-format", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(rows.len(), 1, "{stdout}");
    assert_eq!(rows[0]["serial"], first.as_str());
    assert_eq!(rows[0]["names"], serde_json::json!(["sub.example"]));
    assert_eq!(rows[0]["revoked"], false);
    assert!(rows[0]["renewal_due"].is_string(), "{stdout}");

    // renew: nothing due
    let (code, _, stderr) = acme(&["renew", "--http-bind", "127.0.0.1", "--http-port", "0"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("nothing due among 1 certificate(s)"),
        "{stderr}"
    );
    assert!(!stderr.contains("newOrder="), "no order: {stderr}");

    // account: show, update-contact, rotate-key (the store keeps the new key)
    let (code, stdout, stderr) = acme(&["account", "show"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("status valid"), "{stdout}");
    let thumbprint = |stdout: &str| {
        serial_in(stdout, "(thumbprint ")
            .trim_end_matches(')')
            .to_owned()
    };
    let before = thumbprint(&stdout);
    let (code, stdout, stderr) = acme(&["account", "update-contact", "--email", "ops@sub.example"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("contact mailto:ops@sub.example"),
        "{stdout}"
    );
    let (code, _, stderr) = acme(&["account", "rotate-key", "--key-type", "es384"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("account key rolled over"), "{stderr}");
    let (code, stdout, stderr) = acme(&["account", "show"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("key ES384"), "{stdout}");
    assert_ne!(thumbprint(&stdout), before, "{stdout}");
    assert!(
        stdout.contains("contact mailto:ops@sub.example"),
        "{stdout}"
    );

    // revoke (signed with the rotated account key), then list shows it
    let (code, _, stderr) = acme(&[
        "revoke",
        "--domain",
        "sub.example",
        "--reason",
        "superseded",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("revoked serial {first}")),
        "{stderr}"
    );
    let (code, stdout, stderr) = acme(&["list"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("state: revoked at"), "{stdout}");
    // The CA agrees: revoking again with the certificate's key is refused
    // there as already revoked, and the store keeps the record.
    let (code, _, stderr) = acme(&["revoke", "--domain", "sub.example", "--with-cert-key"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = acme(&["revoke", "--domain", "nothing.example"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no certificate is stored"), "{stderr}");

    // renew: the revoked certificate is replaced
    let (code, _, stderr) = acme(&["renew", "--http-bind", "127.0.0.1", "--http-port", "0"]);
    assert_eq!(code, Some(0), "{stderr}");
    let second = serial_in(&stderr, "sub.example: renewed, serial ");
    assert_ne!(second, first);
    let (_, stdout, _) = acme(&["list"]);
    assert!(stdout.contains(&format!("serial {second}")), "{stdout}");
    assert!(stdout.contains("state: valid"), "{stdout}");

    // account deactivate: refused without --yes, then done
    let (code, _, stderr) = acme(&["account", "deactivate"]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, stdout, stderr) = acme(&["account", "deactivate", "--yes"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("status deactivated"), "{stdout}");

    ca.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&store);
    let _ = std::fs::remove_dir_all(&out);
}

/// Issue 17: on a terminal a long wait counts down on one rewritten line;
/// without one (a pipe) the output has no terminal control codes. The
/// terminal is `script(1)`'s pseudo-terminal (util-linux, always there on
/// Debian); the wait is a 503 with Retry-After 4 on newOrder.
#[tokio::test]
async fn on_a_terminal_a_long_wait_counts_down() {
    let dir = temp_dir("acme-tty");
    std::fs::create_dir_all(&dir).unwrap();
    let faults = dir.join("faults.json");
    std::fs::write(
        &faults,
        r#"[{"endpoint": "newOrder", "trigger": {"nth": 1},
             "fault": {"unavailable": {"retry_after": {"seconds": 4}}}}]"#,
    )
    .unwrap();
    let root = dir.join("root.pem");
    let (mut ca, directory) =
        start_test_ca_with(&root, &["--faults".as_ref(), faults.as_os_str()]).await;
    let acme = acme();
    let command = |domain: &str| {
        format!(
            "{} issue --directory {directory} --root-ca {} --domain {domain} \
             --http-bind 127.0.0.1 --http-port 0 --out {}",
            acme.display(),
            root.display(),
            dir.join("out").display()
        )
    };
    let on_tty = Command::new("script")
        .args(["-qec", &command("tty.example"), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    let shown = String::from_utf8_lossy(&on_tty.stdout);
    assert!(on_tty.status.success(), "{shown}");
    assert!(
        shown.contains("the CA asked for a pause (503): every request to newOrder waits until"),
        "{shown}"
    );
    assert!(
        shown.contains("\r\x1b[2K[sturdy-acme]   waiting for "),
        "{shown:?}"
    );
    assert!(shown.contains(" left"), "{shown:?}");
    assert!(
        shown.contains("issued serial") || shown.contains("certificate "),
        "{shown}"
    );

    // The same wait into a pipe: plain lines only.
    let faults_again = Command::new(&acme)
        .args(["issue", "--directory", &directory, "--root-ca"])
        .arg(&root)
        .args(["--domain", "pipe.example", "--http-bind", "127.0.0.1"])
        .args(["--http-port", "0", "--out"])
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let piped = String::from_utf8_lossy(&faults_again.stderr);
    assert!(faults_again.status.success(), "{piped}");
    assert!(!piped.contains('\x1b'), "{piped:?}");
    ca.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
