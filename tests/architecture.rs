//! Keeps `docs/architecture.md`'s dependency rules true, by reading `cargo metadata`.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// The format/crypto crates: they never reach the network/runtime crates.
const FORMAT_CRATES: &[&str] = &[
    "cairn-keys",
    "cairn-chunk",
    "cairn-seal",
    "cairn-archive",
    "cairn-events",
    "cairn-token",
    "cairn-escrow",
];
/// Crates only the server, the agent and the examples may use.
const RUNTIME_CRATES: &[&str] = &["tokio", "axum", "hyper", "reqwest", "clap", "anyhow"];
/// Mutually independent crates.
const INDEPENDENT: &[&str] = &[
    "cairn-chunk",
    "cairn-archive",
    "cairn-events",
    "cairn-token",
];

/// Normal (non-dev, non-build) dependency graph by package name. Edges into proc-macro crates are
/// left out: a proc macro runs in the compiler and none of its dependencies are linked into the
/// library (prost-derive uses anyhow, say, but cairn-events does not).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let proc_macros: BTreeSet<&str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["targets"].as_array().unwrap().iter().any(|t| {
                t["kind"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k == "proc-macro")
            })
        })
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let mut graph = BTreeMap::<String, BTreeSet<String>>::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let from = names[node["id"].as_str().unwrap()].to_string();
        let entry = graph.entry(from).or_default();
        for dep in node["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            let pkg = dep["pkg"].as_str().unwrap();
            if normal && !proc_macros.contains(pkg) {
                entry.insert(names[pkg].to_string());
            }
        }
    }
    graph
}

fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(n) = stack.pop() {
        for d in graph.get(&n).into_iter().flatten() {
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn dependency_rules_hold() {
    let graph = graph();
    assert!(
        graph.contains_key("cairn-keys"),
        "cargo metadata lost cairn-keys"
    );
    for krate in FORMAT_CRATES.iter().filter(|c| graph.contains_key(**c)) {
        let deps = reachable(&graph, krate);
        for banned in RUNTIME_CRATES {
            assert!(!deps.contains(*banned), "{krate} reaches {banned}");
        }
        for other in INDEPENDENT.iter().filter(|o| *o != krate) {
            if INDEPENDENT.contains(krate) {
                assert!(!deps.contains(*other), "{krate} depends on {other}");
            }
        }
    }
    // Only these may use the runtime crates directly.
    let allowed = ["cairn-server", "cairn-agent", "cairn"];
    for (krate, deps) in graph.iter().filter(|(k, _)| k.starts_with("cairn")) {
        if allowed.contains(&krate.as_str()) {
            continue;
        }
        for banned in RUNTIME_CRATES {
            assert!(!deps.contains(*banned), "{krate} uses {banned} directly");
        }
    }
}

/// Rule 4: the format/crypto crates' sources neither print, exit, read the environment nor read
/// the clock; no library prints or exits. (A text search over each crate's `src/`, comments and
/// the trailing `#[cfg(test)]` module left out.)
#[test]
fn rule4_format_crates_read_no_clock_or_environment_and_no_library_prints() {
    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let name = format!("cairn-{}", dir.file_name().unwrap().to_string_lossy());
        let mut forbidden = vec![
            "println!",
            "eprintln!",
            "print!(",
            "eprint!(",
            "process::exit",
        ];
        if FORMAT_CRATES.contains(&name.as_str()) {
            forbidden.extend(["SystemTime::now", "Instant::now", "now_utc", "env::var"]);
        }
        let mut files = Vec::new();
        sources(&dir.join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            // Code only: comments (doc examples print) and the test module at a file's end
            // (liveness deadlines) are not the library.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (n, line) in code.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for word in &forbidden {
                    if line.contains(word) {
                        found.push(format!("{}:{}: {word}", file.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "rule 4 broken:\n{}", found.join("\n"));
}
