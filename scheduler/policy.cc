#include "scheduler/policy.h"

#include <algorithm>
#include <bit>
#include <functional>
#include <limits>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/units.h"
#include "scheduler/cluster_state.h"
#include "scheduler/quota.h"
#include "scheduler/power_options.h"

namespace joule::scheduler {
namespace {

using internal::Blocker;
using internal::ClusterState;
using internal::kMaxGpusPerNode;
using internal::NodeAlloc;
using internal::Shape;

// One way to run a pending job: a model and the power it resolves to.
struct Option {
  int64_t limit_mw = 0;
  int64_t min_mw = 0;
  Shape shape;
};

// A pending job after resolution.
struct Job {
  const PendingJob* src = nullptr;
  ServiceClass eff = ServiceClass::kOnDemand;
  double share_key = 0;
  std::vector<Option> options;
  std::string infeasible;  // non-empty: the kInfeasible reason
};

// A job holding resources in the working state: running in the snapshot or
// placed by this call.
struct Active {
  std::string id;
  ServiceClass cls = ServiceClass::kOnDemand;
  int32_t priority = 0;
  absl::Time start;
  absl::Time end = absl::InfiniteFuture();  // InfiniteFuture = no max_runtime
  std::vector<NodeAlloc> allocs;
  bool from_snapshot = false;
  bool gone = false;  // preempted by this call
};

// Where a job would go: the option used, its nodes, and the shape and
// per-GPU limit it starts at (the option's, or lower when throttled to fit).
struct Found {
  const Option* option = nullptr;
  std::vector<int> nodes;
  Shape shape;
  int64_t limit_mw = 0;
};

Found AtLimit(const Option& o, std::vector<int> nodes) {
  return Found{&o, std::move(nodes), o.shape, o.limit_mw};
}

// The EASY reservation held by the first blocked job.
struct Reservation {
  std::string job_id;
  bool has_shadow = false;
  // No shadow time, but bound to one node (PolicyConfig::reserve_best_node).
  bool bound = false;
  absl::Time shadow;
  absl::flat_hash_set<int> nodes;  // S, with a shadow time or bound
  uint64_t model_bits = 0;         // its models, without a shadow time
  // Domain -> power a (b)-backfilled job may still add there.
  absl::flat_hash_map<int, int64_t> ledger;
};

using ShapeKey = std::tuple<int, uint32_t, uint32_t, int64_t>;

ShapeKey KeyOf(const Shape& s) { return {s.model, s.gpus, s.nodes, s.need_mw}; }

std::string DomainWords(const DomainSnapshot& d) {
  return absl::StrCat(d.level.empty() ? "domain" : d.level, " ", d.name);
}

std::string FormatWait(absl::Duration d) {
  return absl::FormatDuration(absl::Trunc(d, absl::Seconds(1)));
}

class Scheduler {
 public:
  Scheduler(const ClusterSnapshot& snapshot, const PolicyConfig& config)
      : snap_(snapshot),
        config_(config),
        state_(snapshot, config.enforce_power,
               config.committed_at_least_measured, config.power_fit),
        quota_(snapshot) {}

  Decisions Run(absl::Span<const PendingJob> pending);

 private:
  Job Resolve(const PendingJob& p) const;
  void AssignEffectiveClasses(std::vector<Job>& jobs) const;
  void LoadRunning();

  void Process(const Job& job);
  std::optional<Found> FindAny(const Job& job, bool use_memo);
  // Throttle-to-fit (rule 4): the first lower limit step that fits, raised
  // to the largest limit that fits on the chosen nodes.
  std::optional<Found> FindThrottled(const Job& job, bool use_memo);
  // Whether the reservation lets `found` start now; fills the ledger debits.
  bool Admit(const Job& job, const Found& found,
             std::vector<std::pair<int, int64_t>>* debits) const;
  // `masks` (one per node of `found`): exactly these GPUs (a claim).
  void Commit(const Job& job, const Found& found,
              const std::vector<std::pair<int, int64_t>>& debits,
              std::vector<std::string> preempt,
              const std::vector<uint64_t>* masks = nullptr);
  // The GPUs of preempted `victims` that the claimant does not take stay
  // unavailable for the rest of the call: they are free only once the
  // victims have stopped (and then go to whoever is next).
  void HoldLeftovers(absl::Span<const size_t> victims) {
    for (size_t i : victims) {
      for (const NodeAlloc& a : active_[i].allocs) {
        if (a.node < 0 || state_.node_leaf(a.node) < 0) continue;
        const uint64_t left = a.gpus & state_.free_gpus(a.node);
        if (left == 0) continue;
        const NodeAlloc hold{a.node, left, 0};
        state_.Allocate({&hold, 1});
      }
    }
  }
  // Holds the free GPUs of every claim (claims.h).
  void SetUpClaims();
  // A claimant: true when handled (placed or waiting on its claim); false
  // when its claim was dropped and it is to be scheduled as usual.
  bool ProcessClaim(const Job& job);
  bool TryPreempt(const Job& job);
  // TryPreempt for a single-node job; `key` names its shapes.
  bool PreemptForOneNode(const Job& job, const std::string& key,
                         absl::Span<const size_t> victims);
  void Reserve(const Job& job, Wait& wait);
  // Reserve without a shadow time, bound to the node closest to fitting.
  void ReserveBestNode(const Job& job, Reservation& res, Wait& wait) const;
  // Why `job` cannot start now; memoized per shape until resources free up.
  Wait Describe(const Job& job);
  Wait DescribeNow(const Job& job) const;
  void AddWait(const Job& job, WaitKind kind, std::string reason) {
    out_.waits.push_back(Wait{job.src->id, kind, std::move(reason)});
  }

