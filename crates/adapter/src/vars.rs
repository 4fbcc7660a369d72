//! The app's variables, read once per instance.
//!
//! Under real Spin each `variables::get` resolves the variable through the app's providers and
//! templates: about 38 us of CPU each, measured with the SQLite probe (`tx=vars`,
//! docs/benchmarks.md), as much as a SQLite statement. An order read about ten (the token check
//! alone reads five, `redis_url` was read by every Redis step). An instance serves one request
//! (or one receiver run), and a variable does not change during it, so each is read once.

use std::cell::RefCell;

thread_local! {
    static READ: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// The variable `name`, as `spin_sdk::variables::get` answers it, remembered for this instance
/// once read (a failed read is not remembered: it fails again, as it would).
pub fn get(name: &str) -> Result<String, spin_sdk::variables::Error> {
    if let Some(value) =
        READ.with_borrow(|read| read.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
    {
        return Ok(value);
    }
    let value = spin_sdk::variables::get(name)?;
    READ.with_borrow_mut(|read| read.push((name.to_owned(), value.clone())));
    Ok(value)
}
