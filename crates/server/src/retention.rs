//! Retention policies (`docs/design/0009-retention-and-prune.md` §5): restic's `forget`
//! vocabulary, evaluated by the server over arrival times. This module holds the policy, its
//! defaults, the operator's floor, and the rule that a change which shortens retention waits
//! out a delay. Prune (`crate::prune`) applies them.

use serde::{Deserialize, Serialize};

/// How long a change that shortens retention waits before it takes effect (design 0009 §5.3):
/// an admin token stolen today cannot empty history today.
pub const SHORTENING_DELAY_SECS: i64 = 7 * 86_400;

/// What a tenant (or one of its users) keeps. A snapshot is kept if any rule keeps it; the
/// calendar rules keep the newest snapshot of each of the last N periods that have one, per
/// device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// The newest N snapshots.
    pub keep_last: u32,
    /// The newest snapshot of each of the last N hours that have one.
    pub keep_hourly: u32,
    /// … of each of the last N days.
    pub keep_daily: u32,
    /// … of each of the last N weeks.
    pub keep_weekly: u32,
    /// … of each of the last N months.
    pub keep_monthly: u32,
    /// … of each of the last N years.
    pub keep_yearly: u32,
    /// Every snapshot younger than this many days: also how long a deleted or overwritten
    /// file stays restorable at least.
    pub keep_within_days: u32,
}

/// The most any rule may say (a hundred years of days): larger numbers are typos.
pub const MAX_RULE: u32 = 36_500;

impl RetentionPolicy {
    /// The default an organisation would pick for laptops: a month of everything, then a
    /// thinning calendar.
    pub const DEFAULT: Self = Self {
        keep_last: 3,
        keep_hourly: 0,
        keep_daily: 90,
        keep_weekly: 52,
        keep_monthly: 24,
        keep_yearly: 7,
        keep_within_days: 30,
    };

    /// The operator's floor by default: a tenant may keep no less than the last snapshot and a
    /// week of everything.
    pub const FLOOR: Self = Self {
        keep_last: 1,
        keep_hourly: 0,
        keep_daily: 0,
        keep_weekly: 0,
        keep_monthly: 0,
        keep_yearly: 0,
        keep_within_days: 7,
    };

    fn rules(&self) -> [(&'static str, u32); 7] {
        [
            ("keep_last", self.keep_last),
            ("keep_hourly", self.keep_hourly),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
            ("keep_yearly", self.keep_yearly),
            ("keep_within_days", self.keep_within_days),
        ]
    }

    /// Checks the policy against `floor`: `Err(rule)` names the first rule below it, or above
    /// [`MAX_RULE`].
    ///
    /// # Errors
    /// The rule's name.
    pub fn check(&self, floor: &Self) -> Result<(), &'static str> {
        for ((name, value), (_, least)) in self.rules().into_iter().zip(floor.rules()) {
            if value < least || value > MAX_RULE {
                return Err(name);
            }
        }
        Ok(())
    }

    /// The policy that keeps, under each rule, the more of `self` and `floor`: what applies
    /// when the operator raised the floor above a policy written before.
    #[must_use]
    pub fn at_least(&self, floor: &Self) -> Self {
        Self {
            keep_last: self.keep_last.max(floor.keep_last),
            keep_hourly: self.keep_hourly.max(floor.keep_hourly),
            keep_daily: self.keep_daily.max(floor.keep_daily),
            keep_weekly: self.keep_weekly.max(floor.keep_weekly),
            keep_monthly: self.keep_monthly.max(floor.keep_monthly),
            keep_yearly: self.keep_yearly.max(floor.keep_yearly),
            keep_within_days: self.keep_within_days.max(floor.keep_within_days),
        }
    }

