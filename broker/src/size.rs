//! Sizes in settings: a number of bytes, optionally with a binary unit.

/// `4096`, `512k`/`512KiB`, `256m`/`256MiB`, `1g`/`1GiB`, `2t`/`2TiB` (all powers of 1024;
/// decimal `MB` and the like are refused rather than guessed).
pub fn parse_size(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return Err(format!("'{value}' is not a size (examples: 268435456, 512KiB, 256MiB, 1GiB)")),
    };
    let number: u64 =
        number.parse().map_err(|_| format!("'{value}' is not a size (examples: 268435456, 256MiB, 1GiB)"))?;
    number.checked_mul(scale).ok_or_else(|| format!("'{value}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units_only() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size(" 256MiB "), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        for bad in ["", "lots", "5MB", "-1", "1.5GiB", "99999999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} is refused");
        }
    }
}
