//! The cron trigger (the `trigger-cron` plugin): calls `handle-cron-event` of
//! `fermyon:spin-cron/spin-cron@2.0.0` on a schedule.
//!
//! Expressions are read as the plugin reads them: exactly 6 fields with seconds (`sec min hour
//! day month weekday`, weekdays 0-7 with Sunday = 0 or 7), evaluated in UTC. Each trigger runs
//! in its own task that sleeps until the next tick, then awaits the handler: a run never overlaps
//! itself, and ticks that pass while a run is still going are skipped. `timestamp` is the tick's
//! Unix time in seconds. Handler errors and traps are logged; the schedule goes on.

use std::str::FromStr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chrono::Utc;

use crate::bindings::cron_trigger::fermyon::spin_cron::cron_types::Metadata;
use crate::manifest::App;
use crate::runtime::AppRuntime;

/// A parsed schedule for one component.
pub struct CronJob {
    /// Component id.
    pub component: String,
    /// The expression as written.
    pub expression: String,
    schedule: cron::Schedule,
}

/// Parses a cron expression the way the plugin accepts it.
///
/// The plugin (tokio-cron-scheduler 0.13 over croner) requires exactly 6 fields, seconds first,
/// and ANDs day-of-month with day-of-week; `@hourly`-style shortcuts are accepted. Its
/// day-of-week numbers are 0-7 with 0 and 7 = Sunday, while the `cron` crate used here counts
/// 1-7 from Sunday, so numeric weekdays are rewritten to names first.
pub fn parse_expression(expr: &str) -> Result<cron::Schedule> {
    let trimmed = expr.trim();
    let normalized = if trimmed.starts_with('@') {
        trimmed.to_string()
    } else {
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        if fields.len() != 6 {
            bail!(
                "cron expression {expr:?} has {} fields; expected 6: second minute hour day-of-month month day-of-week",
                fields.len()
            );
        }
        let dow = weekday_names(fields[5]).with_context(|| {
            format!(
                "invalid day-of-week field {:?} in cron expression {expr:?}",
                fields[5]
            )
        })?;
        format!(
            "{} {} {} {} {} {dow}",
            fields[0], fields[1], fields[2], fields[3], fields[4]
        )
    };
    cron::Schedule::from_str(&normalized)
        .map_err(|e| anyhow::anyhow!("invalid cron expression {expr:?}: {e}"))
}

const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn weekday(token: &str) -> Result<usize> {
    if let Ok(n) = token.parse::<usize>() {
        if n > 7 {
            bail!("day-of-week {n} is out of range 0-7");
        }
        return Ok(n % 7);
    }
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(token))
        .with_context(|| format!("unknown day-of-week {token:?}"))
}

/// croner day-of-week syntax (0-7, names, lists, ranges, steps) => a list of day names.
fn weekday_names(field: &str) -> Result<String> {
    if field == "*" || field == "?" {
        return Ok(field.to_string());
    }
    let mut set = [false; 7];
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (b, s.parse::<usize>().context("bad step")?),
            None => (item, 1),
        };
        if step == 0 {
            bail!("step must be positive");
        }
        let (from, to) = if base == "*" {
            (0, 6)
        } else if let Some((a, b)) = base.split_once('-') {
            let a = a
                .parse::<usize>()
                .map(|n| n.min(7))
                .ok()
                .map_or_else(|| weekday(a), Ok)?;
            let b = match b.parse::<usize>() {
                Ok(7) => 7,
                _ => weekday(b)?,
            };
            if a > b {
                bail!("range {base:?} is backwards");
            }
            (a, b)
        } else {
            let d = weekday(base)?;
            (d, if step > 1 { 6 } else { d })
        };
        let mut d = from;
        while d <= to {
            set[d % 7] = true;
            d += step;
        }
    }
    let names: Vec<&str> = DAYS
        .iter()
        .zip(set)
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
    if names.is_empty() {
        bail!("no day selected");
    }
    Ok(names.join(","))
}

