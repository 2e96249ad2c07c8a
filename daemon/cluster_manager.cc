#include "daemon/cluster_manager.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "billing/ledger.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "daemon/validation.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "joule/v1/records.pb.h"
#include "scheduler/measured_plus.h"
#include "scheduler/power_rules.h"

namespace joule::daemon {
namespace {

using scheduler::ServiceClass;

constexpr size_t kMeasuredSamples = 60;
constexpr size_t kMeasuredMinSamples = 5;
constexpr std::string_view kCountersKey = "counters";

std::string AttemptKey(const std::string& job_id, uint32_t attempt) {
  return absl::StrCat(job_id, "/", attempt);
}

// A StopJob command for one attempt (grace 0: the agent's SIGKILL follows
// its SIGTERM at once).
v1::DaemonMessage StopMessage(const std::string& job_id, uint32_t attempt,
                              std::string reason,
                              absl::Duration grace = absl::ZeroDuration()) {
  v1::DaemonMessage m;
  v1::StopJob* stop = m.mutable_stop_job();
  stop->set_job_id(job_id);
  stop->set_attempt(attempt);
  stop->set_reason(std::move(reason));
  if (grace > absl::ZeroDuration()) {
    *stop->mutable_grace_period() = ToProtoDuration(grace);
  }
  return m;
}

std::string EventKey(uint64_t seq) { return absl::StrFormat("%016x", seq); }

// The bytes that identify a spec for SubmitJob idempotency. Deterministic
// serialization: map fields (env) are written in key order, so equal specs
// give equal bytes whatever order their maps were built in.
std::string SpecFingerprint(const v1::JobSpec& spec) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    spec.SerializeToCodedStream(&coded);
  }
  return out;
}

ServiceClass ToPolicyClass(v1::ServiceClass c) {
  switch (c) {
    case v1::SERVICE_CLASS_RESERVED:
      return ServiceClass::kReserved;
    case v1::SERVICE_CLASS_SPOT:
      return ServiceClass::kSpot;
    default:
      return ServiceClass::kOnDemand;
  }
}

v1::ServiceClass FromPolicyClass(ServiceClass c) {
  switch (c) {
    case ServiceClass::kReserved:
      return v1::SERVICE_CLASS_RESERVED;
    case ServiceClass::kSpot:
      return v1::SERVICE_CLASS_SPOT;
    default:
      return v1::SERVICE_CLASS_ON_DEMAND;
  }
}

bool IsActive(v1::JobState s) {
  return s == v1::JOB_STATE_PENDING || s == v1::JOB_STATE_STARTING ||
         s == v1::JOB_STATE_RUNNING;
}

std::string StateName(v1::JobState s) {
  std::string n = v1::JobState_Name(s);
  return absl::AsciiStrToLower(n.substr(std::string("JOB_STATE_").size()));
}

