// Issue 9: identity and authorization end to end over real TLS with a real
// jouled: the authorization matrix (every role x every RPC, expected from
// the same table as the docs), transport and certificate refusals, token
// revocation and expiry, tenant isolation, and the audit log.
#include <signal.h>

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "auth/authz_table.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "joule/v1/auth.grpc.pb.h"
#include "joule/v1/joule.grpc.pb.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

using auth::Access;

std::shared_ptr<grpc::Channel> TlsChannel(const Cluster& c,
                                          const std::string& cert_name) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFile(c.pki() + "/ca.crt");
  if (!cert_name.empty()) {
    ssl.pem_cert_chain = ReadFile(c.pki() + "/" + cert_name + ".crt");
    ssl.pem_private_key = ReadFile(c.pki() + "/" + cert_name + ".key");
  }
  return grpc::CreateChannel(c.server(), grpc::SslCredentials(ssl));
}

// One unary call by full method name with a serialized request.
grpc::Status CallRaw(const std::shared_ptr<grpc::Channel>& ch,
                     const std::string& method, const std::string& request,
                     const std::string& token) {
  grpc::GenericStub stub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) Cluster::Authorize(&ctx, token);
  grpc::Slice slice(request);
  grpc::ByteBuffer req(&slice, 1), resp;
  grpc::CompletionQueue cq;
  auto call = stub.PrepareUnaryCall(&ctx, method, req, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&resp, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

// The agent stream: opened, then closed at once; the status says whether
// it was admitted.
grpc::Status CallConnect(const std::shared_ptr<grpc::Channel>& ch,
                         const std::string& token) {
  auto stub = v1::AgentService::NewStub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) Cluster::Authorize(&ctx, token);
  auto stream = stub->Connect(&ctx);
  stream->WritesDone();
  v1::DaemonMessage m;
  while (stream->Read(&m)) {
  }
  return stream->Finish();
}

struct Principal {
  std::string role;
  std::shared_ptr<grpc::Channel> channel;
  std::string token;  // empty: the channel's client certificate
  Access (*access)(const auth::MethodRule&);
};

class TrustE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    c_.StartDaemon();
    for (const char* t : {"acme", "globex"}) {
      ASSERT_EQ(c_.Ctl({"tenant", "create", t}).exit_code, 0);
    }
    finance_ = c_.CreateToken("finance", "", "finance team");
    metering_ = c_.CreateToken("metering", "", "meter feed");
    acme_ = c_.CreateToken("tenant", "acme", "alice at acme");
    globex_ = c_.CreateToken("tenant", "globex", "bob at globex");
  }
  CtlResult As(const std::string& token, std::vector<std::string> args) {
    args.insert(args.begin(), {"--token", token});
    return c_.Ctl(args);
  }
  Cluster c_;
  std::string finance_, metering_, acme_, globex_;
};

// A request that is the caller's own where the method names a tenant (so
// that "own" is tested as allowed, not as a mismatch); empty otherwise.
std::string RequestFor(const std::string& method) {
  if (absl::EndsWith(method, "/GetStatement")) {
    v1::GetStatementRequest r;
    r.set_tenant("acme");
    r.set_period("2026-11");
    return r.SerializeAsString();
  }
  return "";
}

