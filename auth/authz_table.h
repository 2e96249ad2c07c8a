#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "joule/v1/auth.pb.h"

namespace joule::auth {

// What a role may do with one method.
enum class Access {
  kDeny,  // PERMISSION_DENIED
  kAll,   // any tenant's or node's data
  kOwn,   // only its own tenant's (tenant) or node's (agent) data
};

// One row of the authorization table: a gRPC method (full name,
// "/joule.v1.JobService/SubmitJob") and what each role may do with it.
// `mutating` calls are audited.
struct MethodRule {
  std::string method;
  bool mutating = false;
  Access operator_ = Access::kDeny;
  Access finance = Access::kDeny;
  Access metering = Access::kDeny;
  Access tenant = Access::kDeny;
  Access agent = Access::kDeny;
};

// The authorization table: every RPC of every joule.v1 service, once. It is
// the only place that says who may call what; docs/security.md shows the
// same table (tests/auth/authz_table_test.cc checks both, and that every
// method of the API is in it). Immutable; thread-safe.
const std::vector<MethodRule>& AuthorizationTable();

// The rule for `method`, or nullptr when the method is not in the table
// (deny by default: such a method is denied to every role).
const MethodRule* FindRule(absl::string_view method);

// What `role` may do with `method`: kDeny for a method not in the table and
// for ROLE_UNSPECIFIED.
Access Decide(absl::string_view method, v1::Role role);

// "operator", "finance", "metering", "tenant", "agent" ("none" for
// ROLE_UNSPECIFIED); and back (false for an unknown name).
std::string RoleName(v1::Role role);
bool ParseRole(absl::string_view name, v1::Role* role);

// The table rendered as a Markdown table (method, then one column per
// role: "yes", "own", "-"), exactly as docs/security.md shows it.
std::string AuthorizationTableMarkdown();

}  // namespace joule::auth