absl::Status ValidName(absl::string_view field, absl::string_view name) {
  RETURN_IF_ERROR(validation::Name(field, name));
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must not be empty"));
  }
  if (name.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be at most 128 characters"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": \"", name,
          "\" may contain only letters, digits, '-', '_' and '.'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

ClusterManager::ClusterManager(ClusterManagerOptions options)
    : options_(std::move(options)) {
  absl::MutexLock lock(&mu_);
  for (const config::Domain& d : options_.config.domains) {
    DomainRt rt;
    rt.name = d.name;
    rt.kind = d.kind;
    rt.config_cap_mw = d.cap_mw;
    rt.cap_mw = d.cap_mw;
    if (!d.parent.empty()) {
      rt.parent = domain_index_.at(d.parent);
      rt.depth = domains_[rt.parent].depth + 1;
    }
    domain_index_[d.name] = static_cast<int>(domains_.size());
    domains_.push_back(rt);
  }
  for (const auto& [name, weight] : options_.config.tenant_weights) {
    TenantRt t;
    t.tenant.set_name(name);
    t.tenant.set_fair_share_weight(weight);
    tenants_[name] = t;
  }
}

ClusterManager::~ClusterManager() { Stop(); }

// ----------------------------------------------------------------- load ----

absl::Status ClusterManager::Load() {
  absl::MutexLock lock(&mu_);
  return LoadLocked();
}

absl::Status ClusterManager::LoadLocked() {
  storage::Store* store = options_.store;
  absl::Status parse_error;
  auto check = [&](bool ok, std::string_view table, std::string_view key) {
    if (!ok && parse_error.ok()) {
      parse_error = absl::DataLossError(absl::StrCat(
          "cannot parse ", std::string(table), " record ", std::string(key)));
    }
    return ok;
  };
  ASSIGN_OR_RETURN(auto counters_raw, store->Get(storage::kMeta, kCountersKey));
  if (counters_raw.has_value()) {
    v1::records::Counters c;
    if (!check(c.ParseFromString(*counters_raw), storage::kMeta,
               kCountersKey)) {
      return parse_error;
    }
    next_job_seq_ = std::max<uint64_t>(1, c.next_job_seq());
    next_event_seq_ = std::max<uint64_t>(1, c.next_event_seq());
  }
  RETURN_IF_ERROR(store->Scan(storage::kDomains, "", [&](auto key, auto value) {
    v1::records::DomainCapOverride o;
    if (!check(o.ParseFromString(std::string(value)), storage::kDomains, key)) {
      return false;
    }
    auto it = domain_index_.find(o.domain());
    if (it != domain_index_.end()) domains_[it->second].cap_mw = o.cap_mw();
    return true;
  }));
  RETURN_IF_ERROR(store->Scan(storage::kTenants, "", [&](auto key, auto value) {
    TenantRt t;
    if (!check(t.tenant.ParseFromString(std::string(value)), storage::kTenants,
               key)) {
      return false;
    }
    tenants_[t.tenant.name()] = t;
    absl::MutexLock names_lock(&tenant_names_mu_);
    tenant_names_.insert(t.tenant.name());
    return true;
  }));
  RETURN_IF_ERROR(store->Scan(storage::kNodes, "", [&](auto key, auto value) {
    NodeRt n;
    if (!check(n.node.ParseFromString(std::string(value)), storage::kNodes,
               key)) {
      return false;
    }
    for (const v1::GpuStatus& g : n.node.gpus()) {
      Gpu gpu;
      gpu.info.set_index(g.index());
      gpu.info.set_uuid(g.uuid());
      gpu.info.set_model(g.model());
      gpu.info.set_memory_total_bytes(g.memory_total_bytes());
      gpu.info.set_min_power_limit_mw(g.min_power_limit_mw());
      gpu.info.set_max_power_limit_mw(g.max_power_limit_mw());
      gpu.info.set_default_power_limit_mw(g.power_limit_mw());
      gpu.status = g;
      gpu.status.set_power_mw(0);
      n.gpus.push_back(gpu);
    }
    n.leaf = LeafFor(n.node.name());
    if (n.leaf < 0) return true;  // no longer in the config: forgotten
    n.node.set_domain(domains_[n.leaf].name);
    n.node.set_state(v1::NODE_STATE_UNREACHABLE);
    n.unreachable_since = options_.clock->Now();
    domains_[n.leaf].nodes++;
    for (int d = domains_[n.leaf].parent; d >= 0; d = domains_[d].parent) {
      domains_[d].nodes++;
    }
    nodes_[n.node.name()] = std::move(n);
    return true;
  }));
  RETURN_IF_ERROR(parse_error);
  RETURN_IF_ERROR(store->Scan(storage::kJobs, "", [&](auto key, auto value) {
    JobRt j;
    if (!check(j.job.ParseFromString(std::string(value)), storage::kJobs,
               key)) {
      return false;
    }
    const v1::Job& job = j.job;
    next_job_seq_ = std::max(next_job_seq_, job.seq() + 1);
    for (const v1::JobAttempt& a : job.attempts()) {
      if (IsSet(a.start_time()) && IsSet(a.end_time())) {
        uint32_t gpus = 0;
        for (const auto& al : a.allocations()) gpus += al.gpu_indices_size();
        AddTenantUsageLocked(
            job.spec().tenant(),
            gpus * absl::ToDoubleSeconds(FromProtoTime(a.end_time()) -
                                         FromProtoTime(a.start_time())),
            FromProtoTime(a.end_time()));
      }
    }
    if (IsActive(job.state())) {
      active_.insert(job.id());
      const size_t n = job.allocations_size();
      j.started.assign(n, job.state() == v1::JOB_STATE_RUNNING);
      j.ended.assign(n, false);
      for (const v1::Allocation& al : job.allocations()) {
        auto nit = nodes_.find(al.node());
        if (nit == nodes_.end()) continue;
        for (uint32_t g : al.gpu_indices()) {
          if (g < nit->second.gpus.size()) {
            nit->second.gpus[g].job_key = AttemptKey(job.id(), job.attempt());
            nit->second.gpus[g].commanded_mw = al.power_limit_mw();
          }
        }
      }
    }
    jobs_[job.id()] = std::move(j);
    return true;
  }));
  RETURN_IF_ERROR(parse_error);
  RETURN_IF_ERROR(store->Scan(storage::kEvents, "", [&](auto key, auto value) {
    v1::Event e;
    if (e.ParseFromString(std::string(value))) {
      next_event_seq_ = std::max(next_event_seq_, e.seq() + 1);
    }
    return true;
  }));
  for (auto& [name, n] : nodes_) UpdateNodeMeasuredLocked(n);
  wake_ = true;
  return absl::OkStatus();
}

int ClusterManager::LeafFor(const std::string& node) const {
  const config::NodeSlot* slot = options_.config.FindNode(node);
  const std::string& domain =
      slot != nullptr ? slot->domain : options_.config.scheduler.default_domain;
  auto it = domain_index_.find(domain);
  return it == domain_index_.end() ? -1 : it->second;
}

// --------------------------------------------------------- persistence ----

void ClusterManager::WriteEventsLocked(const storage::WriteBatch& batch) {
  // Informational events on the report path: not synced, so that a burst of
  // reports (10,000 nodes coming back) does not wait on the disk. They still
  // survive a crash of jouled; a power loss may drop the latest.
  options_.store->Write(batch, storage::WriteOptions{.sync = false})
      .IgnoreError();
}

absl::Status ClusterManager::CommitLocked(const storage::WriteBatch& batch) {
  if (batch.empty()) return absl::OkStatus();
  return options_.store->Write(batch, storage::WriteOptions{.sync = true});
}

void ClusterManager::PutJobLocked(storage::WriteBatch* batch,
                                  const v1::Job& job) {
  batch->Put(storage::kJobs, job.id(), job.SerializeAsString());
}

void ClusterManager::PutNodeLocked(storage::WriteBatch* batch,
                                   const NodeRt& n) {
  v1::Node stored;
  stored.set_name(n.node.name());
  stored.set_domain(n.node.domain());
  stored.set_address(n.node.address());
  stored.set_gpu_backend(n.node.gpu_backend());
  stored.set_drained(n.node.drained());
  stored.set_base_power_mw(n.node.base_power_mw());
  *stored.mutable_registered_time() = n.node.registered_time();
  for (const Gpu& g : n.gpus) {
    v1::GpuStatus* s = stored.add_gpus();
    s->set_index(g.info.index());
    s->set_uuid(g.info.uuid());
    s->set_model(g.info.model());
    s->set_memory_total_bytes(g.info.memory_total_bytes());
    s->set_min_power_limit_mw(g.info.min_power_limit_mw());
    s->set_max_power_limit_mw(g.info.max_power_limit_mw());
    s->set_power_limit_mw(g.info.default_power_limit_mw());
  }
  batch->Put(storage::kNodes, n.node.name(), stored.SerializeAsString());
}

void ClusterManager::PutCountersLocked(storage::WriteBatch* batch) {
  v1::records::Counters c;
  c.set_next_job_seq(next_job_seq_);
  c.set_next_event_seq(next_event_seq_);
  batch->Put(storage::kMeta, kCountersKey, c.SerializeAsString());
}

void ClusterManager::AddEventLocked(storage::WriteBatch* batch,
                                    std::string kind, std::string subject,
                                    std::string message) {
  v1::Event e;
  e.set_seq(next_event_seq_++);
  *e.mutable_time() = ToProtoTime(options_.clock->Now());
  e.set_kind(std::move(kind));
  e.set_subject(std::move(subject));
  e.set_message(std::move(message));
  batch->Put(storage::kEvents, EventKey(e.seq()), e.SerializeAsString());
  PutCountersLocked(batch);
  if (options_.on_event) options_.on_event(e.kind());
}

void ClusterManager::CommitBilled(
    const std::vector<std::pair<v1::Job, v1::JobAttempt>>& billed) {
  if (options_.attempts == nullptr) return;
  for (const auto& [job, attempt] : billed) {
    options_.attempts->Committed(job, attempt);
  }
}

// --------------------------------------------------------- power model ----

const config::GpuModel* ClusterManager::GpuModelLocked(
    const std::string& model) const {
  return options_.config.FindGpuModel(model);
}

int64_t ClusterManager::IdleMwLocked(const std::string& model) const {
  if (const config::GpuModel* m = GpuModelLocked(model);
      m != nullptr && m->idle_mw > 0) {
    return m->idle_mw;
  }
  // Not configured: a tenth of the default limit, as idle GPUs draw.
  for (const auto& [name, n] : nodes_) {
    if (!n.gpus.empty() && n.gpus[0].info.model() == model) {
      return n.gpus[0].info.default_power_limit_mw() / 10;
    }
  }
  return 0;
}

void ClusterManager::UpdateNodeMeasuredLocked(NodeRt& n) {
  int64_t total = n.node.base_power_mw();
  for (const Gpu& g : n.gpus) {
    int64_t p = g.status.power_mw();
    if (g.commanded_mw > 0) p = std::min(p, g.commanded_mw);
    if (!g.job_key.empty()) {
      // A job being stopped will be idle within its grace period.
      const std::string job_id = g.job_key.substr(0, g.job_key.rfind('/'));
      auto it = jobs_.find(job_id);
      if (it != jobs_.end() &&
          it->second.job.stopping_to() != v1::JOB_STATE_UNSPECIFIED) {
        p = std::min(p, IdleMwLocked(g.info.model()));
      }
    }
    total += p;
  }
  const int64_t delta = total - n.measured_mw;
  n.measured_mw = total;
  for (int d = n.leaf; d >= 0; d = domains_[d].parent) {
    domains_[d].measured_mw += delta;
  }
}

int64_t ClusterManager::JobCommittedPerGpuLocked(const JobRt& j) const {
  int64_t limit = j.job.power_limit_mw();
  if (j.job.allocations_size() > 0)
    limit = j.job.allocations(0).power_limit_mw();
  const config::AdmissionMode mode = options_.config.scheduler.admission;
  if ((mode == config::AdmissionMode::kMeasured ||
       mode == config::AdmissionMode::kMeasuredPlus) &&
      j.recent_per_gpu_mw.size() >= kMeasuredMinSamples) {
    std::vector<std::pair<int64_t, int64_t>> samples;
    for (int64_t mw : j.recent_per_gpu_mw) samples.push_back({mw, 1});
    return scheduler::MeasuredCommitPerGpuMw(
        samples, 1, options_.config.scheduler.measured_percentile,
        options_.config.scheduler.measured_margin_pct, limit);
  }
  return limit;
}

std::vector<int64_t> ClusterManager::DomainCommittedLocked() const {
  std::vector<int64_t> committed(domains_.size(), 0);
  auto add = [&](int leaf, int64_t mw) {
    for (int d = leaf; d >= 0; d = domains_[d].parent) committed[d] += mw;
  };
  // Every node draws its base power, and its free GPUs their idle power;
  // allocated GPUs count at their job's committed power.
  for (const auto& [name, n] : nodes_) {
    int64_t mw = n.node.base_power_mw();
    for (const Gpu& g : n.gpus) {
      if (g.job_key.empty()) mw += IdleMwLocked(g.info.model());
    }
    add(n.leaf, mw);
  }
  for (const std::string& id : active_) {
    const JobRt& j = jobs_.at(id);
    if (j.job.state() == v1::JOB_STATE_PENDING) continue;
    const int64_t per_gpu = JobCommittedPerGpuLocked(j);
    for (const v1::Allocation& al : j.job.allocations()) {
      auto it = nodes_.find(al.node());
      if (it == nodes_.end()) continue;
      add(it->second.leaf, per_gpu * al.gpu_indices_size());
    }
  }
  return committed;
}

// ------------------------------------------------------------ snapshot ----

void ClusterManager::AddTenantUsageLocked(const std::string& tenant,
                                          double gpu_seconds, absl::Time at) {
  TenantRt& t = tenants_[tenant];
  if (t.tenant.name().empty()) t.tenant.set_name(tenant);
  const double hl =
      absl::ToDoubleSeconds(options_.config.scheduler.fair_share_half_life);
  if (t.decay_time != absl::InfinitePast() && at > t.decay_time) {
    t.decayed_gpu_seconds *=
        std::exp2(-absl::ToDoubleSeconds(at - t.decay_time) / hl);
  }
  if (t.decay_time == absl::InfinitePast() || at > t.decay_time) {
    t.decay_time = at;
  }
  t.decayed_gpu_seconds += gpu_seconds;
}

double ClusterManager::TenantUsageLocked(const std::string& tenant,
                                         absl::Time now) const {
  auto it = tenants_.find(tenant);
  if (it == tenants_.end() || it->second.decay_time == absl::InfinitePast()) {
    return 0;
  }
  const double hl =
      absl::ToDoubleSeconds(options_.config.scheduler.fair_share_half_life);
  return it->second.decayed_gpu_seconds *
         std::exp2(-std::max(0.0, absl::ToDoubleSeconds(
                                      now - it->second.decay_time)) /
                   hl);
}

scheduler::ClusterSnapshot ClusterManager::SnapshotLocked() const {
  scheduler::ClusterSnapshot snap;
  const absl::Time now = options_.clock->Now();
  snap.now = now;
  for (const config::GpuModel& m : options_.config.gpu_models) {
    scheduler::GpuModelSpec spec{m.name, m.tdp_mw, m.min_limit_mw,
                                 m.max_limit_mw};
    // A range the config leaves out comes from the agents' reports.
    for (const auto& [name, n] : nodes_) {
      if (spec.min_limit_mw > 0 && spec.max_limit_mw > 0) break;
      if (n.gpus.empty() || n.gpus[0].info.model() != m.name) continue;
      if (spec.min_limit_mw == 0) {
        spec.min_limit_mw = n.gpus[0].info.min_power_limit_mw();
      }
      if (spec.max_limit_mw == 0) {
        spec.max_limit_mw = n.gpus[0].info.max_power_limit_mw();
      }
    }
    if (spec.min_limit_mw == 0) spec.min_limit_mw = m.tdp_mw;
    if (spec.max_limit_mw == 0) spec.max_limit_mw = m.tdp_mw;
    snap.gpu_models.push_back(std::move(spec));
  }
  // Models the config does not list: as the agents report them (TDP = the
  // default power limit).
  for (const auto& [name, n] : nodes_) {
    if (n.gpus.empty()) continue;
    const v1::GpuInfo& g = n.gpus[0].info;
    const bool known = std::any_of(
        snap.gpu_models.begin(), snap.gpu_models.end(),
        [&](const scheduler::GpuModelSpec& s) { return s.name == g.model(); });
    if (!known) {
      snap.gpu_models.push_back({g.model(), g.default_power_limit_mw(),
                                 g.min_power_limit_mw(),
                                 g.max_power_limit_mw()});
    }
  }
  // Free GPUs count at idle in committed power (DomainCommittedLocked), so
  // what a job adds where it lands is, per GPU, its limit minus idle. The
  // policy therefore works with limits as increments over idle; ScheduleOnce
  // adds idle back to what it decides.
  for (scheduler::GpuModelSpec& spec : snap.gpu_models) {
    const int64_t idle = IdleMwLocked(spec.name);
    spec.tdp_mw = std::max<int64_t>(0, spec.tdp_mw - idle);
    spec.min_limit_mw = std::max<int64_t>(0, spec.min_limit_mw - idle);
    spec.max_limit_mw = std::max<int64_t>(0, spec.max_limit_mw - idle);
  }
  const std::vector<int64_t> committed = DomainCommittedLocked();
  for (size_t i = 0; i < domains_.size(); ++i) {
    const DomainRt& d = domains_[i];
    scheduler::DomainSnapshot ds;
    ds.name = d.name;
    ds.level = d.kind;
    ds.parent = d.parent;
    ds.cap_mw = d.cap_mw;
    ds.committed_mw = committed[i];
    ds.measured_mw = d.measured_mw;
    if (options_.config.scheduler.admission ==
        config::AdmissionMode::kMeasuredPlus) {
      ds.admission_reserve_mw = scheduler::MarginReserveMw(
          i < margins_.size()
              ? margins_[i]
              : scheduler::InitialMargin(scheduler::AdaptiveMarginConfig{}),
          d.cap_mw);
    }
    snap.domains.push_back(std::move(ds));
  }
  absl::flat_hash_map<std::string, int> node_idx;
  for (const auto& [name, n] : nodes_) {
    scheduler::NodeSnapshot ns;
    ns.name = name;
    ns.domain = n.leaf;
    ns.schedulable = n.ready && !n.node.drained();
    ns.gpu_model = n.gpus.empty() ? "" : n.gpus[0].info.model();
    ns.gpu_count = static_cast<uint32_t>(n.gpus.size());
    ns.free_gpus = 0;
    for (const Gpu& g : n.gpus) {
      if (g.job_key.empty() && g.stale_key.empty() && g.status.healthy() &&
          g.info.index() < 64) {
        ns.free_gpus |= uint64_t{1} << g.info.index();
      }
    }
    ns.measured_mw = n.measured_mw;
    node_idx[name] = static_cast<int>(snap.nodes.size());
    snap.nodes.push_back(std::move(ns));
  }
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, uint32_t>>
      contracted;
  if (options_.contracted_gpus) contracted = options_.contracted_gpus(now);
  for (const auto& [name, t] : tenants_) {
    scheduler::TenantInfo info;
    info.weight = std::max<uint32_t>(1, t.tenant.fair_share_weight());
    info.recent_gpu_hours = TenantUsageLocked(name, now) / 3600.0;
    auto c = contracted.find(name);
    if (c != contracted.end()) info.contracted_gpus = c->second;
    snap.tenants[name] = std::move(info);
  }
  for (const std::string& id : active_) {
    const JobRt& j = jobs_.at(id);
    const v1::Job& job = j.job;
    if (job.state() == v1::JOB_STATE_PENDING) continue;
    scheduler::RunningJob r;
    r.id = job.id();
    r.tenant = job.spec().tenant();
    r.cls = ToPolicyClass(job.effective_class());
    r.priority = job.spec().priority();
    const v1::JobAttempt* cur = job.attempts_size() > 0
                                    ? &job.attempts(job.attempts_size() - 1)
                                    : nullptr;
    r.start_time = cur != nullptr && IsSet(cur->start_time())
                       ? FromProtoTime(cur->start_time())
                       : now;
    r.max_runtime = FromProtoDuration(job.spec().max_runtime());
    uint32_t gpus = 0;
    for (const v1::Allocation& al : job.allocations()) {
      auto it = node_idx.find(al.node());
      if (it == node_idx.end()) continue;
      scheduler::JobShare share;
      share.node = it->second;
      share.gpus.assign(al.gpu_indices().begin(), al.gpu_indices().end());
      gpus += share.gpus.size();
      r.shares.push_back(std::move(share));
    }
    r.gpu_model = job.gpu_model();
    r.limit_mw = job.allocations_size() > 0
                     ? job.allocations(0).power_limit_mw()
                     : job.power_limit_mw();
    r.requested_mw = job.power_limit_mw();
    r.min_mw = job.min_power_limit_mw();
    r.committed_mw = JobCommittedPerGpuLocked(j) * gpus;
    r.measured_per_gpu_mw = j.measured_per_gpu_mw;
    r.idle_per_gpu_mw = IdleMwLocked(job.gpu_model());
    r.limit_changed_at = j.limit_changed_at;
    // A job already being stopped is neither throttled nor preempted again.
    if (job.stopping_to() != v1::JOB_STATE_UNSPECIFIED) {
      r.min_mw = r.limit_mw;
      r.cls = ServiceClass::kReserved;
      r.measured_per_gpu_mw = 0;
    }
    snap.running.push_back(std::move(r));
  }
  return snap;
}

// --------------------------------------------------------------- agents ----

absl::StatusOr<v1::RegisterResponse> ClusterManager::RegisterAgent(
    const v1::RegisterRequest& req) {
  RETURN_IF_ERROR(validation::Register(req));
  for (int i = 0; i < req.gpus_size(); ++i) {
    const v1::GpuInfo& g = req.gpus(i);
    if (g.index() != static_cast<uint32_t>(i)) {
      return absl::InvalidArgumentError(
          absl::StrCat("gpus[", i, "].index: is ", g.index(),
                       "; GPUs must be listed in ", "index order 0..N-1"));
    }
    if (g.model().empty() &&
        std::none_of(req.gpus().begin(), req.gpus().end(),
                     [](const v1::GpuInfo& o) { return !o.model().empty(); })) {
      // One GPU without a model (e.g. lost at discovery) takes its
      // neighbours'; a node where none has one is refused.
      return absl::InvalidArgumentError(
          absl::StrCat("gpus[", i, "].model: must not be empty"));
    }
    if (g.min_power_limit_mw() < 0 ||
        g.max_power_limit_mw() < g.min_power_limit_mw()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gpus[", i,
          "].max_power_limit_mw: must be >= min_power_limit_mw >= 0"));
    }
  }
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  if (!nodes_.contains(req.node_name()) && LeafFor(req.node_name()) < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node_name: \"", req.node_name(),
        "\" is not a node of the cluster config, and the config sets no "
        "scheduler.default_domain for other nodes"));
  }
  if (!nodes_.contains(req.node_name())) {
    // New nodes are bounded in number and in rate.
    const config::SchedulerSettings& sc = options_.config.scheduler;
    if (nodes_.size() >= sc.max_nodes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("node_name: the cluster already has ", nodes_.size(),
                       " nodes (scheduler.max_nodes)"));
    }
    while (!recent_registrations_.empty() &&
           now - recent_registrations_.front() >= absl::Seconds(1)) {
      recent_registrations_.pop_front();
    }
    if (recent_registrations_.size() >= sc.max_registrations_per_second) {
      return absl::UnavailableError(absl::StrCat(
          "register: more than ", sc.max_registrations_per_second,
          " new nodes in the last second "
          "(scheduler.max_registrations_per_second); retry later"));
    }
    recent_registrations_.push_back(now);
  }
  auto [it, inserted] = nodes_.try_emplace(req.node_name());
  NodeRt& n = it->second;
  const bool known = !inserted;
  if (inserted) {
    n.node.set_name(req.node_name());
    n.leaf = LeafFor(req.node_name());
    n.node.set_domain(domains_[n.leaf].name);
    const config::NodeSlot* slot = options_.config.FindNode(req.node_name());
    n.node.set_base_power_mw(
        slot != nullptr ? slot->base_power_mw
                        : options_.config.scheduler.default_base_power_mw);
    *n.node.mutable_registered_time() = ToProtoTime(now);
    domains_[n.leaf].nodes++;
    for (int d = domains_[n.leaf].parent; d >= 0; d = domains_[d].parent) {
      domains_[d].nodes++;
    }
  }
  n.node.set_address(req.address());
  n.node.set_gpu_backend(req.gpu_backend());
  // Keep allocations of GPUs that still exist.
  std::vector<Gpu> gpus(req.gpus_size());
  std::string node_model;
  for (const v1::GpuInfo& g : req.gpus()) {
    if (node_model.empty()) node_model = g.model();
  }
  for (int i = 0; i < req.gpus_size(); ++i) {
    gpus[i].info = req.gpus(i);
    if (gpus[i].info.model().empty()) gpus[i].info.set_model(node_model);
    const config::GpuModel* m = GpuModelLocked(req.gpus(i).model());
    if (m != nullptr) {
      // The config may override the range the agent reports.
      if (m->min_limit_mw > 0)
        gpus[i].info.set_min_power_limit_mw(m->min_limit_mw);
      if (m->max_limit_mw > 0)
        gpus[i].info.set_max_power_limit_mw(m->max_limit_mw);
    }
    gpus[i].status.set_index(i);
    gpus[i].status.set_uuid(req.gpus(i).uuid());
    gpus[i].status.set_model(gpus[i].info.model());
    gpus[i].status.set_healthy(true);
    if (static_cast<size_t>(i) < n.gpus.size()) {
      gpus[i].job_key = n.gpus[i].job_key;
      gpus[i].commanded_mw = n.gpus[i].commanded_mw;
      gpus[i].status = n.gpus[i].status;
    }
  }
  n.gpus = std::move(gpus);
  n.session_id = absl::StrCat(req.node_name(), "-", absl::ToUnixNanos(now));
  // A new registration (with the node's own credentials: the adapter
  // checked them) replaces a live session; the old stream is closed at its
  // next message.
  const bool replaced = n.link != nullptr;
  n.link = nullptr;

  storage::WriteBatch batch;
  std::vector<std::pair<v1::Job, v1::JobAttempt>> billed;
  absl::flat_hash_set<std::string> still_running, exited;
  for (const v1::RunningJob& r : req.running_jobs()) {
    still_running.insert(AttemptKey(r.job_id(), r.attempt()));
    if (r.exited()) exited.insert(AttemptKey(r.job_id(), r.attempt()));
  }
  n.on_attach.clear();
  n.stale_stopped.clear();
  SettleLostJobsLocked(n, still_running,
                       absl::StrCat("lost: the agent on ", n.node.name(),
                                    " no longer runs it (agent restarted)"),
                       /*always_requeue=*/false, &batch, &billed, &exited);
  // Old attempts the agent still runs keep their GPUs from new ones until a
  // report shows them gone.
  for (const v1::RunningJob& r : req.running_jobs()) {
    const std::string key = AttemptKey(r.job_id(), r.attempt());
    if (r.exited() || !n.stale_stopped.contains(key)) continue;
    for (uint32_t g : r.gpu_indices()) {
      if (g < n.gpus.size()) n.gpus[g].stale_key = key;
    }
  }
  PutNodeLocked(&batch, n);
  AddEventLocked(&batch, "node", n.node.name(),
                 replaced ? "agent registered again, replacing its live "
                            "session (same node credentials)"
                 : known  ? "agent registered again"
                          : "node registered");
  RETURN_IF_ERROR(CommitLocked(batch));
  CommitBilled(billed);
  UpdateNodeMeasuredLocked(n);
  NotifyLocked();

  v1::RegisterResponse resp;
  resp.set_node_name(n.node.name());
  resp.set_known_node(known);
  *resp.mutable_report_interval() = ToProtoDuration(options_.report_interval);
  resp.set_session_id(n.session_id);
  return resp;
}

