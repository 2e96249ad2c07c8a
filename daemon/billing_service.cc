#include "daemon/billing_service.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "daemon/services.h"

namespace joule::daemon {

// ------------------------------------------------------------ adapter ----

namespace {

std::string M(absl::string_view method) {
  return absl::StrCat("/joule.v1.BillingService/", method);
}

}  // namespace

grpc::ServerUnaryReactor* BillingServiceImpl::SetPrice(
    grpc::CallbackServerContext* ctx, const v1::SetPriceRequest* req,
    v1::Price* resp) {
  return gate_->Later(ctx, M("SetPrice"), req->price().ShortDebugString(),
                      [this, req, resp](const Caller&) -> absl::Status {
                        ASSIGN_OR_RETURN(*resp, ledger_->SetPrice(req->price()));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* BillingServiceImpl::ListPrices(
    grpc::CallbackServerContext* ctx, const v1::ListPricesRequest* req,
    v1::ListPricesResponse* resp) {
  return gate_->Now(ctx, M("ListPrices"),
                    [this, req, resp](const Caller&) -> absl::Status {
                      for (auto& p :
                           ledger_->ListPrices(req->include_history())) {
                        *resp->add_prices() = std::move(p);
                      }
                      return absl::OkStatus();
                    });
}

grpc::ServerUnaryReactor* BillingServiceImpl::CreateContract(
    grpc::CallbackServerContext* ctx, const v1::CreateContractRequest* req,
    v1::Contract* resp) {
  return gate_->Later(ctx, M("CreateContract"), req->contract().tenant(),
                      [this, req, resp](const Caller&) -> absl::Status {
                        ASSIGN_OR_RETURN(
                            *resp, ledger_->CreateContract(req->contract()));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* BillingServiceImpl::ListContracts(
    grpc::CallbackServerContext* ctx, const v1::ListContractsRequest* req,
    v1::ListContractsResponse* resp) {
  return gate_->Now(
      ctx, M("ListContracts"), [this, req, resp](const Caller& c) {
        const std::string only = c.TenantScope();
        if (!only.empty() && !req->tenant().empty() && req->tenant() != only) {
          return absl::PermissionDeniedError(
              "tenant: a tenant may list only its own contracts");
        }
        for (auto& k : ledger_->ListContracts(only.empty() ? req->tenant()
                                                           : only)) {
          *resp->add_contracts() = std::move(k);
        }
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* BillingServiceImpl::RecordUsage(
    grpc::CallbackServerContext* ctx, const v1::RecordUsageRequest* req,
    v1::RecordUsageResponse* resp) {
  const std::string target =
      req->events_size() == 0
          ? ""
          : absl::StrCat(req->events(0).tenant(), " (", req->events_size(),
                         " events)");
  return gate_->Later(ctx, M("RecordUsage"), target,
                      [this, req, resp](const Caller&) -> absl::Status {
                        const std::vector<v1::UsageEvent> events(
                            req->events().begin(), req->events().end());
                        ASSIGN_OR_RETURN(*resp, ledger_->RecordUsage(events));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* BillingServiceImpl::GetStatement(
    grpc::CallbackServerContext* ctx, const v1::GetStatementRequest* req,
    v1::Statement* resp) {
  return gate_->Now(
      ctx, M("GetStatement"), [this, req, resp](const Caller& c) {
        const std::string only = c.TenantScope();
        if (!only.empty() && !req->tenant().empty() && req->tenant() != only) {
          return absl::PermissionDeniedError(
              "tenant: a tenant may read only its own statements");
        }
        // A tenant's own statement when it names none.
        auto r = ledger_->GetStatement(only.empty() ? req->tenant() : only,
                                       req->period());
        if (r.ok()) *resp = std::move(*r);
        return r.status();
      });
}

grpc::ServerUnaryReactor* BillingServiceImpl::FinalizePeriod(
    grpc::CallbackServerContext* ctx, const v1::FinalizePeriodRequest* req,
    v1::FinalizePeriodResponse* resp) {
  return gate_->Later(ctx, M("FinalizePeriod"), req->period(),
                      [this, req, resp](const Caller&) -> absl::Status {
                        ASSIGN_OR_RETURN(*resp,
                                         ledger_->FinalizePeriod(req->period()));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* BillingServiceImpl::GetBacklog(
    grpc::CallbackServerContext* ctx, const v1::GetBacklogRequest* req,
    v1::GetBacklogResponse* resp) {
  return gate_->Now(ctx, M("GetBacklog"),
                    [this, req, resp](const Caller&) -> absl::Status {
                      const absl::Time as_of = req->has_as_of()
                                                   ? FromProtoTime(req->as_of())
                                                   : clock_->Now();
                      ASSIGN_OR_RETURN(*resp, ledger_->Backlog(as_of));
                      return absl::OkStatus();
                    });
}

// -------------------------------------------------------------- wiring ----

BillingParts::BillingParts(storage::Store* store, const Clock* clock,
                           Gate* gate)
    : ledger_(std::make_unique<billing::Ledger>(store, clock, &directory_)) {
  sink_.ledger = ledger_.get();
  service_ = std::make_unique<BillingServiceImpl>(ledger_.get(), clock, gate);
}

bool BillingParts::Directory::Exists(std::string_view tenant) const {
  ClusterManager* m = manager.load();
  return m != nullptr &&
         m->TenantExists(absl::string_view(tenant.data(), tenant.size()));
}

ContractedGpusFn BillingParts::contracted_gpus_fn() {
  billing::Ledger* ledger = ledger_.get();
  return [ledger](absl::Time t) { return ledger->ContractedGpus(t); };
}

billing::JobUsage BillingParts::ToUsage(const v1::Job& job,
                                        const v1::JobAttempt& attempt) {
  billing::JobUsage u;
  u.tenant = job.spec().tenant();
  u.job_id = job.id();
  u.attempt = attempt.attempt();
  u.gpu_model = attempt.gpu_model();
  u.service_class = attempt.billed_class();
  for (const auto& al : attempt.allocations()) u.gpus += al.gpu_indices_size();
  u.start = FromProtoTime(attempt.start_time());
  u.end = FromProtoTime(attempt.end_time());
  u.energy_mj = attempt.energy_mj();
  return u;
}

void BillingParts::Sink::AddAttempt(const v1::Job& job,
                                    const v1::JobAttempt& attempt,
                                    storage::WriteBatch* batch) {
  ledger->AddJobUsage(ToUsage(job, attempt), batch);
}

void BillingParts::Sink::Committed(const v1::Job& job,
                                   const v1::JobAttempt& attempt) {
  ledger->ApplyJobUsage(ToUsage(job, attempt));
}

}  // namespace joule::daemon