TEST_F(TrustE2E, AuthorizationMatrixEveryRoleEveryRpc) {
  c_.MakeNodeCert("matrix-node");  // an agent that never registers for real
  const auto tls = TlsChannel(c_, "");
  const std::vector<Principal> principals = {
      {"operator", tls, c_.operator_token(),
       [](const auth::MethodRule& r) { return r.operator_; }},
      {"finance", tls, finance_,
       [](const auth::MethodRule& r) { return r.finance; }},
      {"metering", tls, metering_,
       [](const auth::MethodRule& r) { return r.metering; }},
      {"tenant", tls, acme_,
       [](const auth::MethodRule& r) { return r.tenant; }},
      {"agent", TlsChannel(c_, "matrix-node"), "",
       [](const auth::MethodRule& r) { return r.agent; }},
  };
  int checked = 0;
  for (const auth::MethodRule& rule : auth::AuthorizationTable()) {
    const bool stream = absl::EndsWith(rule.method, "/Connect");
    for (const Principal& p : principals) {
      const grpc::Status s = stream ? CallConnect(p.channel, p.token)
                                    : CallRaw(p.channel, rule.method,
                                              RequestFor(rule.method), p.token);
      const Access want = p.access(rule);
      if (want == Access::kDeny) {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << rule.method << " as " << p.role << ": " << s.error_message();
        EXPECT_TRUE(absl::StrContains(s.error_message(), "role " + p.role))
            << s.error_message();
        EXPECT_TRUE(absl::StrContains(s.error_message(), rule.method.substr(1)))
            << s.error_message();
      } else {
        EXPECT_NE(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << rule.method << " as " << p.role << ": " << s.error_message();
        EXPECT_NE(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
            << rule.method << " as " << p.role << ": " << s.error_message();
        EXPECT_NE(s.error_code(), grpc::StatusCode::UNIMPLEMENTED)
            << rule.method;
      }
      ++checked;
    }
    // No credentials at all: UNAUTHENTICATED, whatever the method.
    const grpc::Status anon =
        stream ? CallConnect(tls, "") : CallRaw(tls, rule.method, "", "");
    EXPECT_EQ(anon.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << rule.method;
  }
  EXPECT_EQ(checked, 5 * static_cast<int>(auth::AuthorizationTable().size()));
  // The empty requests above changed nothing: no job, node or price.
  v1::ListJobsResponse jobs;
  c_.CtlJson({"job", "list"}, &jobs);
  EXPECT_EQ(jobs.jobs_size(), 0);
  v1::ListNodesResponse nodes;
  c_.CtlJson({"node", "list"}, &nodes);
  EXPECT_EQ(nodes.nodes_size(), 0);
}

TEST_F(TrustE2E, TransportAndCertificateRefusals) {
  // A plaintext client against the TLS daemon.
  auto plain =
      grpc::CreateChannel(c_.server(), grpc::InsecureChannelCredentials());
  EXPECT_EQ(CallRaw(plain, "/joule.v1.AdminService/ListTenants", "",
                    c_.operator_token())
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // An agent without a certificate (or token).
  v1::RegisterRequest reg;
  reg.set_node_name("n2");
  reg.add_gpus()->set_model("H100");
  grpc::Status s =
      CallRaw(TlsChannel(c_, ""), "/joule.v1.AgentService/Register",
              reg.SerializeAsString(), "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "no client certificate"))
      << s.error_message();
  // n1's certificate registering as n2, from a raw client and from a real
  // agent process.
  c_.MakeNodeCert("n1");
  s = CallRaw(TlsChannel(c_, "n1"), "/joule.v1.AgentService/Register",
              reg.SerializeAsString(), "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(s.error_message(),
                                "credentials are for node \"n1\", not \"n2\""))
      << s.error_message();
  std::vector<std::string> impostor = {Bin("joule-agent"),
                                       "--server",
                                       c_.server(),
                                       "--node-name",
                                       "n2",
                                       "--ca",
                                       c_.pki() + "/ca.crt",
                                       "--tls-cert",
                                       c_.pki() + "/n1.crt",
                                       "--tls-key",
                                       c_.pki() + "/n1.key",
                                       "--log-dir",
                                       c_.dir() + "/logs-imp"};
  Process agent(impostor, c_.dir() + "/impostor.log");
  EXPECT_TRUE(WaitFor(
      [&] { return absl::StrContains(agent.Log(), "registration refused"); }));
  agent.Signal(SIGTERM);
  agent.Wait();
  // jouled's own certificate (serverAuth only) cannot pose as an agent.
  reg.set_node_name("jouled");
  s = CallRaw(TlsChannel(c_, "server"), "/joule.v1.AgentService/Register",
              reg.SerializeAsString(), "");
  EXPECT_TRUE(s.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
              s.error_code() == grpc::StatusCode::UNAVAILABLE)
      << s.error_code() << " " << s.error_message();
  v1::ListNodesResponse nodes;
  c_.CtlJson({"node", "list"}, &nodes);
  EXPECT_EQ(nodes.nodes_size(), 0);
  // A client that does not trust jouled's CA.
  CtlResult r = c_.Ctl({"--ca", "/dev/null", "tenant", "list"});
  EXPECT_NE(r.exit_code, 0);
}

TEST_F(TrustE2E, RevokedAndExpiredTokensAreRefusedAtOnce) {
  CtlResult r = c_.Ctl({"token", "create", "--role", "finance", "--name",
                        "short", "--expires", "2s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string short_lived(absl::StripAsciiWhitespace(r.out));
  EXPECT_EQ(As(short_lived, {"billing", "backlog"}).exit_code, 0);
  absl::SleepFor(absl::Milliseconds(2500));
  r = As(short_lived, {"billing", "backlog"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "expired")) << r.err;

  EXPECT_EQ(As(finance_, {"billing", "backlog"}).exit_code, 0);
  v1::ListTokensResponse tokens;
  c_.CtlJson({"token", "list"}, &tokens);
  std::string finance_id;
  for (const auto& t : tokens.tokens()) {
    if (t.name() == "finance team") finance_id = t.id();
  }
  ASSERT_FALSE(finance_id.empty());
  EXPECT_TRUE(absl::StartsWith(finance_, finance_id + "."));
  // `token list` never shows a secret.
  CtlResult list = c_.Ctl({"-o", "json", "token", "list"});
  EXPECT_FALSE(absl::StrContains(list.out, finance_.substr(finance_id.size())));
  ASSERT_EQ(c_.Ctl({"token", "revoke", finance_id}).exit_code, 0);
  r = As(finance_, {"billing", "backlog"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "revoked")) << r.err;
  // Revocation and expiry survive a restart.
  c_.KillDaemon(SIGKILL);
  c_.StartDaemon();
  EXPECT_TRUE(
      absl::StrContains(As(finance_, {"billing", "backlog"}).err, "revoked"));
  EXPECT_TRUE(absl::StrContains(As(short_lived, {"billing", "backlog"}).err,
                                "expired"));
}

TEST_F(TrustE2E, TenantsSeeOnlyTheirOwn) {
  c_.StartAgent("n1");
  ASSERT_TRUE(WaitFor([&] {
    v1::ListNodesResponse n;
    c_.CtlJson({"node", "list"}, &n);
    return n.nodes_size() == 1 && n.nodes(0).state() == v1::NODE_STATE_READY;
  }));
  CtlResult sub =
      As(acme_, {"-o", "json", "job", "submit", "--gpus", "1", "--name",
                 "acme-secret-training", "--env", "SECRET_API_KEY=sk-acme-123",
                 "--", "sleep", "30"});
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  v1::SubmitJobResponse job;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(sub.out, &job).ok());
  const std::string id = job.job().id();
  EXPECT_EQ(job.job().spec().tenant(), "acme");  // bound by the token
  ASSERT_TRUE(WaitFor([&] {
    v1::Job j;
    c_.CtlJson({"job", "show", id}, &j);
    return j.state() == v1::JOB_STATE_RUNNING;
  }));
  // The owner sees its job, env included.
  CtlResult own = As(acme_, {"-o", "json", "job", "show", id});
  EXPECT_TRUE(absl::StrContains(own.out, "sk-acme-123"));
  // Another tenant sees nothing of it: job, list, logs, cancel, statement.
  for (std::vector<std::string> args :
       {std::vector<std::string>{"job", "show", id},
        std::vector<std::string>{"job", "logs", id},
        std::vector<std::string>{"job", "cancel", id}}) {
    CtlResult r = As(globex_, args);
    EXPECT_EQ(r.exit_code, 1) << args[1];
    EXPECT_TRUE(absl::StrContains(r.err, "no job")) << r.err;
  }
  EXPECT_FALSE(absl::StrContains(As(globex_, {"job", "list"}).out, id));
  CtlResult st = As(globex_, {"billing", "statement", "--tenant", "acme",
                              "--period", "2026-11"});
  EXPECT_EQ(st.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(st.err, "only its own")) << st.err;
  // Submitting for another tenant is refused.
  CtlResult other = As(globex_, {"job", "submit", "--tenant", "acme", "--gpus",
                                 "1", "--", "true"});
  EXPECT_EQ(other.exit_code, 1);
  // Shared views are filtered: globex sees the node but not acme's job.
  CtlResult nodes = As(globex_, {"-o", "json", "node", "list"});
  EXPECT_EQ(nodes.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(nodes.out, "n1"));
  EXPECT_FALSE(absl::StrContains(nodes.out, id)) << nodes.out;
  EXPECT_FALSE(absl::StrContains(
      As(globex_, {"-o", "json", "node", "show", "n1"}).out, id));
  EXPECT_FALSE(
      absl::StrContains(As(globex_, {"-o", "json", "events"}).out, id));
  // ... while acme and the operator do.
  EXPECT_TRUE(
      absl::StrContains(As(acme_, {"-o", "json", "node", "list"}).out, id));
  // Events: the operator sees the node's; a tenant only those about its own
  // jobs (none here).
  v1::ListEventsResponse all, acme_events;
  c_.CtlJson({"events"}, &all);
  EXPECT_GT(all.events_size(), 0);
  CtlResult ae = As(acme_, {"-o", "json", "events"});
  ASSERT_EQ(ae.exit_code, 0) << ae.err;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(ae.out, &acme_events).ok());
  for (const auto& e : acme_events.events()) EXPECT_EQ(e.subject(), id);
  // A tenant token cannot act as another tenant.
  CtlResult as = As(acme_, {"--as-tenant", "globex", "job", "list"});
  EXPECT_EQ(as.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(as.err, "only an operator")) << as.err;
}

TEST_F(TrustE2E, AuditRecordsNameTheCaller) {
  // The operator, a tenant, an operator acting for a tenant, and a denied
  // call.
  ASSERT_EQ(c_.Ctl({"tenant", "create", "initech"}).exit_code, 0);
  ASSERT_EQ(As(acme_, {"job", "cancel", "job-999999"}).exit_code, 1);
  ASSERT_EQ(
      c_.Ctl({"--as-tenant", "acme", "job", "cancel", "job-999998"}).exit_code,
      1);
  ASSERT_EQ(As(acme_, {"power", "set-cap", "site", "1MW"}).exit_code, 1);
  v1::ListAuditResponse audit;
  c_.CtlJson({"audit"}, &audit);
  std::map<std::string, v1::AuditRecord> by_target;
  for (const auto& r : audit.records()) by_target[r.target()] = r;
  const v1::AuditRecord& t = by_target["initech"];
  EXPECT_EQ(t.method(), "/joule.v1.AdminService/CreateTenant");
  EXPECT_EQ(t.principal_name(), "bootstrap");
  EXPECT_TRUE(absl::StartsWith(t.principal(), "jt_"));
  EXPECT_EQ(t.outcome(), "ok");
  const v1::AuditRecord& cancel = by_target["job-999999"];
  EXPECT_EQ(cancel.principal_name(), "alice at acme");
  EXPECT_EQ(cancel.role(), v1::ROLE_TENANT);
  EXPECT_TRUE(absl::StartsWith(cancel.outcome(), "NOT_FOUND"))
      << cancel.outcome();
  const v1::AuditRecord& acting = by_target["job-999998"];
  EXPECT_EQ(acting.role(), v1::ROLE_OPERATOR);
  EXPECT_EQ(acting.acting_for(), "acme");
  const v1::AuditRecord& denied = by_target["site"];
  EXPECT_EQ(denied.method(), "/joule.v1.AdminService/SetPowerCap");
  EXPECT_TRUE(absl::StartsWith(denied.outcome(), "PERMISSION_DENIED"))
      << denied.outcome();
  // The token creations of SetUp are audited too, with their bindings.
  EXPECT_EQ(by_target["tenant tenant=acme"].method(),
            "/joule.v1.AuthService/CreateToken");
  // Filter by principal; finance may read it, a tenant may not.
  v1::ListAuditResponse mine;
  CtlResult f =
      As(finance_, {"-o", "json", "audit", "--principal", cancel.principal()});
  ASSERT_EQ(f.exit_code, 0) << f.err;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(f.out, &mine).ok());
  for (const auto& r : mine.records())
    EXPECT_EQ(r.principal(), cancel.principal());
  EXPECT_GE(mine.records_size(), 2);
  EXPECT_EQ(As(acme_, {"audit"}).exit_code, 1);
}

}  // namespace
}  // namespace joule::e2e