void ClusterManager::SettleLostJobsLocked(
    NodeRt& n, const absl::flat_hash_set<std::string>& still_running,
    const std::string& why, bool always_requeue, storage::WriteBatch* batch,
    std::vector<std::pair<v1::Job, v1::JobAttempt>>* billed,
    const absl::flat_hash_set<std::string>* exited) {
  const absl::Time now = options_.clock->Now();
  std::vector<std::string> lost;
  for (const std::string& id : active_) {
    const JobRt& j = jobs_.at(id);
    if (j.job.state() == v1::JOB_STATE_PENDING) continue;
    for (const v1::Allocation& al : j.job.allocations()) {
      if (al.node() == n.node.name() &&
          !still_running.contains(AttemptKey(id, j.job.attempt()))) {
        lost.push_back(id);
        break;
      }
    }
  }
  for (const std::string& id : lost) {
    JobRt& j = jobs_.at(id);
    const bool was_running = j.job.state() == v1::JOB_STATE_RUNNING;
    // Other ranks, if any, are stopped; the attempt ends now.
    for (const v1::Allocation& al : j.job.allocations()) {
      if (al.node() == n.node.name()) continue;
      auto it = nodes_.find(al.node());
      if (it == nodes_.end()) continue;
      SendLocked(it->second,
                 StopMessage(id, j.job.attempt(), "another rank was lost"));
    }
    v1::JobAttempt a =
        EndAttemptLocked(j, LostEndLocked(j, n, now), why, batch);
    if (IsSet(a.start_time()) && options_.attempts != nullptr) {
      billed->emplace_back(j.job, a);
    }
    const bool requeue = always_requeue || !was_running ||
                         j.job.stopping_to() == v1::JOB_STATE_PREEMPTED ||
                         options_.config.scheduler.lost_job_policy ==
                             config::LostJobPolicy::kRequeue;
    if (j.job.stopping_to() == v1::JOB_STATE_CANCELLED) {
      TransitionLocked(j, v1::JOB_STATE_CANCELLED, j.job.reason(), now);
    } else if (requeue) {
      TransitionLocked(j, v1::JOB_STATE_PENDING,
                       absl::StrCat(why, "; requeued"), now);
    } else {
      TransitionLocked(j, v1::JOB_STATE_FAILED, why, now);
    }
    PutJobLocked(batch, j.job);
    AddEventLocked(batch, "job", id, why);
  }
  // Attempts the agent runs that we do not consider running there: stop.
  for (const std::string& key : still_running) {
    if (exited != nullptr && exited->contains(key)) continue;  // no process
    const std::string id = key.substr(0, key.rfind('/'));
    auto it = jobs_.find(id);
    bool keep = false;
    if (it != jobs_.end() && IsActive(it->second.job.state()) &&
        AttemptKey(id, it->second.job.attempt()) == key) {
      for (const auto& al : it->second.job.allocations()) {
        if (al.node() == n.node.name()) keep = true;
      }
    }
    if (!keep) {
      // Registration comes before the agent's new stream: send on attach.
      n.on_attach.push_back(StopMessage(
          id, static_cast<uint32_t>(std::stoul(key.substr(key.rfind('/') + 1))),
          "not a current job of this node"));
      n.stale_stopped.insert(key);
    }
  }
}

absl::Status ClusterManager::AttachAgent(const v1::AgentHello& hello,
                                         AgentLink* link) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(hello.node_name());
  if (it == nodes_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "hello.node_name: \"", hello.node_name(), "\" has not registered"));
  }
  if (it->second.session_id != hello.session_id()) {
    return absl::FailedPreconditionError(
        "hello.session_id: not the session of the latest registration");
  }
  it->second.link = link;
  // Re-send limits we commanded (an agent that restarted forgot them).
  for (const Gpu& g : it->second.gpus) {
    if (g.commanded_mw > 0 &&
        g.commanded_mw != g.info.default_power_limit_mw()) {
      v1::DaemonMessage m;
      m.mutable_set_power_limit()->set_gpu_index(g.info.index());
      m.mutable_set_power_limit()->set_power_limit_mw(g.commanded_mw);
      m.mutable_set_power_limit()->set_reason("restore commanded limit");
      SendLocked(it->second, m);
    }
  }
  for (v1::DaemonMessage& m : it->second.on_attach) {
    SendLocked(it->second, std::move(m));
  }
  it->second.on_attach.clear();
  return absl::OkStatus();
}

bool ClusterManager::IsCurrentLink(const std::string& node,
                                   const AgentLink* link) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node);
  return it != nodes_.end() && it->second.link == link;
}

void ClusterManager::DetachAgent(const std::string& node, AgentLink* link) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node);
  if (it != nodes_.end() && it->second.link == link) it->second.link = nullptr;
}

