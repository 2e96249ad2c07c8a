#pragma once

#include <atomic>
#include <memory>

#include "absl/strings/string_view.h"
#include "billing/ledger.h"
#include "daemon/cluster_manager.h"
#include "daemon/gate.h"
#include "joule/v1/joule.grpc.pb.h"

namespace joule::daemon {

// Thin gRPC adapter over billing::Ledger (callback API). Who may call what
// is the Gate's table (auth/authz_table.cc); tenants are scoped to their
// own statements and contracts here.
class BillingServiceImpl final : public v1::BillingService::CallbackService {
 public:
  BillingServiceImpl(billing::Ledger* ledger, const Clock* clock, Gate* gate)
      : ledger_(ledger), clock_(clock), gate_(gate) {}
  grpc::ServerUnaryReactor* SetPrice(grpc::CallbackServerContext* ctx,
                                     const v1::SetPriceRequest* req,
                                     v1::Price* resp) override;
  grpc::ServerUnaryReactor* ListPrices(grpc::CallbackServerContext* ctx,
                                       const v1::ListPricesRequest* req,
                                       v1::ListPricesResponse* resp) override;
  grpc::ServerUnaryReactor* CreateContract(grpc::CallbackServerContext* ctx,
                                           const v1::CreateContractRequest* req,
                                           v1::Contract* resp) override;
  grpc::ServerUnaryReactor* ListContracts(
      grpc::CallbackServerContext* ctx, const v1::ListContractsRequest* req,
      v1::ListContractsResponse* resp) override;
  grpc::ServerUnaryReactor* RecordUsage(grpc::CallbackServerContext* ctx,
                                        const v1::RecordUsageRequest* req,
                                        v1::RecordUsageResponse* resp) override;
  grpc::ServerUnaryReactor* GetStatement(grpc::CallbackServerContext* ctx,
                                         const v1::GetStatementRequest* req,
                                         v1::Statement* resp) override;
  grpc::ServerUnaryReactor* FinalizePeriod(
      grpc::CallbackServerContext* ctx, const v1::FinalizePeriodRequest* req,
      v1::FinalizePeriodResponse* resp) override;
  grpc::ServerUnaryReactor* GetBacklog(grpc::CallbackServerContext* ctx,
                                       const v1::GetBacklogRequest* req,
                                       v1::GetBacklogResponse* resp) override;
  grpc::ServerUnaryReactor* GetJobBilling(
      grpc::CallbackServerContext* ctx, const v1::GetJobBillingRequest* req,
      v1::GetJobBillingResponse* resp) override;
  grpc::ServerUnaryReactor* IssueCreditNote(
      grpc::CallbackServerContext* ctx, const v1::IssueCreditNoteRequest* req,
      v1::CreditNote* resp) override;
  grpc::ServerUnaryReactor* GrantCredits(grpc::CallbackServerContext* ctx,
                                         const v1::GrantCreditsRequest* req,
                                         v1::CreditGrant* resp) override;
  grpc::ServerUnaryReactor* ListCredits(grpc::CallbackServerContext* ctx,
                                        const v1::ListCreditsRequest* req,
                                        v1::ListCreditsResponse* resp) override;
  grpc::ServerUnaryReactor* ExportPeriod(
      grpc::CallbackServerContext* ctx, const v1::ExportPeriodRequest* req,
      v1::ExportPeriodResponse* resp) override;

 private:
  billing::Ledger* const ledger_;
  const Clock* const clock_;
  Gate* const gate_;
};

// Billing as the daemon wires it: the ledger, its gRPC adapter, the sink
// that turns ended job attempts into GPU usage, and the tenant directory
// (bound to the ClusterManager after both exist). Owns all of them.
class BillingParts {
 public:
  BillingParts(storage::Store* store, const Clock* clock, Gate* gate);
  // Binds the tenant directory and the running attempts (accrued on open
  // statements) to the manager.
  void set_tenants(ClusterManager* manager);
  // Catalogue of GPU models for prices and contracts, and (unless the
  // config allows unpriced use) the priced-at-submit check in `mo`.
  void Configure(const config::ClusterConfig& config,
                 ClusterManagerOptions* mo);
  absl::Status Load() { return ledger_->Load(); }
  AttemptSink* attempt_sink() { return &sink_; }
  ContractedGpusFn contracted_gpus_fn();
  grpc::Service* service() { return service_.get(); }
  billing::Ledger* ledger() { return ledger_.get(); }

  // The usage record of an ended attempt (exposed for tests).
  static billing::JobUsage ToUsage(const v1::Job& job,
                                   const v1::JobAttempt& attempt);

 private:
  struct Directory final : billing::TenantDirectory {
    std::atomic<ClusterManager*> manager{nullptr};
    bool Exists(std::string_view tenant) const override;
  };
  struct Sink final : AttemptSink {
    billing::Ledger* ledger = nullptr;
    void AddAttempt(const v1::Job& job, const v1::JobAttempt& attempt,
                    storage::WriteBatch* batch) override;
    void Committed(const v1::Job& job, const v1::JobAttempt& attempt) override;
  };
  const Clock* const clock_;
  Directory directory_;
  std::unique_ptr<billing::Ledger> ledger_;
  Sink sink_;
  std::unique_ptr<BillingServiceImpl> service_;
};

}  // namespace joule::daemon
