//! F-7: arbitrary bytes into the server's ingest validator, and decode -> encode -> decode for
//! every top-level message (the prost round-trip pattern). Never panics.
#![no_main]

use cairn_events::v1::{EventBatch, StoredEvent};
use cairn_events::{Limits, validate_batch};
use libfuzzer_sys::fuzz_target;
use prost::Message;

const NOW: i64 = 1_800_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = validate_batch(data, &Limits::default(), NOW) {
        assert!(batch.events.len() <= Limits::MAX_EVENTS && !batch.events.is_empty());
        let again = EventBatch::decode(&batch.encode_to_vec()[..]).expect("re-decodes");
        assert_eq!(again, batch);
    }
    if let Ok(batch) = EventBatch::decode(data) {
        let bytes = batch.encode_to_vec();
        assert_eq!(EventBatch::decode(&bytes[..]).expect("re-decodes"), batch);
    }
    if let Ok(stored) = StoredEvent::decode(data) {
        let bytes = stored.encode_to_vec();
        assert_eq!(StoredEvent::decode(&bytes[..]).expect("re-decodes"), stored);
        // The OCSF export accepts anything that decodes.
        let _ = serde_json::to_vec(&cairn_events::ocsf::to_ocsf(&stored, "fuzz"));
    }
});
