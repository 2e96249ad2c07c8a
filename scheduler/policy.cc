#include "scheduler/policy.h"

#include <algorithm>
#include <bit>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/units.h"
#include "scheduler/cluster_state.h"
#include "scheduler/kept_state.h"
#include "scheduler/power_options.h"
#include "scheduler/quota.h"
#include "scheduler/victims.h"
#include "scheduler/working_state.h"

namespace joule::scheduler {
namespace {

using internal::Active;
using internal::Blocker;
using internal::ClusterState;
using internal::KeptWork;
using internal::kMaxGpusPerNode;
using internal::NodeAlloc;
using internal::Shape;

// One way to run a pending job: a model and the power it resolves to.
struct Option {
  int64_t limit_mw = 0;
  int64_t min_mw = 0;    // the lowest start limit (a class's start floor)
  int64_t floor_mw = 0;  // the floor once running (StartedFloorMw)
  Shape shape;
};

// A pending job after resolution.
struct Job {
  const PendingJob* src = nullptr;
  ServiceClass eff = ServiceClass::kOnDemand;
  double share_key = 0;
  absl::InlinedVector<Option, 1> options;  // stable: jobs never move
  std::string infeasible;                  // non-empty: the kInfeasible reason
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

// A lower bound on the victim set a node needs for a shape (the fewest of
// its victims that free its GPUs, on one node, as preemptable as its most
// preemptable ones; power ignored), and its best-fit tuple (free GPUs, leaf
// headroom, node).
struct VictimBound {
  VictimSetCost cost;
  std::tuple<int64_t, int64_t, int> fit;
};

// Max-heap order: the best bound on top.
bool VictimBoundWorse(const VictimBound& a, const VictimBound& b);

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
  // kept == nullptr: the working state is built from the snapshot; else it
  // is kept's (synced to the snapshot), restored when Run returns.
  Scheduler(const ClusterSnapshot& snapshot, const PolicyConfig& config,
            KeptWork* kept)
      : snap_(snapshot),
        config_(config),
        kept_(kept),
        own_state_(kept != nullptr ? nullptr
                                   : std::make_unique<ClusterState>(
                                         snapshot, config.enforce_power,
                                         config.committed_at_least_measured,
                                         config.power_fit)),
        state_(kept != nullptr ? *kept->state : *own_state_),
        active_(kept != nullptr ? kept->active : own_active_),
        quota_(snapshot) {}

  Decisions Run(absl::Span<const PendingJob> pending);

 private:
  Job Resolve(const PendingJob& p) const;
  void AssignEffectiveClasses(std::vector<Job>& jobs) const;
  void LoadRunning();
  // A running job's id (the snapshot's or the pending job's).
  absl::string_view IdOf(const Active& a) const {
    return a.from_snapshot() ? absl::string_view(snap_.running[a.running].id)
                             : a.placed_id;
  }
  // Preempted by this call (undone on a kept state when Run returns).
  void MarkGone(size_t i) {
    active_[i].gone = true;
    gone_.push_back(i);
  }

