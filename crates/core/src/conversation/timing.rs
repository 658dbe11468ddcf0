//! When things happen: call duration, time to first word, agent latency.

use super::*;

// ---------------------------------------------------------------------------------------------
// 1. call_duration

pub(super) fn call_duration(p: &Prepared) -> BuiltinOutcome {
    match &p.duration {
        Ok(d) => BuiltinOutcome::number(
            *d,
            format!("The call lasted {d:.2} s."),
            json!({ "seconds": r6(*d) }),
            Vec::new(),
        ),
        Err(e) => BuiltinOutcome::not_computable(e.clone(), Vec::new()),
    }
}

// ---------------------------------------------------------------------------------------------
// 2. time_to_first_word

pub(super) fn time_to_first_word(p: &Prepared) -> BuiltinOutcome {
    let first = p
        .rows
        .iter()
        .filter(|r| r.bot)
        .filter_map(|r| Some((r.start?, r.idx)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let Some((t, idx)) = first else {
        let reason = if p.bot.rows == 0 {
            "the agent never spoke (no bot message)"
        } else if p.no_times() {
            NO_TIMES
        } else {
            "no agent message has a start time"
        };
        return BuiltinOutcome::not_computable(reason.to_owned(), p.warnings([]));
    };
    BuiltinOutcome::number(
        t,
        format!("The agent first spoke {t:.2} s after the call started (messages[{idx}])."),
        json!({ "agent_message": idx, "start": r6(t) }),
        p.warnings([partial_warning(
            p.bot.rows,
            p.bot.with_start,
            "agent",
            "a start time",
        )]),
    )
}

// ---------------------------------------------------------------------------------------------
// 3. agent_latency

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stat {
    Avg,
    P50,
    P90,
    P95,
    P99,
    Max,
    Count,
}

impl Stat {
    pub(super) const ALLOWED: &'static str = "p50, avg, p90, p95, p99, max, count";

    pub(super) fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "avg" => Self::Avg,
            "p50" => Self::P50,
            "p90" => Self::P90,
            "p95" => Self::P95,
            "p99" => Self::P99,
            "max" => Self::Max,
            "count" => Self::Count,
            _ => return None,
        })
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Self::Avg => "average",
            Self::P50 => "median (p50)",
            Self::P90 => "90th percentile",
            Self::P95 => "95th percentile",
            Self::P99 => "99th percentile",
            Self::Max => "maximum",
            Self::Count => "number",
        }
    }
}

/// [`crate::percentile`] of samples known to be there.
pub(super) fn percentile(sorted: &[f64], q: f64) -> f64 {
    crate::percentile(sorted, q).unwrap_or(f64::NAN)
}

/// Each user message followed by an agent message (tool and system rows between do not count).
pub(super) fn handoffs_to_agent<'p>(p: &'p Prepared) -> impl Iterator<Item = (Row, Row)> + 'p {
    p.rows
        .windows(2)
        .map(|w| (w[0], w[1]))
        .filter(|(prev, cur)| !prev.bot && cur.bot)
}

pub(super) fn agent_latency(p: &Prepared, cfg: &BuiltinConfig) -> BuiltinOutcome {
    let Some(stat) = Stat::parse(&cfg.latency_statistic) else {
        return BuiltinOutcome::not_computable(
            format!(
                "latency_statistic {:?} is not one of {}",
                cfg.latency_statistic,
                Stat::ALLOWED
            ),
            p.warnings([]),
        );
    };
    let mut handoffs = 0usize;
    let mut samples: Vec<(usize, usize, f64)> = Vec::new();
    let mut overlaps: Vec<Value> = Vec::new();
    for (prev, cur) in handoffs_to_agent(p) {
        handoffs += 1;
        let (Some(user_end), Some(agent_start)) = (prev.end, cur.start) else {
            continue;
        };
        let latency = agent_start - user_end;
        if latency >= 0.0 {
            samples.push((prev.idx, cur.idx, latency));
        } else {
            overlaps.push(json!({
                "user_message": prev.idx, "agent_message": cur.idx, "overlap": r6(-latency)
            }));
        }
    }
    let timed = samples.len() + overlaps.len();
    if timed == 0 {
        let reason = if handoffs == 0 {
            "no user→agent handoff (no agent message follows a user message)".to_owned()
        } else if p.no_times() {
            NO_TIMES.to_owned()
        } else {
            format!(
                "none of the {handoffs} user→agent handoff{} has both the user's end time and the agent's start time",
                plural(handoffs)
            )
        };
        return BuiltinOutcome::not_computable(reason, p.warnings([]));
    }
    let untimed = handoffs - timed;
    let untimed_warning = (untimed > 0).then(|| {
        format!(
            "{untimed} of {handoffs} user→agent handoffs lack the user's end or the agent's start time and were left out"
        )
    });
    if samples.is_empty() && stat != Stat::Count {
        return BuiltinOutcome::not_computable(
            format!(
                "in all {timed} timed user→agent handoff{} the agent started before the user finished (overlaps, counted by agent_interrupting_user), so there is no latency sample",
                plural(timed)
            ),
            p.warnings([untimed_warning]),
        );
    }

    let mut sorted: Vec<f64> = samples.iter().map(|s| s.2).collect();
    sorted.sort_unstable_by(f64::total_cmp);
    let n = sorted.len();
    let stats = (!sorted.is_empty()).then(|| {
        let avg = sorted.iter().sum::<f64>() / n as f64;
        [
            avg,
            percentile(&sorted, 50.0),
            percentile(&sorted, 90.0),
            percentile(&sorted, 95.0),
            percentile(&sorted, 99.0),
            sorted[n - 1],
        ]
    });
    let value = match (stat, stats) {
        (Stat::Count, _) => n as f64,
        (Stat::Avg, Some(s)) => s[0],
        (Stat::P50, Some(s)) => s[1],
        (Stat::P90, Some(s)) => s[2],
        (Stat::P95, Some(s)) => s[3],
        (Stat::P99, Some(s)) => s[4],
        (Stat::Max, Some(s)) => s[5],
        (_, None) => unreachable!("no samples is handled above"),
    };
    let opt = |i: usize| stats.map(|s| r6(s[i]));
    let details = json!({
        "statistic": format!("{stat:?}").to_ascii_lowercase(),
        "avg": opt(0), "p50": opt(1), "p90": opt(2), "p95": opt(3), "p99": opt(4), "max": opt(5),
        "count": n,
        "samples": samples.iter().map(|&(u, a, l)| json!({
            "user_message": u, "agent_message": a, "latency": r6(l)
        })).collect::<Vec<_>>(),
        "overlaps": overlaps,
        "handoffs": handoffs,
        "untimed_handoffs": untimed,
    });
    let explanation = if stat == Stat::Count {
        format!(
            "{n} user→agent handoff{} with a measurable latency.",
            plural(n)
        )
    } else {
        format!(
            "The {} of {n} agent response latenc{} is {value:.2} s.",
            stat.describe(),
            if n == 1 { "y" } else { "ies" }
        )
    };
    BuiltinOutcome::number(value, explanation, details, p.warnings([untimed_warning]))
}
