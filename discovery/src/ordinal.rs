//! A StatefulSet pod's ordinal, from the hostname Kubernetes gives it.

/// The ordinal `N` of a StatefulSet pod named `{name}-N`: Kubernetes promises this naming, so a
/// broker learns its ordinal without extra configuration. A fully qualified hostname
/// (`runnel-2.runnel.streams.svc.cluster.local`) is read by its first label.
///
/// ```
/// use runnel_discovery::ordinal_from_hostname;
/// assert_eq!(ordinal_from_hostname("runnel-2"), Some(2));
/// assert_eq!(ordinal_from_hostname("my-broker-10"), Some(10));
/// assert_eq!(ordinal_from_hostname("runnel"), None);
/// ```
pub fn ordinal_from_hostname(hostname: &str) -> Option<u32> {
    let first_label = hostname.split('.').next()?;
    let (name, digits) = first_label.rsplit_once('-')?;
    if name.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::ordinal_from_hostname;

    #[test]
    fn reads_the_number_after_the_last_dash() {
        assert_eq!(ordinal_from_hostname("runnel-0"), Some(0));
        assert_eq!(ordinal_from_hostname("runnel-2"), Some(2));
        assert_eq!(ordinal_from_hostname("my-broker-10"), Some(10));
        assert_eq!(ordinal_from_hostname("runnel-3.runnel.streams.svc.cluster.local"), Some(3));
    }

    #[test]
    fn refuses_names_that_are_not_name_dash_number() {
        for hostname in ["", "runnel", "runnel-", "-3", "runnel-+3", "runnel-3a", "runnel-x", "runnel-99999999999"] {
            assert_eq!(ordinal_from_hostname(hostname), None, "{hostname:?}");
        }
    }
}