  void Process(const Job& job);
  std::optional<Found> FindAny(const Job& job, bool use_memo);
  // FindAny with the memo, or with the reservation's nodes hidden
  // (`hidden`), remembered per set of options until the state changes
  // (ClusterState::version): jobs of one shape denied by the reservation
  // one after another do not search again.
  std::optional<Found> FindRemembered(const Job& job, bool hidden);
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
  // `victims` (in preemptability order) grouped by node for a gang: nodes
  // by their best minimal victim set for the job's GPUs (BetterVictims),
  // each node's set in preemptability order, then the rest as given.
  // The bound of node `n` for shape `s`; nullopt if preempting its
  // victims cannot free the GPUs.
  std::optional<VictimBound> NodeBound(int n, const Shape& s) const;
  // Every node's bound for (s.model, s.gpus), a heap kept for the call.
  std::vector<VictimBound>& BoundHeap(const Shape& s);
  std::vector<size_t> GangVictimOrder(const Job& job,
                                      absl::Span<const size_t> victims) const;
  // A MinimalVictims result `set` (positions in `candidates`, which are
  // indices into active_) as active_ indices, in the same order, and its
  // cost (the victims' keys and the distinct nodes they hold).
  struct VictimSet {
    VictimSetCost cost;
    std::vector<size_t> chosen;
  };
  VictimSet Collect(absl::Span<const size_t> set,
                    absl::Span<const size_t> candidates) const;
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
  KeptWork* const kept_;
  std::unique_ptr<ClusterState> own_state_;
  std::vector<Active> own_active_;
  ClusterState& state_;
  // The snapshot's running jobs (active_[i] for running[i]), then those
  // placed by this call.
  std::vector<Active>& active_;
  std::vector<size_t> gone_;  // MarkGone
  QuotaLedger quota_;
  absl::flat_hash_set<ShapeKey> no_fit_;  // shapes known not to fit now
  // FindRemembered: per options (model, GPUs, nodes, need, limit, min of
  // each), the state version and what FindAny found then.
  struct Remembered {
    uint64_t version = 0;
    bool found = false;
    size_t option = 0;  // index into Job::options
    std::vector<int> nodes;
    Shape shape;
    int64_t limit_mw = 0;
  };
  using OptionsKey = absl::InlinedVector<int64_t, 6>;
  absl::flat_hash_map<OptionsKey, Remembered> remembered_[2];  // [hidden]
  absl::flat_hash_map<std::string, Wait> describe_memo_;
  // Shapes that do not fit even after preempting every candidate.
  absl::flat_hash_set<std::string> no_preempt_fit_;
  // Snapshot jobs that may be preempted, most preemptable first.
  std::optional<std::vector<size_t>> victim_order_;
  size_t victim_start_ = 0;  // entries before it are all preempted
  // Built with victim_order_: each candidate's key (by index in active_)
  // and, per node, the candidates holding GPUs there, most preemptable
  // first.
  std::vector<VictimKey> victim_keys_;
  std::vector<std::vector<size_t>> victims_on_node_;
  std::map<std::pair<int, uint32_t>, std::vector<VictimBound>> bound_heaps_;
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
  // The models tried: all of them, or the one named.
  int first_model = 0, end_model = state_.model_count();
  if (!p.gpu_model.empty()) {
    const int m = state_.ModelIndex(p.gpu_model);
    if (m < 0) {
      job.infeasible = absl::StrCat("unknown GPU model \"", p.gpu_model, "\"");
      return job;
    }
    first_model = m;
    end_model = m + 1;
  }
  uint32_t largest = 0;
  int64_t most_nodes = 0;
  for (int m = first_model; m < end_model; ++m) {
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
    if (p.min_power_mw > 0) {
      opt.min_mw = opt.floor_mw = std::clamp(p.min_power_mw, lo, opt.limit_mw);
    } else {
      opt.floor_mw =
          ClassFloorMw(p.cls, opt.limit_mw, lo, config_.class_floors);
      opt.min_mw =
          ClassStartFloorMw(p.cls, opt.limit_mw, lo, config_.class_floors);
    }
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
  std::vector<Job*> reserved;
  for (Job& j : jobs) {
    if (j.src->cls == ServiceClass::kReserved && j.infeasible.empty()) {
      reserved.push_back(&j);
    }
  }
  if (reserved.empty()) return;
  // (tenant, model) -> reserved GPUs in use or promised in this call.
  absl::flat_hash_map<std::pair<std::string, std::string>, int64_t> used;
  for (const RunningJob& r : snap_.running) {
    if (r.cls != ServiceClass::kReserved) continue;
    int64_t gpus = 0;
    for (const JobShare& s : r.shares) gpus += s.gpus.size();
    used[{r.tenant, r.gpu_model}] += gpus;
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
  active_.reserve(snap_.running.size());
  for (size_t i = 0; i < snap_.running.size(); ++i) {
    active_.push_back(
        internal::ActiveOf(snap_.running[i], static_cast<int32_t>(i), state_));
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
        w.held.push_back(NodeAlloc{c.shares[i].node, v,
                                   state_.enforce_power()
                                       ? c.power_per_gpu_mw * std::popcount(v)
                                       : 0});
      }
      state_.Allocate(w.held);
    }
    claims_[c.job_id] = std::move(w);
  }
}

bool Scheduler::ProcessClaim(const Job& job) {
  if (claims_.empty()) return false;
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
              std::popcount(w.status.claimed[i]) == static_cast<int>(per_node);
  }
  const Option* opt = nullptr;
  for (const Option& o : job.options) {
    if (uniform && o.shape.model == model && o.shape.gpus == per_node &&
        o.shape.nodes == c.shares.size()) {
      opt = &o;
    }
  }
  if (opt == nullptr)
    return drop("the job no longer matches the GPUs it claimed");
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
  if (kept_ == nullptr) {
    LoadRunning();
  } else {
    state_.StartJournal();
  }
  SetUpClaims();
  std::vector<Job> jobs;
  jobs.reserve(pending.size());
  for (const PendingJob& p : pending) jobs.push_back(Resolve(p));
  AssignEffectiveClasses(jobs);
  // Rule 3's order, sorted on keys copied out of the jobs (the jobs
  // themselves are not touched by the sort).
  struct OrderKey {
    ServiceClass eff;
    int64_t neg_priority;
    double share_key;
    uint64_t seq;
    size_t index;
  };
  std::vector<OrderKey> keys(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    keys[i] = {jobs[i].eff, -static_cast<int64_t>(jobs[i].src->priority),
               jobs[i].share_key, jobs[i].src->seq, i};
  }
  std::sort(keys.begin(), keys.end(), [](const OrderKey& x, const OrderKey& y) {
    if (x.eff != y.eff) return x.eff < y.eff;
    if (x.neg_priority != y.neg_priority) {
      return x.neg_priority < y.neg_priority;
    }
    if (x.share_key != y.share_key) return x.share_key < y.share_key;
    if (x.seq != y.seq) return x.seq < y.seq;
    return x.index < y.index;
  });
  const size_t limit =
      config_.max_jobs_considered == 0
          ? keys.size()
          : std::min<size_t>(keys.size(), config_.max_jobs_considered);
  out_.waits.reserve(jobs.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    const Job& job = jobs[keys[i].index];
    if (i >= limit) {
      // The jobs come in queue order, not in memory order: fetch ahead.
      if (i + 8 < keys.size()) {
        __builtin_prefetch(jobs[keys[i + 8].index].src);
      }
      if (i + 16 < keys.size()) __builtin_prefetch(&jobs[keys[i + 16].index]);
      // A claim keeps its GPUs while its job waits its turn.
      if (!claims_.empty()) {
        if (auto c = claims_.find(job.src->id); c != claims_.end()) {
          c->second.seen = true;
        }
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
  if (kept_ != nullptr) {
    // Back to the snapshot's state for the next call.
    state_.Rollback();
    active_.resize(snap_.running.size());
    for (size_t i : gone_) active_[i].gone = false;
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

std::optional<Found> Scheduler::FindRemembered(const Job& job, bool hidden) {
  OptionsKey key;
  for (const Option& o : job.options) {
    key.insert(key.end(), {o.shape.model, o.shape.gpus, o.shape.nodes,
                           o.shape.need_mw, o.limit_mw, o.min_mw});
  }
  Remembered& r = remembered_[hidden ? 1 : 0][key];
  if (r.version != state_.version()) {
    std::optional<Found> found;
    if (hidden) {
      for (int n : res_->nodes) state_.Hide(n);
      found = FindAny(job, /*use_memo=*/false);
      for (int n : res_->nodes) state_.Unhide(n);
    } else {
      found = FindAny(job, /*use_memo=*/true);
    }
    r.version = state_.version();
    r.found = found.has_value();
    if (!found) return std::nullopt;
    r.option = static_cast<size_t>(found->option - job.options.data());
    r.nodes = found->nodes;
    r.shape = found->shape;
    r.limit_mw = found->limit_mw;
    return found;
  }
  if (!r.found) return std::nullopt;
  return Found{&job.options[r.option], r.nodes, r.shape, r.limit_mw};
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
  a.placed_id = job.src->id;
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
  p.min_power_mw = StartedFloorMw(found.limit_mw, opt.floor_mw);
  p.gpu_model = snap_.gpu_models[opt.shape.model].name;
  p.effective_class = job.eff;
  p.preempt = std::move(preempt);
  for (size_t i = 0; i < found.nodes.size(); ++i) {
    const int n = found.nodes[i];
    const uint64_t gpus =
        masks != nullptr ? (*masks)[i] : state_.PickGpus(n, found.shape.gpus);
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
  } else if (std::optional<Found> found =
                 FindRemembered(job, /*hidden=*/false)) {
    if (Admit(job, *found, &debits)) {
      Commit(job, *found, debits, {});
      return;
    }
    denied = true;
    if (res_->has_shadow || res_->bound) {
      std::optional<Found> other = FindRemembered(job, /*hidden=*/true);
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
      if (a.from_snapshot() &&
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
                return IdOf(a) < IdOf(b);
              });
    victim_keys_.resize(active_.size());
    victims_on_node_.resize(snap_.nodes.size());
    for (size_t i : *victim_order_) {
      const Active& a = active_[i];
      victim_keys_[i] =
          VictimKey{a.cls, a.priority, a.start, std::string(IdOf(a))};
      for (const NodeAlloc& n : a.allocs) {
        if (n.node >= 0 && n.node < static_cast<int>(snap_.nodes.size())) {
          victims_on_node_[n.node].push_back(i);
        }
      }
    }
  }
  // Preempted entries stay in the order as no-ops; skip the leading ones.
  while (victim_start_ < victim_order_->size() &&
         active_[(*victim_order_)[victim_start_]].gone) {
    ++victim_start_;
  }
  absl::Span<const size_t> victims =
      absl::MakeConstSpan(*victim_order_).subspan(victim_start_);
  if (victims.empty()) return false;
  if (job.src->nodes == 1) return PreemptForOneNode(job, key, victims);
  // Gang: shortest prefix of the victims grouped by node, cheapest node
  // first, after which the job fits: gallop, then bisect.
  const std::vector<size_t> grouped = GangVictimOrder(job, victims);
  victims = absl::MakeConstSpan(grouped);
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
    MarkGone(i);
    preempt.push_back(std::string(IdOf(active_[i])));
  }
  no_fit_.clear();  // resources were freed
  describe_memo_.clear();
  Commit(job, *found, debits, std::move(preempt));
  HoldLeftovers(kept);
  return true;
}

bool VictimBoundWorse(const VictimBound& a, const VictimBound& b) {
  const int c = CompareVictims(a.cost, b.cost);
  return c != 0 ? c > 0 : a.fit > b.fit;
}

std::optional<VictimBound> Scheduler::NodeBound(int n, const Shape& s) const {
  if (!state_.eligible(n) || state_.node_model(n) != s.model ||
      state_.gpu_count(n) < s.gpus) {
    return std::nullopt;
  }
  const int64_t missing =
      static_cast<int64_t>(s.gpus) - std::popcount(state_.free_gpus(n));
  absl::InlinedVector<int64_t, 8> local;
  for (size_t i : victims_on_node_[n]) {
    if (active_[i].gone) continue;
    for (const NodeAlloc& a : active_[i].allocs) {
      if (a.node == n) {
        local.push_back(std::popcount(a.gpus & state_.healthy_gpus(n)));
      }
    }
  }
  std::sort(local.rbegin(), local.rend());
  size_t k = 0;
  int64_t sum = 0;
  while (k < local.size() && sum < missing) sum += local[k++];
  if (sum < missing) return std::nullopt;
  absl::InlinedVector<const VictimKey*, 4> first;
  for (size_t i : victims_on_node_[n]) {
    if (first.size() == k) break;
    if (!active_[i].gone) first.push_back(&victim_keys_[i]);
  }
  return VictimBound{CostOf(std::move(first), k == 0 ? 0 : 1),
                     {std::popcount(state_.free_gpus(n)),
                      state_.headroom(state_.node_leaf(n)), n}};
}

std::vector<VictimBound>& Scheduler::BoundHeap(const Shape& s) {
  auto [it, inserted] = bound_heaps_.try_emplace({s.model, s.gpus});
  if (inserted) {
    for (int n = 0; n < static_cast<int>(snap_.nodes.size()); ++n) {
      if (std::optional<VictimBound> b = NodeBound(n, s)) {
        it->second.push_back(std::move(*b));
      }
    }
    std::make_heap(it->second.begin(), it->second.end(), VictimBoundWorse);
  }
  return it->second;
}

std::vector<size_t> Scheduler::GangVictimOrder(
    const Job& job, absl::Span<const size_t> victims) const {
  const int num_nodes = static_cast<int>(snap_.nodes.size());
  std::vector<std::pair<VictimSetCost, std::vector<size_t>>> sets;
  for (int n = 0; n < num_nodes; ++n) {
    if (victims_on_node_[n].empty() || !state_.eligible(n)) continue;
    uint32_t gpus = 0;
    for (const Option& o : job.options) {
      if (o.shape.model == state_.node_model(n)) gpus = o.shape.gpus;
    }
    if (gpus == 0 || state_.gpu_count(n) < gpus) continue;
    VictimNeed need;
    need.gpus = static_cast<int64_t>(gpus) - std::popcount(state_.free_gpus(n));
    if (need.gpus <= 0) continue;
    std::vector<size_t> local;
    std::vector<VictimCandidate> cands;
    for (size_t i : victims_on_node_[n]) {
      if (active_[i].gone) continue;
      local.push_back(i);
      VictimCandidate c;
      c.key = &victim_keys_[i];
      for (const NodeAlloc& a : active_[i].allocs) {
        if (a.node == n)
          c.gpus = std::popcount(a.gpus & state_.healthy_gpus(n));
      }
      cands.push_back(std::move(c));
    }
    std::optional<std::vector<size_t>> set = MinimalVictims(need, cands);
    if (!set) continue;
    VictimSet got = Collect(*set, local);
    sets.push_back({std::move(got.cost), std::move(got.chosen)});
  }
  std::stable_sort(sets.begin(), sets.end(), [](const auto& a, const auto& b) {
    return BetterVictims(a.first, b.first);
  });
  std::vector<size_t> out;
  absl::flat_hash_set<size_t> used;
  for (const auto& [cost, chosen] : sets) {
    for (size_t i : chosen) {
      if (used.insert(i).second) out.push_back(i);
    }
  }
  for (size_t i : victims) {
    if (used.insert(i).second) out.push_back(i);
  }
  return out;
}

Scheduler::VictimSet Scheduler::Collect(
    absl::Span<const size_t> set, absl::Span<const size_t> candidates) const {
  absl::InlinedVector<const VictimKey*, 4> keys;
  absl::flat_hash_set<int> nodes;
  VictimSet out;
  for (size_t c : set) {
    const size_t i = candidates[c];
    out.chosen.push_back(i);
    keys.push_back(&victim_keys_[i]);
    for (const NodeAlloc& a : active_[i].allocs) nodes.insert(a.node);
  }
  out.cost = CostOf(std::move(keys), nodes.size());
  return out;
}

bool Scheduler::PreemptForOneNode(const Job& job, const std::string& key,
                                  absl::Span<const size_t> victims) {
  // For every candidate node, the minimal victim set that frees the GPUs
  // missing there and the power missing on every domain of its path
  // (MinimalVictims, victims.h); the job goes to the node whose set is
  // best (BetterVictims: fewest victims, fewest nodes, most preemptable),
  // then by best fit. Nodes are evaluated in order of a lower bound on
  // their set (the fewest victims k on the node that free its GPUs, on one
  // node, as preemptable as its k most preemptable victims); the search
  // stops once the best set found beats the next bound.
  const bool enforce = state_.enforce_power();
  const int num_nodes = static_cast<int>(snap_.nodes.size());
  // Victims with power below domain d, in preemptability order (lazily).
  absl::flat_hash_map<int, std::vector<size_t>> below;
  auto victims_below = [&](int dom) -> const std::vector<size_t>& {
    auto [it, inserted] = below.try_emplace(dom);
    if (!inserted) return it->second;
    for (size_t i : victims) {
      const Active& v = active_[i];
      if (v.gone) continue;
      bool under = false;
      for (const NodeAlloc& a : v.allocs) {
        if (a.node < 0 || a.node >= num_nodes || a.power_mw == 0) continue;
        for (int d = state_.node_leaf(a.node); d >= 0 && !under;
             d = state_.parent(d)) {
          under = d == dom;
        }
      }
      if (under) it->second.push_back(i);
    }
    return it->second;
  };
  auto gpus_on = [&](size_t i, int n) -> int64_t {
    for (const NodeAlloc& a : active_[i].allocs) {
      if (a.node == n) return std::popcount(a.gpus & state_.healthy_gpus(n));
    }
    return 0;
  };
  struct Best {
    bool found = false;
    VictimBound bound;
    const Option* option = nullptr;
    std::vector<size_t> set;  // active indices, preemptability order
  } best;
  // Nodes with power short on their path are evaluated in full at most
  // this many times per option (each scans the victims below the domain).
  constexpr int kMaxPowerEvaluations = 16;
  absl::flat_hash_set<size_t> seen;
  for (const Option& opt : job.options) {
    const Shape& s = opt.shape;
    std::vector<VictimBound>& heap = BoundHeap(s);
    std::vector<VictimBound> popped;  // still valid: pushed back below
    int power_evaluations = 0;
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), VictimBoundWorse);
      VictimBound next = std::move(heap.back());
      heap.pop_back();
      const int n = std::get<2>(next.fit);
      // Bounds only get worse during a call (victims go, GPUs are taken):
      // a stale entry is re-queued at its current bound, or dropped.
      std::optional<VictimBound> now = NodeBound(n, s);
      if (!now) continue;
      if (CompareVictims(now->cost, next.cost) != 0) {
        heap.push_back(std::move(*now));
        std::push_heap(heap.begin(), heap.end(), VictimBoundWorse);
        continue;
      }
      next = std::move(*now);
      popped.push_back(next);
      if (best.found && CompareVictims(best.bound.cost, next.cost) < 0) break;
      VictimNeed need;
      need.gpus =
          static_cast<int64_t>(s.gpus) - std::popcount(state_.free_gpus(n));
      std::vector<int> path;  // short domains, leaf first
      for (int d = state_.node_leaf(n); enforce && d >= 0;
           d = state_.parent(d)) {
        const int64_t short_mw =
            state_.committed(d) + s.need_mw - state_.cap(d);
        if (short_mw > 0) {
          path.push_back(d);
          need.power_mw.push_back(short_mw);
        }
      }
      if (!path.empty() && ++power_evaluations > kMaxPowerEvaluations) {
        continue;
      }
      std::vector<size_t> pos;
      seen.clear();
      for (size_t i : victims_on_node_[n]) {
        if (!active_[i].gone && seen.insert(i).second) pos.push_back(i);
      }
      if (!path.empty()) {
        for (size_t i : victims_below(path.back())) {
          if (seen.insert(i).second) pos.push_back(i);
        }
      }
      std::vector<VictimCandidate> cands(pos.size());
      for (size_t c = 0; c < pos.size(); ++c) {
        cands[c].key = &victim_keys_[pos[c]];
        cands[c].gpus = gpus_on(pos[c], n);
        cands[c].power_mw.assign(path.size(), 0);
        for (const NodeAlloc& a : active_[pos[c]].allocs) {
          if (a.node < 0 || a.node >= num_nodes || path.empty()) continue;
          for (int d = state_.node_leaf(a.node); d >= 0; d = state_.parent(d)) {
            for (size_t p = 0; p < path.size(); ++p) {
              if (path[p] == d) cands[c].power_mw[p] += a.power_mw;
            }
          }
        }
      }
      std::optional<std::vector<size_t>> set = MinimalVictims(need, cands);
      if (!set) continue;
      VictimSet chosen = Collect(*set, pos);
      VictimBound got{std::move(chosen.cost), next.fit};
      if (!best.found || VictimBoundWorse(best.bound, got)) {
        best = Best{true, std::move(got), &opt, std::move(chosen.chosen)};
      }
    }
    for (VictimBound& b : popped) {
      heap.push_back(std::move(b));
      std::push_heap(heap.begin(), heap.end(), VictimBoundWorse);
    }
  }
  if (!best.found) {
    no_preempt_fit_.insert(key);
    return false;
  }
  const std::vector<size_t>& kept = best.set;
  for (size_t i : kept) state_.Release(active_[i].allocs);
  const Found found = AtLimit(*best.option, {std::get<2>(best.bound.fit)});
  std::vector<std::pair<int, int64_t>> debits;
  if (!state_.Fits(best.option->shape, found.nodes) ||
      !Admit(job, found, &debits)) {
    for (size_t i : kept) state_.Allocate(active_[i].allocs);
    return false;
  }
  std::vector<std::string> preempt;
  for (size_t i : kept) {
    MarkGone(i);
    preempt.push_back(std::string(IdOf(active_[i])));
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
  // Whether the job fits once the first k jobs of seq have ended only
  // turns from false to true as k grows (ending jobs only frees GPUs and
  // power, and FindAny finds a placement whenever one exists), so the
  // smallest such k is unique. It is found by galloping from the front
  // (k = 1, 2, 4, ...), then bisecting: the cost is in the jobs moved out
  // of the index, about 2k instead of the 2-3 × seq.size() of releasing
  // every job first. It fits once all have ended iff it fits after some k.
  size_t released = 0;
  size_t lo = 0, hi = seq.size();  // fits after hi, not after lo
  bool fits = false;
  if (config_.backfill) {
    for (size_t step = 1;; step *= 2) {
      const size_t k = std::min(step, seq.size());
      MoveTo(seq, k, &released);
      if (FindAny(job, /*use_memo=*/false)) {
        hi = k;
        fits = true;
        break;
      }
      lo = k;
      if (k == seq.size()) break;
    }
  } else {
    MoveTo(seq, seq.size(), &released);
    fits = FindAny(job, /*use_memo=*/false).has_value();
  }
  if (!fits) {
    MoveTo(seq, 0, &released);
    absl::StrAppend(&wait.reason,
                    "; does not fit even when all running jobs end");
    return;
  }
  Reservation res;
  res.job_id = job.src->id;
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
            return Wait{
                p.id, WaitKind::kOverPowerCap,
                absl::StrCat("waiting: cap ", FormatPower(dom.cap_mw),
                             " is below the idle draw ",
                             FormatPower(dom.idle_floor_mw), " of ", dom.name)};
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
  Scheduler scheduler(snapshot, config, nullptr);
  return scheduler.Run(pending);
}

Decisions Schedule(const ClusterSnapshot& snapshot,
                   absl::Span<const PendingJob> pending,
                   const PolicyConfig& config, KeptState* kept) {
  if (kept == nullptr) return Schedule(snapshot, pending, config);
  KeptWork& work = kept->work();
  work.Sync(snapshot, config);
  Scheduler scheduler(snapshot, config, &work);
  return scheduler.Run(pending);
}

}  // namespace joule::scheduler