void ClusterManager::SendLocked(NodeRt& n, v1::DaemonMessage msg) {
  if (n.link == nullptr) return;
  msg.set_command_id(next_command_id_++);
  n.link->Send(msg);
}

absl::Status ClusterManager::HandleReport(const std::string& node,
                                          const v1::NodeReport& r) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("report.node_name: \"", node, "\" has not registered"));
  }
  NodeRt& n = it->second;
  if (!r.node_name().empty() && r.node_name() != node) {
    return absl::InvalidArgumentError(
        absl::StrCat("report.node_name: \"", r.node_name(),
                     "\" is not this stream's node \"", node, "\""));
  }
  for (int i = 0; i < r.gpus_size(); ++i) {
    if (r.gpus(i).index() >= n.gpus.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("report.gpus[", i, "].index: GPU ", r.gpus(i).index(),
                       " was never registered by node ", node,
                       " (it registered ", n.gpus.size(), " GPUs)"));
    }
  }
  // Values against physics and what the node registered. A report outside
  // the bounds is dropped whole (it moves no sum) with one event per kind
  // of refusal; the stream stays up, the next good report counts again.
  absl::Status bounds =
      r.jobs_size() > static_cast<int>(validation::kMaxRunningJobs)
          ? absl::InvalidArgumentError("report.jobs: at most 4096 entries")
          : absl::OkStatus();
  for (int i = 0; i < r.gpus_size() && bounds.ok(); ++i) {
    bounds = validation::GpuReport(absl::StrCat("report.gpus[", i, "]"),
                                   r.gpus(i), n.gpus[r.gpus(i).index()].info);
  }
  if (!bounds.ok()) {
    const std::string why(bounds.message());
    if (n.last_refusal != why) {
      n.last_refusal = why;
      storage::WriteBatch batch;
      AddEventLocked(
          &batch, "telemetry", node,
          absl::StrCat("report from node ", node, " refused: ", why));
      WriteEventsLocked(batch);
    }
    return absl::OkStatus();
  }
  n.last_refusal.clear();
  const absl::Time now = options_.clock->Now();
  for (Gpu& gpu : n.gpus) gpu.stale_key.clear();  // rebuilt from this report
  for (const v1::GpuStatus& g : r.gpus()) {
    Gpu& gpu = n.gpus[g.index()];
    const bool was_healthy = gpu.status.healthy();
    if (g.energy_mj() < gpu.status.energy_mj()) {
      // A counter reset (driver reload, agent restart): an event, never a
      // negative energy; counting starts again from the new value.
      storage::WriteBatch batch;
      AddEventLocked(
          &batch, "gpu", absl::StrCat(node, "/", g.index()),
          absl::StrCat("energy counter reset: ", gpu.status.energy_mj(),
                       " mJ -> ", g.energy_mj(), " mJ"));
      WriteEventsLocked(batch);
    }
    gpu.status = g;
    if (was_healthy && !g.healthy()) {
      storage::WriteBatch batch;
      AddEventLocked(&batch, "gpu", absl::StrCat(node, "/", g.index()),
                     absl::StrCat("unhealthy: ", g.health_detail()));
      WriteEventsLocked(batch);
    }
  }
  n.last_report = now;
  if (!n.ready) {
    n.ready = true;
    n.unreachable_since = absl::InfinitePast();
    storage::WriteBatch batch;
    AddEventLocked(&batch, "node", node, "ready: reports resumed");
    WriteEventsLocked(batch);
    NotifyLocked();
  }
  absl::flat_hash_set<std::string> stale;
  for (const v1::RunningJob& rj : r.jobs()) {
    JobRt* j = FindJobLocked(rj.job_id());
    bool current = j != nullptr && IsActive(j->job.state()) &&
                   j->job.state() != v1::JOB_STATE_PENDING &&
                   j->job.attempt() == rj.attempt();
    if (current) {
      current = false;
      for (const v1::Allocation& al : j->job.allocations()) {
        current = current || al.node() == node;
      }
    }
    if (!current) {
      // An attempt that ended here (e.g. requeued while the node was
      // unreachable) still runs on GPUs we consider free: stop it, once.
      const std::string key = AttemptKey(rj.job_id(), rj.attempt());
      stale.insert(key);
      if (!n.stale_stopped.contains(key)) {
        SendLocked(n, StopMessage(rj.job_id(), rj.attempt(),
                                  "not a current job of this node"));
      }
      // Its GPUs stay taken until its processes are confirmed gone.
      for (uint32_t g : rj.gpu_indices()) {
        if (g < n.gpus.size()) n.gpus[g].stale_key = key;
      }
      continue;
    }
    j->last_seen = now;
    // Measured draw per GPU of this job on this node.
    int64_t sum = 0;
    int count = 0;
    for (uint32_t g : rj.gpu_indices()) {
      if (g < n.gpus.size()) {
        sum += n.gpus[g].status.power_mw();
        ++count;
      }
    }
    if (count > 0) {
      j->measured_per_gpu_mw = sum / count;
      j->recent_per_gpu_mw.push_back(j->measured_per_gpu_mw);
      while (j->recent_per_gpu_mw.size() > kMeasuredSamples) {
        j->recent_per_gpu_mw.pop_front();
      }
    }
  }
  n.stale_stopped = std::move(stale);
  UpdateNodeMeasuredLocked(n);
  for (int d = n.leaf; d >= 0; d = domains_[d].parent) {
    if (domains_[d].measured_mw > domains_[d].cap_mw) power_dirty_ = true;
  }
  return absl::OkStatus();
}

ClusterManager::JobRt* ClusterManager::FindJobLocked(const std::string& id) {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second;
}

absl::Time ClusterManager::StartSentLocked(const JobRt& j) const {
  for (int i = j.job.history_size() - 1; i >= 0; --i) {
    const v1::JobTransition& t = j.job.history(i);
    if (t.attempt() != j.job.attempt()) break;
    if (t.state() == v1::JOB_STATE_STARTING) return FromProtoTime(t.time());
  }
  return absl::InfinitePast();
}

absl::Time ClusterManager::LostEndLocked(const JobRt& j, const NodeRt& n,
                                         absl::Time now) const {
  absl::Time end = j.last_seen != absl::InfinitePast()     ? j.last_seen
                   : n.last_report != absl::InfinitePast() ? n.last_report
                                                           : now;
  return std::min(end, now);
}

void ClusterManager::TransitionLocked(JobRt& j, v1::JobState state,
                                      std::string reason, absl::Time when) {
  if (state != v1::JOB_STATE_PREEMPTED) j.job.set_state(state);
  j.job.set_reason(reason);
  v1::JobTransition* t = j.job.add_history();
  t->set_state(state);
  *t->mutable_time() = ToProtoTime(when);
  t->set_reason(std::move(reason));
  t->set_attempt(j.job.attempt());
  if (IsActive(state)) {
    active_.insert(j.job.id());
  } else if (state != v1::JOB_STATE_PREEMPTED) {
    active_.erase(j.job.id());
  }
  if (state == v1::JOB_STATE_PENDING) {
    j.job.clear_allocations();
    j.job.set_stopping_to(v1::JOB_STATE_UNSPECIFIED);
    j.started.clear();
    j.ended.clear();
    j.first_failure_code = 0;
    j.recent_per_gpu_mw.clear();
    j.measured_per_gpu_mw = 0;
    j.energy_mj = 0;
  }
}

v1::JobAttempt ClusterManager::EndAttemptLocked(JobRt& j, absl::Time end,
                                                std::string outcome,
                                                storage::WriteBatch* batch) {
  v1::JobAttempt* a = j.job.attempts_size() > 0
                          ? j.job.mutable_attempts(j.job.attempts_size() - 1)
                          : j.job.add_attempts();
  if (IsSet(a->start_time()) && !IsSet(a->end_time())) {
    if (end < FromProtoTime(a->start_time()))
      end = FromProtoTime(a->start_time());
    *a->mutable_end_time() = ToProtoTime(end);
    uint32_t gpus = 0;
    for (const auto& al : a->allocations()) gpus += al.gpu_indices_size();
    AddTenantUsageLocked(
        j.job.spec().tenant(),
        gpus * absl::ToDoubleSeconds(end - FromProtoTime(a->start_time())),
        end);
  }
  a->set_outcome(std::move(outcome));
  a->set_energy_mj(j.energy_mj);
  const std::string key = AttemptKey(j.job.id(), j.job.attempt());
  for (const v1::Allocation& al : j.job.allocations()) {
    auto it = nodes_.find(al.node());
    if (it == nodes_.end()) continue;
    for (uint32_t g : al.gpu_indices()) {
      if (g < it->second.gpus.size() && it->second.gpus[g].job_key == key) {
        Gpu& gpu = it->second.gpus[g];
        gpu.job_key.clear();
        gpu.commanded_mw = 0;
        // The last report still shows the job's draw; until the next one,
        // count the GPU as idle so the power loop does not act on stale
        // numbers.
        gpu.status.set_power_mw(
            std::min(gpu.status.power_mw(), IdleMwLocked(gpu.info.model())));
      }
    }
    UpdateNodeMeasuredLocked(it->second);
  }
  if (options_.attempts != nullptr && IsSet(a->start_time())) {
    options_.attempts->AddAttempt(j.job, *a, batch);
  }
  NotifyLocked();
  return *a;
}

void ClusterManager::RequestStopLocked(JobRt& j, v1::JobState target,
                                       std::string reason) {
  if (j.job.stopping_to() != v1::JOB_STATE_UNSPECIFIED) return;
  j.job.set_stopping_to(target);
  j.job.set_reason(reason);
  for (size_t i = 0; i < static_cast<size_t>(j.job.allocations_size()); ++i) {
    if (i < j.ended.size() && j.ended[i]) continue;
    auto it = nodes_.find(j.job.allocations(i).node());
    if (it == nodes_.end()) continue;
    SendLocked(it->second, StopMessage(j.job.id(), j.job.attempt(), reason,
                                       options_.config.scheduler.stop_grace));
    UpdateNodeMeasuredLocked(it->second);
  }
}

