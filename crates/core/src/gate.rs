//! The statistics of a CI gate over test results: per-scenario tallies with Wilson intervals
//! and pass^k, a one-sided Fisher exact test against a baseline result, and the verdict.
//!
//! A scenario runs k times, typically 3–30, so every count here is small: the statistics are
//! exact or small-sample safe, never a normal approximation.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// How one run ended, as far as the gate is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunVerdict {
    Passed,
    Failed,
    /// Errored, timed out, cancelled, not finished, or the rubric could not decide: evidence
    /// neither for nor against the agent, so it is never counted as a failure.
    Undecided,
}

/// One run of a result, as the gate sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunOutcome {
    pub run_id: i64,
    pub scenario_id: i64,
    pub scenario_name: String,
    pub quarantined: bool,
    pub verdict: RunVerdict,
}

/// A closed range of proportions, within [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// The two-sided 95 % quantile of the standard normal distribution.
const Z95: f64 = 1.959963984540054;

/// The 95 % Wilson score interval of `passes` out of `trials`, `None` without trials.
///
/// Wilson rather than the textbook (Wald) interval: at 0/k and k/k Wald collapses to a point
/// and near them it leaves [0, 1], exactly where a gate with few runs lives.
pub fn wilson_interval(passes: u32, trials: u32) -> Option<Interval> {
    if trials == 0 {
        return None;
    }
    let n = f64::from(trials);
    let p = f64::from(passes.min(trials)) / n;
    let z2 = Z95 * Z95;
    let scale = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / scale;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / scale;
    // At 0/n and n/n the edge is exactly 0 or 1, where rounding would leave 1 − 1e-16.
    let low = if passes == 0 { 0.0 } else { centre - half };
    let high = if passes >= trials { 1.0 } else { centre + half };
    Some(Interval {
        low: low.max(0.0),
        high: high.min(1.0),
    })
}

/// The counts of one scenario, or of the whole result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tally {
    /// `None` for the whole result.
    pub scenario_id: Option<i64>,
    pub scenario_name: Option<String>,
    pub quarantined: bool,
    pub runs: u32,
    pub passed: u32,
    pub failed: u32,
    pub undecided: u32,
    /// `passed / (passed + failed)`: undecided runs say nothing about the agent. `None` when
    /// no run was decided.
    pub pass_rate: Option<f64>,
    /// The Wilson interval of the pass rate.
    pub interval: Option<Interval>,
    /// pass^k: every one of the runs passed. A 90 % pass rate passes all 10 runs only 35 % of
    /// the time, so this is the consistency users feel, which the rate hides.
    pub pass_all: bool,
}

impl Tally {
    fn new(scenario: Option<(i64, String)>, quarantined: bool, counts: [u32; 3]) -> Self {
        let [passed, failed, undecided] = counts;
        let (decided, runs) = (passed + failed, passed + failed + undecided);
        let (scenario_id, scenario_name) = scenario.unzip();
        Tally {
            scenario_id,
            scenario_name,
            quarantined,
            runs,
            passed,
            failed,
            undecided,
            pass_rate: (decided > 0).then(|| f64::from(passed) / f64::from(decided)),
            interval: wilson_interval(passed, decided),
            pass_all: runs > 0 && passed == runs,
        }
    }

    /// Runs that passed or failed: the denominator of the pass rate.
    pub fn decided(&self) -> u32 {
        self.passed + self.failed
    }
}

/// A result counted per scenario and overall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResultTally {
    /// In the order the scenarios first appear among the runs.
    pub scenarios: Vec<Tally>,
    /// Over the runs of non-quarantined scenarios only.
    pub overall: Tally,
}

