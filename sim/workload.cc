#include "sim/workload.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "cli/format.h"
#include "common/proto_time.h"
#include "common/units.h"

namespace joule::sim {
namespace {

using scheduler::ServiceClass;

// Iterates the lines of a text (without '\n' / '\r'), numbering from 1.
class Lines {
 public:
  explicit Lines(absl::string_view text) : text_(text) {}
  bool Next(absl::string_view* line) {
    if (pos_ >= text_.size()) return false;
    size_t end = text_.find('\n', pos_);
    if (end == absl::string_view::npos) end = text_.size();
    absl::string_view l = text_.substr(pos_, end - pos_);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    pos_ = end + 1;
    ++number_;
    *line = l;
    return true;
  }
  int number() const { return number_; }

 private:
  absl::string_view text_;
  size_t pos_ = 0;
  int number_ = 0;
};

absl::Status LineError(absl::string_view file, int line,
                       absl::string_view column, absl::string_view rule) {
  return absl::InvalidArgumentError(
      absl::StrCat(file, ":", line, ": ", column, ": ", rule));
}

bool ParseSeconds(absl::string_view s, int64_t* ms) {
  double v = 0;
  if (!absl::SimpleAtod(s, &v) || !std::isfinite(v) || v < 0 || v > 1e13) {
    return false;
  }
  *ms = std::llround(v * 1000.0);
  return true;
}

absl::StatusOr<ServiceClass> ParseClass(absl::string_view s) {
  const std::string l = absl::AsciiStrToLower(s);
  if (l.empty() || l == "on-demand" || l == "ondemand" || l == "on_demand") {
    return ServiceClass::kOnDemand;
  }
  if (l == "reserved") return ServiceClass::kReserved;
  if (l == "spot") return ServiceClass::kSpot;
  return absl::InvalidArgumentError(
      absl::StrCat("\"", s, "\" is not reserved, on-demand or spot"));
}

}  // namespace

void ImportStats::Skip(const std::string& reason) {
  for (auto& [r, n] : skipped) {
    if (r == reason) {
      ++n;
      return;
    }
  }
  skipped.emplace_back(reason, 1);
}

uint32_t Workload::TenantIndex(absl::string_view name) {
  for (size_t i = tenants.size(); i-- > 0;) {
    if (tenants[i] == name) return static_cast<uint32_t>(i);
  }
  tenants.emplace_back(name);
  return static_cast<uint32_t>(tenants.size() - 1);
}

void Workload::SortBySubmit() {
  std::stable_sort(jobs.begin(), jobs.end(),
                   [](const SimJobSpec& a, const SimJobSpec& b) {
                     return a.submit_ms < b.submit_ms;
                   });
}

void Workload::SpeedUpArrivals(double factor) {
  if (factor <= 0 || factor == 1) return;
  for (SimJobSpec& j : jobs) {
    j.submit_ms =
        static_cast<int64_t>(static_cast<double>(j.submit_ms) / factor);
  }
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ------------------------------------------------------------ canonical ----

absl::StatusOr<Workload> ParseCanonicalCsv(absl::string_view text,
                                           absl::string_view filename) {
  Workload w;
  absl::flat_hash_map<std::string, uint32_t> tenant_index;
  Lines lines(text);
  absl::string_view line;
  enum Col {
    kId,
    kTenant,
    kSubmit,
    kDuration,
    kGpn,
    kNodes,
    kModel,
    kClass,
    kPriority,
    kPower,
    kMinPower,
    kLoad,
    kNumCols
  };
  const std::vector<std::string> names = absl::StrSplit(kCanonicalHeader, ',');
  int pos[kNumCols];
  std::fill(pos, pos + kNumCols, -1);
  size_t width = 0;
  bool header = false;
  while (lines.Next(&line)) {
    const int n = lines.number();
    if (absl::StripAsciiWhitespace(line).empty() || line[0] == '#') continue;
    std::vector<absl::string_view> cols = absl::StrSplit(line, ',');
    if (!header) {
      header = true;
      width = cols.size();
      for (size_t i = 0; i < cols.size(); ++i) {
        const absl::string_view c = absl::StripAsciiWhitespace(cols[i]);
        auto it = std::find(names.begin(), names.end(), c);
        if (it == names.end()) {
          return LineError(filename, n, "header",
                           absl::StrCat("unknown column \"", c, "\"; want ",
                                        kCanonicalHeader));
        }
        pos[it - names.begin()] = static_cast<int>(i);
      }
      if (pos[kSubmit] < 0 || pos[kDuration] < 0) {
        return LineError(filename, n, "header",
                         "submit_time_s and duration_s are required");
      }
      continue;
    }
    ++w.stats.rows;
    if (cols.size() != width) {
      return LineError(filename, n, "row",
                       absl::StrCat("has ", cols.size(), " columns; want ",
                                    width, " (as the header)"));
    }
    auto get = [&](Col c) -> absl::string_view {
      return pos[c] < 0 ? absl::string_view()
                        : absl::StripAsciiWhitespace(cols[pos[c]]);
    };
    SimJobSpec j;
    j.id = get(kId).empty() ? absl::StrCat("job-", n) : std::string(get(kId));
    const std::string tenant =
        get(kTenant).empty() ? "default" : std::string(get(kTenant));
    auto [it, inserted] = tenant_index.try_emplace(tenant, w.tenants.size());
    if (inserted) w.tenants.push_back(tenant);
    j.tenant = it->second;
    if (!ParseSeconds(get(kSubmit), &j.submit_ms)) {
      return LineError(filename, n, "submit_time_s",
                       absl::StrCat("\"", get(kSubmit),
                                    "\" is not a number of seconds >= 0"));
    }
    if (!ParseSeconds(get(kDuration), &j.duration_ms) || j.duration_ms <= 0) {
      return LineError(filename, n, "duration_s",
                       absl::StrCat("\"", get(kDuration),
                                    "\" is not a number of seconds > 0"));
    }
    auto uint_col = [&](Col c, const char* name, uint32_t def, uint32_t max,
                        uint32_t* out) -> absl::Status {
      const absl::string_view v = get(c);
      if (v.empty()) {
        *out = def;
        return absl::OkStatus();
      }
      if (!absl::SimpleAtoi(v, out) || *out == 0 || *out > max) {
        return LineError(
            filename, n, name,
            absl::StrCat("\"", v, "\" is not an integer 1..", max));
      }
      return absl::OkStatus();
    };
    if (auto s = uint_col(kGpn, "gpus_per_node", 1, 64, &j.gpus_per_node);
        !s.ok()) {
      return s;
    }
    if (auto s = uint_col(kNodes, "nodes", 1, 100000, &j.nodes); !s.ok()) {
      return s;
    }
    j.gpu_model = std::string(get(kModel));
    auto cls = ParseClass(get(kClass));
    if (!cls.ok()) {
      return LineError(filename, n, "class", cls.status().message());
    }
    j.cls = *cls;
    if (!get(kPriority).empty() &&
        !absl::SimpleAtoi(get(kPriority), &j.priority)) {
      return LineError(
          filename, n, "priority",
          absl::StrCat("\"", get(kPriority), "\" is not an integer"));
    }
    for (auto [c, name, out] :
         {std::tuple{kPower, "power_w", &j.power_mw},
          std::tuple{kMinPower, "min_power_w", &j.min_power_mw}}) {
      if (get(c).empty()) continue;
      auto p = ParsePowerMw(get(c), name);
      if (!p.ok()) return LineError(filename, n, name, p.status().message());
      *out = *p;
    }
    if (!get(kLoad).empty()) {
      double l = 0;
      if (!absl::SimpleAtod(get(kLoad), &l) || !(l >= 0 && l <= 1)) {
        return LineError(
            filename, n, "load",
            absl::StrCat("\"", get(kLoad), "\" is not a number in [0, 1]"));
      }
      j.load = static_cast<float>(l);
    }
    w.jobs.push_back(std::move(j));
  }
  if (!header) {
    return absl::InvalidArgumentError(
        absl::StrCat(filename, ": empty; want the header ", kCanonicalHeader));
  }
  w.stats.jobs = static_cast<int64_t>(w.jobs.size());
  w.SortBySubmit();
  return w;
}

// -------------------------------------------------------- alibaba openb ----

absl::StatusOr<Workload> ParseAlibabaOpenb(absl::string_view text,
                                           absl::string_view filename) {
  static constexpr absl::string_view kHeader =
      "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
      "creation_time,deletion_time,scheduled_time";
  Workload w;
  Lines lines(text);
  absl::string_view line;
  bool header = false;
  while (lines.Next(&line)) {
    const int n = lines.number();
    if (line.empty()) continue;
    if (!header) {
      if (line != kHeader) {
        return LineError(filename, n, "header", absl::StrCat("want ", kHeader));
      }
      header = true;
      continue;
    }
    ++w.stats.rows;
    std::vector<absl::string_view> c = absl::StrSplit(line, ',');
    if (c.size() != 11) {
      return LineError(filename, n, "row",
                       absl::StrCat("has ", c.size(), " columns; want 11"));
    }
    uint32_t num_gpu = 0, gpu_milli = 0;
    if (!absl::SimpleAtoi(c[3], &num_gpu) || num_gpu > 64) {
      return LineError(filename, n, "num_gpu",
                       absl::StrCat("\"", c[3], "\" is not an integer 0..64"));
    }
    if (!c[4].empty() &&
        (!absl::SimpleAtoi(c[4], &gpu_milli) || gpu_milli > 1000)) {
      return LineError(
          filename, n, "gpu_milli",
          absl::StrCat("\"", c[4], "\" is not an integer 0..1000"));
    }
    int64_t creation = 0, deletion = 0, scheduled = 0;
    if (!ParseSeconds(c[8], &creation)) {
      return LineError(filename, n, "creation_time",
                       absl::StrCat("\"", c[8], "\" is not seconds >= 0"));
    }
    if (!ParseSeconds(c[9], &deletion)) {
      return LineError(filename, n, "deletion_time",
                       absl::StrCat("\"", c[9], "\" is not seconds >= 0"));
    }
    if (c[10].empty()) {
      w.stats.Skip("never scheduled in the trace (Pending)");
      continue;
    }
    if (!ParseSeconds(c[10], &scheduled)) {
      return LineError(filename, n, "scheduled_time",
                       absl::StrCat("\"", c[10], "\" is not seconds >= 0"));
    }
    if (num_gpu == 0) {
      w.stats.Skip("CPU-only pod (num_gpu 0)");
      continue;
    }
    if (deletion <= scheduled) {
      w.stats.Skip("zero duration");
      continue;
    }
    SimJobSpec j;
    j.id = std::string(c[0]);
    const std::string qos(c[6]);
    j.tenant =
        w.TenantIndex(absl::StrCat("openb-", absl::AsciiStrToLower(qos)));
    j.submit_ms = creation;
    j.duration_ms = deletion - scheduled;
    j.gpus_per_node = num_gpu;
    if (!c[5].empty()) {
      // The policy takes one model; the first of "A|B" is used.
      j.gpu_model = std::string(c[5].substr(0, c[5].find('|')));
    }
    j.cls = qos == "BE"           ? ServiceClass::kSpot
            : qos == "Guaranteed" ? ServiceClass::kReserved
                                  : ServiceClass::kOnDemand;
    if (num_gpu == 1 && gpu_milli > 0 && gpu_milli < 1000) {
      j.load_scale = static_cast<float>(gpu_milli) / 1000.0f;
    }
    w.jobs.push_back(std::move(j));
  }
  if (!header) {
    return absl::InvalidArgumentError(absl::StrCat(filename, ": empty"));
  }
  w.stats.jobs = static_cast<int64_t>(w.jobs.size());
  w.SortBySubmit();
  return w;
}

// ---------------------------------------------------------------- sacct ----

namespace {

bool ParseSlurmTime(absl::string_view s, absl::Time* t) {
  std::string err;
  return absl::ParseTime("%Y-%m-%dT%H:%M:%S", std::string(s),
                         absl::UTCTimeZone(), t, &err);
}

}  // namespace

absl::StatusOr<Workload> ParseSacct(absl::string_view text,
                                    absl::string_view filename) {
  static constexpr absl::string_view kHeader =
      "JobID|User|Account|Submit|Start|End|AllocTRES|Partition|QOS|State";
  Workload w;
  Lines lines(text);
  absl::string_view line;
  bool header = false;
  struct Raw {
    SimJobSpec spec;
    absl::Time submit;
  };
  std::vector<Raw> raw;
  while (lines.Next(&line)) {
    const int n = lines.number();
    if (line.empty()) continue;
    if (!header) {
      if (line != kHeader) {
        return LineError(filename, n, "header",
                         absl::StrCat("want ", kHeader,
                                      " (sacct -a -P -o JobID,User,Account,"
                                      "Submit,Start,End,AllocTRES,Partition,"
                                      "QOS,State)"));
      }
      header = true;
      continue;
    }
    std::vector<absl::string_view> c = absl::StrSplit(line, '|');
    if (c.size() != 10) {
      return LineError(
          filename, n, "row",
          absl::StrCat("has ", c.size(), " '|'-separated fields; want 10"));
    }
    if (c[0].empty()) return LineError(filename, n, "JobID", "empty");
    if (absl::StrContains(c[0], '.')) continue;  // job step
    ++w.stats.rows;
    absl::Time submit, start, end;
    if (!ParseSlurmTime(c[3], &submit)) {
      return LineError(
          filename, n, "Submit",
          absl::StrCat("\"", c[3], "\" is not YYYY-MM-DDTHH:MM:SS"));
    }
    if (c[4] == "Unknown" || c[4] == "None" || c[4].empty()) {
      w.stats.Skip("never started");
      continue;
    }
    if (!ParseSlurmTime(c[4], &start)) {
      return LineError(
          filename, n, "Start",
          absl::StrCat("\"", c[4], "\" is not YYYY-MM-DDTHH:MM:SS or Unknown"));
    }
    if (c[5] == "Unknown" || c[5] == "None" || c[5].empty()) {
      w.stats.Skip("not ended");
      continue;
    }
    if (!ParseSlurmTime(c[5], &end)) {
      return LineError(
          filename, n, "End",
          absl::StrCat("\"", c[5], "\" is not YYYY-MM-DDTHH:MM:SS or Unknown"));
    }
    uint32_t gpus = 0, nodes = 1;
    std::string model;
    for (absl::string_view kv : absl::StrSplit(c[6], ',', absl::SkipEmpty())) {
      std::pair<absl::string_view, absl::string_view> p =
          absl::StrSplit(kv, absl::MaxSplits('=', 1));
      if (p.first == "node") {
        if (!absl::SimpleAtoi(p.second, &nodes) || nodes == 0) {
          return LineError(filename, n, "AllocTRES",
                           absl::StrCat("node=\"", p.second,
                                        "\" is not a positive integer"));
        }
      } else if (absl::StartsWith(p.first, "gres/gpu")) {
        absl::string_view type = p.first.substr(8);
        if (!type.empty() && type[0] != ':') continue;  // gres/gpumem etc.
        uint32_t g = 0;
        if (!absl::SimpleAtoi(p.second, &g)) {
          return LineError(
              filename, n, "AllocTRES",
              absl::StrCat(p.first, "=\"", p.second, "\" is not an integer"));
        }
        if (!type.empty()) {
          model = absl::AsciiStrToUpper(type.substr(1));
          gpus = std::max(gpus, g);
        } else {
          gpus = std::max(gpus, g);
        }
      }
    }
    if (gpus == 0) {
      w.stats.Skip("no gres/gpu in AllocTRES");
      continue;
    }
    if (end <= start) {
      w.stats.Skip("zero duration");
      continue;
    }
    Raw r;
    r.submit = submit;
    SimJobSpec& j = r.spec;
    j.id = std::string(c[0]);
    j.tenant = w.TenantIndex(c[2].empty() ? c[1] : c[2]);
    j.duration_ms = absl::ToInt64Milliseconds(end - start);
    j.nodes = nodes;
    j.gpus_per_node = (gpus + nodes - 1) / nodes;
    if (j.gpus_per_node > 64) {
      return LineError(filename, n, "AllocTRES",
                       absl::StrCat(gpus, " GPUs on ", nodes,
                                    " node(s): more than 64 per node"));
    }
    j.gpu_model = model;
    const std::string qos = absl::AsciiStrToLower(c[8]);
    if (absl::StrContains(qos, "spot") || absl::StrContains(qos, "scav") ||
        absl::StrContains(qos, "preempt") || absl::StrContains(qos, "low") ||
        absl::StrContains(qos, "standby")) {
      j.cls = ServiceClass::kSpot;
    } else if (absl::StrContains(qos, "reserved") ||
               absl::StrContains(qos, "contract")) {
      j.cls = ServiceClass::kReserved;
    }
    raw.push_back(std::move(r));
  }
  if (!header) {
    return absl::InvalidArgumentError(absl::StrCat(filename, ": empty"));
  }
  absl::Time first = absl::InfiniteFuture();
  for (const Raw& r : raw) first = std::min(first, r.submit);
  for (Raw& r : raw) {
    r.spec.submit_ms = absl::ToInt64Milliseconds(r.submit - first);
    w.jobs.push_back(std::move(r.spec));
  }
  w.stats.jobs = static_cast<int64_t>(w.jobs.size());
  w.SortBySubmit();
  return w;
}

// ----------------------------------------------------------- cap events ----

absl::StatusOr<std::vector<CapEvent>> ParseCapEvents(
    absl::string_view text, absl::string_view filename,
    const SimCluster& cluster) {
  absl::flat_hash_map<std::string, int> index;
  for (size_t i = 0; i < cluster.domains.size(); ++i) {
    index[cluster.domains[i].name] = static_cast<int>(i);
  }
  std::vector<CapEvent> out;
  Lines lines(text);
  absl::string_view line;
  while (lines.Next(&line)) {
    const int n = lines.number();
    if (absl::StripAsciiWhitespace(line).empty() || line[0] == '#') continue;
    std::vector<absl::string_view> c = absl::StrSplit(line, ',');
    for (auto& s : c) s = absl::StripAsciiWhitespace(s);
    if (out.empty() && c.size() == 3 && c[0] == "time_s") continue;  // header
    if (c.size() != 3) {
      return LineError(filename, n, "row",
                       absl::StrCat("has ", c.size(),
                                    " columns; want time_s,domain,new_cap"));
    }
    CapEvent e;
    if (!ParseSeconds(c[0], &e.time_ms)) {
      return LineError(filename, n, "time_s",
                       absl::StrCat("\"", c[0], "\" is not seconds >= 0"));
    }
    auto it = index.find(std::string(c[1]));
    if (it == index.end()) {
      return LineError(filename, n, "domain",
                       absl::StrCat("\"", c[1], "\" is not a domain"));
    }
    e.domain = it->second;
    auto cap = ParsePowerMw(c[2], "new_cap");
    if (!cap.ok()) {
      return LineError(filename, n, "new_cap", cap.status().message());
    }
    e.cap_mw = *cap;
    out.push_back(e);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const CapEvent& a, const CapEvent& b) {
                     return a.time_ms < b.time_ms;
                   });
  return out;
}

// ---------------------------------------------------------------- usage ----

absl::StatusOr<std::vector<v1::UsageEvent>> ParseUsageEvents(
    absl::string_view text, absl::string_view filename) {
  std::vector<v1::UsageEvent> out;
  Lines lines(text);
  absl::string_view line;
  while (lines.Next(&line)) {
    const int n = lines.number();
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    if (n == 1 && absl::StartsWith(line, "timestamp,")) continue;
    auto e = cli::ParseUsageCsvLine(line, n);
    if (!e.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(filename, ": ", e.status().message()));
    }
    out.push_back(*std::move(e));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const v1::UsageEvent& a, const v1::UsageEvent& b) {
                     return FromProtoTime(a.time()) < FromProtoTime(b.time());
                   });
  return out;
}

