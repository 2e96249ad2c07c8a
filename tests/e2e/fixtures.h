#pragma once

// What the end-to-end tests share beyond the harness: the cluster config
// text they give jouled (Cluster::Options::config_text), built from the
// lines most of them repeat, the wait for their agents to be READY, and
// the start they mostly begin with. Header-only.

#include <string>
#include <vector>

#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {

// Builds config text line by line, in the order of the calls. It starts
// with the H100 GPU model (200..700 W, TDP 700 W, idle 70 W), then (unless
// told otherwise) the "hgx" node model (1 kW base), then the 1 MW "site"
// domain. Nodes name the hgx model when it is there. A value type; not
// thread-safe.
class ConfigBuilder {
 public:
  explicit ConfigBuilder(bool hgx = true) : hgx_(hgx) {
    text_ =
        "gpu_model { name: \"H100\" tdp: \"700W\" min_power_limit: \"200W\" "
        "max_power_limit: \"700W\" idle_power: \"70W\" }\n";
    if (hgx_) text_ += "node_model { name: \"hgx\" base_power: \"1kW\" }\n";
    text_ += "domain { name: \"site\" kind: \"site\" cap: \"1MW\" }\n";
  }

  // domain { name: NAME parent: PARENT kind: KIND cap: CAP }
  ConfigBuilder& Domain(const std::string& name, const std::string& cap,
                        const std::string& parent = "site",
                        const std::string& kind = "rack") {
    text_ += "domain { name: \"" + name + "\" parent: \"" + parent +
             "\" kind: \"" + kind + "\" cap: \"" + cap + "\" }\n";
    return *this;
  }
  // node { name: NAME domain: DOMAIN [node_model: "hgx"] }
  ConfigBuilder& Node(const std::string& name, const std::string& domain) {
    text_ += "node { name: \"" + name + "\" domain: \"" + domain + "\"" +
             (hgx_ ? " node_model: \"hgx\"" : "") + " }\n";
    return *this;
  }
  // Nodes n1..nCOUNT in `domain`.
  ConfigBuilder& Nodes(int count, const std::string& domain) {
    for (int i = 1; i <= count; ++i) Node("n" + std::to_string(i), domain);
    return *this;
  }
  // scheduler { FIELDS }
  ConfigBuilder& Scheduler(const std::string& fields) {
    text_ += "scheduler { " + fields + " }\n";
    return *this;
  }

  const std::string& Text() const { return text_; }

 private:
  bool hgx_;
  std::string text_;
};

// `joulectl job submit ARGS...`: the new job's id. A non-zero exit is an
// EXPECT failure showing its stderr.
inline std::string SubmitJob(const Cluster& c, std::vector<std::string> args) {
  args.insert(args.begin(), {"job", "submit"});
  CtlResult r = c.Ctl(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return std::string(absl::StripAsciiWhitespace(r.out));
}

// `joulectl job show ID` as a Job.
inline v1::Job ShowJob(const Cluster& c, const std::string& id) {
  v1::Job j;
  c.CtlJson({"job", "show", id}, &j);
  return j;
}

// Waits (WaitFor) until `joulectl node list` shows exactly `n` nodes, all
// READY; returns whether they were.
inline bool WaitForReadyNodes(const Cluster& c, int n) {
  return WaitFor([&] {
    v1::ListNodesResponse r;
    c.CtlJson({"node", "list"}, &r);
    int ready = 0;
    for (const auto& node : r.nodes()) {
      ready += node.state() == v1::NODE_STATE_READY;
    }
    return r.nodes_size() == n && ready == n;
  });
}

// Nodes n1..nCOUNT by name (ConfigBuilder::Nodes names them so).
inline std::vector<std::string> NodeNames(int count) {
  std::vector<std::string> names;
  for (int i = 1; i <= count; ++i) names.push_back("n" + std::to_string(i));
  return names;
}

// The start most tests begin with: jouled, one agent per name in `nodes`
// (in order), the wait until exactly those nodes are READY, then `joulectl
// tenant create` for each of `tenants`. Its failures are fatal: call it
// inside ASSERT_NO_FATAL_FAILURE.
inline void StartCluster(Cluster& c, const std::vector<std::string>& nodes,
                         const std::vector<std::string>& tenants = {"acme"}) {
  c.StartDaemon();
  for (const std::string& n : nodes) c.StartAgent(n);
  ASSERT_TRUE(WaitForReadyNodes(c, static_cast<int>(nodes.size())));
  for (const std::string& t : tenants) {
    ASSERT_EQ(c.Ctl({"tenant", "create", t}).exit_code, 0) << t;
  }
}

}  // namespace joule::e2e