absl::Status ClusterManager::HandleJobUpdate(const std::string& node,
                                             const v1::JobUpdate& u) {
  absl::MutexLock lock(&mu_);
  JobRt* j = FindJobLocked(u.job_id());
  // Updates of attempts that are over are duplicates (e.g. re-sent after a
  // reconnect): ignored.
  if (j == nullptr || !IsActive(j->job.state()) ||
      j->job.state() == v1::JOB_STATE_PENDING ||
      j->job.attempt() != u.attempt()) {
    return absl::OkStatus();
  }
  int rank = -1;
  for (int i = 0; i < j->job.allocations_size(); ++i) {
    if (j->job.allocations(i).node() == node) rank = i;
  }
  if (rank < 0) return absl::OkStatus();
  // Times are the daemon's: never before it sent StartJob, never after it
  // received this update, whatever the agent's clock says.
  const absl::Time now = options_.clock->Now();
  const absl::Time sent = std::min(StartSentLocked(*j), now);
  const absl::Time when =
      std::clamp(IsSet(u.time()) ? FromProtoTime(u.time()) : now, sent, now);
  const std::string message = u.message().substr(0, validation::kMaxTextBytes);
  storage::WriteBatch batch;
  std::vector<std::pair<v1::Job, v1::JobAttempt>> billed;
  switch (u.phase()) {
    case v1::JOB_PHASE_STARTED: {
      if (j->started[rank]) return absl::OkStatus();
      j->started[rank] = true;
      if (j->job.state() == v1::JOB_STATE_STARTING) {
        v1::JobAttempt* a = j->job.mutable_attempts(j->job.attempts_size() - 1);
        *a->mutable_start_time() = ToProtoTime(when);
        TransitionLocked(*j, v1::JOB_STATE_RUNNING,
                         absl::StrCat("running on ", node), when);
        PutJobLocked(&batch, j->job);
      }
      break;
    }
    case v1::JOB_PHASE_FAILED_TO_START:
    case v1::JOB_PHASE_EXITED:
    case v1::JOB_PHASE_LOST: {
      if (j->ended[rank]) return absl::OkStatus();
      j->ended[rank] = true;
      // The job's exit code is that of the first rank that failed (the
      // others are then stopped, and their 143s say nothing).
      if (j->first_failure_code == 0 && u.exit_code() != 0) {
        j->first_failure_code = u.exit_code();
      }
      // Physics bounds what a rank can have drawn: its GPUs at twice their
      // max limit for the whole attempt (mW x s = mJ).
      uint64_t energy = u.energy_mj();
      {
        const v1::JobAttempt& a = j->job.attempts(j->job.attempts_size() - 1);
        const absl::Time start =
            IsSet(a.start_time()) ? FromProtoTime(a.start_time()) : sent;
        const double seconds =
            std::max(0.0, absl::ToDoubleSeconds(when - start)) + 1;
        auto nit = nodes_.find(node);
        double max_mw = 0;
        for (uint32_t g : j->job.allocations(rank).gpu_indices()) {
          if (nit != nodes_.end() && g < nit->second.gpus.size()) {
            const int64_t max_limit =
                nit->second.gpus[g].info.max_power_limit_mw();
            max_mw +=
                2.0 * (max_limit > 0 ? max_limit : validation::kMaxPowerMw);
          }
        }
        const double cap = max_mw * seconds;
        if (static_cast<double>(energy) > cap) {
          AddEventLocked(&batch, "telemetry", node,
                         absl::StrCat("job_update.energy_mj of ", j->job.id(),
                                      " from node ", node, ": ", energy,
                                      " mJ is more than its GPUs can draw; "
                                      "counted as ",
                                      static_cast<uint64_t>(cap)));
          energy = static_cast<uint64_t>(cap);
        }
      }
      j->energy_mj += energy;
      const bool failed = u.phase() != v1::JOB_PHASE_EXITED ||
                          u.exit_code() != 0 || u.max_runtime_exceeded();
      if (u.phase() == v1::JOB_PHASE_EXITED && !j->started[rank] &&
          IsSet(u.start_time())) {
        // The STARTED update never arrived: take the start from the exit.
        j->started[rank] = true;
        if (j->job.state() == v1::JOB_STATE_STARTING) {
          const absl::Time start =
              std::clamp(FromProtoTime(u.start_time()), sent, when);
          *j->job.mutable_attempts(j->job.attempts_size() - 1)
               ->mutable_start_time() = ToProtoTime(start);
          TransitionLocked(*j, v1::JOB_STATE_RUNNING,
                           absl::StrCat("running on ", node), start);
        }
      }
      if (failed && j->job.stopping_to() == v1::JOB_STATE_UNSPECIFIED) {
        std::string why =
            u.max_runtime_exceeded()
                ? "max runtime exceeded"
                : absl::StrCat("rank ", rank, " on ", node, ": ", message);
        RequestStopLocked(*j, v1::JOB_STATE_FAILED, why);
      }
      bool all_ended = true;
      for (bool e : j->ended) all_ended = all_ended && e;
      if (!all_ended) break;
      FinishAttemptLocked(*j, when, &batch, &billed);
      break;
    }
    default:
      return absl::InvalidArgumentError("job_update.phase: unknown phase");
  }
  if (u.phase() == v1::JOB_PHASE_STARTED) {
    // Not acknowledged to anyone and re-derivable: if this write is lost
    // with the machine, the agent's EXITED carries the start time again.
    // It still survives a crash of jouled itself (the WAL is written).
    RETURN_IF_ERROR(
        options_.store->Write(batch, storage::WriteOptions{.sync = false}));
  } else {
    RETURN_IF_ERROR(CommitLocked(batch));
  }
  CommitBilled(billed);
  return absl::OkStatus();
}

void ClusterManager::FinishAttemptLocked(
    JobRt& j, absl::Time end, storage::WriteBatch* batch,
    std::vector<std::pair<v1::Job, v1::JobAttempt>>* billed) {
  v1::JobState target = j.job.stopping_to();
  std::string reason = j.job.reason();
  if (target == v1::JOB_STATE_UNSPECIFIED) {
    target = v1::JOB_STATE_SUCCEEDED;
    reason = "all ranks exited with code 0";
  }
  j.job.set_exit_code(j.first_failure_code);
  v1::JobAttempt a =
      EndAttemptLocked(j, end, StateName(target) + ": " + reason, batch);
  if (IsSet(a.start_time()) && options_.attempts != nullptr) {
    billed->emplace_back(j.job, a);
  }
  if (target == v1::JOB_STATE_PREEMPTED) {
    TransitionLocked(j, v1::JOB_STATE_PREEMPTED, reason, end);
    TransitionLocked(j, v1::JOB_STATE_PENDING, "requeued after preemption",
                     end);
  } else {
    j.job.set_stopping_to(v1::JOB_STATE_UNSPECIFIED);
    TransitionLocked(j, target, reason, end);
  }
  PutJobLocked(batch, j.job);
}

void ClusterManager::HandleCommandResult(const std::string& node,
                                         const v1::CommandResult& r) {
  if (r.ok()) return;
  absl::MutexLock lock(&mu_);
  storage::WriteBatch batch;
  AddEventLocked(
      &batch, "command", node,
      absl::StrCat("command ", r.command_id(), " failed: ", r.error()));
  CommitLocked(batch).IgnoreError();
}

void ClusterManager::HandleLogChunk(const std::string& node,
                                    const v1::LogChunk& c) {
  absl::MutexLock lock(&mu_);
  auto it = pending_logs_.find(c.command_id());
  if (it == pending_logs_.end() || it->second->node != node) return;
  it->second->chunk = c;
  it->second->done.Notify();
  pending_logs_.erase(it);
}

// ----------------------------------------------------------------- jobs ----

absl::Status ClusterManager::ValidateSpecLocked(const v1::JobSpec& spec) const {
  RETURN_IF_ERROR(validation::JobSpec(spec));
  if (!tenants_.contains(spec.tenant())) {
    return absl::NotFoundError(absl::StrCat(
        "spec.tenant: \"", spec.tenant(),
        "\" is not a tenant (create it with `joulectl tenant create`)"));
  }
  if (spec.command_size() == 0 || spec.command(0).empty()) {
    return absl::InvalidArgumentError(
        "spec.command: must name a program to run");
  }
  if (spec.gpus_per_node() == 0) {
    return absl::InvalidArgumentError("spec.gpus_per_node: must be at least 1");
  }
  if (spec.nodes() > 1024) {
    return absl::InvalidArgumentError("spec.nodes: must be at most 1024");
  }
  if (spec.service_class() != v1::SERVICE_CLASS_UNSPECIFIED &&
      !v1::ServiceClass_IsValid(spec.service_class())) {
    return absl::InvalidArgumentError(
        "spec.service_class: must be reserved, on-demand or spot");
  }
  if (spec.sim_load() < 0 || spec.sim_load() > 1) {
    return absl::InvalidArgumentError("spec.sim_load: must be within 0..1");
  }
  const google::protobuf::Duration& mr = spec.max_runtime();
  if (mr.seconds() < 0 || mr.nanos() < 0) {
    return absl::InvalidArgumentError("spec.max_runtime: must not be negative");
  }
  if (spec.power_limit_mw() < 0 || spec.min_power_limit_mw() < 0) {
    return absl::InvalidArgumentError(
        "spec.power_limit_mw: power must not be negative");
  }
  if (!spec.gpu_model().empty()) {
    const config::GpuModel* m = GpuModelLocked(spec.gpu_model());
    bool on_a_node = false;
    for (const auto& [name, n] : nodes_) {
      if (!n.gpus.empty() && n.gpus[0].info.model() == spec.gpu_model()) {
        on_a_node = true;
      }
    }
    if (m == nullptr && !on_a_node) {
      std::vector<std::string> known;
      for (const auto& g : options_.config.gpu_models) known.push_back(g.name);
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.gpu_model: \"", spec.gpu_model(),
          "\" is not a known GPU model (known: ", absl::StrJoin(known, ", "),
          ")"));
    }
    if (m != nullptr && spec.power_limit_mw() > 0) {
      const int64_t lo = m->min_limit_mw, hi = m->max_limit_mw;
      if ((lo > 0 && spec.power_limit_mw() < lo) ||
          (hi > 0 && spec.power_limit_mw() > hi)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "spec.power_limit_mw: ", FormatPower(spec.power_limit_mw()),
            " is outside the ", spec.gpu_model(), " power-limit range ",
            FormatPower(lo), "..", FormatPower(hi)));
      }
    }
  }
  if (spec.min_power_limit_mw() > 0 && spec.power_limit_mw() > 0 &&
      spec.min_power_limit_mw() > spec.power_limit_mw()) {
    return absl::InvalidArgumentError(
        "spec.min_power_limit_mw: must not exceed power_limit_mw");
  }
  // A shape no node can ever hold is refused at once.
  uint32_t largest = 0;
  for (const auto& [name, n] : nodes_) {
    if (spec.gpu_model().empty() ||
        (!n.gpus.empty() && n.gpus[0].info.model() == spec.gpu_model())) {
      largest = std::max<uint32_t>(largest, n.gpus.size());
    }
  }
  if (spec.gpus_per_node() > largest) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.gpus_per_node: ", spec.gpus_per_node(), " GPUs",
        spec.gpu_model().empty() ? "" : absl::StrCat(" of ", spec.gpu_model()),
        " per node is more than any registered node has (largest: ", largest,
        ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Job> ClusterManager::SubmitJob(
    const v1::SubmitJobRequest& req, const std::string& caller_tenant) {
  v1::JobSpec spec = req.spec();
  if (!caller_tenant.empty() && spec.tenant().empty()) {
    spec.set_tenant(caller_tenant);
  }
  if (!caller_tenant.empty() && spec.tenant() != caller_tenant) {
    return absl::PermissionDeniedError(
        "spec.tenant: a tenant may submit jobs only for itself");
  }
  if (spec.nodes() == 0) spec.set_nodes(1);
  if (spec.service_class() == v1::SERVICE_CLASS_UNSPECIFIED) {
    spec.set_service_class(v1::SERVICE_CLASS_ON_DEMAND);
  }
  if (!req.request_id().empty()) {
    RETURN_IF_ERROR(ValidName("request_id", req.request_id()));
  }
  const std::string idem_key =
      req.request_id().empty()
          ? ""
          : absl::StrCat(spec.tenant(), "/", req.request_id());
  JobRt j;
  storage::WriteBatch batch;
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(ValidateSpecLocked(spec));
    if (options_.check_priced) {
      RETURN_IF_ERROR(options_.check_priced(spec, options_.clock->Now()));
    }
    if (!idem_key.empty()) {
      // A retry racing its original waits for it, then sees its record.
      auto settled = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !submitting_.contains(idem_key);
      };
      mu_.Await(absl::Condition(&settled));
      ASSIGN_OR_RETURN(auto prior,
                       options_.store->Get(storage::kJobsIdem, idem_key));
      if (prior.has_value()) {
        v1::records::SubmitIdempotency rec;
        rec.ParseFromString(*prior);
        if (rec.spec_fingerprint() != SpecFingerprint(spec)) {
          return absl::AlreadyExistsError(
              absl::StrCat("request_id: \"", req.request_id(),
                           "\" was already used for a different job spec"));
        }
        auto it = jobs_.find(rec.job_id());
        if (it != jobs_.end()) return it->second.job;
      }
      submitting_.insert(idem_key);
    }
    const absl::Time now = options_.clock->Now();
    v1::Job& job = j.job;
    job.set_seq(next_job_seq_++);
    job.set_id(absl::StrFormat("job-%06d", job.seq()));
    *job.mutable_spec() = spec;
    *job.mutable_submit_time() = ToProtoTime(now);
    job.set_request_id(req.request_id());
    job.set_effective_class(spec.service_class());
    job.set_power_limit_mw(spec.power_limit_mw());
    job.set_min_power_limit_mw(spec.min_power_limit_mw());
    TransitionLocked(j, v1::JOB_STATE_PENDING, "submitted", now);
    active_.erase(job.id());  // not visible until it is durable
    PutJobLocked(&batch, job);
    PutCountersLocked(&batch);
    if (!idem_key.empty()) {
      v1::records::SubmitIdempotency rec;
      rec.set_job_id(job.id());
      rec.set_spec_fingerprint(SpecFingerprint(spec));
      batch.Put(storage::kJobsIdem, idem_key, rec.SerializeAsString());
    }
  }
  // The synchronous write runs without the lock, so that concurrent
  // submissions share one WAL sync (RocksDB group commit). A crash here
  // loses only what was not acknowledged. Counters may be stored out of
  // order; Load() takes the largest job seq seen.
  const absl::Status s =
      options_.store->Write(batch, storage::WriteOptions{.sync = true});
  absl::MutexLock lock(&mu_);
  if (!idem_key.empty()) submitting_.erase(idem_key);
  if (!s.ok()) return s;
  const std::string id = j.job.id();
  const v1::Job out = j.job;
  jobs_[id] = std::move(j);
  active_.insert(id);
  NotifyLocked();
  return out;
}

