#include "auth/authz_table.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "joule/v1/auth.grpc.pb.h"
#include "joule/v1/joule.grpc.pb.h"

namespace joule::auth {
namespace {

// Every RPC of every joule.v1 service is in the table, and the table names
// no method the API lacks: a new RPC without a row fails here (and is
// denied to everyone at run time).
TEST(AuthorizationTable, CoversEveryMethodOfTheApiExactlyOnce) {
  std::set<std::string> api;
  // Every service of the API's files (naming a message links each file in).
  for (const google::protobuf::FileDescriptor* f :
       {v1::Job::descriptor()->file(), v1::Token::descriptor()->file()}) {
    for (int s = 0; s < f->service_count(); ++s) {
      const auto* sd = f->service(s);
      for (int i = 0; i < sd->method_count(); ++i) {
        api.insert(
            absl::StrCat("/", sd->full_name(), "/", sd->method(i)->name()));
      }
    }
  }
  EXPECT_GE(api.size(), 28u);  // 2 + 5 + 8 + 8 + 5 when this was written
  std::set<std::string> table;
  for (const MethodRule& r : AuthorizationTable()) {
    EXPECT_TRUE(table.insert(r.method).second) << "twice: " << r.method;
  }
  EXPECT_EQ(api, table);
}

TEST(AuthorizationTable, DocsShowTheSameTable) {
  std::ifstream in(std::string(JOULE_SOURCE_DIR) + "/docs/security.md");
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_TRUE(absl::StrContains(ss.str(), AuthorizationTableMarkdown()))
      << "docs/security.md must contain, verbatim:\n"
      << AuthorizationTableMarkdown();
}

struct DecideCase {
  std::string method;
  v1::Role role;
  Access want;
};

TEST(Decide, TableDriven) {
  const std::vector<DecideCase> cases = {
      // Deny by default: unknown methods and no role.
      {"/joule.v1.JobService/Nope", v1::ROLE_OPERATOR, Access::kDeny},
      {"/joule.v1.JobService/GetJob", v1::ROLE_UNSPECIFIED, Access::kDeny},
      // Tenants: own jobs; no caps, no prices set; read the catalogue.
      {"/joule.v1.JobService/SubmitJob", v1::ROLE_TENANT, Access::kOwn},
      {"/joule.v1.AdminService/SetPowerCap", v1::ROLE_TENANT, Access::kDeny},
      {"/joule.v1.BillingService/SetPrice", v1::ROLE_TENANT, Access::kDeny},
      {"/joule.v1.BillingService/ListPrices", v1::ROLE_TENANT, Access::kAll},
      {"/joule.v1.BillingService/RecordUsage", v1::ROLE_TENANT, Access::kDeny},
      // Finance: statements and finalize, no jobs, caps or nodes.
      {"/joule.v1.BillingService/FinalizePeriod", v1::ROLE_FINANCE,
       Access::kAll},
      {"/joule.v1.JobService/ListJobs", v1::ROLE_FINANCE, Access::kDeny},
      {"/joule.v1.AdminService/ListNodes", v1::ROLE_FINANCE, Access::kDeny},
      // Metering: usage only.
      {"/joule.v1.BillingService/RecordUsage", v1::ROLE_METERING, Access::kAll},
      {"/joule.v1.BillingService/GetStatement", v1::ROLE_METERING,
       Access::kDeny},
      // Agents: the agent API for their node only, nothing else.
      {"/joule.v1.AgentService/Register", v1::ROLE_AGENT, Access::kOwn},
      {"/joule.v1.JobService/GetJob", v1::ROLE_AGENT, Access::kDeny},
      {"/joule.v1.AgentService/Register", v1::ROLE_OPERATOR, Access::kDeny},
  };
  for (const DecideCase& c : cases) {
    EXPECT_EQ(Decide(c.method, c.role), c.want)
        << c.method << " as " << RoleName(c.role);
  }
}

TEST(Roles, NamesRoundTrip) {
  for (v1::Role r : {v1::ROLE_OPERATOR, v1::ROLE_FINANCE, v1::ROLE_METERING,
                     v1::ROLE_TENANT, v1::ROLE_AGENT}) {
    v1::Role back = v1::ROLE_UNSPECIFIED;
    ASSERT_TRUE(ParseRole(RoleName(r), &back));
    EXPECT_EQ(back, r);
  }
  v1::Role x;
  EXPECT_FALSE(ParseRole("root", &x));
}

}  // namespace
}  // namespace joule::auth
