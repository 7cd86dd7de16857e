//! The token ring: the 64-bit token space is cut into one contiguous range per broker, and
//! each broker range into `ranges` partitions (PolarStreams' "consumer ranges"). A topic has
//! `brokers × ranges` partitions, numbered along the ring, so neighbouring keys stay together
//! and a partition's number says where its tokens are.

/// Static shape of the ring for one cluster size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ring {
    brokers: u32,
    ranges: u32,
}

/// How a partition is presented to consumers (PolarStreams' chunk fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionInfo {
    /// First token of the owning broker's range.
    pub token: i64,
    /// Index of the partition inside that broker's range.
    pub range_index: u32,
    /// The ring generation the partition belongs to.
    pub generation: u32,
}

const TOKEN_SPACE: u128 = 1 << 64;

impl Ring {
    /// `brokers` and `ranges` are at least 1 (zero is treated as 1).
    pub fn new(brokers: u32, ranges: u32) -> Ring {
        Ring { brokers: brokers.max(1), ranges: ranges.max(1) }
    }

    pub fn brokers(&self) -> u32 {
        self.brokers
    }

    pub fn ranges(&self) -> u32 {
        self.ranges
    }

    pub fn partitions(&self) -> u32 {
        self.brokers * self.ranges
    }

    /// The partition holding `token`: its position in the ring, scaled to the partition count.
    pub fn partition_of_token(&self, token: i64) -> u32 {
        let position = (token as i128 - i64::MIN as i128) as u128;
        (position * self.partitions() as u128 / TOKEN_SPACE) as u32
    }

    pub fn partition_of_key(&self, key: &[u8]) -> u32 {
        self.partition_of_token(super::token(key))
    }

    /// The broker (ring index) whose range contains `partition`.
    pub fn broker_of(&self, partition: u32) -> u32 {
        partition / self.ranges
    }

    /// Where `partition` lies, for a ring of generation `generation`.
    pub fn info(&self, partition: u32, generation: u32) -> PartitionInfo {
        let broker = self.broker_of(partition);
        let start = broker as u128 * TOKEN_SPACE / self.brokers as u128;
        PartitionInfo {
            token: (start as i128 + i64::MIN as i128) as i64,
            range_index: partition % self.ranges,
            generation,
        }
    }

    /// The partitions led by broker `broker` (ring index).
    pub fn partitions_of_broker(&self, broker: u32) -> std::ops::Range<u32> {
        broker * self.ranges..(broker + 1) * self.ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_partitions_in_ring_order() {
        let ring = Ring::new(3, 4);
        assert_eq!(ring.partitions(), 12);
        assert_eq!(ring.partition_of_token(i64::MIN), 0);
        assert_eq!(ring.partition_of_token(i64::MAX), 11);
        assert_eq!(ring.partition_of_token(0), 6);
        assert_eq!(ring.broker_of(6), 1);
        assert_eq!(ring.info(6, 1), PartitionInfo { token: ring.info(4, 1).token, range_index: 2, generation: 1 });
        assert_eq!(ring.info(0, 0).token, i64::MIN);
    }

    #[test]
    fn a_key_always_lands_in_the_same_partition() {
        let ring = Ring::new(1, 4);
        let p = ring.partition_of_key(b"customer-42");
        assert!(p < 4);
        assert_eq!(p, ring.partition_of_key(b"customer-42"));
        let spread: std::collections::BTreeSet<u32> =
            (0..200).map(|i| ring.partition_of_key(format!("k{i}").as_bytes())).collect();
        assert_eq!(spread.len(), 4, "200 keys should reach all 4 partitions");
    }
}