absl::StatusOr<v1::Job> ClusterManager::GetJob(
    const std::string& id, const std::string& caller_tenant) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end() || (!caller_tenant.empty() &&
                            it->second.job.spec().tenant() != caller_tenant)) {
    return absl::NotFoundError(absl::StrCat("id: no job \"", id, "\""));
  }
  return it->second.job;
}

absl::StatusOr<std::vector<v1::Job>> ClusterManager::ListJobs(
    const v1::ListJobsRequest& req, const std::string& caller_tenant) {
  if (!caller_tenant.empty() && !req.tenant().empty() &&
      req.tenant() != caller_tenant) {
    return absl::PermissionDeniedError(
        "tenant: a tenant may list only its own jobs");
  }
  const std::string tenant =
      caller_tenant.empty() ? req.tenant() : caller_tenant;
  absl::MutexLock lock(&mu_);
  std::vector<v1::Job> out;
  for (const auto& [id, j] : jobs_) {
    if (!tenant.empty() && j.job.spec().tenant() != tenant) continue;
    if (req.state() != v1::JOB_STATE_UNSPECIFIED &&
        j.job.state() != req.state()) {
      continue;
    }
    if (!req.array_id().empty() && j.job.array_id() != req.array_id()) continue;
    out.push_back(j.job);
  }
  if (req.limit() > 0 && out.size() > req.limit()) {
    out.erase(out.begin(), out.end() - req.limit());  // newest
  }
  return out;
}

absl::StatusOr<v1::Job> ClusterManager::CancelJob(
    const v1::CancelJobRequest& req, const std::string& caller_tenant) {
  RETURN_IF_ERROR(validation::Text("reason", req.reason()));
  absl::MutexLock lock(&mu_);
  JobRt* j = FindJobLocked(req.id());
  if (j == nullptr ||
      (!caller_tenant.empty() && j->job.spec().tenant() != caller_tenant)) {
    return absl::NotFoundError(absl::StrCat("id: no job \"", req.id(), "\""));
  }
  if (!IsActive(j->job.state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "id: job ", req.id(), " is already ", StateName(j->job.state())));
  }
  const std::string reason =
      req.reason().empty() ? "cancelled by request" : req.reason();
  storage::WriteBatch batch;
  if (j->job.state() == v1::JOB_STATE_PENDING) {
    TransitionLocked(*j, v1::JOB_STATE_CANCELLED, reason,
                     options_.clock->Now());
  } else {
    RequestStopLocked(*j, v1::JOB_STATE_CANCELLED, reason);
  }
  PutJobLocked(&batch, j->job);
  RETURN_IF_ERROR(CommitLocked(batch));
  return j->job;
}

absl::StatusOr<v1::GetJobLogsResponse> ClusterManager::GetJobLogs(
    const v1::GetJobLogsRequest& req, const std::string& caller_tenant) {
  auto pending = std::make_shared<PendingLog>();
  std::string node;
  {
    absl::MutexLock lock(&mu_);
    JobRt* j = FindJobLocked(req.id());
    if (j == nullptr ||
        (!caller_tenant.empty() && j->job.spec().tenant() != caller_tenant)) {
      return absl::NotFoundError(absl::StrCat("id: no job \"", req.id(), "\""));
    }
    const uint32_t attempt =
        req.attempt() == 0 ? j->job.attempt() : req.attempt();
    if (attempt == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "id: job ", req.id(), " has not started yet, so it has no logs"));
    }
    if (attempt > static_cast<uint32_t>(j->job.attempts_size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("attempt: job ", req.id(), " has ",
                       j->job.attempts_size(), " attempt(s)"));
    }
    const v1::JobAttempt& a = j->job.attempts(attempt - 1);
    if (a.allocations_size() == 0) {
      return absl::FailedPreconditionError("attempt: ran on no node");
    }
    node = a.allocations(0).node();
    auto it = nodes_.find(node);
    if (it == nodes_.end() || it->second.link == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "node ", node, " (which holds the log) is not connected"));
    }
    v1::DaemonMessage m;
    m.set_command_id(next_command_id_++);
    m.mutable_fetch_logs()->set_job_id(req.id());
    m.mutable_fetch_logs()->set_attempt(attempt);
    m.mutable_fetch_logs()->set_max_bytes(
        req.max_bytes() == 0 ? 1 << 20 : req.max_bytes());
    pending->node = node;
    pending_logs_[m.command_id()] = pending;
    it->second.link->Send(m);
  }
  if (!pending->done.WaitForNotificationWithTimeout(absl::Seconds(5))) {
    return absl::DeadlineExceededError(
        absl::StrCat("node ", node, " did not send the log within 5s"));
  }
  if (!pending->chunk.error().empty()) {
    return absl::NotFoundError(pending->chunk.error());
  }
  v1::GetJobLogsResponse resp;
  resp.set_data(pending->chunk.data());
  resp.set_truncated(pending->chunk.truncated());
  resp.set_node(node);
  return resp;
}

// ---------------------------------------------------------------- admin ----

v1::Node ClusterManager::NodeViewLocked(
    const NodeRt& n, absl::Time now, const std::string& viewer_tenant) const {
  v1::Node out = n.node;
  out.set_state(n.ready ? v1::NODE_STATE_READY : v1::NODE_STATE_UNREACHABLE);
  out.clear_gpus();
  int64_t power = n.node.base_power_mw(), limit = 0;
  uint64_t energy = 0;
  absl::flat_hash_set<std::string> running;
  for (const Gpu& g : n.gpus) {
    v1::GpuStatus s = g.status;
    s.set_index(g.info.index());
    s.set_uuid(g.info.uuid());
    s.set_model(g.info.model());
    if (s.memory_total_bytes() == 0) {
      s.set_memory_total_bytes(g.info.memory_total_bytes());
    }
    s.set_min_power_limit_mw(g.info.min_power_limit_mw());
    s.set_max_power_limit_mw(g.info.max_power_limit_mw());
    if (!g.job_key.empty()) {
      const std::string id = g.job_key.substr(0, g.job_key.rfind('/'));
      auto j = jobs_.find(id);
      const bool visible =
          viewer_tenant.empty() ||
          (j != jobs_.end() && j->second.job.spec().tenant() == viewer_tenant);
      if (visible) {
        s.set_job_id(id);
        running.insert(id);
      }
    }
    if (!n.ready) s.set_power_mw(0);
    power += s.power_mw();
    limit += s.power_limit_mw();
    energy += s.energy_mj();
    *out.add_gpus() = std::move(s);
  }
  out.set_power_mw(n.ready ? power : 0);
  out.set_power_limit_mw(limit);
  out.set_energy_mj(energy);
  for (const std::string& r : running) out.add_running_jobs(r);
  if (n.last_report != absl::InfinitePast()) {
    *out.mutable_last_report_time() = ToProtoTime(n.last_report);
    *out.mutable_report_age() = ToProtoDuration(now - n.last_report);
  }
  return out;
}

std::vector<v1::Node> ClusterManager::ListNodes(
    const std::string& viewer_tenant) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  std::vector<v1::Node> out;
  for (const auto& [name, n] : nodes_) {
    out.push_back(NodeViewLocked(n, now, viewer_tenant));
  }
  return out;
}

absl::StatusOr<v1::Node> ClusterManager::GetNode(
    const std::string& name, const std::string& viewer_tenant) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("name: no node \"", name, "\""));
  }
  return NodeViewLocked(it->second, options_.clock->Now(), viewer_tenant);
}

absl::StatusOr<v1::Node> ClusterManager::DrainNode(const std::string& name,
                                                   bool drain) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("name: no node \"", name, "\""));
  }
  NodeRt& n = it->second;
  if (n.node.drained() != drain) {
    n.node.set_drained(drain);
    storage::WriteBatch batch;
    PutNodeLocked(&batch, n);
    AddEventLocked(&batch, "node", name,
                   drain ? "drained: no new jobs; running jobs finish"
                         : "undrained: accepts jobs again");
    RETURN_IF_ERROR(CommitLocked(batch));
    NotifyLocked();
  }
  return NodeViewLocked(n, options_.clock->Now());
}

absl::Status ClusterManager::RemoveNode(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("name: no node \"", name, "\""));
  }
  NodeRt& n = it->second;
  std::vector<std::string> placed;
  for (const std::string& id : active_) {
    const JobRt& j = jobs_.at(id);
    for (const v1::Allocation& al : j.job.allocations()) {
      if (al.node() == name) placed.push_back(id);
    }
  }
  bool stale = false;
  for (const Gpu& g : n.gpus) stale = stale || !g.stale_key.empty();
  if (!placed.empty() || stale) {
    std::sort(placed.begin(), placed.end());
    return absl::FailedPreconditionError(
        absl::StrCat("name: node ", name, " still has jobs placed on it (",
                     placed.empty() ? "old attempts still running"
                                    : absl::StrJoin(placed, ", "),
                     "); drain it and wait, or cancel them"));
  }
  if (n.link != nullptr && n.ready) {
    return absl::FailedPreconditionError(absl::StrCat(
        "name: the agent of ", name,
        " is connected and reporting; stop it first (it would register "
        "again)"));
  }
  storage::WriteBatch batch;
  batch.Delete(storage::kNodes, name);
  AddEventLocked(&batch, "node", name, "removed by the operator");
  RETURN_IF_ERROR(CommitLocked(batch));
  for (int d = n.leaf; d >= 0; d = domains_[d].parent) {
    if (domains_[d].nodes > 0) domains_[d].nodes--;
    domains_[d].measured_mw -= n.measured_mw;
  }
  nodes_.erase(it);
  NotifyLocked();
  return absl::OkStatus();
}

v1::GetPowerTreeResponse ClusterManager::PowerTree() {
  absl::MutexLock lock(&mu_);
  const std::vector<int64_t> committed = DomainCommittedLocked();
  std::vector<std::vector<int>> children(domains_.size());
  int root = 0;
  for (size_t i = 0; i < domains_.size(); ++i) {
    if (domains_[i].parent >= 0) {
      children[domains_[i].parent].push_back(static_cast<int>(i));
    } else {
      root = static_cast<int>(i);
    }
  }
  v1::GetPowerTreeResponse resp;
  resp.set_admission_mode(options_.config.scheduler.admission ==
                                  config::AdmissionMode::kMeasured
                              ? "measured"
                              : "allocated");
  std::vector<int> stack = {root};
  while (!stack.empty()) {
    const int i = stack.back();
    stack.pop_back();
    const DomainRt& d = domains_[i];
    v1::PowerDomain* out = resp.add_domains();
    out->set_name(d.name);
    out->set_parent(d.parent >= 0 ? domains_[d.parent].name : "");
    out->set_kind(d.kind);
    out->set_cap_mw(d.cap_mw);
    out->set_committed_mw(committed[i]);
    out->set_measured_mw(d.measured_mw);
    out->set_headroom_mw(d.cap_mw - std::max(committed[i], d.measured_mw));
    out->set_depth(d.depth);
    out->set_nodes(d.nodes);
    for (auto c = children[i].rbegin(); c != children[i].rend(); ++c) {
      stack.push_back(*c);
    }
  }
  return resp;
}

