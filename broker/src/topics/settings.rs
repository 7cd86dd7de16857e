//! A topic's settings as the HTTP API shows and takes them: `{"retention": "7d" | "none",
//! "retentionBytes": n, "segmentBytes": n}`. Absent in a PUT: the broker's default; `null` in
//! a PATCH: back to it.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::consensus::topics::{Change, KeepFor, TopicPatch, TopicSettings};
use crate::error::ApiError;
use crate::store::{TopicLimits, SEGMENT_BYTES};

const FIELDS: [&str; 3] = ["retention", "retentionBytes", "segmentBytes"];
/// The longest retention a topic may set (100 years; longer: "none").
const MAX_RETENTION_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    let object = body.as_object().ok_or_else(|| ApiError::BadRequest("the settings must be a JSON object".into()))?;
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::BadRequest(format!("unknown setting '{unknown}' (settings: {})", FIELDS.join(", "))));
    }
    Ok(object)
}

fn retention(value: &Value) -> Result<KeepFor, ApiError> {
    let bad = || ApiError::BadRequest(format!("invalid retention {value}: a duration such as \"168h\" or \"none\""));
    let text = value.as_str().ok_or_else(bad)?;
    if text.eq_ignore_ascii_case("none") {
        return Ok(KeepFor::Forever);
    }
    let duration = humantime::parse_duration(text).map_err(|_| bad())?;
    match u64::try_from(duration.as_millis()) {
        Ok(ms) if ms > 0 && ms <= MAX_RETENTION_MS => Ok(KeepFor::Ms(ms)),
        _ => Err(bad()),
    }
}

fn bytes(field: &str, value: &Value) -> Result<u64, ApiError> {
    value.as_u64().ok_or_else(|| ApiError::BadRequest(format!("invalid {field} {value}: a number of bytes")))
}

fn segment_bytes(value: &Value) -> Result<u64, ApiError> {
    let bytes = bytes("segmentBytes", value)?;
    if !SEGMENT_BYTES.contains(&bytes) {
        let (min, max) = (SEGMENT_BYTES.start(), SEGMENT_BYTES.end());
        return Err(ApiError::BadRequest(format!("segmentBytes must be between {min} and {max}, not {bytes}")));
    }
    Ok(bytes)
}

/// The settings of a PUT's body.
pub fn settings_from_json(body: &Value) -> Result<TopicSettings, ApiError> {
    let object = object(body)?;
    let field = |name: &str| object.get(name).filter(|v| !v.is_null());
    Ok(TopicSettings {
        retention: field("retention").map(retention).transpose()?,
        retention_bytes: field("retentionBytes").map(|v| bytes("retentionBytes", v)).transpose()?,
        segment_bytes: field("segmentBytes").map(segment_bytes).transpose()?,
    })
}

/// The change a PATCH's body asks for.
pub fn patch_from_json(body: &Value) -> Result<TopicPatch, ApiError> {
    let object = object(body)?;
    fn change<T>(value: Option<&Value>, parse: impl Fn(&Value) -> Result<T, ApiError>) -> Result<Change<T>, ApiError> {
        Ok(match value {
            None => Change::Keep,
            Some(Value::Null) => Change::Unset,
            Some(value) => Change::Set(parse(value)?),
        })
    }
    Ok(TopicPatch {
        retention: change(object.get("retention"), retention)?,
        retention_bytes: change(object.get("retentionBytes"), |v| bytes("retentionBytes", v))?,
        segment_bytes: change(object.get("segmentBytes"), segment_bytes)?,
    })
}

/// How long records are kept (`None`: forever).
fn kept_for(keep: KeepFor) -> Option<Duration> {
    match keep {
        KeepFor::Forever => None,
        KeepFor::Ms(ms) => Some(Duration::from_millis(ms)),
    }
}

/// The limits `settings` give, the broker's `defaults` where not set.
pub fn limits(settings: &TopicSettings, defaults: TopicLimits) -> TopicLimits {
    TopicLimits {
        retention: settings.retention.map_or(defaults.retention, kept_for),
        retention_bytes: match settings.retention_bytes {
            None => defaults.retention_bytes,
            Some(0) => None,
            Some(bytes) => Some(bytes),
        },
        segment_bytes: settings.segment_bytes.unwrap_or(defaults.segment_bytes),
    }
}

/// `{"settings": what applies, "set": what was set}` of a topic.
pub fn settings_json(settings: &TopicSettings, defaults: TopicLimits) -> Value {
    let applied = limits(settings, defaults);
    let retention = |keep: Option<Duration>| match keep {
        None => Value::from("none"),
        Some(d) => Value::from(humantime::format_duration(d).to_string()),
    };
    let mut set = Map::new();
    if let Some(keep) = settings.retention {
        set.insert("retention".into(), retention(kept_for(keep)));
    }
    if let Some(bytes) = settings.retention_bytes {
        set.insert("retentionBytes".into(), bytes.into());
    }
    if let Some(bytes) = settings.segment_bytes {
        set.insert("segmentBytes".into(), bytes.into());
    }
    serde_json::json!({
        "settings": {
            "retention": retention(applied.retention),
            "retentionBytes": applied.retention_bytes.unwrap_or(0),
            "segmentBytes": applied.segment_bytes,
        },
        "set": set,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DEFAULTS: TopicLimits =
        TopicLimits { retention: Some(Duration::from_secs(3600)), retention_bytes: None, segment_bytes: 1 << 20 };

    #[test]
    fn settings_parse_and_show_with_the_defaults_where_not_set() {
        let set = settings_from_json(&json!({"retention": "2h", "retentionBytes": 0})).expect("valid");
        assert_eq!(
            set,
            TopicSettings { retention: Some(KeepFor::Ms(7_200_000)), retention_bytes: Some(0), segment_bytes: None }
        );
        let shown = settings_json(&set, DEFAULTS);
        assert_eq!(shown["settings"], json!({"retention": "2h", "retentionBytes": 0, "segmentBytes": 1 << 20}));
        assert_eq!(shown["set"], json!({"retention": "2h", "retentionBytes": 0}));
        let forever = settings_from_json(&json!({"retention": "none"})).expect("valid");
        assert_eq!(limits(&forever, DEFAULTS).retention, None);
        assert_eq!(limits(&TopicSettings::default(), DEFAULTS), DEFAULTS);
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        for bad in [
            json!([]),
            json!({"retention": 5}),
            json!({"retention": "soon"}),
            json!({"retention": "0s"}),
            json!({"retention": "300000000y"}),
            json!({"retentionBytes": -1}),
            json!({"segmentBytes": 10}),
            json!({"partitions": 3}),
        ] {
            assert!(matches!(settings_from_json(&bad), Err(ApiError::BadRequest(_))), "{bad}");
        }
    }

    #[test]
    fn a_patch_keeps_what_is_absent_and_unsets_what_is_null() {
        let patch = patch_from_json(&json!({"retention": null, "segmentBytes": 1 << 20})).expect("valid");
        assert_eq!(
            patch,
            TopicPatch { retention: Change::Unset, retention_bytes: Change::Keep, segment_bytes: Change::Set(1 << 20) }
        );
    }
}
