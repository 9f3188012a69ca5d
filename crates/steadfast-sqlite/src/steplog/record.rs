//! The step log's records: a 12-byte header (length, epoch, CRC-32 of the epoch and the
//! payload, little-endian `u32`s), then the entry.
//!
//! A step's payload is binary: the byte [`BINARY_STEP`], then its fields in a fixed order,
//! texts as a little-endian `u32` length and their UTF-8 bytes (the input and output JSON
//! exactly as the engine encoded it), numbers little-endian. A workflow's end is JSON
//! (`{"finish": {...}}`), and so is a step written by an earlier build (`{"step": {...}}`):
//! a JSON payload starts with `{`, so both forms read back.

use std::io::Read;
use std::path::Path;

use serde::Serialize;
use steadfast_durable::{Json, StepKind};

use super::Entry;
use crate::writes::{EncodedStep, StepFields};

/// The size of a record's header.
pub(super) const HEADER: usize = 12;

/// The first byte of a step's payload in the binary form.
const BINARY_STEP: u8 = 1;

/// Write the record of `entry` as JSON into `buf`, which is cleared first; its header as
/// [`encode_step_into`] leaves it. Whether the entry could be encoded.
pub(super) fn encode_into(buf: &mut Vec<u8>, entry: &impl Serialize) -> bool {
    buf.clear();
    buf.resize(HEADER, 0);
    serde_json::to_writer(&mut *buf, entry).is_ok() && finish_header(buf)
}

/// Write a step's record, in the binary form, into `buf`, which is cleared first. The header's
/// length is filled in, its epoch and CRC are left to the caller ([`seal`]). Whether the step
/// could be encoded (a text of 4 GiB or more cannot).
pub(super) fn encode_step_into(buf: &mut Vec<u8>, s: &StepFields<'_>) -> bool {
    let texts = [
        s.id,
        s.owner,
        s.position,
        s.step_id,
        s.kind.as_str(),
        s.name,
        s.input_hash,
    ];
    let size = 1
        + texts.iter().map(|t| 4 + t.len()).sum::<usize>()
        + 1
        + s.input.map_or(0, |i| 4 + i.len())
        + 4
        + s.output.len()
        + 1
        + 4
        + 8
        + 8;
    buf.clear();
    buf.reserve(HEADER + size);
    buf.resize(HEADER, 0);
    buf.push(BINARY_STEP);
    for text in texts {
        if !put_text(buf, text) {
            return false;
        }
    }
    match s.input {
        None => buf.push(0),
        Some(i) => {
            buf.push(1);
            if !put_text(buf, i) {
                return false;
            }
        }
    }
    if !put_text(buf, s.output) {
        return false;
    }
    buf.push(u8::from(s.ok));
    buf.extend_from_slice(&s.attempts.to_le_bytes());
    buf.extend_from_slice(&s.started_at.to_le_bytes());
    buf.extend_from_slice(&s.duration_us.to_le_bytes());
    finish_header(buf)
}

fn put_text(buf: &mut Vec<u8>, text: &str) -> bool {
    let Ok(len) = u32::try_from(text.len()) else {
        return false;
    };
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(text.as_bytes());
    true
}

fn finish_header(buf: &mut [u8]) -> bool {
    let Ok(len) = u32::try_from(buf.len() - HEADER) else {
        return false;
    };
    buf[0..4].copy_from_slice(&len.to_le_bytes());
    true
}

/// Reads a binary step's fields in order.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the record ends inside a field".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    fn text(&mut self) -> Result<&'a str, String> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        std::str::from_utf8(self.bytes(n)?).map_err(|e| e.to_string())
    }
}

