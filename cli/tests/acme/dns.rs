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

/// `acme issue` with two `--directory` (two served test CAs, the second
/// announcing the CAA identity `other-ca.example`) and Knot as the DNS:
/// `--check` prints the verdict of every CA from one lookup, and `--store`
/// issues at the one CA the customer's CAA records name, saying why the
/// first was passed over.
#[tokio::test]
async fn the_issue_tool_chooses_among_several_cas_by_caa() {
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let scratch = crate::harness::temp_dir("several-cas");
    std::fs::create_dir_all(&scratch).unwrap();
    let (root1, root2) = (scratch.join("root1.pem"), scratch.join("root2.pem"));
    let (_first, dir1) = crate::harness::start_test_ca(&root1).await;
    let (_second, dir2) = crate::harness::start_test_ca_with(
        &root2,
        &["--caa-identity".as_ref(), "other-ca.example".as_ref()],
    )
    .await;
    let exe = crate::harness::acme();
    let dns_server = lab.resolver().to_string();
    let out = scratch.join("out").to_string_lossy().into_owned();
    let common: Vec<String> = vec![
        "issue".into(),
        "--directory".into(),
        dir1.clone(),
        "--directory".into(),
        dir2.clone(),
        "--root-ca".into(),
        root1.to_string_lossy().into_owned(),
        "--root-ca".into(),
        root2.to_string_lossy().into_owned(),
        "--dns-server".into(),
        dns_server.clone(),
        "--out".into(),
        out.clone(),
    ];
    let run = |extra: Vec<String>| {
        let exe = exe.clone();
        let mut args = common.clone();
        args.extend(extra);
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(exe)
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        })
    };
    // The verdict for each CA, from one lookup.
    let output = run(vec![
        "--check".into(),
        "--domain".into(),
        "other.caa.test".into(),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("$ issue --check (two CAs)\n{stdout}\n{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("CA 127.0.0.1#1: forbidden for some name"),
        "{stdout}"
    );
    assert!(
        stdout.contains("CA 127.0.0.1#2: may issue every name"),
        "{stdout}"
    );
    assert!(stdout.contains("names other-ca.example"), "{stdout}");
    assert!(
        stdout.contains("the set would choose 127.0.0.1#2 first"),
        "{stdout}"
    );
    // Issued at the second CA, through the store, the choice said.
    let store = scratch.join("store").to_string_lossy().into_owned();
    let output = run(vec![
        "--domain".into(),
        "shop.other.caa.test".into(),
        "--store".into(),
        store,
    ])
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("$ issue --store (two CAs)\n{stderr}");
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("CA: 127.0.0.1#2 (passed over: 127.0.0.1#1: CAA forbids it"),
        "{stderr}"
    );
    assert!(stderr.contains("at 127.0.0.1#2"), "{stderr}");
    assert!(std::path::Path::new(&out).join("fullchain.pem").exists());
    // Several directories only where a set makes sense.
    let output = run(vec!["--domain".into(), "x.other.caa.test".into()])
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&scratch);
}
