#include "storage/etcd_client.h"

#include <chrono>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace joule::storage {
namespace {

constexpr absl::string_view kUnknownPayload = "joule.storage/outcome-unknown";

absl::StatusOr<std::string> ReadPem(const std::string& path,
                                    absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read \"", path, "\""));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The call certainly did not reach etcd's raft log on that member.
bool NotSent(const grpc::Status& s) {
  if (s.error_code() != grpc::StatusCode::UNAVAILABLE) return false;
  const std::string m = absl::AsciiStrToLower(s.error_message());
  return absl::StrContains(m, "failed to connect") ||
         absl::StrContains(m, "connection refused") ||
         absl::StrContains(m, "etcdserver: no leader") ||
         absl::StrContains(m, "not ready");
}

// Transport-level failures: the member is gone or cut off.
bool MemberFailure(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         s.error_code() == grpc::StatusCode::CANCELLED;
}

absl::Status Convert(const grpc::Status& s, absl::string_view what,
                     const std::string& target) {
  std::string msg =
      absl::StrCat("etcd ", what, " at ", target, ": ", s.error_message());
  const std::string lower = absl::AsciiStrToLower(s.error_message());
  if (absl::StrContains(lower, "request is too large") ||
      absl::StrContains(lower, "too many operations") ||
      absl::StrContains(lower, "space exceeded") ||
      s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    return absl::ResourceExhaustedError(msg);
  }
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), msg);
}

}  // namespace

bool IsOutcomeUnknown(const absl::Status& s) {
  return s.GetPayload(kUnknownPayload).has_value();
}

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(
    const EtcdClientOptions& options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError(
        "--etcd-endpoints: at least one URL is required");
  }
  auto client = std::unique_ptr<EtcdClient>(new EtcdClient(options));
  bool tls = !options.ca_file.empty();
  for (const std::string& e : options.endpoints) {
    if (absl::StartsWith(e, "https://")) tls = true;
  }
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.ca_file.empty()) {
      auto ca = ReadPem(options.ca_file, "--etcd-ca");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    if (options.cert_file.empty() != options.key_file.empty()) {
      return absl::InvalidArgumentError(
          "--etcd-cert, --etcd-key: give both or neither");
    }
    if (!options.cert_file.empty()) {
      auto cert = ReadPem(options.cert_file, "--etcd-cert");
      if (!cert.ok()) return cert.status();
      auto key = ReadPem(options.key_file, "--etcd-key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  for (const std::string& e : options.endpoints) {
    absl::string_view target = e;
    absl::ConsumePrefix(&target, "http://");
    absl::ConsumePrefix(&target, "https://");
    absl::ConsumeSuffix(&target, "/");
    if (target.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--etcd-endpoints: empty URL in \"",
                       absl::StrJoin(options.endpoints, ","), "\""));
    }
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    // A member that comes back is used again within seconds.
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
    Member m;
    m.target = std::string(target);
    m.channel = grpc::CreateCustomChannel(m.target, creds, args);
    m.kv = etcdserverpb::KV::NewStub(m.channel);
    m.lease = etcdserverpb::Lease::NewStub(m.channel);
    m.maintenance = etcdserverpb::Maintenance::NewStub(m.channel);
    m.watch = etcdserverpb::Watch::NewStub(m.channel);
    client->members_.push_back(std::move(m));
  }
  return client;
}

std::string EtcdClient::current_endpoint() const {
  absl::MutexLock lock(&mu_);
  return members_[current_].target;
}

absl::Status EtcdClient::Call(const CallFn& fn, bool idempotent,
                              absl::string_view what) {
  size_t start;
  {
    absl::MutexLock lock(&mu_);
    start = current_;
  }
  const size_t n = members_.size();
  absl::Status last = absl::UnavailableError("no etcd member");
  for (size_t i = 0; i < n; ++i) {
    const size_t idx = (start + i) % n;
    Member& m = members_[idx];
    // Skip a member known to be down while another one might answer; the
    // last one is tried anyway.
    if (i + 1 < n &&
        m.channel->GetState(true) == GRPC_CHANNEL_TRANSIENT_FAILURE) {
      last = absl::UnavailableError(
          absl::StrCat("etcd ", what, " at ", m.target, ": not connected"));
      continue;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(options_.timeout));
    ctx.AddMetadata("hasleader", "true");
    grpc::Status s = fn(m, &ctx);
    if (s.ok()) {
      absl::MutexLock lock(&mu_);
      current_ = idx;
      return absl::OkStatus();
    }
    last = Convert(s, what, m.target);
    if (!MemberFailure(s)) return last;
    if (!idempotent && !NotSent(s)) {
      // It may have been applied: the caller decides; move on next time.
      absl::MutexLock lock(&mu_);
      current_ = (idx + 1) % n;
      absl::Status unknown = absl::UnavailableError(
          absl::StrCat(last.message(), " (outcome unknown)"));
      unknown.SetPayload(kUnknownPayload, absl::Cord("1"));
      return unknown;
    }
  }
  {
    absl::MutexLock lock(&mu_);
    current_ = (start + 1) % n;
  }
  return absl::UnavailableError(last.message());
}

