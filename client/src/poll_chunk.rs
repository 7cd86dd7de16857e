//! One element of a JSON poll response (SPEC §4).

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollChunk {
    pub topic: String,
    #[serde(deserialize_with = "decimal_string")]
    pub token: i64,
    pub range_index: u32,
    pub version: u32,
    /// Runnel's partition number (absent from PolarStreams' responses).
    #[serde(default)]
    pub partition: Option<u32>,
    /// Offset of `values[0]`; value i has offset `start_offset + i`.
    #[serde(deserialize_with = "decimal_string")]
    pub start_offset: i64,
    pub values: Vec<serde_json::Value>,
}

pub(crate) fn decimal_string<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_poll_response() {
        let body = r#"[{"topic":"t","token":"-9223372036854775808","rangeIndex":1,"version":1,"startOffset":"42","values":[{"a":1},"x"]}]"#;
        let chunks: Vec<PollChunk> = serde_json::from_str(body).expect("valid");
        assert_eq!(chunks[0].token, i64::MIN);
        assert_eq!(chunks[0].start_offset, 42);
        assert_eq!(chunks[0].values.len(), 2);
        assert!(serde_json::from_str::<Vec<PollChunk>>(
            r#"[{"topic":"t","token":"x","rangeIndex":0,"version":1,"startOffset":"1","values":[]}]"#
        )
        .is_err());
    }
}
