//! The on-disk record batch. Every produce request becomes one batch, so a request is
//! stored whole or not at all. Layout (little-endian):
//!
//! ```text
//! 0  u32 crc32c of bytes 4.. (rest of header and body)
//! 4  u8  magic (1; 2: the body starts with a producer stamp; 3: with the key token; 4:
//!    with the key token, then a producer stamp)
//! 5  u32 record count (>= 1)
//! 9  u64 base offset
//! 17 i64 timestamp, ms since the Unix epoch
//! 25 u32 body length
//! 29 body: [magic 3, 4: i64 key token], [magic 2, 4: u8 id length, id, u64 epoch, u64
//!    sequence, u64 the request's first offset], then per record u32 length, then the bytes
//! ```
//!
//! A stamp (an idempotent request's, see `producers`) is kept on the batch holding the
//! request's last record. The key token is the ring token of the request's partition key
//! (`discovery::token`, 64-bit Murmur3): what an ordered queue group orders by. A 64-bit hash
//! instead of the key keeps the batch and the copy protocol's header small and fixed; two keys
//! of one token would only be leased one after the other, never out of order.
//!
//! The checksum covers the length fields, so a torn write (short body) or a flipped bit
//! anywhere is detected before any length is trusted for more than a bounds check.

use bytes::{BufMut, Bytes};

use super::producers::{ProducerStamp, ProducerWrite, MAX_ID_LEN};

pub const HEADER_LEN: usize = 29;
pub const MAGIC: u8 = 1;
pub const MAGIC_STAMPED: u8 = 2;
pub const MAGIC_KEYED: u8 = 3;
pub const MAGIC_KEYED_STAMPED: u8 = 4;
/// Upper bound on a batch body; anything larger on disk is garbage, not a batch.
pub const MAX_BODY_LEN: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub magic: u8,
    pub record_count: u32,
    pub base_offset: u64,
    pub timestamp_ms: i64,
    pub body_len: u32,
}

impl BatchHeader {
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }

    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }
}

/// What a batch holds beside its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks<'a> {
    /// The ring token of its request's partition key, if it had one.
    pub key_token: Option<i64>,
    /// On the batch that ends an idempotent request.
    pub stamp: Option<&'a ProducerWrite>,
}

impl Marks<'_> {
    pub fn magic(&self) -> u8 {
        match (self.key_token.is_some(), self.stamp.is_some()) {
            (false, false) => MAGIC,
            (false, true) => MAGIC_STAMPED,
            (true, false) => MAGIC_KEYED,
            (true, true) => MAGIC_KEYED_STAMPED,
        }
    }

    fn len(&self) -> usize {
        self.key_token.map_or(0, |_| 8) + self.stamp.map_or(0, |s| 1 + s.stamp.id.len() + 24)
    }
}

/// Size of the encoded batch of `records`.
pub fn encoded_len(records: &[Bytes], marks: Marks) -> usize {
    HEADER_LEN + marks.len() + records.iter().map(|r| 4 + r.len()).sum::<usize>()
}

/// Appends the encoded batch to `out`.
pub fn encode(out: &mut Vec<u8>, base_offset: u64, timestamp_ms: i64, records: &[Bytes], marks: Marks) {
    let start = out.len();
    let body_len = encoded_len(records, marks) - HEADER_LEN;
    out.reserve(HEADER_LEN + body_len);
    out.put_u32_le(0);
    out.put_u8(marks.magic());
    out.put_u32_le(records.len() as u32);
    out.put_u64_le(base_offset);
    out.put_i64_le(timestamp_ms);
    out.put_u32_le(body_len as u32);
    if let Some(token) = marks.key_token {
        out.put_i64_le(token);
    }
    if let Some(write) = marks.stamp {
        out.put_u8(write.stamp.id.len() as u8);
        out.extend_from_slice(write.stamp.id.as_bytes());
        out.put_u64_le(write.stamp.epoch);
        out.put_u64_le(write.stamp.seq);
        out.put_u64_le(write.first);
    }
    for record in records {
        out.put_u32_le(record.len() as u32);
        out.extend_from_slice(record);
    }
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Parses a header, checking only what can be checked without the body.
pub fn parse_header(b: &[u8]) -> Result<BatchHeader, String> {
    if b.len() < HEADER_LEN {
        return Err(format!("incomplete header ({} of {HEADER_LEN} bytes)", b.len()));
    }
    if !(MAGIC..=MAGIC_KEYED_STAMPED).contains(&b[4]) {
        return Err(format!("bad magic byte {}", b[4]));
    }
    let header = BatchHeader {
        magic: b[4],
        record_count: u32_at(b, 5),
        base_offset: u64_at(b, 9),
        timestamp_ms: u64_at(b, 17) as i64,
        body_len: u32_at(b, 25),
    };
    if header.record_count == 0 || header.body_len as usize > MAX_BODY_LEN {
        return Err(format!("implausible header (records {}, body {} bytes)", header.record_count, header.body_len));
    }
    Ok(header)
}

/// Checks a whole batch (`b` starts at its header and holds at least `total_len` bytes).
pub fn verify(b: &[u8], header: &BatchHeader) -> Result<(), String> {
    let total = header.total_len();
    if b.len() < total {
        return Err(format!("torn batch: {} of {total} bytes present", b.len()));
    }
    let stored = u32_at(b, 0);
    if crc32c::crc32c(&b[4..total]) != stored {
        return Err("checksum mismatch".into());
    }
    Ok(())
}

/// What a verified batch holds beside its records: its key token and producer stamp, where it
/// has them, and where its records start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMarks {
    pub key_token: Option<i64>,
    pub stamp: Option<ProducerWrite>,
    pub records_at: usize,
}

