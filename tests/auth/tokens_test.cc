#include "auth/tokens.h"

#include "absl/strings/match.h"
#include "common/proto_time.h"
#include "gtest/gtest.h"
#include "storage/memory_store.h"

namespace joule::auth {
namespace {

// Deterministic "random" bytes: 0x01 0x02 ... so ids and secrets are known.
RandomBytesFn Counting() {
  auto n = std::make_shared<int>(0);
  return [n](size_t len) {
    std::string out;
    for (size_t i = 0; i < len; ++i) out.push_back(static_cast<char>(++*n));
    return out;
  };
}

class TokensTest : public ::testing::Test {
 protected:
  TokensTest()
      : book_({.store = &store_, .clock = &clock_, .random = Counting()}) {}
  v1::CreateTokenResponse Make(v1::Role role, std::string tenant = "",
                               absl::Duration ttl = absl::ZeroDuration()) {
    v1::CreateTokenRequest req;
    req.set_role(role);
    req.set_tenant(tenant);
    if (role == v1::ROLE_AGENT) req.set_node("n1");
    *req.mutable_expires_in() = ToProtoDuration(ttl);
    auto r = book_.Create(req, "test",
                          [](absl::string_view t) { return t == "acme"; });
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::CreateTokenResponse();
  }
  storage::MemoryStore store_;
  FakeClock clock_;
  TokenBook book_;
};

TEST_F(TokensTest, SecretVerifiesAndOnlyTheHashIsStored) {
  v1::CreateTokenResponse t = Make(v1::ROLE_TENANT, "acme");
  // id: 8 bytes 01..08 in hex; secret: the next 32 bytes.
  EXPECT_EQ(t.token().id(), "jt_0102030405060708");
  EXPECT_TRUE(absl::StartsWith(t.secret(), "jt_0102030405060708.090a0b"));
  auto v = book_.Verify(t.secret());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->tenant(), "acme");
  auto stored = store_.Get(storage::kTokens, t.token().id());
  ASSERT_TRUE(stored.ok() && stored->has_value());
  const std::string secret_part = t.secret().substr(t.secret().find('.') + 1);
  EXPECT_FALSE(absl::StrContains(**stored, secret_part));
  // A fresh book over the same store verifies it too (persisted).
  TokenBook again({.store = &store_, .clock = &clock_});
  ASSERT_TRUE(again.Load().ok());
  EXPECT_TRUE(again.Verify(t.secret()).ok());
}

struct BadBearer {
  std::string bearer;
  std::string why;
};

TEST_F(TokensTest, WrongMalformedRevokedAndExpiredAreUnauthenticated) {
  v1::CreateTokenResponse t = Make(v1::ROLE_OPERATOR, "", absl::Hours(1));
  std::string wrong = t.secret();
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  const std::vector<BadBearer> cases = {
      {"", "malformed"},
      {"jt_0102030405060708", "malformed"},
      {"Bearer " + t.secret(), "malformed"},
      {"jt_ffffffffffffffff." + std::string(64, 'a'), "unknown"},
      {wrong, "wrong secret"},
  };
  for (const BadBearer& c : cases) {
    auto v = book_.Verify(c.bearer);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kUnauthenticated)
        << c.bearer;
    EXPECT_TRUE(absl::StrContains(v.status().message(), c.why)) << v.status();
  }
  // Expiry: valid at 59 min, refused at 60 min.
  clock_.Advance(absl::Minutes(59));
  EXPECT_TRUE(book_.Verify(t.secret()).ok());
  clock_.Advance(absl::Minutes(1));
  EXPECT_TRUE(absl::StrContains(book_.Verify(t.secret()).status().message(),
                                "expired"));
  // Revocation is effective at once.
  v1::CreateTokenResponse u = Make(v1::ROLE_FINANCE);
  ASSERT_TRUE(book_.Verify(u.secret()).ok());
  ASSERT_TRUE(book_.Revoke(u.token().id()).ok());
  EXPECT_TRUE(absl::StrContains(book_.Verify(u.secret()).status().message(),
                                "revoked"));
  EXPECT_EQ(book_.List(false).size(), 1u);  // the expired one is listed
  EXPECT_EQ(book_.List(true).size(), 2u);
}

struct BadCreate {
  v1::Role role;
  std::string tenant, node, name;
  absl::Duration ttl;
  std::string field;
};

TEST_F(TokensTest, CreateValidatesEveryField) {
  const std::vector<BadCreate> cases = {
      {v1::ROLE_UNSPECIFIED, "", "", "", absl::ZeroDuration(), "role"},
      {v1::ROLE_TENANT, "", "", "", absl::ZeroDuration(), "tenant"},
      {v1::ROLE_TENANT, "globex", "", "", absl::ZeroDuration(), "tenant"},
      {v1::ROLE_TENANT, "..", "", "", absl::ZeroDuration(), "tenant"},
      {v1::ROLE_OPERATOR, "acme", "", "", absl::ZeroDuration(), "tenant"},
      {v1::ROLE_AGENT, "", "", "", absl::ZeroDuration(), "node"},
      {v1::ROLE_AGENT, "", "a/b", "", absl::ZeroDuration(), "node"},
      {v1::ROLE_FINANCE, "", "n1", "", absl::ZeroDuration(), "node"},
      {v1::ROLE_FINANCE, "", "", std::string(129, 'x'), absl::ZeroDuration(),
       "name"},
      {v1::ROLE_FINANCE, "", "", "a\nb", absl::ZeroDuration(), "name"},
      {v1::ROLE_FINANCE, "", "", "", absl::Seconds(-1), "expires_in"},
      {v1::ROLE_FINANCE, "", "", "", absl::Hours(24 * 3651), "expires_in"},
  };
  for (const BadCreate& c : cases) {
    v1::CreateTokenRequest req;
    req.set_role(c.role);
    req.set_tenant(c.tenant);
    req.set_node(c.node);
    req.set_name(c.name);
    *req.mutable_expires_in() = ToProtoDuration(c.ttl);
    auto r =
        book_.Create(req, "t", [](absl::string_view t) { return t == "acme"; });
    EXPECT_FALSE(r.ok()) << c.field;
    EXPECT_TRUE(absl::StartsWith(r.status().message(), c.field)) << r.status();
  }
  EXPECT_TRUE(book_.List(true).empty());  // nothing stored
}

TEST_F(TokensTest, BootstrapOnlyWithoutAValidOperatorToken) {
  auto first = book_.Bootstrap();
  ASSERT_TRUE(first.ok() && first->has_value());
  auto v = book_.Verify(**first);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->role(), v1::ROLE_OPERATOR);
  auto second = book_.Bootstrap();
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->has_value());
  // Other roles do not count; a revoked operator token does not either.
  Make(v1::ROLE_FINANCE);
  ASSERT_TRUE(book_.Revoke(v->id()).ok());
  auto third = book_.Bootstrap();
  ASSERT_TRUE(third.ok() && third->has_value());
  EXPECT_TRUE(book_.Verify(**third).ok());
}

}  // namespace
}  // namespace joule::auth
