#include "daemon/tenant_table.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "daemon/validation.h"
#include "joule/v1/records.pb.h"

namespace joule::daemon {
namespace {

// kMeta key prefix of the fair-share records (records.proto).
constexpr absl::string_view kUsagePrefix = "fair_share/";

}  // namespace

TenantTable::TenantTable(absl::Mutex* mu, const config::ClusterConfig* config)
    : mu_(mu), config_(config) {
  for (const auto& [name, weight] : config_->tenant_weights) {
    TenantRt t;
    t.tenant.set_name(name);
    t.tenant.set_fair_share_weight(weight);
    tenants_[name] = t;
  }
}

void TenantTable::SetConfigWeights(
    const absl::flat_hash_map<std::string, uint32_t>& weights) {
  for (const auto& [name, weight] : weights) {
    TenantRt& t = tenants_[name];
    if (t.tenant.name().empty()) t.tenant.set_name(name);
    if (!t.tenant.has_created_time()) t.tenant.set_fair_share_weight(weight);
  }
}

absl::Status TenantTable::Load(storage::Store* store) {
  absl::Status parse_error;
  RETURN_IF_ERROR(store->Scan(storage::kTenants, "", [&](auto key, auto value) {
    TenantRt t;
    if (!t.tenant.ParseFromString(std::string(value))) {
      parse_error = absl::DataLossError(
          absl::StrCat("cannot parse ", std::string(storage::kTenants),
                       " record ", std::string(key)));
      return false;
    }
    tenants_[t.tenant.name()] = t;
    absl::MutexLock names_lock(&names_mu_);
    names_.insert(t.tenant.name());
    return true;
  }));
  RETURN_IF_ERROR(parse_error);
  // Fair-share records of ended attempts.
  RETURN_IF_ERROR(store->Scan(
      storage::kMeta, std::string(kUsagePrefix), [&](auto key, auto value) {
        v1::records::FairShareUsage rec;
        if (!rec.ParseFromString(std::string(value))) {
          parse_error = absl::DataLossError(
              absl::StrCat("cannot parse ", std::string(storage::kMeta),
                           " record ", std::string(key)));
          return false;
        }
        const std::string name(key.substr(kUsagePrefix.size()));
        TenantRt& t = tenants_[name];
        if (t.tenant.name().empty()) t.tenant.set_name(name);
        t.ended =
            scheduler::DecayedUsage{rec.gpu_seconds(), FromProtoTime(rec.at())};
        t.ended_stored = true;
        return true;
      }));
  return parse_error;
}

absl::StatusOr<v1::Tenant> TenantTable::Create(const v1::Tenant& t,
                                               absl::Time now,
                                               storage::Store* store) {
  auto it = tenants_.find(t.name());
  if (it != tenants_.end() && it->second.tenant.has_created_time()) {
    return absl::AlreadyExistsError(
        absl::StrCat("tenant.name: \"", t.name(), "\" already exists"));
  }
  TenantRt rt = it != tenants_.end() ? it->second : TenantRt();
  rt.tenant.set_name(t.name());
  rt.tenant.set_fair_share_weight(std::max<uint32_t>(1, t.fair_share_weight()));
  *rt.tenant.mutable_created_time() = ToProtoTime(now);
  storage::WriteBatch batch;
  batch.Put(storage::kTenants, t.name(), rt.tenant.SerializeAsString());
  RETURN_IF_ERROR(store->Write(batch, storage::WriteOptions{.sync = true}));
  tenants_[t.name()] = rt;
  absl::MutexLock names_lock(&names_mu_);
  names_.insert(t.name());
  return rt.tenant;
}

std::vector<v1::Tenant> TenantTable::List() const {
  std::vector<v1::Tenant> out;
  for (const auto& [name, t] : tenants_) {
    if (t.tenant.has_created_time()) out.push_back(t.tenant);
  }
  return out;
}

bool TenantTable::Exists(absl::string_view name) const {
  absl::MutexLock lock(&names_mu_);
  return names_.contains(name);
}

scheduler::TenantQuota QuotaFromProto(const v1::TenantQuota& q) {
  scheduler::TenantQuota out;
  if (q.has_max_running_gpus_reserved()) {
    out.max_running_gpus[0] = q.max_running_gpus_reserved();
  }
  if (q.has_max_running_gpus_on_demand()) {
    out.max_running_gpus[1] = q.max_running_gpus_on_demand();
  }
  if (q.has_max_running_gpus_spot()) {
    out.max_running_gpus[2] = q.max_running_gpus_spot();
  }
  if (q.has_max_pending_jobs()) out.max_pending_jobs = q.max_pending_jobs();
  return out;
}

v1::TenantQuota QuotaToProto(const scheduler::TenantQuota& q) {
  v1::TenantQuota out;
  using scheduler::kNoLimit;
  if (q.max_running_gpus[0] != kNoLimit) {
    out.set_max_running_gpus_reserved(q.max_running_gpus[0]);
  }
  if (q.max_running_gpus[1] != kNoLimit) {
    out.set_max_running_gpus_on_demand(q.max_running_gpus[1]);
  }
  if (q.max_running_gpus[2] != kNoLimit) {
    out.set_max_running_gpus_spot(q.max_running_gpus[2]);
  }
  if (q.max_pending_jobs != kNoLimit) {
    out.set_max_pending_jobs(q.max_pending_jobs);
  }
  return out;
}

void TenantTable::AddEnded(const std::string& tenant, int64_t gpus,
                           absl::Time start, absl::Time end,
                           storage::WriteBatch* batch) {
  TenantRt& t = tenants_[tenant];
  if (t.tenant.name().empty()) t.tenant.set_name(tenant);
  const absl::Duration hl = config_->scheduler.fair_share_half_life;
  // Value the record at the later of its time and the end, then add the
  // span (an end before the record's time is valued there: same result).
  t.ended = scheduler::AdvanceUsage(t.ended, std::max(t.ended.at, end), 0, hl);
  t.ended = scheduler::AddSpan(t.ended, gpus, start, end, hl);
  t.ended_stored = true;
  if (batch == nullptr) return;
  v1::records::FairShareUsage rec;
  rec.set_gpu_seconds(t.ended.gpu_seconds);
  *rec.mutable_at() = ToProtoTime(t.ended.at);
  batch->Put(storage::kMeta, absl::StrCat(kUsagePrefix, tenant),
             rec.SerializeAsString());
}

void TenantTable::AddLoadedAttempt(const std::string& tenant, int64_t gpus,
                                   absl::Time start, absl::Time end) {
  loaded_.push_back({end, tenant, gpus, start});
}

void TenantTable::FinishLoad() {
  std::sort(loaded_.begin(), loaded_.end(),
            [](const LoadedAttempt& a, const LoadedAttempt& b) {
              return std::tie(a.end, a.tenant, a.start, a.gpus) <
                     std::tie(b.end, b.tenant, b.start, b.gpus);
            });
  absl::flat_hash_set<std::string> stored;
  for (const auto& [name, t] : tenants_) {
    if (t.ended_stored) stored.insert(name);
  }
  for (const LoadedAttempt& a : loaded_) {
    if (stored.contains(a.tenant)) continue;
    AddEnded(a.tenant, a.gpus, a.start, a.end, nullptr);
    tenants_[a.tenant].ended_stored = false;
  }
  loaded_.clear();
}

double TenantTable::Usage(const std::string& tenant, absl::Time now,
                          const HeldGpus& held) const {
  const absl::Duration hl = config_->scheduler.fair_share_half_life;
  double total = 0;
  auto it = tenants_.find(tenant);
  if (it != tenants_.end()) {
    total = scheduler::UsageAt(it->second.ended, now, 0, hl);
  }
  auto h = held.find(tenant);
  if (h != held.end()) {
    for (const auto& [gpus, start] : h->second) {
      total +=
          scheduler::UsageAt(scheduler::DecayedUsage{0, start}, now, gpus, hl);
    }
  }
  return total;
}

scheduler::TenantQuota TenantTable::Quota(const std::string& tenant) const {
  auto it = tenants_.find(tenant);
  if (it != tenants_.end() && it->second.tenant.has_quota()) {
    return QuotaFromProto(it->second.tenant.quota());
  }
  auto c = config_->tenant_quotas.find(tenant);
  return c != config_->tenant_quotas.end() ? c->second
                                           : scheduler::TenantQuota();
}

absl::StatusOr<v1::Tenant> TenantTable::SetQuota(const std::string& tenant,
                                                 const v1::TenantQuota& quota,
                                                 storage::Store* store) {
  auto it = tenants_.find(tenant);
  if (it == tenants_.end() || !it->second.tenant.has_created_time()) {
    return absl::NotFoundError(absl::StrCat(
        "tenant: \"", tenant,
        "\" is not a tenant (create it with `joulectl tenant create`)"));
  }
  v1::Tenant rec = it->second.tenant;
  *rec.mutable_quota() = quota;
  rec.clear_fair_share_gpu_seconds();
  storage::WriteBatch batch;
  batch.Put(storage::kTenants, tenant, rec.SerializeAsString());
  RETURN_IF_ERROR(store->Write(batch, storage::WriteOptions{.sync = true}));
  it->second.tenant = rec;
  return rec;
}

std::vector<v1::Tenant> TenantTable::ListWithUsage(absl::Time now,
                                                   const HeldGpus& held) const {
  std::vector<v1::Tenant> out = List();
  for (v1::Tenant& t : out) {
    *t.mutable_quota() = QuotaToProto(Quota(t.name()));
    t.set_fair_share_gpu_seconds(Usage(t.name(), now, held));
  }
  return out;
}

void TenantTable::Snapshot(
    absl::Time now,
    const absl::flat_hash_map<
        std::string, absl::flat_hash_map<std::string, uint32_t>>& contracted,
    absl::flat_hash_map<std::string, scheduler::TenantInfo>* out,
    const HeldGpus& held) const {
  for (const auto& [name, t] : tenants_) {
    scheduler::TenantInfo info;
    info.weight = std::max<uint32_t>(1, t.tenant.fair_share_weight());
    info.recent_gpu_hours = Usage(name, now, held) / 3600.0;
    auto c = contracted.find(name);
    if (c != contracted.end()) info.contracted_gpus = c->second;
    info.quota = Quota(name);
    (*out)[name] = std::move(info);
  }
  // Tenants only the config names (quota, no record yet) still get theirs.
  for (const auto& [name, q] : config_->tenant_quotas) {
    if (!out->contains(name)) (*out)[name].quota = q;
  }
}

}  // namespace joule::daemon