fn marks(batch: &[u8], header: &BatchHeader) -> Result<ReadMarks, String> {
    let end = header.total_len();
    let mut at = HEADER_LEN;
    let key_token = if matches!(header.magic, MAGIC_KEYED | MAGIC_KEYED_STAMPED) {
        if at + 8 > end {
            return Err("key token runs past the batch".into());
        }
        at += 8;
        Some(u64_at(batch, HEADER_LEN) as i64)
    } else {
        None
    };
    if !matches!(header.magic, MAGIC_STAMPED | MAGIC_KEYED_STAMPED) {
        return Ok(ReadMarks { key_token, stamp: None, records_at: at });
    }
    let id_len = *batch.get(at).ok_or("producer stamp runs past the batch")? as usize;
    let id_at = at + 1;
    at = id_at + id_len;
    if id_len == 0 || id_len > MAX_ID_LEN || at + 24 > end {
        return Err("producer stamp runs past the batch".into());
    }
    let id = std::str::from_utf8(&batch[id_at..at]).map_err(|_| "producer id is not text")?;
    let stamp = ProducerStamp { id: id.into(), epoch: u64_at(batch, at), seq: u64_at(batch, at + 8) };
    let stamp = Some(ProducerWrite { stamp, first: u64_at(batch, at + 16) });
    Ok(ReadMarks { key_token, stamp, records_at: at + 24 })
}

/// The records of a verified batch, as slices of `batch` (which starts at the header), with
/// what [`marks`] read of it.
pub fn records(batch: &Bytes, header: &BatchHeader) -> Result<(Vec<Bytes>, ReadMarks), String> {
    let end = header.total_len();
    let marks = marks(batch, header)?;
    let mut at = marks.records_at;
    let mut out = Vec::with_capacity(header.record_count as usize);
    for _ in 0..header.record_count {
        if at + 4 > end {
            return Err("record length runs past the batch".into());
        }
        let len = u32_at(batch, at) as usize;
        at += 4;
        if at + len > end {
            return Err("record runs past the batch".into());
        }
        out.push(batch.slice(at..at + len));
        at += len;
    }
    if at != end {
        return Err("batch body has trailing bytes".into());
    }
    Ok((out, marks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        encode(
            &mut out,
            42,
            1_700_000_000_000,
            &[Bytes::from_static(b"one"), Bytes::from_static(b""), Bytes::from_static(b"three")],
            Marks::default(),
        );
        out
    }

    #[test]
    fn a_key_token_and_a_stamp_round_trip_before_the_records() {
        let write = ProducerWrite { stamp: ProducerStamp { id: "p-1".into(), epoch: 7, seq: 9 }, first: 40 };
        let values = [Bytes::from_static(b"x"), Bytes::from_static(b"yz")];
        for (key_token, stamp) in [(None, Some(&write)), (Some(-5), None), (Some(i64::MIN), Some(&write))] {
            let written = Marks { key_token, stamp };
            let mut out = Vec::new();
            encode(&mut out, 42, 5, &values, written);
            assert_eq!(out.len(), encoded_len(&values, written));
            let bytes = Bytes::from(out);
            let header = parse_header(&bytes).expect("header");
            assert_eq!(header.magic, written.magic());
            verify(&bytes, &header).expect("valid");
            let read = marks(&bytes, &header).expect("marks");
            assert_eq!((read.key_token, read.stamp.as_ref()), (key_token, stamp));
            assert_eq!(records(&bytes, &header).expect("records").0, vec![&b"x"[..], b"yz"]);
        }
        let plain = marks(&sample(), &parse_header(&sample()).expect("header")).expect("no marks");
        assert_eq!((plain.key_token, plain.stamp, plain.records_at), (None, None, HEADER_LEN));
    }

    #[test]
    fn round_trip() {
        let bytes = Bytes::from(sample());
        let header = parse_header(&bytes).expect("header");
        assert_eq!((header.base_offset, header.record_count, header.next_offset()), (42, 3, 45));
        assert_eq!(header.total_len(), bytes.len());
        verify(&bytes, &header).expect("valid");
        assert_eq!(records(&bytes, &header).expect("records").0, vec![&b"one"[..], b"", b"three"]);
    }

    #[test]
    fn torn_and_flipped_batches_are_detected() {
        let bytes = sample();
        let header = parse_header(&bytes).expect("header");
        assert!(verify(&bytes[..bytes.len() - 1], &header).is_err());
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x04;
            let detected = match parse_header(&flipped) {
                Err(_) => true,
                Ok(h) => flipped.len() < h.total_len() || verify(&flipped, &h).is_err(),
            };
            assert!(detected, "flip at byte {i} went unnoticed");
        }
    }
}
