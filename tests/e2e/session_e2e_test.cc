// Issue 14, end to end: `joulectl session` (cli/session.h) as a real
// process between joulectl and a real jouled with agents over TLS. Calls
// made with JOULE_SESSION (and no transport flags) go through it: jobs are
// submitted, listed, shown and waited for (a server stream), errors come
// back as the same line and exit code as a direct call, authorization is
// still jouled's with the session's token, and the socket's directory and
// lifetime are as docs/cli.md "Sessions" says.
#include <fcntl.h>
#include <signal.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.grpc.pb.h"
#include "tests/e2e/session_fixture.h"

namespace joule::e2e {
namespace {

TEST_F(SessionE2E, SubmitsListsShowsWaitsAndStops) {
  auto session = StartSession(acme_token_);
  // The socket is the user's alone.
  ExpectPrivateSocket(sock_);
  // Its --token is not on its command line (/proc/PID/cmdline is
  // readable by every user).
  const std::string cmdline =
      ReadFile(absl::StrCat("/proc/", session->pid(), "/cmdline"));
  EXPECT_TRUE(absl::StrContains(cmdline, "--token")) << cmdline;
  EXPECT_FALSE(absl::StrContains(cmdline, acme_token_)) << cmdline;

  const std::string id = WhoamiAndSubmit();
  ASSERT_FALSE(id.empty());
  // job wait follows the WatchEvents server stream through the session.
  CtlResult wait = ViaSession({"job", "wait", id});
  EXPECT_EQ(wait.exit_code, 0) << wait.out << wait.err;
  EXPECT_TRUE(absl::StrContains(wait.out, "succeeded")) << wait.out;
  CtlResult list = ViaSession({"job", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(absl::StrContains(list.out, id)) << list.out;
  CtlResult show = ViaSession({"-o", "json", "job", "show", id});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_TRUE(absl::StrContains(show.out, "JOB_STATE_SUCCEEDED")) << show.out;
  // submit --wait: the submit and the stream in one command.
  CtlResult sw = ViaSession({"job", "submit", "--gpus", "1", "--wait", "--",
                             "/bin/sh", "-c", "exit 3"});
  EXPECT_NE(sw.exit_code, 0) << sw.out << sw.err;
  EXPECT_NE(sw.exit_code, 3) << "a failed job is not 'unreachable': " << sw.err;

  // A watching caller that dies: its upstream stream ends too (the
  // session counts a forwarded call until its upstream call has ended).
  {
    auto watch = WatchViaSession("watch->log");
    auto status = [&] { return SessionStatus().out; };
    EXPECT_TRUE(WaitFor([&] {
      return absl::StrContains(status(), " 1 in flight");
    })) << status()
        << watch->Log();
    watch->Signal(SIGKILL);
    watch->Wait();
    EXPECT_TRUE(WaitFor([&] {
      return absl::StrContains(status(), " 0 in flight");
    })) << status();
  }

  CtlResult stop = ViaSession({"session", "stop"});
  ASSERT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_FALSE(Exists(sock_)) << "stop returns after the socket is removed";
  EXPECT_EQ(session->Wait(), 0) << session->Log();
  // Now nothing answers: exit 3, one line naming JOULE_SESSION.
  CtlResult gone = ViaSession({"job", "list"});
  EXPECT_EQ(gone.exit_code, 3) << gone.err;
  EXPECT_TRUE(absl::StrContains(gone.err, "JOULE_SESSION")) << gone.err;
}

TEST_F(SessionE2E, ErrorsPassThroughAsTheSameLineAndCode) {
  auto session = StartSession(acme_token_);
  const std::vector<std::vector<std::string>> cases = {
      // jouled's INVALID_ARGUMENT (exit 1 as for any refused call)
      {"job", "submit", "--gpus", "100", "--", "true"},
      {"job", "submit", "--gpus", "1", "--name", std::string(300, 'x'), "--",
       "true"},
      // bad command line: exit 2 before any call
      {"job", "list", "--state", "bogus"},
      // NOT_FOUND
      {"job", "show", "job-999999"},
      // PERMISSION_DENIED: a tenant may not create tenants
      {"tenant", "create", "nope"},
  };
  for (const auto& args : cases) ExpectSameFailureAsDirect(args);
  CtlResult bad = ViaSession({"job", "list", "--state", "bogus"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
}

TEST_F(SessionE2E, ATenantSessionSeesOnlyItsTenantsJobs) {
  CtlResult theirs = c_->Ctl({"job", "submit", "--tenant", "other", "--gpus",
                              "1", "--", "sleep", "30"});
  ASSERT_EQ(theirs.exit_code, 0) << theirs.err;
  const std::string id(absl::StripAsciiWhitespace(theirs.out));
  auto session = StartSession(acme_token_);
  CtlResult list = ViaSession({"job", "list", "--tenant", "other"});
  EXPECT_FALSE(absl::StrContains(list.out, id)) << list.out;
  CtlResult all = ViaSession({"job", "list"});
  EXPECT_FALSE(absl::StrContains(all.out, id)) << all.out;
  CtlResult show = ViaSession({"job", "show", id});
  EXPECT_EQ(show.exit_code, 1) << show.out;
  CtlResult cancel = ViaSession({"job", "cancel", id});
  EXPECT_EQ(cancel.exit_code, 1) << cancel.out;
  // A token the caller passes is not what the session sends: a flag makes
  // the call direct, and the session never forwards the caller's own.
  CtlResult as = ViaSession({"--as-tenant", "other", "job", "list"});
  EXPECT_EQ(as.exit_code, 1) << as.out;
  EXPECT_TRUE(absl::StrContains(as.err, "only an operator")) << as.err;
  ASSERT_EQ(c_->Ctl({"job", "cancel", id}).exit_code, 0);
}

TEST_F(SessionE2E, ReadsAChangedTokenFileAgain) {
  const std::string file = c_->dir() + "/tok";
  { std::ofstream(file) << acme_token_ << "\n"; }
  chmod(file.c_str(), 0600);
  auto session = StartSession("", {"--token-file", file});
  CtlResult who = ViaSession({"whoami"});
  ASSERT_EQ(who.exit_code, 0) << who.err;
  EXPECT_TRUE(absl::StrContains(who.out, "tenant acme")) << who.out;
  const std::string other = c_->CreateToken("tenant", "other");
  { std::ofstream(file + ".new") << other << "\n"; }
  std::filesystem::rename(file + ".new", file);
  who = ViaSession({"whoami"});
  ASSERT_EQ(who.exit_code, 0) << who.err;
  EXPECT_TRUE(absl::StrContains(who.out, "tenant other")) << who.out;
  // Truncated (a writer that has not written yet): the last token stays.
  { std::ofstream truncate(file); }
  who = ViaSession({"whoami"});
  EXPECT_EQ(who.exit_code, 0) << who.err;
  EXPECT_TRUE(absl::StrContains(who.out, "tenant other")) << who.out;
  // A FIFO in its place is not waited on (no call stalls), nor a token
  // bigger than any: the last token stays.
  ASSERT_EQ(mkfifo((file + ".fifo").c_str(), 0600), 0);
  std::filesystem::rename(file + ".fifo", file);
  who = ViaSession({"--timeout", "5s", "whoami"});
  EXPECT_EQ(who.exit_code, 0) << who.err;
  EXPECT_TRUE(absl::StrContains(who.out, "tenant other")) << who.out;
  // And a good file again is read.
  { std::ofstream(file + ".new") << acme_token_ << "\n"; }
  std::filesystem::rename(file + ".new", file);
  who = ViaSession({"whoami"});
  EXPECT_EQ(who.exit_code, 0) << who.err;
  EXPECT_TRUE(absl::StrContains(who.out, "tenant acme")) << who.out;
}

TEST_F(SessionE2E, UnreachableJouledIsExit3ThroughTheSession) {
  Process session(SessionTo(absl::StrCat("127.0.0.1:", FreePort())),
                  c_->dir() + "/session-dead.log");
  ASSERT_TRUE(WaitFor([&] { return SessionStatus().exit_code == 0; }))
      << session.Log();
  CtlResult r = ViaSession({"--timeout", "3s", "job", "list"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err,
                                "cannot reach jouled through the "
                                "session at " +
                                    sock_))
      << r.err;
  session.Signal(SIGTERM);
  EXPECT_EQ(session.Wait(), 0);
  EXPECT_FALSE(Exists(sock_));
}

TEST_F(SessionE2E, FollowsTheServerListLikeJoulectl) {
  // The first endpoint is dead: the session's first call moves on to the
  // second and retries there, as joulectl does with --server a,b.
  const std::string list =
      absl::StrCat("127.0.0.1:", FreePort(), ",", c_->server());
  Process session(SessionTo(list), c_->dir() + "/session-list.log");
  ASSERT_TRUE(WaitFor([&] { return SessionStatus().exit_code == 0; }))
      << session.Log();
  CtlResult r = ViaSession({"job", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  CtlResult st = SessionStatus();
  EXPECT_TRUE(absl::StrContains(st.out, "jouled at " + c_->server())) << st.out;
  session.Signal(SIGTERM);
  EXPECT_EQ(session.Wait(), 0);
}

// What a peer gets from the session's socket: the first bytes the
// session sends after the HTTP/2 client preface (its SETTINGS frame), or
// 0 when it closes the connection (EOF or reset), < 0 on a local error
// or a 5 s silence. Connects as `uid` (root only:
// a child with that effective uid and fsuid 0, so that the 0700 directory
// does not stop it first and only the session's SO_PEERCRED check can).
ssize_t FirstBytesAs(uid_t uid, const std::string& path) {
  int p[2];
  if (pipe(p) != 0) return -2;
  const pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    ssize_t n = -3;
    errno = 0;
    if (setresgid(uid, uid, 0) == 0 && setresuid(uid, uid, 0) == 0) {
      setfsuid(0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
      const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
      if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
        static const char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        timeval tv{5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[64];
        if (send(fd, kPreface, sizeof(kPreface) - 1, MSG_NOSIGNAL) > 0) {
          n = read(fd, buf, sizeof(buf));
        }
        // Closed already, or with our preface unread (a reset): as an EOF.
        if (n < 0) n = errno == ECONNRESET || errno == EPIPE ? 0 : -7;
      } else {
        n = -5;
      }
    }
    (void)!write(p[1], &n, sizeof(n));
    _exit(0);
  }
  close(p[1]);
  ssize_t n = -6;
  if (read(p[0], &n, sizeof(n)) != sizeof(n)) n = -6;
  close(p[0]);
  waitpid(pid, nullptr, 0);
  return n;
}

TEST_F(SessionE2E, ClosesConnectionsOfOtherUsers) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  auto session = StartSession(acme_token_);
  // root (the session's own uid here): the session speaks HTTP/2.
  EXPECT_GT(FirstBytesAs(0, sock_), 0);
  // nobody: connected (fsuid 0 passes the directory), then closed unread.
  EXPECT_EQ(FirstBytesAs(65534, sock_), 0);
  // The frames socket: an error frame for root's HTTP/2 preface, nothing
  // for nobody.
  EXPECT_GT(FirstBytesAs(0, sock_ + ".frames"), 0);
  EXPECT_EQ(FirstBytesAs(65534, sock_ + ".frames"), 0);
  // The session still serves its own user.
  EXPECT_EQ(ViaSession({"whoami"}).exit_code, 0);
}

TEST_F(SessionE2E, IdleExitEndsAQuietSessionButNotABusyOne) {
  auto session = StartSession(acme_token_, {});
  session->Signal(SIGTERM);  // the fixture's default has no --idle-exit
  ASSERT_EQ(session->Wait(), 0);
  auto idle = StartSession(acme_token_, {}, {"--idle-exit", "2s"});
  ASSERT_FALSE(HasFailure()) << idle->Log();
  // A watch in flight keeps it past its 2 s (status calls count as
  // activity, so the polls below keep it until the watch is in).
  auto watch = WatchViaSession("watch-idle.log");
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(SessionStatus().out, " 1 in flight");
  })) << watch->Log();
  absl::SleepFor(absl::Seconds(3));
  EXPECT_TRUE(idle->Running()) << idle->Log();
  watch->Signal(SIGKILL);
  watch->Wait();
  // Then nothing: it ends by itself and removes its socket.
  EXPECT_EQ(idle->Wait(absl::Seconds(20)), 0) << idle->Log();
  EXPECT_FALSE(Exists(sock_));
  CtlResult bad = RunCtl(*c_,
                         {"--server", c_->server(), "session", "start",
                          "--socket", sock_, "--idle-exit", "soon"},
                         {});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_TRUE(absl::StrContains(bad.err, "--idle-exit")) << bad.err;
}

TEST_F(SessionE2E, StartRefusesADirWithGroupOrOtherPermissions) {
  ASSERT_EQ(chmod(dir_.c_str(), 0750), 0);
  std::vector<std::string> args = {
      "--server", c_->server(), "--ca",    c_->pki() + "/ca.crt",
      "--token",  acme_token_,  "session", "start",
      "--socket", sock_};
  CtlResult r = RunCtl(*c_, args, {});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "chmod 700")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_FALSE(Exists(sock_));
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST_F(SessionE2E, DaemonizesIntoTheDefaultDirAndPrintsAnEvalLine) {
  const std::string xdg = c_->dir() + "/xdg";
  ASSERT_EQ(mkdir(xdg.c_str(), 0700), 0);
  const std::string sock = xdg + "/joule/session.sock";
  std::vector<std::string> args = {
      "--server", c_->server(), "--ca",    c_->pki() + "/ca.crt",
      "--token",  acme_token_,  "session", "start"};
  CtlResult r = RunCtl(*c_, args, {"XDG_RUNTIME_DIR=" + xdg});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(
      r.out, absl::StrCat("JOULE_SESSION='", sock, "'; export JOULE_SESSION;")))
      << r.out;
  int pid = 0;
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    if (absl::ConsumePrefix(&line, "JOULE_SESSION_PID=")) {
      ASSERT_TRUE(absl::SimpleAtoi(line.substr(0, line.find(';')), &pid));
    }
  }
  ASSERT_GT(pid, 0) << r.out;
  struct stat st;
  ASSERT_EQ(lstat((xdg + "/joule").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // A second start on the same socket is refused while the first runs.
  CtlResult again = RunCtl(*c_, args, {"XDG_RUNTIME_DIR=" + xdg});
  EXPECT_EQ(again.exit_code, 1) << again.err;
  EXPECT_TRUE(absl::StrContains(again.err, "already runs")) << again.err;
  CtlResult sub = RunCtl(*c_, {"job", "submit", "--gpus", "1", "--", "true"},
                         {"JOULE_SESSION=" + sock});
  EXPECT_EQ(sub.exit_code, 0) << sub.err;
  // stop with the default socket (no JOULE_SESSION, same XDG dir).
  CtlResult stop = RunCtl(*c_, {"session", "stop"}, {"XDG_RUNTIME_DIR=" + xdg});
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_FALSE(Exists(sock));
  // The daemon this test started exits; killed by pid if it did not.
  const bool exited = WaitFor([&] {
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string s((std::istreambuf_iterator<char>(in)), {});
    return s.empty() || absl::StrContains(s, ") Z ");
  });
  if (!exited) kill(pid, SIGKILL);
  EXPECT_TRUE(exited);
}

// The session tells client-streaming methods apart by their descriptors,
// looked up by name (cli/session_proxy.cc): joulectl registers the
// generated descriptors lazily (cli/deferred_descriptors.h), so the
// session registers them all first. A client-streaming call is refused
// by the session itself, not forwarded.
TEST_F(SessionE2E, RefusesAClientStreamingCallItself) {
  auto session = StartSession(acme_token_);
  auto channel =
      grpc::CreateChannel("unix:" + sock_, grpc::InsecureChannelCredentials());
  auto stub = v1::AgentService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->Connect(&ctx);
  v1::DaemonMessage in;
  EXPECT_FALSE(stream->Read(&in));
  const grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED)
      << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "client-streaming"))
      << s.error_message();
}

}  // namespace
}  // namespace joule::e2e
