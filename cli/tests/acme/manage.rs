//! Issue 27, the command-line tool `acme` (cli/), managing a
//! store: `renew` and `list` deciding with the CA's renewal information,
//! what `revoke` says of a certificate already revoked, the dns-01 lines of
//! a wildcard, and the hints after a refusal.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::{acme, acme_issue, start_test_ca_with, temp_dir};
use crate::tool::both;

// ---- Defect 19: renew and list decide with the CA's renewal information ----

/// Runs `acme <sub>` against the standalone test CA at `directory` with
/// the store `store`.
pub(crate) fn acme_at(
    directory: &str,
    root: &Path,
    store: &Path,
    sub: &[&str],
) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(acme());
    cmd.arg(sub[0])
        .args(["--directory", directory, "--root-ca"])
        .arg(root)
        .arg("--store")
        .arg(store)
        .args(&sub[1..])
        .stdin(Stdio::null());
    if matches!(sub[0], "issue" | "renew") {
        cmd.args(["--http-bind", "127.0.0.1", "--http-port", "0"]);
    }
    let output = cmd.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// With the CA's renewal window already open (`test_ca --ari-renew-after
/// 0`), `list` says the certificate is due (having asked the CA, and
/// recorded its answer) and `renew` renews it with one order that names the
/// certificate it replaces, as `issue --store` would; with the window an
/// hour ahead, `list` says it is valid and `renew` orders nothing; neither
/// asks again before the CA's time to.
#[tokio::test]
async fn renew_and_list_decide_with_the_cas_renewal_information() {
    for (after, due) in [("0", true), ("3600", false)] {
        let dir = temp_dir(&format!("acme-ari-{after}"));
        std::fs::create_dir_all(&dir).unwrap();
        let root = dir.join("root.pem");
        let store = dir.join("store");
        let (mut ca, directory) =
            start_test_ca_with(&root, &["--ari-renew-after".as_ref(), after.as_ref()]).await;
        let out = dir.join("out");
        let (code, _, stderr) = acme_at(
            &directory,
            &root,
            &store,
            &[
                "issue",
                "--domain",
                "ari.example",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("issued serial"), "{stderr}");
        let first_pem = std::fs::read_to_string(out.join("cert.pem")).unwrap();

        let (code, stdout, stderr) = acme_at(&directory, &root, &store, &["list"]);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(
            stdout.contains("renewal information: asked now: window"),
            "{stdout}"
        );
        if due {
            assert!(stdout.contains("state: due for renewal"), "{stdout}");
        } else {
            assert!(stdout.contains("state: valid"), "{stdout}");
        }

        // `list` recorded what the CA said: `renew` decides on it without
        // asking again before the CA's recheck time.
        let (code, _, stderr) = acme_at(&directory, &root, &store, &["renew"]);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!stderr.contains("renewalInfo"), "not asked again: {stderr}");
        if due {
            assert!(!stderr.contains("nothing due"), "{stderr}");
            let id = sturdy_acme::CertId::from_pem(&first_pem).unwrap();
            assert!(stderr.contains(&format!("replaces {id}")), "{stderr}");
            assert!(stderr.contains("ari.example: renewed, serial"), "{stderr}");
            assert!(stderr.contains("newOrder=1"), "one order: {stderr}");
            // Without a `list` first, `renew` asks the CA itself.
            let (code, _, stderr) = acme_at(
                &directory,
                &root,
                &store,
                &[
                    "issue",
                    "--domain",
                    "ari2.example",
                    "--out",
                    dir.join("out2").to_str().unwrap(),
                ],
            );
            assert_eq!(code, Some(0), "{stderr}");
            let (code, _, stderr) = acme_at(&directory, &root, &store, &["renew"]);
            assert_eq!(code, Some(0), "{stderr}");
            assert!(
                stderr.contains("renewalInfo="),
                "the CA was asked: {stderr}"
            );
            assert!(stderr.contains("ari2.example: renewed, serial"), "{stderr}");
        } else {
            assert!(
                stderr.contains("nothing due among 1 certificate(s)"),
                "{stderr}"
            );
            assert!(!stderr.contains("newOrder"), "no order: {stderr}");
        }
        ca.kill().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

// ---- Defect 20: what revoke, dns-01 and the hints say ----

/// A second `revoke` sends nothing and says the certificate was already
/// revoked, and when; the dns-01 lines name a wildcard as it was ordered.
#[tokio::test]
async fn a_second_revoke_says_it_was_already_revoked() {
    let dir = temp_dir("acme-revoke-twice");
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.join("root.pem");
    let store = dir.join("store");
    let (mut ca, directory) = start_test_ca_with(&root, &[]).await;
    let out = dir.join("out");
    let (code, _, stderr) = acme_at(
        &directory,
        &root,
        &store,
        &[
            "issue",
            "--domain",
            "rv.example",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let revoke = ["revoke", "--domain", "rv.example", "--reason", "superseded"];
    let (code, _, stderr) = acme_at(&directory, &root, &store, &revoke);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("revoked serial"), "{stderr}");
    let (code, _, stderr) = acme_at(&directory, &root, &store, &revoke);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("revoked serial"), "{stderr}");
    assert!(
        stderr.contains("was already revoked (recorded at 20")
            && stderr.contains("reason superseded: nothing sent to the CA"),
        "{stderr}"
    );
    ca.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The dns-01 lines name `*.d1.test` as ordered, not `d1.test` twice.
#[test]
fn dns01_lines_name_a_wildcard_as_ordered() {
    let out = temp_dir("acme-wildcard");
    let output = acme_issue()
        .args(["--directory", "embedded", "--challenge", "dns-01"])
        .args(["--domain", "d1.test", "--domain", "*.d1.test", "--out"])
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = both(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("answered dns-01 for *.d1.test"), "{text}");
    assert!(text.contains("answered dns-01 for d1.test"), "{text}");
    let _ = std::fs::remove_dir_all(&out);
}

/// When the CA refuses a revocation signed with one key, the hint says to
/// sign with the other; when it wants a contact, the hint says to give
/// `--contact`. (The CA's answers are scripted: 403 `unauthorized` on
/// revokeCert, 400 `invalidContact` on newAccount.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_with_a_hint_of_what_to_try() {
    use sturdy_acme::Endpoint;
    use sturdy_acme_testca::{CannedAnswer, Fault, FaultRule, TestCa, Trigger};
    let problem = |status: u16, kind: &str, detail: &str| {
        Fault::Canned(CannedAnswer {
            status,
            content_type: Some("application/problem+json".into()),
            body: serde_json::json!({
                "type": format!("urn:ietf:params:acme:error:{kind}"),
                "detail": detail,
                "status": status,
            })
            .to_string(),
        })
    };
    let refuses_revocation = TestCa::builder()
        .faults(vec![FaultRule::new(
            Endpoint::Revoke,
            Trigger::Always,
            problem(403, "unauthorized", "the requester is not authorized"),
        )])
        .start()
        .await
        .unwrap();
    let wants_contact = TestCa::builder()
        .faults(vec![FaultRule::new(
            Endpoint::NewAccount,
            Trigger::Always,
            problem(
                400,
                "invalidContact",
                "a contact e-mail address is required",
            ),
        )])
        .start()
        .await
        .unwrap();
    let dir = temp_dir("acme-hints");
    std::fs::create_dir_all(&dir).unwrap();
    let run = |ca: &TestCa, name: &str, sub: Vec<String>| {
        let root = dir.join(format!("root-{name}.pem"));
        std::fs::write(&root, ca.root_pem()).unwrap();
        let store = dir.join(format!("store-{name}"));
        let directory = ca.directory_url();
        tokio::task::spawn_blocking(move || {
            let sub: Vec<&str> = sub.iter().map(String::as_str).collect();
            acme_at(&directory, &root, &store, &sub)
        })
    };
    let out = dir.join("out").to_str().unwrap().to_owned();
    let issue = |domain: &str| -> Vec<String> {
        ["issue", "--domain", domain, "--out", &out]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let (code, _, stderr) = run(&refuses_revocation, "revoke", issue("hint.example"))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let revoke = |extra: &[&str]| -> Vec<String> {
        [&["revoke", "--domain", "hint.example"][..], extra]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let (code, _, stderr) = run(&refuses_revocation, "revoke", revoke(&["--with-cert-key"]))
        .await
        .unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("hint: the CA refused the revocation signed with the certificate's key: try again without --with-cert-key"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&refuses_revocation, "revoke", revoke(&[]))
        .await
        .unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("try again with --with-cert-key"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&wants_contact, "contact", issue("contact.example"))
        .await
        .unwrap();
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("hint: the CA wants a contact for the account: add --contact"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
