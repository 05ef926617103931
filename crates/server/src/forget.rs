//! Which snapshots a retention policy keeps (`docs/design/0009-retention-and-prune.md` §5.1):
//! restic's `forget` rules, evaluated by the server over the times it saw snapshots arrive, per
//! series (one device's snapshots). Pure: no database, no clock. Prune's forget step and the
//! API's preview (`GET …/users/{u}/retention/plan`) both call [`plan`].
//!
//! The rules, for one series sorted newest first:
//! - `keep_last` N keeps the newest N;
//! - `keep_hourly` … `keep_yearly` N keep the newest snapshot of each of the newest N calendar
//!   periods (UTC hours, days, ISO weeks, months, years) that have a snapshot, as restic does;
//! - `keep_within_days` D keeps every snapshot that arrived less than D days before `now`
//!   (restic measures from the newest snapshot instead; from `now` is what the promise "a file
//!   deleted at t stays restorable until t + D" needs, and a series that stops still keeps its
//!   calendar snapshots and its `keep_last`);
//! - a snapshot that arrived after `now` (a clock step back) is kept, and so is the newest
//!   snapshot of every series, whatever the policy says.
//!
//! A snapshot is kept if any rule keeps it; [`Verdict::reasons`] says which. A series under a
//! legal hold keeps everything ([`hold`]).

use serde::Serialize;

use crate::retention::RetentionPolicy;

/// One snapshot of a series, as the server saw it arrive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The snapshot's id.
    pub id: String,
    /// When its record arrived (Unix seconds, the server's clock).
    pub received_unix: i64,
    /// Its place among the archive's arrivals, counting up: one second can hold several
    /// backups, so it breaks ties of `received_unix` (0 for a record stored before it was
    /// counted).
    pub order: i64,
}

/// What the policy says of one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The snapshot's id.
    pub id: String,
    /// When it arrived.
    pub received_unix: i64,
    /// Whether it is kept.
    pub keep: bool,
    /// The rules that keep it (`keep_last`, `keep_daily`, …, `newest`, `future`, `undated`,
    /// `hold`); empty when it is forgotten.
    pub reasons: Vec<&'static str>,
}

/// The calendar period (hour, day, …) a time falls in, as a number.
type Period = fn(i64) -> Option<i64>;

fn hour(t: i64) -> Option<i64> {
    Some(t.div_euclid(3600))
}

fn day(t: i64) -> Option<i64> {
    Some(t.div_euclid(86_400))
}

fn civil(t: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(t).ok()
}

fn week(t: i64) -> Option<i64> {
    let (year, week, _) = civil(t)?.to_iso_week_date();
    Some(i64::from(year) * 100 + i64::from(week))
}

fn month(t: i64) -> Option<i64> {
    let d = civil(t)?;
    Some(i64::from(d.year()) * 12 + i64::from(u8::from(d.month())))
}

fn year(t: i64) -> Option<i64> {
    Some(i64::from(civil(t)?.year()))
}