  // Releases/re-allocates `seq` so that exactly its first `target` jobs are
  // released; `*released` is how many are now. Preempted jobs are skipped.
  void MoveTo(absl::Span<const size_t> seq, size_t target, size_t* released) {
    while (*released < target) {
      const Active& a = active_[seq[(*released)++]];
      if (!a.gone) state_.Release(a.allocs);
    }
    while (*released > target) {
      const Active& a = active_[seq[--(*released)]];
      if (!a.gone) state_.Allocate(a.allocs);
    }
  }

  const ClusterSnapshot& snap_;
  const PolicyConfig& config_;
  ClusterState state_;
  QuotaLedger quota_;
  std::vector<Active> active_;
  absl::flat_hash_set<ShapeKey> no_fit_;  // shapes known not to fit now
  absl::flat_hash_map<std::string, Wait> describe_memo_;
  // Shapes that do not fit even after preempting every candidate.
  absl::flat_hash_set<std::string> no_preempt_fit_;
  // Snapshot jobs that may be preempted, most preemptable first.
  std::optional<std::vector<size_t>> victim_order_;
  size_t victim_start_ = 0;  // entries before it are all preempted
  std::optional<Reservation> res_;
  // Claims by claimant id: their status and the free GPUs held for them.
  struct ClaimWork {
    const ClaimSnapshot* src = nullptr;
    ClaimStatus status;
    std::vector<NodeAlloc> held;
    bool seen = false;  // its claimant was processed
  };
  absl::flat_hash_map<std::string, ClaimWork> claims_;
  Decisions out_;
};

Job Scheduler::Resolve(const PendingJob& p) const {
  Job job;
  job.src = &p;
  job.eff = p.cls;
  auto tenant = snap_.tenants.find(p.tenant);
  if (tenant != snap_.tenants.end()) {
    job.share_key = tenant->second.recent_gpu_hours /
                    std::max<uint32_t>(tenant->second.weight, 1);
  }
  if (p.gpus_per_node == 0 || p.nodes == 0) {
    job.infeasible = "requests no GPUs";
    return job;
  }
  std::vector<int> models;
  if (p.gpu_model.empty()) {
    for (int m = 0; m < state_.model_count(); ++m) models.push_back(m);
  } else {
    const int m = state_.ModelIndex(p.gpu_model);
    if (m < 0) {
      job.infeasible = absl::StrCat("unknown GPU model \"", p.gpu_model, "\"");
      return job;
    }
    models.push_back(m);
  }
  uint32_t largest = 0;
  int64_t most_nodes = 0;
  for (int m : models) {
    largest = std::max(largest, state_.MaxGpus(m));
    const int64_t have = p.gpus_per_node > kMaxGpusPerNode
                             ? 0
                             : state_.NodesWithGpus(m, p.gpus_per_node);
    most_nodes = std::max(most_nodes, have);
    if (have < p.nodes) continue;
    const GpuModelSpec& spec = snap_.gpu_models[m];
    const int64_t lo = spec.min_limit_mw;
    const int64_t hi = std::max(spec.min_limit_mw, spec.max_limit_mw);
    Option opt;
    opt.limit_mw =
        std::clamp(p.power_mw > 0 ? p.power_mw : spec.tdp_mw, lo, hi);
    if (p.efficiency) {
      opt.limit_mw = EfficiencyLimitMw(opt.limit_mw, lo,
                                       p.efficiency_knee_permille > 0
                                           ? p.efficiency_knee_permille
                                           : config_.efficiency_knee_permille);
    }
    opt.min_mw =
        p.min_power_mw > 0
            ? std::clamp(p.min_power_mw, lo, opt.limit_mw)
            : ClassFloorMw(p.cls, opt.limit_mw, lo, config_.class_floors);
    opt.shape = Shape{m, p.gpus_per_node, p.nodes,
                      opt.limit_mw * static_cast<int64_t>(p.gpus_per_node)};
    job.options.push_back(opt);
  }
  if (job.options.empty()) {
    const std::string what =
        p.gpu_model.empty() ? std::string("GPUs of any model") : p.gpu_model;
    if (largest < p.gpus_per_node) {
      job.infeasible = absl::StrCat("no node has ", p.gpus_per_node, " ", what,
                                    " (largest has ", largest, ")");
    } else {
      job.infeasible =
          absl::StrCat("gang needs ", p.nodes, " nodes with ", p.gpus_per_node,
                       " ", what, "; the cluster has ", most_nodes);
    }
  }
  return job;
}

void Scheduler::AssignEffectiveClasses(std::vector<Job>& jobs) const {
  // (tenant, model) -> reserved GPUs in use or promised in this call.
  absl::flat_hash_map<std::pair<std::string, std::string>, int64_t> used;
  for (const RunningJob& r : snap_.running) {
    if (r.cls != ServiceClass::kReserved) continue;
    int64_t gpus = 0;
    for (const JobShare& s : r.shares) gpus += s.gpus.size();
    used[{r.tenant, r.gpu_model}] += gpus;
  }
  std::vector<Job*> reserved;
  for (Job& j : jobs) {
    if (j.src->cls == ServiceClass::kReserved && j.infeasible.empty()) {
      reserved.push_back(&j);
    }
  }
  std::sort(reserved.begin(), reserved.end(), [](const Job* a, const Job* b) {
    return std::make_tuple(-static_cast<int64_t>(a->src->priority),
                           a->src->seq) <
           std::make_tuple(-static_cast<int64_t>(b->src->priority),
                           b->src->seq);
  });
  for (Job* j : reserved) {
    const PendingJob& p = *j->src;
    j->eff = ServiceClass::kOnDemand;
    if (p.gpu_model.empty()) continue;
    auto tenant = snap_.tenants.find(p.tenant);
    if (tenant == snap_.tenants.end()) continue;
    auto contract = tenant->second.contracted_gpus.find(p.gpu_model);
    if (contract == tenant->second.contracted_gpus.end()) continue;
    const int64_t gpus =
        static_cast<int64_t>(p.gpus_per_node) * static_cast<int64_t>(p.nodes);
    int64_t& in_use = used[{p.tenant, p.gpu_model}];
    if (in_use + gpus <= static_cast<int64_t>(contract->second)) {
      in_use += gpus;
      j->eff = ServiceClass::kReserved;
    }
  }
}

void Scheduler::LoadRunning() {
  const int num_nodes = static_cast<int>(snap_.nodes.size());
  for (const RunningJob& r : snap_.running) {
    Active a;
    a.id = r.id;
    a.cls = r.cls;
    a.priority = r.priority;
    a.start = r.start_time;
    if (r.max_runtime > absl::ZeroDuration()) {
      a.end = r.start_time + r.max_runtime;
    }
    a.from_snapshot = true;
    int64_t total_gpus = 0;
    for (const JobShare& s : r.shares) total_gpus += s.gpus.size();
    int64_t assigned = 0;
    int64_t gpus_seen = 0;
    for (size_t i = 0; i < r.shares.size(); ++i) {
      const JobShare& s = r.shares[i];
      gpus_seen += s.gpus.size();
      // Split committed_mw by GPUs; the last share takes the remainder.
      const int64_t upto =
          total_gpus == 0 ? 0 : r.committed_mw * gpus_seen / total_gpus;
      const int64_t power = i + 1 == r.shares.size() ? r.committed_mw - assigned
                                                     : upto - assigned;
      assigned += power;
      if (s.node < 0 || s.node >= num_nodes) continue;
      uint64_t mask = 0;
      for (uint32_t gpu : s.gpus) {
        if (gpu < state_.gpu_count(s.node)) mask |= uint64_t{1} << gpu;
      }
      a.allocs.push_back(NodeAlloc{s.node, mask, power});
    }
    active_.push_back(std::move(a));
  }
}

void Scheduler::SetUpClaims() {
  for (const ClaimSnapshot& c : snap_.claims) {
    ClaimWork w;
    w.src = &c;
    w.status = CheckClaim(c, snap_);
    if (w.status.kind != ClaimStatus::kInvalid) {
      for (size_t i = 0; i < c.shares.size(); ++i) {
        const uint64_t v = w.status.vacant[i];
        if (v == 0) continue;
        w.held.push_back(NodeAlloc{
            c.shares[i].node, v,
            state_.enforce_power() ? c.power_per_gpu_mw * std::popcount(v)
                                   : 0});
      }
      state_.Allocate(w.held);
    }
    claims_[c.job_id] = std::move(w);
  }
}

bool Scheduler::ProcessClaim(const Job& job) {
  auto it = claims_.find(job.src->id);
  if (it == claims_.end() || it->second.seen) return false;
  ClaimWork& w = it->second;
  w.seen = true;
  const ClaimSnapshot& c = *w.src;
  auto drop = [&](std::string why) {
    state_.Release(w.held);
    w.held.clear();
    no_fit_.clear();  // the held GPUs are free again
    describe_memo_.clear();
    out_.dropped_claims.push_back(
        Wait{job.src->id, WaitKind::kRetryLater, std::move(why)});
    return false;
  };
  if (w.status.kind == ClaimStatus::kInvalid) return drop(w.status.reason);
  if (!job.infeasible.empty()) return drop(job.infeasible);
  // The option of the claimed shape: the claimed nodes' model, as many GPUs
  // on each, as many nodes.
  const int model = state_.node_model(c.shares[0].node);
  const uint32_t per_node = std::popcount(w.status.claimed[0]);
  bool uniform = true;
  for (size_t i = 0; i < c.shares.size(); ++i) {
    uniform = uniform && state_.node_model(c.shares[i].node) == model &&
              std::popcount(w.status.claimed[i]) ==
                  static_cast<int>(per_node);
  }
  const Option* opt = nullptr;
  for (const Option& o : job.options) {
    if (uniform && o.shape.model == model && o.shape.gpus == per_node &&
        o.shape.nodes == c.shares.size()) {
      opt = &o;
    }
  }
  if (opt == nullptr) return drop("the job no longer matches the GPUs it claimed");
  if (w.status.kind == ClaimStatus::kWaiting) {
    AddWait(job, WaitKind::kRetryLater, ClaimWaitReason(c, w.status, snap_));
    return true;
  }
  // Every victim is gone: the claimant gets exactly its claimed GPUs.
  state_.Release(w.held);
  w.held.clear();
  std::vector<int> nodes;
  for (const JobShare& s : c.shares) nodes.push_back(s.node);
  std::optional<Found> found;
  if (state_.Fits(opt->shape, nodes)) {
    found = AtLimit(*opt, nodes);
  } else if (config_.throttle_to_fit && state_.enforce_power() &&
             opt->min_mw < opt->limit_mw) {
    const int64_t steps = std::max<uint32_t>(1, config_.throttle_steps);
    for (int64_t k = 1; k <= steps && !found; ++k) {
      const int64_t step_mw =
          opt->limit_mw - k * (opt->limit_mw - opt->min_mw) / steps;
      Shape shape = opt->shape;
      shape.need_mw = step_mw * static_cast<int64_t>(shape.gpus);
      if (!state_.Fits(shape, nodes)) continue;
      absl::flat_hash_map<int, int64_t> gpus_under;
      for (int n : nodes) {
        for (int d = state_.node_leaf(n); d >= 0; d = state_.parent(d)) {
          gpus_under[d] += shape.gpus;
        }
      }
      std::vector<std::pair<int64_t, int64_t>> room;
      for (const auto& [d, g] : gpus_under) {
        room.push_back({state_.headroom(d), g});
      }
      const int64_t limit =
          LargestFittingLimit(room, step_mw, opt->limit_mw).value_or(step_mw);
      shape.need_mw = limit * static_cast<int64_t>(shape.gpus);
      found = Found{opt, nodes, shape, limit};
    }
  }
  if (!found) {
    std::string why = "its GPUs are free but the power no longer fits";
    for (int n : nodes) {
      for (int d = state_.node_leaf(n); d >= 0; d = state_.parent(d)) {
        if (state_.committed(d) + opt->shape.need_mw > state_.cap(d)) {
          absl::StrAppend(&why, ": ", DomainWords(snap_.domains[d]), " power ",
                          FormatPower(state_.committed(d)), " committed + ",
                          FormatPower(opt->shape.need_mw), " needed > cap ",
                          FormatPower(state_.cap(d)));
          return drop(std::move(why));
        }
      }
    }
    return drop(std::move(why));
  }
  std::vector<uint64_t> masks = w.status.claimed;
  Commit(job, *found, {}, {}, &masks);
  return true;
}

Decisions Scheduler::Run(absl::Span<const PendingJob> pending) {
  LoadRunning();
  SetUpClaims();
  std::vector<Job> jobs;
  jobs.reserve(pending.size());
  for (const PendingJob& p : pending) jobs.push_back(Resolve(p));
  AssignEffectiveClasses(jobs);
  std::vector<size_t> order(jobs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&jobs](size_t a, size_t b) {
    const Job& x = jobs[a];
    const Job& y = jobs[b];
    return std::make_tuple(x.eff, -static_cast<int64_t>(x.src->priority),
                           x.share_key, x.src->seq, a) <
           std::make_tuple(y.eff, -static_cast<int64_t>(y.src->priority),
                           y.share_key, y.src->seq, b);
  });
  const size_t limit =
      config_.max_jobs_considered == 0
          ? order.size()
          : std::min<size_t>(order.size(), config_.max_jobs_considered);
  for (size_t i = 0; i < order.size(); ++i) {
    const Job& job = jobs[order[i]];
    if (i >= limit) {
      // A claim keeps its GPUs while its job waits its turn.
      if (auto c = claims_.find(job.src->id); c != claims_.end()) {
        c->second.seen = true;
      }
      AddWait(job, WaitKind::kRetryLater,
              absl::StrCat("not considered this round (queue position ", i + 1,
                           ", limit ", limit, ")"));
      continue;
    }
    Process(job);
  }
  for (auto& [id, w] : claims_) {
    if (!w.seen) {
      out_.dropped_claims.push_back(
          Wait{id, WaitKind::kRetryLater, "its job is no longer pending"});
    }
  }
  return std::move(out_);
}

std::optional<Found> Scheduler::FindAny(const Job& job, bool use_memo) {
  for (const Option& opt : job.options) {
    if (use_memo && no_fit_.contains(KeyOf(opt.shape))) continue;
    if (auto nodes = state_.Find(opt.shape)) {
      return AtLimit(opt, *std::move(nodes));
    }
    if (use_memo) no_fit_.insert(KeyOf(opt.shape));
  }
  if (config_.throttle_to_fit && state_.enforce_power()) {
    return FindThrottled(job, use_memo);
  }
  return std::nullopt;
}

std::optional<Found> Scheduler::FindThrottled(const Job& job, bool use_memo) {
  const int64_t steps = std::max<uint32_t>(1, config_.throttle_steps);
  for (int64_t k = 1; k <= steps; ++k) {
    for (const Option& opt : job.options) {
      if (opt.min_mw >= opt.limit_mw) continue;
      const int64_t step_mw =
          opt.limit_mw - k * (opt.limit_mw - opt.min_mw) / steps;
      Shape shape = opt.shape;
      shape.need_mw = step_mw * static_cast<int64_t>(shape.gpus);
      if (use_memo && no_fit_.contains(KeyOf(shape))) continue;
      std::optional<std::vector<int>> nodes = state_.Find(shape);
      if (!nodes) {
        if (use_memo) no_fit_.insert(KeyOf(shape));
        continue;
      }
      // Raise to the largest limit every domain on the paths still takes.
      absl::flat_hash_map<int, int64_t> gpus_under;
      for (int n : *nodes) {
        for (int d = state_.node_leaf(n); d >= 0; d = state_.parent(d)) {
          gpus_under[d] += shape.gpus;
        }
      }
      std::vector<std::pair<int64_t, int64_t>> room;
      room.reserve(gpus_under.size());
      for (const auto& [d, g] : gpus_under) {
        room.push_back({state_.headroom(d), g});
      }
      const int64_t limit =
          LargestFittingLimit(room, step_mw, opt.limit_mw).value_or(step_mw);
      shape.need_mw = limit * static_cast<int64_t>(shape.gpus);
      return Found{&opt, *std::move(nodes), shape, limit};
    }
  }
  return std::nullopt;
}

bool Scheduler::Admit(const Job& job, const Found& found,
                      std::vector<std::pair<int, int64_t>>* debits) const {
  debits->clear();
  if (!res_) return true;
  if (!config_.backfill) return false;
  const absl::Duration runtime = job.src->max_runtime;
  if (res_->has_shadow && runtime > absl::ZeroDuration() &&
      snap_.now + runtime <= res_->shadow) {
    return true;  // (a): ends before the reserved job needs anything
  }
  // (b): no reserved node, and power within what is left for backfill.
  for (int n : found.nodes) {
    if (res_->has_shadow || res_->bound
            ? res_->nodes.contains(n)
            : (res_->model_bits &
               (uint64_t{1} << (state_.node_model(n) & 63)))) {
      return false;
    }
  }
  if (!state_.enforce_power()) return true;
  absl::flat_hash_map<int, int64_t> take;
  for (int n : found.nodes) {
    for (int d = state_.node_leaf(n); d >= 0; d = state_.parent(d)) {
      if (res_->ledger.contains(d)) take[d] += found.shape.need_mw;
    }
  }
  for (const auto& [d, mw] : take) {
    if (mw > res_->ledger.at(d)) return false;
    debits->push_back({d, mw});
  }
  return true;
}

void Scheduler::Commit(const Job& job, const Found& found,
                       const std::vector<std::pair<int, int64_t>>& debits,
                       std::vector<std::string> preempt,
                       const std::vector<uint64_t>* masks) {
  for (const auto& [d, mw] : debits) res_->ledger[d] -= mw;
  const Option& opt = *found.option;
  Active a;
  a.id = job.src->id;
  a.cls = job.eff;
  a.priority = job.src->priority;
  a.start = snap_.now;
  if (job.src->max_runtime > absl::ZeroDuration()) {
    a.end = snap_.now + job.src->max_runtime;
  }
  Placement p;
  p.job_id = job.src->id;
  p.power_limit_mw = found.limit_mw;
  p.requested_limit_mw = opt.limit_mw;
  p.min_power_mw = opt.min_mw;
  p.gpu_model = snap_.gpu_models[opt.shape.model].name;
  p.effective_class = job.eff;
  p.preempt = std::move(preempt);
  for (size_t i = 0; i < found.nodes.size(); ++i) {
    const int n = found.nodes[i];
    const uint64_t gpus = masks != nullptr
                              ? (*masks)[i]
                              : state_.PickGpus(n, found.shape.gpus);
    a.allocs.push_back(NodeAlloc{n, gpus, found.shape.need_mw});
    JobShare share;
    share.node = n;
    for (uint64_t m = gpus; m != 0; m &= m - 1) {
      share.gpus.push_back(static_cast<uint32_t>(std::countr_zero(m)));
    }
    p.shares.push_back(std::move(share));
  }
  state_.Allocate(a.allocs);
  quota_.Add(job.src->tenant, job.eff,
             static_cast<int64_t>(found.shape.gpus) * found.shape.nodes);
  describe_memo_.clear();  // reason text quotes committed power
  active_.push_back(std::move(a));
  out_.placements.push_back(std::move(p));
}

void Scheduler::Process(const Job& job) {
  if (ProcessClaim(job)) return;
  if (!job.infeasible.empty()) {
    AddWait(job, WaitKind::kInfeasible, job.infeasible);
    return;
  }
  // Rule 3a: over its tenant's quota it waits, reserving nothing.
  if (std::string over = quota_.Check(
          job.src->tenant, job.eff,
          static_cast<int64_t>(job.src->gpus_per_node) * job.src->nodes);
      !over.empty()) {
    AddWait(job, WaitKind::kRetryLater, std::move(over));
    return;
  }
  if (res_ && !config_.backfill) {
    AddWait(job, WaitKind::kRetryLater,
            absl::StrCat("waiting behind job ", res_->job_id,
                         " (backfill is off)"));
    return;
  }
  const bool can_preempt =
      job.eff == ServiceClass::kReserved && config_.allow_preemption;
  std::vector<std::pair<int, int64_t>> debits;
  bool denied = false;
  // Without a shadow time, jobs of the reserved job's models never backfill.
  bool all_reserved_models = res_ && !res_->has_shadow && !res_->bound;
  if (all_reserved_models) {
    for (const Option& o : job.options) {
      if (!(res_->model_bits & (uint64_t{1} << (o.shape.model & 63)))) {
        all_reserved_models = false;
      }
    }
  }
  if (all_reserved_models && !can_preempt) {
    denied = true;
  } else if (std::optional<Found> found = FindAny(job, /*use_memo=*/true)) {
    if (Admit(job, *found, &debits)) {
      Commit(job, *found, debits, {});
      return;
    }
    denied = true;
    if (res_->has_shadow || res_->bound) {
      for (int n : res_->nodes) state_.Hide(n);
      std::optional<Found> other = FindAny(job, /*use_memo=*/false);
      for (int n : res_->nodes) state_.Unhide(n);
      if (other && Admit(job, *other, &debits)) {
        Commit(job, *other, debits, {});
        return;
      }
    }
  }
  if (can_preempt && !denied && TryPreempt(job)) return;
  if (denied) {
    std::string why;
    if (res_->has_shadow) {
      why = absl::StrCat("expected to start in ",
                         FormatWait(res_->shadow - snap_.now));
    } else {
      why = "its start time is unknown";
    }
    AddWait(job, WaitKind::kRetryLater,
            absl::StrCat("waiting: would delay job ", res_->job_id, " (", why,
                         ")"));
    return;
  }
  Wait wait = Describe(job);
  if (!res_) Reserve(job, wait);
  out_.waits.push_back(std::move(wait));
}

bool Scheduler::TryPreempt(const Job& job) {
  // Whether preempting every candidate would make room only shrinks as the
  // call goes on (placements add load; preemptions use what they free).
  std::string key;
  for (const Option& o : job.options) {
    absl::StrAppend(&key, o.shape.model, ",", o.shape.gpus, ",", o.shape.nodes,
                    ",", o.shape.need_mw, ";");
  }
  if (no_preempt_fit_.contains(key)) return false;
  if (!victim_order_) {
    // Spot first, then on-demand; lowest priority; most recently started.
    victim_order_.emplace();
    for (size_t i = 0; i < active_.size(); ++i) {
      const Active& a = active_[i];
      if (a.from_snapshot &&
          (a.cls == ServiceClass::kSpot || a.cls == ServiceClass::kOnDemand)) {
        victim_order_->push_back(i);
      }
    }
    std::sort(victim_order_->begin(), victim_order_->end(),
              [this](size_t x, size_t y) {
                const Active& a = active_[x];
                const Active& b = active_[y];
                if (a.cls != b.cls) return a.cls > b.cls;
                if (a.priority != b.priority) return a.priority < b.priority;
                if (a.start != b.start) return a.start > b.start;
                return a.id < b.id;
              });
  }
  // Preempted entries stay in the order as no-ops; skip the leading ones.
  while (victim_start_ < victim_order_->size() &&
         active_[(*victim_order_)[victim_start_]].gone) {
    ++victim_start_;
  }
  const absl::Span<const size_t> victims =
      absl::MakeConstSpan(*victim_order_).subspan(victim_start_);
  if (victims.empty()) return false;
  if (job.src->nodes == 1) return PreemptForOneNode(job, key, victims);
  // Gang: shortest prefix after which the job fits: gallop, then bisect.
  size_t released = 0;
  size_t lo = 0;  // does not fit after lo
  size_t hi = 1;
  while (true) {
    hi = std::min(hi, victims.size());
    MoveTo(victims, hi, &released);
    if (FindAny(job, /*use_memo=*/false)) break;
    if (hi == victims.size()) {
      MoveTo(victims, 0, &released);
      no_preempt_fit_.insert(key);
      return false;
    }
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const size_t mid = lo + (hi - lo) / 2;
    MoveTo(victims, mid, &released);
    if (FindAny(job, /*use_memo=*/false)) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  MoveTo(victims, hi, &released);
  std::optional<Found> found = FindAny(job, /*use_memo=*/false);
  // Spare every victim the chosen placement does not need, most valuable
  // first.
  std::vector<size_t> kept;
  for (size_t i = hi; i-- > 0;) {
    Active& v = active_[victims[i]];
    if (v.gone) continue;
    state_.Allocate(v.allocs);
    if (!state_.Fits(found->shape, found->nodes)) {
      state_.Release(v.allocs);
      kept.push_back(victims[i]);
    }
  }
  std::reverse(kept.begin(), kept.end());  // preemption order
  std::vector<std::pair<int, int64_t>> debits;
  if (!Admit(job, *found, &debits)) {
    for (size_t i : kept) state_.Allocate(active_[i].allocs);
    return false;
  }
  std::vector<std::string> preempt;
  for (size_t i : kept) {
    active_[i].gone = true;
    preempt.push_back(active_[i].id);
  }
  no_fit_.clear();  // resources were freed
  describe_memo_.clear();
  Commit(job, *found, debits, std::move(preempt));
  HoldLeftovers(kept);
  return true;
}

bool Scheduler::PreemptForOneNode(const Job& job, const std::string& key,
                                  absl::Span<const size_t> victims) {
  // For every node, the shortest prefix of `victims` after which it has the
  // GPUs (counting what the prefix frees on it) and every domain on its path
  // has the power (counting what the prefix frees below it); the job goes
  // to the node with the shortest such prefix. Victims are scanned in
  // doubling chunks until some node is ready. Counters only: the index is
  // touched just for the victims finally kept.
  constexpr size_t kNever = std::numeric_limits<size_t>::max();
  const bool enforce = state_.enforce_power();
  struct Best {
    size_t prefix = kNever;
    std::tuple<int64_t, int64_t, int> fit;  // free now, leaf headroom, node
    const Option* option = nullptr;
    int node = -1;
  } best;
  const size_t num_nodes = snap_.nodes.size();
  const size_t num_domains = snap_.domains.size();
  std::vector<int64_t> freed(num_nodes, 0);          // GPUs per node
  std::vector<size_t> gpu_ready(num_nodes, kNever);  // prefix per node
  std::vector<int64_t> released(num_domains, 0);     // power per domain
  std::vector<size_t> pow_ready(num_domains, kNever);
  std::vector<int> touched_nodes, touched_domains;
  for (const Option& opt : job.options) {
    const Shape& s = opt.shape;
    for (int n : touched_nodes) freed[n] = 0, gpu_ready[n] = kNever;
    for (int d : touched_domains) released[d] = 0, pow_ready[d] = kNever;
    touched_nodes.clear();
    touched_domains.clear();
    // Domains that cannot take the job without preemption.
    std::vector<char> is_short(num_domains, 0);
    bool any_short = false;
    for (size_t d = 0; d < num_domains && enforce; ++d) {
      is_short[d] = state_.committed(d) + s.need_mw > state_.cap(d);
      any_short = any_short || is_short[d];
    }
    auto short_of_power = [&](int d) { return is_short[d] != 0; };
    auto consider = [&](int n, size_t prefix) {
      for (int d = state_.node_leaf(n); any_short && d >= 0;
           d = state_.parent(d)) {
        if (!short_of_power(d)) continue;
        prefix = std::max(prefix, pow_ready[d]);
      }
      if (prefix == kNever) return;
      const std::tuple<int64_t, int64_t, int> fit = {
          std::popcount(state_.free_gpus(n)),
          state_.headroom(state_.node_leaf(n)), n};
      if (prefix < best.prefix || (prefix == best.prefix && fit < best.fit)) {
        best = Best{prefix, fit, &opt, n};
      }
    };
    std::vector<int> free_now;
    state_.AppendNodesWithFree(s.model, s.gpus, &free_now);
    std::vector<int> ready_nodes;
    size_t processed = 0;
    size_t chunk = 64;
    while (processed < victims.size() && processed < best.prefix) {
      const size_t end = std::min(victims.size(), processed + chunk);
      chunk *= 2;
      for (size_t r = processed; r < end; ++r) {
        const Active& v = active_[victims[r]];
        if (v.gone) continue;
        for (const NodeAlloc& a : v.allocs) {
          const int n = a.node;
          if (n < 0 || state_.node_leaf(n) < 0) continue;
          if (state_.eligible(n) && state_.node_model(n) == s.model &&
              state_.gpu_count(n) >= s.gpus && gpu_ready[n] == kNever) {
            if (freed[n] == 0) touched_nodes.push_back(n);
            freed[n] += std::popcount(a.gpus & state_.healthy_gpus(n));
            if (std::popcount(state_.free_gpus(n)) + freed[n] >= s.gpus) {
              gpu_ready[n] = r + 1;
              ready_nodes.push_back(n);
            }
          }
          for (int d = state_.node_leaf(n);
               any_short && d >= 0 && a.power_mw != 0; d = state_.parent(d)) {
            if (!short_of_power(d) || pow_ready[d] != kNever) continue;
            if (released[d] == 0) touched_domains.push_back(d);
            released[d] += a.power_mw;
            if (state_.committed(d) - released[d] + s.need_mw <=
                state_.cap(d)) {
              pow_ready[d] = r + 1;
            }
          }
        }
      }
      processed = end;
      // Readiness up to `processed` is final, so a node found ready now has
      // its true prefix and no node not yet ready can beat it.
      for (int n : free_now) consider(n, 0);
      for (int n : ready_nodes) consider(n, gpu_ready[n]);
    }
  }
  if (best.prefix == kNever) {
    no_preempt_fit_.insert(key);
    return false;
  }
  // Spare, most valuable first, every victim in the prefix the node can do
  // without.
  const Shape& s = best.option->shape;
  const int target = best.node;
  // Only the domains on its path that were short of power can constrain:
  // the others fit even with every victim kept.
  std::vector<int> path;
  for (int d = state_.node_leaf(target); d >= 0; d = state_.parent(d)) {
    if (enforce && state_.committed(d) + s.need_mw > state_.cap(d)) {
      path.push_back(d);
    }
  }
  // What victim r frees on the target node and on each short domain.
  auto frees = [&](const Active& v, std::vector<int64_t>* power) {
    int64_t gpus = 0;
    power->assign(path.size(), 0);
    for (const NodeAlloc& a : v.allocs) {
      if (a.node < 0 || state_.node_leaf(a.node) < 0) continue;
      if (a.node == target) {
        gpus += std::popcount(a.gpus & state_.healthy_gpus(target));
      }
      if (path.empty()) continue;
      for (int d = state_.node_leaf(a.node); d >= 0; d = state_.parent(d)) {
        for (size_t i = 0; i < path.size(); ++i) {
          if (path[i] == d) (*power)[i] += a.power_mw;
        }
      }
    }
    return gpus;
  };
  int64_t have = std::popcount(state_.free_gpus(target));
  std::vector<int64_t> committed(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    committed[i] = state_.committed(path[i]);
  }
  std::vector<int64_t> power;
  for (size_t r = 0; r < best.prefix; ++r) {
    if (active_[victims[r]].gone) continue;
    have += frees(active_[victims[r]], &power);
    for (size_t i = 0; i < path.size(); ++i) committed[i] -= power[i];
  }
  std::vector<size_t> kept;
  for (size_t r = best.prefix; r-- > 0;) {
    const Active& v = active_[victims[r]];
    if (v.gone) continue;
    const int64_t gpus = frees(v, &power);
    bool spare = have - gpus >= s.gpus;
    for (size_t i = 0; i < path.size() && spare; ++i) {
      spare = committed[i] + power[i] + s.need_mw <= state_.cap(path[i]);
    }
    if (spare) {
      have -= gpus;
      for (size_t i = 0; i < path.size(); ++i) committed[i] += power[i];
    } else {
      kept.push_back(victims[r]);
    }
  }
  std::reverse(kept.begin(), kept.end());  // preemption order
  for (size_t i : kept) state_.Release(active_[i].allocs);
  const Found found = AtLimit(*best.option, {target});
  std::vector<std::pair<int, int64_t>> debits;
  if (!state_.Fits(s, found.nodes) || !Admit(job, found, &debits)) {
    for (size_t i : kept) state_.Allocate(active_[i].allocs);
    return false;
  }
  std::vector<std::string> preempt;
  for (size_t i : kept) {
    active_[i].gone = true;
    preempt.push_back(active_[i].id);
  }
  no_fit_.clear();  // resources were freed
  describe_memo_.clear();
  Commit(job, found, debits, std::move(preempt));
  HoldLeftovers(kept);
  return true;
}

void Scheduler::Reserve(const Job& job, Wait& wait) {
  std::vector<size_t> seq;
  for (size_t i = 0; i < active_.size(); ++i) {
    if (!active_[i].gone) seq.push_back(i);
  }
  std::sort(seq.begin(), seq.end(), [this](size_t x, size_t y) {
    return std::make_tuple(active_[x].end, active_[x].start, x) <
           std::make_tuple(active_[y].end, active_[y].start, y);
  });
  size_t released = 0;
  MoveTo(seq, seq.size(), &released);
  if (!FindAny(job, /*use_memo=*/false)) {
    MoveTo(seq, 0, &released);
    absl::StrAppend(&wait.reason,
                    "; does not fit even when all running jobs end");
    return;
  }
  Reservation res;
  res.job_id = job.src->id;
  size_t lo = 0, hi = seq.size();  // fits after hi, not after lo
  if (config_.backfill) {
    while (hi - lo > 1) {
      const size_t mid = lo + (hi - lo) / 2;
      MoveTo(seq, mid, &released);
      if (FindAny(job, /*use_memo=*/false)) {
        hi = mid;
      } else {
        lo = mid;
      }
    }
  }
  if (config_.backfill && hi > 0 &&
      active_[seq[hi - 1]].end != absl::InfiniteFuture()) {
    MoveTo(seq, hi, &released);
    std::optional<Found> s = FindAny(job, /*use_memo=*/false);
    res.has_shadow = true;
    res.shadow = std::max(active_[seq[hi - 1]].end, snap_.now);
    for (int n : s->nodes) {
      res.nodes.insert(n);
      for (int d = state_.node_leaf(n); d >= 0; d = state_.parent(d)) {
        auto [it, inserted] = res.ledger.try_emplace(d, state_.headroom(d));
        it->second -= s->shape.need_mw;
      }
    }
    MoveTo(seq, 0, &released);
    absl::StrAppend(&wait.reason, "; next to start, expected in ",
                    FormatWait(res.shadow - snap_.now));
  } else if (config_.reserve_best_node && state_.enforce_power()) {
    MoveTo(seq, 0, &released);
    ReserveBestNode(job, res, wait);
  } else {
    MoveTo(seq, 0, &released);
    int64_t total = 0;
    for (const Option& o : job.options) {
      res.model_bits |= uint64_t{1} << (o.shape.model & 63);
      total = std::max(total, o.shape.need_mw * o.shape.nodes);
    }
    for (int d = 0; d < static_cast<int>(snap_.domains.size()); ++d) {
      bool holds = false;
      for (const Option& o : job.options) {
        holds = holds || state_.has_model(d, o.shape.model);
      }
      if (holds) res.ledger[d] = state_.headroom(d) - total;
    }
    absl::StrAppend(&wait.reason, "; next to start when running jobs end");
  }
  res_ = std::move(res);
}

void Scheduler::ReserveBestNode(const Job& job, Reservation& res,
                                Wait& wait) const {
  // The nodes closest to taking the job now: most of its GPUs free, then
  // most power left on the tightest domain of the node's path after the
  // job's need (at its min power with throttle-to-fit), then lowest index;
  // a gang takes the best `nodes` of them, and the option whose chosen
  // nodes have the most free GPUs (then the most room) wins.
  using Key = std::tuple<int64_t, int64_t, int>;  // free, room, -index
  const size_t want = job.src->nodes;
  std::vector<int> best;
  int64_t best_need = 0;
  std::pair<int64_t, int64_t> best_total;
  for (const Option& o : job.options) {
    const int64_t need =
        (config_.throttle_to_fit ? o.min_mw : o.limit_mw) * o.shape.gpus;
    std::vector<Key> keys;
    for (int n = 0; n < static_cast<int>(snap_.nodes.size()); ++n) {
      if (!state_.eligible(n) || state_.node_model(n) != o.shape.model ||
          state_.gpu_count(n) < o.shape.gpus) {
        continue;
      }
      const int64_t free =
          std::min<int64_t>(std::popcount(state_.free_gpus(n)), o.shape.gpus);
      int64_t room = std::numeric_limits<int64_t>::max();
      for (int d = state_.node_leaf(n); d >= 0; d = state_.parent(d)) {
        room = std::min(room, state_.headroom(d) - need);
      }
      keys.push_back({free, room, -n});
    }
    if (keys.size() < want) continue;
    std::partial_sort(keys.begin(), keys.begin() + want, keys.end(),
                      std::greater<Key>());
    std::pair<int64_t, int64_t> total{0, std::numeric_limits<int64_t>::max()};
    for (size_t i = 0; i < want; ++i) {
      total.first += std::get<0>(keys[i]);
      total.second = std::min(total.second, std::get<1>(keys[i]));
    }
    if (best.empty() || total > best_total) {
      best.clear();
      for (size_t i = 0; i < want; ++i) best.push_back(-std::get<2>(keys[i]));
      best_total = total;
      best_need = need;
    }
  }
  if (best.empty()) return;
  res.bound = true;
  for (int n : best) {
    res.nodes.insert(n);
    for (int d = state_.node_leaf(n); d >= 0; d = state_.parent(d)) {
      auto [it, inserted] = res.ledger.try_emplace(d, state_.headroom(d));
      it->second -= best_need;
    }
  }
  std::sort(best.begin(), best.end());
  std::vector<std::string> names;
  for (int n : best) names.push_back(snap_.nodes[n].name);
  absl::StrAppend(&wait.reason, "; next to start on node",
                  best.size() > 1 ? "s " : " ", absl::StrJoin(names, ", "),
                  " when running jobs there end");
}

Wait Scheduler::Describe(const Job& job) {
  std::string key = job.src->gpu_model.empty() ? "*" : "=";
  for (const Option& o : job.options) {
    absl::StrAppend(&key, o.shape.model, ",", o.shape.gpus, ",", o.shape.nodes,
                    ",", o.shape.need_mw, ";");
  }
  auto [it, inserted] = describe_memo_.try_emplace(key);
  if (inserted) it->second = DescribeNow(job);
  return Wait{job.src->id, it->second.kind, it->second.reason};
}

Wait Scheduler::DescribeNow(const Job& job) const {
  const PendingJob& p = *job.src;
  std::optional<Wait> first;
  for (const Option& opt : job.options) {
    const Shape& s = opt.shape;
    const int64_t avail = state_.NodesWithFree(s.model, s.gpus);
    if (avail >= s.nodes) {
      if (std::optional<Blocker> b = state_.PowerBlocker(s)) {
        // A cap below what the domain draws idle: no job fits until the
        // cap is raised, and that is what the operator must know.
        for (int d = b->domain; d >= 0; d = state_.parent(d)) {
          const DomainSnapshot& dom = snap_.domains[d];
          if (dom.idle_floor_mw > 0 && dom.cap_mw < dom.idle_floor_mw) {
            return Wait{p.id, WaitKind::kOverPowerCap,
                        absl::StrCat("waiting: cap ", FormatPower(dom.cap_mw),
                                     " is below the idle draw ",
                                     FormatPower(dom.idle_floor_mw), " of ",
                                     dom.name)};
          }
        }
        return Wait{
            p.id, WaitKind::kOverPowerCap,
            absl::StrCat("waiting: ", DomainWords(snap_.domains[b->domain]),
                         " power ", FormatPower(b->committed_mw),
                         " committed + ", FormatPower(b->need_mw),
                         " needed > cap ", FormatPower(b->cap_mw))};
      }
    }
    if (first) continue;
    const std::string what = p.gpu_model.empty()
                                 ? std::string("GPUs")
                                 : snap_.gpu_models[s.model].name;
    if (s.nodes == 1) {
      first = Wait{p.id, WaitKind::kRetryLater,
                   absl::StrCat("no ready node with ", s.gpus, " free ", what)};
    } else {
      first =
          Wait{p.id, WaitKind::kRetryLater,
               absl::StrCat("gang needs ", s.nodes, " ready nodes with ",
                            s.gpus, " free ", what, "; ", avail, " have them")};
    }
  }
  return *first;
}

}  // namespace

Decisions Schedule(const ClusterSnapshot& snapshot,
                   absl::Span<const PendingJob> pending,
                   const PolicyConfig& config) {
  Scheduler scheduler(snapshot, config);
  return scheduler.Run(pending);
}

}  // namespace joule::scheduler
