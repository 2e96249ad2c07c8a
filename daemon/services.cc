#include "daemon/services.h"

#include <deque>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "daemon/paging.h"
#include "daemon/status_convert.h"

namespace joule::daemon {

std::string CallerTenant(const grpc::CallbackServerContext* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("x-joule-tenant");
  if (it == md.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* ctx,
                                const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* ReplyLater(grpc::CallbackServerContext* ctx,
                                     WorkerPool* pool,
                                     std::function<absl::Status()> work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  pool->Post([reactor, work = std::move(work)] {
    reactor->Finish(ToGrpcStatus(work()));
  });
  return reactor;
}

absl::Status RequireOperator(const grpc::CallbackServerContext* ctx) {
  if (!CallerTenant(ctx).empty()) {
    return absl::PermissionDeniedError(
        "this call is for operators; a tenant (x-joule-tenant) may not make "
        "it");
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- agent ----

namespace {

// One agent's stream. Reads run one at a time; writes are queued and sent in
// order. Deletes itself in OnDone, after detaching from the manager (which
// then never calls Send again).
class AgentStream final
    : public grpc::ServerBidiReactor<v1::AgentMessage, v1::DaemonMessage>,
      public AgentLink {
 public:
  explicit AgentStream(ClusterManager* manager) : manager_(manager) {
    StartRead(&in_);
  }

  void Send(const v1::DaemonMessage& msg) override {
    absl::MutexLock lock(&mu_);
    if (closing_) return;
    out_.push_back(msg);
    if (!writing_) {
      writing_ = true;
      StartWrite(&out_.front());
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Close(grpc::Status::OK);
      return;
    }
    absl::Status s = Handle(in_);
    if (!s.ok()) {
      Close(ToGrpcStatus(s));
      return;
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    out_.pop_front();
    if (!ok) {
      out_.clear();
      writing_ = false;
      closing_ = true;
      MaybeFinishLocked();
      return;
    }
    if (!out_.empty()) {
      StartWrite(&out_.front());
    } else {
      writing_ = false;
      MaybeFinishLocked();
    }
  }

  void OnDone() override {
    if (!node_.empty()) manager_->DetachAgent(node_, this);
    delete this;
  }

 private:
  absl::Status Handle(const v1::AgentMessage& m) {
    if (node_.empty()) {
      if (m.msg_case() != v1::AgentMessage::kHello) {
        return absl::FailedPreconditionError(
            "the first message on the stream must be hello");
      }
      RETURN_IF_ERROR(manager_->AttachAgent(m.hello(), this));
      node_ = m.hello().node_name();
      return absl::OkStatus();
    }
    switch (m.msg_case()) {
      case v1::AgentMessage::kReport:
        return manager_->HandleReport(node_, m.report());
      case v1::AgentMessage::kJobUpdate:
        return manager_->HandleJobUpdate(node_, m.job_update());
      case v1::AgentMessage::kCommandResult:
        manager_->HandleCommandResult(node_, m.command_result());
        return absl::OkStatus();
      case v1::AgentMessage::kLogChunk:
        manager_->HandleLogChunk(node_, m.log_chunk());
        return absl::OkStatus();
      case v1::AgentMessage::kHello:
        return absl::FailedPreconditionError("hello: sent twice");
      default:
        return absl::InvalidArgumentError("msg: empty agent message");
    }
  }

  void Close(grpc::Status status) {
    // Detach first so nothing more is queued, then finish once writes drain.
    if (!node_.empty()) manager_->DetachAgent(node_, this);
    absl::MutexLock lock(&mu_);
    closing_ = true;
    final_status_ = std::move(status);
    MaybeFinishLocked();
  }

  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (closing_ && !writing_ && !finished_) {
      finished_ = true;
      Finish(final_status_);
    }
  }

  ClusterManager* const manager_;
  v1::AgentMessage in_;
  std::string node_;  // set by hello; touched only by the read chain
  absl::Mutex mu_;
  std::deque<v1::DaemonMessage> out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerUnaryReactor* AgentServiceImpl::Register(
    grpc::CallbackServerContext* ctx, const v1::RegisterRequest* req,
    v1::RegisterResponse* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    auto r = manager_->RegisterAgent(*req);
    if (r.ok()) *resp = std::move(*r);
    return (r.status());
  });
}

grpc::ServerBidiReactor<v1::AgentMessage, v1::DaemonMessage>*
AgentServiceImpl::Connect(grpc::CallbackServerContext* ctx) {
  return new AgentStream(manager_);
}

// ----------------------------------------------------------------- jobs ----

grpc::ServerUnaryReactor* JobServiceImpl::SubmitJob(
    grpc::CallbackServerContext* ctx, const v1::SubmitJobRequest* req,
    v1::SubmitJobResponse* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    auto r = manager_->SubmitJob(*req, CallerTenant(ctx));
    if (r.ok()) *resp->mutable_job() = std::move(*r);
    return (r.status());
  });
}

grpc::ServerUnaryReactor* JobServiceImpl::GetJob(
    grpc::CallbackServerContext* ctx, const v1::GetJobRequest* req,
    v1::Job* resp) {
  auto r = manager_->GetJob(req->id(), CallerTenant(ctx));
  if (r.ok()) *resp = std::move(*r);
  return Reply(ctx, r.status());
}

grpc::ServerUnaryReactor* JobServiceImpl::ListJobs(
    grpc::CallbackServerContext* ctx, const v1::ListJobsRequest* req,
    v1::ListJobsResponse* resp) {
  auto r = manager_->ListJobs(*req, CallerTenant(ctx));
  if (r.ok()) {
    auto next = Paginate(&*r, req->page_size(), req->page_token(),
                         [](const v1::Job& j) { return j.id(); });
    if (!next.ok()) return Reply(ctx, next.status());
    resp->set_next_page_token(*next);
    for (auto& j : *r) *resp->add_jobs() = std::move(j);
  }
  return Reply(ctx, r.status());
}

grpc::ServerUnaryReactor* JobServiceImpl::CancelJob(
    grpc::CallbackServerContext* ctx, const v1::CancelJobRequest* req,
    v1::Job* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    auto r = manager_->CancelJob(*req, CallerTenant(ctx));
    if (r.ok()) *resp = std::move(*r);
    return (r.status());
  });
}

grpc::ServerUnaryReactor* JobServiceImpl::GetJobLogs(
    grpc::CallbackServerContext* ctx, const v1::GetJobLogsRequest* req,
    v1::GetJobLogsResponse* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    auto r = manager_->GetJobLogs(*req, CallerTenant(ctx));
    if (r.ok()) *resp = std::move(*r);
    return (r.status());
  });
}