// -------------------------------------------------------------- loadcdf ----

absl::StatusOr<LoadCdf> LoadCdf::Parse(absl::string_view text,
                                       absl::string_view filename,
                                       int64_t tdp_mw, int64_t idle_mw) {
  LoadCdf cdf;
  Lines lines(text);
  absl::string_view line;
  while (lines.Next(&line)) {
    const int n = lines.number();
    if (line.empty() || absl::StartsWith(line, "gpu_power_w")) continue;
    std::vector<absl::string_view> c = absl::StrSplit(line, ',');
    double w = 0, pct = 0;
    if (c.size() != 2 || !absl::SimpleAtod(c[0], &w) ||
        !absl::SimpleAtod(c[1], &pct) || pct < 0 || pct > 100) {
      return LineError(filename, n, "row",
                       "want gpu_power_w,cdf_percent (percent 0..100)");
    }
    if (!cdf.points_.empty() && pct < cdf.points_.back().first * 100) {
      return LineError(filename, n, "cdf_percent", "must not decrease");
    }
    const double load = std::clamp(
        (w * 1000.0 - static_cast<double>(idle_mw)) /
            static_cast<double>(std::max<int64_t>(1, tdp_mw - idle_mw)),
        0.0, 1.0);
    cdf.points_.emplace_back(pct / 100.0, load);
  }
  if (cdf.points_.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(filename, ": needs at least two CDF points"));
  }
  return cdf;
}

