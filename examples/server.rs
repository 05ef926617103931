//! Cairn's server, the thin binary over `cairn-server`.
//!
//! ```sh
//! cargo run --release --example server -- init DATA [--host NAME]...
//! cargo run --release --example server -- serve DATA [--listen 127.0.0.1:8443] [--host NAME]
//!     [--metrics [ADDR]] [--metrics-tenants]
//! cargo run --release --example server -- tenant add DATA --tenant T [--quota BYTES]
//! cargo run --release --example server -- user add DATA --tenant T --user U [--role user|admin|service]
//! cargo run --release --example server -- token DATA --tenant T --user U [--device D]
//!     [--role user|admin|service] [--cap backup:put,...] [--lifetime SECS]
//! cargo run --release --example server -- escrow recover DATA --tenant T --user U --to X25519HEX --out FILE
//! cargo run --release --example server -- rotate-storage-key DATA
//! cargo run --release --example server -- audit DATA --tenant T
//! cargo run --release --example server -- archive health DATA --tenant T
//! cargo run --release --example server -- archive clear-damage DATA --tenant T --user U
//! cargo run --release --example server -- replicate DATA NEW_DATA
//! ```
//!
//! Every command takes `--kek-file PATH` (or `CAIRN_KEK_FILE`): the key-encryption key, kept
//! outside the data directory, that seals the data directory's secret files (storage key ring,
//! escrow secret, token signing key; `cairn_server::kek`). `init` makes the file if it does not
//! exist; a plain data directory given a KEK is sealed in place. Without one, the secrets are
//! plain and `serve` logs a warning: a copy of the data directory then reads every event.
//!
//! Every command reads where metadata and segments live from the environment
//! (`cairn_server::Backends::from_env`): `CAIRN_DATABASE_URL=postgres://…` for PostgreSQL,
//! `CAIRN_S3_BUCKET`, `CAIRN_S3_ENDPOINT`, `CAIRN_S3_REGION`, `CAIRN_S3_PREFIX` and the usual
//! `AWS_*` credentials for S3; unset, the embedded defaults. `replicate` makes the data
//! directory of another instance of the same deployment (`docs/deploy.md`).
//!
//! `init` makes the data directory (`cairn_server::data`): the embedded PKI (agents pin
//! `DATA/pki/ca.pem`), the token signing key, the escrow key pair, the storage key ring and the
//! metadata database. `serve` checks the certificate (chain, host name, validity) and serves
//! every route over TLS. The other commands are the operator's: they work on the data directory
//! directly (SQLite allows it while the server runs). Tenant administrators register, enroll
//! and deauthorize devices, and recover escrowed keys, through the API (`docs/api/openapi.json`).

// A binary: printing is its job, and errors end it with a message and a non-zero exit code.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use cairn::server::signing::{self, KeySet};
use cairn::server::{
    CA_CERT, DEFAULT_METRICS_ADDR, DataDir, IssuedRow, MetricsOptions, RetentionPolicy, Server,
    SystemClock, UserState, policy,
};
use cairn::token::{
    Capabilities, Capability, Clock, DeviceId, Role, TenantId, TokenId, TokenRequest, UserId,
};
use clap::{Arg, ArgAction, Command};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The default tenant quota: 1 TiB.
const DEFAULT_QUOTA: i64 = 1 << 40;

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Runtime::new()?)
}

fn init(data: &DataDir, hosts: &[String]) -> Result<()> {
    runtime()?.block_on(data.init(hosts, time::OffsetDateTime::now_utc()))?;
    let (key, _) = data.signing_key()?;
    println!(
        "initialised {}: CA {} (pin it in agents), server certificate for {}, token key {}",
        data.root().display(),
        data.root().join("pki").join(CA_CERT).display(),
        hosts.join(", "),
        key.verifying_key().id().as_str()
    );
    Ok(())
}

