// joulectl session (cli/session.h) against what another user, a tmp
// cleaner or a runaway script could do: a live session's path is never
// taken over, a caller never talks to a socket another user could have
// placed, calls beyond --max-calls are refused, and a daemonized session
// keeps nothing of its starter (cwd, fds, the --token on its command
// line). docs/security.md "The session socket".
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
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
#include "gtest/gtest.h"
#include "tests/e2e/session_fixture.h"

namespace joule::e2e {
namespace {

// The pid in a `session start` eval line (0 when there is none).
int SessionPid(const std::string& out) {
  int pid = 0;
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (absl::ConsumePrefix(&line, "JOULE_SESSION_PID=")) {
      if (!absl::SimpleAtoi(line.substr(0, line.find(';')), &pid)) pid = 0;
    }
  }
  return pid;
}

// Waits for a session daemon this test started to end; kills it by pid
// if it does not. True when it ended by itself.
bool DaemonEnds(int pid) {
  const bool exited = WaitFor([&] {
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string s((std::istreambuf_iterator<char>(in)), {});
    return s.empty() || absl::StrContains(s, ") Z ");
  });
  if (!exited) kill(pid, SIGKILL);
  return exited;
}

TEST_F(SessionE2E, ALiveSessionsPathIsNeverTakenOver) {
  auto a = StartSession(acme_token_);
  const std::vector<std::string> start = {
      "--server", c_->server(), "--ca",    c_->pki() + "/ca.crt",
      "--token",  acme_token_,  "session", "start",
      "--socket", sock_};
  // Its socket deleted (as tmp cleaners do) while it runs: a second start
  // on the path is still refused, naming the live session's pid.
  ASSERT_EQ(unlink(sock_.c_str()), 0);
  CtlResult b = RunCtl(*c_, start, {});
  if (int pid = SessionPid(b.out); pid > 0) {
    kill(pid, SIGTERM);
    DaemonEnds(pid);
  }
  EXPECT_EQ(b.exit_code, 1) << b.out << b.err;
  EXPECT_TRUE(absl::StrContains(b.err, "already runs")) << b.err;
  EXPECT_TRUE(absl::StrContains(b.err, absl::StrCat("pid ", a->pid())))
      << b.err;
  // A socket someone else put at the path is not removed by the session
  // when it ends: only the one it bound.
  const int other = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, sock_.c_str(), sock_.size() + 1);
  ASSERT_EQ(bind(other, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  a->Signal(SIGTERM);
  EXPECT_EQ(a->Wait(), 0) << a->Log();
  EXPECT_TRUE(Exists(sock_)) << "the session removed a socket not its own";
  close(other);
  // That socket is stale (nobody listens): a new start replaces it, and
  // right after `session stop` returns, the path is free for the next.
  CtlResult c = RunCtl(*c_, start, {});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const int c_pid = SessionPid(c.out);
  EXPECT_EQ(ViaSession({"session", "stop"}).exit_code, 0);
  CtlResult d = RunCtl(*c_, start, {});
  EXPECT_EQ(d.exit_code, 0) << d.err;
  const int d_pid = SessionPid(d.out);
  EXPECT_EQ(ViaSession({"session", "stop"}).exit_code, 0);
  EXPECT_TRUE(c_pid > 0 && DaemonEnds(c_pid));
  EXPECT_TRUE(d_pid > 0 && DaemonEnds(d_pid));
  EXPECT_FALSE(Exists(sock_));
  EXPECT_FALSE(Exists(sock_ + ".lock"));
}

TEST_F(SessionE2E, ACallerRefusesASocketAnotherUserCouldHavePlaced) {
  auto session = StartSession(acme_token_);
  ASSERT_EQ(ViaSession({"whoami"}).exit_code, 0);
  // A directory others may write: anyone could have put the socket there.
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"whoami"}, {"session", "status"}, {"session", "stop"}}) {
    CtlResult r = ViaSession(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.out << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, "chmod 700")) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  ASSERT_EQ(chmod(dir_.c_str(), 0700), 0);
  if (geteuid() == 0) {  // a socket of another uid
    ASSERT_EQ(chown(sock_.c_str(), 65534, 65534), 0);
    CtlResult r = ViaSession({"whoami"});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, "owned by uid 65534")) << r.err;
    ASSERT_EQ(chown(sock_.c_str(), 0, 0), 0);
  }
  EXPECT_EQ(ViaSession({"whoami"}).exit_code, 0);
  EXPECT_TRUE(session->Running());
}

