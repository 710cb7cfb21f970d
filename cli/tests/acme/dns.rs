//! `acme issue` with a real Knot DNS as its DNS: the CAA pre-flight
//! (`--check`) for each case, and a dns-01 issuance by RFC 2136 through the
//! embedded CA validating at the lab.

use std::time::Duration;

use sturdy_acme_test_support::knot::DnsLab;

/// The `issue` tool, with the lab as its DNS: `--check` for each CAA case,
/// and a dns-01 issuance by RFC 2136 through the embedded CA validating at
/// the lab.
#[tokio::test]
async fn the_issue_tool_checks_and_issues_through_rfc2136() {
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let exe = crate::harness::acme();
    let dns_server = lab.resolver().to_string();
    let run = |args: Vec<String>| {
        let exe = exe.clone();
        let dns_server = dns_server.clone();
        let key = lab.tsig_key();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(exe)
                .arg("issue")
                .args(["--directory", "embedded", "--challenge", "dns-01"])
                .args(["--dns-server", &dns_server])
                .env("STURDY_ACME_TSIG_KEY", key)
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        })
    };
    let out = std::env::temp_dir().join(format!("sturdy-dns-tool-{}", std::process::id()));
    let out_arg = out.to_string_lossy().into_owned();
    let check = |domain: &str| {
        run(vec![
            "--check".into(),
            "--domain".into(),
            domain.into(),
            "--out".into(),
            out_arg.clone(),
        ])
    };
    lab.proxy().delay_caa(Duration::from_millis(30));
    for (domain, code, expect) in [
        (
            "allowed.caa.test",
            0,
            "allowed by 0 issue \"sturdy-acme.test\"",
        ),
        ("other.caa.test", 4, "names other-ca.example"),
        ("*.wild.caa.test", 4, "issuewild decides"),
        ("account.caa.test", 4, "there is no account yet to match"),
        ("wildonly.caa.test", 0, "restrict nothing here"),
        ("*.wildonly.caa.test", 4, "issuewild \";\" permits no CA"),
        ("dnsonly.caa.test", 0, "validationmethods=dns-01"),
        (
            "methods.caa.test",
            4,
            "validationmethods=http-01 excludes dns-01",
        ),
        ("critical.caa.test", 4, "issuer-critical"),
        ("aliased.caa.test", 4, "CNAME to aliased.caa-target.test"),
        ("none.caa.test", 0, "no CAA records"),
        ("www.slow.test", 0, "ns.slow.test"),
        (
            "alias.example.test",
            0,
            "delegated by CNAME to alias.acme-delegated.test",
        ),
    ] {
        let output = check(domain).await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("$ issue --check --domain {domain}\n{stdout}");
        assert_eq!(
            output.status.code(),
            Some(code),
            "{domain}:\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains(expect),
            "{domain}: {expect:?} not in\n{stdout}"
        );
        assert!(stdout.contains("Account: none given"), "{stdout}");
    }
    lab.proxy().drop_caa(true);
    let output = check("www.slow.test").await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("$ issue --check --domain www.slow.test (CAA dropped)\n{stdout}");
    assert_eq!(output.status.code(), Some(4), "{stdout}");
    assert!(
        stdout.contains("unreachable") && stdout.contains("of zone slow.test"),
        "{stdout}"
    );
    lab.proxy().drop_caa(false);

    // Issued by RFC 2136, through the store (pre-flight on).
    let store = out.join("store").to_string_lossy().into_owned();
    let output = run(vec![
        "--rfc2136".into(),
        dns_server.clone(),
        "--domain".into(),
        "alias.example.test".into(),
        "--domain".into(),
        "*.example.test".into(),
        "--store".into(),
        store,
        "--out".into(),
        out_arg.clone(),
    ])
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(out.join("fullchain.pem").exists());
    assert!(
        lab.txt(lab.resolver(), "alias.acme-delegated.test")
            .await
            .is_empty()
    );
    let _ = std::fs::remove_dir_all(&out);
}
