//! Cairn's server, the thin binary over `cairn-server` (first increments: TLS, PKI, tokens).
//!
//! ```sh
//! cargo run --release --example server -- init DATA [--host NAME]...
//! cargo run --release --example server -- serve DATA [--listen 127.0.0.1:8443] [--host NAME]
//! cargo run --release --example server -- token DATA --tenant T --user U [--device D]
//!     [--role user|admin|service] [--cap backup:put,...] [--lifetime SECS]
//! ```
//!
//! `init` writes the embedded PKI (`DATA/pki/`: a CA and a server certificate for the host
//! names, private keys 0600) and the token signing key (`DATA/token-signing.key`, 0600). `serve`
//! checks the certificate (chain, host name, validity) and serves `GET /healthz` and the tenant
//! routes over TLS. `token` issues a bearer token (an admin command until tenants and devices
//! land). Agents pin `DATA/pki/ca.pem`.

// A binary: printing is its job, and errors end it with a message and a non-zero exit code.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use cairn::server::listener::{Limits, serve};
use cairn::server::pki::{CA_CERT, Pki};
use cairn::server::routes::{AppState, SystemClock, router};
use cairn::server::tls::server_config;
use cairn::token::{
    Capabilities, Capability, Clock, DeviceId, Issuer, KeyEntry, Keyring, MemoryRevocations,
    Policy, Role, SigningKey, TenantId, Timestamp, TokenRequest, UserId, Verifier,
};
use clap::{Arg, ArgAction, Command};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The token key file: the Ed25519 seed (hex) and the time it was made (Unix seconds).
const SIGNING_KEY: &str = "token-signing.key";
const ISSUER: &str = "cairn";
const AUDIENCE: &str = "cairn-server";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Result<[u8; 32]> {
    if s.len() != 64 {
        return Err("the key file must hold 64 hex digits".into());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

fn init(dir: &Path, hosts: &[String]) -> Result<()> {
    let now = time::OffsetDateTime::now_utc();
    Pki::at(dir.join("pki")).init(
        hosts,
        now - time::Duration::hours(1),
        now + time::Duration::days(365),
    )?;
    let key = SigningKey::generate()?;
    let path = dir.join(SIGNING_KEY);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path)?;
    use std::io::Write;
    writeln!(
        file,
        "{}\n{}",
        hex(key.expose_seed().as_ref()),
        SystemClock.now().unix()
    )?;
    file.sync_all()?;
    println!(
        "initialised {}: CA {} (pin it in agents), server certificate for {}, token key {}",
        dir.display(),
        dir.join("pki").join(CA_CERT).display(),
        hosts.join(", "),
        key.verifying_key().id().as_str()
    );
    Ok(())
}

/// The token signing key and when it was made.
fn signing_key(dir: &Path) -> Result<(SigningKey, Timestamp)> {
    let text = fs::read_to_string(dir.join(SIGNING_KEY))?;
    let mut lines = text.lines();
    let seed = unhex32(lines.next().unwrap_or_default().trim())?;
    let made = lines.next().unwrap_or_default().trim().parse::<i64>()?;
    Ok((SigningKey::from_seed(&seed)?, Timestamp::from_unix(made)?))
}

fn serve_command(dir: &Path, listen: &str, host: &str) -> Result<()> {
    let loaded = Pki::at(dir.join("pki")).load(host, time::OffsetDateTime::now_utc())?;
    let tls = server_config(loaded.chain, loaded.key)?;
    let (key, made) = signing_key(dir)?;
    let mut keys = Keyring::new();
    keys.insert(KeyEntry {
        key: key.verifying_key().clone(),
        published_at: made,
        signs_from: made,
        retired_at: None,
    })?;
    let verifier = Verifier::new(
        Policy::new(ISSUER, AUDIENCE)?,
        keys,
        SystemClock,
        MemoryRevocations::new(),
    );
    let app = router(Arc::new(AppState { verifier }));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!(
            "serving https://{} (certificate for {host})",
            listener.local_addr()?
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve(listener, tls, app, Limits::default(), shutdown).await?;
        Ok(())
    })
}

fn token_command(dir: &Path, m: &clap::ArgMatches) -> Result<()> {
    let get = |name: &str| m.get_one::<String>(name).map(String::as_str);
    let role = match get("role").unwrap_or("user") {
        "user" => Role::User,
        "admin" => Role::Admin,
        "service" => Role::Service,
        other => return Err(format!("unknown role {other}").into()),
    };
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
        role,
        capabilities: Capabilities::of(&caps),
        lifetime_secs: get("lifetime").unwrap_or("900").parse()?,
    };
    let (key, _) = signing_key(dir)?;
    let issuer = Issuer::new(key, Policy::new(ISSUER, AUDIENCE)?);
    println!("{}", issuer.issue(&request, SystemClock.now())?.expose());
    Ok(())
}

fn main() -> ExitCode {
    let data = || {
        Arg::new("data")
            .required(true)
            .value_parser(clap::value_parser!(PathBuf))
    };
    let opt = |name: &'static str| Arg::new(name).long(name);
    let matches = Command::new("server")
        .about("Cairn's server (TLS, PKI and tokens so far)")
        .subcommand_required(true)
        .subcommand(
            Command::new("init")
                .about("create a data directory: PKI and token signing key")
                .arg(data())
                .arg(opt("host").action(ArgAction::Append)),
        )
        .subcommand(
            Command::new("serve")
                .about("serve over TLS")
                .arg(data())
                .arg(opt("listen"))
                .arg(opt("host")),
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
        .get_matches();
    let dir = |m: &clap::ArgMatches| m.get_one::<PathBuf>("data").cloned().unwrap_or_default();
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
        ),
        Some(("token", m)) => token_command(&dir(m), m),
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
