#include "auth/authz_table.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace joule::auth {
namespace {

constexpr Access D = Access::kDeny;
constexpr Access A = Access::kAll;
constexpr Access O = Access::kOwn;

// method, mutating, operator, finance, metering, tenant, agent
std::vector<MethodRule> BuildTable() {
  auto row = [](std::string service, std::string method, bool mutating,
                Access op, Access fin, Access met, Access ten, Access agt) {
    return MethodRule{absl::StrCat("/joule.v1.", service, "/", method),
                      mutating,
                      op,
                      fin,
                      met,
                      ten,
                      agt};
  };
  return {
      // Agents: their own node only (the node of their certificate/token).
      row("AgentService", "Register", true, D, D, D, D, O),
      row("AgentService", "Connect", false, D, D, D, D, O),
      // Jobs: tenants see and act on their own jobs only.
      row("JobService", "SubmitJob", true, A, D, D, O, D),
      row("JobService", "GetJob", false, A, D, D, O, D),
      row("JobService", "ListJobs", false, A, D, D, O, D),
      row("JobService", "CancelJob", true, A, D, D, O, D),
      row("JobService", "GetJobLogs", false, A, D, D, O, D),
      row("JobService", "HoldJob", true, A, D, D, O, D),
      row("JobService", "ReleaseJob", true, A, D, D, O, D),
      // Cluster: shared views are filtered for tenants (no other tenant's
      // job ids or names); changes are the operator's.
      row("AdminService", "ListNodes", false, A, D, D, O, D),
      row("AdminService", "GetNode", false, A, D, D, O, D),
      row("AdminService", "DrainNode", true, A, D, D, D, D),
      row("AdminService", "RemoveNode", true, A, D, D, D, D),
      row("AdminService", "GetPowerTree", false, A, D, D, D, D),
      row("AdminService", "SetPowerCap", true, A, D, D, D, D),
      row("AdminService", "ListEvents", false, A, D, D, O, D),
      row("AdminService", "WatchEvents", false, A, D, D, O, D),
      row("AdminService", "PreviewPowerCap", false, A, D, D, D, D),
      row("AdminService", "CreateTenant", true, A, D, D, D, D),
      row("AdminService", "ListTenants", false, A, A, D, O, D),
      row("AdminService", "SetTenantQuota", true, A, D, D, D, D),
      row("AdminService", "ReloadConfig", true, A, D, D, D, D),
      // Billing: finance reads everything and finalizes; metering records
      // usage; tenants read their own statements and the price catalogue.
      row("BillingService", "SetPrice", true, A, D, D, D, D),
      row("BillingService", "ListPrices", false, A, A, D, A, D),
      row("BillingService", "CreateContract", true, A, D, D, D, D),
      row("BillingService", "ListContracts", false, A, A, D, O, D),
      row("BillingService", "RecordUsage", true, A, D, A, D, D),
      row("BillingService", "GetStatement", false, A, A, D, O, D),
      row("BillingService", "FinalizePeriod", true, A, A, D, D, D),
      row("BillingService", "GetBacklog", false, A, A, D, D, D),
      row("BillingService", "GetJobBilling", false, A, A, D, O, D),
      row("BillingService", "IssueCreditNote", true, A, A, D, D, D),
      row("BillingService", "GrantCredits", true, A, A, D, D, D),
      row("BillingService", "ListCredits", false, A, A, D, O, D),
      row("BillingService", "ExportPeriod", false, A, A, D, D, D),
      // Identity and audit.
      row("AuthService", "CreateToken", true, A, D, D, D, D),
      row("AuthService", "ListTokens", false, A, D, D, D, D),
      row("AuthService", "RevokeToken", true, A, D, D, D, D),
      row("AuthService", "WhoAmI", false, A, A, A, A, A),
      row("AuthService", "ListAudit", false, A, A, D, D, D),
  };
}

const absl::flat_hash_map<std::string, const MethodRule*>& Index() {
  static const auto* index = [] {
    auto* m = new absl::flat_hash_map<std::string, const MethodRule*>();
    for (const MethodRule& r : AuthorizationTable()) (*m)[r.method] = &r;
    return m;
  }();
  return *index;
}

std::string Cell(Access a) {
  switch (a) {
    case Access::kAll:
      return "yes";
    case Access::kOwn:
      return "own";
    case Access::kDeny:
      return "-";
  }
  return "-";
}

}  // namespace

const std::vector<MethodRule>& AuthorizationTable() {
  static const auto* table = new std::vector<MethodRule>(BuildTable());
  return *table;
}

const MethodRule* FindRule(absl::string_view method) {
  auto it = Index().find(method);
  return it == Index().end() ? nullptr : it->second;
}

Access Decide(absl::string_view method, v1::Role role) {
  const MethodRule* r = FindRule(method);
  if (r == nullptr) return Access::kDeny;
  switch (role) {
    case v1::ROLE_OPERATOR:
      return r->operator_;
    case v1::ROLE_FINANCE:
      return r->finance;
    case v1::ROLE_METERING:
      return r->metering;
    case v1::ROLE_TENANT:
      return r->tenant;
    case v1::ROLE_AGENT:
      return r->agent;
    default:
      return Access::kDeny;
  }
}

std::string RoleName(v1::Role role) {
  switch (role) {
    case v1::ROLE_OPERATOR:
      return "operator";
    case v1::ROLE_FINANCE:
      return "finance";
    case v1::ROLE_METERING:
      return "metering";
    case v1::ROLE_TENANT:
      return "tenant";
    case v1::ROLE_AGENT:
      return "agent";
    default:
      return "none";
  }
}

bool ParseRole(absl::string_view name, v1::Role* role) {
  for (v1::Role r : {v1::ROLE_OPERATOR, v1::ROLE_FINANCE, v1::ROLE_METERING,
                     v1::ROLE_TENANT, v1::ROLE_AGENT}) {
    if (name == RoleName(r)) {
      *role = r;
      return true;
    }
  }
  return false;
}

std::string AuthorizationTableMarkdown() {
  std::string out =
      "| method | audited | operator | finance | metering | tenant | agent "
      "|\n|---|---|---|---|---|---|---|\n";
  for (const MethodRule& r : AuthorizationTable()) {
    absl::StrAppend(&out, "| `", r.method.substr(1), "` | ",
                    r.mutating ? "yes" : "-", " | ", Cell(r.operator_), " | ",
                    Cell(r.finance), " | ", Cell(r.metering), " | ",
                    Cell(r.tenant), " | ", Cell(r.agent), " |\n");
  }
  return out;
}

}  // namespace joule::auth
