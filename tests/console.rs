//! The admin console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven over WebDriver against a real server on 127.0.0.1, with events
//! from a real agent's backups. Sign in, search, open an event and its backed-up version,
//! deauthorize a device, read the audit log, recover a key from escrow, a user token refused
//! what it may not do, and a file named with HTML/JS markup that renders as text. Screenshots
//! of each page go to `target/tmp/console-screenshots/`.
//!
//! Needs Chromium and ChromeDriver (`scripts/test.sh` installs them); ignored otherwise.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn::agent::state::AgentDir;
use cairn::agent::{Agent, Enrollment, Escrow};
use cairn::server::{DataDir, Embedded};
use fantoccini::{Client, ClientBuilder, Locator};

/// A file name an attacker could choose: if the console parsed it as HTML, the `img` would
/// load and its handler would change the page's title.
const MARKUP: &str = "<img src=x onerror=\"document.title='pwned'\">.txt";
const TENANT: &str = "acme";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> (Driver, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(std::env::var("CHROMEDRIVER").unwrap_or("chromedriver".into()))
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian: chromium-driver; scripts/test.sh installs it)");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Driver(child), format!("http://127.0.0.1:{port}"))
}

async fn browser(webdriver: &str, profile: &Path) -> Client {
    let caps = serde_json::json!({
        "browserName": "chrome",
        // The server's certificate is from the data directory's own CA.
        "acceptInsecureCerts": true,
        "goog:chromeOptions": {
            "binary": std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(webdriver)
        .await
        .unwrap()
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let path = screenshots().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Waits for `css` to match an element.
async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
}

async fn sign_in(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/console/")).await.unwrap();
    wait_for(c, "#token").await.send_keys(token).await.unwrap();
    c.find(Locator::Id("sign-in-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(c, "#nav:not([hidden])").await;
}

#[test]
#[ignore = "needs chromium and chromium-driver (scripts/test.sh installs them)"]
fn console_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(Embedded::start(
            DataDir::at(tmp.path().join("server")),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    let base = server.url();
    let ca = server.ca_pem().unwrap();
    let admin = rt
        .block_on(server.add_tenant(TENANT, "root", 1 << 40))
        .unwrap();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(cairn::agent::tls::client_config(&ca).unwrap())
        .build()
        .unwrap();
    let call = |method: reqwest::Method, path: &str, body: Option<String>, token: &str| {
        rt.block_on(async {
            let mut req = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(token);
            if let Some(b) = body {
                req = req.body(b);
            }
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    };

    // A real agent: two backups of a folder holding a file named with markup.
    let (status, _) = call(
        reqwest::Method::POST,
        &format!("/v1/tenants/{TENANT}/users"),
        Some(r#"{"id":"dee","role":"user"}"#.into()),
        &admin,
    );
    assert_eq!(status, 201);
    let (status, device) = call(
        reqwest::Method::POST,
        &format!("/v1/tenants/{TENANT}/devices"),
        Some(r#"{"user":"dee","name":"dee-laptop"}"#.into()),
        &admin,
    );
    assert_eq!(status, 201);
    let device: serde_json::Value = serde_json::from_str(&device).unwrap();
    let device_id = device["device"].as_str().unwrap().to_owned();
    let agent_dir = tmp.path().join("agent");
    let mut agent = Agent::enroll(
        &AgentDir::at(&agent_dir),
        Enrollment {
            server: &base,
            ca_pem: &ca,
            tenant: TENANT,
            device: &device_id,
            token: device["token"].as_str().unwrap(),
            host: "laptop",
            escrow: Escrow::Standard,
        },
    )
    .unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("Documents")).unwrap();
    std::fs::write(src.join("Documents/plan.txt"), b"the plan\n").unwrap();
    std::fs::write(src.join(MARKUP), b"a file with a hostile name\n").unwrap();
    agent.backup(Some(&src)).unwrap();
    std::fs::write(src.join("Documents/plan.txt"), b"the plan, edited\n").unwrap();
    agent.backup(None).unwrap();
    drop(agent);

    // A non-admin token of dee's: events and archive listing, nothing of the tenant's.
    let user_token = {
        use cairn::token::{Capabilities, Capability, Clock, Role, TenantId, TokenRequest, UserId};
        server
            .services()
            .issuer
            .issue(
                &TokenRequest {
                    subject: UserId::new("dee").unwrap(),
                    tenant: TenantId::new(TENANT).unwrap(),
                    device: None,
                    role: Role::User,
                    capabilities: Capabilities::of(&[Capability::BackupList]),
                    lifetime_secs: 900,
                },
                cairn::server::SystemClock.now(),
            )
            .unwrap()
            .expose()
            .to_owned()
    };

    let (_driver, webdriver) = chromedriver();
    rt.block_on(async {
        let c = browser(&webdriver, &tmp.path().join("profile")).await;

        // Signing in: the token never reaches storage or the address bar.
        sign_in(&c, &base, &admin).await;
        wait_for(&c, "#events tbody tr").await;
        shot(&c, "activity").await;
        let url = c.current_url().await.unwrap();
        assert!(!url.as_str().contains(&admin[10..40]), "token in the URL");
        let stored: serde_json::Value = c
            .execute(
                "return [localStorage.length, sessionStorage.length, document.cookie]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(stored, serde_json::json!([0, 0, ""]));

        // The hostile name is text: shown verbatim, no element made from it, nothing ran.
        let links = c.find_all(Locator::Css("#events a.event-link")).await.unwrap();
        let mut texts = Vec::new();
        for l in &links {
            texts.push(l.text().await.unwrap());
        }
        let hostile = src.join(MARKUP).to_string_lossy().into_owned();
        assert!(texts.contains(&hostile), "{texts:?}");
        assert!(c.find_all(Locator::Css("#page img")).await.unwrap().is_empty());
        assert_eq!(c.title().await.unwrap(), "Cairn console");

        // The timeline and the exposure breakdown count what the page shows.
        let bars: serde_json::Value = c
            .execute(
                "return [...document.querySelectorAll('#timeline rect')].reduce((s, r) => s + Number(r.dataset.count), 0)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(bars.as_u64().unwrap(), links.len() as u64);

        // Search by path and activity: only the edited plan's update.
        let path = wait_for(&c, "#f-path").await;
        path.send_keys(&src.join("Documents").to_string_lossy()).await.unwrap();
        c.find(Locator::Css("#f-activity option[value='3']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.find(Locator::Id("search")).await.unwrap().click().await.unwrap();
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(
                "//p[@id='count' and text()='1 events on this page']",
            ))
            .await
            .unwrap();

        // The event, and its backed-up version.
        wait_for(&c, "#events a.event-link").await.click().await.unwrap();
        let fields = wait_for(&c, "#event-fields").await.text().await.unwrap();
        assert!(fields.contains("plan.txt") && fields.contains("Update"), "{fields}");
        assert!(fields.contains("SHA-256 (tenant-keyed)"), "{fields}");
        shot(&c, "event").await;
        wait_for(&c, "#backup-link").await.click().await.unwrap();
        wait_for(&c, "#snapshots #highlighted").await;
        let fate = wait_for(&c, "#snapshots #highlighted td.fate").await.text().await.unwrap();
        assert!(fate.starts_with("kept (") && fate.contains("keep within days"), "{fate}");
        shot(&c, "archives").await;

        // The policy, edited from the archive's page: keeping more takes effect at once;
        // keeping less waits, shown as pending. Both audited.
        let daily = wait_for(&c, "#policy-keep_daily").await;
        daily.clear().await.unwrap();
        daily.send_keys("120").await.unwrap();
        c.find(Locator::Id("policy-tenant"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let result = wait_for(&c, "#policy-result").await.text().await.unwrap();
        assert!(result.contains("in effect now"), "{result}");
        let policy = wait_for(&c, "#policy").await.text().await.unwrap();
        assert!(policy.contains("120 daily") && policy.contains("(tenant)"), "{policy}");
        let daily = wait_for(&c, "#policy-keep_daily").await;
        daily.clear().await.unwrap();
        daily.send_keys("10").await.unwrap();
        c.find(Locator::Css("#policy-form button[type='submit']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // The page is drawn again, then the result is shown in it.
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(
                "//p[@id='policy-result' and contains(., 'takes effect on')]",
            ))
            .await
            .unwrap();
        let pending = wait_for(&c, "#policy-pending").await.text().await.unwrap();
        assert!(pending.contains("10 daily"), "{pending}");
        shot(&c, "retention").await;

        // A legal hold, placed and lifted from the archive's page; both audited.
        wait_for(&c, "#hold-reason")
            .await
            .send_keys("matter 2026-7")
            .await
            .unwrap();
        c.find(Locator::Css("#hold-form button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let hold = wait_for(&c, "#holds li.hold").await.text().await.unwrap();
        assert!(hold.contains("matter 2026-7") && hold.contains("every device"), "{hold}");
        let fate = wait_for(&c, "#snapshots td.fate").await.text().await.unwrap();
        assert!(fate.contains("hold"), "{fate}");
        shot(&c, "holds").await;
        wait_for(&c, "#holds button.lift-hold")
            .await
            .click()
            .await
            .unwrap();
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath("//ul[@id='holds']/li[text()='No legal hold.']"))
            .await
            .unwrap();

        // Devices: deauthorize, with confirmation.
        c.find(Locator::Id("nav-devices")).await.unwrap().click().await.unwrap();
        wait_for(&c, "#devices button.deauthorize").await.click().await.unwrap();
        shot(&c, "devices").await;
        wait_for(&c, "#devices button.confirm-deauthorize")
            .await
            .click()
            .await
            .unwrap();
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath("//table[@id='devices']//td[@class='state' and text()='deauthorized']"))
            .await
            .unwrap();

        // Escrow recovery, audited.
        c.find(Locator::Id("nav-escrow")).await.unwrap().click().await.unwrap();
        let recipient = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([7u8; 32]));
        wait_for(&c, "#escrow-user").await.send_keys("dee").await.unwrap();
        c.find(Locator::Id("escrow-to"))
            .await
            .unwrap()
            .send_keys(&hex::encode(recipient.as_bytes()))
            .await
            .unwrap();
        c.find(Locator::Css("#escrow-form button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(&c, "#envelope").await;
        shot(&c, "escrow").await;

        // The audit log names both actions.
        c.find(Locator::Id("nav-audit")).await.unwrap().click().await.unwrap();
        let audit = wait_for(&c, "#audit").await.text().await.unwrap();
        assert!(audit.contains("deauthorize"), "{audit}");
        assert!(audit.contains("escrow"), "{audit}");
        assert!(audit.contains("hold.place") && audit.contains("hold.lift"), "{audit}");
        assert!(audit.contains("retention.set"), "{audit}");
        shot(&c, "audit").await;

        // A user's token: the console shows the server's refusal, and nothing changes.
        c.find(Locator::Id("sign-out")).await.unwrap().click().await.unwrap();
        sign_in(&c, &base, &user_token).await;
        c.find(Locator::Id("nav-devices")).await.unwrap().click().await.unwrap();
        // Wait for the refusal itself: the page may render more than once on the way (an
        // element found before a re-render is stale by the time its text is read).
        c.wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::XPath(
                "//*[@id='page']//p[contains(concat(' ', @class, ' '), ' error ') and contains(., '403')]",
            ))
            .await
            .unwrap_or_else(|e| panic!("waiting for the 403 refusal on the devices page: {e}"));
        shot(&c, "refused").await;
        c.close().await.unwrap();
    });
    // The API agrees with what the console showed.
    let (_, devices) = call(
        reqwest::Method::GET,
        &format!("/v1/tenants/{TENANT}/devices"),
        None,
        &admin,
    );
    assert!(devices.contains("\"deauthorized\""), "{devices}");
}
