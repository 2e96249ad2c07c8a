#pragma once

// Workload inputs of joule-sim: GPU jobs (canonical CSV, Alibaba GPU-2023
// pod list, Slurm sacct), demand-response cap events and inference usage
// events, plus a synthetic job generator for benchmarks. Parsers are pure
// functions of the text; errors name "FILE:LINE: column: rule".

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "joule/v1/joule.pb.h"
#include "scheduler/types.h"
#include "sim/cluster.h"

namespace joule::sim {

inline constexpr absl::string_view kCanonicalHeader =
    "job_id,tenant,submit_time_s,duration_s,gpus_per_node,nodes,gpu_model,"
    "class,priority,power_w,min_power_w,load";

// One job of the workload. Times are simulated milliseconds from the start
// of the trace.
struct SimJobSpec {
  std::string id;
  uint32_t tenant = 0;  // index into Workload::tenants
  int64_t submit_ms = 0;
  int64_t duration_ms = 0;  // at full speed
  uint32_t gpus_per_node = 1;
  uint32_t nodes = 1;
  std::string gpu_model;  // empty = any
  scheduler::ServiceClass cls = scheduler::ServiceClass::kOnDemand;
  int32_t priority = 0;
  int64_t power_mw = 0;      // per GPU, 0 = TDP
  int64_t min_power_mw = 0;  // 0 = power_mw
  float load = -1;           // 0..1; < 0 = the run's default / sampled load
  float load_scale = 1;      // multiplies the load (fractional-GPU pods)
};

// Counts of what an importer read and left out.
struct ImportStats {
  int64_t rows = 0;
  int64_t jobs = 0;
  std::vector<std::pair<std::string, int64_t>> skipped;  // reason, count
  void Skip(const std::string& reason);
};

// Jobs sorted by (submit_ms, file order). Owns the tenant names.
struct Workload {
  std::vector<std::string> tenants;
  std::vector<SimJobSpec> jobs;
  ImportStats stats;

  uint32_t TenantIndex(absl::string_view name);  // adds when new
  void SortBySubmit();
  // Divides every submit time by `factor` (> 0): the same jobs arrive
  // `factor` times faster (durations unchanged).
  void SpeedUpArrivals(double factor);
};

// Canonical CSV (kCanonicalHeader; columns matched by header name, so order
// is free and only submit_time_s and duration_s are required). Empty fields
// take defaults: job_id "job-<line>", tenant "default", gpus_per_node 1,
// nodes 1, gpu_model any, class on-demand, priority 0, power/min 0 (= TDP),
// load = the run's default.
absl::StatusOr<Workload> ParseCanonicalCsv(absl::string_view text,
                                           absl::string_view filename);

// Alibaba cluster-trace-gpu-v2023 openb_pod_list_*.csv. Submit = creation,
// duration = deletion - scheduled; pods never scheduled, CPU-only pods and
// zero-length pods are skipped (counted). A fractional pod (gpu_milli <
// 1000) takes one whole GPU and drives it at gpu_milli/1000 of the job load.
// qos BE -> spot, Guaranteed -> reserved, LS and Burstable -> on-demand;
// tenant "openb-<qos lower case>".
absl::StatusOr<Workload> ParseAlibabaOpenb(absl::string_view text,
                                           absl::string_view filename);

// `sacct -a -P -o JobID,User,Account,Submit,Start,End,AllocTRES,Partition,
// QOS,State` output ('|'-separated, header line first). Job steps (JobID
// with '.') are skipped, as are jobs that never started or ended and jobs
// without gres/gpu. Tenant = Account (User when empty); GPUs from
// gres/gpu[:type]=N, nodes from node=N; QOS containing spot/scav/preempt/
// low/standby -> spot, reserved/contract -> reserved, else on-demand.
absl::StatusOr<Workload> ParseSacct(absl::string_view text,
                                    absl::string_view filename);

// One demand-response cap change.
struct CapEvent {
  int64_t time_ms = 0;
  int domain = -1;
  int64_t cap_mw = 0;
};
// "time_s,domain,new_cap" rows (optional header), e.g. "3600,rack-0-0-0,20kW".
absl::StatusOr<std::vector<CapEvent>> ParseCapEvents(absl::string_view text,
                                                     absl::string_view filename,
                                                     const SimCluster& cluster);

// `joulectl usage import` CSV (cli/format.h), sorted by time (stable).
absl::StatusOr<std::vector<v1::UsageEvent>> ParseUsageEvents(
    absl::string_view text, absl::string_view filename);

// An empirical per-GPU power CDF ("gpu_power_w,cdf_percent", e.g. the Acme
// traces) turned into a load sampler for a GPU of `tdp_mw` / `idle_mw`.
class LoadCdf {
 public:
  static absl::StatusOr<LoadCdf> Parse(absl::string_view text,
                                       absl::string_view filename,
                                       int64_t tdp_mw, int64_t idle_mw);
  // Load for a uniform u in [0, 1): inverse CDF, linear between points.
  double Sample(double u) const;
  // Mean load over the distribution.
  double Mean() const;

 private:
  std::vector<std::pair<double, double>> points_;  // (cdf 0..1, load)
};

// Synthetic mixed workload for benchmarks: `jobs` jobs over `tenants`
// tenants, GPUs per node from {1, 2, 4, 8}, gangs of 2..16 whole nodes (5%),
// log-uniform durations 1 min .. 8 h, classes 10% reserved / 70% on-demand /
// 20% spot, loads 0.3..1.0, Poisson arrivals sized to offer `utilization` of
// `total_gpus`. Deterministic for a seed.
Workload SyntheticWorkload(int64_t jobs, int64_t total_gpus,
                           uint32_t gpus_per_node, double utilization,
                           uint32_t tenants, uint64_t seed);
// Writes a workload as canonical CSV.
std::string ToCanonicalCsv(const Workload& w);

// Reads a whole file; NOT_FOUND naming it when it cannot be read.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace joule::sim
