//! Two server instances (two processes, two ports) sharing one PostgreSQL and one S3 bucket,
//! behind a TCP load balancer: agents spread across them, one archive written through both in
//! turn, one instance killed with SIGKILL in the middle of an upload; restores and
//! `check --read-data` pass, events are searchable from either instance, and a deauthorization
//! made through one instance stops the device on the other. Needs the servers that
//! `scripts/services.sh` starts (`scripts/test.sh` runs it); ignored otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use cairn_agent::compare::compare;
use cairn_agent::state::AgentDir;
use cairn_agent::{Agent, AgentError, Enrollment, Escrow};
use cairn_server::{Backends, DataDir, Embedded, policy};
use cairn_token::{Capabilities, Capability, Clock, Issuer, Role, TenantId, TokenRequest, UserId};
use common::{free_addr, noise};

const DATA_ENV: &str = "CAIRN_TEST_SERVER_DATA";
const ADDR_ENV: &str = "CAIRN_TEST_SERVER_ADDR";

/// Not a test: an instance the scale-out test starts and kills. Its backends come from
/// `CAIRN_DATABASE_URL` and `CAIRN_S3_*`, as a deployed server's do. Run without them (by hand,
/// or by `--include-ignored` without `--skip instance_process`, as scripts/test.sh gives), it
/// fails: it never passes without doing its job.
#[test]
#[ignore = "a server instance of two_instances_behind_a_load_balancer; runs only when started by it"]
fn instance_process() {
    let (Ok(data), Ok(addr)) = (std::env::var(DATA_ENV), std::env::var(ADDR_ENV)) else {
        panic!(
            "not a test: an instance two_instances_behind_a_load_balancer starts (needs {DATA_ENV} and {ADDR_ENV})"
        );
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let data = DataDir::at(data).with_backends(Backends::from_env());
        let server = Embedded::start(data, addr.parse().unwrap()).await.unwrap();
        println!("ready {}", server.addr());
        std::future::pending::<()>().await;
    });
}

fn spawn_instance(data: &Path, addr: SocketAddr, backends: &Backends) -> Child {
    let s3 = backends.s3.as_ref().unwrap();
    common::spawn_test_process(
        "instance_process",
        &[
            (DATA_ENV, data.display().to_string()),
            (ADDR_ENV, addr.to_string()),
            ("CAIRN_DATABASE_URL", backends.database_url.clone().unwrap()),
            ("CAIRN_S3_BUCKET", s3.bucket.clone()),
            ("CAIRN_S3_ENDPOINT", s3.endpoint.clone().unwrap()),
            ("CAIRN_S3_PREFIX", s3.prefix.clone().unwrap()),
        ],
    )
}

