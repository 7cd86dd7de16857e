//! The body of `GET /v1/brokers`, PolarStreams-compatible.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    pub length: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    pub producer_port: u16,
    pub consumer_port: u16,
}

impl BrokerList {
    /// Host names of all brokers: `names`, or `{baseName}{i}.{serviceName}` for i < length.
    pub fn hosts(&self) -> Vec<String> {
        if !self.names.is_empty() {
            return self.names.clone();
        }
        match (&self.base_name, &self.service_name) {
            (Some(base), Some(service)) => (0..self.length).map(|i| format!("{base}{i}.{service}")).collect(),
            (Some(base), None) => (0..self.length).map(|i| format!("{base}{i}")).collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_polarstreams_shapes() {
        let named: BrokerList =
            serde_json::from_str(r#"{"length":2,"names":["a.svc","b.svc"],"producerPort":9251,"consumerPort":9252}"#)
                .expect("names form");
        assert_eq!(named.hosts(), ["a.svc", "b.svc"]);
        let based: BrokerList = serde_json::from_str(
            r#"{"baseName":"runnel-","serviceName":"runnel.streams","length":2,"producerPort":9251,"consumerPort":9252}"#,
        )
        .expect("baseName form");
        assert_eq!(based.hosts(), ["runnel-0.runnel.streams", "runnel-1.runnel.streams"]);
        let json = serde_json::to_string(&named).expect("serialize");
        assert!(json.contains("\"producerPort\":9251") && !json.contains("baseName"));
    }
}
