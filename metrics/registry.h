#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace joule::metrics {

// Label pairs of one sample, in the order given.
using Labels = std::vector<std::pair<std::string, std::string>>;

// Builds Prometheus text exposition format (version 0.0.4): one `# HELP`
// and `# TYPE` per family, then its samples. Families come out in the
// order first declared. Label values are escaped (\\, \", \n). Not
// thread-safe; one per scrape.
class Exposition {
 public:
  // Declares a family (type: counter, gauge, histogram); again with the
  // same name is a no-op.
  void Family(const std::string& name, const std::string& type,
              const std::string& help);
  // A sample of a declared family; `suffix` for histogram series
  // (_bucket, _sum, _count).
  void Sample(const std::string& family, const Labels& labels, double value,
              const std::string& suffix = "");
  std::string Text() const;

 private:
  struct Fam {
    std::string type, help;
    std::vector<std::string> lines;
  };
  std::vector<std::string> order_;
  std::map<std::string, Fam> families_;
};

// A monotonically increasing count. Thread-safe (atomic).
class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Observations in fixed cumulative buckets (upper bounds in seconds).
// Thread-safe (mu_).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  // Cumulative counts per bound (+Inf last), sum, count.
  void Snapshot(std::vector<uint64_t>* cumulative, double* sum,
                uint64_t* count) const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  mutable absl::Mutex mu_;
  std::vector<uint64_t> counts_ ABSL_GUARDED_BY(mu_);  // per bucket, + Inf
  double sum_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

// Latency buckets from 100 µs to 10 s.
std::vector<double> LatencyBuckets();

// Owns the counters and histograms of a process, by family and labels, and
// the collectors that add gauges at scrape time. Metrics are created on
// first use and live as long as the registry (pointers stay valid).
// Thread-safe (mu_; the metrics themselves are thread-safe).
class Registry {
 public:
  Counter* GetCounter(const std::string& name, const std::string& help,
                      const Labels& labels);
  Histogram* GetHistogram(const std::string& name, const std::string& help,
                          const Labels& labels,
                          const std::vector<double>& bounds = LatencyBuckets());
  // Runs at every scrape, after the counters and histograms are written.
  void AddCollector(std::function<void(Exposition*)> collector);
  std::string Render() const;

 private:
  struct CounterFamily {
    std::string help;
    std::map<Labels, std::unique_ptr<Counter>> series;
  };
  struct HistogramFamily {
    std::string help;
    std::map<Labels, std::unique_ptr<Histogram>> series;
  };
  mutable absl::Mutex mu_;
  std::map<std::string, CounterFamily> counters_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, HistogramFamily> histograms_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void(Exposition*)>> collectors_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace joule::metrics
