#include "scheduler/claims.h"

#include <bit>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace joule::scheduler {
namespace {

uint64_t MaskOf(const std::vector<uint32_t>& gpus) {
  uint64_t m = 0;
  for (uint32_t g : gpus) {
    if (g < 64) m |= uint64_t{1} << g;
  }
  return m;
}

int LowestBit(uint64_t m) { return std::countr_zero(m); }

}  // namespace

ClaimStatus CheckClaim(const ClaimSnapshot& claim,
                       const ClusterSnapshot& snapshot) {
  ClaimStatus st;
  const absl::flat_hash_set<std::string> victims(claim.victims.begin(),
                                                 claim.victims.end());
  for (const RunningJob& r : snapshot.running) {
    if (victims.contains(r.id)) ++st.victims_running;
  }
  if (claim.shares.empty()) {
    st.kind = ClaimStatus::kInvalid;
    st.reason = "the claim names no GPUs";
    return st;
  }
  const int num_nodes = static_cast<int>(snapshot.nodes.size());
  for (const JobShare& s : claim.shares) {
    if (s.node < 0 || s.node >= num_nodes) {
      st.kind = ClaimStatus::kInvalid;
      st.reason = "a claimed node is no longer in the cluster";
      return st;
    }
    const NodeSnapshot& n = snapshot.nodes[s.node];
    const uint64_t mask = MaskOf(s.gpus);
    if (!n.schedulable) {
      st.kind = ClaimStatus::kInvalid;
      st.reason =
          absl::StrCat("claimed node ", n.name, " is drained or unreachable");
      return st;
    }
    if (mask & n.unhealthy_gpus) {
      st.kind = ClaimStatus::kInvalid;
      st.reason =
          absl::StrCat("claimed GPU ", LowestBit(mask & n.unhealthy_gpus),
                       " of node ", n.name, " is unhealthy");
      return st;
    }
    st.claimed.push_back(mask);
    st.vacant.push_back(mask & n.free_gpus);
  }
  for (const RunningJob& r : snapshot.running) {
    if (victims.contains(r.id) || r.id == claim.job_id) continue;
    for (const JobShare& held : r.shares) {
      for (size_t i = 0; i < claim.shares.size(); ++i) {
        if (claim.shares[i].node != held.node) continue;
        const uint64_t both = MaskOf(held.gpus) & st.claimed[i];
        if (both != 0) {
          st.kind = ClaimStatus::kInvalid;
          st.reason =
              absl::StrCat("claimed GPU ", LowestBit(both), " of node ",
                           snapshot.nodes[held.node].name, " is held by job ",
                           r.id, ", which is not one of its victims");
          return st;
        }
      }
    }
  }
  // Ready once every victim is gone (a victim elsewhere may be freeing
  // power the claimant needs) and every claimed GPU is free.
  bool ready = st.victims_running == 0;
  for (size_t i = 0; i < st.claimed.size(); ++i) {
    ready = ready && st.vacant[i] == st.claimed[i];
  }
  st.kind = ready ? ClaimStatus::kReady : ClaimStatus::kWaiting;
  return st;
}

std::string ClaimWaitReason(const ClaimSnapshot& claim,
                            const ClaimStatus& status,
                            const ClusterSnapshot& snapshot) {
  std::vector<std::string> where;
  for (const JobShare& s : claim.shares) {
    const std::string node =
        s.node >= 0 && s.node < static_cast<int>(snapshot.nodes.size())
            ? snapshot.nodes[s.node].name
            : "?";
    where.push_back(absl::StrCat(node, " GPUs ", absl::StrJoin(s.gpus, ",")));
  }
  return absl::StrCat("waiting: preempting ", claim.victims.size(),
                      " job(s) to make room on ", absl::StrJoin(where, "; "),
                      " (claimed; ", status.victims_running,
                      " still stopping)");
}

}  // namespace joule::scheduler
