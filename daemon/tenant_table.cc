#include "daemon/tenant_table.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "daemon/validation.h"

namespace joule::daemon {

TenantTable::TenantTable(absl::Mutex* mu, const config::ClusterConfig* config)
    : mu_(mu), config_(config) {
  for (const auto& [name, weight] : config_->tenant_weights) {
    TenantRt t;
    t.tenant.set_name(name);
    t.tenant.set_fair_share_weight(weight);
    tenants_[name] = t;
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

void TenantTable::AddUsage(const std::string& tenant, double gpu_seconds,
                           absl::Time at) {
  TenantRt& t = tenants_[tenant];
  if (t.tenant.name().empty()) t.tenant.set_name(tenant);
  const double hl =
      absl::ToDoubleSeconds(config_->scheduler.fair_share_half_life);
  if (t.decay_time != absl::InfinitePast() && at > t.decay_time) {
    t.decayed_gpu_seconds *=
        std::exp2(-absl::ToDoubleSeconds(at - t.decay_time) / hl);
  }
  if (t.decay_time == absl::InfinitePast() || at > t.decay_time) {
    t.decay_time = at;
  }
  t.decayed_gpu_seconds += gpu_seconds;
}

double TenantTable::Usage(const std::string& tenant, absl::Time now) const {
  auto it = tenants_.find(tenant);
  if (it == tenants_.end() || it->second.decay_time == absl::InfinitePast()) {
    return 0;
  }
  const double hl =
      absl::ToDoubleSeconds(config_->scheduler.fair_share_half_life);
  return it->second.decayed_gpu_seconds *
         std::exp2(-std::max(0.0, absl::ToDoubleSeconds(
                                      now - it->second.decay_time)) /
                   hl);
}

void TenantTable::Snapshot(
    absl::Time now,
    const absl::flat_hash_map<
        std::string, absl::flat_hash_map<std::string, uint32_t>>& contracted,
    absl::flat_hash_map<std::string, scheduler::TenantInfo>* out) const {
  for (const auto& [name, t] : tenants_) {
    scheduler::TenantInfo info;
    info.weight = std::max<uint32_t>(1, t.tenant.fair_share_weight());
    info.recent_gpu_hours = Usage(name, now) / 3600.0;
    auto c = contracted.find(name);
    if (c != contracted.end()) info.contracted_gpus = c->second;
    (*out)[name] = std::move(info);
  }
}

}  // namespace joule::daemon
