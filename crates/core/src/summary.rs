//! Metric results aggregated over many calls: how many, the pass rate, average, p50, p90.

use serde::Serialize;
use serde_json::Value;
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::OutputType;

/// One metric aggregated over a time range.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MetricSummary {
    pub metric_id: i64,
    pub metric_name: String,
    pub output: OutputType,
    /// Evaluations with a value.
    pub count: usize,
    /// Evaluations without one (not computable, skipped, errors).
    pub without_value: usize,
    /// Share of evaluations with a pass/fail that passed.
    pub pass_rate: Option<f64>,
    pub avg: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
}

/// One evaluation, as a summary counts it.
pub struct SummaryEntry {
    pub metric_id: i64,
    pub metric_name: String,
    pub output: OutputType,
    pub value: Option<Value>,
    pub passed: Option<bool>,
}

/// Percentile `q` (0–100) of sorted samples, by linear interpolation between the closest ranks
/// (numpy's default): rank `h = (n − 1)·q/100`, value `x[⌊h⌋] + (h − ⌊h⌋)·(x[⌈h⌉] − x[⌊h⌋])`.
/// `None` without samples.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let h = (n - 1) as f64 * q / 100.0;
    let lo = (h.floor() as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// Equal-width bins over the values' range, each `(low, high, count)`; a value on an inner
/// edge counts in the bin above it, and the last bin includes its top. Values that are not
/// finite are left out; equal values make one bin.
pub fn histogram(values: &[f64], bins: usize) -> Vec<(f64, f64, usize)> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (Some(lo), Some(hi)) = (
        finite.iter().copied().reduce(f64::min),
        finite.iter().copied().reduce(f64::max),
    ) else {
        return Vec::new();
    };
    if hi - lo < f64::EPSILON * hi.abs().max(1.0) || bins <= 1 {
        return vec![(lo, hi, finite.len())];
    }
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for v in finite {
        let k = (((v - lo) / width).floor() as usize).min(bins - 1);
        counts[k] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(k, n)| (lo + k as f64 * width, lo + (k + 1) as f64 * width, n))
        .collect()
}

/// Aggregates evaluations ordered by metric id into one summary per metric.
pub fn summarize(entries: impl IntoIterator<Item = SummaryEntry>) -> Vec<MetricSummary> {
    struct Acc {
        summary: MetricSummary,
        numbers: Vec<f64>,
        judged: usize,
        passed: usize,
    }
    let mut out: Vec<Acc> = Vec::new();
    for entry in entries {
        let acc = match out.last_mut() {
            Some(acc) if acc.summary.metric_id == entry.metric_id => acc,
            _ => {
                out.push(Acc {
                    summary: MetricSummary {
                        metric_id: entry.metric_id,
                        metric_name: entry.metric_name,
                        output: entry.output,
                        count: 0,
                        without_value: 0,
                        pass_rate: None,
                        avg: None,
                        p50: None,
                        p90: None,
                    },
                    numbers: Vec::new(),
                    judged: 0,
                    passed: 0,
                });
                out.last_mut().expect("pushed above")
            }
        };
        match entry.value {
            Some(v) => {
                acc.summary.count += 1;
                if let Some(n) = v.as_f64() {
                    acc.numbers.push(n);
                }
            }
            None => acc.summary.without_value += 1,
        }
        if let Some(p) = entry.passed {
            acc.judged += 1;
            acc.passed += usize::from(p);
        }
    }
    out.into_iter()
        .map(|mut acc| {
            let s = &mut acc.summary;
            acc.numbers.sort_by(f64::total_cmp);
            if !acc.numbers.is_empty() {
                s.avg = Some(acc.numbers.iter().sum::<f64>() / acc.numbers.len() as f64);
            }
            s.p50 = percentile(&acc.numbers, 50.0);
            s.p90 = percentile(&acc.numbers, 90.0);
            s.pass_rate = (acc.judged > 0).then(|| acc.passed as f64 / acc.judged as f64);
            acc.summary
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries_aggregate_per_metric() {
        let entry = |id: i64, value: Option<Value>, passed: Option<bool>| SummaryEntry {
            metric_id: id,
            metric_name: format!("m{id}"),
            output: OutputType::Numeric,
            value,
            passed,
        };
        let out = summarize([
            entry(1, Some(json!(1.0)), Some(true)),
            entry(1, Some(json!(3.0)), Some(false)),
            entry(1, None, None),
            entry(2, Some(json!(true)), Some(true)),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].count, out[0].without_value), (2, 1));
        assert_eq!(out[0].avg, Some(2.0));
        assert_eq!(out[0].pass_rate, Some(0.5));
        assert_eq!(out[1].avg, None);
        assert_eq!(percentile(&[], 50.0), None);
    }
}

#[cfg(test)]
mod histogram_tests {
    use super::histogram;

    #[test]
    fn values_fall_in_equal_bins_the_top_in_the_last() {
        let bins = histogram(&[0.0, 0.5, 1.0, 1.0, 2.0, f64::NAN], 4);
        assert_eq!(
            bins,
            [(0.0, 0.5, 1), (0.5, 1.0, 1), (1.0, 1.5, 2), (1.5, 2.0, 1)]
        );
        assert_eq!(histogram(&[3.0, 3.0], 10), [(3.0, 3.0, 2)]);
        assert!(histogram(&[], 10).is_empty());
    }
}
