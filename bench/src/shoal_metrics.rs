//! Shoal's own view of a run: the cache and origin counters of `GET /metrics` (named in
//! `proxy::metrics`), scraped from every target before the clock starts and after it
//! stops, and summed over the targets, so a region reports as one.
//!
//! A target counts as Shoal when `/metrics` answers 200 with `shoal_` series; any other
//! registry (Distribution answers 404 there) simply has no deltas. Scrapes are anonymous,
//! as Shoal serves `/metrics` without sign-in.

use serde::Serialize;

/// The series compared, as (JSON field, Prometheus series).
const SERIES: [(&str, &str); 4] = [
    ("cache_hits", "shoal_cache_hits_total"),
    ("cache_misses", "shoal_cache_misses_total"),
    ("origin_fetches", "shoal_origin_fetches_total"),
    ("origin_bytes", "shoal_blob_bytes_total{source=\"origin\"}"),
];

/// The counters of every target that is Shoal, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// One entry per target: `None` for a target that is not Shoal.
    values: Vec<Option<[f64; 4]>>,
}

/// How much the counters grew during the run, summed over the Shoal targets.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ShoalDeltas {
    /// How many targets answered with Shoal metrics both times.
    pub nodes: usize,
    pub cache_hits: f64,
    pub cache_misses: f64,
    pub origin_fetches: f64,
    pub origin_bytes: f64,
}

/// Scrapes every target's `/metrics`.
pub async fn scrape(urls: &[String]) -> Snapshot {
    let http = crate::tls::client()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    let mut values = Vec::with_capacity(urls.len());
    for url in urls {
        values.push(scrape_one(&http, url).await);
    }
    Snapshot { values }
}

async fn scrape_one(http: &reqwest::Client, url: &str) -> Option<[f64; 4]> {
    let resp = http.get(format!("{url}/metrics")).send().await.ok()?;
    if resp.status() != 200 {
        return None;
    }
    let text = resp.text().await.ok()?;
    if !text.contains("shoal_") {
        return None;
    }
    Some(SERIES.map(|(_, series)| sum_series(&text, series)))
}

/// The growth from `before` to `after`; `None` when no target is Shoal.
pub fn delta(before: &Snapshot, after: &Snapshot) -> Option<ShoalDeltas> {
    let mut sums = [0.0; 4];
    let mut nodes = 0;
    for (b, a) in before.values.iter().zip(&after.values) {
        if let (Some(b), Some(a)) = (b, a) {
            nodes += 1;
            for i in 0..4 {
                sums[i] += a[i] - b[i];
            }
        }
    }
    (nodes > 0).then_some(ShoalDeltas {
        nodes,
        cache_hits: sums[0],
        cache_misses: sums[1],
        origin_fetches: sums[2],
        origin_bytes: sums[3],
    })
}

/// Sums the samples of `text` (Prometheus text format) that `series` names: the name must
/// match and every label given must be on the sample. An absent series reads as 0.
pub fn sum_series(text: &str, series: &str) -> f64 {
    let (name, want) = parse_series(series);
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let end = match l.find('{') {
                Some(_) => l.find('}')? + 1,
                None => l.find(char::is_whitespace)?,
            };
            let (n, labels) = parse_series(&l[..end]);
            let value = l[end..].split_whitespace().next()?.parse::<f64>().ok()?;
            (n == name && want.iter().all(|w| labels.contains(w))).then_some(value)
        })
        .sum()
}

fn parse_series(s: &str) -> (&str, Vec<(String, String)>) {
    let Some((name, rest)) = s.split_once('{') else {
        return (s.trim(), Vec::new());
    };
    let labels = rest
        .trim_end_matches('}')
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect();
    (name.trim(), labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP shoal_cache_hits_total Blob reads answered from this node's disk cache
# TYPE shoal_cache_hits_total counter
shoal_cache_hits_total 12
shoal_blob_bytes_total{source="cache"} 100
shoal_blob_bytes_total{source="origin"} 2048
shoal_http_requests_total{method="GET",status="200"} 5
shoal_http_requests_total{method="PUT",status="201"} 2
"#;

    #[test]
    fn series_are_summed_by_name_and_labels() {
        let check =
            |series: &str, want: f64| assert_eq!(sum_series(TEXT, series), want, "{series}");
        check("shoal_cache_hits_total", 12.0);
        check("shoal_blob_bytes_total{source=\"origin\"}", 2048.0);
        check("shoal_blob_bytes_total", 2148.0);
        check("shoal_http_requests_total{method=\"GET\"}", 5.0);
        check("shoal_cache_misses_total", 0.0);
    }

    #[test]
    fn deltas_sum_shoal_targets_only() {
        let before = Snapshot {
            values: vec![Some([1.0, 2.0, 3.0, 4.0]), None, Some([0.0; 4])],
        };
        let after = Snapshot {
            values: vec![Some([2.0, 4.0, 6.0, 8.0]), None, Some([1.0; 4])],
        };
        let d = delta(&before, &after).unwrap();
        assert_eq!(
            (
                d.nodes,
                d.cache_hits,
                d.cache_misses,
                d.origin_fetches,
                d.origin_bytes
            ),
            (2, 2.0, 3.0, 4.0, 5.0)
        );
        let none = Snapshot { values: vec![None] };
        assert_eq!(delta(&none, &none), None);
    }
}
