//! Query parameters decoded strictly: axum's `Query` decodes invalid UTF-8 lossily, which made
//! `consumerId=%FF` and `consumerId=%FE` the same consumer. Here such a parameter is a 400.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;

/// The query's `(name, value)` pairs in order, so a name may repeat (`topic=a&topic=b`).
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn parse(query: &str) -> Result<Params, ApiError> {
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((decode(name)?, decode(value)?));
        }
        Ok(Params(pairs))
    }

    /// The value of the first parameter with one of `names` (an old spelling may follow the new).
    pub fn first(&self, names: &[&str]) -> Option<&str> {
        self.0.iter().find(|(k, _)| names.contains(&k.as_str())).map(|(_, v)| v.as_str())
    }

    /// The first `name` as a whole number, if given.
    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.first(&[name])
            .map(|v| {
                v.parse::<u64>().map_err(|_| ApiError::BadRequest(format!("invalid {name} '{v}': a whole number")))
            })
            .transpose()
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
}

fn decode(raw: &str) -> Result<String, ApiError> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::BadRequest(format!("query parameter '{raw}' is not valid UTF-8 once percent-decoded")))
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Params, ApiError> {
        Params::parse(parts.uri.query().unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_in_order_and_refuses_invalid_utf8() {
        let params = Params::parse("topic=a&consumerId=x%20y+z&topic=b%2Fc&flag").expect("valid");
        assert_eq!(params.all("topic"), vec!["a", "b/c"]);
        assert_eq!(params.first(&["consumerId"]), Some("x y z"));
        assert_eq!(params.first(&["flag"]), Some(""));
        assert_eq!(params.first(&["missing"]), None);
        assert_eq!(Params::parse("consumerId=%C3%A9").expect("é").first(&["consumerId"]), Some("é"));
        for bad in ["consumerId=%FF", "consumerId=%FE", "%FF=1", "consumerId=a%C3"] {
            assert!(matches!(Params::parse(bad), Err(ApiError::BadRequest(_))), "{bad}");
        }
    }
}
