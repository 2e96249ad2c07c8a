#include "daemon/config_reload.h"

#include "gtest/gtest.h"

namespace joule::daemon {
namespace {

config::ClusterConfig Parse(const std::string& rack_cap,
                            const std::string& extra = "") {
  auto c = config::ParseClusterConfig(
      "domain { name: \"site\" kind: \"site\" cap: \"1MW\" }\n"
      "domain { name: \"rk1\" parent: \"site\" kind: \"rack\" cap: \"" +
          rack_cap +
          "\" }\n"
          "node { name: \"n1\" domain: \"rk1\" }\n" +
          extra,
      "test.conf");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

TEST(DiffConfig, CapsChangeEverythingElseNeedsARestart) {
  // 11 kW -> 12 kW: one change, in mW.
  auto caps = DiffConfig(Parse("11kW"), Parse("12kW"));
  ASSERT_TRUE(caps.ok()) << caps.status();
  ASSERT_EQ(caps->size(), 1u);
  EXPECT_EQ((*caps)[0].domain, "rk1");
  EXPECT_EQ((*caps)[0].old_mw, 11'000'000);
  EXPECT_EQ((*caps)[0].new_mw, 12'000'000);
  EXPECT_TRUE(DiffConfig(Parse("11kW"), Parse("11kW"))->empty());

  struct Case {
    std::string extra;
    std::string names;
  };
  const Case cases[] = {
      {"node { name: \"n2\" domain: \"rk1\" }\n", "the set of nodes"},
      {"domain { name: \"rk2\" parent: \"site\" kind: \"rack\" cap: \"1kW\" "
       "}\n",
       "the set of domains"},
      {"scheduler { admission: \"measured\" }\n", "scheduler"},
      {"scheduler { max_preempt_grace: \"60s\" }\n", "scheduler"},
      {"billing { allow_unpriced: true }\n", "allow_unpriced"},
  };
  for (const Case& c : cases) {
    auto r = DiffConfig(Parse("11kW"), Parse("12kW", c.extra));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition)
        << c.extra;
    EXPECT_NE(r.status().message().find(c.names), absl::string_view::npos)
        << r.status();
    EXPECT_NE(r.status().message().find("nothing changed"),
              absl::string_view::npos);
  }
}

}  // namespace
}  // namespace joule::daemon
