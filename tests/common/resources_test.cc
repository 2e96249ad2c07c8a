#include "common/resources.h"

#include "gtest/gtest.h"

namespace joule {
namespace {

TEST(ResourcesTest, ParseMemoryBytes) {
  struct Case {
    const char* text;
    int64_t want;  // -1: refused
  } cases[] = {
      {"64GiB", 64LL << 30},  // 68,719,476,736
      {"512MiB", 512LL << 20},
      {"1048576", 1 << 20},  // bytes, the 1 MiB floor
      {"2048KiB", 2 << 20},
      {"16TiB", 1LL << 44},  // the ceiling
      {"17TiB", -1},
      {"1KiB", -1},  // under 1 MiB
      {"64GB", -1},  // decimal units refused
      {"-1GiB", -1},
      {"", -1},
      {"GiB", -1},
  };
  for (const Case& c : cases) {
    auto v = ParseMemoryBytes("--memory", c.text);
    if (c.want < 0) {
      EXPECT_FALSE(v.ok()) << c.text;
      if (!v.ok())
        EXPECT_NE(v.status().message().find("--memory"), std::string::npos);
    } else {
      ASSERT_TRUE(v.ok()) << c.text << ": " << v.status();
      EXPECT_EQ(*v, c.want) << c.text;
    }
  }
}

TEST(ResourcesTest, ParseCpuMillis) {
  struct Case {
    const char* text;
    int64_t want;
  } cases[] = {
      {"16", 16000},     {"0.5", 500}, {"2.25", 2250}, {"0.01", 10},
      {"1024", 1024000}, {"1025", -1}, {"0.001", -1},  {"0", -1},
      {"1.2345", -1},    {"-1", -1},   {"1e3", -1},    {"", -1},
      {".5", -1},
  };
  for (const Case& c : cases) {
    auto v = ParseCpuMillis("--cpus", c.text);
    if (c.want < 0) {
      EXPECT_FALSE(v.ok()) << c.text;
    } else {
      ASSERT_TRUE(v.ok()) << c.text << ": " << v.status();
      EXPECT_EQ(*v, c.want) << c.text;
    }
  }
}

TEST(ResourcesTest, Format) {
  EXPECT_EQ(FormatMemoryBytes(64LL << 30), "64GiB");
  EXPECT_EQ(FormatMemoryBytes(1536LL << 20), "1536MiB");
  EXPECT_EQ(FormatMemoryBytes(1000001), "1000001B");
  EXPECT_EQ(FormatCpuMillis(16000), "16");
  EXPECT_EQ(FormatCpuMillis(500), "0.5");
  EXPECT_EQ(FormatCpuMillis(2250), "2.25");
  EXPECT_EQ(FormatCpuMillis(10), "0.01");
}

}  // namespace
}  // namespace joule
