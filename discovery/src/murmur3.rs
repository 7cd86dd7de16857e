//! Murmur3 x64-128, first half (h1), exactly as Cassandra computes partition tokens.
//! Cassandra (and gocql, and so PolarStreams) sign-extend the tail bytes, which differs from
//! the reference implementation for bytes >= 0x80; clients rely on that to pick partitions.

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

fn fmix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

fn mix_k1(k1: u64) -> u64 {
    k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2)
}

fn mix_k2(k2: u64) -> u64 {
    k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1)
}

/// Cassandra-compatible Murmur3 token of `key`.
pub fn token(key: &[u8]) -> i64 {
    let (mut h1, mut h2) = (0u64, 0u64);
    let blocks = key.chunks_exact(16);
    let tail = blocks.remainder();
    for block in blocks {
        let (lo, hi) = block.split_at(8);
        // chunks_exact(16) split at 8 gives two 8-byte halves.
        let k1 = u64::from_le_bytes(lo.try_into().unwrap_or([0; 8]));
        let k2 = u64::from_le_bytes(hi.try_into().unwrap_or([0; 8]));
        h1 ^= mix_k1(k1);
        h1 = h1.rotate_left(27).wrapping_add(h2).wrapping_mul(5).wrapping_add(0x52dc_e729);
        h2 ^= mix_k2(k2);
        h2 = h2.rotate_left(31).wrapping_add(h1).wrapping_mul(5).wrapping_add(0x3849_5ab5);
    }
    let signed = |i: usize| tail[i] as i8 as i64 as u64;
    let (mut k1, mut k2) = (0u64, 0u64);
    for i in (8..tail.len()).rev() {
        k2 ^= signed(i) << ((i - 8) * 8);
    }
    if tail.len() > 8 {
        h2 ^= mix_k2(k2);
    }
    for i in (0..tail.len().min(8)).rev() {
        k1 ^= signed(i) << (i * 8);
    }
    if !tail.is_empty() {
        h1 ^= mix_k1(k1);
    }
    let len = key.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h1 as i64
}

#[cfg(test)]
mod tests {
    use super::token;

    #[test]
    fn matches_cassandra_tokens() {
        let cases: &[(&[u8], i64)] = &[
            (b"123", -7468325962851647638),
            (&[0xfe; 8], -8927430733708461935),
            (&[0x10; 8], 1446172840243228796),
            (b"9223372036854775807", 7162290910810015547),
            (&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], -5563837382979743776),
            (&[0; 16], 5457549051747178710),
            (&[0xff; 16], -2824192546314762522),
            (&[0xfe; 17], -1672437813826982685),
            (&[0xfe; 4], 4566408979886474012),
            (&[0, 0, 0, 0], -3485513579396041028),
            (&[0, 1, 0x7f, 0x7f], 6573459401642635627),
            (&[0, 0xff, 0xff, 0xff], 123573637386978882),
            (&[0xff, 1, 2, 3], -2839127690952877842),
            (&[0xe2, 0xe7], -8582699461035929883),
            (&[0xe2, 0xe7, 0xe2, 0xe7, 0xe2, 0xe7, 0x01], 2222373981930033306),
        ];
        for (key, expected) in cases {
            assert_eq!(token(key), *expected, "key {key:?}");
        }
        let repeated: Vec<u8> = [0x00, 0xff, 0x10, 0xfa, 0x99].repeat(10);
        assert_eq!(token(&repeated), 5837342703291459765);
    }
}