/// The verdict on every snapshot of one series under `policy` at `now`, newest first.
#[must_use]
pub fn plan(policy: &RetentionPolicy, series: &[Arrival], now: i64) -> Vec<Verdict> {
    let mut order: Vec<&Arrival> = series.iter().collect();
    // Newest first; equal times by arrival order, then by id, so the answer does not depend
    // on the input's order.
    order.sort_by(|a, b| {
        b.received_unix
            .cmp(&a.received_unix)
            .then_with(|| b.order.cmp(&a.order))
            .then_with(|| b.id.cmp(&a.id))
    });
    let calendar: [(&'static str, u32, Period); 5] = [
        ("keep_hourly", policy.keep_hourly, hour),
        ("keep_daily", policy.keep_daily, day),
        ("keep_weekly", policy.keep_weekly, week),
        ("keep_monthly", policy.keep_monthly, month),
        ("keep_yearly", policy.keep_yearly, year),
    ];
    // For each calendar rule: periods still to keep, and the last period seen.
    let mut left: Vec<(u32, Option<i64>)> = calendar.iter().map(|&(_, n, _)| (n, None)).collect();
    let within = i64::from(policy.keep_within_days).saturating_mul(86_400);
    order
        .iter()
        .enumerate()
        .map(|(rank, a)| {
            let mut reasons = Vec::new();
            if rank == 0 {
                reasons.push("newest");
            }
            if u64::try_from(rank).is_ok_and(|r| r < u64::from(policy.keep_last)) {
                reasons.push("keep_last");
            }
            if a.received_unix > now {
                reasons.push("future");
            } else if now.saturating_sub(a.received_unix) < within {
                reasons.push("keep_within_days");
            }
            if civil(a.received_unix).is_none() {
                // A time the calendar cannot place: kept rather than guessed at.
                reasons.push("undated");
            }
            for ((name, _, period), (count, last)) in calendar.iter().zip(left.iter_mut()) {
                let Some(p) = period(a.received_unix) else {
                    continue;
                };
                if *last != Some(p) {
                    *last = Some(p);
                    if *count > 0 {
                        *count -= 1;
                        reasons.push(name);
                    }
                }
            }
            Verdict {
                id: a.id.clone(),
                received_unix: a.received_unix,
                keep: !reasons.is_empty(),
                reasons,
            }
        })
        .collect()
}

/// A series under a legal hold (design 0009 §7): every snapshot is kept, whatever the policy
/// says, for the reason `hold`.
pub(crate) fn hold(verdicts: &mut [Verdict]) {
    for v in verdicts {
        v.keep = true;
        v.reasons.push("hold");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_wrap)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NONE: RetentionPolicy = RetentionPolicy {
        keep_last: 0,
        keep_hourly: 0,
        keep_daily: 0,
        keep_weekly: 0,
        keep_monthly: 0,
        keep_yearly: 0,
        keep_within_days: 0,
    };

    /// 2026-01-01T00:00:00Z, a Thursday.
    const JAN_1: i64 = 1_767_225_600;
    const H: i64 = 3600;
    const D: i64 = 86_400;

    fn series(times: &[i64]) -> Vec<Arrival> {
        times
            .iter()
            .enumerate()
            .map(|(i, &t)| Arrival {
                id: format!("{i:02}"),
                received_unix: t,
                order: i as i64,
            })
            .collect()
    }

    fn kept(v: &[Verdict]) -> Vec<&str> {
        let mut ids: Vec<&str> = v.iter().filter(|v| v.keep).map(|v| v.id.as_str()).collect();
        ids.sort_unstable();
        ids
    }

    /// Backups that arrive within one second: the last to arrive is the newest, whatever its
    /// id (an agent backing up small folders often does several a second).
    #[test]
    fn within_one_second_the_last_arrival_is_the_newest() {
        let s: Vec<Arrival> = ["c", "a", "d", "b"]
            .iter()
            .enumerate()
            .map(|(i, id)| Arrival {
                id: (*id).to_owned(),
                received_unix: JAN_1,
                order: i as i64,
            })
            .collect();
        let last = RetentionPolicy {
            keep_last: 2,
            ..NONE
        };
        assert_eq!(kept(&plan(&last, &s, JAN_1)), ["b", "d"]);
    }

    /// Three snapshots a day for ten days: `keep_daily` 3 keeps the newest of each of the last
    /// three days; `keep_last` 2 the newest two; `keep_weekly` 2 the newest of this ISO week and
    /// of the week before (Jan 1–4 2026 is week 1, Jan 5–11 week 2).
    #[test]
    fn calendar_rules_keep_the_newest_of_each_period() {
        let times: Vec<i64> = (0..10)
            .flat_map(|d| [8, 12, 17].map(|h| JAN_1 + d * D + h * H))
            .collect();
        let s = series(&times);
        let now = JAN_1 + 10 * D;
        let daily = RetentionPolicy {
            keep_daily: 3,
            ..NONE
        };
        // Ids are the index: day d's 17:00 snapshot is 3d + 2.
        assert_eq!(kept(&plan(&daily, &s, now)), ["23", "26", "29"]);
        let last = RetentionPolicy {
            keep_last: 2,
            ..NONE
        };
        assert_eq!(kept(&plan(&last, &s, now)), ["28", "29"]);
        let weekly = RetentionPolicy {
            keep_weekly: 2,
            ..NONE
        };
        // Newest of week 2 (Jan 10, 17:00 = 29), newest of week 1 (Jan 4, 17:00 = 11).
        assert_eq!(kept(&plan(&weekly, &s, now)), ["11", "29"]);
        let hourly = RetentionPolicy {
            keep_hourly: 4,
            ..NONE
        };
        assert_eq!(kept(&plan(&hourly, &s, now)), ["26", "27", "28", "29"]);
        // Reasons name every rule that keeps a snapshot.
        let both = RetentionPolicy {
            keep_last: 1,
            keep_daily: 1,
            ..NONE
        };
        let v = plan(&both, &s, now);
        assert_eq!(v[0].reasons, ["newest", "keep_last", "keep_daily"]);
        assert!(v[1..].iter().all(|v| !v.keep && v.reasons.is_empty()));
    }

    /// Periods without a snapshot do not count: a device off for a month still keeps N days.
    #[test]
    fn periods_without_snapshots_are_skipped() {
        let s = series(&[JAN_1, JAN_1 + D, JAN_1 + 40 * D, JAN_1 + 41 * D]);
        let daily = RetentionPolicy {
            keep_daily: 3,
            ..NONE
        };
        assert_eq!(kept(&plan(&daily, &s, JAN_1 + 50 * D)), ["01", "02", "03"]);
        let monthly = RetentionPolicy {
            keep_monthly: 2,
            ..NONE
        };
        // January's newest (01) and February's (03).
        assert_eq!(kept(&plan(&monthly, &s, JAN_1 + 50 * D)), ["01", "03"]);
    }

    /// `keep_within_days` counts from now; the newest is kept whatever the policy; a snapshot
    /// from the future (a clock stepped back) is kept.
    #[test]
    fn within_counts_from_now_and_the_newest_and_the_future_are_kept() {
        let now = JAN_1 + 100 * D;
        let s = series(&[JAN_1, now - 8 * D, now - 6 * D, now - H, now + H]);
        let within = RetentionPolicy {
            keep_within_days: 7,
            ..NONE
        };
        let v = plan(&within, &s, now);
        assert_eq!(kept(&v), ["02", "03", "04"]);
        assert_eq!(v[0].reasons, ["newest", "future"]);
        // Nothing at all: only the newest.
        assert_eq!(kept(&plan(&NONE, &s[..3], now)), ["02"]);
        assert!(plan(&NONE, &[], now).is_empty());
    }

    proptest! {
        /// A policy that keeps at least as much under every rule keeps a superset; no
        /// calendar rule keeps more than its N; the input's order does not matter; and what
        /// is kept is exactly what carries a reason.
        #[test]
        fn more_retention_keeps_a_superset(
            times in proptest::collection::vec(0i64..(400 * D), 0..60),
            a in proptest::array::uniform7(0u32..6),
            extra in proptest::array::uniform7(0u32..4),
            now_after in 0i64..(30 * D),
        ) {
            let p = |r: [u32; 7]| RetentionPolicy {
                keep_last: r[0], keep_hourly: r[1], keep_daily: r[2], keep_weekly: r[3],
                keep_monthly: r[4], keep_yearly: r[5], keep_within_days: r[6],
            };
            let small = p(a);
            let big = p(std::array::from_fn(|i| a[i] + extra[i]));
            let s: Vec<Arrival> = times.iter().enumerate().map(|(i, &t)| Arrival {
                id: format!("{i:03}"), received_unix: JAN_1 + t, order: i as i64 }).collect();
            let now = JAN_1 + 400 * D + now_after;
            let v_small = plan(&small, &s, now);
            let v_big = plan(&big, &s, now);
            let ks = kept(&v_small);
            let kb = kept(&v_big);
            prop_assert!(ks.iter().all(|id| kb.contains(id)), "{ks:?} ⊄ {kb:?}");
            for (name, n) in [("keep_hourly", small.keep_hourly), ("keep_daily", small.keep_daily),
                              ("keep_weekly", small.keep_weekly), ("keep_monthly", small.keep_monthly),
                              ("keep_yearly", small.keep_yearly), ("keep_last", small.keep_last)] {
                let count = v_small.iter().filter(|v| v.reasons.contains(&name)).count();
                prop_assert!(count <= n as usize, "{name}: {count} > {n}");
            }
            let mut reversed = s.clone();
            reversed.reverse();
            let v_reversed = plan(&small, &reversed, now);
            prop_assert_eq!(kept(&v_reversed), ks.clone());
            prop_assert!(v_small.iter().all(|v| v.keep != v.reasons.is_empty()));
            prop_assert_eq!(v_small.len(), s.len());
            if !s.is_empty() { prop_assert!(v_small[0].keep); }
        }
    }
}
