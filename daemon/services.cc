#include "daemon/services.h"

#include <deque>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "daemon/paging.h"
#include "daemon/status_convert.h"
#include "absl/strings/string_view.h"

namespace joule::daemon {

namespace {

// Full method names, as the authorization table knows them.
std::string M(absl::string_view service, absl::string_view method) {
  return absl::StrCat("/joule.v1.", service, "/", method);
}

}  // namespace

// ---------------------------------------------------------------- agent ----

namespace {

// One agent's stream. Reads run one at a time; writes are queued and sent in
// order. Deletes itself in OnDone, after detaching from the manager (which
// then never calls Send again).
class AgentStream final
    : public grpc::ServerBidiReactor<v1::AgentMessage, v1::DaemonMessage>,
      public AgentLink {
 public:
  // `node` is the node the caller's credentials are for.
  AgentStream(ClusterManager* manager, std::string node)
      : manager_(manager), credential_node_(std::move(node)) {
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
      if (m.hello().node_name() != credential_node_) {
        return absl::PermissionDeniedError(absl::StrCat(
            "hello.node_name: the credentials are for node \"",
            credential_node_, "\", not \"", m.hello().node_name(), "\""));
      }
      RETURN_IF_ERROR(manager_->AttachAgent(m.hello(), this));
      node_ = m.hello().node_name();
      return absl::OkStatus();
    }
    // Only the node's current session speaks for it: a stream replaced by
    // a newer registration is closed.
    if (!manager_->IsCurrentLink(node_, this)) {
      return absl::FailedPreconditionError(
          "session: replaced by a newer registration of this node");
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
  const std::string credential_node_;
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

// A stream refused before it starts.
class RejectedStream final
    : public grpc::ServerBidiReactor<v1::AgentMessage, v1::DaemonMessage> {
 public:
  explicit RejectedStream(const absl::Status& s) { Finish(ToGrpcStatus(s)); }
  void OnDone() override { delete this; }
};

grpc::ServerUnaryReactor* AgentServiceImpl::Register(
    grpc::CallbackServerContext* ctx, const v1::RegisterRequest* req,
    v1::RegisterResponse* resp) {
  return gate_->Later(
      ctx, M("AgentService", "Register"), req->node_name(),
      [this, req, resp](const Caller& c) -> absl::Status {
        // An empty name is the manager's INVALID_ARGUMENT.
        if (!req->node_name().empty() && req->node_name() != c.node) {
          return absl::PermissionDeniedError(absl::StrCat(
              "node_name: the credentials are for node \"", c.node,
              "\", not \"", req->node_name(), "\""));
        }
        ASSIGN_OR_RETURN(*resp, manager_->RegisterAgent(*req));
        return absl::OkStatus();
      });
}

grpc::ServerBidiReactor<v1::AgentMessage, v1::DaemonMessage>*
AgentServiceImpl::Connect(grpc::CallbackServerContext* ctx) {
  auto caller = gate_->Admit(ctx, M("AgentService", "Connect"));
  if (!caller.ok()) return new RejectedStream(caller.status());
  return new AgentStream(manager_, caller->node);
}

// ----------------------------------------------------------------- jobs ----

grpc::ServerUnaryReactor* JobServiceImpl::SubmitJob(
    grpc::CallbackServerContext* ctx, const v1::SubmitJobRequest* req,
    v1::SubmitJobResponse* resp) {
  return gate_->Later(ctx, M("JobService", "SubmitJob"), req->spec().tenant(),
                      [this, req, resp](const Caller& c) -> absl::Status {
                        if (req->has_array()) {  // daemon/job_arrays.cc
                          ASSIGN_OR_RETURN(*resp, manager_->SubmitArray(
                                                      *req, c.TenantScope()));
                          return absl::OkStatus();
                        }
                        ASSIGN_OR_RETURN(
                            *resp->mutable_job(),
                            manager_->SubmitJob(*req, c.TenantScope()));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* JobServiceImpl::GetJob(
    grpc::CallbackServerContext* ctx, const v1::GetJobRequest* req,
    v1::Job* resp) {
  return gate_->Now(ctx, M("JobService", "GetJob"),
                    [this, req, resp](const Caller& c) -> absl::Status {
                      ASSIGN_OR_RETURN(
                          *resp, manager_->GetJob(req->id(), c.TenantScope()));
                      return absl::OkStatus();
                    });
}

grpc::ServerUnaryReactor* JobServiceImpl::ListJobs(
    grpc::CallbackServerContext* ctx, const v1::ListJobsRequest* req,
    v1::ListJobsResponse* resp) {
  return gate_->Now(
      ctx, M("JobService", "ListJobs"),
      [this, req, resp](const Caller& c) -> absl::Status {
        ASSIGN_OR_RETURN(auto jobs,
                         manager_->ListJobsPage(*req, c.TenantScope()));
        ASSIGN_OR_RETURN(const std::string next,
                         Paginate(&jobs, req->page_size(), req->page_token(),
                                  [](const v1::Job& j) { return j.id(); }));
        resp->set_next_page_token(next);
        for (auto& j : jobs) *resp->add_jobs() = std::move(j);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* JobServiceImpl::CancelJob(
    grpc::CallbackServerContext* ctx, const v1::CancelJobRequest* req,
    v1::Job* resp) {
  return gate_->Later(
      ctx, M("JobService", "CancelJob"), req->id(),
      [this, req, resp](const Caller& c) -> absl::Status {
        if (manager_->IsArray(req->id())) {  // the whole array
          ASSIGN_OR_RETURN(*resp, manager_->CancelArray(*req, c.TenantScope()));
          return absl::OkStatus();
        }
        ASSIGN_OR_RETURN(*resp, manager_->CancelJob(*req, c.TenantScope()));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* JobServiceImpl::GetJobLogs(
    grpc::CallbackServerContext* ctx, const v1::GetJobLogsRequest* req,
    v1::GetJobLogsResponse* resp) {
  return gate_->Later(ctx, M("JobService", "GetJobLogs"), req->id(),
                      [this, req, resp](const Caller& c) -> absl::Status {
                        ASSIGN_OR_RETURN(
                            *resp, manager_->GetJobLogs(*req, c.TenantScope()));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* JobServiceImpl::HoldJob(
    grpc::CallbackServerContext* ctx, const v1::HoldJobRequest* req,
    v1::Job* resp) {
  return gate_->Later(
      ctx, M("JobService", "HoldJob"), req->id(),
      [this, req, resp](const Caller& c) -> absl::Status {
        ASSIGN_OR_RETURN(*resp,
                         manager_->HoldJob(req->id(), true, c.TenantScope()));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* JobServiceImpl::ReleaseJob(
    grpc::CallbackServerContext* ctx, const v1::ReleaseJobRequest* req,
    v1::Job* resp) {
  return gate_->Later(
      ctx, M("JobService", "ReleaseJob"), req->id(),
      [this, req, resp](const Caller& c) -> absl::Status {
        ASSIGN_OR_RETURN(*resp,
                         manager_->HoldJob(req->id(), false, c.TenantScope()));
        return absl::OkStatus();
      });
}

// ---------------------------------------------------------------- admin ----

grpc::ServerUnaryReactor* AdminServiceImpl::ListNodes(
    grpc::CallbackServerContext* ctx, const v1::ListNodesRequest* req,
    v1::ListNodesResponse* resp) {
  return gate_->Now(
      ctx, M("AdminService", "ListNodes"),
      [this, req, resp](const Caller& c) -> absl::Status {
        std::vector<v1::Node> nodes = manager_->ListNodes(c.TenantScope());
        ASSIGN_OR_RETURN(const std::string next,
                         Paginate(&nodes, req->page_size(), req->page_token(),
                                  [](const v1::Node& n) { return n.name(); }));
        resp->set_next_page_token(next);
        for (auto& n : nodes) *resp->add_nodes() = std::move(n);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetNode(
    grpc::CallbackServerContext* ctx, const v1::GetNodeRequest* req,
    v1::Node* resp) {
  return gate_->Now(ctx, M("AdminService", "GetNode"),
                    [this, req, resp](const Caller& c) -> absl::Status {
                      ASSIGN_OR_RETURN(*resp, manager_->GetNode(
                                                  req->name(), c.TenantScope()));
                      return absl::OkStatus();
                    });
}

grpc::ServerUnaryReactor* AdminServiceImpl::DrainNode(
    grpc::CallbackServerContext* ctx, const v1::DrainNodeRequest* req,
    v1::Node* resp) {
  return gate_->Later(ctx, M("AdminService", "DrainNode"), req->name(),
                      [this, req, resp](const Caller&) -> absl::Status {
                        ASSIGN_OR_RETURN(*resp, manager_->DrainNode(
                                                    req->name(), req->drain()));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* AdminServiceImpl::RemoveNode(
    grpc::CallbackServerContext* ctx, const v1::RemoveNodeRequest* req,
    v1::RemoveNodeResponse* resp) {
  return gate_->Later(ctx, M("AdminService", "RemoveNode"), req->name(),
                      [this, req](const Caller&) {
                        return manager_->RemoveNode(req->name());
                      });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetPowerTree(
    grpc::CallbackServerContext* ctx, const v1::GetPowerTreeRequest* req,
    v1::GetPowerTreeResponse* resp) {
  return gate_->Now(ctx, M("AdminService", "GetPowerTree"),
                    [this, resp](const Caller&) -> absl::Status {
                      *resp = manager_->PowerTree();
                      return absl::OkStatus();
                    });
}

grpc::ServerUnaryReactor* AdminServiceImpl::SetPowerCap(
    grpc::CallbackServerContext* ctx, const v1::SetPowerCapRequest* req,
    v1::PowerDomain* resp) {
  return gate_->Later(ctx, M("AdminService", "SetPowerCap"), req->domain(),
                      [this, req, resp](const Caller&) -> absl::Status {
                        ASSIGN_OR_RETURN(*resp, manager_->SetPowerCap(*req));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListEvents(
    grpc::CallbackServerContext* ctx, const v1::ListEventsRequest* req,
    v1::ListEventsResponse* resp) {
  return gate_->Now(
      ctx, M("AdminService", "ListEvents"),
      [this, req, resp](const Caller& c) -> absl::Status {
        ASSIGN_OR_RETURN(auto events,
                         manager_->ListEvents(*req, c.TenantScope()));
        ASSIGN_OR_RETURN(
            const std::string next,
            Paginate(&events, req->page_size(), req->page_token(),
                     [](const v1::Event& e) {
                       return absl::StrFormat("%016x", e.seq());
                     }));
        resp->set_next_page_token(next);
        for (auto& e : events) *resp->add_events() = std::move(e);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AdminServiceImpl::CreateTenant(
    grpc::CallbackServerContext* ctx, const v1::CreateTenantRequest* req,
    v1::Tenant* resp) {
  return gate_->Later(ctx, M("AdminService", "CreateTenant"),
                      req->tenant().name(),
                      [this, req, resp](const Caller&) -> absl::Status {
                        ASSIGN_OR_RETURN(*resp,
                                         manager_->CreateTenant(req->tenant()));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* AdminServiceImpl::SetTenantQuota(
    grpc::CallbackServerContext* ctx, const v1::SetTenantQuotaRequest* req,
    v1::Tenant* resp) {
  return gate_->Later(ctx, M("AdminService", "SetTenantQuota"), req->tenant(),
                      [this, req, resp](const Caller&) -> absl::Status {
                        ASSIGN_OR_RETURN(*resp, manager_->SetTenantQuota(*req));
                        return absl::OkStatus();
                      });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListTenants(
    grpc::CallbackServerContext* ctx, const v1::ListTenantsRequest* req,
    v1::ListTenantsResponse* resp) {
  return gate_->Now(
      ctx, M("AdminService", "ListTenants"),
      [this, req, resp](const Caller& c) -> absl::Status {
        const std::string only = c.TenantScope();
        std::vector<v1::Tenant> tenants;
        for (auto& t : manager_->ListTenants()) {
          if (!only.empty() && t.name() != only) continue;
          tenants.push_back(std::move(t));
        }
        // By name (ListTenants returns them in name order).
        ASSIGN_OR_RETURN(
            const std::string next,
            Paginate(&tenants, req->page_size(), req->page_token(),
                     [](const v1::Tenant& t) { return t.name(); }));
        resp->set_next_page_token(next);
        for (auto& t : tenants) *resp->add_tenants() = std::move(t);
        return absl::OkStatus();
      });
}

}  // namespace joule::daemon
