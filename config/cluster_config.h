#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "scheduler/quota.h"
#include "scheduler/time_limits.h"
#include "scheduler/measured_window.h"
#include "scheduler/power_fit.h"
#include "scheduler/power_rules.h"

namespace joule::config {

struct GpuModel {
  std::string name;
  int64_t tdp_mw = 0;
  int64_t min_limit_mw = 0;  // 0: take the agent's report
  int64_t max_limit_mw = 0;  // 0: take the agent's report
  int64_t idle_mw = 0;
};

struct Domain {
  std::string name;
  std::string parent;  // empty for the root
  std::string kind;
  int64_t cap_mw = 0;
};

struct NodeSlot {
  std::string name;
  std::string domain;
  int64_t base_power_mw = 0;
};

// kMeasuredPlus: measured commitments plus throttle-to-fit admission, class
// floors (spot: GPU minimum, on-demand: 80% of the limit over idle,
// reserved: its limit), node-bound reservations and power redistribution
// with hysteresis (docs/scheduling.md, "measured-plus").
enum class AdmissionMode { kAllocated, kMeasured, kMeasuredPlus };
enum class LostJobPolicy { kFail, kRequeue };

struct SchedulerSettings {
  AdmissionMode admission = AdmissionMode::kAllocated;
  uint32_t measured_percentile = 95;
  uint32_t measured_margin_pct = 10;
  int64_t default_base_power_mw = 0;
  std::string default_domain;  // root when empty in the file
  LostJobPolicy lost_job_policy = LostJobPolicy::kFail;
  absl::Duration unreachable_requeue_after = absl::Seconds(60);
  absl::Duration stop_grace = absl::Seconds(5);
  absl::Duration fair_share_half_life = absl::Hours(24);
  uint32_t max_nodes = 10000;
  uint32_t max_registrations_per_second = 50;
  absl::Duration starting_timeout = absl::Seconds(60);
  // Per-class default and maximum max_runtime (scheduler.time_limit).
  scheduler::TimeLimits time_limits;
  // measured-plus (scheduler/power_options.h, power_fit.h).
  scheduler::ClassFloors class_floors = scheduler::kDefaultClassFloors;
  scheduler::PowerFit power_fit = scheduler::PowerFit::kLeaf;
  int64_t efficiency_knee_permille = 500;
  // measured-plus's per-job commitment (scheduler.plus_commit).
  scheduler::MeasuredCommitRule plus_commit = scheduler::DefaultPlusCommit();
  // The longest preemption notice a job may ask for (0..24h).
  absl::Duration max_preempt_grace = absl::Seconds(300);
};

// A checked cluster configuration: every name unique, exactly one root
// domain, every parent known, no cycle, nodes only under leaf domains, every
// power a valid non-negative quantity. Domains are ordered parents first.
struct ClusterConfig {
  std::vector<GpuModel> gpu_models;
  std::vector<Domain> domains;  // parents before children
  std::vector<NodeSlot> nodes;
  absl::flat_hash_map<std::string, int64_t> node_models;  // base power
  SchedulerSettings scheduler;
  absl::flat_hash_map<std::string, uint32_t> tenant_weights;
  // tenant { quota {...} }: the quota a tenant starts with (a run-time
  // `tenant set-quota` replaces it).
  absl::flat_hash_map<std::string, scheduler::TenantQuota> tenant_quotas;
  // billing { allow_unpriced: true }: accept jobs with no price in effect.
  bool allow_unpriced = false;
  // log { level }: "debug", "info", "warn" or "error"; empty: jouled's
  // --log-level.
  std::string log_level;
  // retention { finished_jobs events }: zero keeps forever.
  absl::Duration finished_job_retention = absl::Hours(24 * 90);
  absl::Duration event_retention = absl::Hours(24 * 35);

  const GpuModel* FindGpuModel(absl::string_view name) const;
  const Domain* FindDomain(absl::string_view name) const;
  const NodeSlot* FindNode(absl::string_view name) const;
};

// Parses protobuf text format. Errors name the file, line and field, e.g.
// "cluster.conf:12: domain[3].parent: \"row9\" is not a defined domain".
absl::StatusOr<ClusterConfig> ParseClusterConfig(absl::string_view text,
                                                 absl::string_view filename);
absl::StatusOr<ClusterConfig> LoadClusterConfig(const std::string& path);

// The configuration used without --config: one site domain (1 GW) holding
// every node, and a catalogue of common GPU models.
ClusterConfig DefaultClusterConfig();

}  // namespace joule::config