fn serve_command(
    data: &DataDir,
    listen: &str,
    host: &str,
    metrics: Option<&str>,
    metrics_options: MetricsOptions,
) -> Result<()> {
    // Structured logs on stderr; RUST_LOG filters them (default: info).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    runtime()?.block_on(async {
        let listen: std::net::SocketAddr = tokio::net::lookup_host(listen)
            .await?
            .next()
            .ok_or_else(|| format!("{listen}: no address"))?;
        let server = Server::builder().host(host).bind(data, listen).await?;
        if let Some(addr) = metrics {
            let metrics = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("binding the metrics port {addr}: {e}"))?;
            let bound = metrics.local_addr()?;
            println!("metrics on http://{bound}/metrics");
            if !bound.ip().is_loopback() {
                eprintln!(
                    "warning: the metrics port {bound} is plain HTTP beyond loopback: keep it on a private network"
                );
            }
            tokio::spawn(cairn::server::serve_metrics(
                metrics,
                Arc::clone(server.services()),
                metrics_options,
                std::future::pending(),
            ));
        }
        println!("serving https://{} (certificate for {host})", server.addr());
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        server.serve(shutdown).await?;
        Ok(())
    })
}

fn role(name: &str) -> Result<Role> {
    Role::parse(name).ok_or_else(|| format!("unknown role {name} (user, admin or service)").into())
}

