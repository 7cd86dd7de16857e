//! How a stored record appears in a JSON poll response. A record that is itself one valid
//! JSON value is written verbatim (PolarStreams' behaviour), so JSON producers see their
//! documents unchanged. Anything else would break the response, so it is written as a JSON
//! string when it is UTF-8 text, and as `{"base64":"…"}` when it is binary.

use base64::Engine;

pub fn write_record(out: &mut Vec<u8>, value: &[u8]) {
    if serde_json::from_slice::<serde::de::IgnoredAny>(value).is_ok() {
        out.extend_from_slice(value);
    } else if let Ok(text) = std::str::from_utf8(value) {
        write_json_string(out, text);
    } else {
        out.extend_from_slice(b"{\"base64\":\"");
        out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(value).as_bytes());
        out.extend_from_slice(b"\"}");
    }
}

fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(value: &[u8]) -> String {
        let mut out = Vec::new();
        write_record(&mut out, value);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn json_is_verbatim_text_is_a_string_binary_is_base64() {
        assert_eq!(render(br#"{"a": [1, 2]}"#), r#"{"a": [1, 2]}"#);
        assert_eq!(render(b"42"), "42");
        assert_eq!(render(b"hello \"world\""), r#""hello \"world\"""#);
        assert_eq!(render(b"{not json"), r#""{not json""#);
        assert_eq!(render(&[0xff, 0x00]), r#"{"base64":"/wA="}"#);
        for v in [&b"{\"x\":1} trailing"[..], b"1 2", b""] {
            let rendered = render(v);
            assert!(serde_json::from_str::<serde_json::Value>(&rendered).is_ok(), "{rendered}");
        }
    }
}
