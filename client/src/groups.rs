//! Consumer groups for operators (SPEC §11): list them, see a group's offsets and lag, and
//! reset its offsets. Any broker answers; a broker that is unavailable is skipped.

use serde::{Deserialize, Serialize};

use crate::wire::{decimal, json, optional_decimal};
use crate::{Brokers, ClientError};

/// A group and its member count.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupSummary {
    pub group: String,
    pub members: usize,
}

#[derive(Deserialize)]
struct GroupList {
    groups: Vec<GroupSummary>,
}

/// A group's members and, per topic, its offsets in every partition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupDescription {
    pub group: String,
    pub members: Vec<GroupMember>,
    /// The sum of the partitions' lags whose end is known.
    #[serde(deserialize_with = "decimal")]
    pub lag: u64,
    pub topics: Vec<TopicOffsets>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupMember {
    pub id: String,
    pub topics: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TopicOffsets {
    pub topic: String,
    #[serde(deserialize_with = "decimal")]
    pub lag: u64,
    pub partitions: Vec<PartitionOffsets>,
}

/// One partition of a group's topic. `start`, `end` and `lag` are `None` when the partition's
/// leader did not answer the broker asked; `committed` is `None` until the group commits it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PartitionOffsets {
    pub partition: u32,
    pub generation: u32,
    pub leader: u32,
    pub member: Option<String>,
    #[serde(deserialize_with = "optional_decimal")]
    pub committed: Option<u64>,
    #[serde(deserialize_with = "optional_decimal")]
    pub start: Option<u64>,
    #[serde(deserialize_with = "optional_decimal")]
    pub end: Option<u64>,
    #[serde(deserialize_with = "optional_decimal")]
    pub lag: Option<u64>,
}

/// Where a reset moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(u64),
    /// The first record appended at or after this time (ms since the Unix epoch).
    Timestamp(i64),
    /// Moves the committed offsets by this many records (back when negative), within each
    /// partition's start and end.
    Shift(i64),
}

/// A reset of one topic's offsets: of the listed partitions, or of all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetReset {
    pub topic: String,
    pub partitions: Option<Vec<u32>>,
    pub to: ResetTo,
}

/// The body of `POST /v1/groups/{group}/offsets`.
#[derive(Serialize)]
struct ResetBody<'a> {
    topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    partitions: Option<&'a [u32]>,
    to: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
}

impl OffsetReset {
    fn body(&self) -> ResetBody<'_> {
        let (to, value) = match self.to {
            ResetTo::Earliest => ("earliest", None),
            ResetTo::Latest => ("latest", None),
            ResetTo::Offset(offset) => ("offset", Some(offset.to_string())),
            ResetTo::Timestamp(ms) => ("timestamp", Some(ms.to_string())),
            ResetTo::Shift(by) => ("shift", Some(by.to_string())),
        };
        ResetBody { topic: &self.topic, partitions: self.partitions.as_deref(), to, value }
    }
}

/// What a reset did (or, for a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetPlan {
    pub group: String,
    pub topic: String,
    /// True when nothing was applied.
    pub dry_run: bool,
    pub partitions: Vec<PlannedOffset>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PlannedOffset {
    pub partition: u32,
    /// The committed offset before the reset; `None` when there was none.
    #[serde(deserialize_with = "optional_decimal")]
    pub current: Option<u64>,
    #[serde(deserialize_with = "decimal")]
    pub new: u64,
}

/// The group calls, against any of `brokers`.
///
/// ```no_run
/// # async fn example() -> Result<(), runnel_client::ClientError> {
/// use runnel_client::{Brokers, Groups, OffsetReset, ResetTo};
/// let brokers = Brokers::discover(&reqwest::Client::new(), "localhost", 9250).await?;
/// let groups = Groups::new(brokers);
/// let described = groups.describe("g1").await?;
/// println!("{} records behind", described.lag);
/// let reset = OffsetReset { topic: "orders".into(), partitions: None, to: ResetTo::Earliest };
/// let plan = groups.reset("g1", &reset, true, false).await?;
/// # Ok(()) }
/// ```
pub struct Groups {
    http: reqwest::Client,
    brokers: Brokers,
}

impl Groups {
    pub fn new(brokers: Brokers) -> Groups {
        Groups { http: brokers.access.http().clone(), brokers }
    }

    /// Every group with members or committed offsets, by name.
    pub async fn list(&self) -> Result<Vec<GroupSummary>, ClientError> {
        let path = "/v1/groups";
        let response = self.brokers.on_any(|url| self.http.get(url), path).await?;
        Ok(json::<GroupList>(response, path).await?.groups)
    }

    /// A group's members, committed offsets, ends and lag (a 404 `Status` for a group that has
    /// neither members nor offsets).
    pub async fn describe(&self, group: &str) -> Result<GroupDescription, ClientError> {
        let path = format!("/v1/groups/{}", encoded(group));
        let response = self.brokers.on_any(|url| self.http.get(url), &path).await?;
        json(response, &path).await
    }

    /// Resets the group's offsets of one topic; with `dry_run`, only answers where they would
    /// go. A group with members is refused (409) unless `force`, which moves them too.
    pub async fn reset(
        &self,
        group: &str,
        reset: &OffsetReset,
        dry_run: bool,
        force: bool,
    ) -> Result<ResetPlan, ClientError> {
        let path = format!("/v1/groups/{}/offsets", encoded(group));
        let body = reset.body();
        let query = [("dryRun", dry_run), ("force", force)];
        let response = self.brokers.on_any(|url| self.http.post(url).query(&query).json(&body), &path).await?;
        json(response, &path).await
    }
}

/// A group name as one path segment.
pub(crate) fn encoded(group: &str) -> String {
    group.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_description_with_unknown_ends_and_uncommitted_partitions() {
        let body = r#"{"group":"g","members":[{"id":"c1","topics":["t"]}],"lag":"5","topics":[{"topic":"t","lag":"5",
            "partitions":[{"partition":0,"generation":0,"leader":1,"member":"c1","committed":"3","start":"0","end":"8","lag":"5"},
            {"partition":1,"generation":0,"leader":2,"member":null,"committed":null,"start":null,"end":null,"lag":null}]}]}"#;
        let described: GroupDescription = serde_json::from_str(body).expect("valid");
        let partitions = &described.topics[0].partitions;
        assert_eq!((partitions[0].committed, partitions[0].lag, described.lag), (Some(3), Some(5), 5));
        assert_eq!((partitions[1].committed, partitions[1].end, partitions[1].member.clone()), (None, None, None));
    }

    #[test]
    fn a_reset_names_its_value_only_when_it_has_one() {
        let reset = OffsetReset { topic: "t".into(), partitions: Some(vec![2]), to: ResetTo::Shift(-3) };
        let body = serde_json::to_value(reset.body()).expect("serialises");
        assert_eq!(body, serde_json::json!({"topic":"t","partitions":[2],"to":"shift","value":"-3"}));
        let reset = OffsetReset { topic: "t".into(), partitions: None, to: ResetTo::Latest };
        assert_eq!(
            serde_json::to_value(reset.body()).expect("serialises"),
            serde_json::json!({"topic":"t","to":"latest"})
        );
        assert_eq!(encoded("a b/ü"), "a%20b%2F%C3%BC");
    }
}
