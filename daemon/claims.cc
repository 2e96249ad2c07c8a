#include "daemon/claims.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace joule::daemon {

absl::Status ClaimBook::Load(storage::Store* store) {
  absl::Status parse_error;
  RETURN_IF_ERROR(store->Scan(storage::kClaims, "", [&](auto key, auto value) {
    v1::records::Claim c;
    if (!c.ParseFromString(std::string(value))) {
      parse_error = absl::DataLossError(
          absl::StrCat("cannot parse ", std::string(storage::kClaims),
                       " record ", std::string(key)));
      return false;
    }
    claims_[c.job_id()] = std::move(c);
    return true;
  }));
  return parse_error;
}

const v1::records::Claim* ClaimBook::Find(const std::string& job_id) const {
  auto it = claims_.find(job_id);
  return it == claims_.end() ? nullptr : &it->second;
}

void ClaimBook::Put(const v1::records::Claim& claim,
                    storage::WriteBatch* batch) {
  batch->Put(storage::kClaims, claim.job_id(), claim.SerializeAsString());
  claims_[claim.job_id()] = claim;
}

bool ClaimBook::Erase(const std::string& job_id, storage::WriteBatch* batch) {
  if (claims_.erase(job_id) == 0) return false;
  batch->Delete(storage::kClaims, job_id);
  return true;
}

std::vector<scheduler::ClaimSnapshot> ClaimBook::Snapshot(
    const absl::flat_hash_map<std::string, int>& node_index) const {
  std::vector<scheduler::ClaimSnapshot> out;
  for (const auto& [id, c] : claims_) {
    scheduler::ClaimSnapshot s;
    s.job_id = id;
    s.victims.assign(c.victims().begin(), c.victims().end());
    s.power_per_gpu_mw = c.power_per_gpu_mw();
    for (const auto& share : c.shares()) {
      scheduler::JobShare js;
      auto it = node_index.find(share.node());
      js.node = it == node_index.end() ? -1 : it->second;
      js.gpus.assign(share.gpu_indices().begin(), share.gpu_indices().end());
      s.shares.push_back(std::move(js));
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace joule::daemon
