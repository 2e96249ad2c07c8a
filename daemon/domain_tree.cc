#include "daemon/domain_tree.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "joule/v1/records.pb.h"

namespace joule::daemon {

DomainTree::DomainTree(absl::Mutex* mu, const config::ClusterConfig* config)
    : mu_(mu), config_(config) {
  for (const config::Domain& d : config_->domains) {
    DomainRt rt;
    rt.name = d.name;
    rt.kind = d.kind;
    rt.config_cap_mw = d.cap_mw;
    rt.cap_mw = d.cap_mw;
    if (!d.parent.empty()) {
      rt.parent = index_.at(d.parent);
      rt.depth = domains_[rt.parent].depth + 1;
    }
    index_[d.name] = static_cast<int>(domains_.size());
    domains_.push_back(rt);
  }
}

absl::Status DomainTree::Load(storage::Store* store) {
  absl::Status parse_error;
  RETURN_IF_ERROR(store->Scan(storage::kDomains, "", [&](auto key, auto value) {
    v1::records::DomainCapOverride o;
    if (!o.ParseFromString(std::string(value))) {
      parse_error = absl::DataLossError(
          absl::StrCat("cannot parse ", std::string(storage::kDomains),
                       " record ", std::string(key)));
      return false;
    }
    auto it = index_.find(o.domain());
    if (it != index_.end()) domains_[it->second].cap_mw = o.cap_mw();
    return true;
  }));
  return parse_error;
}

int DomainTree::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? -1 : it->second;
}

int DomainTree::LeafFor(const std::string& node) const {
  const config::NodeSlot* slot = config_->FindNode(node);
  return Find(slot != nullptr ? slot->domain
                              : config_->scheduler.default_domain);
}

void DomainTree::AddNode(int leaf, int delta) {
  for (int d = leaf; d >= 0; d = domains_[d].parent) {
    if (delta > 0) {
      domains_[d].nodes += delta;
    } else if (domains_[d].nodes > 0) {
      domains_[d].nodes--;
    }
  }
}

void DomainTree::AddMeasured(int leaf, int64_t delta_mw) {
  for (int d = leaf; d >= 0; d = domains_[d].parent) {
    domains_[d].measured_mw += delta_mw;
  }
}

void DomainTree::AddReported(int leaf, int64_t delta_mw) {
  for (int d = leaf; d >= 0; d = domains_[d].parent) {
    domains_[d].reported_mw += delta_mw;
  }
}

void DomainTree::AddUp(int leaf, int64_t mw,
                       std::vector<int64_t>* committed) const {
  for (int d = leaf; d >= 0; d = domains_[d].parent) (*committed)[d] += mw;
}

bool DomainTree::OverCapOnPath(int leaf) const {
  bool over = false;
  for (int d = leaf; d >= 0; d = domains_[d].parent) {
    if (domains_[d].measured_mw > domains_[d].cap_mw) over = true;
  }
  return over;
}

void DomainTree::PutCap(int i, int64_t cap_mw, absl::Time now,
                        const std::string& reason,
                        storage::WriteBatch* batch) const {
  v1::records::DomainCapOverride o;
  o.set_domain(domains_[i].name);
  o.set_cap_mw(cap_mw);
  *o.mutable_set_time() = ToProtoTime(now);
  o.set_reason(reason);
  batch->Put(storage::kDomains, domains_[i].name, o.SerializeAsString());
}

void DomainTree::AdaptMargins(absl::Time now, absl::Duration interval,
                              const std::vector<int64_t>& committed) {
  if (now - margins_updated_ < interval) return;
  // One step of the adaptive reserve per interval, on measured power.
  const scheduler::AdaptiveMarginConfig mc;
  margins_updated_ = now;
  margins_.resize(domains_.size(), scheduler::InitialMargin(mc));
  for (size_t i = 0; i < domains_.size(); ++i) {
    margins_[i] = scheduler::AdaptMargin(
        margins_[i], domains_[i].measured_mw, domains_[i].cap_mw,
        i < committed.size() ? committed[i] : 0, mc);
  }
}

std::vector<scheduler::DomainSnapshot> DomainTree::Snapshot(
    const std::vector<int64_t>& committed,
    const std::vector<int64_t>& idle_floor) const {
  std::vector<scheduler::DomainSnapshot> out;
  for (size_t i = 0; i < domains_.size(); ++i) {
    const DomainRt& d = domains_[i];
    scheduler::DomainSnapshot ds;
    ds.name = d.name;
    ds.level = d.kind;
    ds.parent = d.parent;
    ds.cap_mw = d.cap_mw;
    ds.committed_mw = committed[i];
    ds.measured_mw = d.measured_mw;
    ds.idle_floor_mw = idle_floor[i];
    if (config_->scheduler.admission == config::AdmissionMode::kMeasuredPlus) {
      ds.admission_reserve_mw = scheduler::MarginReserveMw(
          i < margins_.size()
              ? margins_[i]
              : scheduler::InitialMargin(scheduler::AdaptiveMarginConfig{}),
          d.cap_mw);
    }
    out.push_back(std::move(ds));
  }
  return out;
}

v1::PowerDomain DomainTree::View(int i, int64_t committed_mw,
                                 int64_t idle_floor_mw) const {
  const DomainRt& d = domains_[i];
  v1::PowerDomain out;
  out.set_name(d.name);
  out.set_parent(d.parent >= 0 ? domains_[d.parent].name : "");
  out.set_kind(d.kind);
  out.set_cap_mw(d.cap_mw);
  out.set_committed_mw(committed_mw);
  out.set_measured_mw(d.measured_mw);
  out.set_headroom_mw(d.cap_mw - std::max(committed_mw, d.measured_mw));
  out.set_depth(d.depth);
  out.set_nodes(d.nodes);
  out.set_reported_mw(d.reported_mw);
  out.set_idle_floor_mw(idle_floor_mw);
  return out;
}

v1::GetPowerTreeResponse DomainTree::Tree(
    const std::vector<int64_t>& committed,
    const std::vector<int64_t>& idle_floor) const {
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
  // As the config names it (scheduler.admission).
  switch (config_->scheduler.admission) {
    case config::AdmissionMode::kAllocated:
      resp.set_admission_mode("allocated");
      break;
    case config::AdmissionMode::kMeasured:
      resp.set_admission_mode("measured");
      break;
    case config::AdmissionMode::kMeasuredPlus:
      resp.set_admission_mode("measured-plus");
      break;
  }
  std::vector<int> stack = {root};
  while (!stack.empty()) {
    const int i = stack.back();
    stack.pop_back();
    *resp.add_domains() = View(i, committed[i], idle_floor[i]);
    for (auto c = children[i].rbegin(); c != children[i].rend(); ++c) {
      stack.push_back(*c);
    }
  }
  return resp;
}

}  // namespace joule::daemon
