//! Stock-keeping unit identifiers.

use std::fmt;

/// A product identifier: 1-64 characters of `A-Z a-z 0-9 - _ .`, so it is safe in a URL path
/// segment and as part of a Redis key without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Sku(String);

/// Why a string is not a valid [`Sku`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkuError {
    Empty,
    TooLong,
    BadChar(char),
}

impl fmt::Display for SkuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkuError::Empty => write!(f, "sku must not be empty"),
            SkuError::TooLong => write!(f, "sku must be at most {} characters", Sku::MAX_LEN),
            SkuError::BadChar(c) => write!(f, "sku must not contain {c:?}"),
        }
    }
}

impl std::error::Error for SkuError {}

impl Sku {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, SkuError> {
        if s.is_empty() {
            return Err(SkuError::Empty);
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(SkuError::TooLong);
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(SkuError::BadChar(c));
        }
        Ok(Sku(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_skus() {
        assert_eq!(
            Sku::parse("TSHIRT-RED_L.2").unwrap().as_str(),
            "TSHIRT-RED_L.2"
        );
    }

    #[test]
    fn rejects_empty_long_and_odd_characters() {
        assert_eq!(Sku::parse(""), Err(SkuError::Empty));
        assert_eq!(Sku::parse(&"a".repeat(65)), Err(SkuError::TooLong));
        assert_eq!(Sku::parse("a b"), Err(SkuError::BadChar(' ')));
        assert_eq!(Sku::parse("a/b"), Err(SkuError::BadChar('/')));
        assert_eq!(Sku::parse("a:b"), Err(SkuError::BadChar(':')));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(s in "\\PC{0,80}") {
            if let Ok(sku) = Sku::parse(&s) {
                proptest::prop_assert_eq!(sku.as_str(), s.as_str());
            }
        }
    }
}
