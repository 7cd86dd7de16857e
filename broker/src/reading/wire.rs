//! A read's records between brokers (a forwarded read), little-endian:
//! `u64 start, u64 end, u64 next_offset`, then per record `u64 offset, i64 timestamp, u32 length, bytes`.

use bytes::{BufMut, Bytes};

use super::RecordsRead;
use crate::store::StoredRecord;

const HEAD: usize = 24;
const RECORD_HEAD: usize = 20;

pub fn encode(read: &RecordsRead) -> Vec<u8> {
    let size = HEAD + read.records.iter().map(|r| RECORD_HEAD + r.value.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.put_u64_le(read.start);
    out.put_u64_le(read.end);
    out.put_u64_le(read.next_offset);
    for record in &read.records {
        out.put_u64_le(record.offset);
        out.put_i64_le(record.timestamp_ms);
        out.put_u32_le(record.value.len() as u32);
        out.extend_from_slice(&record.value);
    }
    out
}

/// The read `body` holds; its records are slices of it.
pub fn decode(body: &Bytes) -> Result<RecordsRead, String> {
    let word = |at: usize| -> Result<u64, String> {
        let raw = body.get(at..at + 8).ok_or("the answer is cut short")?;
        Ok(u64::from_le_bytes(raw.try_into().map_err(|_| "the answer is cut short")?))
    };
    let mut read = RecordsRead { start: word(0)?, end: word(8)?, next_offset: word(16)?, records: Vec::new() };
    let mut at = HEAD;
    while at < body.len() {
        let offset = word(at)?;
        let timestamp_ms = word(at + 8)? as i64;
        let len = body.get(at + 16..at + RECORD_HEAD).ok_or("a record length is cut short")?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        at += RECORD_HEAD;
        if at + len > body.len() {
            return Err("a record runs past the answer".into());
        }
        read.records.push(StoredRecord {
            offset,
            timestamp_ms,
            value: body.slice(at..at + len),
            key_token: None,
            producer: None,
        });
        at += len;
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn reads_round_trip_and_a_cut_answer_is_refused(
            values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..20),
            base in 0u64..1_000_000,
            cut in 1usize..20,
        ) {
            let records: Vec<StoredRecord> = values.iter().enumerate().map(|(i, v)| StoredRecord {
                offset: base + i as u64,
                timestamp_ms: 1_700_000_000_000 + i as i64,
                value: Bytes::from(v.clone()),
                key_token: None,
                producer: None,
            }).collect();
            let read = RecordsRead { next_offset: base + records.len() as u64, start: 3, end: base + 50, records };
            let encoded = Bytes::from(encode(&read));
            let decoded = decode(&encoded).expect("decodes");
            prop_assert_eq!(&decoded.records, &read.records);
            prop_assert_eq!((decoded.start, decoded.end, decoded.next_offset), (read.start, read.end, read.next_offset));
            if !read.records.is_empty() {
                prop_assert!(decode(&encoded.slice(..encoded.len().saturating_sub(cut).max(1))).is_err());
            }
        }
    }
}