/// A step's fields from its binary payload (past [`BINARY_STEP`]), borrowed from it. The
/// input and output texts are not checked to be JSON: see [`decode_step`].
fn step_fields(payload: &[u8]) -> Result<StepFields<'_>, String> {
    let mut f = Fields(payload);
    let (id, owner, position, step_id) = (f.text()?, f.text()?, f.text()?, f.text()?);
    let kind = f.text()?;
    let kind = StepKind::parse(kind).ok_or_else(|| format!("unknown step kind `{kind}`"))?;
    let (name, input_hash) = (f.text()?, f.text()?);
    let input = match f.array::<1>()? {
        [0] => None,
        [1] => Some(f.text()?),
        [b] => return Err(format!("bad input marker {b}")),
    };
    let output = f.text()?;
    let ok = f.array::<1>()? != [0];
    let attempts = u32::from_le_bytes(f.array()?);
    let started_at = i64::from_le_bytes(f.array()?);
    let duration_us = i64::from_le_bytes(f.array()?);
    if !f.0.is_empty() {
        return Err("bytes past the step's last field".into());
    }
    Ok(StepFields {
        id,
        owner,
        position,
        step_id,
        kind,
        name,
        input_hash,
        input,
        output,
        ok,
        attempts,
        started_at,
        duration_us,
    })
}

/// A step from its binary payload (past [`BINARY_STEP`]), its input and output checked to be
/// JSON.
fn decode_step(payload: &[u8]) -> Result<EncodedStep, String> {
    owned(&step_fields(payload)?)
}

/// Step `f` owned, its input and output checked to be JSON.
fn owned(f: &StepFields<'_>) -> Result<EncodedStep, String> {
    let json = |text: &str| Json::from_string(text.to_owned()).map_err(|e| e.to_string());
    Ok(EncodedStep {
        id: f.id.to_owned(),
        owner: f.owner.to_owned(),
        position: f.position.to_owned(),
        step_id: f.step_id.to_owned(),
        kind: f.kind,
        name: f.name.to_owned(),
        input_hash: f.input_hash.to_owned(),
        input: f.input.map(json).transpose()?,
        output: json(f.output)?,
        ok: f.ok,
        attempts: f.attempts,
        started_at: f.started_at,
        duration_us: f.duration_us,
    })
}

/// The entry a record's payload holds: a binary step, or JSON.
fn decode_entry(payload: &[u8]) -> Result<Entry, String> {
    match payload.split_first() {
        Some((&BINARY_STEP, fields)) => decode_step(fields).map(Entry::Step),
        _ => serde_json::from_slice::<Entry>(payload).map_err(|e| e.to_string()),
    }
}

/// The entry of a record that this store wrote, read back: a binary step borrowed from the
/// record, its input and output as they were written (JSON, since the engine encoded them);
/// anything else decoded.
pub(super) enum Written<'a> {
    Step(StepFields<'a>),
    Other(Entry),
}

impl Written<'_> {
    /// The entry, owned.
    pub(super) fn into_entry(self) -> Result<Entry, String> {
        match self {
            Written::Step(f) => owned(&f).map(Entry::Step),
            Written::Other(e) => Ok(e),
        }
    }
}

/// The CRC-32 of a record's epoch (its header's bytes 4..8) and payload.
fn crc(epoch: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(epoch);
    h.update(payload);
    h.finalize()
}