fn token_command(data: &DataDir, m: &clap::ArgMatches) -> Result<()> {
    let get = |name: &str| m.get_one::<String>(name).map(String::as_str);
    let caps: Vec<Capability> = get("cap")
        .unwrap_or("")
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| {
            Capability::ALL
                .into_iter()
                .find(|k| k.as_str() == c)
                .ok_or_else(|| format!("unknown capability {c}"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let request = TokenRequest {
        subject: UserId::new(get("user").unwrap_or_default())?,
        tenant: TenantId::new(get("tenant").unwrap_or_default())?,
        device: get("device").map(DeviceId::new).transpose()?,
        role: role(get("role").unwrap_or("user"))?,
        capabilities: Capabilities::of(&caps),
        lifetime_secs: get("lifetime").unwrap_or("900").parse()?,
    };
    let (key, made) = data.signing_key()?;
    let (id, now) = (TokenId::random()?, SystemClock.now());
    // Signed by the key that signs now in the database's key set, as a server would.
    let token = runtime()?.block_on(async {
        let db = data.db().await?;
        if db.quota(&request.tenant).await?.is_none() {
            return Err(format!("no tenant {}", request.tenant.as_str()).into());
        }
        let keys = KeySet::open(&db, &data.storage_ring()?, &key, made, policy()?).await?;
        let token = keys.issue_with_id(&request, now, id.clone())?;
        // Recorded (never the token itself) so that admins can list it and revoke it by id.
        db.record_issued(&request.tenant, &IssuedRow::of(&request, id, now, "cli"))
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(token)
    })?;
    println!("{}", token.expose());
    Ok(())
}

/// One rule of a policy, by its field.
type Rule = fn(&mut RetentionPolicy) -> &mut u32;

/// The floor's rules, as command-line flags and the policy's fields.
const FLOOR_RULES: [(&str, Rule); 7] = [
    ("keep-last", |p| &mut p.keep_last),
    ("keep-hourly", |p| &mut p.keep_hourly),
    ("keep-daily", |p| &mut p.keep_daily),
    ("keep-weekly", |p| &mut p.keep_weekly),
    ("keep-monthly", |p| &mut p.keep_monthly),
    ("keep-yearly", |p| &mut p.keep_yearly),
    ("keep-within-days", |p| &mut p.keep_within_days),
];

/// `retention floor`: prints the operator's floor; with rules given, changes those first.
fn retention_floor(data: &DataDir, m: &clap::ArgMatches) -> Result<()> {
    runtime()?.block_on(async {
        let db = data.db().await?;
        let mut floor = db.retention_floor().await?;
        let mut changed = false;
        for (flag, field) in FLOOR_RULES {
            if let Some(&v) = m.get_one::<u32>(flag) {
                *field(&mut floor) = v;
                changed = true;
            }
        }
        if changed {
            db.set_retention_floor(&floor).await?;
            eprintln!("floor set; running servers apply it to the next request");
        }
        println!("{}", serde_json::to_string_pretty(&floor)?);
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// `signing-key list|publish|switch|retire`: the token signing key set, rotated in three
/// steps (`cairn_server::signing`); running servers follow within their refresh interval.
fn signing_key_command(data: &DataDir, verb: &str, m: &clap::ArgMatches) -> Result<()> {
    let key = m.get_one::<String>("key").map(String::as_str);
    let now = SystemClock.now().unix();
    runtime()?.block_on(async {
        let db = data.db().await?;
        let ring = data.storage_ring()?;
        // The data directory's key joins the set on first use, as a server's start does.
        let (file_key, made) = data.signing_key()?;
        KeySet::open(&db, &ring, &file_key, made, policy()?).await?;
        match (verb, key) {
            ("publish", _) => {
                let id = signing::publish(&db, &ring, now).await?;
                println!("{id}");
                eprintln!(
                    "published: verifiers accept it within seconds; switch to it after {}s with: server signing-key switch DATA --key {id}",
                    signing::PROPAGATION_SECS
                );
            }
            ("switch", Some(id)) => {
                signing::switch(&db, id, now).await?;
                eprintln!("key {id} signs from now on; the keys before it sign no more (retire them once their tokens expired)");
            }
            ("retire", Some(id)) => {
                signing::retire(&db, id, now, &policy()?).await?;
                eprintln!("key {id} removed from the set");
            }
            ("list", _) => {
                println!("id\tpublished\tsigns_from\tstopped\tremoved");
                let dash = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |t| t.to_string());
                for k in signing::list(&db).await? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        k.id,
                        k.published_unix,
                        dash(k.signs_from_unix),
                        dash(k.retired_unix),
                        dash(k.removed_unix)
                    );
                }
            }
            _ => return Err("give --key".into()),
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// `retention set`: the operator writes a tenant's policy (or a user's override) at once,
/// without the delay a shortening waits through the API (the operator holds the storage: the
/// delay protects against a stolen admin token, not against them). Rules not given keep their
/// value; the floor still applies. Audited as the operator.
fn retention_set(data: &DataDir, m: &clap::ArgMatches) -> Result<()> {
    let get = |name: &str| m.get_one::<String>(name).map(String::as_str);
    let tenant = TenantId::new(get("tenant").unwrap_or(""))?;
    let user = get("user").map(UserId::new).transpose()?;
    runtime()?.block_on(async {
        let db = data.db().await?;
        if db.quota(&tenant).await?.is_none() {
            return Err(format!("no tenant {}", tenant.as_str()).into());
        }
        if let Some(u) = &user
            && db.user(&tenant, u).await?.is_none()
        {
            return Err(format!("no user {} in tenant {}", u.as_str(), tenant.as_str()).into());
        }
        let before = db.retention(&tenant, user.as_ref()).await?;
        let mut policy = before.map_or(RetentionPolicy::DEFAULT, |(p, _)| p);
        for (flag, field) in FLOOR_RULES {
            if let Some(&v) = m.get_one::<u32>(flag) {
                *field(&mut policy) = v;
            }
        }
        let floor = db.retention_floor().await?;
        if policy.at_least(&floor) != policy {
            return Err(format!(
                "below the operator's floor {}",
                serde_json::to_string(&floor)?
            )
            .into());
        }
        db.set_retention(&tenant, user.as_ref(), &(policy, None))
            .await?;
        let target = user.as_ref().map_or("tenant", |u| u.as_str());
        db.audit(
            &tenant,
            "operator",
            "retention.set",
            target,
            &serde_json::to_string(&policy)?,
        )
        .await?;
        println!("{}", serde_json::to_string_pretty(&policy)?);
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// `retention prune-settings`: prints the operator's prune settings; with values given,
/// changes those first.
fn prune_settings(data: &DataDir, m: &clap::ArgMatches) -> Result<()> {
    runtime()?.block_on(async {
        let db = data.db().await?;
        let mut options = db.prune_options().await?;
        let mut changed = false;
        if let Some(&hours) = m.get_one::<u32>("grace-hours") {
            options.grace_secs = i64::from(hours) * 3600;
            changed = true;
        }
        if let Some(&pct) = m.get_one::<u8>("live-threshold") {
            options.live_threshold_pct = pct;
            changed = true;
        }
        if let Some(&hours) = m.get_one::<u32>("every-hours") {
            options.every_hours = hours;
            changed = true;
        }
        if changed {
            db.set_prune_options(&options).await?;
            eprintln!("prune settings set; running servers apply them to the next prune");
        }
        println!("{}", serde_json::to_string_pretty(&options)?);
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// `tokens`: the tenant's tokens that have not expired (id, whose, what for, until when).
fn list_tokens(data: &DataDir, m: &clap::ArgMatches) -> Result<()> {
    let tenant = TenantId::new(m.get_one::<String>("tenant").map_or("", String::as_str))?;
    runtime()?.block_on(async {
        let db = data.db().await?;
        println!("id\tuser\tdevice\trole\tpurpose\tissued\texpires\trevoked\tcapabilities");
        for t in db.issued_tokens(&tenant).await? {
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                t.id.as_str(),
                t.subject.as_str(),
                t.device.as_ref().map_or("-", |d| d.as_str()),
                t.role,
                t.purpose,
                t.issued_unix,
                t.expires_unix,
                if t.revoked { "revoked" } else { "-" },
                t.capabilities
            );
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

fn tenant_add(data: &DataDir, m: &clap::ArgMatches) -> Result<()> {
    let tenant = TenantId::new(m.get_one::<String>("tenant").map_or("", String::as_str))?;
    let quota: i64 = m
        .get_one::<String>("quota")
        .map_or(Ok(DEFAULT_QUOTA), |q| q.parse())?;
    let created = runtime()?.block_on(async {
        let db = data.db().await?;
        Ok::<_, Box<dyn std::error::Error>>(db.add_tenant(&tenant, quota).await?)
    })?;
    if !created {
        return Err(format!("tenant {tenant} exists").into());
    }
    println!("tenant {tenant} added (quota {quota} bytes)");
    Ok(())
}

fn user_add(data: &DataDir, m: &clap::ArgMatches) -> Result<()> {
    let get = |name: &str| m.get_one::<String>(name).map_or("", String::as_str);
    let tenant = TenantId::new(get("tenant"))?;
    let user = UserId::new(get("user"))?;
    let role = role(m.get_one::<String>("role").map_or("user", String::as_str))?;
    let created = runtime()?.block_on(async {
        let db = data.db().await?;
        Ok::<_, Box<dyn std::error::Error>>(db.add_user(&tenant, &user, role).await?)
    })?;
    if !created {
        return Err(format!("user {user} exists, or tenant {tenant} does not").into());
    }
    println!("user {user} ({}) added to {tenant}", role.as_str());
    Ok(())
}

/// `user suspend|resume|remove`, straight into the database: running servers read it within
/// their revocation refresh. Audited as the operator.
fn user_lifecycle(data: &DataDir, verb: &str, m: &clap::ArgMatches) -> Result<()> {
    let get = |name: &str| m.get_one::<String>(name).map_or("", String::as_str);
    let tenant = TenantId::new(get("tenant"))?;
    let user = UserId::new(get("user"))?;
    runtime()?.block_on(async {
        let db = data.db().await?;
        let unknown = || format!("no user {} in tenant {}", user.as_str(), tenant.as_str());
        if verb == "remove" {
            let devices = db.remove_user(&tenant, &user).await?.ok_or_else(unknown)?;
            for device in &devices {
                db.audit(
                    &tenant,
                    "operator",
                    "device.deauthorize",
                    device.as_str(),
                    "ok: its user was removed",
                )
                .await?;
            }
            db.audit(&tenant, "operator", "user.remove", user.as_str(), "ok")
                .await?;
            println!(
                "user {} removed; {} device(s) deauthorized",
                user.as_str(),
                devices.len()
            );
            return Ok(());
        }
        let suspend = verb == "suspend";
        match db.set_user_suspended(&tenant, &user, suspend).await? {
            None => Err(unknown().into()),
            Some(UserState::Removed) => {
                Err(format!("user {} was removed: that is final", user.as_str()).into())
            }
            Some(_) => {
                let action = if suspend {
                    "user.suspend"
                } else {
                    "user.resume"
                };
                db.audit(&tenant, "operator", action, user.as_str(), "ok")
                    .await?;
                let done = if suspend { "suspended" } else { "resumed" };
                println!("user {} {done}", user.as_str());
                Ok(())
            }
        }
    })
}

/// `revoke-token`: adds a token id to the deny list. Audited as the operator.
fn revoke_token(data: &DataDir, m: &clap::ArgMatches) -> Result<()> {
    let get = |name: &str| m.get_one::<String>(name).map_or("", String::as_str);
    let tenant = TenantId::new(get("tenant"))?;
    let jti = TokenId::new(get("jti")).map_err(|e| {
        format!("--jti: {e} (a token id is 16 to 64 of A-Z, a-z, 0-9, '_' and '-')")
    })?;
    runtime()?.block_on(async {
        let db = data.db().await?;
        db.revoke_token(&tenant, &jti).await?;
        db.audit(&tenant, "operator", "token.revoke", jti.as_str(), "ok")
            .await?;
        println!("token {} revoked", jti.as_str());
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// The operator's recovery: unwraps the user's escrowed key with the escrow authority's key in
/// the data directory and writes an envelope wrapping it to `--to` (an X25519 public key, hex)
/// alone. Audited like the API's recovery.
fn escrow_recover(data: &DataDir, m: &clap::ArgMatches) -> Result<()> {
    let get = |name: &str| m.get_one::<String>(name).map_or("", String::as_str);
    let tenant = TenantId::new(get("tenant"))?;
    let user = UserId::new(get("user"))?;
    let to = hex::decode(get("to")).map_err(|_| "--to must be 64 hex digits")?;
    let out = PathBuf::from(get("out"));
    let identity = data.escrow_identity()?;
    let envelope = runtime()?.block_on(async {
        let db = data.db().await?;
        Ok::<_, Box<dyn std::error::Error>>(
            cairn::server::recover(&db, &identity, &tenant, &user, "operator", &to).await?,
        )
    })?;
    std::fs::write(&out, envelope)?;
    println!(
        "{user}'s key of {tenant}, wrapped to the given key, written to {}",
        out.display()
    );
    Ok(())
}

fn audit(data: &DataDir, m: &clap::ArgMatches) -> Result<()> {
    let tenant = TenantId::new(m.get_one::<String>("tenant").map_or("", String::as_str))?;
    let log = runtime()?.block_on(async {
        let db = data.db().await?;
        Ok::<_, Box<dyn std::error::Error>>(db.audit_log(&tenant).await?)
    })?;
    for (actor, action, target, outcome) in log {
        println!("{actor}\t{action}\t{target}\t{outcome}");
    }
    Ok(())
}

/// `archive health`: each archive marked damaged (an opening found acknowledged data missing);
/// `archive clear-damage`: clears one mark once the operator has looked into it.
fn archive_command(data: &DataDir, sub: &clap::ArgMatches) -> Result<()> {
    let arg =
        |m: &clap::ArgMatches, name: &str| m.get_one::<String>(name).cloned().unwrap_or_default();
    runtime()?.block_on(async {
        let db = data.db().await?;
        match sub.subcommand() {
            Some(("health", m)) => {
                let tenant = TenantId::new(&arg(m, "tenant"))?;
                let mut damaged = 0;
                for user in db.users(&tenant).await? {
                    if let Some(d) = db.damage(&tenant, &user.id).await? {
                        damaged += 1;
                        println!(
                            "{}\tdamaged since {}\t{} acknowledged records lost\t{}",
                            user.id, d.since_unix, d.lost_records, d.detail
                        );
                    }
                }
                if damaged == 0 {
                    println!("no archive of {} is marked damaged", tenant.as_str());
                }
                Ok(())
            }
            Some(("clear-damage", m)) => {
                let (tenant, user) = (
                    TenantId::new(&arg(m, "tenant"))?,
                    UserId::new(&arg(m, "user"))?,
                );
                if !db.clear_damage(&tenant, &user).await? {
                    return Err(format!(
                        "the archive of {}/{} is not marked damaged",
                        tenant.as_str(),
                        user.as_str()
                    )
                    .into());
                }
                db.audit(
                    &tenant,
                    "operator",
                    "archive.damage-cleared",
                    user.as_str(),
                    "ok",
                )
                .await?;
                println!(
                    "cleared the damage mark of {}/{}",
                    tenant.as_str(),
                    user.as_str()
                );
                Ok(())
            }
            _ => Err("unknown archive command".into()),
        }
    })
}

fn main() -> ExitCode {
    let data = || {
        Arg::new("data")
            .required(true)
            .value_parser(clap::value_parser!(PathBuf))
    };
    let opt = |name: &'static str| Arg::new(name).long(name);
    let matches = Command::new("server")
        .about("Cairn's multi-tenant HTTPS server")
        .subcommand_required(true)
        .arg(
            Arg::new("kek-file")
                .long("kek-file")
                .global(true)
                .value_name("PATH")
                .value_parser(clap::value_parser!(PathBuf))
                .help("key-encryption key file, outside the data directory, that seals its secret files (default: $CAIRN_KEK_FILE; unset: secrets are plain). init makes it if missing"),
        )
        .subcommand(
            Command::new("init")
                .about("create a data directory: PKI, keys, storage key ring, database")
                .arg(data())
                .arg(opt("host").action(ArgAction::Append)),
        )
        .subcommand(
            Command::new("serve")
                .about("serve over TLS")
                .arg(data())
                .arg(opt("listen"))
                .arg(opt("host"))
                .arg(
                    opt("metrics")
                        .num_args(0..=1)
                        .default_missing_value(DEFAULT_METRICS_ADDR)
                        .value_name("ADDR")
                        .help("serve Prometheus /metrics (plain HTTP) on ADDR; without ADDR on loopback, 127.0.0.1:9464"),
                )
                .arg(
                    opt("metrics-tenants")
                        .action(ArgAction::SetTrue)
                        .help("label quota figures with tenant ids in /metrics (off: tenant names stay off the metrics port)"),
                ),
        )
        .subcommand(
            Command::new("tenant")
                .about("tenants")
                .subcommand_required(true)
                .subcommand(
                    Command::new("add")
                        .about("add a tenant")
                        .arg(data())
                        .arg(opt("tenant").required(true))
                        .arg(opt("quota")),
                ),
        )
        .subcommand(
            Command::new("user")
                .about("users")
                .subcommand_required(true)
                .subcommand(
                    Command::new("add")
                        .about("add a user to a tenant")
                        .arg(data())
                        .arg(opt("tenant").required(true))
                        .arg(opt("user").required(true))
                        .arg(opt("role")),
                )
                .subcommand(
                    Command::new("suspend")
                        .about("refuse every token of a user and of their devices (running servers follow within about 2 s); undone by resume")
                        .arg(data())
                        .arg(opt("tenant").required(true))
                        .arg(opt("user").required(true)),
                )
                .subcommand(
                    Command::new("resume")
                        .about("accept a suspended user's tokens again")
                        .arg(data())
                        .arg(opt("tenant").required(true))
                        .arg(opt("user").required(true)),
                )
                .subcommand(
                    Command::new("remove")
                        .about("remove a user for good: tokens refused, every device deauthorized; the archive stays")
                        .arg(data())
                        .arg(opt("tenant").required(true))
                        .arg(opt("user").required(true)),
                ),
        )
        .subcommand(
            Command::new("revoke-token")
                .about("revoke one token by its id (the jti claim; running servers follow within about 2 s)")
                .arg(data())
                .arg(opt("tenant").required(true))
                .arg(opt("jti").required(true)),
        )
        .subcommand(
            Command::new("retention")
                .about("retention across every tenant")
                .subcommand_required(true)
                .subcommand(
                    Command::new("floor")
                        .about("show, or raise or lower, the operator's floor: the least any tenant's retention policy keeps (a raised floor raises every policy below it at once)")
                        .arg(data())
                        .args(FLOOR_RULES.map(|(flag, _)| {
                            opt(flag).value_parser(clap::value_parser!(u32).range(0..=36_500))
                        })),
                )
                .subcommand(
                    Command::new("set")
                        .about("write a tenant's retention policy, or a user's override, at once (the operator's power: no delay, audited); rules not given keep their value")
                        .arg(data())
                        .arg(opt("tenant").required(true))
                        .arg(opt("user"))
                        .args(FLOOR_RULES.map(|(flag, _)| {
                            opt(flag).value_parser(clap::value_parser!(u32).range(0..=36_500))
                        })),
                )
                .subcommand(
                    Command::new("prune-settings")
                        .about("show, or change, how prune runs: how often the servers prune every archive on their own (default every 24 h; 0: only when an admin asks), the grace period a block no kept snapshot reaches waits before it is deleted (default 24 h; 0 is for benchmarks, and can make a backup running across a prune fail and retry), and the live share under which a segment is compacted (default 80 %)")
                        .arg(data())
                        .arg(opt("grace-hours").value_parser(clap::value_parser!(u32).range(0..=8_760)))
                        .arg(opt("live-threshold").value_parser(clap::value_parser!(u8).range(1..=100)))
                        .arg(opt("every-hours").value_parser(clap::value_parser!(u32).range(0..=8_760))),
                ),
        )
        .subcommand(
            Command::new("signing-key")
                .about("the token signing keys: rotate them in three steps (publish, then switch after a few seconds, then retire the old key once its last token expired), without downtime on any instance")
                .subcommand_required(true)
                .subcommand(
                    Command::new("list")
                        .about("the key set: id, published, signs from, stopped signing (Unix seconds)")
                        .arg(data()),
                )
                .subcommand(
                    Command::new("publish")
                        .about("add a new key: every instance accepts its tokens within seconds (prints its id)")
                        .arg(data()),
                )
                .subcommand(
                    Command::new("switch")
                        .about("sign with a published key from now on; the keys before it stop signing (refused until every instance has it)")
                        .arg(data())
                        .arg(opt("key").required(true)),
                )
                .subcommand(
                    Command::new("retire")
                        .about("remove a key that stopped signing, once its last token expired (refused earlier)")
                        .arg(data())
                        .arg(opt("key").required(true)),
                ),
        )
        .subcommand(
            Command::new("tokens")
                .about("list a tenant's tokens that have not expired (ids to revoke; never the tokens)")
                .arg(data())
                .arg(opt("tenant").required(true)),
        )
        .subcommand(
            Command::new("token")
                .about("issue a bearer token")
                .arg(data())
                .arg(opt("tenant").required(true))
                .arg(opt("user").required(true))
                .arg(opt("device"))
                .arg(opt("role"))
                .arg(opt("cap"))
                .arg(opt("lifetime")),
        )
        .subcommand(
            Command::new("rotate-storage-key")
                .about("add a storage key for events at rest (old keys stay for reading; restart to use it)")
                .arg(data()),
        )
        .subcommand(
            Command::new("escrow")
                .about("escrowed keys")
                .subcommand_required(true)
                .subcommand(
                    Command::new("recover")
                        .about("re-wrap a user's escrowed key to an X25519 public key (audited)")
                        .arg(data())
                        .arg(opt("tenant").required(true))
                        .arg(opt("user").required(true))
                        .arg(opt("to").required(true).help("recipient X25519 public key, 64 hex digits"))
                        .arg(opt("out").required(true).help("where to write the envelope")),
                ),
        )
        .subcommand(
            Command::new("replicate")
                .about("make another instance's data directory: a copy of the certificates and keys")
                .arg(data())
                .arg(
                    Arg::new("new")
                        .required(true)
                        .value_parser(clap::value_parser!(PathBuf)),
                ),
        )
        .subcommand(
            Command::new("audit")
                .about("print a tenant's audit log")
                .arg(data())
                .arg(opt("tenant").required(true)),
        )
        .subcommand(
            Command::new("archive")
                .about("archives' integrity: what was found damaged, and clearing a mark")
                .subcommand_required(true)
                .subcommand(
                    Command::new("health")
                        .about("list a tenant's archives marked damaged (acknowledged data found missing)")
                        .arg(data())
                        .arg(opt("tenant").required(true)),
                )
                .subcommand(
                    Command::new("clear-damage")
                        .about("clear an archive's damage mark once you have looked into it (audited)")
                        .arg(data())
                        .arg(opt("tenant").required(true))
                        .arg(opt("user").required(true)),
                ),
        )
        .get_matches();
    let dir = |m: &clap::ArgMatches| {
        let data = DataDir::at(m.get_one::<PathBuf>("data").cloned().unwrap_or_default())
            .with_backends(cairn::server::Backends::from_env());
        let kek = m.get_one::<PathBuf>("kek-file").cloned().or_else(|| {
            std::env::var_os("CAIRN_KEK_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        match kek {
            Some(path) => data.with_kek_file(path),
            None => data,
        }
    };
    let result = match matches.subcommand() {
        Some(("init", m)) => {
            let mut hosts: Vec<String> = m
                .get_many::<String>("host")
                .map(|h| h.cloned().collect())
                .unwrap_or_default();
            if hosts.is_empty() {
                hosts = vec!["localhost".into(), "127.0.0.1".into()];
            }
            init(&dir(m), &hosts)
        }
        Some(("serve", m)) => serve_command(
            &dir(m),
            m.get_one::<String>("listen")
                .map_or("127.0.0.1:8443", String::as_str),
            m.get_one::<String>("host")
                .map_or("localhost", String::as_str),
            m.get_one::<String>("metrics").map(String::as_str),
            MetricsOptions {
                per_tenant: m.get_flag("metrics-tenants"),
            },
        ),
        Some(("tenant", sub)) => match sub.subcommand() {
            Some(("add", m)) => tenant_add(&dir(m), m),
            _ => Err("unknown tenant command".into()),
        },
        Some(("user", sub)) => match sub.subcommand() {
            Some(("add", m)) => user_add(&dir(m), m),
            Some((verb @ ("suspend" | "resume" | "remove"), m)) => user_lifecycle(&dir(m), verb, m),
            _ => Err("unknown user command".into()),
        },
        Some(("revoke-token", m)) => revoke_token(&dir(m), m),
        Some(("token", m)) => token_command(&dir(m), m),
        Some(("tokens", m)) => list_tokens(&dir(m), m),
        Some(("signing-key", sub)) => match sub.subcommand() {
            Some((verb, m)) => signing_key_command(&dir(m), verb, m),
            None => Err("unknown signing-key command".into()),
        },
        Some(("retention", sub)) => match sub.subcommand() {
            Some(("floor", m)) => retention_floor(&dir(m), m),
            Some(("prune-settings", m)) => prune_settings(&dir(m), m),
            Some(("set", m)) => retention_set(&dir(m), m),
            _ => Err("unknown retention command".into()),
        },
        Some(("rotate-storage-key", m)) => {
            let data = dir(m);
            data.rotate_storage_key()
                .map(|id| println!("storage key {id} added; restart the server to seal with it"))
                .map_err(Into::into)
        }
        Some(("escrow", sub)) => match sub.subcommand() {
            Some(("recover", m)) => escrow_recover(&dir(m), m),
            _ => Err("unknown escrow command".into()),
        },
        Some(("audit", m)) => audit(&dir(m), m),
        Some(("archive", sub)) => match sub.subcommand() {
            Some((_, m)) => archive_command(&dir(m), sub),
            None => Err("unknown archive command".into()),
        },
        Some(("replicate", m)) => {
            let new = m.get_one::<PathBuf>("new").cloned().unwrap_or_default();
            dir(m)
                .replicate(&new)
                .map(|d| {
                    println!(
                        "{} is ready: start it with the same backends",
                        d.root().display()
                    )
                })
                .map_err(Into::into)
        }
        _ => Err("unknown command".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
