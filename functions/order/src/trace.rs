//! The W3C trace context of a request: its trace id goes into the outbox rows it writes, and its
//! `traceparent` (only when valid) is passed on to the stock component.

use spin_sdk::http::Request;

pub struct Trace {
    trace_id: Option<String>,
    traceparent: Option<String>,
}

impl Trace {
    pub fn of(req: &Request) -> Self {
        let traceparent = req
            .header("traceparent")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let trace_id = traceparent
            .as_deref()
            .and_then(shop_domain::trace::trace_id);
        Trace {
            traceparent: traceparent.filter(|_| trace_id.is_some()),
            trace_id,
        }
    }

    pub fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }

    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }
}