/// Fill in the CRC-32 of the epoch and the payload.
pub(super) fn seal(record: &mut [u8]) {
    let crc = crc(&record[4..8], &record[HEADER..]);
    record[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// The entry of `record`, one whole record as this store wrote it.
pub(super) fn decode_record(record: &[u8]) -> Result<Written<'_>, String> {
    if record.len() < HEADER || u32_at(record, 0) as usize != record.len() - HEADER {
        return Err("a record's length does not match its header".into());
    }
    let payload = &record[HEADER..];
    if crc(&record[4..8], payload) != u32_at(record, 8) {
        return Err("a record fails its CRC".into());
    }
    match payload.split_first() {
        Some((&BINARY_STEP, fields)) => step_fields(fields).map(Written::Step),
        _ => decode_entry(payload).map(Written::Other),
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// The largest record a segment may hold: less than the largest segment any build wrote (4 MiB;
/// segments are smaller now), so that a segment left by an earlier build reads whole.
const READ_LIMIT: u64 = 4 << 20;

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
        if len == 0 || len as u64 >= READ_LIMIT || epoch.is_some_and(|first| first != e) {
            break;
        }
        payload.resize(len, 0);
        if segment.read_exact(&mut payload).is_err() {
            break;
        }
        if crc(&header[4..8], &payload) != u32_at(&header, 8) {
            break;
        }
        match decode_entry(&payload) {
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

    fn record(e: &Entry, epoch: u32) -> Vec<u8> {
        let mut r = Vec::new();
        assert!(match e {
            Entry::Step(s) => encode_step_into(&mut r, &s.fields()),
            Entry::Start(_) | Entry::Finish(_) => encode_into(&mut r, e),
        });
        r[4..8].copy_from_slice(&epoch.to_le_bytes());
        seal(&mut r);
        // What a flush reads back from the segment.
        match (decode_record(&r).unwrap(), e) {
            (Written::Step(f), Entry::Step(s)) => {
                assert_eq!(format!("{f:?}"), format!("{:?}", s.fields()));
            }
            (Written::Other(back), e) => assert_eq!(format!("{back:?}"), format!("{e:?}")),
            _ => panic!("read back as another kind of entry"),
        }
        r
    }

    /// A record holding `payload`'s bytes as they are.
    fn raw_bytes_record(payload: &[u8], epoch: u32) -> Vec<u8> {
        let mut r = vec![0u8; HEADER];
        r.extend(payload);
        r[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        r[4..8].copy_from_slice(&epoch.to_le_bytes());
        seal(&mut r);
        r
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    /// A record holding `payload` as it is.
    fn raw_record(payload: &str, epoch: u32) -> Vec<u8> {
        raw_bytes_record(payload.as_bytes(), epoch)
    }

    /// Segments were 4 MiB before; one left by such a build may hold a record larger than a
    /// segment is now, and reads whole.
    #[test]
    fn a_record_larger_than_a_segment_of_this_build_reads_back() {
        let Entry::Step(mut big) = step("1") else {
            unreachable!()
        };
        big.output = Json::encode(&"x".repeat(2 << 20)).unwrap();
        let entries = [step("0"), Entry::Step(big), step("2")];
        let segment: Vec<u8> = entries.iter().flat_map(|e| record(e, 7)).collect();
        assert!(segment.len() as u64 > super::super::SEGMENT_BYTES);
        let back = decode_segment(&segment[..], Path::new("test.log"));
        assert_eq!(back.len(), 3);
        assert!(matches!(&back[1], Entry::Step(s) if s.output.get().len() == (2 << 20) + 2));
    }

    #[test]
    fn a_step_record_holds_its_input_and_output_as_they_are() {
        let output =
            Json::from_string(r#"{"text": "a \"b\"\n", "usage": {"requests": 1}}"#.into()).unwrap();
        let input = Json::encode(&serde_json::json!({ "q": "ä" })).unwrap();
        let step = StepRecord {
            position: "3".into(),
            step_id: "a#1/model_request#2".into(),
            kind: StepKind::ModelRequest,
            name: "agent__a__model_request".into(),
            input_hash: "xxh3:00ff".into(),
            input: Some(input.clone()),
            output: Ok(output.clone()),
            attempts: 2,
            started_at: 1_700_000_000_000,
            duration_us: 1_234,
            seq: 0,
        };
        let entry = Entry::Step(EncodedStep::new("wf", "w", step.clone()).unwrap());
        let r = record(&entry, 1);
        assert_eq!(r[HEADER], BINARY_STEP);
        assert!(contains(&r, input.get()) && contains(&r, output.get()));
        let back = decode_segment(&r[..], Path::new("test.log"));
        let [Entry::Step(s)] = &back[..] else {
            panic!("one step: {back:?}")
        };
        assert_eq!(
            s.decode(7).unwrap(),
            StepRecord {
                seq: 7,
                ..step.clone()
            }
        );

        // No input, and a failure (its `StepFailure`).
        let failure = StepFailure {
            message: "gave up".into(),
            retryable: true,
        };
        let failed = StepRecord {
            input: None,
            output: Err(failure.clone()),
            ..step
        };
        let entry = Entry::Step(EncodedStep::new("wf", "w", failed.clone()).unwrap());
        let r = record(&entry, 1);
        assert!(contains(&r, r#"{"message":"gave up","retryable":true}"#));
        let back = decode_segment(&r[..], Path::new("test.log"));
        let [Entry::Step(s)] = &back[..] else {
            panic!("one step: {back:?}")
        };
        assert_eq!(s.decode(0).unwrap(), failed);
    }

    #[test]
    fn json_steps_of_earlier_builds_read_back_beside_binary_ones() {
        let p = Path::new("test.log");
        let json_step = r#"{"step":{"id":"wf","owner":"w","position":"1","step_id":"s#1","kind":"tool","name":"s","input_hash":"0","input":{"a":1},"output":{"b":2},"ok":true,"attempts":1,"started_at":5,"duration_us":6}}"#;
        let seg = [
            record(&step("0"), 7),
            raw_record(json_step, 7),
            record(&step("2"), 7),
        ]
        .concat();
        let read = decode_segment(&seg[..], p);
        let positions: Vec<&str> = read
            .iter()
            .map(|e| match e {
                Entry::Step(s) => s.position.as_str(),
                Entry::Start(_) => "start",
                Entry::Finish(_) => "end",
            })
            .collect();
        assert_eq!(positions, ["0", "1", "2"]);
        let Entry::Step(s) = &read[1] else {
            unreachable!()
        };
        assert_eq!(s.kind, StepKind::Tool);
        assert_eq!(s.input.as_ref().map(Json::get), Some(r#"{"a":1}"#));
    }

    #[test]
    fn a_binary_step_that_does_not_parse_ends_the_segment() {
        let p = Path::new("test.log");
        let whole = record(&step("1"), 7);
        let payload = &whole[HEADER..];
        // Cut short, with a valid CRC; a length past the end; an unknown kind; bytes past the
        // last field; an output that is not JSON.
        let short = raw_bytes_record(&payload[..payload.len() - 3], 7);
        let mut long_len = payload.to_vec();
        long_len[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut kind = payload.to_vec();
        let at = contains_at(&kind, "step").unwrap();
        kind[at..at + 4].copy_from_slice(b"stop");
        let mut extra = payload.to_vec();
        extra.push(0);
        let mut output = payload.to_vec();
        // The output `1` comes before the last 21 bytes (ok, attempts, two times).
        let at = output.len() - 22;
        assert_eq!(output[at], b'1');
        output[at] = b'}';
        for bad in [
            short,
            raw_bytes_record(&long_len, 7),
            raw_bytes_record(&kind, 7),
            raw_bytes_record(&extra, 7),
            raw_bytes_record(&output, 7),
        ] {
            let seg = [record(&step("0"), 7), bad].concat();
            assert_eq!(decode_segment(&seg[..], p).len(), 1);
        }
    }

    /// Records whose bytes were damaged (and sealed again, so that the damage reaches the
    /// decoder) read back as a prefix of the segment, without a panic. Seeded; the seed is in
    /// the failure message.
    #[test]
    fn damaged_records_never_panic() {
        let seed: u64 = 0x005e_ed0f_10c5;
        let mut x = seed;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let p = Path::new("test.log");
        let good: Vec<Vec<u8>> = (0..4).map(|i| record(&step(&i.to_string()), 3)).collect();
        for case in 0..2_000 {
            let mut recs = good.clone();
            let damaged = (next() % 4) as usize;
            let r = &mut recs[damaged];
            for _ in 0..1 + next() % 4 {
                let at = HEADER + (next() as usize) % (r.len() - HEADER);
                r[at] = next() as u8;
            }
            if next() % 8 == 0 {
                let cut = HEADER + (next() as usize) % (r.len() - HEADER);
                r.truncate(cut);
                let len = (cut - HEADER) as u32;
                r[0..4].copy_from_slice(&len.to_le_bytes());
            }
            seal(r);
            let seg = recs.concat();
            let read = std::panic::catch_unwind(|| decode_segment(&seg[..], p));
            let read = read.unwrap_or_else(|_| panic!("seed {seed:#x}, case {case}: a panic"));
            // The records before the damaged one read back whole.
            assert!(read.len() >= damaged, "seed {seed:#x}, case {case}");
            for (i, e) in read.iter().take(damaged).enumerate() {
                let Entry::Step(s) = e else {
                    panic!("seed {seed:#x}, case {case}: not a step")
                };
                assert_eq!(s.position, i.to_string(), "seed {seed:#x}, case {case}");
            }
        }
    }

    fn contains_at(haystack: &[u8], needle: &str) -> Option<usize> {
        haystack
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
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
