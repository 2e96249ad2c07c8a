#pragma once

#include <memory>

#include "daemon/cluster_manager.h"
#include "daemon/worker_pool.h"
#include "joule/v1/joule.grpc.pb.h"

namespace joule::daemon {

// Thin gRPC adapters (layer 3): decode the caller, call the ClusterManager,
// convert its absl::Status with ToGrpcStatus. No logic of their own. All use
// the callback API; thread-safe because ClusterManager is.

class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  AgentServiceImpl(ClusterManager* manager, WorkerPool* pool)
      : manager_(manager), pool_(pool) {}
  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* ctx,
                                     const v1::RegisterRequest* req,
                                     v1::RegisterResponse* resp) override;
  grpc::ServerBidiReactor<v1::AgentMessage, v1::DaemonMessage>* Connect(
      grpc::CallbackServerContext* ctx) override;

 private:
  ClusterManager* const manager_;
  WorkerPool* const pool_;
};

class JobServiceImpl final : public v1::JobService::CallbackService {
 public:
  JobServiceImpl(ClusterManager* manager, WorkerPool* pool)
      : manager_(manager), pool_(pool) {}
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

 private:
  ClusterManager* const manager_;
  WorkerPool* const pool_;
};

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  AdminServiceImpl(ClusterManager* manager, WorkerPool* pool)
      : manager_(manager), pool_(pool) {}
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

 private:
  ClusterManager* const manager_;
  WorkerPool* const pool_;
};

// The tenant a call acts as (metadata x-joule-tenant); empty = operator.
std::string CallerTenant(const grpc::CallbackServerContext* ctx);
// Finishes a unary call with `status` (converted in one place).
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* ctx,
                                const absl::Status& status);
// Runs `work` on `pool` (it may block: disk syncs, agents) and finishes the
// call with its status from there.
grpc::ServerUnaryReactor* ReplyLater(grpc::CallbackServerContext* ctx,
                                     WorkerPool* pool,
                                     std::function<absl::Status()> work);
// Operator-only calls: PERMISSION_DENIED for a tenant caller.
absl::Status RequireOperator(const grpc::CallbackServerContext* ctx);

}  // namespace joule::daemon
