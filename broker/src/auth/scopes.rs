//! What a token allows (SPEC §13): a list of scopes, each a topic name or prefix, the
//! operations on those topics, and for `consume` the consumer groups.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// An operation a scope grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Produce,
    Consume,
    Admin,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Produce => "produce",
            Op::Consume => "consume",
            Op::Admin => "admin",
        })
    }
}

/// A name, or a prefix when it ends with `*` (`*` alone is every name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn matches(&self, name: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.0 == name,
        }
    }

    /// `*`: every name.
    pub fn is_everything(&self) -> bool {
        self.0 == "*"
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        // Only a trailing `*` is a wildcard: one elsewhere is a mistake the signer should hear
        // about, not a literal character that silently matches nothing.
        if text.is_empty() || text.trim_end_matches('*').contains('*') || text.ends_with("**") {
            return Err(serde::de::Error::custom(format!(
                "invalid pattern '{text}': a name, or a prefix followed by one '*'"
            )));
        }
        Ok(Pattern(text))
    }
}

/// One grant: `ops` on the topics `topics` matches; `consume` with a group only for the
/// groups `groups` matches (every group when it is absent).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    pub topics: Pattern,
    pub ops: Vec<Op>,
    #[serde(default)]
    pub groups: Option<Pattern>,
}

impl Scope {
    fn grants(&self, op: Op, topic: &str) -> bool {
        self.ops.contains(&op) && self.topics.matches(topic)
    }

    fn covers_group(&self, group: &str) -> bool {
        self.groups.as_ref().is_none_or(|g| g.matches(group))
    }
}

/// What a caller wants to do, checked against a token's scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// `op` on `topic`, and as `group` when one is named (a group consumer).
    On { op: Op, topic: &'a str, group: Option<&'a str> },
    /// Any operation on `topic` (its partition layout).
    AnyOn { topic: &'a str },
    /// A group's offsets, to look at (`consume`) or change (`admin`), whatever the topic.
    Group { op: Op, group: &'a str },
    /// The whole cluster (a resize, a revocation): `admin` on `*`.
    Cluster,
}

impl fmt::Display for Need<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Need::On { op, topic, group: None } => write!(f, "{op} on topic '{topic}'"),
            Need::On { op, topic, group: Some(group) } => write!(f, "{op} on topic '{topic}' as group '{group}'"),
            Need::AnyOn { topic } => write!(f, "any operation on topic '{topic}'"),
            Need::Group { op, group } => write!(f, "{op} for group '{group}'"),
            Need::Cluster => f.write_str("admin on every topic ('*'), which cluster operations need"),
        }
    }
}

/// Whether one of `scopes` grants `need`.
pub fn allows(scopes: &[Scope], need: Need<'_>) -> bool {
    scopes.iter().any(|s| match need {
        Need::On { op, topic, group } => s.grants(op, topic) && group.is_none_or(|g| s.covers_group(g)),
        Need::AnyOn { topic } => s.topics.matches(topic),
        Need::Group { op, group } => s.ops.contains(&op) && s.covers_group(group),
        Need::Cluster => s.ops.contains(&Op::Admin) && s.topics.is_everything(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn scopes(json: &str) -> Vec<Scope> {
        serde_json::from_str(json).expect("scopes")
    }

    #[test]
    fn a_scope_grants_its_ops_on_its_topics_and_groups_only() {
        let s = scopes(r#"[{"topics":"orders.*","ops":["produce","consume"],"groups":"billing-*"}]"#);
        let on = |op, topic, group| allows(&s, Need::On { op, topic, group });
        assert!(on(Op::Produce, "orders.eu", None));
        assert!(on(Op::Consume, "orders.eu", Some("billing-1")));
        assert!(on(Op::Consume, "orders.eu", None), "a read by position names no group");
        assert!(!on(Op::Consume, "orders.eu", Some("audit")), "wrong group");
        assert!(!on(Op::Produce, "payments", None), "wrong topic");
        assert!(!on(Op::Admin, "orders.eu", None), "wrong op");
        assert!(allows(&s, Need::AnyOn { topic: "orders.x" }));
        assert!(!allows(&s, Need::Group { op: Op::Admin, group: "billing-1" }));
        assert!(!allows(&s, Need::Cluster));
    }

    #[test]
    fn an_exact_name_is_not_a_prefix_and_only_admin_on_star_is_the_cluster() {
        let s = scopes(r#"[{"topics":"orders","ops":["consume"]},{"topics":"*","ops":["admin"]}]"#);
        assert!(allows(&s, Need::On { op: Op::Consume, topic: "orders", group: Some("any") }));
        assert!(!allows(&s, Need::On { op: Op::Consume, topic: "orders2", group: None }));
        assert!(allows(&s, Need::Cluster));
        let narrow = scopes(r#"[{"topics":"a*","ops":["admin"]}]"#);
        assert!(!allows(&narrow, Need::Cluster));
    }

    #[test]
    fn a_star_inside_a_pattern_or_an_unknown_field_or_op_is_refused() {
        for bad in [
            r#"[{"topics":"a*b","ops":["produce"]}]"#,
            r#"[{"topics":"a**","ops":["produce"]}]"#,
            r#"[{"topics":"","ops":["produce"]}]"#,
            r#"[{"topics":"a","ops":["delete"]}]"#,
            r#"[{"topics":"a","ops":["produce"],"group":"x"}]"#,
        ] {
            assert!(serde_json::from_str::<Vec<Scope>>(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn a_prefix_pattern_matches_exactly_the_names_that_start_with_it(prefix in "[a-c.]{0,4}", name in "[a-c.]{0,6}") {
            let pattern: Pattern = serde_json::from_value(serde_json::json!(format!("{prefix}*"))).expect("pattern");
            prop_assert_eq!(pattern.matches(&name), name.starts_with(&prefix));
            if !prefix.is_empty() {
                let exact: Pattern = serde_json::from_value(serde_json::json!(prefix.clone())).expect("pattern");
                prop_assert_eq!(exact.matches(&name), name == prefix);
            }
        }
    }
}
