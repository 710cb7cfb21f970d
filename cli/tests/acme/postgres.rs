//! `acme issue` processes sharing one PostgreSQL store (a real server, per
//! test), racing for the same names at a real Pebble.

use std::process::{Command, Stdio};

use sturdy_acme::Identifier;
use sturdy_acme::store::{IdentifierSetKey, Store};
use sturdy_acme_postgres::PostgresStore;
use sturdy_acme_test_support::postgres::{Postgres, fresh_database};

fn dns(names: &[&str]) -> Vec<Identifier> {
    names.iter().map(|n| Identifier::dns(n).unwrap()).collect()
}

/// The race against Pebble: three `acme issue --store postgres://…`
/// processes started at once for one name: one certificate at the CA
/// (one newOrder, one finalize), all three exit 0 with the same serial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_issue_processes_racing_on_one_database_get_one_certificate_from_pebble() {
    use crate::common::pebble::{Pebble, PebbleOptions};
    let Some(pg) = Postgres::start() else { return };
    let Some(pebble) = Pebble::start(PebbleOptions {
        always_valid: true,
        ..PebbleOptions::default()
    })
    .await
    else {
        return;
    };
    let url = fresh_database(&pg).await;
    let dir = crate::harness::temp_dir("pg-race");
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.join("pebble-root.pem");
    std::fs::write(&root, pebble.listener_root_pem()).unwrap();
    let exe = crate::harness::acme();
    let racers: Vec<std::process::Child> = (0..3)
        .map(|i| {
            let out = dir.join(format!("out{i}"));
            Command::new(&exe)
                .args(["issue", "--directory", &pebble.directory_url(), "--root-ca"])
                .arg(&root)
                .args([
                    "--domain",
                    "race.example",
                    "--http-port",
                    "0",
                    "--store",
                    &url,
                    "--out",
                ])
                .arg(&out)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for racer in racers {
        let out = racer.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let serials: Vec<String> = (0..3)
        .map(|i| {
            let leaf = std::fs::read(dir.join(format!("out{i}")).join("cert.pem")).unwrap();
            crate::common::verify::serial_hex(leaf)
        })
        .collect();
    assert!(serials.windows(2).all(|w| w[0] == w[1]), "{serials:?}");
    assert_eq!(pebble.count_requests("POST /order-plz"), 1);
    assert_eq!(pebble.count_requests("POST /finalize-order/"), 1);
    let store = PostgresStore::connect(&url).await.unwrap();
    let key = IdentifierSetKey::new(&dns(&["race.example"]));
    assert!(
        store.load_certificate(&key).await.unwrap().is_none(),
        "stored under its CA's key"
    );
    assert_eq!(
        store
            .list_certificates(&pebble.directory_url())
            .await
            .unwrap()
            .len(),
        1
    );
    let _ = std::fs::remove_dir_all(&dir);
}