/// Counts a result's runs per scenario (a scenario is quarantined if any of its runs says so)
/// and overall.
pub fn tally(runs: &[RunOutcome]) -> ResultTally {
    let mut index = HashMap::new();
    // Per scenario: its first run, quarantined, counts in `RunVerdict` order.
    let mut seen: Vec<(&RunOutcome, bool, [u32; 3])> = Vec::new();
    for run in runs {
        let i = *index.entry(run.scenario_id).or_insert_with(|| {
            seen.push((run, false, [0; 3]));
            seen.len() - 1
        });
        seen[i].1 |= run.quarantined;
        seen[i].2[run.verdict as usize] += 1;
    }
    let mut overall = [0; 3];
    for (_, _, counts) in seen.iter().filter(|s| !s.1) {
        (0..3).for_each(|i| overall[i] += counts[i]);
    }
    let scenario = |run: &RunOutcome| Some((run.scenario_id, run.scenario_name.clone()));
    ResultTally {
        scenarios: (seen.into_iter())
            .map(|(run, quarantined, counts)| Tally::new(scenario(run), quarantined, counts))
            .collect(),
        overall: Tally::new(None, false, overall),
    }
}

/// The p-value of the one-sided Fisher exact test that group A's pass rate is lower than group
/// B's: the probability, with both margins fixed, of A passing at most `a_pass` times.
///
/// Exact, because with k runs per scenario the counts are far too small for a χ² or z-test
/// (10/10 against 3/10 has expected cells of 3.5). One-sided, because the gate asks "did it get
/// worse?" and does not spend half of α on the other direction. Passes beyond `n` are capped.
pub fn fisher_exact_one_sided(a_pass: u32, a_n: u32, b_pass: u32, b_n: u32) -> f64 {
    let (a_pass, b_pass) = (a_pass.min(a_n) as usize, b_pass.min(b_n) as usize);
    let (a_n, b_n) = (a_n as usize, b_n as usize);
    let (n, k) = (a_n + b_n, a_pass + b_pass);
    // ln(i!) as running sums of ln(i): exact enough, and no overflow where i! would.
    let mut ln_fact = vec![0.0; n + 1];
    for i in 1..=n {
        ln_fact[i] = ln_fact[i - 1] + (i as f64).ln();
    }
    let ln_choose = |n: usize, r: usize| ln_fact[n] - ln_fact[r] - ln_fact[n - r];
    let ln_total = ln_choose(n, k);
    let p: f64 = (k.saturating_sub(b_n)..=a_pass)
        .map(|x| (ln_choose(a_n, x) + ln_choose(b_n, k - x) - ln_total).exp())
        .sum();
    p.min(1.0)
}

/// How a scenario's pass rate moved against the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Regressed,
    Improved,
    Unchanged,
    /// The baseline has no decided run of the scenario.
    NoBaseline,
}

/// One scenario of the current result against the same scenario (by id) in the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScenarioComparison {
    pub scenario_id: i64,
    pub scenario_name: String,
    pub quarantined: bool,
    pub current: Tally,
    pub baseline: Option<Tally>,
    pub change: Change,
    /// The smaller of the two one-sided p-values (worse, better); `None` without a baseline.
    pub p_value: Option<f64>,
}

/// The significance level of the regression test. With 10 runs a side it flags 10/10 → 6/10
/// (p ≈ 0.043) but not 10/10 → 7/10 (p ≈ 0.105): a single flaky run never fails a gate.
pub const DEFAULT_ALPHA: f64 = 0.05;

/// What the gate demands beyond "no undecided runs".
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// The least overall pass rate (0–1) that passes.
    pub min_pass_rate: Option<f64>,
    /// The significance level of the regression test against a baseline.
    pub alpha: f64,
}

