//! Keyset pagination for order lists, newest first.
//!
//! A page ends at its last order; the next page starts strictly after that order in the
//! (created_at DESC, order_id DESC) order, so inserts between two page loads never make a client
//! see an order twice or skip one that existed. The cursor the client gets is opaque: base64url
//! (no padding) of a versioned text, decoded here and nowhere else.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Where the next page starts: after the order with this creation time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Creation time in milliseconds since the Unix epoch.
    pub created_ms: i64,
    pub order_id: String,
}

/// The cursor is not one this service issued (or it was altered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCursor;

impl std::fmt::Display for BadCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cursor is not valid: pass back next_cursor exactly as received")
    }
}

impl std::error::Error for BadCursor {}

const PREFIX: &str = "o1:";

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{PREFIX}{}:{}", self.created_ms, self.order_id))
    }

    pub fn decode(s: &str) -> Result<Cursor, BadCursor> {
        if s.is_empty() || s.len() > 512 {
            return Err(BadCursor);
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| BadCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| BadCursor)?;
        let rest = text.strip_prefix(PREFIX).ok_or(BadCursor)?;
        let (ms, id) = rest.split_once(':').ok_or(BadCursor)?;
        let created_ms: i64 = ms.parse().map_err(|_| BadCursor)?;
        if created_ms < 0
            || id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(BadCursor);
        }
        Ok(Cursor {
            created_ms,
            order_id: id.to_owned(),
        })
    }
}

/// A page size: 1-100, 20 when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(u32);

impl Limit {
    pub const DEFAULT: u32 = 20;
    pub const MAX: u32 = 100;

    pub fn parse(s: Option<&str>) -> Result<Limit, String> {
        let Some(s) = s else {
            return Ok(Limit(Self::DEFAULT));
        };
        match s.parse::<u32>() {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Limit(n)),
            _ => Err(format!("limit must be an integer from 1 to {}", Self::MAX)),
        }
    }

    pub fn get(&self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let c = Cursor {
            created_ms: 1_790_000_000_123_456,
            order_id: "ord_0123abcd".into(),
        };
        let s = c.encode();
        assert!(s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(Cursor::decode(&s), Ok(c));
    }

    #[test]
    fn rejects_foreign_cursors() {
        for bad in [
            "",
            "!!!",
            "bm9wZQ",
            &URL_SAFE_NO_PAD.encode("o1:x:ord"),
            &URL_SAFE_NO_PAD.encode("o1:-5:ord"),
            &URL_SAFE_NO_PAD.encode("o1:5:"),
            &URL_SAFE_NO_PAD.encode("o1:5:a'b"),
        ] {
            assert_eq!(Cursor::decode(bad), Err(BadCursor), "{bad}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(Limit::parse(None).unwrap().get(), 20);
        assert_eq!(Limit::parse(Some("1")).unwrap().get(), 1);
        assert_eq!(Limit::parse(Some("100")).unwrap().get(), 100);
        for bad in ["0", "101", "-1", "x", "", "1.5"] {
            assert!(Limit::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(s in "\\PC{0,100}") {
            let _ = Cursor::decode(&s);
        }

        #[test]
        fn encode_decode_identity(ms in 0i64..i64::MAX, id in "[a-z0-9_]{1,40}") {
            let c = Cursor { created_ms: ms, order_id: id };
            proptest::prop_assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        }
    }
}
