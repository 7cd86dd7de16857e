//! The `ack_token` of a leased record: which record, under which partition leader, which
//! lease. Opaque to workers (base64url text); not a secret, since a worker that may consume
//! the group may acknowledge its records anyway: a forged token names no current lease.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::window::LeaseId;

/// Versions the text, so a later layout is never misread.
const VERSION: &str = "q1";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AckToken {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// The partition leader's epoch when leased: a lease ends with its leader.
    pub epoch: u64,
    pub lease: LeaseId,
}

impl AckToken {
    pub fn encode(&self) -> String {
        let text = format!("{VERSION}:{}:{}:{}:{}:{}", self.partition, self.offset, self.epoch, self.lease, self.topic);
        URL_SAFE_NO_PAD.encode(text)
    }

    /// `None` for anything [`AckToken::encode`] did not make.
    pub fn decode(token: &str) -> Option<AckToken> {
        if token.len() > 512 {
            return None;
        }
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
        let mut parts = text.splitn(6, ':');
        if parts.next()? != VERSION {
            return None;
        }
        let partition = parts.next()?.parse().ok()?;
        let offset = parts.next()?.parse().ok()?;
        let epoch = parts.next()?.parse().ok()?;
        let lease = parts.next()?.parse().ok()?;
        let topic = parts.next()?.to_string();
        crate::store::validate_topic_name(&topic).ok()?;
        Some(AckToken { topic, partition, offset, epoch, lease })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn a_token_survives_its_text(topic in "[a-zA-Z0-9._-]{1,40}", partition: u32, offset: u64, epoch: u64, lease: u64) {
            prop_assume!(crate::store::validate_topic_name(&topic).is_ok());
            let token = AckToken { topic, partition, offset, epoch, lease };
            prop_assert_eq!(AckToken::decode(&token.encode()), Some(token));
        }

        #[test]
        fn junk_is_no_token(text in ".{0,80}") {
            let decoded = AckToken::decode(&text);
            prop_assert!(decoded.as_ref().is_none_or(|t| AckToken::decode(&t.encode()).as_ref() == Some(t)));
        }
    }

    #[test]
    fn other_versions_and_bad_fields_are_refused() {
        let good = AckToken { topic: "orders".into(), partition: 1, offset: 2, epoch: 3, lease: 4 }.encode();
        assert!(AckToken::decode(&good).is_some());
        for text in ["q2:1:2:3:4:orders", "q1:1:2:3:orders", "q1:x:2:3:4:orders", "q1:1:2:3:4:", "q1:1:2:3:4:a/b"] {
            assert_eq!(AckToken::decode(&URL_SAFE_NO_PAD.encode(text)), None, "{text}");
        }
    }
}
