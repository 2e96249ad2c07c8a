#pragma once

#include <memory>

#include "daemon/cluster_manager.h"
#include "daemon/event_feed.h"
#include "daemon/gate.h"
#include "joule/v1/joule.grpc.pb.h"

namespace joule::daemon {

// Thin gRPC adapters (layer 3): each handler passes its method to the Gate
// (authentication, the authorization table, audit), calls the
// ClusterManager with the caller's tenant scope, and the Gate converts the
// absl::Status in one place. No logic of their own. All use the callback
// API; thread-safe because ClusterManager and Gate are.

class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  AgentServiceImpl(ClusterManager* manager, Gate* gate)
      : manager_(manager), gate_(gate) {}
  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* ctx,
                                     const v1::RegisterRequest* req,
                                     v1::RegisterResponse* resp) override;
  grpc::ServerBidiReactor<v1::AgentMessage, v1::DaemonMessage>* Connect(
      grpc::CallbackServerContext* ctx) override;

 private:
  ClusterManager* const manager_;
  Gate* const gate_;
};

class JobServiceImpl final : public v1::JobService::CallbackService {
 public:
  JobServiceImpl(ClusterManager* manager, Gate* gate)
      : manager_(manager), gate_(gate) {}
  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* ctx,
                                      const v1::SubmitJobRequest* req,
                                      v1::SubmitJobResponse* resp) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx,
                                   const v1::GetJobRequest* req,
                                   v1::Job* resp) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* req,
                                     v1::ListJobsResponse* resp) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx,
                                      const v1::CancelJobRequest* req,
                                      v1::Job* resp) override;
  grpc::ServerUnaryReactor* GetJobLogs(grpc::CallbackServerContext* ctx,
                                       const v1::GetJobLogsRequest* req,
                                       v1::GetJobLogsResponse* resp) override;
  grpc::ServerUnaryReactor* HoldJob(grpc::CallbackServerContext* ctx,
                                    const v1::HoldJobRequest* req,
                                    v1::Job* resp) override;
  grpc::ServerUnaryReactor* ReleaseJob(grpc::CallbackServerContext* ctx,
                                       const v1::ReleaseJobRequest* req,
                                       v1::Job* resp) override;

 private:
  ClusterManager* const manager_;
  Gate* const gate_;
};

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  AdminServiceImpl(ClusterManager* manager, Gate* gate)
      : manager_(manager), gate_(gate) {}
  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* ctx,
                                      const v1::ListNodesRequest* req,
                                      v1::ListNodesResponse* resp) override;
  grpc::ServerUnaryReactor* GetNode(grpc::CallbackServerContext* ctx,
                                    const v1::GetNodeRequest* req,
                                    v1::Node* resp) override;
  grpc::ServerUnaryReactor* DrainNode(grpc::CallbackServerContext* ctx,
                                      const v1::DrainNodeRequest* req,
                                      v1::Node* resp) override;
  grpc::ServerUnaryReactor* RemoveNode(grpc::CallbackServerContext* ctx,
                                       const v1::RemoveNodeRequest* req,
                                       v1::RemoveNodeResponse* resp) override;
  grpc::ServerUnaryReactor* SetTenantQuota(grpc::CallbackServerContext* ctx,
                                           const v1::SetTenantQuotaRequest* req,
                                           v1::Tenant* resp) override;
  grpc::ServerUnaryReactor* GetPowerTree(
      grpc::CallbackServerContext* ctx, const v1::GetPowerTreeRequest* req,
      v1::GetPowerTreeResponse* resp) override;
  grpc::ServerUnaryReactor* SetPowerCap(grpc::CallbackServerContext* ctx,
                                        const v1::SetPowerCapRequest* req,
                                        v1::PowerDomain* resp) override;
  grpc::ServerUnaryReactor* ListEvents(grpc::CallbackServerContext* ctx,
                                       const v1::ListEventsRequest* req,
                                       v1::ListEventsResponse* resp) override;
  grpc::ServerUnaryReactor* CreateTenant(grpc::CallbackServerContext* ctx,
                                         const v1::CreateTenantRequest* req,
                                         v1::Tenant* resp) override;
  grpc::ServerUnaryReactor* ListTenants(grpc::CallbackServerContext* ctx,
                                        const v1::ListTenantsRequest* req,
                                        v1::ListTenantsResponse* resp) override;
  // Defined in daemon/config_reload.cc; runs `reload` (set before serving;
  // unset: FAILED_PRECONDITION).
  grpc::ServerUnaryReactor* ReloadConfig(
      grpc::CallbackServerContext* ctx, const v1::ReloadConfigRequest* req,
      v1::ReloadConfigResponse* resp) override;
  void set_reload(
      std::function<absl::StatusOr<v1::ReloadConfigResponse>()> reload) {
    reload_ = std::move(reload);
  }
  // In daemon/watch_service.cc: a stream fed by `feed` (set before serving;
  // without one, UNIMPLEMENTED).
  grpc::ServerWriteReactor<v1::WatchEventsResponse>* WatchEvents(
      grpc::CallbackServerContext* ctx,
      const v1::WatchEventsRequest* req) override;
  void set_feed(std::shared_ptr<EventFeed> feed) { feed_ = std::move(feed); }
  // In daemon/watch_service.cc too.
  grpc::ServerUnaryReactor* PreviewPowerCap(grpc::CallbackServerContext* ctx,
                                            const v1::SetPowerCapRequest* req,
                                            v1::PowerCapPreview* resp) override;

 private:
  ClusterManager* const manager_;
  Gate* const gate_;
  std::function<absl::StatusOr<v1::ReloadConfigResponse>()> reload_;
  std::shared_ptr<EventFeed> feed_;
};

}  // namespace joule::daemon
