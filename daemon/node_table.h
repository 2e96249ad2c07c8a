#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/cluster_config.h"
#include "joule/v1/joule.pb.h"
#include "scheduler/types.h"
#include "storage/store.h"

namespace joule::daemon {

class AgentLink;

// One GPU of a node: what the agent registered, its last report and what
// the scheduler did with it.
struct GpuRt {
  v1::GpuInfo info;
  v1::GpuStatus status;      // last report
  std::string job_key;       // "job/attempt" allocated to, empty if free
  int64_t commanded_mw = 0;  // limit we asked for (0 = not yet)
  // "job/attempt" of an old attempt the agent still runs here: the GPU is
  // not free until a report no longer shows it (its process is gone).
  std::string stale_key;
};

// One node: its persisted record, GPUs, agent session and liveness.
struct NodeRt {
  v1::Node node;  // persisted fields: name, domain, address, gpu_backend,
                  // registered_time, drained, base_power_mw
  std::vector<GpuRt> gpus;
  int leaf = 0;
  absl::Time last_report = absl::InfinitePast();
  absl::Time unreachable_since = absl::InfinitePast();
  bool ready = false;
  int64_t measured_mw = 0;  // base + sum of expected GPU draw
  int64_t reported_mw = 0;  // base + sum of the GPUs' last reported draw
  AgentLink* link = nullptr;
  std::string session_id;
  // Commands decided at registration, sent once the agent attaches its new
  // stream (at registration the old stream, if any, is gone).
  std::vector<v1::DaemonMessage> on_attach;
  // "job/attempt" keys the agent runs but should not, already told to stop.
  absl::flat_hash_set<std::string> stale_stopped;
  // The last telemetry refusal's text, so that a bad report repeated
  // every interval gives one event, not one a second.
  std::string last_refusal;

  // An attempt of this node told to stop after the daemon moved its job on
  // (requeued or ended), whose process may still run: its GPUs in `al`
  // stay taken (stale) until a report no longer shows it, and the report
  // does not stop it again.
  void HoldStopping(const std::string& attempt_key, const v1::Allocation& al) {
    stale_stopped.insert(attempt_key);
    for (uint32_t g : al.gpu_indices()) {
      if (g < gpus.size()) gpus[g].stale_key = attempt_key;
    }
  }
};

// The nodes of the cluster and their telemetry.
//
// Owns: every registered node (persisted in kNodes: name, domain, address,
// backend, drained, base power, GPU inventory), each GPU's last report,
// allocation key and commanded limit, the agent sessions, and the rate of
// recent registrations.
// Invariants: a GPU's job_key names at most one attempt (set only by the
// controller when it places that attempt, cleared when the attempt ends);
// a GPU with a stale_key is never free; a node's measured_mw is counted in
// its domains (the controller keeps DomainTree in step).
// Thread-safety: externally synchronized by the lock passed at construction
// (the ClusterManager's mu_). AgentLink::Send is called with it held.
class NodeTable {
 public:
  using Map = std::map<std::string, NodeRt>;

  NodeTable(absl::Mutex* mu, const config::ClusterConfig* config)
      : mu_(mu), config_(config) {}

  // Map access (iteration in name order, lookup).
  Map::iterator begin() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return nodes_.begin();
  }
  Map::iterator end() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return nodes_.end();
  }
  Map::const_iterator begin() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return nodes_.begin();
  }
  Map::const_iterator end() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return nodes_.end();
  }
  Map::iterator find(const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return nodes_.find(name);
  }
  Map::const_iterator find(const std::string& name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return nodes_.find(name);
  }
  NodeRt& at(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return nodes_.at(name);
  }
  bool contains(const std::string& name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return nodes_.contains(name);
  }
  size_t size() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return nodes_.size();
  }
  std::pair<Map::iterator, bool> try_emplace(const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return nodes_.try_emplace(name);
  }
  void erase(Map::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    nodes_.erase(it);
  }

  // Reads kNodes; `leaf_for` gives a node's leaf domain (-1: no longer in
  // the config, so the node is forgotten). Loaded nodes are unreachable
  // since `now` until their agents register again.
  absl::Status Load(storage::Store* store,
                    const std::function<int(const std::string&)>& leaf_for,
                    absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the persisted fields of `n` to `batch`.
  void Put(storage::WriteBatch* batch, const NodeRt& n) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Bounds new nodes in number and in rate (scheduler.max_nodes,
  // max_registrations_per_second); counts an admitted one.
  absl::Status AdmitNew(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Idle draw of one GPU of `model`: the config's idle_power, else a tenth
  // of the default limit the agents report.
  int64_t IdleMw(const std::string& model) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The GPU models with the limit ranges the policy uses: the config's, a
  // range it leaves out from the agents' reports, and models only the
  // agents report (TDP = the default power limit). Not yet offset by idle.
  std::vector<scheduler::GpuModelSpec> GpuModels() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The policy's view of one node.
  scheduler::NodeSnapshot Snapshot(const NodeRt& n) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A node as the API shows it; `visible(job_id)` says whether the viewer
  // may see a job's id.
  v1::Node View(const NodeRt& n, absl::Time now,
                const std::function<bool(const std::string&)>& visible) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

 private:
  absl::Mutex* const mu_;
  const config::ClusterConfig* const config_;
  Map nodes_ ABSL_GUARDED_BY(mu_);
  // When recent registrations were accepted (rate limit).
  std::deque<absl::Time> recent_registrations_ ABSL_GUARDED_BY(mu_);
};

}  // namespace joule::daemon
