//! Ids that travel as a URL path segment, a Redis key part and an aggregate id: one rule for
//! every such id type ([`crate::reservation::ReservationId`], [`crate::flash::SaleId`],
//! [`crate::payment::OrderRef`]), so they cannot drift apart.

/// `s` is 1..=`max` characters of `A-Z a-z 0-9 - _ . :`; with `path_segment`, not dots only
/// (`.` and `..` are not path segments a client can send: it removes them).
pub(crate) fn check(s: &str, max: usize, path_segment: bool) -> Result<(), String> {
    if s.is_empty() || s.len() > max {
        return Err(format!("must be 1-{max} characters"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(format!("must not contain {c:?}"));
    }
    if path_segment && s.chars().all(|c| c == '.') {
        return Err("must contain something besides dots".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn lengths_characters_and_dots() {
        assert!(check("a", 3, true).is_ok());
        assert!(check("abc", 3, true).is_ok());
        assert!(check("", 3, true).is_err());
        assert!(check("abcd", 3, true).is_err());
        assert!(check("a b", 3, true).is_err());
        assert!(check("a/b", 3, true).is_err());
        assert!(check("..", 3, true).is_err());
        assert!(check("..", 3, false).is_ok());
        assert!(check("a.:", 3, true).is_ok());
    }
}
