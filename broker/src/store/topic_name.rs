use super::StorageError;

pub const MAX_TOPIC_LEN: usize = 249;

/// Topic names become directory names, so only `[A-Za-z0-9._-]`, 1–249 characters, and
/// never `.` or `..` (Kafka's rule) are accepted.
pub fn validate_topic_name(name: &str) -> Result<(), StorageError> {
    let reason = if name.is_empty() {
        "a topic name cannot be empty".to_string()
    } else if name.len() > MAX_TOPIC_LEN {
        format!("a topic name has at most {MAX_TOPIC_LEN} characters, this one has {}", name.len())
    } else if name == "." || name == ".." {
        format!("'{name}' is not a valid topic name")
    } else if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        format!("topic names use only letters, digits, '.', '_' and '-' (found {c:?})")
    } else {
        return Ok(());
    };
    Err(StorageError::InvalidTopic(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_style_names_and_rejects_paths() {
        for ok in ["orders", "ok-name_1.x", "A", &"t".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a b", "café", "x\0", &"t".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
