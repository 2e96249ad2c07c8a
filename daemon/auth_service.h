#pragma once

#include <functional>

#include "auth/tokens.h"
#include "daemon/gate.h"
#include "joule/v1/auth.grpc.pb.h"

namespace joule::daemon {

// Thin gRPC adapter for tokens, WhoAmI and the audit log (callback API).
// Thread-safe because TokenBook, AuditLog and Gate are.
class AuthServiceImpl final : public v1::AuthService::CallbackService {
 public:
  AuthServiceImpl(auth::TokenBook* tokens, Gate* gate,
                  std::function<bool(absl::string_view)> tenant_exists)
      : tokens_(tokens),
        gate_(gate),
        tenant_exists_(std::move(tenant_exists)) {}
  grpc::ServerUnaryReactor* CreateToken(grpc::CallbackServerContext* ctx,
                                        const v1::CreateTokenRequest* req,
                                        v1::CreateTokenResponse* resp) override;
  grpc::ServerUnaryReactor* ListTokens(grpc::CallbackServerContext* ctx,
                                       const v1::ListTokensRequest* req,
                                       v1::ListTokensResponse* resp) override;
  grpc::ServerUnaryReactor* RevokeToken(grpc::CallbackServerContext* ctx,
                                        const v1::RevokeTokenRequest* req,
                                        v1::Token* resp) override;
  grpc::ServerUnaryReactor* WhoAmI(grpc::CallbackServerContext* ctx,
                                   const v1::WhoAmIRequest* req,
                                   v1::WhoAmIResponse* resp) override;
  grpc::ServerUnaryReactor* ListAudit(grpc::CallbackServerContext* ctx,
                                      const v1::ListAuditRequest* req,
                                      v1::ListAuditResponse* resp) override;

 private:
  auth::TokenBook* const tokens_;
  Gate* const gate_;
  const std::function<bool(absl::string_view)> tenant_exists_;
};

}  // namespace joule::daemon