double LoadCdf::Sample(double u) const {
  if (u <= points_.front().first) return points_.front().second;
  if (u >= points_.back().first) return points_.back().second;
  auto it = std::lower_bound(
      points_.begin(), points_.end(), u,
      [](const std::pair<double, double>& p, double v) { return p.first < v; });
  const auto& hi = *it;
  const auto& lo = *(it - 1);
  if (hi.first <= lo.first) return hi.second;
  return lo.second +
         (hi.second - lo.second) * (u - lo.first) / (hi.first - lo.first);
}

double LoadCdf::Mean() const {
  double m = 0;
  for (int i = 0; i < 1000; ++i) m += Sample((i + 0.5) / 1000.0);
  return m / 1000.0;
}

// ------------------------------------------------------------ synthetic ----

Workload SyntheticWorkload(int64_t jobs, int64_t total_gpus,
                           uint32_t gpus_per_node, double utilization,
                           uint32_t tenants, uint64_t seed) {
  Workload w;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  for (uint32_t t = 0; t < tenants; ++t) {
    w.tenants.push_back(absl::StrFormat("tenant-%03d", t));
  }
  w.jobs.reserve(jobs);
  // Mean GPU-seconds per job, to size the arrival rate.
  const double log_lo = std::log(60.0), log_hi = std::log(8 * 3600.0);
  const double mean_duration =
      (std::exp(log_hi) - std::exp(log_lo)) / (log_hi - log_lo);
  static constexpr uint32_t kShapes[] = {1, 1, 1, 2, 2, 4, 8, 8};
  double mean_gpus = 0;
  for (uint32_t s : kShapes) mean_gpus += std::min(s, gpus_per_node);
  mean_gpus /= std::size(kShapes);
  mean_gpus = 0.95 * mean_gpus + 0.05 * 5.0 * gpus_per_node;  // gangs
  const double rate = utilization * static_cast<double>(total_gpus) /
                      (mean_gpus * mean_duration);  // jobs per second
  double t = 0;
  for (int64_t i = 0; i < jobs; ++i) {
    SimJobSpec j;
    j.id = absl::StrCat("j", i);
    t += -std::log(1.0 - u01(rng)) / rate;
    j.submit_ms = static_cast<int64_t>(t * 1000.0);
    j.duration_ms = static_cast<int64_t>(
        std::exp(log_lo + (log_hi - log_lo) * u01(rng)) * 1000.0);
    j.tenant = static_cast<uint32_t>(rng() % tenants);
    if (u01(rng) < 0.05) {
      j.gpus_per_node = gpus_per_node;
      j.nodes = 2 + static_cast<uint32_t>(rng() % 15);
    } else {
      j.gpus_per_node =
          std::min(kShapes[rng() % std::size(kShapes)], gpus_per_node);
    }
    const double c = u01(rng);
    j.cls = c < 0.1   ? ServiceClass::kReserved
            : c < 0.8 ? ServiceClass::kOnDemand
                      : ServiceClass::kSpot;
    j.priority = static_cast<int32_t>(rng() % 3);
    j.load = static_cast<float>(0.3 + 0.7 * u01(rng));
    w.jobs.push_back(std::move(j));
  }
  w.stats.rows = w.stats.jobs = jobs;
  return w;
}

std::string ToCanonicalCsv(const Workload& w) {
  std::string out = absl::StrCat(kCanonicalHeader, "\n");
  for (const SimJobSpec& j : w.jobs) {
    absl::StrAppend(
        &out, j.id, ",", w.tenants[j.tenant], ",",
        absl::StrFormat("%.3f", j.submit_ms / 1000.0), ",",
        absl::StrFormat("%.3f", j.duration_ms / 1000.0), ",", j.gpus_per_node,
        ",", j.nodes, ",", j.gpu_model, ",", ServiceClassName(j.cls), ",",
        j.priority, ",",
        j.power_mw > 0 ? absl::StrCat(j.power_mw / 1000.0) : "", ",",
        j.min_power_mw > 0 ? absl::StrCat(j.min_power_mw / 1000.0) : "", ",",
        j.load >= 0 ? absl::StrFormat("%.3f", j.load) : "", "\n");
  }
  return out;
}

}  // namespace joule::sim
