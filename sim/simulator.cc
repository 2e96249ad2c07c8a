#include "sim/simulator.h"

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <queue>
#include <random>
#include <utility>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/sim_backend.h"
#include "billing/ledger.h"
#include "billing/period.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "scheduler/fair_share.h"
#include "scheduler/kept_state.h"
#include "scheduler/measured_plus.h"
#include "scheduler/measured_window.h"
#include "scheduler/policy.h"
#include "scheduler/power_control.h"
#include "scheduler/power_rules.h"
#include "scheduler/shared_rules.h"
#include "sim/delay.h"
#include "sim/stranded.h"
#include "storage/memory_store.h"

namespace joule::sim {

const char* PolicyName(PolicyKind p) {
  switch (p) {
    case PolicyKind::kOblivious:
      return "oblivious";
    case PolicyKind::kAllocated:
      return "allocated";
    case PolicyKind::kMeasured:
      return "measured";
    case PolicyKind::kMeasuredPlus:
      return "measured-plus";
  }
  return "?";
}

double ThrottleSpeed(int64_t limit_mw, int64_t want_mw, double alpha,
                     double knee) {
  if (want_mw <= 0 || limit_mw >= want_mw) return 1.0;
  if (limit_mw <= 0) return 1e-6;
  const double r = static_cast<double>(limit_mw) / static_cast<double>(want_mw);
  if (r >= knee) return std::pow(r, alpha);
  return std::max(1e-6, std::pow(knee, alpha) * r / knee);
}

int64_t PeakRssBytes() {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

namespace {

using scheduler::ServiceClass;
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
constexpr int64_t kMsPerDay = 86'400'000;

// Every tenant exists in the simulation.
class AllTenants final : public billing::TenantDirectory {
 public:
  bool Exists(std::string_view) const override { return true; }
};

v1::ServiceClass ToProtoClass(ServiceClass c) {
  switch (c) {
    case ServiceClass::kReserved:
      return v1::SERVICE_CLASS_RESERVED;
    case ServiceClass::kOnDemand:
      return v1::SERVICE_CLASS_ON_DEMAND;
    case ServiceClass::kSpot:
      return v1::SERVICE_CLASS_SPOT;
  }
  return v1::SERVICE_CLASS_ON_DEMAND;
}

// Runtime state of one job of the workload.
struct JobRt {
  enum State : uint8_t { kFuture, kPending, kRunning, kDone };
  State state = kFuture;
  bool killed = false;
  bool throttled = false;  // limit < requested
  int16_t model = -1;      // resolved at placement
  uint32_t attempt = 0;
  uint32_t version = 0;  // bumps invalidate queued completion events
  uint32_t gpus = 0;
  int32_t run_idx = -1;  // in snap_.running
  float load = 0;
  int64_t first_start_ms = -1;
  int64_t start_ms = 0;
  int64_t end_ms = -1;
  int64_t progress_ms = 0;  // when work_left_ms was last brought up to date
  double work_left_ms = 0;
  double speed = 1;
  int64_t want_mw = 0;  // per GPU at the job's mean load
};

// The hot state of one running job, parallel to snap_.running (the
// telemetry pass reads only these). snap_.running's measured_per_gpu_mw and
// committed_mw are brought up to date from here before a policy call.
struct RunExtra {
  int32_t job = -1;
  int32_t leaf = -1;  // the job's leaf domain when it has one, else -1
  // With no one leaf: (leaf domain, GPUs) of each share.
  std::vector<std::pair<int32_t, int32_t>> share_leaves;
  uint32_t gpus = 0;
  int16_t model = -1;
  float load = 0;
  int64_t start_ms = 0;
  int64_t limit_mw = 0;
  int64_t noisy_want_mw = 0;  // per GPU, this tick's load
  int64_t draw_mw = 0;        // per GPU now = min(noisy_want, limit)
  int64_t energy_last_ms = 0;
  uint64_t energy_mwms = 0;  // this attempt, mW × ms
  int64_t committed_per_gpu = 0;
  int64_t min_mw = 0;                // floor per GPU (the commitment's clamp)
  scheduler::MeasuredWindow window;  // measured modes: recent draw
};

struct DomStats {
  int64_t last_ms = 0;
  __int128 energy = 0;  // mW × ms
  __int128 cap_int = 0;
  __int128 over = 0;  // (measured - cap) mW × ms
  int64_t over_ms = 0;
  int64_t episode_ms = 0;  // length of the current over-cap episode
  int64_t beyond_ms = 0;   // over-cap time past two ticks into an episode
  int64_t max_mw = 0;
  double max_ratio = 0;
};

struct Ev {
  int64_t t;
  int32_t job;
  uint32_t version;
  bool kill;
  bool operator>(const Ev& o) const { return t != o.t ? t > o.t : job > o.job; }
};

struct PendKey {
  uint8_t cls;
  int32_t neg_priority;
  uint32_t job;
  bool operator<(const PendKey& o) const {
    if (cls != o.cls) return cls < o.cls;
    if (neg_priority != o.neg_priority) return neg_priority < o.neg_priority;
    return job < o.job;
  }
};

// Fair share as jouled counts it (scheduler/fair_share.h): decayed
// GPU-seconds, advanced whenever the tenant's held GPUs change.
struct TenantRt {
  scheduler::DecayedUsage usage;
  int64_t gpus = 0;  // held by its running attempts
};

class Sim {
 public:
  Sim(const SimInputs& in, const SimOptions& o)
      : in_(in),
        opts_(o),
        cluster_(*in.cluster),
        work_(*in.workload),
        clock_(o.start),
        ledger_(&store_, &clock_, &tenants_dir_),
        noise_state_(o.seed ^ 0x5851f42d4c957f2dull) {}

  absl::StatusOr<SimResult> Run();

 private:
  absl::Time At(int64_t ms) const {
    return opts_.start + absl::Milliseconds(ms);
  }
  absl::Status Init();
  void IntegrateDomain(int d, int64_t now);
  void IntegrateAll(int64_t now);
  void AddNodePower(int node, int64_t dmeasured, int64_t dcommitted);
  int64_t MeasuredCommitted(const RunExtra& x, int64_t limit) const;
  int64_t IdleOffset(int job, bool* explicit_power) const;
  void PushFinish(int job);
  void Arrive(int job);
  void StartJob(int job, const scheduler::Placement& p);
  enum EndKind { kComplete, kPreemptPower, kPreemptReserved, kKill };
  void EndAttempt(int job, EndKind kind);
  void SetLimit(int job, int64_t limit_mw);
  void Tick();
  void Telemetry();
  void SyncRunning();
  void RunPowerLoop();
  void RunScheduler();
  bool Measured() const {
    return opts_.policy == PolicyKind::kMeasured ||
           opts_.policy == PolicyKind::kMeasuredPlus;
  }
  bool Plus() const { return opts_.policy == PolicyKind::kMeasuredPlus; }
  // Adaptive margin (measured-plus) and breach counting, after telemetry.
  void AdaptMargins();
  // Stranded power by cause, after the scheduler ran (see SimResult).
  void SampleStranded();
  void ComputeStrandedInputs();
  void RecordUsageUpTo(int64_t ms);
  // snap_.nodes[node].free_gpus changed: marked for the kept policy state
  // and the stranded-power inputs.
  void FreeChanged(int node);
  // The tenant's held GPUs change by `delta` now.
  void AddTenantGpus(uint32_t tenant, int64_t delta);
  // The job's time limit (scheduler/time_limits.h), 0 = none.
  int64_t MaxRuntimeMs(int job) const;
  double TenantRecent(uint32_t tenant) const;
  void Progress(bool force);
  void Finish(SimResult* r);

  const SimInputs& in_;
  const SimOptions opts_;
  // The commitment rules of measured and measured-plus (from opts_).
  scheduler::MeasuredCommitRule measured_rule_ = scheduler::MeasuredRule(
      opts_.measured_percentile, opts_.measured_margin_pct);
  scheduler::MeasuredCommitRule plus_rule_ = opts_.plus_commit;
  const SimCluster& cluster_;
  const Workload& work_;

  storage::MemoryStore store_;
  FakeClock clock_;
  AllTenants tenants_dir_;
  billing::Ledger ledger_;
  int64_t usage_recorded_ = 0;
  std::vector<std::string> billing_errors_;
  int64_t billing_error_count_ = 0;

  uint64_t noise_state_;
  std::vector<agent::SimGpuOptions> model_opts_;
  // Per cluster model, the idle power committed power counts a free GPU at
  // (SimGpuModel::AccountedIdleMw), and the offset of a job of any model.
  std::vector<int64_t> acc_idle_;
  int64_t any_model_offset_ = 0;

  scheduler::ClusterSnapshot snap_;
  // The policy's working state of snap_, kept between Schedule calls: every
  // change of snap_.nodes[n] and snap_.running[i] is marked on it.
  scheduler::KeptState kept_;
  std::string kept_mismatch_;  // SimOptions::verify_kept_state
  std::vector<RunExtra> run_;
  std::vector<uint32_t> node_alloc_gpus_;
  std::vector<DomStats> dstats_;
  std::vector<scheduler::MarginState> margin_;
  // Stranded-power accounting: level of each domain (order of first
  // appearance), sums per domain of the causes in SimResult's LevelStats
  // order (margin, fragmentation, not throttleable, GPUs full, no demand,
  // usable, idle floor), measured / cap histograms per level (bins of
  // 1/kShareBins of the cap up to 2× cap), samples taken.
  static constexpr int kShareBins = 500;
  std::vector<int> level_of_;
  std::vector<std::array<double, 7>> strand_sum_;
  std::vector<int64_t> breaches_;
  std::vector<std::vector<int64_t>> share_hist_;
  std::vector<double> share_sum_;
  std::vector<int64_t> share_n_;
  int64_t strand_samples_ = 0;
  // SampleStranded's per-domain free GPUs and idle draw and per-shape
  // pending needs, recomputed only when jobs start, end or arrive.
  std::vector<uint32_t> scratch_free_;
  std::vector<int64_t> scratch_idle_;
  // Their parts: per domain, the nodes (of a known model) whose leaf it is,
  // the most free GPUs on one of them and the idle draw of their free GPUs,
  // brought up to date only for the leaves marked stale (FreeChanged); the
  // domains children first, to sum up the tree; the pending part only when
  // the queue changed (pending_version_).
  std::vector<std::vector<int>> leaf_nodes_;
  std::vector<uint32_t> own_free_;
  std::vector<int64_t> own_idle_;
  std::vector<int> stale_leaves_;
  std::vector<bool> leaf_stale_;
  std::vector<int> children_first_;
  uint64_t pending_version_ = 1, pending_sampled_ = 0;
  std::array<int64_t, 65> at_limit_{}, at_floor_{};
  uint64_t state_version_ = 1, sampled_version_ = 0;
  std::vector<int64_t> leaf_dm_, leaf_dc_;
  std::vector<JobRt> jobs_;
  std::vector<TenantRt> tenant_rt_;
  absl::btree_set<PendKey> pending_;
  std::priority_queue<Ev, std::vector<Ev>, std::greater<Ev>> heap_;

  int64_t now_ = 0;
  size_t next_arrival_ = 0;
  size_t next_cap_ = 0;
  size_t next_usage_ = 0;
  bool dirty_ = false;
  int64_t next_contract_refresh_ = 0;
  int64_t last_schedule_ms_ = -1;
  int64_t running_gpus_ = 0;
  int64_t throttled_jobs_ = 0;
  int64_t ticks_ = 0;

  // Results.
  SimResult res_;
  int64_t gpu_ms_allocated_ = 0;
  int64_t gpu_ms_lost_ = 0;
  int64_t gpu_ms_completed_work_ = 0;
  uint64_t gpu_energy_mwms_ = 0;
  std::vector<int64_t> queue_delays_ms_;
  double slowdown_sum_ = 0;
  int64_t last_end_ms_ = 0;
  // Timeline, one entry per tick.
  std::vector<float> tl_t_, tl_power_, tl_cap_, tl_gpus_, tl_pending_;
  __int128 tl_last_energy_ = 0;
  int64_t tl_last_ms_ = 0;
  std::chrono::steady_clock::time_point wall_start_, last_progress_;
};

absl::Status Sim::Init() {
  wall_start_ = last_progress_ = std::chrono::steady_clock::now();
  res_.policy = PolicyName(opts_.policy);
  // Models.
  // Idle offsets (scheduler/shared_rules.h, as jouled): free GPUs count at
  // idle in committed power, so the policy sees per-GPU limits as
  // increments over idle; a placement's real limit is the decided one plus
  // idle (StartJob).
  std::vector<int64_t> listed_idle;
  for (const SimGpuModel& m : cluster_.models) {
    const int64_t idle = m.AccountedIdleMw();
    acc_idle_.push_back(idle);
    if (m.listed) listed_idle.push_back(idle);
    snap_.gpu_models.push_back(scheduler::OffsetByIdle(
        {m.name, m.tdp_mw, m.min_limit_mw, m.max_limit_mw}, idle));
    agent::SimGpuOptions o;
    o.model = m.name;
    o.tdp_mw = m.tdp_mw;
    o.min_limit_mw = m.min_limit_mw;
    o.max_limit_mw = m.max_limit_mw;
    o.idle_mw = m.idle_mw;
    model_opts_.push_back(o);
  }
  any_model_offset_ = scheduler::PendingIdleOffsetMw(false, 0, listed_idle);
  // Domains and nodes.
  const size_t nd = cluster_.domains.size();
  snap_.domains.resize(nd);
  for (size_t d = 0; d < nd; ++d) {
    const SimDomain& sd = cluster_.domains[d];
    snap_.domains[d].name = sd.name;
    snap_.domains[d].level = sd.level;
    snap_.domains[d].parent = sd.parent;
    snap_.domains[d].cap_mw = sd.cap_mw;
  }
  dstats_.assign(nd, DomStats{});
  margin_.assign(nd, scheduler::InitialMargin(opts_.margin));
  if (Plus()) {
    for (size_t d = 0; d < nd; ++d) {
      snap_.domains[d].admission_reserve_mw =
          scheduler::MarginReserveMw(margin_[d], snap_.domains[d].cap_mw);
    }
  }
  {
    absl::flat_hash_map<std::string, int> levels;
    for (size_t d = 0; d < nd; ++d) {
      auto [it, inserted] =
          levels.try_emplace(cluster_.domains[d].level, levels.size());
      level_of_.push_back(it->second);
    }
    share_hist_.assign(levels.size(),
                       std::vector<int64_t>(2 * kShareBins + 1, 0));
    share_sum_.assign(levels.size(), 0);
    share_n_.assign(levels.size(), 0);
  }
  strand_sum_.assign(nd, {});
  breaches_.assign(nd, 0);
  leaf_nodes_.assign(nd, {});
  own_free_.assign(nd, 0);
  own_idle_.assign(nd, 0);
  leaf_stale_.assign(nd, false);
  for (size_t n = 0; n < cluster_.nodes.size(); ++n) {
    const SimNode& sn = cluster_.nodes[n];
    if (sn.model < 0 || sn.leaf < 0) continue;
    leaf_nodes_[sn.leaf].push_back(static_cast<int>(n));
    if (!leaf_stale_[sn.leaf]) {
      leaf_stale_[sn.leaf] = true;
      stale_leaves_.push_back(sn.leaf);
    }
  }
  {
    std::vector<int> depth(nd, 0);
    for (size_t d = 0; d < nd; ++d) {
      for (int p = cluster_.domains[d].parent; p >= 0;
           p = cluster_.domains[p].parent) {
        ++depth[d];
      }
      children_first_.push_back(static_cast<int>(d));
    }
    std::stable_sort(children_first_.begin(), children_first_.end(),
                     [&depth](int a, int b) { return depth[a] > depth[b]; });
  }
  leaf_dm_.assign(nd, 0);
  leaf_dc_.assign(nd, 0);
  snap_.nodes.resize(cluster_.nodes.size());
  node_alloc_gpus_.assign(cluster_.nodes.size(), 0);
  for (size_t n = 0; n < cluster_.nodes.size(); ++n) {
    const SimNode& sn = cluster_.nodes[n];
    scheduler::NodeSnapshot& ns = snap_.nodes[n];
    ns.name = sn.name;
    ns.domain = sn.leaf;
    ns.schedulable = true;
    ns.gpu_model = sn.model >= 0 ? cluster_.models[sn.model].name : "";
    ns.gpu_count = sn.gpus;
    ns.free_gpus = sn.gpus >= 64 ? ~uint64_t{0} : (uint64_t{1} << sn.gpus) - 1;
    const int64_t idle =
        sn.model >= 0 ? cluster_.models[sn.model].idle_mw * sn.gpus : 0;
    // Committed: base power plus every free GPU at (accounted) idle, as
    // jouled counts it; all GPUs are free here.
    const int64_t idle_committed =
        sn.model >= 0 ? acc_idle_[sn.model] * sn.gpus : 0;
    ns.measured_mw = sn.base_mw + idle;
    for (int d = sn.leaf; d >= 0; d = snap_.domains[d].parent) {
      snap_.domains[d].committed_mw += sn.base_mw + idle_committed;
      snap_.domains[d].measured_mw += ns.measured_mw;
    }
  }
  // Jobs and their loads.
  std::mt19937_64 load_rng(opts_.seed);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  jobs_.resize(work_.jobs.size());
  for (size_t i = 0; i < jobs_.size(); ++i) {
    const SimJobSpec& s = work_.jobs[i];
    double load = s.load;
    if (load < 0) {
      load = opts_.load_cdf != nullptr ? opts_.load_cdf->Sample(u01(load_rng))
                                       : opts_.default_load;
    }
    jobs_[i].load =
        static_cast<float>(std::clamp(load * s.load_scale, 0.0, 1.0));
    if (i > 0 && s.submit_ms < work_.jobs[i - 1].submit_ms) {
      return absl::InvalidArgumentError("workload: jobs not sorted by submit");
    }
  }
  // Tenants.
  tenant_rt_.assign(work_.tenants.size(), TenantRt{});
  for (const std::string& t : work_.tenants) {
    scheduler::TenantInfo info;
    if (in_.pricing != nullptr) {
      auto it = in_.pricing->tenant_weights.find(t);
      if (it != in_.pricing->tenant_weights.end()) info.weight = it->second;
    }
    snap_.tenants[t] = info;
  }
  // Billing.
  clock_.Set(opts_.start);
  if (in_.pricing != nullptr) {
    absl::Status s = ApplyPricing(*in_.pricing, opts_.start, &ledger_);
    if (!s.ok()) return s;
    for (const v1::Contract& c : in_.pricing->contracts) {
      snap_.tenants.try_emplace(c.tenant());
    }
  }
  return absl::OkStatus();
}

void Sim::IntegrateDomain(int d, int64_t now) {
  DomStats& s = dstats_[d];
  const int64_t dt = now - s.last_ms;
  if (dt <= 0) return;
  const scheduler::DomainSnapshot& dom = snap_.domains[d];
  s.energy += static_cast<__int128>(dom.measured_mw) * dt;
  s.cap_int += static_cast<__int128>(dom.cap_mw) * dt;
  if (dom.measured_mw > dom.cap_mw) {
    s.over_ms += dt;
    s.over += static_cast<__int128>(dom.measured_mw - dom.cap_mw) * dt;
    // Time past two report intervals into this episode.
    const int64_t allowed = 2 * opts_.tick_ms;
    s.beyond_ms += std::max<int64_t>(
        0, s.episode_ms + dt - std::max(allowed, s.episode_ms));
    s.episode_ms += dt;
  } else {
    s.episode_ms = 0;
  }
  s.max_mw = std::max(s.max_mw, dom.measured_mw);
  if (dom.cap_mw > 0) {
    s.max_ratio = std::max(s.max_ratio, static_cast<double>(dom.measured_mw) /
                                            static_cast<double>(dom.cap_mw));
  }
  s.last_ms = now;
}

void Sim::IntegrateAll(int64_t now) {
  for (size_t d = 0; d < dstats_.size(); ++d) {
    IntegrateDomain(static_cast<int>(d), now);
  }
}

void Sim::AddNodePower(int node, int64_t dmeasured, int64_t dcommitted) {
  snap_.nodes[node].measured_mw += dmeasured;
  for (int d = snap_.nodes[node].domain; d >= 0; d = snap_.domains[d].parent) {
    IntegrateDomain(d, now_);
    snap_.domains[d].measured_mw += dmeasured;
    snap_.domains[d].committed_mw += dcommitted;
  }
}

int64_t Sim::MeasuredCommitted(const RunExtra& x, int64_t limit) const {
  if (!Measured()) return limit;
  // The daemon's rule (scheduler/measured_window.h), each tick's sample
  // standing for tick / unit_ms one-second reports.
  return x.window.CommitPerGpuMw(Plus() ? plus_rule_ : measured_rule_,
                                 opts_.measured_window, limit, x.min_mw);
}

// What is taken off a pending job's explicit power (and added back to what
// the policy decides): scheduler::PendingIdleOffsetMw, as jouled. *explicit_power: the job gives a power or
// a min power (throttleable jobs give a min); only then does the offset
// taken here apply at placement, otherwise the placed model's idle does.
int64_t Sim::IdleOffset(int job, bool* explicit_power) const {
  const SimJobSpec& s = work_.jobs[job];
  *explicit_power = s.power_mw > 0 || s.min_power_mw > 0 ||
                    (s.min_power_mw == 0 && opts_.throttleable);
  if (s.gpu_model.empty()) return any_model_offset_;
  const int m = cluster_.ModelIndex(s.gpu_model);
  return scheduler::PendingIdleOffsetMw(true, m >= 0 ? acc_idle_[m] : 0, {});
}

void Sim::PushFinish(int job) {
  JobRt& j = jobs_[job];
  ++j.version;
  int64_t finish =
      j.progress_ms + static_cast<int64_t>(std::ceil(j.work_left_ms / j.speed));
  bool kill = false;
  if (const int64_t max_rt = MaxRuntimeMs(job); max_rt > 0) {
    if (finish > j.start_ms + max_rt) {
      finish = j.start_ms + max_rt;
      kill = true;
    }
  }
  heap_.push(Ev{finish, job, j.version, kill});
}

void Sim::Arrive(int job) {
  JobRt& j = jobs_[job];
  const SimJobSpec& s = work_.jobs[job];
  j.state = JobRt::kPending;
  pending_.insert(PendKey{static_cast<uint8_t>(s.cls), -s.priority,
                          static_cast<uint32_t>(job)});
  dirty_ = true;
  ++state_version_;
  ++pending_version_;
}

void Sim::StartJob(int job, const scheduler::Placement& p) {
  JobRt& j = jobs_[job];
  const SimJobSpec& s = work_.jobs[job];
  pending_.erase(PendKey{static_cast<uint8_t>(s.cls), -s.priority,
                         static_cast<uint32_t>(job)});
  ++state_version_;
  ++pending_version_;
  j.state = JobRt::kRunning;
  ++j.attempt;
  ++res_.attempts;
  j.start_ms = now_;
  if (j.first_start_ms < 0) {
    j.first_start_ms = now_;
    queue_delays_ms_.push_back(now_ - s.submit_ms);
  }
  int model = cluster_.ModelIndex(p.gpu_model);
  j.model = static_cast<int16_t>(model);
  const agent::SimGpuOptions& mo = model_opts_[model];
  // Back from increments over idle to real per-GPU limits, as ScheduleOnce.
  bool explicit_power = false;
  int64_t offset = IdleOffset(job, &explicit_power);
  if (!explicit_power) offset = acc_idle_[model];
  const int64_t limit_mw = p.power_limit_mw + offset;
  const int64_t requested_mw =
      std::max(limit_mw, p.requested_limit_mw + offset);
  const int64_t min_mw = std::min(limit_mw, p.min_power_mw + offset);
  j.want_mw = agent::SimGpuPowerMw(mo, j.load, mo.tdp_mw);
  const int64_t draw = std::min(j.want_mw, limit_mw);
  j.speed = ThrottleSpeed(limit_mw, j.want_mw, opts_.throttle_alpha,
                          opts_.throttle_knee);
  j.work_left_ms = static_cast<double>(s.duration_ms);
  j.progress_ms = now_;
  // Throttled to fit: below its requested limit from the start.
  j.throttled = limit_mw < requested_mw;
  if (j.throttled) ++throttled_jobs_;
  j.gpus = 0;
  for (const scheduler::JobShare& sh : p.shares) {
    j.gpus += static_cast<uint32_t>(sh.gpus.size());
  }
  scheduler::RunningJob r;
  r.id = absl::StrCat(job);
  r.tenant = work_.tenants[s.tenant];
  r.cls = p.effective_class;
  r.priority = s.priority;
  r.start_time = At(now_);
  r.max_runtime = absl::Milliseconds(MaxRuntimeMs(job));
  r.shares = p.shares;
  r.gpu_model = p.gpu_model;
  r.limit_mw = limit_mw;
  r.requested_mw = requested_mw;
  r.min_mw = min_mw;
  r.limit_changed_at = At(now_);
  r.committed_mw = limit_mw * j.gpus;
  r.measured_per_gpu_mw = draw;
  r.idle_per_gpu_mw = mo.idle_mw;
  j.run_idx = static_cast<int32_t>(snap_.running.size());
  RunExtra x;
  x.job = job;
  x.gpus = j.gpus;
  x.model = j.model;
  x.load = j.load;
  x.start_ms = now_;
  x.limit_mw = limit_mw;
  x.noisy_want_mw = j.want_mw;
  x.draw_mw = draw;
  x.energy_last_ms = now_;
  x.committed_per_gpu = limit_mw;
  x.min_mw = min_mw;
  x.leaf = snap_.nodes[p.shares[0].node].domain;
  for (const scheduler::JobShare& sh : p.shares) {
    if (snap_.nodes[sh.node].domain != x.leaf) x.leaf = -1;
  }
  if (x.leaf < 0) {
    for (const scheduler::JobShare& sh : p.shares) {
      x.share_leaves.push_back(
          {snap_.nodes[sh.node].domain, static_cast<int32_t>(sh.gpus.size())});
    }
  }
  snap_.running.push_back(std::move(r));
  run_.push_back(std::move(x));
  kept_.RunningChanged(j.run_idx);
  for (const scheduler::JobShare& sh : p.shares) {
    uint64_t mask = 0;
    for (uint32_t g : sh.gpus) mask |= uint64_t{1} << g;
    snap_.nodes[sh.node].free_gpus &= ~mask;
    FreeChanged(sh.node);
    const int64_t g = static_cast<int64_t>(sh.gpus.size());
    node_alloc_gpus_[sh.node] += static_cast<uint32_t>(g);
    // The GPUs stop counting at idle and count at the job's limit.
    AddNodePower(sh.node, g * (draw - mo.idle_mw),
                 g * (limit_mw - acc_idle_[model]));
  }
  running_gpus_ += j.gpus;
  AddTenantGpus(s.tenant, j.gpus);
  PushFinish(job);
}

void Sim::EndAttempt(int job, EndKind kind) {
  JobRt& j = jobs_[job];
  const SimJobSpec& s = work_.jobs[job];
  const int idx = j.run_idx;
  const scheduler::RunningJob& r = snap_.running[idx];
  RunExtra& x = run_[idx];
  const agent::SimGpuOptions& mo = model_opts_[j.model];
  ++state_version_;
  x.energy_mwms += static_cast<uint64_t>(x.draw_mw) * x.gpus *
                   static_cast<uint64_t>(now_ - x.energy_last_ms);
  x.energy_last_ms = now_;
  gpu_energy_mwms_ += x.energy_mwms;
  for (const scheduler::JobShare& sh : r.shares) {
    uint64_t mask = 0;
    for (uint32_t g : sh.gpus) mask |= uint64_t{1} << g;
    snap_.nodes[sh.node].free_gpus |= mask;
    FreeChanged(sh.node);
    const int64_t g = static_cast<int64_t>(sh.gpus.size());
    node_alloc_gpus_[sh.node] -= static_cast<uint32_t>(g);
    AddNodePower(sh.node, g * (mo.idle_mw - x.draw_mw),
                 g * (acc_idle_[j.model] - x.committed_per_gpu));
  }
  // Bill the attempt.
  billing::JobUsage u;
  u.tenant = work_.tenants[s.tenant];
  u.job_id = s.id;
  u.attempt = j.attempt;
  u.gpu_model = r.gpu_model;
  u.service_class =
      billing::BilledClass(ToProtoClass(s.cls), ToProtoClass(r.cls));
  u.gpus = j.gpus;
  u.start = At(j.start_ms);
  u.end = At(now_);
  u.energy_mj = x.energy_mwms / 1000;
  absl::Status bs = ledger_.RecordJobUsage(u);
  if (!bs.ok()) {
    if (billing_errors_.size() < 5) {
      billing_errors_.push_back(std::string(bs.message()));
    }
    ++billing_error_count_;
  }
  const int64_t held_ms = now_ - j.start_ms;
  gpu_ms_allocated_ += held_ms * j.gpus;
  AddTenantGpus(s.tenant, -static_cast<int64_t>(j.gpus));
  running_gpus_ -= j.gpus;
  if (j.throttled) --throttled_jobs_;
  j.throttled = false;
  // Swap-remove from the running set.
  const int last = static_cast<int>(snap_.running.size()) - 1;
  if (idx != last) {
    snap_.running[idx] = std::move(snap_.running[last]);
    kept_.RunningChanged(idx);
    run_[idx] = std::move(run_[last]);
    jobs_[run_[idx].job].run_idx = idx;
  }
  snap_.running.pop_back();
  run_.pop_back();
  j.run_idx = -1;
  ++j.version;
  dirty_ = true;
  switch (kind) {
    case kComplete:
    case kKill:
      j.state = JobRt::kDone;
      j.end_ms = now_;
      last_end_ms_ = std::max(last_end_ms_, now_);
      if (kind == kComplete) {
        ++res_.jobs_completed;
        gpu_ms_completed_work_ += s.duration_ms * j.gpus;
        slowdown_sum_ += static_cast<double>(now_ - s.submit_ms) /
                         static_cast<double>(s.duration_ms);
      } else {
        j.killed = true;
        ++res_.jobs_killed_max_runtime;
      }
      break;
    case kPreemptPower:
    case kPreemptReserved:
      if (kind == kPreemptPower) {
        ++res_.preemptions_power;
      } else {
        ++res_.preemptions_reserved;
      }
      gpu_ms_lost_ += held_ms * j.gpus;
      j.state = JobRt::kPending;
      pending_.insert(PendKey{static_cast<uint8_t>(s.cls), -s.priority,
                              static_cast<uint32_t>(job)});
      ++pending_version_;
      break;
  }
}

void Sim::SetLimit(int job, int64_t limit_mw) {
  JobRt& j = jobs_[job];
  const int idx = j.run_idx;
  scheduler::RunningJob& r = snap_.running[idx];
  RunExtra& x = run_[idx];
  // Bring work and energy up to now at the old limit.
  j.work_left_ms =
      std::max(0.0, j.work_left_ms -
                        static_cast<double>(now_ - j.progress_ms) * j.speed);
  j.progress_ms = now_;
  x.energy_mwms += static_cast<uint64_t>(x.draw_mw) * x.gpus *
                   static_cast<uint64_t>(now_ - x.energy_last_ms);
  x.energy_last_ms = now_;
  const int64_t old_draw = x.draw_mw;
  const int64_t old_c = x.committed_per_gpu;
  x.draw_mw = std::min(x.noisy_want_mw, limit_mw);
  x.limit_mw = limit_mw;
  r.limit_mw = limit_mw;
  r.limit_changed_at = At(now_);
  r.measured_per_gpu_mw = x.draw_mw;
  x.committed_per_gpu = MeasuredCommitted(x, limit_mw);
  r.committed_mw = x.committed_per_gpu * x.gpus;
  kept_.RunningChanged(idx);
  for (const scheduler::JobShare& sh : r.shares) {
    const int64_t g = static_cast<int64_t>(sh.gpus.size());
    AddNodePower(sh.node, g * (x.draw_mw - old_draw),
                 g * (x.committed_per_gpu - old_c));
  }
  const bool throttled = limit_mw < r.requested_mw;
  if (throttled != j.throttled) throttled_jobs_ += throttled ? 1 : -1;
  j.throttled = throttled;
  j.speed = ThrottleSpeed(limit_mw, j.want_mw, opts_.throttle_alpha,
                          opts_.throttle_knee);
  PushFinish(job);
  dirty_ = true;
}

void Sim::AddTenantGpus(uint32_t tenant, int64_t delta) {
  TenantRt& t = tenant_rt_[tenant];
  t.usage = scheduler::AdvanceUsage(t.usage, At(now_), t.gpus,
                                    opts_.fair_share_half_life);
  t.gpus += delta;
}

double Sim::TenantRecent(uint32_t tenant) const {
  const TenantRt& t = tenant_rt_[tenant];
  return scheduler::UsageAt(t.usage, At(now_), t.gpus,
                            opts_.fair_share_half_life);
}

int64_t Sim::MaxRuntimeMs(int job) const {
  const SimJobSpec& s = work_.jobs[job];
  if (opts_.max_runtime_factor > 0) {
    return static_cast<int64_t>(std::ceil(static_cast<double>(s.duration_ms) *
                                          opts_.max_runtime_factor));
  }
  if (!opts_.time_limits) return 0;
  return absl::ToInt64Milliseconds(scheduler::EffectiveMaxRuntime(
      s.cls, absl::ZeroDuration(), opts_.limits));
}

void Sim::Telemetry() {
  // Every running job reports a new draw: its load with noise, capped at
  // its limit; measured mode keeps the samples. Only domain sums change
  // here (the policies do not read NodeSnapshot::measured_mw, which is kept
  // at the last start / stop / limit change).
  const bool measured = Measured();
  const double amp = opts_.power_noise * std::sqrt(3.0);
  bool committed_down = false;
  for (size_t i = 0; i < run_.size(); ++i) {
    RunExtra& x = run_[i];
    const agent::SimGpuOptions& mo = model_opts_[x.model];
    x.energy_mwms += static_cast<uint64_t>(x.draw_mw) * x.gpus *
                     static_cast<uint64_t>(now_ - x.energy_last_ms);
    x.energy_last_ms = now_;
    double load = x.load;
    if (amp > 0) {
      // splitmix64: cheap, deterministic.
      uint64_t z = (noise_state_ += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      z ^= z >> 31;
      const double u = static_cast<double>(z >> 11) * 0x1.0p-53 * 2.0 - 1.0;
      load *= 1.0 + amp * u;
    }
    x.noisy_want_mw = agent::SimGpuPowerMw(mo, load, mo.tdp_mw);
    const int64_t old_draw = x.draw_mw;
    x.draw_mw = std::min(x.noisy_want_mw, x.limit_mw);
    int64_t dc = 0;
    if (measured) {
      const int64_t w = std::min(opts_.tick_ms, now_ - x.start_ms);
      x.window.Add(x.draw_mw, w, opts_.measured_window);
      const int64_t c = MeasuredCommitted(x, x.limit_mw);
      dc = c - x.committed_per_gpu;
      if (dc < 0) committed_down = true;
      x.committed_per_gpu = c;
    }
    const int64_t dm = x.draw_mw - old_draw;
    if (dm == 0 && dc == 0) continue;
    if (x.leaf >= 0) {
      leaf_dm_[x.leaf] += x.gpus * dm;
      leaf_dc_[x.leaf] += x.gpus * dc;
      continue;
    }
    for (const auto& [leaf, gpus] : x.share_leaves) {
      const int64_t g = gpus;
      leaf_dm_[leaf] += g * dm;
      leaf_dc_[leaf] += g * dc;
    }
  }
  for (size_t d = snap_.domains.size(); d-- > 0;) {
    if (leaf_dm_[d] == 0 && leaf_dc_[d] == 0) continue;
    snap_.domains[d].measured_mw += leaf_dm_[d];
    snap_.domains[d].committed_mw += leaf_dc_[d];
    const int p = snap_.domains[d].parent;
    if (p >= 0) {
      leaf_dm_[p] += leaf_dm_[d];
      leaf_dc_[p] += leaf_dc_[d];
    }
    leaf_dm_[d] = 0;
    leaf_dc_[d] = 0;
  }
  if (committed_down) dirty_ = true;
}

void Sim::SyncRunning() {
  for (size_t i = 0; i < run_.size(); ++i) {
    scheduler::RunningJob& r = snap_.running[i];
    r.measured_per_gpu_mw = run_[i].draw_mw;
    const int64_t committed = run_[i].committed_per_gpu * run_[i].gpus;
    if (committed != r.committed_mw) kept_.RunningChanged(i);
    r.committed_mw = committed;
  }
}

void Sim::RunPowerLoop() {
  bool over = false;
  for (const scheduler::DomainSnapshot& d : snap_.domains) {
    if (d.measured_mw > d.cap_mw) {
      over = true;
      break;
    }
  }
  if (!over && throttled_jobs_ == 0) return;
  snap_.now = At(now_);
  SyncRunning();
  scheduler::PowerControlConfig cfg;
  cfg.restore_margin_permille = opts_.restore_margin_permille;
  if (Plus()) {
    cfg = scheduler::MeasuredPlusPower(
        cfg, absl::Milliseconds(opts_.min_raise_interval_ms));
  }
  ++res_.control_calls;
  const std::vector<scheduler::PowerAction> actions =
      scheduler::ControlPower(snap_, cfg);
  for (const scheduler::PowerAction& a : actions) {
    int job = -1;
    if (!absl::SimpleAtoi(a.job_id, &job) || job < 0 ||
        job >= static_cast<int>(jobs_.size()) ||
        jobs_[job].state != JobRt::kRunning) {
      continue;
    }
    ++res_.events;
    switch (a.kind) {
      case scheduler::PowerAction::kThrottle:
        ++res_.throttle_actions;
        SetLimit(job, a.new_limit_mw);
        break;
      case scheduler::PowerAction::kRestore:
        ++res_.restore_actions;
        SetLimit(job, a.new_limit_mw);
        break;
      case scheduler::PowerAction::kPreempt:
        EndAttempt(job, kPreemptPower);
        break;
    }
  }
}

void Sim::AdaptMargins() {
  for (size_t d = 0; d < snap_.domains.size(); ++d) {
    scheduler::DomainSnapshot& dom = snap_.domains[d];
    if (dom.measured_mw > dom.cap_mw) ++breaches_[d];
    if (!Plus()) continue;
    const int64_t old = dom.admission_reserve_mw;
    margin_[d] = scheduler::AdaptMargin(margin_[d], dom.measured_mw, dom.cap_mw,
                                        dom.committed_mw, opts_.margin);
    dom.admission_reserve_mw =
        scheduler::MarginReserveMw(margin_[d], dom.cap_mw);
    if (dom.admission_reserve_mw < old) dirty_ = true;
  }
}

void Sim::FreeChanged(int node) {
  kept_.NodeChanged(node);
  const int leaf = cluster_.nodes[node].leaf;
  if (leaf >= 0 && !leaf_stale_[leaf]) {
    leaf_stale_[leaf] = true;
    stale_leaves_.push_back(leaf);
  }
}

void Sim::ComputeStrandedInputs() {
  // Per domain: the most free GPUs on one node below it and the idle draw
  // of the free GPUs below it (the nodes' own leaves, then up the tree).
  for (int d : stale_leaves_) {
    leaf_stale_[d] = false;
    uint32_t most = 0;
    int64_t idle = 0;
    for (int n : leaf_nodes_[d]) {
      const uint32_t free =
          static_cast<uint32_t>(std::popcount(snap_.nodes[n].free_gpus));
      most = std::max(most, free);
      idle += free * cluster_.models[cluster_.nodes[n].model].idle_mw;
    }
    own_free_[d] = most;
    own_idle_[d] = idle;
  }
  stale_leaves_.clear();
  scratch_free_ = own_free_;
  scratch_idle_ = own_idle_;
  for (int d : children_first_) {
    const int p = snap_.domains[d].parent;
    if (p < 0) continue;
    scratch_free_[p] = std::max(scratch_free_[p], scratch_free_[d]);
    scratch_idle_[p] += scratch_idle_[d];
  }
  if (pending_sampled_ == pending_version_) return;
  pending_sampled_ = pending_version_;
  // Per GPUs-per-node g: the smallest per-node need (increments over idle,
  // as the policy sees them) of a pending job with at most g GPUs per node,
  // at its limit and at its floor (ClassStartFloorMw, the lowest it may
  // start at, with the class floors on, whatever the policy). A job of any
  // model is taken as the first model's.
  constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  at_limit_.fill(kNone);
  at_floor_.fill(kNone);
  scheduler::ClassFloors floors = opts_.class_floors;
  floors.enabled = true;
  size_t seen = 0;
  for (const PendKey& k : pending_) {
    if (seen++ >= opts_.queue_window) break;
    const SimJobSpec& sj = work_.jobs[k.job];
    const int m = sj.gpu_model.empty() ? (cluster_.models.empty() ? -1 : 0)
                                       : cluster_.ModelIndex(sj.gpu_model);
    if (m < 0 || sj.gpus_per_node == 0 || sj.gpus_per_node > 64) continue;
    const scheduler::GpuModelSpec& spec = snap_.gpu_models[m];
    const int64_t idle = acc_idle_[m];
    const int64_t hi = std::max(spec.min_limit_mw, spec.max_limit_mw);
    const int64_t limit =
        std::clamp(sj.power_mw > 0 ? sj.power_mw - idle : spec.tdp_mw,
                   spec.min_limit_mw, hi);
    int64_t floor =
        scheduler::ClassStartFloorMw(sj.cls, limit, spec.min_limit_mw, floors);
    if (sj.min_power_mw > 0) {
      floor = std::clamp(sj.min_power_mw - idle, spec.min_limit_mw, limit);
    } else if (opts_.throttleable) {
      floor = std::min(limit, spec.min_limit_mw);
    }
    const uint32_t g = sj.gpus_per_node;
    at_limit_[g] = std::min(at_limit_[g], limit * g);
    at_floor_[g] = std::min(at_floor_[g], floor * g);
  }
  for (size_t g = 1; g < at_limit_.size(); ++g) {
    at_limit_[g] = std::min(at_limit_[g], at_limit_[g - 1]);
    at_floor_[g] = std::min(at_floor_[g], at_floor_[g - 1]);
  }
}

void Sim::SampleStranded() {
  constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  if (sampled_version_ != state_version_) {
    sampled_version_ = state_version_;
    ComputeStrandedInputs();
  }
  for (size_t d = 0; d < snap_.domains.size(); ++d) {
    const scheduler::DomainSnapshot& dom = snap_.domains[d];
    if (dom.cap_mw <= 0 || dom.cap_mw >= kUnlimitedMw / 2) continue;
    DomainPowerSample ps;
    ps.cap_mw = dom.cap_mw;
    ps.reserve_mw = dom.admission_reserve_mw;
    ps.committed_mw = dom.committed_mw;
    ps.measured_mw = dom.measured_mw;
    ps.pending = !pending_.empty();
    const uint32_t g = std::min<uint32_t>(64, scratch_free_[d]);
    ps.need_at_limit_mw = at_limit_[g] == kNone ? -1 : at_limit_[g];
    ps.need_at_floor_mw = at_floor_[g] == kNone ? -1 : at_floor_[g];
    const StrandedSplit sp = SplitStranded(ps);
    std::array<double, 7>& acc = strand_sum_[d];
    acc[0] += sp.margin_mw;
    acc[1] += sp.fragmentation_mw;
    acc[2] += sp.not_throttleable_mw;
    acc[3] += sp.gpus_full_mw;
    acc[4] += sp.no_demand_mw;
    acc[5] += sp.usable_mw;
    acc[6] += scratch_idle_[d];
    const int l = level_of_[d];
    const double share = static_cast<double>(dom.measured_mw) / dom.cap_mw;
    share_sum_[l] += share;
    ++share_n_[l];
    const int bin =
        std::clamp(static_cast<int>(share * kShareBins), 0, 2 * kShareBins);
    ++share_hist_[l][bin];
  }
  ++strand_samples_;
}

void Sim::RunScheduler() {
  if (pending_.empty() || !dirty_) return;
  if (opts_.schedule_interval_ms > 0 && last_schedule_ms_ >= 0 &&
      now_ - last_schedule_ms_ < opts_.schedule_interval_ms) {
    return;
  }
  last_schedule_ms_ = now_;
  dirty_ = false;
  snap_.now = At(now_);
  // Schedule reads committed_mw, not measured_per_gpu_mw; only measured
  // commitments change it between starts and limit changes.
  if (Measured()) SyncRunning();
  if (now_ >= next_contract_refresh_) {
    next_contract_refresh_ = (now_ / kMsPerDay + 1) * kMsPerDay;
    auto contracted = ledger_.ContractedGpus(At(now_));
    for (auto& [name, info] : snap_.tenants) {
      auto it = contracted.find(name);
      if (it == contracted.end()) {
        info.contracted_gpus.clear();
      } else {
        info.contracted_gpus = it->second;
      }
    }
  }
  for (size_t t = 0; t < work_.tenants.size(); ++t) {
    snap_.tenants[work_.tenants[t]].recent_gpu_hours =
        TenantRecent(static_cast<uint32_t>(t)) / 3600.0;
  }
  std::vector<scheduler::PendingJob> pending;
  pending.reserve(std::min<size_t>(pending_.size(), opts_.queue_window));
  for (const PendKey& k : pending_) {
    if (pending.size() >= opts_.queue_window) break;
    const SimJobSpec& s = work_.jobs[k.job];
    scheduler::PendingJob p;
    p.id = absl::StrCat(k.job);
    p.tenant = work_.tenants[s.tenant];
    p.cls = s.cls;
    p.priority = s.priority;
    p.seq = k.job;
    p.gpus_per_node = s.gpus_per_node;
    p.nodes = s.nodes;
    p.gpu_model = s.gpu_model;
    p.power_mw = s.power_mw;
    p.min_power_mw = s.min_power_mw;
    if (p.min_power_mw == 0 && opts_.throttleable) {
      p.min_power_mw = 1;  // clamped up to the model's minimum limit
    }
    // Limits as increments over idle (scheduler/shared_rules.h).
    bool explicit_power = false;
    const int64_t offset = IdleOffset(static_cast<int>(k.job), &explicit_power);
    p.power_mw = scheduler::OffsetPower(p.power_mw, offset);
    p.min_power_mw = scheduler::OffsetPower(p.min_power_mw, offset);
    p.max_runtime = absl::Milliseconds(MaxRuntimeMs(static_cast<int>(k.job)));
    pending.push_back(std::move(p));
  }
  scheduler::PolicyConfig cfg;
  cfg.enforce_power = opts_.policy != PolicyKind::kOblivious;
  cfg.backfill = opts_.backfill;
  cfg.allow_preemption = opts_.allow_preemption;
  cfg.max_jobs_considered = 0;
  if (Plus()) {
    cfg = scheduler::MeasuredPlusPolicy(cfg, opts_.class_floors);
    cfg.class_floors.enabled = opts_.class_floors.enabled;
    cfg.power_fit = opts_.power_fit;
  }
  ++res_.schedule_calls;
  const scheduler::Decisions d =
      scheduler::Schedule(snap_, pending, cfg, &kept_);
  if (opts_.verify_kept_state && kept_mismatch_.empty() &&
      !scheduler::SameDecisions(d, scheduler::Schedule(snap_, pending, cfg))) {
    kept_mismatch_ =
        absl::StrCat("Schedule call ", res_.schedule_calls, " at ", now_,
                     " ms: the kept state gave other decisions than a fresh "
                     "build (a change of the snapshot not marked on it?)");
  }
  for (const scheduler::Wait& w : d.waits) {
    if (w.kind != scheduler::WaitKind::kInfeasible) continue;
    // Can never run as specified (unknown model, too many GPUs): dropped.
    int job = -1;
    if (!absl::SimpleAtoi(w.job_id, &job) || job < 0 ||
        job >= static_cast<int>(jobs_.size()) ||
        jobs_[job].state != JobRt::kPending) {
      continue;
    }
    const SimJobSpec& s = work_.jobs[job];
    pending_.erase(PendKey{static_cast<uint8_t>(s.cls), -s.priority,
                           static_cast<uint32_t>(job)});
    jobs_[job].state = JobRt::kDone;
    ++state_version_;
    ++pending_version_;
    ++res_.jobs_infeasible;
    if (res_.infeasible_examples.size() < 3) {
      res_.infeasible_examples.push_back(absl::StrCat(s.id, ": ", w.reason));
    }
  }
  for (const scheduler::Placement& p : d.placements) {
    int job = -1;
    if (!absl::SimpleAtoi(p.job_id, &job) || job < 0 ||
        job >= static_cast<int>(jobs_.size()) ||
        jobs_[job].state != JobRt::kPending) {
      continue;
    }
    ++res_.events;
    if (!p.preempt.empty()) {
      // As the daemon: stop the victims now, place the job next round.
      for (const std::string& v : p.preempt) {
        int victim = -1;
        if (absl::SimpleAtoi(v, &victim) && victim >= 0 &&
            victim < static_cast<int>(jobs_.size()) &&
            jobs_[victim].state == JobRt::kRunning) {
          EndAttempt(victim, kPreemptReserved);
        }
      }
      continue;
    }
    StartJob(job, p);
  }
}

void Sim::RecordUsageUpTo(int64_t ms) {
  const std::vector<v1::UsageEvent>& ev = *in_.usage;
  std::vector<v1::UsageEvent> batch;
  while (next_usage_ < ev.size()) {
    const int64_t t = std::max<int64_t>(
        0, absl::ToInt64Milliseconds(FromProtoTime(ev[next_usage_].time()) -
                                     opts_.start));
    if (t > ms || batch.size() >= 1000) break;
    batch.push_back(ev[next_usage_++]);
  }
  if (batch.empty()) return;
  clock_.Set(At(std::max(ms, now_)));
  res_.events += static_cast<int64_t>(batch.size());
  auto r = ledger_.RecordUsage(batch, "operator");
  if (r.ok()) {
    usage_recorded_ += r->accepted();
  } else {
    if (billing_errors_.size() < 5) {
      billing_errors_.push_back(std::string(r.status().message()));
    }
    ++billing_error_count_;
  }
}

void Sim::Tick() {
  ++ticks_;
  ++res_.events;
  IntegrateAll(now_);
  Telemetry();
  // Timeline: mean site power over the last tick.
  const DomStats& root = dstats_[0];
  const int64_t dt = now_ - tl_last_ms_;
  const bool in_range =
      now_ > opts_.timeline_from_ms &&
      (opts_.timeline_to_ms <= 0 || now_ <= opts_.timeline_to_ms);
  if (dt > 0 && in_range) {
    tl_t_.push_back(static_cast<float>(now_ / 1000.0));
    tl_power_.push_back(static_cast<float>(
        static_cast<double>(root.energy - tl_last_energy_) / dt / 1000.0));
    tl_cap_.push_back(static_cast<float>(snap_.domains[0].cap_mw / 1000.0));
    tl_gpus_.push_back(static_cast<float>(running_gpus_));
    tl_pending_.push_back(static_cast<float>(pending_.size()));
  }
  tl_last_energy_ = root.energy;
  tl_last_ms_ = now_;
  AdaptMargins();
  if (opts_.policy != PolicyKind::kOblivious) RunPowerLoop();
  RunScheduler();
  SampleStranded();
}

void Sim::Progress(bool force) {
  if (!opts_.progress) return;
  const auto t = std::chrono::steady_clock::now();
  if (!force && t - last_progress_ < std::chrono::seconds(2)) return;
  last_progress_ = t;
  const double wall = std::chrono::duration<double>(t - wall_start_).count();
  std::fprintf(stderr,
               "joule-sim [%s] sim %.1f h, %lld/%zu jobs done, %zu running, "
               "%zu pending, %.0f events/s, wall %.1f s\n",
               res_.policy.c_str(), now_ / 3.6e6,
               static_cast<long long>(res_.jobs_completed +
                                      res_.jobs_killed_max_runtime),
               jobs_.size(), snap_.running.size(), pending_.size(),
               wall > 0 ? res_.events / wall : 0.0, wall);
}

absl::StatusOr<SimResult> Sim::Run() {
  if (absl::Status s = Init(); !s.ok()) return s;
  const std::vector<CapEvent> no_caps;
  const std::vector<CapEvent>& caps =
      in_.cap_events != nullptr ? *in_.cap_events : no_caps;
  const std::vector<v1::UsageEvent> no_usage;
  const std::vector<v1::UsageEvent>& usage =
      in_.usage != nullptr ? *in_.usage : no_usage;
  auto usage_ms = [&](size_t i) {
    return std::max<int64_t>(
        0, absl::ToInt64Milliseconds(FromProtoTime(usage[i].time()) -
                                     opts_.start));
  };
  const size_t njobs = jobs_.size();
  auto next_external = [&]() {
    int64_t t = kNever;
    if (next_arrival_ < njobs) t = work_.jobs[next_arrival_].submit_ms;
    if (next_cap_ < caps.size()) t = std::min(t, caps[next_cap_].time_ms);
    if (next_usage_ < usage.size()) t = std::min(t, usage_ms(next_usage_));
    return t;
  };
  int64_t next_tick = 0;
  {
    const int64_t first = next_external();
    if (first != kNever) next_tick = first / opts_.tick_ms * opts_.tick_ms;
  }
  while (true) {
    // Discrete events up to and including the tick.
    while (true) {
      const int64_t te = next_external();
      const int64_t tc = heap_.empty() ? kNever : heap_.top().t;
      const int64_t t = std::min(te, tc);
      if (t > next_tick || t == kNever) break;
      now_ = t;
      if (tc <= te) {
        const Ev e = heap_.top();
        heap_.pop();
        JobRt& j = jobs_[e.job];
        if (e.version != j.version || j.state != JobRt::kRunning) continue;
        ++res_.events;
        EndAttempt(e.job, e.kill ? kKill : kComplete);
      } else if (next_cap_ < caps.size() && caps[next_cap_].time_ms == t) {
        const CapEvent& c = caps[next_cap_++];
        IntegrateDomain(c.domain, now_);
        snap_.domains[c.domain].cap_mw = c.cap_mw;
        ++res_.events;
        dirty_ = true;
      } else if (next_usage_ < usage.size() && usage_ms(next_usage_) == t) {
        RecordUsageUpTo(t);
      } else {
        ++res_.events;
        Arrive(static_cast<int>(next_arrival_++));
      }
    }
    now_ = next_tick;
    Tick();
    if ((ticks_ & 63) == 0) Progress(false);
    const bool idle = snap_.running.empty();
    const int64_t te = next_external();
    if (idle && te == kNever && (pending_.empty() || !dirty_)) break;
    next_tick += opts_.tick_ms;
    if (idle && (pending_.empty() || !dirty_) && te > next_tick) {
      next_tick = (te + opts_.tick_ms - 1) / opts_.tick_ms * opts_.tick_ms;
    }
    if (opts_.max_sim_ms > 0 && next_tick > opts_.max_sim_ms) break;
  }
  Progress(true);
  if (!kept_mismatch_.empty()) return absl::InternalError(kept_mismatch_);
  SimResult r;
  Finish(&r);
  return r;
}

void Sim::Finish(SimResult* out) {
  SimResult& r = res_;
  const int64_t end = now_;
  IntegrateAll(end);
  // Close the books of attempts still running (max_sim_ms).
  r.jobs_total = static_cast<int64_t>(jobs_.size());
  for (const JobRt& j : jobs_) {
    if (j.state == JobRt::kRunning) ++r.jobs_running_at_end;
    if (j.first_start_ms < 0) ++r.jobs_never_started;
  }
  for (size_t i = 0; i < run_.size(); ++i) {
    const JobRt& j = jobs_[run_[i].job];
    gpu_ms_allocated_ += (end - j.start_ms) * j.gpus;
  }
  r.gpu_hours_allocated = gpu_ms_allocated_ / 3.6e6;
  r.gpu_hours_completed_work = gpu_ms_completed_work_ / 3.6e6;
  r.gpu_hours_lost_to_preemption = gpu_ms_lost_ / 3.6e6;
  const int64_t first_submit = work_.jobs.empty() ? 0 : work_.jobs[0].submit_ms;
  const int64_t last = std::max(last_end_ms_, first_submit);
  r.makespan_s = (last - first_submit) / 1000.0;
  if (!queue_delays_ms_.empty()) {
    double sum = 0;
    for (int64_t d : queue_delays_ms_) sum += d;
    r.queue_delay_mean_s = sum / queue_delays_ms_.size() / 1000.0;
    r.queue_delay_p50_s = NearestRankPercentile(queue_delays_ms_, 50) / 1000.0;
    r.queue_delay_p95_s = NearestRankPercentile(queue_delays_ms_, 95) / 1000.0;
    r.queue_delay_p99_s = NearestRankPercentile(queue_delays_ms_, 99) / 1000.0;
  }
  {
    std::vector<JobDelayInput> in(jobs_.size());
    for (size_t i = 0; i < jobs_.size(); ++i) {
      in[i].submit_ms = work_.jobs[i].submit_ms;
      in[i].first_start_ms = jobs_[i].first_start_ms;
      // Dropped as infeasible: done without ever starting.
      in[i].dropped =
          jobs_[i].state == JobRt::kDone && jobs_[i].first_start_ms < 0;
    }
    const CensoredDelay c = CensoredQueueDelay(in, end);
    r.queue_delay_censored_mean_s = c.mean_s;
    r.queue_delay_censored_p95_s = c.p95_s;
    r.jobs_waiting_at_end = c.censored;
  }
  if (r.jobs_completed > 0) r.slowdown_mean = slowdown_sum_ / r.jobs_completed;
  const double total_gpus = static_cast<double>(cluster_.TotalGpus());
  if (total_gpus > 0 && r.makespan_s > 0) {
    r.gpu_allocation_ratio =
        gpu_ms_allocated_ / (total_gpus * r.makespan_s * 1000.0);
  }
  r.energy_kwh = static_cast<double>(dstats_[0].energy) / 3.6e12;
  r.gpu_energy_kwh = static_cast<double>(gpu_energy_mwms_) / 3.6e12;
  // Levels, in order of first appearance (the root first).
  std::vector<std::string> order;
  absl::flat_hash_map<std::string, size_t> at;
  const double span_ms = std::max<int64_t>(1, end);
  for (size_t d = 0; d < snap_.domains.size(); ++d) {
    const std::string& level = snap_.domains[d].level;
    auto [it, inserted] = at.try_emplace(level, r.levels.size());
    if (inserted) {
      r.levels.push_back(LevelStats{});
      r.levels.back().level = level;
    }
    LevelStats& l = r.levels[it->second];
    const DomStats& s = dstats_[d];
    ++l.domains;
    l.mean_measured_w += static_cast<double>(s.energy) / span_ms / 1000.0;
    l.mean_cap_w += static_cast<double>(s.cap_int) / span_ms / 1000.0;
    l.max_measured_w = std::max(l.max_measured_w, s.max_mw / 1000.0);
    l.max_measured_over_cap = std::max(l.max_measured_over_cap, s.max_ratio);
    l.seconds_over_cap += s.over_ms / 1000.0;
    l.seconds_over_cap_beyond_two_ticks += s.beyond_ms / 1000.0;
    l.watt_seconds_over_cap += static_cast<double>(s.over) / 1e6;
    if (s.over_ms > 0) ++l.domains_ever_over;
    l.tick_breaches += breaches_[d];
    if (strand_samples_ > 0) {
      const std::array<double, 7>& a = strand_sum_[d];
      const double k = 1000.0 * strand_samples_;  // mW-samples -> mean W
      l.stranded_margin_w += a[0] / k;
      l.stranded_fragmentation_w += a[1] / k;
      l.stranded_not_throttleable_w += a[2] / k;
      l.stranded_gpus_full_w += a[3] / k;
      l.stranded_no_demand_w += a[4] / k;
      l.stranded_usable_w += a[5] / k;
      l.idle_floor_w += a[6] / k;
    }
  }
  for (size_t i = 0; i < r.levels.size(); ++i) {
    LevelStats& l = r.levels[i];
    l.mean_measured_w /= l.domains;
    l.mean_cap_w /= l.domains;
    for (double* v :
         {&l.stranded_margin_w, &l.stranded_fragmentation_w,
          &l.stranded_not_throttleable_w, &l.stranded_gpus_full_w,
          &l.stranded_no_demand_w, &l.stranded_usable_w, &l.idle_floor_w}) {
      *v /= l.domains;
    }
    if (i < share_n_.size() && share_n_[i] > 0) {
      l.used_share_mean = share_sum_[i] / share_n_[i];
      const std::vector<int64_t>& h = share_hist_[i];
      auto pct = [&](double p) {
        const int64_t want = static_cast<int64_t>(
            std::ceil(p / 100.0 * static_cast<double>(share_n_[i])));
        int64_t cum = 0;
        for (size_t b = 0; b < h.size(); ++b) {
          cum += h[b];
          if (cum >= want) return (b + 0.5) / kShareBins;
        }
        return 2.0;
      };
      l.used_share_p50 = pct(50);
      l.used_share_p95 = pct(95);
    }
  }
  // Billing: every tenant's statements over the simulated months.
  clock_.Set(At(end));
  absl::flat_hash_set<std::string> tenants(work_.tenants.begin(),
                                           work_.tenants.end());
  if (in_.pricing != nullptr) {
    for (const v1::Contract& c : in_.pricing->contracts) {
      tenants.insert(c.tenant());
    }
  }
  if (in_.usage != nullptr) {
    for (const v1::UsageEvent& e : *in_.usage) tenants.insert(e.tenant());
  }
  std::vector<std::string> sorted(tenants.begin(), tenants.end());
  std::sort(sorted.begin(), sorted.end());
  const billing::Period last_period = billing::Period::Of(At(end));
  for (const std::string& t : sorted) {
    for (billing::Period p = billing::Period::Of(opts_.start); p <= last_period;
         p = p.Next()) {
      auto st = ledger_.GetStatement(t, p.ToString());
      if (!st.ok()) {
        if (billing_errors_.size() < 5) {
          billing_errors_.push_back(std::string(st.status().message()));
        }
        ++billing_error_count_;
        continue;
      }
      for (const auto& [model, cents] : st->subtotal_cents()) {
        r.revenue_cents[model] += cents;
      }
      r.revenue_total_cents += st->total_cents();
    }
  }
  auto backlog = ledger_.Backlog(At(end));
  if (backlog.ok()) r.backlog_cents = backlog->total().backlog_cents();
  r.usage_events = usage_recorded_;
  r.billing_errors = billing_errors_;
  if (billing_error_count_ > static_cast<int64_t>(billing_errors_.size())) {
    r.billing_errors.push_back(
        absl::StrCat(billing_error_count_ - billing_errors_.size(), " more"));
  }
  // Timeline, averaged into at most timeline_points buckets.
  const size_t n = tl_t_.size();
  const size_t buckets =
      std::max<size_t>(1, std::min<size_t>(n, opts_.timeline_points));
  for (size_t b = 0; b < buckets && n > 0; ++b) {
    const size_t lo = b * n / buckets,
                 hi = std::max(lo + 1, (b + 1) * n / buckets);
    TimelinePoint p;
    for (size_t i = lo; i < hi; ++i) {
      p.site_measured_w += tl_power_[i];
      p.site_cap_w += tl_cap_[i];
      p.running_gpus += tl_gpus_[i];
      p.pending_jobs += tl_pending_[i];
    }
    const double k = static_cast<double>(hi - lo);
    p.time_s = tl_t_[hi - 1];
    p.site_measured_w /= k;
    p.site_cap_w /= k;
    p.running_gpus /= k;
    p.pending_jobs /= k;
    r.timeline.push_back(p);
  }
  r.sim_seconds = end / 1000.0;
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                           wall_start_)
                 .count();
  r.events_per_s = r.wall_s > 0 ? r.events / r.wall_s : 0;
  *out = std::move(r);
}

}  // namespace

absl::StatusOr<SimResult> Simulate(const SimInputs& inputs,
                                   const SimOptions& options) {
  if (inputs.cluster == nullptr || inputs.workload == nullptr) {
    return absl::InvalidArgumentError("Simulate: cluster and workload needed");
  }
  if (absl::Status s = inputs.cluster->Validate(); !s.ok()) return s;
  if (options.tick_ms <= 0) {
    return absl::InvalidArgumentError("--tick: must be > 0");
  }
  for (const SimJobSpec& j : inputs.workload->jobs) {
    if (j.tenant >= inputs.workload->tenants.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("job ", j.id, ": tenant index out of range"));
    }
  }
  auto sim = std::make_unique<Sim>(inputs, options);
  return sim->Run();
}

}  // namespace joule::sim