absl::StatusOr<v1::PowerDomain> ClusterManager::SetPowerCap(
    const v1::SetPowerCapRequest& r) {
  RETURN_IF_ERROR(validation::Text("reason", r.reason()));
  if (r.cap_mw() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cap_mw: ", r.cap_mw(), " is negative; a cap must be >= 0"));
  }
  absl::MutexLock lock(&mu_);
  auto it = domain_index_.find(r.domain());
  if (it == domain_index_.end()) {
    return absl::NotFoundError(
        absl::StrCat("domain: \"", r.domain(), "\" is not a power domain"));
  }
  DomainRt& d = domains_[it->second];
  const int64_t old = d.cap_mw;
  v1::records::DomainCapOverride o;
  o.set_domain(d.name);
  o.set_cap_mw(r.cap_mw());
  *o.mutable_set_time() = ToProtoTime(options_.clock->Now());
  o.set_reason(r.reason());
  storage::WriteBatch batch;
  batch.Put(storage::kDomains, d.name, o.SerializeAsString());
  AddEventLocked(
      &batch, "cap", d.name,
      absl::StrCat("cap ", FormatPower(old), " -> ", FormatPower(r.cap_mw()),
                   r.reason().empty() ? "" : ": ", r.reason()));
  RETURN_IF_ERROR(CommitLocked(batch));
  d.cap_mw = r.cap_mw();
  power_dirty_ = true;
  NotifyLocked();
  v1::PowerDomain out;
  out.set_name(d.name);
  out.set_parent(d.parent >= 0 ? domains_[d.parent].name : "");
  out.set_kind(d.kind);
  out.set_cap_mw(d.cap_mw);
  out.set_measured_mw(d.measured_mw);
  out.set_committed_mw(DomainCommittedLocked()[it->second]);
  out.set_headroom_mw(d.cap_mw - std::max(out.committed_mw(), d.measured_mw));
  out.set_depth(d.depth);
  out.set_nodes(d.nodes);
  return out;
}

absl::StatusOr<std::vector<v1::Event>> ClusterManager::ListEvents(
    const v1::ListEventsRequest& r, const std::string& viewer_tenant) {
  absl::flat_hash_set<std::string> own_jobs;
  if (!viewer_tenant.empty()) {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, j] : jobs_) {
      if (j.job.spec().tenant() == viewer_tenant) own_jobs.insert(id);
    }
  }
  const absl::Time now = options_.clock->Now();
  const absl::Duration since = FromProtoDuration(r.since());
  if (since < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("since: must not be negative");
  }
  std::vector<v1::Event> out;
  RETURN_IF_ERROR(
      options_.store->Scan(storage::kEvents, "", [&](auto key, auto value) {
        v1::Event e;
        if (!e.ParseFromString(std::string(value))) return true;
        if (since > absl::ZeroDuration() &&
            FromProtoTime(e.time()) < now - since) {
          return true;
        }
        if (!r.kind().empty() && e.kind() != r.kind()) return true;
        if (!viewer_tenant.empty() && !own_jobs.contains(e.subject())) {
          return true;
        }
        out.push_back(std::move(e));
        return true;
      }));
  if (r.limit() > 0 && out.size() > r.limit()) {
    out.erase(out.begin(), out.end() - r.limit());
  }
  return out;
}

absl::StatusOr<v1::Tenant> ClusterManager::CreateTenant(const v1::Tenant& t) {
  RETURN_IF_ERROR(ValidName("tenant.name", t.name()));
  if (t.fair_share_weight() > 1000) {
    return absl::InvalidArgumentError(
        "tenant.fair_share_weight: must be within 1..1000");
  }
  absl::MutexLock lock(&mu_);
  auto it = tenants_.find(t.name());
  if (it != tenants_.end() && it->second.tenant.has_created_time()) {
    return absl::AlreadyExistsError(
        absl::StrCat("tenant.name: \"", t.name(), "\" already exists"));
  }
  TenantRt rt = it != tenants_.end() ? it->second : TenantRt();
  rt.tenant.set_name(t.name());
  rt.tenant.set_fair_share_weight(std::max<uint32_t>(1, t.fair_share_weight()));
  *rt.tenant.mutable_created_time() = ToProtoTime(options_.clock->Now());
  storage::WriteBatch batch;
  batch.Put(storage::kTenants, t.name(), rt.tenant.SerializeAsString());
  RETURN_IF_ERROR(CommitLocked(batch));
  tenants_[t.name()] = rt;
  absl::MutexLock names_lock(&tenant_names_mu_);
  tenant_names_.insert(t.name());
  return rt.tenant;
}

std::vector<v1::Tenant> ClusterManager::ListTenants() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Tenant> out;
  for (const auto& [name, t] : tenants_) {
    if (t.tenant.has_created_time()) out.push_back(t.tenant);
  }
  return out;
}

bool ClusterManager::TenantExists(absl::string_view name) {
  absl::MutexLock lock(&tenant_names_mu_);
  return tenant_names_.contains(name);
}

// ---------------------------------------------------------------- loops ----

void ClusterManager::ScheduleOnce() {
  // Snapshot under the lock, decide without it (the policy is pure and may
  // take a while on a big queue), apply under the lock after checking that
  // what the decision relied on still holds.
  std::vector<scheduler::PendingJob> pending;
  scheduler::ClusterSnapshot snap;
  // Per job given an explicit power: the idle taken off it for the policy.
  absl::flat_hash_map<std::string, int64_t> idle_offsets;
  {
    absl::MutexLock lock(&mu_);
    wake_ = false;
    array_gate_.BeginRound(active_,
                           [&](const std::string& id) -> const v1::Job& {
                             return jobs_.at(id).job;
                           });
    for (const std::string& id : active_) {
      const JobRt& j = jobs_.at(id);
      if (j.job.state() != v1::JOB_STATE_PENDING) continue;
      if (!array_gate_.Admits(j.job)) continue;  // array's max_running
      const v1::JobSpec& s = j.job.spec();
      scheduler::PendingJob p;
      p.id = id;
      p.tenant = s.tenant();
      p.cls = ToPolicyClass(s.service_class());
      p.priority = s.priority();
      p.seq = j.job.seq();
      p.gpus_per_node = s.gpus_per_node();
      p.nodes = std::max<uint32_t>(1, s.nodes());
      p.gpu_model = s.gpu_model();
      // Limits as increments over idle (see SnapshotLocked); a job of any
      // model is offset by the smallest idle among the models.
      int64_t offset = 0;
      if (!s.gpu_model().empty()) {
        offset = IdleMwLocked(s.gpu_model());
      } else {
        offset = std::numeric_limits<int64_t>::max();
        for (const config::GpuModel& m : options_.config.gpu_models) {
          offset = std::min(offset, IdleMwLocked(m.name));
        }
        if (offset == std::numeric_limits<int64_t>::max()) offset = 0;
      }
      if (s.power_limit_mw() > 0) {
        p.power_mw = std::max<int64_t>(1, s.power_limit_mw() - offset);
        idle_offsets[id] = offset;
      }
      if (s.min_power_limit_mw() > 0) {
        p.min_power_mw = std::max<int64_t>(1, s.min_power_limit_mw() - offset);
        idle_offsets[id] = offset;
      }
      p.max_runtime = FromProtoDuration(s.max_runtime());
      pending.push_back(std::move(p));
    }
    if (pending.empty()) return;
    snap = SnapshotLocked();
  }
  std::sort(pending.begin(), pending.end(),
            [](const auto& a, const auto& b) { return a.seq < b.seq; });
  const bool plus = options_.config.scheduler.admission ==
                    config::AdmissionMode::kMeasuredPlus;
  const scheduler::Decisions d = scheduler::Schedule(
      snap, pending,
      plus ? scheduler::MeasuredPlusPolicy(options_.policy) : options_.policy);

  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  storage::WriteBatch batch;
  std::vector<std::string> started;
  for (const scheduler::Wait& w : d.waits) {
    JobRt* j = FindJobLocked(w.job_id);
    if (j != nullptr) j->job.set_reason(w.reason);
  }
  for (const scheduler::Placement& p : d.placements) {
    JobRt* j = FindJobLocked(p.job_id);
    if (j == nullptr || j->job.state() != v1::JOB_STATE_PENDING) continue;
    // The GPUs must still be free on ready nodes (a report, an exit or a
    // drain may have come in meanwhile); if not, the next round retries.
    bool still_free = true;
    for (const scheduler::JobShare& share : p.shares) {
      auto nit = nodes_.find(snap.nodes[share.node].name);
      if (nit == nodes_.end() || !nit->second.ready ||
          nit->second.node.drained()) {
        still_free = false;
        break;
      }
      for (uint32_t g : share.gpus) {
        if (p.preempt.empty() && (g >= nit->second.gpus.size() ||
                                  !nit->second.gpus[g].job_key.empty() ||
                                  !nit->second.gpus[g].stale_key.empty())) {
          still_free = false;
        }
      }
    }
    if (!still_free) {
      wake_ = true;
      continue;
    }
    if (!p.preempt.empty()) {
      for (const std::string& victim_id : p.preempt) {
        JobRt* v = FindJobLocked(victim_id);
        if (v == nullptr || v->job.state() == v1::JOB_STATE_PENDING) continue;
        const std::string why =
            absl::StrCat("preempted by reserved job ", p.job_id, " of tenant ",
                         j->job.spec().tenant(), " (contracted capacity)");
        RequestStopLocked(*v, v1::JOB_STATE_PREEMPTED, why);
        PutJobLocked(&batch, v->job);
        AddEventLocked(&batch, "preempt", victim_id, why);
      }
      j->job.set_reason(absl::StrCat("waiting: preempting ", p.preempt.size(),
                                     " job(s) to make room"));
      continue;
    }
    v1::Job& job = j->job;
    // Back from increments over idle to real per-GPU limits. A job that
    // asked for a power gets exactly that, clamped into the placed model's
    // range (its model may not be the one whose idle offset it got).
    const int64_t idle_here = IdleMwLocked(p.gpu_model);
    int64_t limit_mw = p.requested_limit_mw + idle_here;
    int64_t min_mw = p.min_power_mw + idle_here;
    if (idle_offsets.contains(p.job_id)) {
      int64_t lo = 0, hi = std::numeric_limits<int64_t>::max();
      for (const scheduler::GpuModelSpec& m : snap.gpu_models) {
        if (m.name == p.gpu_model) {
          lo = m.min_limit_mw + idle_here;
          hi = m.max_limit_mw + idle_here;
        }
      }
      const v1::JobSpec& spec = job.spec();
      if (spec.power_limit_mw() > 0) {
        limit_mw = std::clamp(spec.power_limit_mw(), lo, hi);
      }
      min_mw = spec.min_power_limit_mw() > 0
                   ? std::clamp(spec.min_power_limit_mw(), lo, limit_mw)
                   : limit_mw;
    }
    min_mw = std::min(min_mw, limit_mw);
    // Throttled to fit: starts below its limit, never below its min; the
    // power loop raises it back (ControlPowerOnce).
    int64_t start_mw = limit_mw;
    if (p.power_limit_mw < p.requested_limit_mw) {
      auto off = idle_offsets.find(p.job_id);
      start_mw =
          std::clamp(p.power_limit_mw +
                         (off != idle_offsets.end() ? off->second : idle_here),
                     min_mw, limit_mw);
    }
    j->limit_changed_at = now;
    job.set_attempt(job.attempt() + 1);
    job.set_effective_class(FromPolicyClass(p.effective_class));
    job.set_gpu_model(p.gpu_model);
    job.set_power_limit_mw(limit_mw);
    job.set_min_power_limit_mw(min_mw);
    job.clear_allocations();
    const std::string key = AttemptKey(job.id(), job.attempt());
    for (const scheduler::JobShare& share : p.shares) {
      const std::string& node_name = snap.nodes[share.node].name;
      v1::Allocation* al = job.add_allocations();
      al->set_node(node_name);
      al->set_power_limit_mw(start_mw);
      NodeRt& n = nodes_.at(node_name);
      for (uint32_t g : share.gpus) {
        al->add_gpu_indices(g);
        n.gpus[g].job_key = key;
        n.gpus[g].commanded_mw = start_mw;
      }
      UpdateNodeMeasuredLocked(n);
    }
    v1::JobAttempt* a = job.add_attempts();
    a->set_attempt(job.attempt());
    *a->mutable_allocations() = job.allocations();
    // Reserved beyond the contract stays reserved (billed as overage).
    a->set_billed_class(billing::BilledClass(job.spec().service_class(),
                                             job.effective_class()));
    a->set_gpu_model(p.gpu_model);
    const size_t ranks = job.allocations_size();
    j->started.assign(ranks, false);
    j->ended.assign(ranks, false);
    j->first_failure_code = 0;
    j->energy_mj = 0;
    std::string where;
    for (const auto& al : job.allocations()) {
      absl::StrAppend(&where, where.empty() ? "" : ", ", al.node(), " GPUs ",
                      absl::StrJoin(al.gpu_indices(), ","));
    }
    std::string reason = absl::StrCat("placed on ", where);
    if (p.effective_class != ToPolicyClass(job.spec().service_class())) {
      absl::StrAppend(&reason,
                      " (runs as on-demand: beyond the tenant's "
                      "contracted reserved GPUs; billed as reserved overage)");
    }
    TransitionLocked(*j, v1::JOB_STATE_STARTING, reason, now);
    PutJobLocked(&batch, job);
    started.push_back(job.id());
  }
  if (!CommitLocked(batch).ok()) {
    // Nothing was acknowledged; the next round retries from the store's view.
    return;
  }
  for (const std::string& id : started) {
    const v1::Job& job = jobs_.at(id).job;
    const std::string master =
        nodes_.at(job.allocations(0).node()).node.address();
    for (int rank = 0; rank < job.allocations_size(); ++rank) {
      const v1::Allocation& al = job.allocations(rank);
      v1::DaemonMessage m;
      v1::StartJob* s = m.mutable_start_job();
      s->set_job_id(id);
      s->set_attempt(job.attempt());
      *s->mutable_command() = job.spec().command();
      *s->mutable_env() = job.spec().env();
      *s->mutable_gpu_indices() = al.gpu_indices();
      s->set_node_rank(rank);
      s->set_num_nodes(job.allocations_size());
      s->set_master_addr(master.empty() ? "127.0.0.1" : master);
      *s->mutable_max_runtime() = job.spec().max_runtime();
      s->set_power_limit_mw(al.power_limit_mw());
      s->set_sim_load(job.spec().sim_load() > 0 ? job.spec().sim_load() : 1.0);
      s->set_tenant(job.spec().tenant());
      SendLocked(nodes_.at(al.node()), m);
    }
  }
}

