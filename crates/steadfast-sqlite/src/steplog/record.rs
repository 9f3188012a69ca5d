//! The step log's records: a 12-byte header (length, epoch, CRC-32 of the epoch and the
//! payload, little-endian `u32`s), then the step as JSON.

use std::io::Read;
use std::path::Path;

use serde::Serialize;

use super::{Entry, SEGMENT_BYTES};

/// The size of a record's header.
pub(super) const HEADER: usize = 12;

/// A record with its header's length filled in (epoch and CRC come later), or `None` if the
/// step cannot be encoded. `size` is a guess of the payload's length: the buffer is allocated
/// once when it holds.
pub(super) fn encode(entry: &impl Serialize, epoch: u32, size: usize) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(HEADER + size);
    buf.resize(HEADER, 0);
    serde_json::to_writer(&mut buf, entry).ok()?;
    let len = u32::try_from(buf.len() - HEADER).ok()?;
    buf[0..4].copy_from_slice(&len.to_le_bytes());
    buf[4..8].copy_from_slice(&epoch.to_le_bytes());
    Some(buf)
}

/// Fill in the CRC-32 of the epoch and the payload.
pub(super) fn seal(record: &mut [u8]) {
    let mut h = crc32fast::Hasher::new();
    h.update(&record[4..8]);
    h.update(&record[HEADER..]);
    let crc = h.finalize();
    record[8..12].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// The entries of a segment, read from its start: its records up to the first that is empty,
/// torn, or of another epoch than the first. It reads record by record, so the empty space past
/// the last record costs nothing.
pub(super) fn decode_segment(mut segment: impl Read, path: &Path) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut epoch = None;
    let mut header = [0u8; HEADER];
    let mut payload = Vec::new();
    loop {
        if segment.read_exact(&mut header).is_err() {
            break;
        }
        let len = u32_at(&header, 0) as usize;
        let e = u32_at(&header, 4);
        if len == 0 || len as u64 >= SEGMENT_BYTES || epoch.is_some_and(|first| first != e) {
            break;
        }
        payload.resize(len, 0);
        if segment.read_exact(&mut payload).is_err() {
            break;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&header[4..8]);
        h.update(&payload);
        if h.finalize() != u32_at(&header, 8) {
            break;
        }
        match serde_json::from_slice::<Entry>(&payload) {
            Ok(entry) => entries.push(entry),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "a step log record is not an entry");
                break;
            }
        }
        epoch = Some(e);
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writes::EncodedStep;
    use steadfast_durable::{Json, StepFailure, StepKind, StepRecord};

    fn step(position: &str) -> Entry {
        Entry::Step(EncodedStep {
            id: "wf".into(),
            owner: "w".into(),
            position: position.into(),
            step_id: format!("s#{position}"),
            kind: StepKind::Step,
            name: "s".into(),
            input_hash: "0".into(),
            input: None,
            output: Json::encode(&1).unwrap(),
            ok: true,
            attempts: 1,
            started_at: 0,
            duration_us: 0,
        })
    }

    fn record(s: &Entry, epoch: u32) -> Vec<u8> {
        let mut r = encode(s, epoch, 0).unwrap();
        seal(&mut r);
        r
    }

    /// A record holding `payload` as it is.
    fn raw_record(payload: &str, epoch: u32) -> Vec<u8> {
        let mut r = vec![0u8; HEADER];
        r.extend(payload.as_bytes());
        r[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        r[4..8].copy_from_slice(&epoch.to_le_bytes());
        seal(&mut r);
        r
    }

    #[test]
    fn a_step_embeds_its_input_and_output_as_raw_json() {
        let output =
            Json::from_string(r#"{"text": "a \"b\"\n", "usage": {"requests": 1}}"#.into()).unwrap();
        let input = Json::encode(&serde_json::json!({ "q": "ä" })).unwrap();
        let step = StepRecord {
            position: "3".into(),
            step_id: "a#1/model_request#2".into(),
            kind: StepKind::ModelRequest,
            name: "agent__a__model_request".into(),
            input_hash: "00ff".into(),
            input: Some(input.clone()),
            output: Ok(output.clone()),
            attempts: 2,
            started_at: 1_700_000_000_000,
            duration_us: 1_234,
            seq: 0,
        };
        let entry = Entry::Step(EncodedStep::new("wf", "w", step.clone()).unwrap());
        let r = record(&entry, 1);
        let payload = std::str::from_utf8(&r[HEADER..]).unwrap();
        assert!(payload.starts_with(r#"{"step":{"#), "{payload}");
        assert!(
            payload.contains(&format!(r#""input":{},"output":{},"#, input, output)),
            "the texts are embedded as they are: {payload}"
        );
        let back = decode_segment(&r[..], Path::new("test.log"));
        let [Entry::Step(s)] = &back[..] else {
            panic!("one step: {back:?}")
        };
        assert_eq!(s.decode(7).unwrap(), StepRecord { seq: 7, ..step });

        // A failure is its `StepFailure`, embedded the same way.
        let failure = StepFailure {
            message: "gave up".into(),
            retryable: true,
        };
        let failed = StepRecord {
            output: Err(failure.clone()),
            ..s.decode(0).unwrap()
        };
        let entry = Entry::Step(EncodedStep::new("wf", "w", failed).unwrap());
        let r = record(&entry, 1);
        let payload = std::str::from_utf8(&r[HEADER..]).unwrap();
        assert!(payload.contains(r#""output":{"message":"gave up","retryable":true},"ok":false"#));
        let back = decode_segment(&r[..], Path::new("test.log"));
        let [Entry::Step(s)] = &back[..] else {
            panic!("one step: {back:?}")
        };
        assert_eq!(s.decode(0).unwrap().output, Err(failure));
    }

    #[test]
    fn a_record_of_the_older_format_ends_the_segment() {
        let p = Path::new("test.log");
        // What builds before raw JSON wrote: internally tagged, input and output as strings.
        let old = r#"{"entry":"step","id":"wf","owner":"w","position":"1","step_id":"s#1","kind":"step","name":"s","input_hash":"0","input":"{\"a\":1}","output":"{\"b\":2}","ok":true,"attempts":1,"started_at":0,"duration_us":0}"#;
        assert!(decode_segment(&raw_record(old, 7)[..], p).is_empty());
        let seg = [
            record(&step("0"), 7),
            raw_record(old, 7),
            record(&step("2"), 7),
        ]
        .concat();
        let read = decode_segment(&seg[..], p);
        assert_eq!(read.len(), 1, "read up to the old record: {read:?}");
        // A record whose output is not JSON ends the segment too.
        let bad = r#"{"step":{"id":"wf","owner":"w","position":"1","step_id":"s#1","kind":"step","name":"s","input_hash":"0","input":null,"output":{"b":},"ok":true,"attempts":1,"started_at":0,"duration_us":0}}"#;
        let seg = [record(&step("0"), 7), raw_record(bad, 7)].concat();
        assert_eq!(decode_segment(&seg[..], p).len(), 1);
    }

    #[test]
    fn a_segment_reads_back_up_to_a_torn_or_stale_record() {
        let p = Path::new("test.log");
        let mut seg = [record(&step("0"), 7), record(&step("1"), 7)].concat();
        let whole = seg.len();
        assert_eq!(decode_segment(&seg[..], p).len(), 2);
        // A record of an older epoch further on is not read.
        seg.extend(record(&step("2"), 6));
        assert_eq!(decode_segment(&seg[..], p).len(), 2);
        // A torn record ends the segment.
        let mut torn = seg[..whole].to_vec();
        torn.extend(&record(&step("3"), 7)[..20]);
        assert_eq!(decode_segment(&torn[..], p).len(), 2);
        // A flipped byte fails the CRC.
        let mut bad = seg[..whole].to_vec();
        let last = bad.len() - 2;
        bad[last] ^= 1;
        assert_eq!(decode_segment(&bad[..], p).len(), 1);
        // A zeroed header (a segment started over) holds nothing.
        let mut reset = seg.clone();
        reset[..HEADER].fill(0);
        assert!(decode_segment(&reset[..], p).is_empty());
    }
}
