#include "metrics/registry.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace joule::metrics {
namespace {

std::string Escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  return absl::StrFormat("%.9g", v);
}

}  // namespace

void Exposition::Family(const std::string& name, const std::string& type,
                        const std::string& help) {
  if (families_.contains(name)) return;
  order_.push_back(name);
  families_[name] = Fam{type, help, {}};
}

void Exposition::Sample(const std::string& family, const Labels& labels,
                        double value, const std::string& suffix) {
  auto it = families_.find(family);
  if (it == families_.end()) return;
  std::string line = family + suffix;
  if (!labels.empty()) {
    line += "{";
    for (size_t i = 0; i < labels.size(); ++i) {
      absl::StrAppend(&line, i > 0 ? "," : "", labels[i].first, "=\"",
                      Escape(labels[i].second), "\"");
    }
    line += "}";
  }
  absl::StrAppend(&line, " ", Number(value));
  it->second.lines.push_back(std::move(line));
}

std::string Exposition::Text() const {
  std::string out;
  for (const std::string& name : order_) {
    const Fam& f = families_.at(name);
    absl::StrAppend(&out, "# HELP ", name, " ", f.help, "\n# TYPE ", name, " ",
                    f.type, "\n");
    for (const std::string& l : f.lines) absl::StrAppend(&out, l, "\n");
  }
  return out;
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  absl::MutexLock lock(&mu_);
  counts_[i]++;
  sum_ += value;
  count_++;
}

void Histogram::Snapshot(std::vector<uint64_t>* cumulative, double* sum,
                         uint64_t* count) const {
  absl::MutexLock lock(&mu_);
  cumulative->assign(counts_.size(), 0);
  uint64_t running = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    running += counts_[i];
    (*cumulative)[i] = running;
  }
  *sum = sum_;
  *count = count_;
}

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

Counter* Registry::GetCounter(const std::string& name, const std::string& help,
                              const Labels& labels) {
  absl::MutexLock lock(&mu_);
  CounterFamily& f = counters_[name];
  f.help = help;
  auto& c = f.series[labels];
  if (c == nullptr) c = std::make_unique<Counter>();
  return c.get();
}

Histogram* Registry::GetHistogram(const std::string& name,
                                  const std::string& help, const Labels& labels,
                                  const std::vector<double>& bounds) {
  absl::MutexLock lock(&mu_);
  HistogramFamily& f = histograms_[name];
  f.help = help;
  auto& h = f.series[labels];
  if (h == nullptr) h = std::make_unique<Histogram>(bounds);
  return h.get();
}

void Registry::AddCollector(std::function<void(Exposition*)> collector) {
  absl::MutexLock lock(&mu_);
  collectors_.push_back(std::move(collector));
}

std::string Registry::Render() const {
  Exposition e;
  std::vector<std::function<void(Exposition*)>> collectors;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, f] : counters_) {
      e.Family(name, "counter", f.help);
      for (const auto& [labels, c] : f.series) {
        e.Sample(name, labels, static_cast<double>(c->value()));
      }
    }
    for (const auto& [name, f] : histograms_) {
      e.Family(name, "histogram", f.help);
      for (const auto& [labels, h] : f.series) {
        std::vector<uint64_t> cum;
        double sum = 0;
        uint64_t count = 0;
        h->Snapshot(&cum, &sum, &count);
        for (size_t i = 0; i < cum.size(); ++i) {
          Labels l = labels;
          l.emplace_back("le", i < h->bounds().size() ? Number(h->bounds()[i])
                                                      : std::string("+Inf"));
          e.Sample(name, l, static_cast<double>(cum[i]), "_bucket");
        }
        e.Sample(name, labels, sum, "_sum");
        e.Sample(name, labels, static_cast<double>(count), "_count");
      }
    }
    collectors = collectors_;
  }
  for (const auto& c : collectors) c(&e);
  return e.Text();
}

}  // namespace joule::metrics