void ClusterManager::SetJobLimitLocked(JobRt& j, int64_t limit_mw,
                                       const std::string& reason) {
  j.limit_changed_at = options_.clock->Now();
  for (v1::Allocation& al : *j.job.mutable_allocations()) {
    al.set_power_limit_mw(limit_mw);
    auto it = nodes_.find(al.node());
    if (it == nodes_.end()) continue;
    for (uint32_t g : al.gpu_indices()) {
      if (g >= it->second.gpus.size()) continue;
      it->second.gpus[g].commanded_mw = limit_mw;
      v1::DaemonMessage m;
      m.mutable_set_power_limit()->set_gpu_index(g);
      m.mutable_set_power_limit()->set_power_limit_mw(limit_mw);
      m.mutable_set_power_limit()->set_reason(reason);
      SendLocked(it->second, m);
    }
    UpdateNodeMeasuredLocked(it->second);
  }
}

void ClusterManager::ControlPowerOnce() {
  // As ScheduleOnce: snapshot under the lock, decide without it.
  scheduler::ClusterSnapshot snap;
  {
    absl::MutexLock lock(&mu_);
    power_dirty_ = false;
    const absl::Time now = options_.clock->Now();
    if (options_.config.scheduler.admission ==
            config::AdmissionMode::kMeasuredPlus &&
        now - margins_updated_ >= options_.report_interval) {
      // One step of the adaptive reserve per interval, on measured power.
      const scheduler::AdaptiveMarginConfig mc;
      margins_updated_ = now;
      margins_.resize(domains_.size(), scheduler::InitialMargin(mc));
      for (size_t i = 0; i < domains_.size(); ++i) {
        margins_[i] = scheduler::AdaptMargin(
            margins_[i], domains_[i].measured_mw, domains_[i].cap_mw, mc);
      }
    }
    snap = SnapshotLocked();
  }
  // measured-plus: partial raises, at most one change per job per three
  // report intervals.
  const std::vector<scheduler::PowerAction> actions = scheduler::ControlPower(
      snap, options_.config.scheduler.admission ==
                    config::AdmissionMode::kMeasuredPlus
                ? scheduler::MeasuredPlusPower(options_.power,
                                               3 * options_.report_interval)
                : options_.power);
  if (actions.empty()) return;
  absl::MutexLock lock(&mu_);
  storage::WriteBatch batch;
  for (const scheduler::PowerAction& a : actions) {
    JobRt* j = FindJobLocked(a.job_id);
    if (j == nullptr || !IsActive(j->job.state()) ||
        j->job.state() == v1::JOB_STATE_PENDING) {
      continue;
    }
    switch (a.kind) {
      case scheduler::PowerAction::kThrottle:
        SetJobLimitLocked(*j, a.new_limit_mw, a.reason);
        AddEventLocked(
            &batch, "throttle", a.job_id,
            absl::StrCat("per-GPU limit -> ", FormatPower(a.new_limit_mw), ": ",
                         a.reason));
        break;
      case scheduler::PowerAction::kRestore:
        SetJobLimitLocked(*j, a.new_limit_mw, a.reason);
        AddEventLocked(
            &batch, "restore", a.job_id,
            absl::StrCat("per-GPU limit -> ", FormatPower(a.new_limit_mw), ": ",
                         a.reason));
        break;
      case scheduler::PowerAction::kPreempt:
        RequestStopLocked(
            *j, v1::JOB_STATE_PREEMPTED,
            absl::StrCat("preempted to keep power cap: ", a.reason));
        AddEventLocked(&batch, "preempt", a.job_id, a.reason);
        break;
    }
    PutJobLocked(&batch, j->job);
  }
  CommitLocked(batch).IgnoreError();
  NotifyLocked();
}

void ClusterManager::CheckLiveness() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  storage::WriteBatch batch;
  std::vector<std::pair<v1::Job, v1::JobAttempt>> billed;
  for (auto& [name, n] : nodes_) {
    if (n.ready && now - n.last_report > options_.heartbeat_timeout) {
      n.ready = false;
      n.unreachable_since = now;
      AddEventLocked(&batch, "node", name,
                     absl::StrCat("unreachable: no report for ",
                                  absl::FormatDuration(now - n.last_report)));
    }
    if (!n.ready && n.unreachable_since != absl::InfinitePast() &&
        now - n.unreachable_since >
            options_.config.scheduler.unreachable_requeue_after) {
      bool any = false;
      for (const Gpu& g : n.gpus) any = any || !g.job_key.empty();
      if (any) {
        // Requeue every job that holds GPUs here: nothing says it still runs.
        SettleLostJobsLocked(
            n, {},
            absl::StrCat("node ", name, " unreachable for ",
                         absl::FormatDuration(now - n.unreachable_since)),
            /*always_requeue=*/true, &batch, &billed);
      }
    }
  }
  // A job no agent confirmed within the timeout is requeued; a rank that
  // starts later anyway is stopped as stale by its node's next report.
  const absl::Duration timeout = options_.config.scheduler.starting_timeout;
  std::vector<std::string> late;
  for (const std::string& id : active_) {
    const JobRt& j = jobs_.at(id);
    if (j.job.state() == v1::JOB_STATE_STARTING &&
        now - StartSentLocked(j) > timeout) {
      late.push_back(id);
    }
  }
  for (const std::string& id : late) {
    JobRt& j = jobs_.at(id);
    std::vector<std::string> where;
    for (const v1::Allocation& al : j.job.allocations()) {
      where.push_back(al.node());
      auto it = nodes_.find(al.node());
      if (it == nodes_.end()) continue;
      SendLocked(it->second, StopMessage(id, j.job.attempt(),
                                         "not started within the timeout"));
    }
    const std::string why =
        absl::StrCat("not started within ", absl::FormatDuration(timeout),
                     " on ", absl::StrJoin(where, ", "), "; requeued");
    EndAttemptLocked(j, now, why, &batch);
    if (j.job.stopping_to() == v1::JOB_STATE_CANCELLED) {
      TransitionLocked(j, v1::JOB_STATE_CANCELLED, j.job.reason(), now);
    } else {
      TransitionLocked(j, v1::JOB_STATE_PENDING, why, now);
    }
    PutJobLocked(&batch, j.job);
    AddEventLocked(&batch, "job", id, why);
  }
  CommitLocked(batch).IgnoreError();
  CommitBilled(billed);
}

void ClusterManager::Start() {
  threads_.emplace_back([this] { LoopThread(); });
}

void ClusterManager::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void ClusterManager::LoopThread() {
  absl::Time last_schedule = absl::InfinitePast();
  absl::Time last_power = absl::InfinitePast();
  absl::Time last_liveness = absl::InfinitePast();
  absl::Duration last_round_duration = absl::ZeroDuration();
  while (true) {
    bool schedule = false, power = false;
    {
      // A dirty power state wakes the loop only once the last control
      // round is 100 ms old (see below); until then it waits for the rest.
      const absl::Duration since_power = options_.clock->Now() - last_power;
      const bool power_due = since_power >= absl::Milliseconds(100);
      absl::MutexLock lock(&mu_);
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || wake_ || (power_due && power_dirty_);
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready),
                           power_due ? absl::Milliseconds(100)
                                     : absl::Milliseconds(100) - since_power);
      if (stopping_) return;
      schedule = wake_;
      power = power_dirty_;
    }
    absl::Time now = options_.clock->Now();
    if (schedule || now - last_schedule > absl::Milliseconds(500)) {
      // Coalesce bursts of submissions: rounds are at least 5 ms and at
      // least twice the last round's own duration apart, so that a long
      // queue cannot keep the lock busy.
      const absl::Duration gap =
          std::max(absl::Milliseconds(5), 2 * last_round_duration);
      if (now - last_schedule < gap) {
        absl::SleepFor(gap - (now - last_schedule));
        now = options_.clock->Now();
      }
      const absl::Time round_start = absl::Now();
      ScheduleOnce();
      last_round_duration = absl::Now() - round_start;
      if (options_.on_round) options_.on_round("schedule", last_round_duration);
      last_schedule = now;
    }
    // Power control on a report that shows a domain over cap, or every
    // 250 ms; at most every 100 ms, so that a domain that stays over cap
    // (nothing left to throttle) does not keep the lock busy.
    if ((power && now - last_power >= absl::Milliseconds(100)) ||
        now - last_power > absl::Milliseconds(250)) {
      const absl::Time power_start = absl::Now();
      ControlPowerOnce();
      if (options_.on_round) {
        options_.on_round("power", absl::Now() - power_start);
      }
      last_power = now;
    }
    if (now - last_liveness > absl::Milliseconds(250)) {
      CheckLiveness();
      last_liveness = now;
    }
  }
}

}  // namespace joule::daemon
