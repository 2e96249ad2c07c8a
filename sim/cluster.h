#pragma once

// The simulated cluster of joule-sim: GPU models, the power-domain tree and
// the nodes, built from the daemon's config file, from a synthetic
// description, or from the Alibaba GPU-2023 node list. Plain data plus the
// builders; no simulation state (that lives in simulator.h).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "config/cluster_config.h"

namespace joule::sim {

// A GPU model with the numbers the power model needs.
struct SimGpuModel {
  std::string name;
  int64_t tdp_mw = 0;
  int64_t min_limit_mw = 0;
  int64_t max_limit_mw = 0;
  int64_t idle_mw = 0;  // what a free GPU draws
  // The idle power the daemon's accounting assumes for the model
  // (jouled's NodeTable::IdleMw): the config's idle_power, else a tenth of
  // the default limit the agents report (TDP), else 0 for a model no node
  // has. -1 = idle_mw (the config lists the model with its idle power).
  int64_t accounted_idle_mw = -1;
  // Whether the daemon's config lists the model: a job of any model is
  // offset by the smallest accounted idle among the listed models.
  bool listed = true;

  int64_t AccountedIdleMw() const {
    return accounted_idle_mw >= 0 ? accounted_idle_mw : idle_mw;
  }
};

struct SimDomain {
  std::string name;
  std::string level;  // site, hall, row, rack, ...
  int parent = -1;    // index; parents come before children
  int64_t cap_mw = 0;
};

struct SimNode {
  std::string name;
  int leaf = -1;   // domain index
  int model = -1;  // index into SimCluster::models, -1 = no GPUs
  uint32_t gpus = 0;
  int64_t base_mw = 0;
};

// A whole cluster description. Invariants (checked by Validate): domain
// parents precede children, exactly one root, nodes sit under leaf domains,
// every node has <= 64 GPUs and a valid model when it has GPUs.
struct SimCluster {
  std::vector<SimGpuModel> models;
  std::vector<SimDomain> domains;
  std::vector<SimNode> nodes;

  int ModelIndex(absl::string_view name) const;
  int DomainIndex(absl::string_view name) const;
  int64_t TotalGpus() const;
  absl::Status Validate() const;
};

// The GPU spec joule-sim assumes for a model name: the common catalogue
// (common/gpu_catalog.h) plus the older / undisclosed models of the public
// traces (T4, P100, V100M16, V100M32, A10, G1, G2, G3; see
// docs/evaluation.md). nullopt-like: returns false when unknown.
bool LookupSimGpu(absl::string_view name, SimGpuModel* out);

// Cluster from the daemon's config: its domains (with caps) and its listed
// nodes, each with `gpus_per_node` GPUs of `gpu_model` (which must be a
// model of the config or of LookupSimGpu).
absl::StatusOr<SimCluster> ClusterFromConfig(const config::ClusterConfig& cfg,
                                             uint32_t gpus_per_node,
                                             const std::string& gpu_model);

// "nodes=10000,gpus-per-node=8,gpu-model=H100,nodes-per-rack=8,
// racks-per-row=16,rows-per-hall=10[,base-power=1kW]". Tree: site > hall >
// row > rack > node. Caps are unlimited until ApplyCapFractions.
absl::StatusOr<SimCluster> SyntheticCluster(absl::string_view spec);

// Topology used for imported node lists.
struct RackLayout {
  uint32_t nodes_per_rack = 8;
  uint32_t racks_per_row = 10;
  uint32_t rows_per_hall = 10;
  int64_t base_power_mw = 400'000;
};

// The Alibaba GPU-2023 node list (sn,cpu_milli,memory_mib,gpu,model), in
// file order, laid out into racks/rows/halls under one site. CPU-only nodes
// are kept (their base power counts) with no GPUs. Errors name the line.
absl::StatusOr<SimCluster> ClusterFromAlibabaNodeList(const std::string& path,
                                                      const RackLayout& layout);

// "rack=0.8,row=0.75,site=0.7": the cap of every domain of a level becomes
// (base power of the nodes below) + fraction × (sum of TDP × GPUs below):
// the fraction oversubscribes the GPU power only, since the power loop can
// lower GPU limits but not a node's base draw. Levels not named keep their
// cap.
absl::Status ApplyCapFractions(absl::string_view spec, SimCluster* cluster);

// Unlimited cap (1 TW) for domains without one.
inline constexpr int64_t kUnlimitedMw = int64_t{1'000'000'000'000'000};

}  // namespace joule::sim