/// A TCP load balancer with fail-over: each connection goes to the first backend that accepts
/// it (TLS passes through; every instance has the same certificate). Returns its address.
fn balancer(backends: Vec<SocketAddr>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let start = 0;
            let upstream = (0..backends.len())
                .map(|i| backends[(start + i) % backends.len()])
                .find_map(|b| TcpStream::connect(b).ok());
            let Some(upstream) = upstream else { continue };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                (upstream, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    addr
}

#[test]
#[ignore = "needs PostgreSQL and S3 (scripts/test.sh)"]
fn two_instances_behind_a_load_balancer() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let backends = rt
        .block_on(cairn_server::testenv::shared())
        .unwrap_or_else(|e| panic!("{e}"));
    let data1 = DataDir::at(tmp.path().join("s1")).with_backends(backends.clone());
    let db = rt.block_on(async {
        data1
            .init(&["localhost".to_owned()], time::OffsetDateTime::now_utc())
            .await
            .unwrap();
        let db = data1.db().await.unwrap();
        assert!(db.add_tenant(&common::tenant_id(), 1 << 40).await.unwrap());
        for (user, role) in [
            ("root", cairn_token::Role::Admin),
            ("dee", cairn_token::Role::User),
            ("eve", cairn_token::Role::User),
        ] {
            assert!(
                db.add_user(&common::tenant_id(), &common::user_id(user), role)
                    .await
                    .unwrap()
            );
        }
        db
    });
    let data2 = data1.replicate(tmp.path().join("s2")).unwrap();
    let (key, _) = data1.signing_key().unwrap();
    let admin = Issuer::new(key, policy().unwrap())
        .issue(
            &TokenRequest {
                subject: UserId::new("root").unwrap(),
                tenant: TenantId::new("acme").unwrap(),
                device: None,
                role: Role::Admin,
                capabilities: Capabilities::of(&Capability::ALL),
                lifetime_secs: 900,
            },
            cairn_server::SystemClock.now(),
        )
        .unwrap()
        .expose()
        .to_owned();

    let (addr1, addr2) = (free_addr(), free_addr());
    let s2;
    let mut s1 = spawn_instance(data1.root(), addr1, &backends);
    s2 = spawn_instance(data2.root(), addr2, &backends);
    let url = |addr: SocketAddr| format!("https://localhost:{}", addr.port());
    let ca = std::fs::read(data1.pki().dir().join("ca.pem")).unwrap();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(cairn_agent::tls::client_config(&ca).unwrap())
        .build()
        .unwrap();
    let call = |base: &str, method: reqwest::Method, path: &str, body: &str| {
        rt.block_on(async {
            let resp = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(&admin)
                .body(body.to_owned())
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
        })
    };
    let enroll = |server: &str, user: &str, dir: &str| {
        let (status, body) = call(
            server,
            reqwest::Method::POST,
            "/v1/tenants/acme/devices",
            &format!(r#"{{"user":"{user}","name":"{dir}"}}"#),
        );
        assert_eq!(status, 201);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        Agent::enroll(
            &AgentDir::at(tmp.path().join(dir)),
            Enrollment {
                server,
                ca_pem: &ca,
                tenant: "acme",
                device: v["device"].as_str().unwrap(),
                token: v["token"].as_str().unwrap(),
                host: dir,
                escrow: Escrow::Standard,
            },
        )
        .unwrap()
    };

    // One archive (dee's) written through both instances in turn: the laptop talks to the
    // first (through a balancer that fails over to the second), the desktop to the second.
    let mut laptop = enroll(&url(balancer(vec![addr1, addr2])), "dee", "laptop");
    let mut desktop = enroll(&url(addr2), "dee", "desktop");
    let (l_src, d_src) = (tmp.path().join("l-src"), tmp.path().join("d-src"));
    for (src, seed) in [(&l_src, 1u64), (&d_src, 2)] {
        std::fs::create_dir_all(src).unwrap();
        for i in 0..4u64 {
            std::fs::write(
                src.join(format!("f{i}.bin")),
                noise(seed * 100 + i, 1 << 20),
            )
            .unwrap();
        }
    }
    laptop.backup(Some(&l_src)).unwrap();
    desktop.backup(Some(&d_src)).unwrap();
    std::fs::write(
        l_src.join("later.txt"),
        b"written after the desktop's backup",
    )
    .unwrap();
    laptop.backup(None).unwrap();
    desktop.backup(None).unwrap();

    // Eve's agent goes through a balancer too, so the first instance serves her while it
    // lives; it is killed in the middle of her upload.
    let lb = balancer(vec![addr1, addr2]);
    let mut eve = enroll(&url(lb), "eve", "eve");
    let e_src = tmp.path().join("e-src");
    std::fs::create_dir_all(&e_src).unwrap();
    for i in 0..4u64 {
        std::fs::write(e_src.join(format!("p{i}.bin")), noise(900 + i, 16 << 20)).unwrap();
    }
    let used = || {
        rt.block_on(db.quota(&common::tenant_id()))
            .unwrap()
            .map_or(0, |q| q.used_bytes)
    };
    let before = used();
    let backup = {
        let src = e_src.clone();
        std::thread::spawn(move || {
            let result = eve.backup(Some(&src));
            (eve, result)
        })
    };
    let started = Instant::now();
    while used() < before + (4 << 20) {
        assert!(started.elapsed() < Duration::from_secs(120), "no upload");
        std::thread::sleep(Duration::from_millis(5));
    }
    s1.kill().unwrap();
    s1.wait().unwrap();
    assert!(
        !backup.is_finished(),
        "finished before the kill: proves nothing"
    );
    let (mut eve, first) = backup.join().unwrap();
    if let Err(e) = first {
        // The retries ran out while the second instance waited for the dead one's lease.
        eprintln!("first run failed ({e}); resuming through the balancer");
        eve.backup(None).unwrap();
    }

    // Everything restores, every block opens.
    for (agent, src, name) in [
        (&mut eve, &e_src, "e-out"),
        (&mut laptop, &l_src, "l-out"),
        (&mut desktop, &d_src, "d-out"),
    ] {
        let out = tmp.path().join(name);
        agent.restore("latest", None, &out).unwrap();
        let cmp = compare(src, &out).unwrap();
        assert!(cmp.identical(), "{name}: {:?}", cmp.differences);
        let check = agent.check(true).unwrap();
        assert!(check.errors.is_empty(), "{name}: {:?}", check.errors);
    }

    // The first instance back: events are the same from either instance.
    let s1 = spawn_instance(data1.root(), addr1, &backends);
    let events = |addr: SocketAddr| -> Vec<String> {
        let mut paths = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/tenants/acme/events?after={a}"),
                None => "/v1/tenants/acme/events".to_owned(),
            };
            let (status, body) = call(&url(addr), reqwest::Method::GET, &path, "");
            assert_eq!(status, 200);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for e in v["events"].as_array().unwrap() {
                paths.push(e["file"]["path"].as_str().unwrap_or_default().to_owned());
            }
            match v["next"].as_str() {
                Some(n) => after = Some(n.to_owned()),
                None => return paths,
            }
        }
    };
    let (from1, from2) = (events(addr1), events(addr2));
    assert_eq!(from1, from2);
    for name in ["f0.bin", "later.txt", "p3.bin"] {
        assert!(
            from1.iter().any(|p| p.ends_with(name)),
            "{name} not among {from1:?}"
        );
    }

    // Deauthorized through the first instance, the desktop is refused by the second.
    let device = desktop.config().device.clone();
    let (status, _) = call(
        &url(addr1),
        reqwest::Method::POST,
        &format!("/v1/tenants/acme/devices/{device}/deauthorize"),
        "",
    );
    assert_eq!(status, 204);
    // The second instance learns of it within its revocation refresh: until then it may
    // still serve the desktop's reads.
    let deadline = Instant::now() + cairn_server::REVOCATION_REFRESH * 20;
    loop {
        match desktop.snapshots() {
            Err(AgentError::Deauthorized) => break,
            Ok(_) => {}
            Err(e) => panic!("listing while the revocation spreads: {e:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "the second instance never learnt of the revocation"
        );
        std::thread::sleep(cairn_server::REVOCATION_REFRESH / 10);
    }
    std::fs::write(d_src.join("after.txt"), b"after").unwrap();
    match desktop.backup(None) {
        Err(AgentError::Deauthorized) => {}
        other => panic!("expected Deauthorized, got {other:?}"),
    }

    for mut s in [s1, s2] {
        s.kill().unwrap();
        s.wait().unwrap();
    }
}
