//! An edge server: serves over HTTPS whatever certificates a shared store
//! holds, following its change feed; it never talks to a CA. The issuer
//! fleet (`examples/fleet.rs`, or any `Issuer`/`Renewer` on the same
//! store) issues; every edge serves each new certificate within one
//! wake-up of its commit.
//!
//! ```text
//! cargo run --release --example edge -- \
//!     --store postgres://acme@127.0.0.1:5432/acme --listen 127.0.0.1:8443
//! curl --resolve shop.example:8443:127.0.0.1 https://shop.example:8443/healthz
//! ```
//!
//! The first line on stdout is `listening on ADDR`. `GET /healthz` answers
//! JSON: the feed revision applied, the head, the lag, the certificates
//! and names loaded, snapshots taken, certificates refused; 200 once the
//! first snapshot is loaded, 503 before. Any other path says which name
//! was served. It answers the CA's tls-alpn-01 handshakes (`acme-tls/1`)
//! with the validation certificates issuers publish through the store
//! (`sturdy_acme::solver::tls_alpn01::TlsAlpn01Publisher`).
//!
//! With `--on-demand-suffix .customer.example`, a handshake for a name no
//! certificate serves (and that ends with the suffix: the example's
//! stand-in for a customer list) is requested from the issuer fleet
//! through the store (`sturdy_acme::serve::OnDemand`; a renewer built
//! with `RenewerBuilder::on_demand` takes it up); `/healthz` then counts
//! the names requested and refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use sturdy_acme::serve::{CertificateResolver, FeedFollower, OnDemand, OnDemandSettings};
use sturdy_acme::store::{FileStore, Store};
use sturdy_acme_postgres::PostgresStore;

#[derive(Parser, Debug)]
#[command(about = "Serve what a shared store holds, over HTTPS")]
struct Args {
    /// `postgres://USER@HOST:PORT/DB`, or a FileStore directory. A
    /// PostgreSQL store opens sealed keys with STURDY_ACME_KEK (`ID:BASE64`).
    #[arg(long)]
    store: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Request certificates on demand for unknown names ending with this.
    #[arg(long)]
    on_demand_suffix: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.store.starts_with("postgres://") || args.store.starts_with("postgresql://") {
        let mut builder = PostgresStore::builder(args.store.as_str());
        if let Ok(kek) = std::env::var("STURDY_ACME_KEK") {
            builder =
                builder.key_encryption_key(sturdy_acme::store::KeyEncryptionKey::parse(&kek)?);
        }
        serve(builder.open().await?, &args).await
    } else {
        serve(FileStore::open(&args.store)?, &args).await
    }
}

/// The example's on-demand policy: a name under the configured suffix.
type Policy = Box<dyn Fn(String) -> std::future::Ready<bool> + Send + Sync>;

async fn serve<S: Store + Clone + 'static>(
    store: S,
    args: &Args,
) -> Result<(), Box<dyn std::error::Error>> {
    let resolver = Arc::new(CertificateResolver::new());
    let follower = Arc::new(FeedFollower::new(store.clone(), Arc::clone(&resolver)));
    let on_demand = args.on_demand_suffix.clone().map(|suffix| {
        let policy: Policy =
            Box::new(move |name: String| std::future::ready(name.ends_with(&suffix)));
        let edge = format!("edge-{}", std::process::id());
        let on_demand = Arc::new(OnDemand::new(
            store,
            Arc::clone(&resolver),
            policy,
            edge,
            OnDemandSettings::default(),
        ));
        tokio::spawn({
            let on_demand = Arc::clone(&on_demand);
            async move { on_demand.run().await }
        });
        on_demand
    });
    tokio::spawn({
        let follower = Arc::clone(&follower);
        async move { follower.run().await }
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(sturdy_acme::tls_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    // `acme-tls/1`: the CA's tls-alpn-01 handshakes, answered with the
    // validation certificate an issuer published through the store.
    tls.alpn_protocols = vec![b"acme-tls/1".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, resolver, follower, on_demand) = (
            acceptor.clone(),
            Arc::clone(&resolver),
            Arc::clone(&follower),
            on_demand.clone(),
        );
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            if stream.get_ref().1.alpn_protocol() == Some(b"acme-tls/1") {
                // The handshake was the validation: nothing more is said.
                return;
            }
            let sni = stream.get_ref().1.server_name().map(str::to_owned);
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let answer = answer(
                        &request,
                        sni.as_deref(),
                        &resolver,
                        &follower,
                        on_demand.as_deref(),
                    );
                    async move { Ok::<_, std::convert::Infallible>(answer) }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer<S: Store + Clone>(
    request: &Request<hyper::body::Incoming>,
    sni: Option<&str>,
    resolver: &CertificateResolver,
    follower: &FeedFollower<S>,
    on_demand: Option<&OnDemand<S, Policy>>,
) -> Response<Full<Bytes>> {
    let (status, body) = if request.uri().path() == "/healthz" {
        let s = follower.status();
        let ready = s.snapshots > 0;
        let asked = on_demand.map_or(String::new(), |o| {
            let o = o.status();
            format!(
                ",\"on_demand\":{{\"unknown\":{},\"requested\":{},\"already_requested\":{},\"refused\":{},\"rate_limited\":{},\"failed\":{}}}",
                o.unknown, o.requested, o.already_requested, o.refused, o.rate_limited, o.failed
            )
        });
        let body = format!(
            "{{\"ready\":{ready},\"applied\":{},\"head\":{},\"lag\":{},\"certificates\":{},\"names\":{},\"snapshots\":{},\"refused\":{}{asked}}}\n",
            s.applied,
            s.head,
            s.lag(),
            resolver.certificates(),
            resolver.names(),
            s.snapshots,
            s.refused
        );
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, body)
    } else {
        (
            StatusCode::OK,
            format!("served by the edge for {}\n", sni.unwrap_or("(no SNI)")),
        )
    };
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("a response")
}
