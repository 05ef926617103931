//! Event batches: encode, decode + validate, and OCSF JSON export of typical events (about 250
//! bytes each), in events per second (criterion's `Elements` throughput), single core.
//!
//! `cargo bench --bench events`

// A benchmark: a failure may panic.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use cairn::events::v1::{
    Activity, Actor, EventBatch, File, FileEvent, ServerEnvelope, StoredEvent,
};
use cairn::events::{Limits, ocsf, validate_batch};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use std::hint::black_box;

const NOW: i64 = 1_800_000_000_000_000_000;

fn typical(i: u32) -> FileEvent {
    FileEvent {
        event_id: (i as u128 * 0x9E37_79B9).to_le_bytes().to_vec(),
        observed_unix_nanos: NOW - 1_000_000 * i64::from(i),
        activity: Activity::Update as i32,
        file: Some(File {
            path: format!(
                "/home/user{}/Documents/projects/quarterly-report-{i}.docx",
                i % 50
            ),
            size: 40_000 + u64::from(i),
            mode: 0o100644,
            owner: format!("user{}", i % 50),
            modified_unix_nanos: NOW - 2_000_000_000,
            sha256: vec![i as u8; 32],
            blake3: vec![(i >> 8) as u8; 32],
            ..Default::default()
        }),
        actor: Some(Actor {
            user: format!("user{}", i % 50),
            process_id: 1000 + i,
            process_name: "soffice.bin".into(),
            executable: "/usr/lib/libreoffice/program/soffice.bin".into(),
        }),
        exposure: None,
        backup: None,
    }
}

fn events(c: &mut Criterion) {
    let n = 1000u32;
    let batch = EventBatch {
        device_id: vec![1; 16],
        agent_version: "cairn-agent 0.1.0".into(),
        batch_sequence: 1,
        events: (0..n).map(typical).collect(),
    };
    let bytes = batch.encode_to_vec();
    let stored: Vec<StoredEvent> = batch
        .events
        .iter()
        .map(|e| StoredEvent {
            envelope: Some(ServerEnvelope {
                tenant_id: "acme".into(),
                user_id: "u-1".into(),
                device_id: vec![1; 16],
                received_unix_nanos: NOW,
                server_event_id: vec![2; 16],
                hash_keying: cairn::events::v1::HashKeying::TenantV1 as i32,
            }),
            event: Some(e.clone()),
        })
        .collect();
    let mut g = c.benchmark_group(format!("events/{} B per event", bytes.len() / n as usize));
    g.throughput(Throughput::Elements(u64::from(n)));
    g.bench_function("encode", |b| b.iter(|| black_box(&batch).encode_to_vec()));
    g.bench_function("decode+validate", |b| {
        b.iter(|| validate_batch(black_box(&bytes), &Limits::default(), NOW).unwrap())
    });
    let mut out = Vec::with_capacity(2 << 20);
    g.bench_function("ocsf_ndjson", |b| {
        b.iter(|| {
            out.clear();
            ocsf::write_ndjson(black_box(&stored), "0.1.0", &mut out).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, events);
criterion_main!(benches);
