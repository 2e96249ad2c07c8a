#include "config/cluster_config.h"

#include <fstream>
#include <sstream>
#include <tuple>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/gpu_catalog.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "config/limits_config.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "joule/v1/config.pb.h"
#include "scheduler/power_options.h"

namespace joule::config {
namespace {

namespace pb = ::joule::v1::config;
using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::TextFormat;

// Collects the first syntax error with its position.
class FirstError : public ::google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (message_.empty()) {
      message_ = absl::StrCat(line + 1, ":", column + 1, ": ", message);
    }
  }
  void AddWarning(int, int, const std::string&) override {}
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

// Builds error messages that carry the line of a repeated element's field.
class Locator {
 public:
  Locator(absl::string_view filename, const TextFormat::ParseInfoTree* tree)
      : filename_(filename), tree_(tree) {}

  // Error about field `field` of element `index` of repeated `list`.
  absl::Status Error(absl::string_view list, int index, absl::string_view field,
                     absl::string_view rule) const {
    const Descriptor* root = pb::ClusterConfig::descriptor();
    const FieldDescriptor* list_fd = root->FindFieldByName(std::string(list));
    int line = -1;
    if (list_fd != nullptr) {
      const TextFormat::ParseInfoTree* nested =
          tree_->GetTreeForNested(list_fd, list_fd->is_repeated() ? index : -1);
      const FieldDescriptor* fd =
          list_fd->message_type()->FindFieldByName(std::string(field));
      if (nested != nullptr && fd != nullptr) {
        line = nested->GetLocation(fd, -1).line;
      }
      if (line < 0) {
        line = tree_->GetLocation(list_fd, list_fd->is_repeated() ? index : -1)
                   .line;
      }
    }
    std::string where = list_fd != nullptr && list_fd->is_repeated()
                            ? absl::StrCat(list, "[", index, "].", field)
                            : absl::StrCat(list, ".", field);
    return absl::InvalidArgumentError(
        absl::StrCat(filename_, line >= 0 ? absl::StrCat(":", line + 1) : "",
                     ": ", where, ": ", rule));
  }

 private:
  std::string filename_;
  const TextFormat::ParseInfoTree* tree_;
};

absl::StatusOr<int64_t> Power(const Locator& loc, absl::string_view list,
                              int index, absl::string_view field,
                              const std::string& text, bool required) {
  if (text.empty()) {
    if (required) {
      return loc.Error(list, index, field, "is required (e.g. \"40kW\")");
    }
    return 0;
  }
  auto mw = ParsePowerMw(text, "");
  if (!mw.ok()) return loc.Error(list, index, field, mw.status().message());
  return *mw;
}

absl::StatusOr<absl::Duration> Duration(const Locator& loc,
                                        absl::string_view field,
                                        const std::string& text,
                                        absl::Duration dflt) {
  if (text.empty()) return dflt;
  auto d = ParseNonNegativeDuration(text, "");  // loc.Error names the field
  if (!d.ok()) return loc.Error("scheduler", 0, field, d.status().message());
  return *d;
}

}  // namespace

const GpuModel* ClusterConfig::FindGpuModel(absl::string_view name) const {
  for (const auto& m : gpu_models) {
    if (m.name == name) return &m;
  }
  return nullptr;
}
const Domain* ClusterConfig::FindDomain(absl::string_view name) const {
  for (const auto& d : domains) {
    if (d.name == name) return &d;
  }
  return nullptr;
}
const NodeSlot* ClusterConfig::FindNode(absl::string_view name) const {
  for (const auto& n : nodes) {
    if (n.name == name) return &n;
  }
  return nullptr;
}