// ---------------------------------------------------------------- admin ----

grpc::ServerUnaryReactor* AdminServiceImpl::ListNodes(
    grpc::CallbackServerContext* ctx, const v1::ListNodesRequest* req,
    v1::ListNodesResponse* resp) {
  std::vector<v1::Node> nodes = manager_->ListNodes();
  auto next = Paginate(&nodes, req->page_size(), req->page_token(),
                       [](const v1::Node& n) { return n.name(); });
  if (!next.ok()) return Reply(ctx, next.status());
  resp->set_next_page_token(*next);
  for (auto& n : nodes) *resp->add_nodes() = std::move(n);
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetNode(
    grpc::CallbackServerContext* ctx, const v1::GetNodeRequest* req,
    v1::Node* resp) {
  auto r = manager_->GetNode(req->name());
  if (r.ok()) *resp = std::move(*r);
  return Reply(ctx, r.status());
}

grpc::ServerUnaryReactor* AdminServiceImpl::DrainNode(
    grpc::CallbackServerContext* ctx, const v1::DrainNodeRequest* req,
    v1::Node* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    absl::Status s = RequireOperator(ctx);
    if (s.ok()) {
      auto r = manager_->DrainNode(req->name(), req->drain());
      if (r.ok()) *resp = std::move(*r);
      s = r.status();
    }
    return (s);
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::RemoveNode(
    grpc::CallbackServerContext* ctx, const v1::RemoveNodeRequest* req,
    v1::RemoveNodeResponse* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req]() -> absl::Status {
    absl::Status s = RequireOperator(ctx);
    if (s.ok()) s = manager_->RemoveNode(req->name());
    return (s);
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetPowerTree(
    grpc::CallbackServerContext* ctx, const v1::GetPowerTreeRequest* req,
    v1::GetPowerTreeResponse* resp) {
  *resp = manager_->PowerTree();
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminServiceImpl::SetPowerCap(
    grpc::CallbackServerContext* ctx, const v1::SetPowerCapRequest* req,
    v1::PowerDomain* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    absl::Status s = RequireOperator(ctx);
    if (s.ok()) {
      auto r = manager_->SetPowerCap(*req);
      if (r.ok()) *resp = std::move(*r);
      s = r.status();
    }
    return (s);
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListEvents(
    grpc::CallbackServerContext* ctx, const v1::ListEventsRequest* req,
    v1::ListEventsResponse* resp) {
  auto r = manager_->ListEvents(*req);
  if (r.ok()) {
    auto next = Paginate(
        &*r, req->page_size(), req->page_token(),
        [](const v1::Event& e) { return absl::StrFormat("%016x", e.seq()); });
    if (!next.ok()) return Reply(ctx, next.status());
    resp->set_next_page_token(*next);
    for (auto& e : *r) *resp->add_events() = std::move(e);
  }
  return Reply(ctx, r.status());
}

grpc::ServerUnaryReactor* AdminServiceImpl::CreateTenant(
    grpc::CallbackServerContext* ctx, const v1::CreateTenantRequest* req,
    v1::Tenant* resp) {
  return ReplyLater(ctx, pool_, [this, ctx, req, resp]() -> absl::Status {
    absl::Status s = RequireOperator(ctx);
    if (s.ok()) {
      auto r = manager_->CreateTenant(req->tenant());
      if (r.ok()) *resp = std::move(*r);
      s = r.status();
    }
    return (s);
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListTenants(
    grpc::CallbackServerContext* ctx, const v1::ListTenantsRequest* req,
    v1::ListTenantsResponse* resp) {
  for (auto& t : manager_->ListTenants()) *resp->add_tenants() = std::move(t);
  return Reply(ctx, absl::OkStatus());
}

}  // namespace joule::daemon
