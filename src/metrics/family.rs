//! Builds Prometheus metric families by hand (the prometheus crate's plain model) for values
//! that are read from live state at scrape time rather than kept in registered collectors.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use crate::stats::{HistogramSnapshot, LATENCY_BUCKETS};

/// One family being filled: a name, help text, a type and its samples.
pub struct Family {
    inner: MetricFamily,
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect()
}

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Family {
        let mut inner = MetricFamily::default();
        inner.set_name(name.to_string());
        inner.set_help(help.to_string());
        inner.set_field_type(kind);
        Family { inner }
    }

    pub fn gauge(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::GAUGE)
    }

    pub fn counter(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::COUNTER)
    }

    pub fn histogram(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::HISTOGRAM)
    }

    /// Adds one sample; the value is read as a gauge or counter by the family's type.
    pub fn add(&mut self, pairs: &[(&str, &str)], value: f64) -> &mut Family {
        let mut m = Metric::default();
        m.set_label(labels(pairs));
        if self.inner.get_field_type() == MetricType::COUNTER {
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        self.inner.mut_metric().push(m);
        self
    }

    /// Adds one histogram sample set from a [`HistogramSnapshot`] over [`LATENCY_BUCKETS`].
    pub fn add_histogram(&mut self, pairs: &[(&str, &str)], snap: &HistogramSnapshot) {
        let mut h = Histogram::default();
        h.set_sample_count(snap.count);
        h.set_sample_sum(snap.sum_seconds);
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&snap.cumulative)
            .map(|(&bound, &count)| {
                let mut b = Bucket::default();
                b.set_upper_bound(bound);
                b.set_cumulative_count(count);
                b
            })
            .collect();
        h.set_bucket(buckets);
        let mut m = Metric::default();
        m.set_label(labels(pairs));
        m.set_histogram(h);
        self.inner.mut_metric().push(m);
    }

    pub fn finish(self) -> MetricFamily {
        self.inner
    }
}

/// Collects finished families; empty ones are dropped (as `Registry::gather` does, and the
/// text encoder refuses them).
#[derive(Default)]
pub struct Families(pub Vec<MetricFamily>);

impl Families {
    pub fn push(&mut self, f: Family) {
        let f = f.finish();
        if !f.get_metric().is_empty() {
            self.0.push(f);
        }
    }

    /// A label-less gauge in one call.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        let mut f = Family::gauge(name, help);
        f.add(&[], value);
        self.push(f);
    }
}