absl::StatusOr<etcdserverpb::RangeResponse> EtcdClient::Range(
    const etcdserverpb::RangeRequest& req) {
  etcdserverpb::RangeResponse resp;
  absl::Status s = Call(
      [&](Member& m, grpc::ClientContext* ctx) {
        resp.Clear();
        return m.kv->Range(ctx, req, &resp);
      },
      /*idempotent=*/true, "range");
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<etcdserverpb::TxnResponse> EtcdClient::Txn(
    const etcdserverpb::TxnRequest& req) {
  etcdserverpb::TxnResponse resp;
  absl::Status s = Call(
      [&](Member& m, grpc::ClientContext* ctx) {
        resp.Clear();
        return m.kv->Txn(ctx, req, &resp);
      },
      /*idempotent=*/false, "txn");
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<etcdserverpb::LeaseGrantResponse> EtcdClient::LeaseGrant(
    int64_t ttl_s) {
  etcdserverpb::LeaseGrantRequest req;
  req.set_ttl(ttl_s);
  etcdserverpb::LeaseGrantResponse resp;
  // A lease granted twice is harmless: the extra one expires unused.
  absl::Status s = Call(
      [&](Member& m, grpc::ClientContext* ctx) {
        resp.Clear();
        return m.lease->LeaseGrant(ctx, req, &resp);
      },
      /*idempotent=*/true, "lease grant");
  if (!s.ok()) return s;
  if (!resp.error().empty()) {
    return absl::UnavailableError(
        absl::StrCat("etcd lease grant: ", resp.error()));
  }
  return resp;
}

absl::Status EtcdClient::LeaseRevoke(int64_t id) {
  etcdserverpb::LeaseRevokeRequest req;
  req.set_id(id);
  etcdserverpb::LeaseRevokeResponse resp;
  return Call(
      [&](Member& m, grpc::ClientContext* ctx) {
        return m.lease->LeaseRevoke(ctx, req, &resp);
      },
      /*idempotent=*/true, "lease revoke");
}

absl::StatusOr<int64_t> EtcdClient::LeaseKeepAlive(int64_t id) {
  etcdserverpb::LeaseKeepAliveResponse resp;
  absl::Status s = Call(
      [&](Member& m, grpc::ClientContext* ctx) {
        auto stream = m.lease->LeaseKeepAlive(ctx);
        etcdserverpb::LeaseKeepAliveRequest req;
        req.set_id(id);
        if (!stream->Write(req)) return stream->Finish();
        stream->WritesDone();
        if (!stream->Read(&resp)) {
          grpc::Status f = stream->Finish();
          return f.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                       "keep-alive stream closed")
                        : f;
        }
        ctx->TryCancel();
        stream->Finish().ok();
        return grpc::Status::OK;
      },
      /*idempotent=*/true, "lease keep-alive");
  if (!s.ok()) return s;
  return resp.ttl();
}

absl::Status EtcdClient::Compact(int64_t revision) {
  etcdserverpb::CompactionRequest req;
  req.set_revision(revision);
  etcdserverpb::CompactionResponse resp;
  return Call(
      [&](Member& m, grpc::ClientContext* ctx) {
        return m.kv->Compact(ctx, req, &resp);
      },
      /*idempotent=*/true, "compact");
}

void WatchCanceller::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (ctx_ != nullptr) ctx_->TryCancel();
}

bool WatchCanceller::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

absl::StatusOr<bool> EtcdClient::WaitForDelete(const std::string& key,
                                               int64_t from_revision,
                                               absl::Duration timeout,
                                               WatchCanceller* canceller) {
  Member* m;
  {
    absl::MutexLock lock(&mu_);
    m = &members_[current_];
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   absl::ToChronoMilliseconds(timeout));
  // A member cut off from the raft leader ends the watch at once instead of
  // keeping a stream that would never see the deletion.
  ctx.AddMetadata("hasleader", "true");
  {
    absl::MutexLock lock(&canceller->mu_);
    if (canceller->cancelled_) return absl::CancelledError("watch cancelled");
    canceller->ctx_ = &ctx;
  }
  auto stream = m->watch->Watch(&ctx);
  etcdserverpb::WatchRequest req;
  etcdserverpb::WatchCreateRequest* create = req.mutable_create_request();
  create->set_key(key);
  create->set_start_revision(from_revision);
  create->add_filters(etcdserverpb::WatchCreateRequest::NOPUT);
  bool deleted = false;
  if (stream->Write(req)) {
    etcdserverpb::WatchResponse resp;
    while (!deleted && stream->Read(&resp)) {
      if (resp.canceled() || resp.compact_revision() > 0) deleted = true;
      for (const mvccpb::Event& e : resp.events()) {
        if (e.type() == mvccpb::Event::DELETE) deleted = true;
      }
    }
  }
  if (deleted) ctx.TryCancel();  // done with the stream
  const grpc::Status s = stream->Finish();
  bool cancelled;
  {
    absl::MutexLock lock(&canceller->mu_);
    canceller->ctx_ = nullptr;
    cancelled = canceller->cancelled_;
  }
  if (deleted) return true;
  if (cancelled) return absl::CancelledError("watch cancelled");
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) return false;
  return absl::UnavailableError(
      Convert(s.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                    "watch stream closed")
                     : s,
              "watch", m->target)
          .message());
}

absl::StatusOr<etcdserverpb::StatusResponse> EtcdClient::Status() {
  etcdserverpb::StatusRequest req;
  etcdserverpb::StatusResponse resp;
  absl::Status s = Call(
      [&](Member& m, grpc::ClientContext* ctx) {
        resp.Clear();
        return m.maintenance->Status(ctx, req, &resp);
      },
      /*idempotent=*/true, "status");
  if (!s.ok()) return s;
  return resp;
}

}  // namespace joule::storage
