//! The cron trigger (the `trigger-cron` plugin): calls `handle-cron-event` of
//! `fermyon:spin-cron/spin-cron@2.0.0` on a schedule.
//!
//! Expressions are read by the `cron` crate: 6 fields with seconds (`sec min hour day month
//! weekday`) or 7 with a year, evaluated in UTC as the plugin's scheduler does. Each trigger runs
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

/// Parses a cron expression the way the plugin accepts it (6 or 7 fields).
pub fn parse_expression(expr: &str) -> Result<cron::Schedule> {
    let fields = expr.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        bail!(
            "cron expression {expr:?} has {fields} fields; expected 6 (sec min hour day month weekday) or 7 (with year)"
        );
    }
    cron::Schedule::from_str(expr)
        .map_err(|e| anyhow::anyhow!("invalid cron expression {expr:?}: {e}"))
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
    let mut store = app.new_store(component);
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

    #[test]
    fn six_field_expressions_with_seconds() {
        let s = parse_expression("*/15 * * * * *").expect("parse");
        let start = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 1)
            .single()
            .expect("date");
        let ticks: Vec<u32> = s.after(&start).take(3).map(|t| t.second()).collect();
        assert_eq!(ticks, vec![15, 30, 45]);
        assert!(parse_expression("0 0 12 * * Mon-Fri 2030").is_ok());
    }

    #[test]
    fn bad_expressions() {
        assert!(parse_expression("* * * * *").is_err());
        assert!(parse_expression("not a cron").is_err());
        assert!(parse_expression("61 * * * * *").is_err());
    }
}