TEST_F(SessionE2E, RefusesCallsBeyondMaxCalls) {
  auto session = StartSession(acme_token_, {}, {"--max-calls", "1"});
  ASSERT_FALSE(HasFailure()) << session->Log();
  auto status = [&] { return SessionStatus().out; };
  ASSERT_TRUE(WaitFor([&] { return !status().empty(); })) << session->Log();
  auto watch = WatchViaSession("watch-max.log");
  // `events --watch` lists first (a unary call, ended once its table is
  // printed), then streams: the one in flight is then the stream.
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(watch->Log(), "KIND") &&
           absl::StrContains(status(), " 1 in flight");
  })) << watch->Log();
  CtlResult r = ViaSession({"job", "list"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err << status() << session->Log();
  EXPECT_TRUE(absl::StrContains(r.err, "--max-calls")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  watch->Signal(SIGKILL);
  watch->Wait();
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(status(), " 0 in flight");
  })) << status();
  EXPECT_EQ(ViaSession({"job", "list"}).exit_code, 0);
  CtlResult bad = RunCtl(*c_,
                         {"--server", c_->server(), "session", "start",
                          "--socket", sock_, "--max-calls", "0"},
                         {});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_TRUE(absl::StrContains(bad.err, "--max-calls")) << bad.err;
  session->Signal(SIGTERM);
  EXPECT_EQ(session->Wait(), 0);
}

// A daemonized session keeps nothing of the process that started it: it
// runs in / (its relative --socket and files made absolute), holds no fd
// it inherited but stdio, and shows no --token on its command line.
TEST_F(SessionE2E, ADaemonKeepsNothingOfItsStarter) {
  const std::string held = c_->dir() + "/held";
  const std::string tok = c_->dir() + "/tok";
  { std::ofstream(tok) << acme_token_ << "\n"; }
  std::vector<std::string> argv = {Bin("joulectl"),
                                   "--server",
                                   c_->server(),
                                   "--ca",
                                   c_->pki() + "/ca.crt",
                                   "--token",
                                   acme_token_,
                                   "--token-file",
                                   "tok",
                                   "session",
                                   "start",
                                   "--socket",
                                   "sess/s.sock"};
  std::vector<char*> cargs;
  for (auto& a : argv) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  const std::string out = c_->dir() + "/daemon.out";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addchdir_np(&fa, c_->dir().c_str());
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  // An fd the starter holds (a lock, a pipe a CI step waits on).
  posix_spawn_file_actions_addopen(&fa, 9, held.c_str(), O_WRONLY | O_CREAT,
                                   0644);
  pid_t starter = 0;
  ASSERT_EQ(
      posix_spawn(&starter, cargs[0], &fa, nullptr, cargs.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  int st = 0;
  waitpid(starter, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << ReadFile(out);
  const std::string printed = ReadFile(out);
  const int pid = SessionPid(printed);
  ASSERT_GT(pid, 0) << printed;
  EXPECT_TRUE(absl::StrContains(printed, "JOULE_SESSION='" + sock_ + "'"))
      << printed;
  std::error_code ec;
  EXPECT_EQ(
      std::filesystem::read_symlink(absl::StrCat("/proc/", pid, "/cwd"), ec)
          .string(),
      "/");
  // (fd 9 may be one the session opened since: not the starter's file.)
  EXPECT_NE(
      std::filesystem::read_symlink(absl::StrCat("/proc/", pid, "/fd/9"), ec)
          .string(),
      held);
  const std::string cmdline = ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
  EXPECT_FALSE(absl::StrContains(cmdline, acme_token_)) << cmdline;
  // It works from anywhere through the absolute path it printed, and
  // reads its token file, named relative to where it started, again.
  CtlResult who = ViaSession({"whoami"});
  EXPECT_TRUE(absl::StrContains(who.out, "tenant acme")) << who.out << who.err;
  { std::ofstream(tok + ".new") << c_->CreateToken("tenant", "other") << "\n"; }
  std::filesystem::rename(tok + ".new", tok);
  who = ViaSession({"whoami"});
  EXPECT_TRUE(absl::StrContains(who.out, "tenant other")) << who.out << who.err;
  EXPECT_EQ(ViaSession({"session", "stop"}).exit_code, 0);
  EXPECT_TRUE(DaemonEnds(pid));
}

}  // namespace
}  // namespace joule::e2e
