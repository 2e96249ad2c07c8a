// Paginate: pages by count and by bytes, tokens continue where the last
// page ended. Table-driven over event lists.
#include "daemon/paging.h"

#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"

namespace joule::daemon {
namespace {

std::vector<v1::Event> Events(int n, size_t message_bytes) {
  std::vector<v1::Event> out;
  for (int i = 1; i <= n; ++i) {
    v1::Event e;
    e.set_seq(i);
    e.set_message(std::string(message_bytes, 'm'));
    out.push_back(e);
  }
  return out;
}

std::string Key(const v1::Event& e) {
  return absl::StrFormat("%016x", e.seq());
}

// Walks every page; returns the page sizes.
std::vector<size_t> Walk(int n, size_t bytes, uint32_t page_size) {
  std::vector<size_t> sizes;
  std::string token;
  uint64_t expect = 1;
  do {
    std::vector<v1::Event> page = Events(n, bytes);
    auto next = Paginate(&page, page_size, token, Key);
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok()) break;
    for (const v1::Event& e : page) EXPECT_EQ(e.seq(), expect++);
    sizes.push_back(page.size());
    token = *next;
  } while (!token.empty() && sizes.size() < 1000);
  EXPECT_EQ(expect, static_cast<uint64_t>(n) + 1);  // each item once
  return sizes;
}

TEST(PagingTest, ByCountAndBytes) {
  struct Case {
    int n;
    size_t bytes;
    uint32_t page_size;
    std::vector<size_t> want;
  };
  const std::vector<Case> cases = {
      {0, 10, 0, {0}},
      {5, 10, 0, {5}},        // small: one page
      {5, 10, 2, {2, 2, 1}},  // 5 by 2
      {4, 10, 2, {2, 2}},
      // 1 MiB messages: at most 2 MiB per page (each item is 1 MiB plus a
      // few bytes, so one per page after the first fills 1 MiB + change).
      {3, 1 << 20, 0, {1, 1, 1}},
      // 600 KiB messages: three of them pass 2 MiB (3 x 600 KiB = 1.8 MiB
      // is still under, a fourth is not): pages of 3 and 1.
      {4, 600 << 10, 0, {3, 1}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message()
                 << c.n << " x " << c.bytes << " by " << c.page_size);
    EXPECT_EQ(Walk(c.n, c.bytes, c.page_size), c.want);
  }
}

TEST(PagingTest, BadRequests) {
  std::vector<v1::Event> e = Events(3, 1);
  EXPECT_EQ(Paginate(&e, 0, std::string(200, 'x'), Key).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Paginate(&e, 100000, "", Key).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace joule::daemon
