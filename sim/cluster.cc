#include "sim/cluster.h"

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/gpu_catalog.h"
#include "common/status_macros.h"
#include "common/units.h"

namespace joule::sim {
namespace {

constexpr int64_t kW = 1000;

// Models of the public traces that the common catalogue does not know.
// Board power from the vendors' data sheets; idle and minimum limits are
// rounded typical nvidia-smi values. G1/G2/G3 are undisclosed in the Alibaba
// trace: assumed (see docs/evaluation.md).
struct ExtraGpu {
  const char* name;
  int64_t tdp_w, min_w, idle_w;
};
constexpr ExtraGpu kExtraGpus[] = {
    {"T4", 70, 60, 10},        {"P100", 250, 125, 30},
    {"V100", 300, 150, 40},    {"V100M16", 300, 150, 40},
    {"V100M32", 300, 150, 40}, {"A10", 150, 100, 20},
    {"G1", 300, 150, 40},      {"G2", 300, 150, 40},
    {"G3", 400, 150, 50},
};

absl::StatusOr<uint32_t> PositiveInt(absl::string_view key,
                                     absl::string_view value) {
  uint32_t v = 0;
  if (!absl::SimpleAtoi(value, &v) || v == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": \"", value, "\" is not a positive integer"));
  }
  return v;
}

// Fills a model of the cluster from its name (catalogue).
absl::StatusOr<int> AddModel(SimCluster* c, absl::string_view name) {
  int idx = c->ModelIndex(name);
  if (idx >= 0) return idx;
  SimGpuModel m;
  if (!LookupSimGpu(name, &m)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu model \"", name,
                     "\" is unknown (known: H100, H200, B200, A100, L40S, T4, "
                     "P100, V100, V100M16, V100M32, A10, G1, G2, G3)"));
  }
  c->models.push_back(m);
  return static_cast<int>(c->models.size()) - 1;
}

}  // namespace

bool LookupSimGpu(absl::string_view name, SimGpuModel* out) {
  if (const KnownGpu* g = FindKnownGpu(name)) {
    *out = {std::string(name), g->tdp_mw, g->min_limit_mw, g->max_limit_mw,
            g->idle_mw};
    return true;
  }
  for (const ExtraGpu& g : kExtraGpus) {
    if (name == g.name) {
      *out = {std::string(name), g.tdp_w * kW, g.min_w * kW, g.tdp_w * kW,
              g.idle_w * kW};
      return true;
    }
  }
  return false;
}