impl Default for GateOptions {
    fn default() -> Self {
        GateOptions {
            min_pass_rate: None,
            alpha: DEFAULT_ALPHA,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GateVerdict {
    Pass,
    Fail,
    /// Not enough evidence to pass or fail: a CI step should retry or alert, not block.
    Undecided,
}

impl GateVerdict {
    /// The process exit code of a CLI gate: distinct for "undecided" so CI can tell it apart.
    pub fn exit_code(self) -> u8 {
        match self {
            GateVerdict::Pass => 0,
            GateVerdict::Fail => 1,
            GateVerdict::Undecided => 2,
        }
    }
}

/// The gate's verdict with its reasons and the statistics behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GateReport {
    pub verdict: GateVerdict,
    /// Why, in scenario order; may be empty for a pass.
    pub reasons: Vec<String>,
    pub overall: Tally,
    /// Every scenario of the current result, quarantined ones included (they never gate).
    pub scenarios: Vec<ScenarioComparison>,
    pub alpha: f64,
    pub min_pass_rate: Option<f64>,
    /// The result compared with, when there is one (the gate itself only sees tallies).
    pub baseline_result_id: Option<i64>,
}

fn compare(current: &Tally, baseline: Option<&Tally>, alpha: f64) -> ScenarioComparison {
    let (change, p_value) = match baseline.filter(|b| b.decided() > 0) {
        None => (Change::NoBaseline, None),
        Some(b) => {
            let (c_pass, c_n) = (current.passed, current.decided());
            let worse = fisher_exact_one_sided(c_pass, c_n, b.passed, b.decided());
            let better = fisher_exact_one_sided(b.passed, b.decided(), c_pass, c_n);
            let change = if worse < alpha {
                Change::Regressed
            } else if better < alpha {
                Change::Improved
            } else {
                Change::Unchanged
            };
            (change, Some(worse.min(better)))
        }
    };
    ScenarioComparison {
        scenario_id: current.scenario_id.unwrap_or_default(),
        scenario_name: current.scenario_name.clone().unwrap_or_default(),
        quarantined: current.quarantined,
        current: current.clone(),
        baseline: baseline.cloned(),
        change,
        p_value,
    }
}

/// "passed/decided".
fn fraction(t: &Tally) -> String {
    format!("{}/{}", t.passed, t.decided())
}

/// Four decimals, or scientific notation where they would read as zero.
fn fmt_p(p: f64) -> String {
    if p >= 1e-4 {
        format!("{p:.4}")
    } else {
        format!("{p:.1e}")
    }
}

/// Gates the current result, against a baseline result and/or a minimum pass rate if given,
/// otherwise on "every run passed". Quarantined scenarios are compared but never gate.
pub fn gate(
    current: &ResultTally,
    baseline: Option<&ResultTally>,
    options: &GateOptions,
) -> GateReport {
    let in_baseline = |id| baseline?.scenarios.iter().find(|b| b.scenario_id == id);
    let scenarios: Vec<ScenarioComparison> = (current.scenarios.iter())
        .map(|t| compare(t, in_baseline(t.scenario_id), options.alpha))
        .collect();
    let gating = || scenarios.iter().filter(|s| !s.quarantined);
    // What definitely failed comes first: a clear regression is a failure even when other
    // runs could not be decided.
    let mut failures = Vec::new();
    for s in gating().filter(|s| s.change == Change::Regressed) {
        let (c, b) = (
            &s.current,
            s.baseline.as_ref().expect("a regression has a baseline"),
        );
        let p = fmt_p(s.p_value.unwrap_or(0.0));
        failures.push(format!(
            "{:?} regressed: {} passed, baseline {} (one-sided Fisher exact p = {p} < {})",
            s.scenario_name,
            fraction(c),
            fraction(b),
            options.alpha
        ));
    }
    let o = &current.overall;
    match (options.min_pass_rate, o.pass_rate) {
        (Some(min), Some(rate)) if rate < min => failures.push(format!(
            "Overall pass rate {:.1} % ({}) is below the minimum {:.1} %.",
            rate * 100.0,
            fraction(o),
            min * 100.0
        )),
        (Some(_), _) => {}
        // Without a threshold, every run of a scenario with nothing to compare against must
        // pass: with no baseline that is every scenario, with one, those new to it.
        (None, _) => {
            let uncompared =
                |s: &&ScenarioComparison| baseline.is_none() || s.change == Change::NoBaseline;
            for s in gating().filter(uncompared).filter(|s| s.current.failed > 0) {
                let (name, t) = (&s.scenario_name, &s.current);
                let new = if baseline.is_some() {
                    " (not in the baseline)"
                } else {
                    ""
                };
                failures.push(format!(
                    "{name:?} failed {} of {} runs{new}.",
                    t.failed, t.runs
                ));
            }
        }
    }
    let mut undecided = Vec::new();
    if gating().all(|s| s.current.runs == 0) {
        undecided.push("No runs outside quarantine to gate on.".to_string());
    }
    for s in gating().filter(|s| s.current.undecided > 0) {
        let (name, t) = (&s.scenario_name, &s.current);
        undecided.push(format!(
            "{name:?}: {} of {} runs undecided (errored, timed out, cancelled, unfinished \
             or not decided by the rubric).",
            t.undecided, t.runs
        ));
    }
    let (verdict, reasons) = match (failures.is_empty(), undecided.is_empty()) {
        (false, _) => (GateVerdict::Fail, [failures, undecided].concat()),
        (true, false) => (GateVerdict::Undecided, undecided),
        (true, true) => (GateVerdict::Pass, Vec::new()),
    };
    GateReport {
        verdict,
        reasons,
        overall: current.overall.clone(),
        scenarios,
        alpha: options.alpha,
        min_pass_rate: options.min_pass_rate,
        baseline_result_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GateVerdict as V;

    /// `passed`, `failed`, then `undecided` runs of one scenario.
    fn runs(id: i64, name: &str, quarantined: bool, counts: [u32; 3]) -> Vec<RunOutcome> {
        let verdicts = [
            RunVerdict::Passed,
            RunVerdict::Failed,
            RunVerdict::Undecided,
        ];
        (verdicts.into_iter().zip(counts))
            .flat_map(|(v, n)| std::iter::repeat_n(v, n as usize))
            .enumerate()
            .map(|(i, verdict)| RunOutcome {
                run_id: id * 1000 + i as i64,
                scenario_id: id,
                scenario_name: name.to_string(),
                quarantined,
                verdict,
            })
            .collect()
    }

    fn refund(counts: [u32; 3]) -> ResultTally {
        tally(&runs(1, "refund", false, counts))
    }

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() < eps
    }

    #[test]
    fn wilson_matches_known_values() {
        let i = wilson_interval(8, 10).unwrap();
        assert!(
            close(i.low, 0.4902, 5e-5) && close(i.high, 0.9433, 5e-5),
            "{i:?}"
        );
        let i = wilson_interval(0, 10).unwrap();
        assert!(i.low == 0.0 && close(i.high, 0.2775, 5e-5), "{i:?}");
        let i = wilson_interval(10, 10).unwrap();
        assert!(close(i.low, 0.7225, 5e-5) && i.high == 1.0, "{i:?}");
        assert_eq!(wilson_interval(0, 0), None);
    }

    #[test]
    fn fisher_matches_known_values() {
        let fisher = |a, b| fisher_exact_one_sided(a, 10, b, 10);
        // 3/10 against 10/10: 13 passes among 20 runs, and A passes at least 3 times (B holds
        // at most 10), so the tail is the one table x = 3:
        // C(10,3)·C(10,10) / C(20,13) = 120 / 77520 = C(13,3)·C(7,7) / C(20,10) = 286 / 184756.
        assert!(
            close(fisher(3, 10), 120.0 / 77520.0, 1e-12) && close(fisher(3, 10), 0.00155, 1e-5)
        );
        // 9/10 against 10/10: the tail is x = 9 alone, C(10,9)·C(10,10) / C(20,19) = 10/20.
        assert!(close(fisher(9, 10), 0.5, 1e-12));
        // DEFAULT_ALPHA's promise: 10/10 → 6/10 is flagged, 10/10 → 7/10 is not.
        assert!(close(fisher(6, 10), 210.0 / 4845.0, 1e-12));
        assert!(close(fisher(7, 10), 120.0 / 1140.0, 1e-12));
        // Nothing is lower than A passing everything, nor than nothing at all.
        assert_eq!(
            (fisher(10, 3), fisher_exact_one_sided(0, 0, 0, 0)),
            (1.0, 1.0)
        );
    }

    #[test]
    fn fisher_agrees_with_integer_arithmetic() {
        let choose =
            |n: u32, r: u32| (0..r).fold(1u64, |c, i| c * u64::from(n - i) / u64::from(i + 1));
        for (a_n, b_n) in [(1u32, 1u32), (3, 5), (7, 4), (8, 8)] {
            for (a, b) in (0..=a_n).flat_map(|a| (0..=b_n).map(move |b| (a, b))) {
                let k = a + b;
                let tail: u64 = (k.saturating_sub(b_n)..=a)
                    .map(|x| choose(a_n, x) * choose(b_n, k - x))
                    .sum();
                let exact = tail as f64 / choose(a_n + b_n, k) as f64;
                let p = fisher_exact_one_sided(a, a_n, b, b_n);
                assert!(
                    close(p, exact, 1e-12),
                    "{a}/{a_n} vs {b}/{b_n}: {p} {exact}"
                );
            }
        }
    }

    #[test]
    fn tally_counts_per_scenario_with_pass_all() {
        let mut all = runs(2, "greeting", false, [3, 0, 0]);
        all.extend(runs(1, "refund", false, [2, 0, 1]));
        all.extend(runs(3, "transfer", false, [2, 1, 0]));
        all.extend(runs(2, "greeting", false, [1, 0, 0]));
        let t = tally(&all);
        let [greeting, refund, transfer] = &t.scenarios[..] else {
            panic!("{t:?}")
        };
        let names = [greeting, refund, transfer].map(|s| s.scenario_name.clone().unwrap());
        assert_eq!(names, ["greeting", "refund", "transfer"]);
        assert!(greeting.pass_all && greeting.runs == 4 && greeting.pass_rate == Some(1.0));
        // Undecided runs leave the rate alone but break pass^k.
        assert!(!refund.pass_all && refund.pass_rate == Some(1.0));
        assert_eq!(refund.interval, wilson_interval(2, 2));
        assert!(!transfer.pass_all && close(transfer.pass_rate.unwrap(), 2.0 / 3.0, 1e-12));
        let o = &t.overall;
        assert_eq!(
            (o.runs, o.passed, o.failed, o.undecided, o.pass_all),
            (10, 8, 1, 1, false)
        );
        assert_eq!((o.scenario_id, o.pass_rate), (None, Some(8.0 / 9.0)));
        let empty = tally(&[]).overall;
        assert!(!empty.pass_all && empty.pass_rate.is_none() && empty.interval.is_none());
    }

    #[test]
    fn baseline_comparison_regressed_unchanged_improved() {
        let check = |current, baseline| {
            let report = gate(
                &refund(current),
                Some(&refund(baseline)),
                &GateOptions::default(),
            );
            (report.verdict, report.scenarios[0].change, report)
        };
        let (verdict, change, report) = check([3, 7, 0], [10, 0, 0]);
        assert_eq!((verdict, change), (V::Fail, Change::Regressed));
        let reason = "\"refund\" regressed: 3/10 passed, baseline 10/10 (one-sided Fisher exact p = 0.0015 < 0.05)";
        assert_eq!(report.reasons, [reason]);
        // One flaky run is no evidence of a regression, and with a baseline it does not gate.
        let (verdict, change, report) = check([9, 1, 0], [10, 0, 0]);
        assert_eq!((verdict, change), (V::Pass, Change::Unchanged));
        assert!(close(report.scenarios[0].p_value.unwrap(), 0.5, 1e-12));
        assert_eq!(check([10, 0, 0], [3, 7, 0]).1, Change::Improved);
        // A baseline that never decided the scenario has nothing to compare with: then every
        // run must pass, as without a baseline.
        let (verdict, change, report) = check([3, 7, 0], [0, 0, 4]);
        assert_eq!(
            (verdict, change, report.scenarios[0].p_value),
            (V::Fail, Change::NoBaseline, None)
        );
        assert_eq!(
            report.reasons,
            ["\"refund\" failed 7 of 10 runs (not in the baseline)."]
        );
        assert_eq!(check([10, 0, 0], [0, 0, 4]).0, V::Pass);
        assert_eq!(
            report.scenarios[0].baseline.as_ref().map(|b| b.undecided),
            Some(4)
        );
    }

    #[test]
    fn default_gate_is_everything_passed() {
        let report = gate(&refund([10, 0, 0]), None, &GateOptions::default());
        assert_eq!((report.verdict, report.verdict.exit_code()), (V::Pass, 0));
        assert!(report.reasons.is_empty() && report.scenarios[0].change == Change::NoBaseline);
        let report = gate(&refund([9, 1, 0]), None, &GateOptions::default());
        assert_eq!((report.verdict, report.verdict.exit_code()), (V::Fail, 1));
        assert_eq!(report.reasons, ["\"refund\" failed 1 of 10 runs."]);
    }

    #[test]
    fn quarantined_scenarios_are_reported_but_never_gate() {
        let mut all = runs(1, "refund", false, [5, 0, 0]);
        all.extend(runs(2, "flaky", true, [1, 2, 1]));
        let current = tally(&all);
        assert_eq!((current.overall.runs, current.overall.pass_all), (5, true));
        let baseline = tally(&runs(2, "flaky", true, [10, 0, 0]));
        for baseline in [None, Some(&baseline)] {
            let report = gate(&current, baseline, &GateOptions::default());
            assert_eq!((report.verdict, report.overall.runs), (V::Pass, 5));
            assert!(report.scenarios[1].quarantined && report.reasons.is_empty());
        }
        let report = gate(&current, Some(&baseline), &GateOptions::default());
        assert_eq!(report.scenarios[1].change, Change::Regressed);
        // Only quarantined runs: nothing to gate on.
        let quarantined = tally(&runs(2, "flaky", true, [4, 0, 0]));
        assert_eq!(
            gate(&quarantined, None, &GateOptions::default()).verdict,
            V::Undecided
        );
    }

    #[test]
    fn undecided_runs_make_the_gate_undecided() {
        let mut all = runs(1, "refund", false, [8, 0, 2]);
        all.extend(runs(2, "greeting", false, [5, 0, 0]));
        let report = gate(&tally(&all), None, &GateOptions::default());
        assert_eq!(
            (report.verdict, report.verdict.exit_code()),
            (V::Undecided, 2)
        );
        assert_eq!(report.reasons.len(), 1);
        assert!(
            report.reasons[0].starts_with("\"refund\": 2 of 10 runs undecided"),
            "{:?}",
            report.reasons
        );
        assert_eq!(
            gate(&tally(&[]), None, &GateOptions::default()).verdict,
            V::Undecided
        );
        // A definite failure is a failure even beside undecided runs; both are reported.
        all.extend(runs(3, "transfer", false, [0, 5, 0]));
        let report = gate(&tally(&all), None, &GateOptions::default());
        assert_eq!(report.verdict, V::Fail);
        assert_eq!(report.reasons.len(), 2, "{:?}", report.reasons);
    }

    #[test]
    fn min_pass_rate_gates_the_overall_rate() {
        let mut all = runs(1, "refund", false, [9, 1, 0]);
        all.extend(runs(2, "greeting", false, [8, 2, 0]));
        let current = tally(&all);
        let at = |min| GateOptions {
            min_pass_rate: Some(min),
            ..GateOptions::default()
        };
        assert_eq!(gate(&current, None, &at(0.85)).verdict, V::Pass);
        let report = gate(&current, None, &at(0.9));
        assert_eq!((report.verdict, report.min_pass_rate), (V::Fail, Some(0.9)));
        assert_eq!(
            report.reasons,
            ["Overall pass rate 85.0 % (17/20) is below the minimum 90.0 %."]
        );
    }
}
