//! Reading the brokers' JSON answers: bodies, and offsets written as decimal strings (SPEC §4).

use serde::{Deserialize, Deserializer};

use crate::ClientError;

pub async fn json<T: serde::de::DeserializeOwned>(response: reqwest::Response, path: &str) -> Result<T, ClientError> {
    response.json().await.map_err(|e| ClientError::InvalidResponse { url: path.to_string(), reason: e.to_string() })
}

pub fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
}

pub fn optional_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<String>::deserialize(d)?.map(|s| s.parse().map_err(serde::de::Error::custom)).transpose()
}
