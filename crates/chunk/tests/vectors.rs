//! Known-answer vectors for `Algorithm::KeyedV1` (`tests/vectors/v1.json`) and
//! `Algorithm::KeyedV2` (`tests/vectors/v2.json`).
//!
//! Inputs are generated from a description (so the files stay small); the expected output is the
//! exact list of chunk lengths. `vectors_are_up_to_date` fails if a chunker's output drifts: any
//! change to an algorithm's cut points is a new algorithm version, never an edit. To regenerate
//! after adding cases: `CAIRN_REGENERATE_VECTORS=1 cargo test -p cairn-chunk --test vectors`.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Test data generation and statistics cast bounded values; truncation is intended there.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]

use cairn_chunk::{Algorithm, Chunker, ChunkerConfig};
use cairn_keys::ChunkerKey;
use serde::{Deserialize, Serialize};

/// The frozen keyed algorithms and their vector files.
const ALGORITHMS: [(Algorithm, &str); 2] = [
    (
        Algorithm::KeyedV1,
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/v1.json"),
    ),
    (
        Algorithm::KeyedV2,
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/v2.json"),
    ),
];

fn chunker(algorithm: Algorithm, case: &Case) -> Chunker {
    let key: [u8; 32] = hex::decode(&case.key).unwrap().try_into().unwrap();
    let key = ChunkerKey::from_bytes(key);
    let config = ChunkerConfig::new(case.min, case.avg, case.max).unwrap();
    match algorithm {
        Algorithm::KeyedV1 => Chunker::keyed_v1(&key, config),
        Algorithm::KeyedV2 => Chunker::keyed_v2(&key, config),
        other => panic!("no vectors for {other:?}"),
    }
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Case {
    name: String,
    /// The 32-byte chunker key, hex.
    key: String,
    min: usize,
    avg: usize,
    max: usize,
    /// `random:<seed>`: BLAKE3 XOF of the UTF-8 seed; `fill:<byte hex>`: one repeated byte;
    /// `text:<seed>`: random bytes mapped onto 16 letters (low entropy, repeated windows).
    input: String,
    len: usize,
    /// Expected chunk lengths, in order.
    chunks: Vec<usize>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct File {
    description: String,
    cases: Vec<Case>,
}

fn input(desc: &str, len: usize) -> Vec<u8> {
    let (kind, arg) = desc.split_once(':').unwrap();
    match kind {
        "random" | "text" => {
            let mut out = vec![0u8; len];
            blake3::Hasher::new()
                .update(arg.as_bytes())
                .finalize_xof()
                .fill(&mut out);
            if kind == "text" {
                out.iter_mut().for_each(|b| *b = b'a' + (*b & 15));
            }
            out
        }
        "fill" => vec![u8::from_str_radix(arg, 16).unwrap(); len],
        other => panic!("unknown input kind {other}"),
    }
}

fn cases() -> Vec<Case> {
    let key_a = hex::encode([0x11u8; 32]);
    let key_b = hex::encode(blake3::hash(b"cairn-chunk vector key b").as_bytes());
    let small = (256, 1024, 4096);
    let d = ChunkerConfig::DEFAULT;
    let default = (d.min(), d.avg(), d.max());
    let mut out = vec![];
    let mut add =
        |name: &str, key: &str, (min, avg, max): (usize, usize, usize), input: &str, len: usize| {
            out.push(Case {
                name: name.into(),
                key: key.into(),
                min,
                avg,
                max,
                input: input.into(),
                len,
                chunks: vec![],
            });
        };
    add("empty", &key_a, small, "random:empty", 0);
    add("shorter than min", &key_a, small, "random:short", 255);
    add("exactly min", &key_a, small, "random:min", 256);
    add("min plus one", &key_a, small, "random:min1", 257);
    add("exactly max", &key_a, small, "random:max", 4096);
    add("random small sizes", &key_a, small, "random:small", 100_000);
    add(
        "random small sizes, other key",
        &key_b,
        small,
        "random:small",
        100_000,
    );
    add("text-like small sizes", &key_a, small, "text:text", 100_000);
    add("run of 0x00", &key_a, small, "fill:00", 20_000);
    add("run of 0xab", &key_b, small, "fill:ab", 20_000);
    add(
        "window-sized sizes",
        &key_b,
        (64, 65, 128),
        "random:tiny",
        5_000,
    );
    add(
        "default sizes, 24 MiB random",
        &key_a,
        default,
        "random:default",
        24 << 20,
    );
    add(
        "default sizes, 24 MiB random, other key",
        &key_b,
        default,
        "random:default",
        24 << 20,
    );
    add(
        "default sizes, run of 0x00",
        &key_a,
        default,
        "fill:00",
        20 << 20,
    );
    out
}

fn generate(algorithm: Algorithm) -> File {
    let cases = cases()
        .into_iter()
        .map(|mut c| {
            c.chunks = chunker(algorithm, &c)
                .chunks(&input(&c.input, c.len))
                .map(|x| x.len)
                .collect();
            c
        })
        .collect();
    File {
        description: format!(
            "cairn-chunk {algorithm:?} known-answer vectors (docs/format/chunk.md)"
        ),
        cases,
    }
}

#[test]
fn vectors_are_up_to_date() {
    for (algorithm, path) in ALGORITHMS {
        let fresh = serde_json::to_string(&generate(algorithm))
            .unwrap()
            .replace("},{", "},\n{")
            + "\n";
        if std::env::var_os("CAIRN_REGENERATE_VECTORS").is_some() {
            std::fs::write(path, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(path).expect("committed vector file");
        assert_eq!(
            committed, fresh,
            "{algorithm:?} output changed: that is a new algorithm version"
        );
    }
}

/// The streaming API reproduces every committed vector too.
#[test]
fn committed_vectors_verify_through_the_stream() {
    for (algorithm, path) in ALGORITHMS {
        let file: File = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(file.cases.len() >= 10);
        for case in &file.cases {
            let chunker = chunker(algorithm, case);
            let data = input(&case.input, case.len);
            let got: Vec<usize> = chunker
                .stream(&data[..])
                .map(|c| c.unwrap().data.len())
                .collect();
            assert_eq!(got, case.chunks, "{algorithm:?} {}", case.name);
        }
    }
}
