#pragma once

// What the ClusterManager tests (tests/daemon/*_test.cc) share: the start of
// their cluster config, the manager's options over a test's fake clock and
// store, the H100 GPUs a fake agent registers and what its reports carry.
// Header-only; no state.

#include <initializer_list>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "config/cluster_config.h"
#include "daemon/cluster_manager.h"
#include "storage/store.h"

namespace joule::daemon::test {

// An H100 model (200..700 W, TDP 700 W, idle 70 W), the "hgx" node model
// (1 kW base) and the 1 MW "site" domain: the config text the tests append
// their racks, nodes, tenants and scheduler to.
inline constexpr char kH100HgxSite[] = R"pb(
  gpu_model {
    name: "H100"
    tdp: "700W"
    min_power_limit: "200W"
    max_power_limit: "700W"
    idle_power: "70W"
  }
  node_model { name: "hgx" base_power: "1kW" }
  domain { name: "site" kind: "site" cap: "1MW" }
)pb";

// A ClusterManager's options over `config`, `store` and `clock` (the rest
// at their defaults).
inline ClusterManagerOptions ManagerOptions(const config::ClusterConfig& config,
                                            storage::Store* store,
                                            const Clock* clock) {
  ClusterManagerOptions o;
  o.config = config;
  o.store = store;
  o.clock = clock;
  return o;
}

// Adds `count` H100 GPUs to a registration: indexes 0..count-1, limits
// 200..700 W, default 700 W; with `uuid_prefix` not empty, uuid
// PREFIX + index.
inline void AddH100Gpus(v1::RegisterRequest* req, int count,
                        const std::string& uuid_prefix = "") {
  constexpr int64_t kW = 1000;  // mW
  for (int i = 0; i < count; ++i) {
    v1::GpuInfo* g = req->add_gpus();
    g->set_index(i);
    if (!uuid_prefix.empty()) g->set_uuid(absl::StrCat(uuid_prefix, i));
    g->set_model("H100");
    g->set_min_power_limit_mw(200 * kW);
    g->set_max_power_limit_mw(700 * kW);
    g->set_default_power_limit_mw(700 * kW);
  }
}

// A fake agent's registration: node `node` at `address`, GPU backend
// "fake", `gpus` H100s (AddH100Gpus with `uuid_prefix`).
inline v1::RegisterRequest FakeRegistration(
    const std::string& node, int gpus, const std::string& uuid_prefix,
    const std::string& address = "127.0.0.1") {
  v1::RegisterRequest req;
  req.set_node_name(node);
  req.set_address(address);
  req.set_gpu_backend("fake");
  AddH100Gpus(&req, gpus, uuid_prefix);
  return req;
}

// Registers `req` and attaches `link` as the node's stream with the
// session the registration gave, as an agent does on connecting.
inline absl::StatusOr<v1::RegisterResponse> ConnectAgent(
    ClusterManager& cm, const v1::RegisterRequest& req, AgentLink* link) {
  auto resp = cm.RegisterAgent(req);
  if (!resp.ok()) return resp.status();
  v1::AgentHello hello;
  hello.set_node_name(req.node_name());
  hello.set_session_id(resp->session_id());
  absl::Status s = cm.AttachAgent(hello, link);
  if (!s.ok()) return s;
  return resp;
}

// Adds GPU `index`'s status to an agent's report: a healthy H100 with
// power limit `limit_mw`, drawing `power_mw`.
inline v1::GpuStatus* AddH100Status(v1::NodeReport* r, uint32_t index,
                                    int64_t limit_mw, int64_t power_mw) {
  v1::GpuStatus* g = r->add_gpus();
  g->set_index(index);
  g->set_model("H100");
  g->set_healthy(true);
  g->set_power_limit_mw(limit_mw);
  g->set_power_mw(power_mw);
  return g;
}

// Adds attempt `attempt` of job `id`, running on `gpus`, to a report.
template <typename Gpus = std::initializer_list<uint32_t>>
inline void AddReportedJob(v1::NodeReport* r, const std::string& id,
                           int64_t attempt, const Gpus& gpus = {}) {
  v1::RunningJob* rj = r->add_jobs();
  rj->set_job_id(id);
  rj->set_attempt(attempt);
  for (uint32_t g : gpus) rj->add_gpu_indices(g);
}

}  // namespace joule::daemon::test
