//! Records on the wire between brokers: each as (u32 little-endian length, bytes).

use bytes::Bytes;

pub fn encode_frames(records: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| 4 + r.len()).sum());
    for record in records {
        out.extend_from_slice(&(record.len() as u32).to_le_bytes());
        out.extend_from_slice(record);
    }
    out
}

/// The records of a framed body, as slices of it.
pub fn decode_frames(body: &Bytes) -> Result<Vec<Bytes>, String> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let Some(len) = body.get(at..at + 4) else { return Err("truncated record length".into()) };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        at += 4;
        if at + len > body.len() {
            return Err("record runs past the body".into());
        }
        records.push(body.slice(at..at + len));
        at += len;
    }
    if records.is_empty() {
        return Err("no records".into());
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_refused() {
        let records = vec![Bytes::from_static(b"a"), Bytes::from_static(b""), Bytes::from_static(b"ccc")];
        let encoded = Bytes::from(encode_frames(&records));
        assert_eq!(decode_frames(&encoded).expect("decode"), records);
        assert!(decode_frames(&encoded.slice(..encoded.len() - 1)).is_err());
        assert!(decode_frames(&Bytes::new()).is_err());
    }
}
