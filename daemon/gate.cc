#include "daemon/gate.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "daemon/ops_events.h"
#include "daemon/status_convert.h"

namespace joule::daemon {
namespace {

std::string Metadata(const grpc::CallbackServerContext* ctx,
                     absl::string_view key) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(std::string(key));
  if (it == md.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

// True when the PEM certificate may authenticate a TLS client.
bool ClientPurpose(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) return false;
  const bool ok = X509_check_purpose(cert, X509_PURPOSE_SSL_CLIENT, 0) == 1 &&
                  (X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) != 0;
  X509_free(cert);
  return ok;
}

}  // namespace

absl::StatusOr<std::string> CertificateNode(
    const grpc::CallbackServerContext* ctx) {
  auto auth = ctx->auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) {
    return absl::UnauthenticatedError("no client certificate");
  }
  const auto cns = auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME);
  const auto pems = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (cns.size() != 1 || pems.size() != 1) {
    return absl::UnauthenticatedError(
        "client certificate: want exactly one common name (the node name)");
  }
  if (!ClientPurpose(std::string(pems[0].data(), pems[0].size()))) {
    return absl::UnauthenticatedError(
        "client certificate: not an agent certificate (extended key usage "
        "clientAuth required)");
  }
  return std::string(cns[0].data(), cns[0].size());
}

absl::StatusOr<Caller> Gate::Admit(const grpc::CallbackServerContext* ctx,
                                   absl::string_view method) const {
  Caller c;
  const std::string authz = Metadata(ctx, "authorization");
  if (!authz.empty()) {
    if (!absl::StartsWith(authz, "Bearer ")) {
      return absl::UnauthenticatedError(
          "authorization: want \"Bearer <token>\"");
    }
    ASSIGN_OR_RETURN(v1::Token t, tokens_->Verify(authz.substr(7)));
    c.role = t.role();
    c.principal = t.id();
    c.name = t.name();
    c.tenant = t.tenant();
    c.node = t.node();
  } else {
    auto node = CertificateNode(ctx);
    if (!node.ok()) {
      return absl::UnauthenticatedError(absl::StrCat(
          "no valid credentials (", node.status().message(),
          "): send a bearer token (joulectl --token, JOULE_TOKEN) or an agent "
          "certificate"));
    }
    c.role = v1::ROLE_AGENT;
    c.node = *node;
    c.principal = absl::StrCat("node:", *node);
    c.name = *node;
  }
  const std::string as_tenant = Metadata(ctx, "x-joule-as-tenant");
  if (!as_tenant.empty()) {
    if (c.role != v1::ROLE_OPERATOR) {
      return absl::PermissionDeniedError(absl::StrCat(
          "x-joule-as-tenant: only an operator may act as a tenant (caller "
          "role is ",
          auth::RoleName(c.role), ")"));
    }
    c.role = v1::ROLE_TENANT;
    c.tenant = as_tenant;
    c.acting_for = as_tenant;
  }
  c.access = auth::Decide(method, c.role);
  if (c.access == auth::Access::kDeny) {
    return absl::PermissionDeniedError(
        absl::StrCat(method.substr(1), ": role ", auth::RoleName(c.role),
                     c.acting_for.empty() ? "" : " (operator as tenant)",
                     " may not call it"));
  }
  return c;
}

v1::AuditRecord Gate::RecordFor(const grpc::CallbackServerContext* ctx,
                                absl::string_view method,
                                const std::string& target,
                                const Caller* caller) const {
  v1::AuditRecord rec;
  rec.set_method(std::string(method));
  rec.set_target(target.substr(0, 256));
  rec.set_peer(ctx->peer());
  if (caller != nullptr) {
    rec.set_principal(caller->principal);
    rec.set_principal_name(caller->name);
    rec.set_role(caller->acting_for.empty() ? caller->role : v1::ROLE_OPERATOR);
    rec.set_acting_for(caller->acting_for);
  } else {
    // Denied before a principal was known: name what was presented.
    std::string id, secret;
    const std::string authz = Metadata(ctx, "authorization");
    if (auth::SplitBearer(absl::StripPrefix(authz, "Bearer "), &id, &secret)) {
      rec.set_principal(id);
    } else if (auto node = CertificateNode(ctx); node.ok()) {
      rec.set_principal(absl::StrCat("node:", *node));
    } else {
      rec.set_principal("anonymous");
    }
  }
  return rec;
}

void Gate::Observe(absl::string_view method, absl::Time start,
                   const absl::Status& status) const {
  if (registry_ == nullptr) return;
  const std::string m(method.substr(1));
  registry_
      ->GetHistogram("joule_rpc_duration_seconds",
                     "Time to answer a gRPC call, by method.", {{"method", m}})
      ->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  registry_
      ->GetCounter(
          "joule_rpc_requests_total",
          "gRPC calls answered, by method and status code.",
          {{"method", m}, {"code", absl::StatusCodeToString(status.code())}})
      ->Inc();
  ObserveOps(m, status, registry_);  // daemon/ops_events.h
}

grpc::ServerUnaryReactor* Gate::Now(grpc::CallbackServerContext* ctx,
                                    absl::string_view method,
                                    const Work& work) {
  const absl::Time start = absl::Now();
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto caller = Admit(ctx, method);
  const absl::Status s = caller.ok() ? work(*caller) : caller.status();
  Observe(method, start, s);
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

grpc::ServerUnaryReactor* Gate::Later(grpc::CallbackServerContext* ctx,
                                      absl::string_view method,
                                      std::string target, Work work) {
  const absl::Time start = absl::Now();
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const auth::MethodRule* rule = auth::FindRule(method);
  const bool audited = rule != nullptr && rule->mutating;
  auto caller = Admit(ctx, method);
  // A caller that presented no credential at all is not audited (it has no
  // principal, and would let anyone fill the log); every other refusal is.
  v1::AuditRecord rec =
      RecordFor(ctx, method, target, caller.ok() ? &*caller : nullptr);
  pool_->Post([this, reactor, audited, start, method = std::string(method),
               caller = std::move(caller), rec = std::move(rec),
               work = std::move(work)]() mutable {
    if (!caller.ok()) {
      if (audited && rec.principal() != "anonymous") {
        rec.set_outcome(auth::OutcomeText(caller.status()));
        audit_->Write(rec).IgnoreError();
      }
      Observe(method, start, caller.status());
      reactor->Finish(ToGrpcStatus(caller.status()));
      return;
    }
    absl::Status s;
    if (audited) {
      auth::AuditScope scope(audit_, std::move(rec));
      s = work(*caller);
      scope.SetOutcome(s);
    } else {
      s = work(*caller);
    }
    Observe(method, start, s);
    reactor->Finish(ToGrpcStatus(s));
  });
  return reactor;
}

}  // namespace joule::daemon