/// Parses every `[[trigger.cron]]`.
pub fn jobs(app: &App) -> Result<Vec<CronJob>> {
    app.cron_triggers
        .iter()
        .map(|t| {
            let schedule = parse_expression(&t.cron_expression)
                .with_context(|| format!("the cron trigger for component {:?}", t.component))?;
            Ok(CronJob {
                component: t.component.clone(),
                expression: t.cron_expression.clone(),
                schedule,
            })
        })
        .collect()
}

/// Runs every job forever.
pub async fn run(app: Arc<AppRuntime>, jobs: Vec<CronJob>) {
    let tasks = jobs.into_iter().map(|job| run_job(app.clone(), job));
    futures::future::join_all(tasks).await;
}

async fn run_job(app: Arc<AppRuntime>, job: CronJob) {
    loop {
        let now = Utc::now();
        let Some(next) = job.schedule.after(&now).next() else {
            eprintln!(
                "spin-host: cron trigger {:?} for {:?} has no future ticks",
                job.expression, job.component
            );
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let timestamp = u64::try_from(next.timestamp()).unwrap_or_default();
        if let Err(e) = call(&app, &job.component, timestamp).await {
            eprintln!(
                "spin-host: cron trigger: component {:?} failed: {e:#}",
                job.component
            );
        }
    }
}

/// One call of `handle-cron-event` in a fresh store.
pub async fn call(app: &Arc<AppRuntime>, component_id: &str, timestamp: u64) -> Result<()> {
    let component = app
        .component(component_id)
        .with_context(|| format!("unknown component {component_id:?}"))?;
    let pre = component
        .cron
        .clone()
        .with_context(|| format!("component {component_id:?} does not export handle-cron-event"))?;
    let mut store = app.new_store(component, crate::state::TriggerKind::Cron);
    let guest = pre.instantiate_async(&mut store).await?;
    let r = guest
        .call_handle_cron_event(&mut store, Metadata { timestamp })
        .await?;
    if let Err(e) = r {
        bail!("handler returned {e:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Timelike};

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, se: u32) -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, se)
            .single()
            .expect("valid date")
    }

    #[test]
    fn six_field_expressions_with_seconds() {
        let s = parse_expression("*/15 * * * * *").expect("parse");
        let start = utc(2026, 1, 1, 0, 0, 1);
        let ticks: Vec<u32> = s.after(&start).take(3).map(|t| t.second()).collect();
        assert_eq!(ticks, vec![15, 30, 45]);
        assert!(parse_expression("0 0 12 * * Mon-Fri").is_ok());
        assert!(parse_expression("@hourly").is_ok());
    }

    #[test]
    fn weekdays_count_from_sunday_zero_like_croner() {
        assert_eq!(weekday_names("1").expect("dow"), "MON");
        assert_eq!(weekday_names("0").expect("dow"), "SUN");
        assert_eq!(weekday_names("7").expect("dow"), "SUN");
        assert_eq!(weekday_names("1-5").expect("dow"), "MON,TUE,WED,THU,FRI");
        assert_eq!(weekday_names("5-7").expect("dow"), "SUN,FRI,SAT");
        assert_eq!(weekday_names("*/2").expect("dow"), "SUN,TUE,THU,SAT");
        assert_eq!(weekday_names("sat,1").expect("dow"), "MON,SAT");
        // 2026-11-23 is a Monday.
        let s = parse_expression("0 0 12 * * 1").expect("parse");
        let next = s.after(&utc(2026, 11, 22, 0, 0, 0)).next().expect("next");
        assert_eq!(next, utc(2026, 11, 23, 12, 0, 0));
    }

    #[test]
    fn bad_expressions() {
        assert!(parse_expression("* * * * *").is_err());
        assert!(parse_expression("0 0 12 * * Mon-Fri 2030").is_err());
        assert!(parse_expression("0 0 12 * * 8").is_err());
        assert!(parse_expression("not a cron").is_err());
        assert!(parse_expression("61 * * * * *").is_err());
    }
}
