//! W3C Trace Context: the trace id of a `traceparent` header, so outbox messages can be joined
//! to the request that caused them.

/// The 32-hex-digit trace id of a valid `traceparent` (`00-<trace-id>-<parent-id>-<flags>`),
/// `None` when the header is malformed (a bad header must never fail the request).
pub fn trace_id(traceparent: &str) -> Option<String> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let [version, trace, parent, flags, rest @ ..] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !hex(version, 2) || *version == "ff" || !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2)
    {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if *version == "00" && !rest.is_empty() {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    Some((*trace).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_w3c_example() {
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_only_returns_hex_ids(s in "\\PC{0,80}") {
            if let Some(id) = trace_id(&s) {
                proptest::prop_assert_eq!(id.len(), 32);
                proptest::prop_assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
    }

    #[test]
    fn ignores_malformed_headers() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
        ] {
            assert_eq!(trace_id(bad), None, "{bad}");
        }
    }
}
