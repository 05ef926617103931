//! The server's three load figures (issue #10), over real TLS on loopback, client and server in
//! one process on this machine's cores:
//!
//! 1. event ingest: batches of 500 events, 8 concurrent connections, acknowledged only after the
//!    database commit (durable): events per second;
//! 2. block upload: 4 MiB batches of sealed 64 KiB blocks to 8 users' archives, acknowledged after
//!    the archive's fsync: MiB per second into the local store (blocks are sealed once; each
//!    batch rewrites their header ids, so the client's sealing is not measured);
//! 3. small authorized requests (`GET …/whoami`) from 64 concurrent clients: p50 and p99 latency.
//!
//! ```sh
//! cargo bench --bench server            # CAIRN_BENCH_SECS=N per phase (default 5)
//! ```
//! Each phase runs for a fixed time and prints its median over three runs;
//! `CAIRN_BENCH_ONLY=ingest|upload|latency` runs one phase.
//!
//! `CAIRN_BENCH_S3=1` also runs the ingest and upload phases, in the same rounds, against a
//! second server whose segments are in S3 and metadata in PostgreSQL (the servers of
//! `scripts/services.sh`; `benches/s3.sh` starts them and runs this), and prints both figures
//! and their ratios.

// A benchmark binary: printing is its job.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::events::v1;
use cairn::keys::ArchiveKey;
use cairn::seal::{ArchiveId, BlockKind, SealConfig, Sealer};
use cairn::server::{
    AppState, DataDir, Limits, RateConfig, SystemClock, router, serve, server_config,
};
use cairn::token::{
    Capabilities, Capability, Clock, DeviceId, Role, TenantId, TokenRequest, UserId,
};
use prost::Message;

struct Bench {
    http: reqwest::Client,
    base: String,
    _dir: tempfile::TempDir,
    services: Arc<cairn::server::Services>,
}

fn tls_client(ca: rustls_pki_types::CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth()
}

async fn start(backends: cairn::server::Backends) -> Bench {
    let dir = tempfile::Builder::new()
        .prefix("cairn-server-bench")
        .tempdir_in("/tmp")
        .unwrap();
    let data = DataDir::at(dir.path()).with_backends(backends);
    data.init(&["localhost".to_owned()], time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    // The benchmark measures throughput, not the limiter: lift the rate limits.
    let unlimited = RateConfig {
        per_token_per_second: 1_000_000,
        per_token_burst: 1_000_000,
        per_tenant_per_second: 1_000_000,
        per_tenant_burst: 1_000_000,
        ..RateConfig::default()
    };
    let services = data.services_with(unlimited).await.unwrap();
    let tenant = cairn_token::TenantId::new("bench").unwrap();
    services.db.add_tenant(&tenant, 1 << 50).await.unwrap();
    for u in 0..8 {
        let user = cairn_token::UserId::new(&format!("u{u}")).unwrap();
        services
            .db
            .add_user(&tenant, &user, cairn_token::Role::User)
            .await
            .unwrap();
    }
    let verifier = data.verifier(SystemClock, &services).unwrap();
    let app = router(Arc::new(AppState {
        verifier,
        services: Arc::clone(&services),
    }));
    let loaded = data
        .pki()
        .load("localhost", time::OffsetDateTime::now_utc())
        .unwrap();
    let config = server_config(loaded.chain, loaded.key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        max_body_bytes: 64 << 20,
        ..Limits::default()
    };
    tokio::spawn(serve(listener, config, app, limits, std::future::pending()));
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls_client(loaded.ca))
        .resolve("localhost", addr)
        .pool_max_idle_per_host(128)
        .build()
        .unwrap();
    Bench {
        http,
        base: format!("https://localhost:{}", addr.port()),
        _dir: dir,
        services,
    }
}

impl Bench {
    fn token(&self, user: &str, device: Option<&str>) -> String {
        let request = TokenRequest {
            subject: UserId::new(user).unwrap(),
            tenant: TenantId::new("bench").unwrap(),
            device: device.map(|d| DeviceId::new(d).unwrap()),
            role: Role::User,
            capabilities: Capabilities::of(&[Capability::BackupPut, Capability::EventsWrite]),
            lifetime_secs: 3600,
        };
        self.services
            .issuer
            .issue(&request, SystemClock.now())
            .unwrap()
            .expose()
            .to_owned()
    }
}