int SimCluster::ModelIndex(absl::string_view name) const {
  for (size_t i = 0; i < models.size(); ++i) {
    if (models[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

int SimCluster::DomainIndex(absl::string_view name) const {
  for (size_t i = 0; i < domains.size(); ++i) {
    if (domains[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

int64_t SimCluster::TotalGpus() const {
  int64_t n = 0;
  for (const SimNode& node : nodes) n += node.gpus;
  return n;
}

absl::Status SimCluster::Validate() const {
  int roots = 0;
  std::vector<bool> has_child(domains.size(), false);
  for (size_t i = 0; i < domains.size(); ++i) {
    const int p = domains[i].parent;
    if (p < 0) {
      ++roots;
    } else if (p >= static_cast<int>(i)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "domain ", domains[i].name, ": parent must come before it"));
    } else {
      has_child[p] = true;
    }
  }
  if (roots != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("cluster has ", roots, " root domains; want exactly 1"));
  }
  for (const SimNode& n : nodes) {
    if (n.leaf < 0 || n.leaf >= static_cast<int>(domains.size()) ||
        has_child[n.leaf]) {
      return absl::InvalidArgumentError(
          absl::StrCat("node ", n.name, ": must sit under a leaf domain"));
    }
    if (n.gpus > 64) {
      return absl::InvalidArgumentError(
          absl::StrCat("node ", n.name, ": at most 64 GPUs per node"));
    }
    if (n.gpus > 0 &&
        (n.model < 0 || n.model >= static_cast<int>(models.size()))) {
      return absl::InvalidArgumentError(
          absl::StrCat("node ", n.name, ": has GPUs but no GPU model"));
    }
  }
  if (nodes.empty()) return absl::InvalidArgumentError("cluster has no nodes");
  return absl::OkStatus();
}

absl::StatusOr<SimCluster> ClusterFromConfig(const config::ClusterConfig& cfg,
                                             uint32_t gpus_per_node,
                                             const std::string& gpu_model) {
  SimCluster c;
  if (gpus_per_node == 0 || gpus_per_node > 64) {
    return absl::InvalidArgumentError("--gpus-per-node: must be 1..64");
  }
  for (const config::GpuModel& m : cfg.gpu_models) {
    SimGpuModel sm;
    SimGpuModel known;
    const bool have = LookupSimGpu(m.name, &known);
    sm.name = m.name;
    sm.tdp_mw = m.tdp_mw;
    sm.min_limit_mw = m.min_limit_mw > 0 ? m.min_limit_mw
                      : have             ? known.min_limit_mw
                                         : m.tdp_mw * 3 / 10;
    sm.max_limit_mw = m.max_limit_mw > 0 ? m.max_limit_mw : m.tdp_mw;
    sm.idle_mw = m.idle_mw > 0 ? m.idle_mw
                 : have        ? known.idle_mw
                               : m.tdp_mw / 10;
    // Accounted idle, as jouled's NodeTable::IdleMw: the configured idle
    // power, else (set below) a tenth of the default limit, which agents
    // report as TDP.
    sm.accounted_idle_mw = m.idle_mw > 0 ? m.idle_mw : 0;
    c.models.push_back(sm);
  }
  const size_t listed = c.models.size();
  ASSIGN_OR_RETURN(const int model, AddModel(&c, gpu_model));
  if (static_cast<size_t>(model) >= listed) {
    // Not in the config: the daemon takes it as the agents report it.
    c.models[model].listed = false;
    c.models[model].accounted_idle_mw = c.models[model].tdp_mw / 10;
  } else if (cfg.gpu_models[model].idle_mw <= 0) {
    c.models[model].accounted_idle_mw = c.models[model].tdp_mw / 10;
  }
  absl::flat_hash_map<std::string, int> index;
  for (const config::Domain& d : cfg.domains) {
    SimDomain sd;
    sd.name = d.name;
    sd.level = d.kind;
    sd.cap_mw = d.cap_mw;
    if (!d.parent.empty()) {
      auto it = index.find(d.parent);
      if (it == index.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("domain ", d.name, ": unknown parent ", d.parent));
      }
      sd.parent = it->second;
    }
    index[d.name] = static_cast<int>(c.domains.size());
    c.domains.push_back(sd);
  }
  for (const config::NodeSlot& n : cfg.nodes) {
    auto it = index.find(n.domain);
    if (it == index.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("node ", n.name, ": unknown domain ", n.domain));
    }
    c.nodes.push_back(
        {n.name, it->second, model, gpus_per_node, n.base_power_mw});
  }
  RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<SimCluster> SyntheticCluster(absl::string_view spec) {
  uint32_t nodes = 0, gpus = 8, per_rack = 8, racks_per_row = 16,
           rows_per_hall = 10;
  std::string model = "H100";
  int64_t base_mw = 1'000'000;
  for (absl::string_view kv : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p =
        absl::StrSplit(kv, absl::MaxSplits('=', 1));
    const std::string key(absl::StripAsciiWhitespace(p.first));
    const std::string value(absl::StripAsciiWhitespace(p.second));
    const std::string field = absl::StrCat("--synthetic-cluster ", key);
    if (key == "nodes") {
      ASSIGN_OR_RETURN(nodes, PositiveInt(field, value));
    } else if (key == "gpus-per-node") {
      ASSIGN_OR_RETURN(gpus, PositiveInt(field, value));
    } else if (key == "gpu-model") {
      model = value;
    } else if (key == "nodes-per-rack") {
      ASSIGN_OR_RETURN(per_rack, PositiveInt(field, value));
    } else if (key == "racks-per-row") {
      ASSIGN_OR_RETURN(racks_per_row, PositiveInt(field, value));
    } else if (key == "rows-per-hall") {
      ASSIGN_OR_RETURN(rows_per_hall, PositiveInt(field, value));
    } else if (key == "base-power") {
      ASSIGN_OR_RETURN(base_mw, ParsePowerMw(value, field));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--synthetic-cluster: unknown key \"", key,
                       "\" (nodes, gpus-per-node, gpu-model, nodes-per-rack, "
                       "racks-per-row, rows-per-hall, base-power)"));
    }
  }
  if (nodes == 0) {
    return absl::InvalidArgumentError(
        "--synthetic-cluster: nodes= is required");
  }
  if (gpus > 64) {
    return absl::InvalidArgumentError(
        "--synthetic-cluster gpus-per-node: at most 64");
  }
  SimCluster c;
  ASSIGN_OR_RETURN(const int m, AddModel(&c, model));
  c.domains.push_back({"site", "site", -1, kUnlimitedMw});
  const uint32_t racks = (nodes + per_rack - 1) / per_rack;
  const uint32_t rows = (racks + racks_per_row - 1) / racks_per_row;
  const uint32_t halls = (rows + rows_per_hall - 1) / rows_per_hall;
  c.domains.reserve(1 + halls + rows + racks);
  c.nodes.reserve(nodes);
  uint32_t node = 0;
  for (uint32_t h = 0; h < halls && node < nodes; ++h) {
    const int hall = static_cast<int>(c.domains.size());
    c.domains.push_back({absl::StrCat("hall-", h), "hall", 0, kUnlimitedMw});
    for (uint32_t r = 0; r < rows_per_hall && node < nodes; ++r) {
      const int row = static_cast<int>(c.domains.size());
      c.domains.push_back(
          {absl::StrCat("row-", h, "-", r), "row", hall, kUnlimitedMw});
      for (uint32_t k = 0; k < racks_per_row && node < nodes; ++k) {
        const int rack = static_cast<int>(c.domains.size());
        c.domains.push_back({absl::StrCat("rack-", h, "-", r, "-", k), "rack",
                             row, kUnlimitedMw});
        for (uint32_t i = 0; i < per_rack && node < nodes; ++i, ++node) {
          c.nodes.push_back(
              {absl::StrCat("node-", node), rack, m, gpus, base_mw});
        }
      }
    }
  }
  RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<SimCluster> ClusterFromAlibabaNodeList(
    const std::string& path, const RackLayout& layout) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  }
  SimCluster c;
  c.domains.push_back({"site", "site", -1, kUnlimitedMw});
  std::string line;
  int line_no = 0;
  int hall = -1, row = -1, rack = -1;
  uint32_t in_rack = layout.nodes_per_rack, racks_in_row = layout.racks_per_row,
           rows_in_hall = layout.rows_per_hall;
  uint32_t halls = 0, rows = 0, racks = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line_no == 1) {
      if (!absl::StartsWith(line, "sn,")) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":1: header: want sn,cpu_milli,memory_mib,gpu,model"));
      }
      continue;
    }
    std::vector<std::string> cols = absl::StrSplit(line, ',');
    if (cols.size() != 5) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", line_no, ": row has ", cols.size(), " columns; want 5"));
    }
    uint32_t gpus = 0;
    if (!absl::SimpleAtoi(cols[3], &gpus) || gpus > 64) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", line_no, ": gpu: \"", cols[3], "\" is not 0..64"));
    }
    int model = -1;
    if (gpus > 0) {
      if (cols[4].empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", line_no, ": model: empty for a node with GPUs"));
      }
      auto m = AddModel(&c, cols[4]);
      if (!m.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", line_no, ": model: ", m.status().message()));
      }
      model = *m;
    }
    if (in_rack == layout.nodes_per_rack) {
      in_rack = 0;
      if (racks_in_row == layout.racks_per_row) {
        racks_in_row = 0;
        if (rows_in_hall == layout.rows_per_hall) {
          rows_in_hall = 0;
          hall = static_cast<int>(c.domains.size());
          c.domains.push_back(
              {absl::StrCat("hall-", halls++), "hall", 0, kUnlimitedMw});
        }
        ++rows_in_hall;
        row = static_cast<int>(c.domains.size());
        c.domains.push_back(
            {absl::StrCat("row-", rows++), "row", hall, kUnlimitedMw});
      }
      ++racks_in_row;
      rack = static_cast<int>(c.domains.size());
      c.domains.push_back(
          {absl::StrCat("rack-", racks++), "rack", row, kUnlimitedMw});
    }
    ++in_rack;
    c.nodes.push_back({cols[0], rack, model, gpus, layout.base_power_mw});
  }
  RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::Status ApplyCapFractions(absl::string_view spec, SimCluster* cluster) {
  absl::flat_hash_map<std::string, double> fraction;
  for (absl::string_view kv : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p =
        absl::StrSplit(kv, absl::MaxSplits('=', 1));
    double f = 0;
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(p.second), &f) || f <= 0 ||
        f > 10) {
      return absl::InvalidArgumentError(
          absl::StrCat("--cap-fraction ", p.first, ": \"", p.second,
                       "\" is not a fraction in (0, 10]"));
    }
    fraction[std::string(absl::StripAsciiWhitespace(p.first))] = f;
  }
  const size_t nd = cluster->domains.size();
  std::vector<int64_t> tdp(nd, 0), base(nd, 0);  // sums below
  for (const SimNode& n : cluster->nodes) {
    base[n.leaf] += n.base_mw;
    if (n.model >= 0) tdp[n.leaf] += cluster->models[n.model].tdp_mw * n.gpus;
  }
  for (size_t d = nd; d-- > 1;) {
    const int p = cluster->domains[d].parent;
    if (p >= 0) {
      tdp[p] += tdp[d];
      base[p] += base[d];
    }
  }
  absl::flat_hash_set<std::string> levels;
  for (SimDomain& d : cluster->domains) levels.insert(d.level);
  for (const auto& [level, f] : fraction) {
    if (!levels.contains(level)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--cap-fraction: no domain of level \"", level, "\""));
    }
  }
  for (size_t d = 0; d < nd; ++d) {
    auto it = fraction.find(cluster->domains[d].level);
    if (it == fraction.end()) continue;
    cluster->domains[d].cap_mw =
        base[d] +
        static_cast<int64_t>(static_cast<double>(tdp[d]) * it->second);
  }
  return absl::OkStatus();
}

}  // namespace joule::sim
