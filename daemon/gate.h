#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "auth/audit.h"
#include "auth/authz_table.h"
#include "auth/tokens.h"
#include "daemon/worker_pool.h"
#include "grpcpp/grpcpp.h"
#include "metrics/registry.h"

namespace joule::daemon {

// Who is calling, as the Gate established it, and what the table lets it
// do with the method at hand.
struct Caller {
  v1::Role role = v1::ROLE_UNSPECIFIED;  // effective role of the call
  std::string principal;   // token id, or "node:NAME" for a certificate
  std::string name;        // the token's name
  std::string tenant;      // the tenant the call acts for (tenant role)
  std::string node;        // agent role: its node
  std::string acting_for;  // an operator acting as a tenant (--as-tenant)
  auth::Access access = auth::Access::kDeny;

  // The tenant whose data the call is limited to; empty: every tenant.
  std::string TenantScope() const {
    return access == auth::Access::kOwn ? tenant : std::string();
  }
};

// The one place where calls are authenticated and authorized (Envoy-style
// filter in front of every handler), and where mutating calls are audited.
// Credentials, in order: a bearer token in `authorization` metadata, else a
// verified client certificate (agents: CN = node name, extended key usage
// clientAuth). An operator may add `x-joule-as-tenant: T` to act as tenant
// T (audited as the operator). Then the authorization table
// (auth/authz_table.h) decides; a method missing from it is denied.
// Thread-safe: holds only pointers to thread-safe parts.
class Gate {
 public:
  // `registry` (optional) gets joule_rpc_duration_seconds{method} and
  // joule_rpc_requests_total{method,code}.
  Gate(auth::TokenBook* tokens, auth::AuditLog* audit, WorkerPool* pool,
       metrics::Registry* registry = nullptr)
      : tokens_(tokens), audit_(audit), pool_(pool), registry_(registry) {}

  // The registry given at construction (may be null).
  metrics::Registry* registry() const { return registry_; }

  // UNAUTHENTICATED without valid credentials; PERMISSION_DENIED (naming
  // the method and the role) when the table denies the call.
  absl::StatusOr<Caller> Admit(const grpc::CallbackServerContext* ctx,
                               absl::string_view method) const;

  using Work = std::function<absl::Status(const Caller&)>;
  // Admits, runs `work` inline and finishes the call (for reads that do not
  // block).
  grpc::ServerUnaryReactor* Now(grpc::CallbackServerContext* ctx,
                                absl::string_view method, const Work& work);
  // Admits, then runs `work` on the worker pool (it may block). A mutating
  // method is audited: `target` names what the call acts on; the record
  // goes into the call's first synced write (auth::AuditScope), or on its
  // own for a call that was denied, failed or changed nothing.
  grpc::ServerUnaryReactor* Later(grpc::CallbackServerContext* ctx,
                                  absl::string_view method, std::string target,
                                  Work work);

  auth::AuditLog* audit() { return audit_; }

 private:
  v1::AuditRecord RecordFor(const grpc::CallbackServerContext* ctx,
                            absl::string_view method, const std::string& target,
                            const Caller* caller) const;

  // Counts and times one finished call.
  void Observe(absl::string_view method, absl::Time start,
               const absl::Status& status) const;

  auth::TokenBook* const tokens_;
  auth::AuditLog* const audit_;
  WorkerPool* const pool_;
  metrics::Registry* const registry_;
};

// The node name of a verified agent certificate in `ctx` (its CN, which
// must have extended key usage clientAuth), or an error saying why not.
absl::StatusOr<std::string> CertificateNode(
    const grpc::CallbackServerContext* ctx);

}  // namespace joule::daemon