fn events_batch(device: &[u8; 16], sequence: u64) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    v1::EventBatch {
        device_id: device.to_vec(),
        agent_version: "bench".into(),
        batch_sequence: sequence,
        events: (0..500u32)
            .map(|i| v1::FileEvent {
                event_id: (sequence * 1000 + u64::from(i)).to_le_bytes().repeat(2),
                observed_unix_nanos: now - 1_000_000_000,
                activity: v1::Activity::Update as i32,
                file: Some(v1::File {
                    path: format!("/home/user/projects/cairn/src/file-{i:04}.rs"),
                    size: 4096 + u64::from(i),
                    sha256: vec![i as u8; 32],
                    ..Default::default()
                }),
                actor: Some(v1::Actor {
                    user: "user".into(),
                    process_id: 4242,
                    process_name: "editor".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
    }
    .encode_to_vec()
}

fn secs() -> Duration {
    Duration::from_secs(
        std::env::var("CAIRN_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    )
}

/// Events per second ingested (8 devices, one connection each, batches of 500).
async fn ingest(b: &Arc<Bench>, round: u64) -> f64 {
    let deadline = Instant::now() + secs();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for d in 0..8u8 {
        let b = Arc::clone(b);
        tasks.push(tokio::spawn(async move {
            let raw = [d + 16 * (round as u8 + 1); 16];
            let device = hex::encode(raw);
            let token = b.token(&format!("u{d}"), Some(&device));
            let url = format!("{}/v1/tenants/bench/events", b.base);
            let mut sent = 0u64;
            let mut seq = 0;
            while Instant::now() < deadline {
                seq += 1;
                let body = events_batch(&raw, seq);
                let r = b
                    .http
                    .post(&url)
                    .bearer_auth(&token)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
                sent += 500;
            }
            sent
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// MiB per second of sealed blocks appended (8 users, 4 MiB batches of 64 KiB blocks).
async fn upload(b: &Arc<Bench>, round: u64) -> f64 {
    let deadline = Instant::now() + secs();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for u in 0..8u8 {
        let b = Arc::clone(b);
        tasks.push(tokio::spawn(async move {
            let token = b.token(&format!("u{u}"), None);
            let url = format!("{}/v1/tenants/bench/users/u{u}/blocks", b.base);
            let sealer = Sealer::new(
                &ArchiveKey::from_bytes([u; 32]),
                ArchiveId::from_bytes([u; 16]),
                SealConfig::default(),
            );
            // 64 blocks sealed once; each batch gives them fresh ids by rewriting the id field
            // of their public header (bytes 32..64), which is all the server can see of an id:
            // the measurement is the server's path (TLS, checks, append, fsync), not the
            // client's sealing, which an agent does on its own machine.
            let sealed: Vec<Vec<u8>> = tokio::task::block_in_place(|| {
                (0..64u64)
                    .map(|i| {
                        let mut plain = vec![0u8; 64 << 10];
                        let mut x = (round << 40) ^ (u64::from(u) << 32) ^ i ^ 0x9E37_79B9;
                        for chunk in plain.chunks_mut(8) {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
                        }
                        sealer.seal(BlockKind::DATA, &plain).unwrap().into_bytes()
                    })
                    .collect()
            });
            let len: usize = sealed.iter().map(Vec::len).sum();
            let mut bytes = 0u64;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let mut blocks = sealed.clone();
                for block in &mut blocks {
                    n += 1;
                    let seed = [&round.to_le_bytes()[..], &[u], &n.to_le_bytes()].concat();
                    block[32..64].copy_from_slice(blake3::hash(&seed).as_bytes());
                }
                let body = cairn::wire::encode_batch(&blocks);
                let r = b
                    .http
                    .post(&url)
                    .bearer_auth(&token)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
                bytes += len as u64;
            }
            bytes
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64()
}

/// p50 and p99 (ms) of `GET …/whoami` from 64 concurrent clients.
async fn latency(b: &Arc<Bench>) -> (f64, f64, usize) {
    let deadline = Instant::now() + secs();
    let mut tasks = Vec::new();
    for c in 0..64 {
        let b = Arc::clone(b);
        tasks.push(tokio::spawn(async move {
            let token = b.token(&format!("u{}", c % 8), None);
            let url = format!("{}/v1/tenants/bench/whoami", b.base);
            let mut times = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = b.http.get(&url).bearer_auth(&token).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200);
                r.bytes().await.unwrap();
                times.push(t.elapsed());
            }
            times
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99), all.len())
}

/// The disk's own rate for the upload pattern, measured in the same run as the baseline: 8
/// writers appending 4 MiB and calling `fdatasync` each time, for the same duration.
fn disk_baseline(dir: &std::path::Path) -> f64 {
    use std::io::Write;
    let deadline = Instant::now() + secs();
    let start = Instant::now();
    let total: u64 = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..8)
            .map(|w| {
                scope.spawn(move || {
                    let path = dir.join(format!("disk-baseline-{w}"));
                    let mut f = std::fs::File::create(&path).unwrap();
                    let buf: Vec<u8> = (0..4u32 << 20)
                        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
                        .collect();
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        f.write_all(&buf).unwrap();
                        f.sync_data().unwrap();
                        n += buf.len() as u64;
                    }
                    drop(f);
                    std::fs::remove_file(path).unwrap();
                    n
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    total as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = Arc::new(start(cairn::server::Backends::default()).await);
        let s3 = if std::env::var("CAIRN_BENCH_S3").is_ok_and(|v| v == "1") {
            let backends = cairn::server::testenv::shared().await.unwrap();
            Some(Arc::new(start(backends).await))
        } else {
            None
        };
        let mut s3_uploads = Vec::new();
        let mut s3_ingests = Vec::new();
        let mut ingests = Vec::new();
        let mut uploads = Vec::new();
        let mut lat = Vec::new();
        let mut disk = Vec::new();
        // CAIRN_BENCH_ONLY=ingest|upload|latency runs one phase (for profiling).
        let only = std::env::var("CAIRN_BENCH_ONLY").ok().filter(|o| !o.is_empty());
        let run = |phase: &str| only.as_deref().is_none_or(|o| o == phase);
        for round in 0..3 {
            let dir = b._dir.path().to_owned();
            disk.push(if run("upload") {
                tokio::task::spawn_blocking(move || disk_baseline(&dir)).await.unwrap()
            } else {
                0.0
            });
            ingests.push(if run("ingest") { ingest(&b, round).await } else { 0.0 });
            uploads.push(if run("upload") { upload(&b, round).await } else { 0.0 });
            if let Some(s3) = &s3
                && run("ingest")
            {
                let events = ingest(s3, round).await;
                println!(
                    "round {round}: ingest into PostgreSQL {events:.0} events/s, SQLite {:.0} events/s: ratio {:.2}",
                    ingests[ingests.len() - 1],
                    events / ingests[ingests.len() - 1]
                );
                s3_ingests.push(events);
            }
            if let Some(s3) = &s3
                && run("upload")
            {
                let mib = upload(s3, round).await;
                println!(
                    "round {round}: upload through S3 + PostgreSQL {mib:.0} MiB/s, local {:.0} MiB/s: ratio {:.2}",
                    uploads[uploads.len() - 1],
                    mib / uploads[uploads.len() - 1]
                );
                s3_uploads.push(mib);
            }
            lat.push(if run("latency") { latency(&b).await } else { (0.0, 0.0, 0) });
            let (p50, p99, n) = lat[lat.len() - 1];
            println!(
                "round {round}: ingest {:.0} events/s, upload {:.0} MiB/s (disk alone {:.0} MiB/s), whoami p50 {p50:.2} ms p99 {p99:.2} ms ({n} requests)",
                ingests[ingests.len() - 1],
                uploads[uploads.len() - 1],
                disk[disk.len() - 1],
            );
        }
        println!(
            "median of 3: ingest {:.0} events/s (target >= 100000), upload {:.0} MiB/s (target >= 400; the disk alone: {:.0} MiB/s), whoami p50 {:.2} ms, p99 {:.2} ms (target < 5) at 64 clients",
            median(ingests.clone()),
            median(uploads.clone()),
            median(disk),
            median(lat.iter().map(|l| l.0).collect()),
            median(lat.iter().map(|l| l.1).collect()),
        );
        if !s3_ingests.is_empty() {
            let (local, shared) = (median(ingests.clone()), median(s3_ingests));
            println!(
                "median of 3: event ingest into PostgreSQL {shared:.0} events/s against SQLite {local:.0} events/s (ratio {:.2})",
                shared / local
            );
        }
        if !s3_uploads.is_empty() {
            let (local, shared) = (median(uploads), median(s3_uploads));
            println!(
                "median of 3: block upload through S3 + PostgreSQL {shared:.0} MiB/s against the local store {local:.0} MiB/s (ratio {:.2})",
                shared / local
            );
        }
    });
}
