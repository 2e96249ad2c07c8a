#include "daemon/billing_service.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/proto_time.h"
#include "daemon/services.h"

namespace joule::daemon {

// ------------------------------------------------------------ adapter ----

grpc::ServerUnaryReactor* BillingServiceImpl::SetPrice(
    grpc::CallbackServerContext* ctx, const v1::SetPriceRequest* req,
    v1::Price* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    absl::Status s = RequireOperator(ctx);
    if (s.ok()) {
      auto r = ledger_->SetPrice(req->price());
      if (r.ok()) *resp = std::move(*r);
      s = r.status();
    }
    return (s);
  });
}

grpc::ServerUnaryReactor* BillingServiceImpl::ListPrices(
    grpc::CallbackServerContext* ctx, const v1::ListPricesRequest* req,
    v1::ListPricesResponse* resp) {
  for (auto& p : ledger_->ListPrices(req->include_history())) {
    *resp->add_prices() = std::move(p);
  }
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* BillingServiceImpl::CreateContract(
    grpc::CallbackServerContext* ctx, const v1::CreateContractRequest* req,
    v1::Contract* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    absl::Status s = RequireOperator(ctx);
    if (s.ok()) {
      auto r = ledger_->CreateContract(req->contract());
      if (r.ok()) *resp = std::move(*r);
      s = r.status();
    }
    return (s);
  });
}

grpc::ServerUnaryReactor* BillingServiceImpl::ListContracts(
    grpc::CallbackServerContext* ctx, const v1::ListContractsRequest* req,
    v1::ListContractsResponse* resp) {
  const std::string caller = CallerTenant(ctx);
  if (!caller.empty() && !req->tenant().empty() && req->tenant() != caller) {
    return Reply(ctx, absl::PermissionDeniedError(
                          "tenant: a tenant may list only its own contracts"));
  }
  for (auto& c :
       ledger_->ListContracts(caller.empty() ? req->tenant() : caller)) {
    *resp->add_contracts() = std::move(c);
  }
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* BillingServiceImpl::RecordUsage(
    grpc::CallbackServerContext* ctx, const v1::RecordUsageRequest* req,
    v1::RecordUsageResponse* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    const std::string caller = CallerTenant(ctx);
    if (!caller.empty()) {
      for (int i = 0; i < req->events_size(); ++i) {
        if (req->events(i).tenant() != caller) {
          return (absl::PermissionDeniedError(
              absl::StrCat("events[", i, "].tenant: a tenant may record ",
                           "usage only for itself")));
        }
      }
    }
    const std::vector<v1::UsageEvent> events(req->events().begin(),
                                             req->events().end());
    // Keys are scoped per (tenant, source principal). The lead wires the
    // authenticated principal here; until then: the tenant or "operator".
    auto r = ledger_->RecordUsage(events, caller.empty() ? "operator" : caller);
    if (r.ok()) *resp = std::move(*r);
    return (r.status());
  });
}

grpc::ServerUnaryReactor* BillingServiceImpl::GetStatement(
    grpc::CallbackServerContext* ctx, const v1::GetStatementRequest* req,
    v1::Statement* resp) {
  const std::string caller = CallerTenant(ctx);
  if (!caller.empty() && req->tenant() != caller) {
    return Reply(ctx, absl::PermissionDeniedError(
                          "tenant: a tenant may read only its own statements"));
  }
  auto r = ledger_->GetStatement(req->tenant(), req->period());
  if (r.ok()) *resp = std::move(*r);
  return Reply(ctx, r.status());
}

grpc::ServerUnaryReactor* BillingServiceImpl::FinalizePeriod(
    grpc::CallbackServerContext* ctx, const v1::FinalizePeriodRequest* req,
    v1::FinalizePeriodResponse* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    absl::Status s = RequireOperator(ctx);
    if (s.ok()) {
      auto r = ledger_->FinalizePeriod(req->period());
      if (r.ok()) *resp = std::move(*r);
      s = r.status();
    }
    return (s);
  });
}

grpc::ServerUnaryReactor* BillingServiceImpl::GetBacklog(
    grpc::CallbackServerContext* ctx, const v1::GetBacklogRequest* req,
    v1::GetBacklogResponse* resp) {
  absl::Status s = RequireOperator(ctx);
  if (s.ok()) {
    const absl::Time as_of =
        req->has_as_of() ? FromProtoTime(req->as_of()) : clock_->Now();
    auto r = ledger_->Backlog(as_of);
    if (r.ok()) *resp = std::move(*r);
    s = r.status();
  }
  return Reply(ctx, s);
}

grpc::ServerUnaryReactor* BillingServiceImpl::GetJobBilling(
    grpc::CallbackServerContext* ctx, const v1::GetJobBillingRequest* req,
    v1::GetJobBillingResponse* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    auto r = ledger_->JobBilling(req->job_id(), CallerTenant(ctx));
    if (r.ok()) *resp = std::move(*r);
    return r.status();
  });
}

grpc::ServerUnaryReactor* BillingServiceImpl::IssueCreditNote(
    grpc::CallbackServerContext* ctx, const v1::IssueCreditNoteRequest* req,
    v1::CreditNote* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    absl::Status s = RequireOperator(ctx);
    if (s.ok()) {
      auto r = ledger_->IssueCreditNote(*req);
      if (r.ok()) *resp = std::move(*r);
      s = r.status();
    }
    return s;
  });
}

grpc::ServerUnaryReactor* BillingServiceImpl::GrantCredits(
    grpc::CallbackServerContext* ctx, const v1::GrantCreditsRequest* req,
    v1::CreditGrant* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    absl::Status s = RequireOperator(ctx);
    if (s.ok()) {
      auto r = ledger_->GrantCredits(*req);
      if (r.ok()) *resp = std::move(*r);
      s = r.status();
    }
    return s;
  });
}

grpc::ServerUnaryReactor* BillingServiceImpl::ListCredits(
    grpc::CallbackServerContext* ctx, const v1::ListCreditsRequest* req,
    v1::ListCreditsResponse* resp) {
  const std::string caller = CallerTenant(ctx);
  if (!caller.empty() && req->tenant() != caller) {
    return Reply(ctx, absl::PermissionDeniedError(
                          "tenant: a tenant may list only its own credits"));
  }
  auto r = ledger_->ListCredits(req->tenant());
  if (r.ok()) *resp = std::move(*r);
  return Reply(ctx, r.status());
}

grpc::ServerUnaryReactor* BillingServiceImpl::ExportPeriod(
    grpc::CallbackServerContext* ctx, const v1::ExportPeriodRequest* req,
    v1::ExportPeriodResponse* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    absl::Status s = RequireOperator(ctx);
    if (s.ok()) {
      auto r = ledger_->ExportPeriod(req->period());
      if (r.ok()) *resp = std::move(*r);
      s = r.status();
    }
    return s;
  });
}

// -------------------------------------------------------------- wiring ----

BillingParts::BillingParts(storage::Store* store, const Clock* clock,
                           WorkerPool* pool)
    : clock_(clock),
      ledger_(std::make_unique<billing::Ledger>(store, clock, &directory_)) {
  sink_.ledger = ledger_.get();
  service_ = std::make_unique<BillingServiceImpl>(ledger_.get(), clock, pool);
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