    /// Whether moving from `self` to `to` keeps less under any rule (so it must wait out
    /// [`SHORTENING_DELAY_SECS`]).
    #[must_use]
    pub fn shortened_by(&self, to: &Self) -> bool {
        self.rules()
            .into_iter()
            .zip(to.rules())
            .any(|((_, from), (_, to))| to < from)
    }
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A policy as it stands at some time: the one in effect, and a shortening waiting for its
/// time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyState {
    /// In effect now.
    pub policy: RetentionPolicy,
    /// A shortening decided, not yet in effect.
    pub pending: Option<RetentionPolicy>,
    /// When `pending` takes effect (Unix seconds).
    pub pending_from_unix: Option<i64>,
}

impl PolicyState {
    /// `stored` (in effect, pending, from) as it stands at `now`: a pending policy whose time
    /// has come is the one in effect.
    #[must_use]
    pub fn at(policy: RetentionPolicy, pending: Option<(RetentionPolicy, i64)>, now: i64) -> Self {
        match pending {
            Some((p, from)) if from <= now => Self {
                policy: p,
                pending: None,
                pending_from_unix: None,
            },
            Some((p, from)) => Self {
                policy,
                pending: Some(p),
                pending_from_unix: Some(from),
            },
            None => Self {
                policy,
                pending: None,
                pending_from_unix: None,
            },
        }
    }

    /// The state after an admin asks for `to` at `now`. A change that keeps at least as much
    /// under every rule takes effect at once (and cancels a pending shortening); one that keeps
    /// less under any rule waits [`SHORTENING_DELAY_SECS`] from now, with the policy in effect
    /// until then unchanged.
    #[must_use]
    pub fn change(self, to: RetentionPolicy, now: i64) -> Self {
        if self.policy.shortened_by(&to) {
            Self {
                policy: self.policy,
                pending: Some(to),
                pending_from_unix: Some(now.saturating_add(SHORTENING_DELAY_SECS)),
            }
        } else {
            Self {
                policy: to,
                pending: None,
                pending_from_unix: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_above_the_floor() {
        assert_eq!(
            RetentionPolicy::DEFAULT.check(&RetentionPolicy::FLOOR),
            Ok(())
        );
    }

    #[test]
    fn a_rule_below_the_floor_or_past_the_maximum_is_named() {
        let low = RetentionPolicy {
            keep_within_days: 6,
            ..RetentionPolicy::DEFAULT
        };
        assert_eq!(low.check(&RetentionPolicy::FLOOR), Err("keep_within_days"));
        let huge = RetentionPolicy {
            keep_daily: MAX_RULE + 1,
            ..RetentionPolicy::DEFAULT
        };
        assert_eq!(huge.check(&RetentionPolicy::FLOOR), Err("keep_daily"));
    }

    /// Lengthening takes effect at once; shortening any one rule waits, even when another
    /// rule grows; a pending shortening is in effect once its time has come.
    #[test]
    fn shortening_waits_and_lengthening_does_not() {
        let now = 1_000_000;
        let start = PolicyState::at(RetentionPolicy::DEFAULT, None, now);
        let longer = RetentionPolicy {
            keep_daily: 120,
            ..RetentionPolicy::DEFAULT
        };
        assert_eq!(start.change(longer, now).policy, longer);
        let mixed = RetentionPolicy {
            keep_daily: 120,
            keep_weekly: 10,
            ..RetentionPolicy::DEFAULT
        };
        let waiting = start.change(mixed, now);
        assert_eq!(waiting.policy, RetentionPolicy::DEFAULT);
        assert_eq!(waiting.pending, Some(mixed));
        let from = now + SHORTENING_DELAY_SECS;
        assert_eq!(waiting.pending_from_unix, Some(from));
        let stored = (waiting.policy, Some((mixed, from)));
        assert_eq!(
            PolicyState::at(stored.0, stored.1, from - 1).policy,
            RetentionPolicy::DEFAULT
        );
        assert_eq!(PolicyState::at(stored.0, stored.1, from).policy, mixed);
        // A lengthening cancels the pending shortening.
        assert_eq!(waiting.change(longer, now + 1).pending, None);
    }
}