absl::StatusOr<ClusterConfig> ParseClusterConfig(absl::string_view text,
                                                 absl::string_view filename) {
  pb::ClusterConfig raw;
  TextFormat::ParseInfoTree tree;
  FirstError errors;
  TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(&tree);
  if (!parser.ParseFromString(std::string(text), &raw)) {
    return absl::InvalidArgumentError(
        absl::StrCat(filename, ":", errors.message()));
  }
  Locator loc(filename, &tree);
  ClusterConfig cfg;

  absl::flat_hash_set<std::string> names;
  for (int i = 0; i < raw.gpu_model_size(); ++i) {
    const auto& g = raw.gpu_model(i);
    if (g.name().empty())
      return loc.Error("gpu_model", i, "name", "is required");
    if (!names.insert(g.name()).second) {
      return loc.Error("gpu_model", i, "name",
                       absl::StrCat("\"", g.name(), "\" is defined twice"));
    }
    GpuModel m;
    m.name = g.name();
    ASSIGN_OR_RETURN(m.tdp_mw,
                     Power(loc, "gpu_model", i, "tdp", g.tdp(), true));
    ASSIGN_OR_RETURN(m.min_limit_mw,
                     Power(loc, "gpu_model", i, "min_power_limit",
                           g.min_power_limit(), false));
    ASSIGN_OR_RETURN(m.max_limit_mw,
                     Power(loc, "gpu_model", i, "max_power_limit",
                           g.max_power_limit(), false));
    ASSIGN_OR_RETURN(m.idle_mw, Power(loc, "gpu_model", i, "idle_power",
                                      g.idle_power(), false));
    if (m.min_limit_mw > 0 && m.min_limit_mw > m.tdp_mw) {
      return loc.Error("gpu_model", i, "min_power_limit", "must be <= tdp");
    }
    if (m.max_limit_mw > 0 && m.max_limit_mw < m.tdp_mw) {
      return loc.Error("gpu_model", i, "max_power_limit", "must be >= tdp");
    }
    cfg.gpu_models.push_back(m);
  }

  for (int i = 0; i < raw.node_model_size(); ++i) {
    const auto& n = raw.node_model(i);
    if (n.name().empty())
      return loc.Error("node_model", i, "name", "is required");
    if (cfg.node_models.contains(n.name())) {
      return loc.Error("node_model", i, "name",
                       absl::StrCat("\"", n.name(), "\" is defined twice"));
    }
    ASSIGN_OR_RETURN(int64_t base, Power(loc, "node_model", i, "base_power",
                                         n.base_power(), true));
    cfg.node_models[n.name()] = base;
  }

  // Domains: unique names, known parents, one root, no cycle.
  absl::flat_hash_map<std::string, int> domain_index;
  for (int i = 0; i < raw.domain_size(); ++i) {
    const auto& d = raw.domain(i);
    if (d.name().empty()) return loc.Error("domain", i, "name", "is required");
    if (!domain_index.emplace(d.name(), i).second) {
      return loc.Error("domain", i, "name",
                       absl::StrCat("\"", d.name(), "\" is defined twice"));
    }
  }
  if (raw.domain_size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        filename,
        ": domain: at least one power domain (the root) is required"));
  }
  int root = -1;
  std::vector<std::vector<int>> children(raw.domain_size());
  for (int i = 0; i < raw.domain_size(); ++i) {
    const auto& d = raw.domain(i);
    if (d.parent().empty()) {
      if (root >= 0) {
        return loc.Error("domain", i, "parent",
                         absl::StrCat("\"", d.name(), "\" is a second root (\"",
                                      raw.domain(root).name(),
                                      "\" has no parent either); exactly one "
                                      "domain may have no parent"));
      }
      root = i;
      continue;
    }
    auto it = domain_index.find(d.parent());
    if (it == domain_index.end()) {
      return loc.Error(
          "domain", i, "parent",
          absl::StrCat("\"", d.parent(), "\" is not a defined domain"));
    }
    if (it->second == i) {
      return loc.Error("domain", i, "parent",
                       "a domain cannot be its own parent");
    }
    children[it->second].push_back(i);
  }
  if (root < 0) {
    // Every domain has a parent: the tree has a cycle. Report the first one.
    return loc.Error("domain", 0, "parent",
                     "the power-domain tree has a cycle: no domain is the "
                     "root (a domain without parent)");
  }
  std::vector<int> order;  // parents first
  std::vector<bool> seen(raw.domain_size(), false);
  order.push_back(root);
  seen[root] = true;
  for (size_t k = 0; k < order.size(); ++k) {
    for (int c : children[order[k]]) {
      if (!seen[c]) {
        seen[c] = true;
        order.push_back(c);
      }
    }
  }
  for (int i = 0; i < raw.domain_size(); ++i) {
    if (!seen[i]) {
      return loc.Error(
          "domain", i, "parent",
          absl::StrCat("\"", raw.domain(i).name(),
                       "\" is on a cycle in the power-domain tree (it never "
                       "reaches the root \"",
                       raw.domain(root).name(), "\")"));
    }
  }
  for (int i : order) {
    const auto& d = raw.domain(i);
    Domain out;
    out.name = d.name();
    out.parent = d.parent();
    out.kind = d.kind();
    ASSIGN_OR_RETURN(out.cap_mw, Power(loc, "domain", i, "cap", d.cap(), true));
    if (out.cap_mw < 1000) {
      return loc.Error(
          "domain", i, "cap",
          absl::StrCat("\"", d.cap(), "\" is below 1 W (a typo for MW?)"));
    }
    if (const Domain* parent = cfg.FindDomain(out.parent)) {
      if (out.cap_mw > parent->cap_mw) {
        return loc.Error(
            "domain", i, "cap",
            absl::StrCat("\"", d.cap(), "\" of \"", out.name,
                         "\" is above the cap of its parent \"", parent->name,
                         "\" (", FormatPower(parent->cap_mw), ")"));
      }
    }
    cfg.domains.push_back(out);
  }

  cfg.allow_unpriced = raw.billing().allow_unpriced();
  if (const std::string& lv = raw.log().level(); !lv.empty()) {
    if (lv != "debug" && lv != "info" && lv != "warn" && lv != "error") {
      return loc.Error("log", 0, "level",
                       absl::StrCat("\"", lv,
                                    "\" is not one of: debug, info, warn, "
                                    "error"));
    }
    cfg.log_level = lv;
  }
  // Retention: empty = default, 0s = forever, else at least 1h.
  for (auto [field, text, out] :
       {std::tuple{"finished_jobs", &raw.retention().finished_jobs(),
                   &cfg.finished_job_retention},
        std::tuple{"events", &raw.retention().events(),
                   &cfg.event_retention}}) {
    if (text->empty()) continue;
    auto d = ParseNonNegativeDuration(*text, "");  // loc.Error names it
    if (!d.ok()) return loc.Error("retention", 0, field, d.status().message());
    if (*d > absl::ZeroDuration() && *d < absl::Hours(1)) {
      return loc.Error("retention", 0, field,
                       "must be 0s (keep forever) or at least 1h");
    }
    *out = *d;
  }

  // Scheduler settings.
  const auto& s = raw.scheduler();
  if (s.admission().empty() || s.admission() == "allocated") {
    cfg.scheduler.admission = AdmissionMode::kAllocated;
  } else if (s.admission() == "measured") {
    cfg.scheduler.admission = AdmissionMode::kMeasured;
  } else if (s.admission() == "measured-plus") {
    cfg.scheduler.admission = AdmissionMode::kMeasuredPlus;
  } else {
    return loc.Error(
        "scheduler", 0, "admission",
        absl::StrCat("\"", s.admission(),
                     "\" is not one of: allocated, measured, measured-plus"));
  }
  if (s.measured_percentile() != 0) {
    if (s.measured_percentile() > 100) {
      return loc.Error("scheduler", 0, "measured_percentile",
                       "must be in 1..100");
    }
    cfg.scheduler.measured_percentile = s.measured_percentile();
  }
  if (s.measured_margin_pct() != 0) {
    cfg.scheduler.measured_margin_pct = s.measured_margin_pct();
  }
  if (!s.default_node_model().empty()) {
    auto it = cfg.node_models.find(s.default_node_model());
    if (it == cfg.node_models.end()) {
      return loc.Error("scheduler", 0, "default_node_model",
                       absl::StrCat("\"", s.default_node_model(),
                                    "\" is not a defined node_model"));
    }
    cfg.scheduler.default_base_power_mw = it->second;
  }
  if (s.lost_job_policy().empty() || s.lost_job_policy() == "fail") {
    cfg.scheduler.lost_job_policy = LostJobPolicy::kFail;
  } else if (s.lost_job_policy() == "requeue") {
    cfg.scheduler.lost_job_policy = LostJobPolicy::kRequeue;
  } else {
    return loc.Error("scheduler", 0, "lost_job_policy",
                     absl::StrCat("\"", s.lost_job_policy(),
                                  "\" is not one of: fail, requeue"));
  }
  ASSIGN_OR_RETURN(cfg.scheduler.unreachable_requeue_after,
                   Duration(loc, "unreachable_requeue_after",
                            s.unreachable_requeue_after(), absl::Seconds(60)));
  ASSIGN_OR_RETURN(
      cfg.scheduler.stop_grace,
      Duration(loc, "stop_grace", s.stop_grace(), absl::Seconds(5)));
  ASSIGN_OR_RETURN(cfg.scheduler.max_preempt_grace,
                   Duration(loc, "max_preempt_grace", s.max_preempt_grace(),
                            absl::Seconds(300)));
  if (cfg.scheduler.max_preempt_grace > absl::Hours(24)) {
    return loc.Error("scheduler", 0, "max_preempt_grace",
                     "must be at most 24h");
  }
  ASSIGN_OR_RETURN(cfg.scheduler.fair_share_half_life,
                   Duration(loc, "fair_share_half_life",
                            s.fair_share_half_life(), absl::Hours(24)));
  ASSIGN_OR_RETURN(cfg.scheduler.starting_timeout,
                   Duration(loc, "starting_timeout", s.starting_timeout(),
                            absl::Seconds(60)));
  if (auto floors = scheduler::ParseClassFloors(s.class_floors(),
                                                cfg.scheduler.class_floors);
      floors.ok()) {
    cfg.scheduler.class_floors = *floors;
  } else {
    return loc.Error("scheduler", 0, "class_floors",
                     std::string(floors.status().message()));
  }
  if (!s.power_fit().empty()) {
    auto fit = scheduler::ParsePowerFit(s.power_fit());
    if (!fit) {
      return loc.Error("scheduler", 0, "power_fit",
                       absl::StrCat("\"", s.power_fit(),
                                    "\" is not one of: leaf, every-level, "
                                    "balanced"));
    }
    cfg.scheduler.power_fit = *fit;
  }
  if (!s.plus_commit().empty()) {
    auto rule = scheduler::ParsePlusCommit(s.plus_commit());
    if (!rule) {
      return loc.Error("scheduler", 0, "plus_commit",
                       absl::StrCat("\"", s.plus_commit(), "\" is not one of: ",
                                    scheduler::kPlusCommitNames));
    }
    cfg.scheduler.plus_commit = *rule;
  }
  if (!s.efficiency_knee().empty()) {
    auto knee = scheduler::ParseSharePermille(s.efficiency_knee());
    if (!knee.ok()) {
      return loc.Error("scheduler", 0, "efficiency_knee",
                       std::string(knee.status().message()));
    }
    cfg.scheduler.efficiency_knee_permille = *knee;
  }
  if (cfg.scheduler.starting_timeout < absl::Seconds(1)) {
    return loc.Error("scheduler", 0, "starting_timeout", "must be at least 1s");
  }
  if (auto e = ApplyTimeLimits(s, &cfg.scheduler.time_limits)) {
    return loc.Error("scheduler", 0, e->field, e->rule);
  }
  if (s.max_nodes() > 0) cfg.scheduler.max_nodes = s.max_nodes();
  if (s.max_registrations_per_second() > 0) {
    cfg.scheduler.max_registrations_per_second =
        s.max_registrations_per_second();
  }

  auto is_leaf = [&](const std::string& name) {
    auto it = domain_index.find(name);
    return it != domain_index.end() && children[it->second].empty();
  };
  // Nodes not listed under `node` go to default_domain; without one, to the
  // root when it is a leaf, else they are refused at registration.
  cfg.scheduler.default_domain = s.default_domain();
  if (cfg.scheduler.default_domain.empty() &&
      is_leaf(raw.domain(root).name())) {
    cfg.scheduler.default_domain = raw.domain(root).name();
  }
  if (cfg.scheduler.default_domain.empty()) {
    // No default: only listed nodes may register.
  } else if (!domain_index.contains(cfg.scheduler.default_domain)) {
    return loc.Error(
        "scheduler", 0, "default_domain",
        absl::StrCat("\"", s.default_domain(), "\" is not a defined domain"));
  } else if (!is_leaf(cfg.scheduler.default_domain)) {
    return loc.Error(
        "scheduler", 0, "default_domain",
        absl::StrCat("\"", cfg.scheduler.default_domain,
                     "\" has child domains; nodes hang off leaf domains only"));
  }

  absl::flat_hash_set<std::string> node_names;
  for (int i = 0; i < raw.node_size(); ++i) {
    const auto& n = raw.node(i);
    if (n.name().empty()) return loc.Error("node", i, "name", "is required");
    if (!node_names.insert(n.name()).second) {
      return loc.Error("node", i, "name",
                       absl::StrCat("\"", n.name(), "\" is defined twice"));
    }
    if (!domain_index.contains(n.domain())) {
      return loc.Error(
          "node", i, "domain",
          absl::StrCat("\"", n.domain(), "\" is not a defined domain"));
    }
    if (!is_leaf(n.domain())) {
      return loc.Error("node", i, "domain",
                       absl::StrCat("\"", n.domain(),
                                    "\" has child domains; nodes hang off "
                                    "leaf domains only"));
    }
    NodeSlot slot{n.name(), n.domain(), cfg.scheduler.default_base_power_mw};
    if (!n.node_model().empty()) {
      auto it = cfg.node_models.find(n.node_model());
      if (it == cfg.node_models.end()) {
        return loc.Error("node", i, "node_model",
                         absl::StrCat("\"", n.node_model(),
                                      "\" is not a defined node_model"));
      }
      slot.base_power_mw = it->second;
    }
    cfg.nodes.push_back(slot);
  }
  for (int i = 0; i < raw.tenant_size(); ++i) {
    const auto& t = raw.tenant(i);
    if (t.name().empty()) return loc.Error("tenant", i, "name", "is required");
    cfg.tenant_weights[t.name()] =
        t.fair_share_weight() == 0 ? 1 : t.fair_share_weight();
    if (t.has_quota()) {
      if (auto e = ParseQuota(t.quota(), &cfg.tenant_quotas[t.name()])) {
        return loc.Error("tenant", i, e->field, e->rule);
      }
    }
  }
  return cfg;
}

absl::StatusOr<ClusterConfig> LoadClusterConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read config ", path));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseClusterConfig(ss.str(), path);
}

ClusterConfig DefaultClusterConfig() {
  ClusterConfig cfg;
  // Without --config jouled is a development daemon: unpriced use is
  // accepted (a config file refuses it unless it says otherwise).
  cfg.allow_unpriced = true;
  for (const KnownGpu& g : kKnownGpus) {
    cfg.gpu_models.push_back({std::string(g.model), g.tdp_mw, g.min_limit_mw,
                              g.max_limit_mw, g.idle_mw});
  }
  // No configured tree: a cap high enough never to bind (1 GW).
  cfg.domains = {{"site", "", "site", 1'000'000'000'000}};
  cfg.node_models["default"] = 1'500'000;
  cfg.scheduler.default_base_power_mw = 1'500'000;
  cfg.scheduler.default_domain = "site";
  return cfg;
}

}  // namespace joule::config
