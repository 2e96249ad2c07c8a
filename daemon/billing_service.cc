#include "daemon/billing_service.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "daemon/ops_events.h"
#include "daemon/paging.h"
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
  return gate_->Now(
      ctx, M("ListPrices"), [this, req, resp](const Caller&) -> absl::Status {
        // In version order; the token is the last version.
        std::vector<v1::Price> prices =
            ledger_->ListPrices(req->include_history());
        ASSIGN_OR_RETURN(const std::string next,
                         Paginate(&prices, req->page_size(), req->page_token(),
                                  [](const v1::Price& p) {
                                    return absl::StrFormat("%020u",
                                                           p.version());
                                  }));
        resp->set_next_page_token(next);
        for (auto& p : prices) *resp->add_prices() = std::move(p);
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
        // In id order; the token is the last id.
        std::vector<v1::Contract> contracts =
            ledger_->ListContracts(only.empty() ? req->tenant() : only);
        ASSIGN_OR_RETURN(
            const std::string next,
            Paginate(&contracts, req->page_size(), req->page_token(),
                     [](const v1::Contract& k) { return k.id(); }));
        resp->set_next_page_token(next);
        for (auto& k : contracts) *resp->add_contracts() = std::move(k);
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
  return gate_->Later(
      ctx, M("RecordUsage"), target,
      [this, req, resp](const Caller& c) -> absl::Status {
        // Moved out of the request (ours until the call ends, and read no
        // more) instead of copied.
        std::vector<v1::UsageEvent> events;
        events.reserve(req->events_size());
        for (v1::UsageEvent& e :
             *const_cast<v1::RecordUsageRequest*>(req)->mutable_events()) {
          events.push_back(std::move(e));
        }
        // Idempotency keys are scoped per (tenant, source principal): no
        // other principal can take a feed's key.
        auto r = ledger_->RecordUsage(events, c.principal);
        CountUsage(gate_->registry(), r.status(),
                   r.ok() ? *r : v1::RecordUsageResponse(), events.size());
        ASSIGN_OR_RETURN(*resp, std::move(r));
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

grpc::ServerUnaryReactor* BillingServiceImpl::GetJobBilling(
    grpc::CallbackServerContext* ctx, const v1::GetJobBillingRequest* req,
    v1::GetJobBillingResponse* resp) {
  return gate_->Later(ctx, M("GetJobBilling"), req->job_id(),
                      [this, req, resp](const Caller& c) -> absl::Status {
                        ASSIGN_OR_RETURN(*resp, ledger_->JobBilling(
                                                    req->job_id(),
                                                    c.TenantScope()));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* BillingServiceImpl::IssueCreditNote(
    grpc::CallbackServerContext* ctx, const v1::IssueCreditNoteRequest* req,
    v1::CreditNote* resp) {
  return gate_->Later(ctx, M("IssueCreditNote"),
                      absl::StrCat(req->tenant(), " ", req->statement_number()),
                      [this, req, resp](const Caller&) -> absl::Status {
                        ASSIGN_OR_RETURN(*resp, ledger_->IssueCreditNote(*req));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* BillingServiceImpl::GrantCredits(
    grpc::CallbackServerContext* ctx, const v1::GrantCreditsRequest* req,
    v1::CreditGrant* resp) {
  return gate_->Later(ctx, M("GrantCredits"), req->tenant(),
                      [this, req, resp](const Caller&) -> absl::Status {
                        ASSIGN_OR_RETURN(*resp, ledger_->GrantCredits(*req));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* BillingServiceImpl::ListCredits(
    grpc::CallbackServerContext* ctx, const v1::ListCreditsRequest* req,
    v1::ListCreditsResponse* resp) {
  return gate_->Now(
      ctx, M("ListCredits"), [this, req, resp](const Caller& c) {
        const std::string only = c.TenantScope();
        if (!only.empty() && !req->tenant().empty() && req->tenant() != only) {
          return absl::PermissionDeniedError(
              "tenant: a tenant may list only its own credits");
        }
        auto r = ledger_->ListCredits(only.empty() ? req->tenant() : only);
        if (r.ok()) *resp = std::move(*r);
        return r.status();
      });
}

grpc::ServerUnaryReactor* BillingServiceImpl::ExportPeriod(
    grpc::CallbackServerContext* ctx, const v1::ExportPeriodRequest* req,
    v1::ExportPeriodResponse* resp) {
  return gate_->Later(ctx, M("ExportPeriod"), req->period(),
                      [this, req, resp](const Caller&) -> absl::Status {
                        ASSIGN_OR_RETURN(*resp,
                                         ledger_->ExportPeriod(req->period()));
                        return absl::OkStatus();
                      });
}

// -------------------------------------------------------------- wiring ----

BillingParts::BillingParts(storage::Store* store, const Clock* clock,
                           Gate* gate)
    : clock_(clock),
      ledger_(std::make_unique<billing::Ledger>(store, clock, &directory_)) {
  sink_.ledger = ledger_.get();
  service_ = std::make_unique<BillingServiceImpl>(ledger_.get(), clock, gate);
}

void BillingParts::set_tenants(ClusterManager* manager) {
  directory_.manager = manager;
  const Clock* clock = clock_;
  ledger_->SetRunningAttempts([manager, clock]() {
    std::vector<billing::JobUsage> out;
    v1::ListJobsRequest req;
    req.set_state(v1::JOB_STATE_RUNNING);
    absl::StatusOr<std::vector<v1::Job>> jobs = manager->ListJobs(req, "");
    if (!jobs.ok()) return out;
    const absl::Time now = clock->Now();
    for (const v1::Job& job : *jobs) {
      if (job.attempts().empty()) continue;
      const v1::JobAttempt& a = job.attempts(job.attempts_size() - 1);
      if (!a.has_start_time() || a.has_end_time()) continue;
      billing::JobUsage u = ToUsage(job, a);
      u.end = std::max(now, u.start);
      u.energy_mj = 0;
      out.push_back(std::move(u));
    }
    return out;
  });
}

void BillingParts::Configure(const config::ClusterConfig& config,
                             ClusterManagerOptions* mo) {
  std::vector<std::string> models;
  for (const auto& m : config.gpu_models) models.push_back(m.name);
  ledger_->SetGpuCatalogue(std::move(models));
  if (config.allow_unpriced) return;
  billing::Ledger* ledger = ledger_.get();
  mo->check_priced = [ledger](const v1::JobSpec& spec, absl::Time now) {
    v1::ServiceClass cls = spec.service_class() == v1::SERVICE_CLASS_UNSPECIFIED
                               ? v1::SERVICE_CLASS_ON_DEMAND
                               : spec.service_class();
    return ledger->CheckPriced(spec.tenant(), spec.gpu_model(), cls, now);
  };
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
