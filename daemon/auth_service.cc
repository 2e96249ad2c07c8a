#include "daemon/auth_service.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace joule::daemon {
namespace {

std::string M(absl::string_view method) {
  return absl::StrCat("/joule.v1.AuthService/", method);
}

}  // namespace

grpc::ServerUnaryReactor* AuthServiceImpl::CreateToken(
    grpc::CallbackServerContext* ctx, const v1::CreateTokenRequest* req,
    v1::CreateTokenResponse* resp) {
  const std::string target =
      absl::StrCat(auth::RoleName(req->role()),
                   req->tenant().empty() ? "" : " tenant=", req->tenant(),
                   req->node().empty() ? "" : " node=", req->node());
  return gate_->Later(ctx, M("CreateToken"), target,
                      [this, req, resp](const Caller& c) -> absl::Status {
                        ASSIGN_OR_RETURN(
                            *resp,
                            tokens_->Create(*req, c.principal, tenant_exists_));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* AuthServiceImpl::ListTokens(
    grpc::CallbackServerContext* ctx, const v1::ListTokensRequest* req,
    v1::ListTokensResponse* resp) {
  return gate_->Now(ctx, M("ListTokens"),
                    [this, req, resp](const Caller&) -> absl::Status {
                      for (auto& t : tokens_->List(req->include_revoked())) {
                        *resp->add_tokens() = std::move(t);
                      }
                      return absl::OkStatus();
                    });
}

grpc::ServerUnaryReactor* AuthServiceImpl::RevokeToken(
    grpc::CallbackServerContext* ctx, const v1::RevokeTokenRequest* req,
    v1::Token* resp) {
  return gate_->Later(ctx, M("RevokeToken"), req->id(),
                      [this, req, resp](const Caller&) -> absl::Status {
                        ASSIGN_OR_RETURN(*resp, tokens_->Revoke(req->id()));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* AuthServiceImpl::WhoAmI(
    grpc::CallbackServerContext* ctx, const v1::WhoAmIRequest* req,
    v1::WhoAmIResponse* resp) {
  return gate_->Now(ctx, M("WhoAmI"), [resp](const Caller& c) {
    resp->set_principal(c.principal);
    resp->set_name(c.name);
    resp->set_role(c.role);
    resp->set_tenant(c.tenant);
    resp->set_node(c.node);
    resp->set_acting_for(c.acting_for);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AuthServiceImpl::ListAudit(
    grpc::CallbackServerContext* ctx, const v1::ListAuditRequest* req,
    v1::ListAuditResponse* resp) {
  return gate_->Later(ctx, M("ListAudit"), "",
                      [this, req, resp](const Caller&) -> absl::Status {
                        ASSIGN_OR_RETURN(auto records,
                                         gate_->audit()->List(*req));
                        for (auto& r : records) {
                          *resp->add_records() = std::move(r);
                        }
                        return absl::OkStatus();
                      });
}

}  // namespace joule::daemon
