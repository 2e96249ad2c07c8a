#include "cli/session_path.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace joule::cli {
namespace {

TEST(SessionPathTest, DefaultSocket) {
  EXPECT_EQ(DefaultSessionSocket("/run/user/1000", 1000),
            "/run/user/1000/joule/session.sock");
  EXPECT_EQ(DefaultSessionSocket("", 1000), "/tmp/joule-1000/session.sock");
  EXPECT_EQ(DefaultSessionSocket("", 0), "/tmp/joule-0/session.sock");
  // A relative XDG_RUNTIME_DIR is ignored (XDG Base Directory spec).
  EXPECT_EQ(DefaultSessionSocket("run/user/1000", 1000),
            "/tmp/joule-1000/session.sock");
}

TEST(SessionPathTest, AbsolutePath) {
  EXPECT_EQ(AbsolutePath("/home/a", "s.sock"), "/home/a/s.sock");
  EXPECT_EQ(AbsolutePath("/home/a", "d/s.sock"), "/home/a/d/s.sock");
  EXPECT_EQ(AbsolutePath("/", "s.sock"), "/s.sock");
  EXPECT_EQ(AbsolutePath("/home/a", "/x/s.sock"), "/x/s.sock");
  EXPECT_EQ(AbsolutePath("/home/a", ""), "");
}

TEST(SessionPathTest, CheckSessionSocketRefusesWhatAnotherUserCouldOwn) {
  char tmpl[] = "/tmp/session_path_test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;  // mkdtemp: 0700, ours
  const std::string sock = dir + "/s.sock";
  // Nothing there yet: OK (the call then says "no session").
  EXPECT_TRUE(CheckSessionSocket(sock, geteuid()).ok());
  EXPECT_TRUE(CheckSessionSocket("/nonexistent-dir/s.sock", geteuid()).ok());
  { std::ofstream(sock) << "x"; }
  absl::Status s = CheckSessionSocket(sock, geteuid());
  EXPECT_TRUE(absl::StrContains(s.message(), "is not a socket")) << s;
  unlink(sock.c_str());
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, sock.c_str(), sock.size() + 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_TRUE(CheckSessionSocket(sock, geteuid()).ok());
  // The same socket seen by another uid: not theirs, and not their dir.
  s = CheckSessionSocket(sock, geteuid() + 1);
  EXPECT_TRUE(absl::StrContains(s.message(), "not by you")) << s;
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  s = CheckSessionSocket(sock, geteuid());
  EXPECT_TRUE(absl::StrContains(s.message(), "chmod 700")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "JOULE_SESSION " + sock)) << s;
  close(fd);
  unlink(sock.c_str());
  rmdir(dir.c_str());
}

TEST(SessionPathTest, SocketDir) {
  EXPECT_EQ(SocketDir("/tmp/joule-1/session.sock"), "/tmp/joule-1");
  EXPECT_EQ(SocketDir("/s.sock"), "/");
  EXPECT_EQ(SocketDir("s.sock"), ".");
  EXPECT_EQ(SocketDir("a/b/s.sock"), "a/b");
}

TEST(SessionPathTest, PrivateDirRule) {
  struct Case {
    bool is_dir, is_link;
    uid_t owner;
    mode_t mode;
    bool ok;
    const char* says;
  };
  const Case cases[] = {
      {true, false, 1000, 040700, true, ""},
      {true, false, 1000, 040500, true, ""},  // r-x for the owner only
      {true, false, 1000, 040750, false, "mode 0750"},
      {true, false, 1000, 040701, false, "mode 0701"},
      {true, false, 1000, 041777, false, "mode 1777"},  // /tmp itself
      {true, false, 0, 040700, false, "owned by uid 0"},
      {false, true, 1000, 0120777, false, "symbolic link"},
      {false, false, 1000, 0100600, false, "not a directory"},
  };
  for (const Case& c : cases) {
    absl::Status s =
        CheckPrivateDirStat("/d", c.is_dir, c.is_link, c.owner, c.mode, 1000);
    EXPECT_EQ(s.ok(), c.ok) << std::oct << c.mode << " " << s;
    EXPECT_TRUE(absl::StrContains(s.message(), c.says)) << s;
  }
}

TEST(SessionPathTest, EnsurePrivateDirCreatesAndChecks) {
  char tmpl[] = "/tmp/session_path_test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string base = tmpl;
  const std::string dir = base + "/joule";
  EXPECT_FALSE(EnsurePrivateDir(dir, geteuid(), /*create=*/false).ok());
  ASSERT_TRUE(EnsurePrivateDir(dir, geteuid(), /*create=*/true).ok());
  struct stat st;
  ASSERT_EQ(lstat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  absl::Status s = EnsurePrivateDir(dir, geteuid(), /*create=*/true);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "chmod 700")) << s;
  const std::string link = base + "/link";
  ASSERT_EQ(chmod(dir.c_str(), 0700), 0);
  ASSERT_EQ(symlink(dir.c_str(), link.c_str()), 0);
  EXPECT_FALSE(EnsurePrivateDir(link, geteuid(), /*create=*/true).ok());
  unlink(link.c_str());
  rmdir(dir.c_str());
  rmdir(base.c_str());
}

TEST(SessionPathTest, SessionToUse) {
  EXPECT_EQ(SessionToUse("/s.sock", /*explicit_transport=*/false), "/s.sock");
  EXPECT_EQ(SessionToUse("/s.sock", /*explicit_transport=*/true), "");
  EXPECT_EQ(SessionToUse("", /*explicit_transport=*/false), "");
}

TEST(SessionPathTest, EvalLineQuotesThePath) {
  EXPECT_EQ(SessionEvalLine("/tmp/joule-1/session.sock"),
            "JOULE_SESSION='/tmp/joule-1/session.sock'; export JOULE_SESSION;");
  // it's -> 'it'\''s'
  EXPECT_EQ(SessionEvalLine("/x/it's"),
            "JOULE_SESSION='/x/it'\\''s'; export JOULE_SESSION;");
}

}  // namespace
}  // namespace joule::cli
