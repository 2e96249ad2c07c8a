// Issue 14, end to end: a session's frames socket (cli/session_wire.h,
// PATH.frames), the way a joulectl makes unary calls through its session
// without gRPC in its own process. Real jouled, agent and session over
// TLS: calls work with the gRPC socket gone, answer as the direct path
// does, start no thread in joulectl; bad frames, callers that die
// mid-call and sessions without the socket (older ones) are each handled
// and the session serves on.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cli/session_wire.h"
#include "gtest/gtest.h"
#include "joule/v1/auth.pb.h"
#include "tests/e2e/session_fixture.h"

namespace joule::e2e {
namespace {

using cli::EncodeRequest;
using cli::FramesPath;
using cli::WireRequest;
using cli::WireResponse;

int ConnectTo(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// What the session answers to `bytes` on a new frames connection: the
// decoded answer (code -1 when none came), and whether the session then
// closed the connection (`closed`; waits 1 s to see it open).
struct Answer {
  WireResponse r{-1, "", ""};
  bool closed = false;
};
Answer Send(int fd, const std::string& bytes) {
  Answer a;
  if (!cli::WriteAll(fd, bytes).ok()) return a;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  auto body = cli::ReadFrame(fd, cli::kMaxFrameBody, deadline);
  if (body.ok()) {
    auto r = cli::DecodeResponse(*body);
    if (r.ok()) a.r = *r;
  }
  // Closed: an end, or a reset (closed with what we sent still unread).
  const absl::Status next =
      cli::ReadFrame(fd, cli::kMaxFrameBody, absl::Now() + absl::Seconds(1))
          .status();
  a.closed = absl::IsOutOfRange(next) || absl::IsUnavailable(next);
  return a;
}
Answer SendOnce(const std::string& path, const std::string& bytes) {
  const int fd = ConnectTo(path);
  if (fd < 0) return {};
  Answer a = Send(fd, bytes);
  close(fd);
  return a;
}

std::string Frame(const std::string& method, const std::string& payload = "") {
  return *EncodeRequest(WireRequest{method, 10'000'000, {}, payload});
}

std::string U32(uint32_t v) {
  return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
}

TEST_F(SessionE2E, UnaryCallsGoInFramesWithoutTheGrpcSocket) {
  auto session = StartSession(acme_token_);
  ExpectPrivateSocket(FramesPath(sock_));
  // Without the gRPC socket only frames can carry these calls.
  ASSERT_EQ(unlink(sock_.c_str()), 0);
  const std::string id = WhoamiAndSubmit();
  ASSERT_FALSE(id.empty());
  CtlResult show = ViaSession({"job", "show", id});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_TRUE(absl::StrContains(show.out, id)) << show.out;
  CtlResult list = ViaSession({"-o", "json", "job", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(absl::StrContains(list.out, id)) << list.out;
  // Errors: the same line and exit code as a direct call. --as-tenant
  // reaches jouled (a tenant may not use it: refused there).
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"job", "submit", "--gpus", "100", "--", "true"},
           {"job", "show", "job-999999"},
           {"tenant", "create", "nope"},
           {"--as-tenant", "other", "job", "list"}}) {
    ExpectSameFailureAsDirect(args);
  }
  EXPECT_TRUE(session->Running());
  session->Signal(SIGTERM);
  EXPECT_EQ(session->Wait(), 0);
  EXPECT_FALSE(Exists(FramesPath(sock_)));
}

// A joulectl through a session starts no thread for unary calls: no
// clone() in its trace (strace -f), where a gRPC client starts several.
TEST_F(SessionE2E, AFramedCallStartsNoThreadInJoulectl) {
  if (system("strace -V >/dev/null 2>&1") != 0) GTEST_SKIP() << "no strace";
  auto session = StartSession(acme_token_);
  const std::string trace = c_->dir() + "/strace.out";
  auto clones = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = {
        "/usr/bin/env",       "strace", "-f",  "-qq",          "-e",
        "trace=clone,clone3", "-o",     trace, Bin("joulectl")};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<std::string> envs = {"JOULE_SESSION=" + sock_,
                                     "PATH=/usr/bin:/bin"};
    std::vector<char*> cenv;
    for (auto& e : envs) cenv.push_back(e.data());
    cenv.push_back(nullptr);
    CtlResult r = RunCaptured(argv, cenv.data(), trace + ".o", trace + ".e");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::string t = ReadFile(trace);
    return std::count(t.begin(), t.end(), '\n');
  };
  EXPECT_EQ(clones({"job", "submit", "--gpus", "1", "--", "true"}), 0)
      << ReadFile(trace);
  EXPECT_EQ(clones({"job", "list"}), 0) << ReadFile(trace);
  // The same through the gRPC socket (a session without frames): threads.
  ASSERT_EQ(unlink(FramesPath(sock_).c_str()), 0);
  EXPECT_GT(clones({"job", "list"}), 0) << ReadFile(trace);
}

TEST_F(SessionE2E, ASessionWithoutAFramesSocketIsUsedOverGrpc) {
  auto session = StartSession(acme_token_);
  // A session of an older joulectl has no PATH.frames.
  ASSERT_EQ(unlink(FramesPath(sock_).c_str()), 0);
  CtlResult who = ViaSession({"whoami"});
  EXPECT_EQ(who.exit_code, 0) << who.err;
  EXPECT_TRUE(absl::StrContains(who.out, "tenant acme")) << who.out;
  CtlResult bad = ViaSession({"job", "show", "job-999999"});
  EXPECT_EQ(bad.exit_code, 1) << bad.err;
}

TEST_F(SessionE2E, BadFramesAreRefusedAndTheSessionServesOn) {
  auto session = StartSession(acme_token_);
  const std::string frames = FramesPath(sock_);
  struct Case {
    std::string bytes;
    int code;
    const char* names;
    bool closes;
  };
  const std::vector<Case> cases = {
      {"GET / HTTP/1.1\r\n\r\n", 3, "not a joulectl session frame", true},
      {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 3, "not a joulectl session frame",
       true},
      {"JSF1" + U32(cli::kMaxFrameBody + 1), 8, "the most is", true},
      {"JSF1" + U32(4) + std::string("\0\5ab", 4), 3, "ends inside method",
       true},
      {"JSF1" + U32(3) + "abc", 3, "method of 24930 bytes", true},
      {"JSF1" + U32(2) + std::string("\0\0", 2), 3, "ends inside timeout_us",
       true},
      {Frame("/joule.cli.Session/Stop"), 12, "gRPC socket only", false},
      {Frame("/joule.v1.AdminService/WatchEvents"), 12, "streams", false},
      {Frame("/joule.v1.JobService/NoSuchMethod"), 12, "", false},
  };
  for (const Case& c : cases) {
    Answer a = SendOnce(frames, c.bytes);
    EXPECT_EQ(a.r.code, c.code) << c.names << ": " << a.r.message;
    EXPECT_TRUE(absl::StrContains(a.r.message, c.names)) << a.r.message;
    EXPECT_EQ(a.closed, c.closes) << c.names;
  }
  // A request jouled cannot parse: its error, and the session goes on.
  Answer junk =
      SendOnce(frames, Frame("/joule.v1.JobService/SubmitJob", "\xff\xff\xff"));
  EXPECT_NE(junk.r.code, 0) << junk.r.message;
  EXPECT_NE(junk.r.code, -1);
  // One connection, calls one after another, a refusal between them.
  const int fd = ConnectTo(frames);
  ASSERT_GE(fd, 0);
  for (const char* method :
       {"/joule.v1.AuthService/WhoAmI", "/joule.cli.Session/Status",
        "/joule.v1.AuthService/WhoAmI"}) {
    ASSERT_TRUE(cli::WriteAll(fd, Frame(method)).ok());
    auto body =
        cli::ReadFrame(fd, cli::kMaxFrameBody, absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(body.ok()) << body.status();
    auto r = cli::DecodeResponse(*body);
    ASSERT_TRUE(r.ok()) << r.status();
    if (absl::StartsWith(method, "/joule.cli")) {
      EXPECT_EQ(r->code, 12) << r->message;
      continue;
    }
    ASSERT_EQ(r->code, 0) << r->message;
    v1::WhoAmIResponse who;
    ASSERT_TRUE(who.ParseFromString(r->payload));
    EXPECT_EQ(who.tenant(), "acme");
  }
  close(fd);
  EXPECT_TRUE(session->Running());
  EXPECT_EQ(ViaSession({"whoami"}).exit_code, 0);
}

// A caller that dies mid-call: its upstream call is cancelled (the
// session's in-flight count goes back to 0) and the session serves on.
// jouled here is a TCP port that never answers, so calls hang upstream.
TEST_F(SessionE2E, ACallerThatDiesMidCallLeavesTheSessionServing) {
  const int silent = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(silent, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(silent, 16), 0);
  socklen_t len = sizeof(addr);
  getsockname(silent, reinterpret_cast<sockaddr*>(&addr), &len);
  Process session(SessionTo(absl::StrCat("127.0.0.1:", ntohs(addr.sin_port))),
                  c_->dir() + "/session-silent.log");
  auto status = [&] { return SessionStatus().out; };
  ASSERT_TRUE(WaitFor([&] { return !status().empty(); })) << session.Log();
  // A joulectl killed while its call hangs.
  ASSERT_EQ(setenv("JOULE_SESSION", sock_.c_str(), 1), 0);
  Process caller({Bin("joulectl"), "--timeout", "60s", "whoami"},
                 c_->dir() + "/caller.log");
  unsetenv("JOULE_SESSION");
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(status(), " 1 in flight");
  })) << status();
  caller.Signal(SIGKILL);
  caller.Wait();
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(status(), " 0 in flight");
  })) << status();
  // A caller that closes after half a frame, or half a header.
  const std::string whole = Frame("/joule.v1.AuthService/WhoAmI");
  for (size_t cut : {size_t{3}, whole.size() - 1}) {
    const int fd = ConnectTo(FramesPath(sock_));
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(cli::WriteAll(fd, whole.substr(0, cut)).ok());
    close(fd);
  }
  // A raw caller that hangs up mid-call.
  const int fd = ConnectTo(FramesPath(sock_));
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(cli::WriteAll(fd, whole).ok());
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(status(), " 1 in flight");
  })) << status();
  close(fd);
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(status(), " 0 in flight");
  })) << status();
  EXPECT_TRUE(session.Running());
  // Still answering: a call that ends at its deadline, as a direct one.
  CtlResult r = ViaSession({"--timeout", "1s", "whoami"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err, "joulectl: Deadline Exceeded\n");
  session.Signal(SIGTERM);
  EXPECT_EQ(session.Wait(), 0);
  close(silent);
}

}  // namespace
}  // namespace joule::e2e
