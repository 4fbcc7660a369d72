//! The cron trigger (the `trigger-cron` plugin): calls `handle-cron-event` of
//! `fermyon:spin-cron/spin-cron@2.0.0` on a schedule.
//!
//! Expressions are parsed as the plugin parses them: by croner 2.1.0 (what tokio-cron-scheduler
//! 0.13 uses) with seconds required and day-of-month ANDed with day-of-week. That is exactly 6
//! fields, `sec min hour day month weekday`, weekdays 0-7 with Sunday = 0 or 7, `@hourly`-style
//! nicknames, evaluated in UTC. As in the plugin, which spawns every tick, each tick runs in its
//! own task: a run that outlasts the interval does not delay the next tick, so the runs of a slow
//! handler overlap. `timestamp` is the tick's Unix time in seconds (the plugin reads the clock as
//! the tick fires: the same second). Handler errors and traps are logged; the schedule goes on.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Timelike, Utc};
use croner::Cron;

use crate::bindings::cron_trigger::fermyon::spin_cron::cron_types::Metadata;
use crate::manifest::App;
use crate::runtime::AppRuntime;
use crate::state::TriggerKind;

/// A parsed schedule for one component.
pub struct CronJob {
    /// Component id.
    pub component: String,
    /// The expression as written.
    pub expression: String,
    schedule: Cron,
}

/// Parses a cron expression the way the plugin does:
/// `Cron::new(expr).with_seconds_required().with_dom_and_dow().parse()`.
pub fn parse_expression(expr: &str) -> Result<Cron> {
    Cron::new(expr)
        .with_seconds_required()
        .with_dom_and_dow()
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid cron expression {expr:?}: {e}"))
}

/// The first tick strictly after `t`'s whole second.
pub fn next_tick(schedule: &Cron, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let whole = t.with_nanosecond(0).unwrap_or(t);
    schedule.find_next_occurrence(&whole, false).ok()
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

/// Sleeps until each tick and spawns the run, so a slow run never holds back the next tick.
async fn run_job(app: Arc<AppRuntime>, job: CronJob) {
    let mut last: Option<DateTime<Utc>> = None;
    loop {
        let now = Utc::now();
        // Never fire the same tick twice, even if the timer wakes a hair early.
        let from = last.map_or(now, |l| l.max(now));
        let Some(next) = next_tick(&job.schedule, from) else {
            eprintln!(
                "spin-host: cron trigger {:?} for {:?} has no future ticks",
                job.expression, job.component
            );
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        last = Some(next);
        let timestamp = u64::try_from(next.timestamp()).unwrap_or_default();
        let app = app.clone();
        let component = job.component.clone();
        tokio::spawn(async move {
            if let Err(e) = call(&app, &component, timestamp).await {
                eprintln!("spin-host: cron trigger: component {component:?} failed: {e:#}");
            }
        });
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
    let mut store = app.new_store(component, TriggerKind::Cron, None);
    let deadline = store.data().deadline;
    let result = crate::limits::until_deadline(deadline, async {
        let guest = pre.instantiate_async(&mut store).await?;
        let r = guest
            .call_handle_cron_event(&mut store, Metadata { timestamp })
            .await?;
        if let Err(e) = r {
            bail!("handler returned {e:?}");
        }
        Ok(())
    })
    .await;
    crate::limits::explain(result, store.data().limits.refused())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone};

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, se: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, se)
            .single()
            .expect("valid date")
    }

    fn ticks(expr: &str, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let s = parse_expression(expr).expect("parse");
        let mut out = Vec::new();
        let mut t = from;
        while out.len() < n {
            t = next_tick(&s, t).expect("next tick");
            out.push(t);
        }
        out
    }

    #[test]
    fn six_field_expressions_with_seconds() {
        let start = utc(2026, 1, 1, 0, 0, 1);
        let secs: Vec<u32> = ticks("*/15 * * * * *", start, 3)
            .iter()
            .map(|t| t.second())
            .collect();
        assert_eq!(secs, vec![15, 30, 45]);
        assert!(parse_expression("0 0 12 * * Mon-Fri").is_ok());
        assert_eq!(
            ticks("@hourly", start, 1),
            vec![utc(2026, 1, 1, 1, 0, 0)],
            "nicknames get a seconds field of 0"
        );
    }

    #[test]
    fn next_tick_is_strictly_after_the_current_second() {
        let s = parse_expression("* * * * * *").expect("parse");
        let t = utc(2026, 1, 1, 0, 0, 5) + chrono::Duration::milliseconds(300);
        assert_eq!(next_tick(&s, t), Some(utc(2026, 1, 1, 0, 0, 6)));
        assert_eq!(
            next_tick(&s, utc(2026, 1, 1, 0, 0, 6)),
            Some(utc(2026, 1, 1, 0, 0, 7))
        );
    }

    #[test]
    fn weekdays_count_from_sunday_zero_and_seven() {
        // 2026-11-22 is a Sunday, 2026-11-23 a Monday.
        let sunday = utc(2026, 11, 21, 13, 0, 0);
        for expr in ["0 0 12 * * 0", "0 0 12 * * 7", "0 0 12 * * SUN"] {
            assert_eq!(
                ticks(expr, sunday, 1),
                vec![utc(2026, 11, 22, 12, 0, 0)],
                "{expr}"
            );
        }
        assert_eq!(
            ticks("0 0 12 * * 1", sunday, 1),
            vec![utc(2026, 11, 23, 12, 0, 0)]
        );
        let days: Vec<u32> = ticks("0 0 12 * * 5-7", sunday, 3)
            .iter()
            .map(|t| t.day())
            .collect();
        assert_eq!(days, vec![22, 27, 28], "Fri-Sun");
    }

    #[test]
    fn day_of_month_and_day_of_week_are_anded() {
        // The 13th that is also a Friday: 2026-02-13, then 2026-03-13.
        let from = utc(2026, 1, 1, 0, 0, 0);
        assert_eq!(
            ticks("0 0 0 13 * FRI", from, 2),
            vec![utc(2026, 2, 13, 0, 0, 0), utc(2026, 3, 13, 0, 0, 0)]
        );
    }

    #[test]
    fn bad_expressions() {
        assert!(
            parse_expression("* * * * *").is_err(),
            "seconds are required"
        );
        assert!(parse_expression("0 0 12 * * Mon-Fri 2030").is_err());
        assert!(parse_expression("0 0 12 * * 8").is_err());
        assert!(parse_expression("not a cron").is_err());
        assert!(parse_expression("61 * * * * *").is_err());
    }
}
