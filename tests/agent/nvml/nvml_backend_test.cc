#include "agent/nvml_backend.h"

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Every variable fake_nvml.c reads; cleared around each test.
constexpr const char* kFakeVariables[] = {
    "FAKE_NVML_INIT_ERROR",
    "FAKE_NVML_GPUS",
    "FAKE_NVML_HANDLE_ERROR",
    "FAKE_NVML_NAME",
    "FAKE_NVML_POWER_MW",
    "FAKE_NVML_ENERGY_MJ",
    "FAKE_NVML_ENERGY_STEP_MJ",
    "FAKE_NVML_ENERGY_RESET_AFTER",
    "FAKE_NVML_ENERGY_UNSUPPORTED",
    "FAKE_NVML_UTIL_PCT",
    "FAKE_NVML_TEMP_C",
    "FAKE_NVML_MEM_TOTAL",
    "FAKE_NVML_MEM_USED",
    "FAKE_NVML_MIN_MW",
    "FAKE_NVML_MAX_MW",
    "FAKE_NVML_DEFAULT_MW",
    "FAKE_NVML_SET_LIMIT_ERROR",
    "FAKE_NVML_LOST_GPU",
    "FAKE_NVML_LOST_AFTER",
};

class NvmlBackendTest : public ::testing::Test {
 protected:
  void SetUp() override { ClearFake(); }
  void TearDown() override { ClearFake(); }

  static void ClearFake() {
    for (const char* name : kFakeVariables) unsetenv(name);
  }

  static void Set(const char* name, const std::string& value) {
    setenv(name, value.c_str(), /*overwrite=*/1);
  }

  // The fake reads its script at nvmlInit_v2, i.e. here.
  static std::unique_ptr<GpuBackend> OpenFake() {
    NvmlOptions options;
    options.library = FAKE_NVML_LIB;
    absl::StatusOr<std::unique_ptr<GpuBackend>> backend =
        NewNvmlBackend(options);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? std::move(*backend) : nullptr;
  }

  static absl::Status OpenFakeError(const char* library = FAKE_NVML_LIB) {
    NvmlOptions options;
    options.library = library;
    absl::StatusOr<std::unique_ptr<GpuBackend>> backend =
        NewNvmlBackend(options);
    EXPECT_FALSE(backend.ok());
    return backend.status();
  }
};

TEST_F(NvmlBackendTest, DefaultLibraryIsTheDriversSoname) {
  EXPECT_EQ(NvmlOptions().library, "libnvidia-ml.so.1");
}

TEST_F(NvmlBackendTest, DiscoversGpus) {
  Set("FAKE_NVML_GPUS", "2");
  Set("FAKE_NVML_MIN_MW", "200000");
  Set("FAKE_NVML_MAX_MW", "700000");
  Set("FAKE_NVML_DEFAULT_MW", "650000");
  std::unique_ptr<GpuBackend> backend = OpenFake();
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->Name(), "nvml");
  std::vector<v1::GpuInfo> gpus = backend->Discover();
  ASSERT_EQ(gpus.size(), 2u);
  for (uint32_t i = 0; i < 2; ++i) {
    EXPECT_EQ(gpus[i].index(), i);
    EXPECT_THAT(gpus[i].uuid(), StartsWith("GPU-"));
    EXPECT_EQ(gpus[i].model(), "H100");  // canonical catalogue name
    EXPECT_EQ(gpus[i].memory_total_bytes(), 85899345920u);
    EXPECT_EQ(gpus[i].min_power_limit_mw(), 200000);
    EXPECT_EQ(gpus[i].max_power_limit_mw(), 700000);
    EXPECT_EQ(gpus[i].default_power_limit_mw(), 650000);
  }
  EXPECT_NE(gpus[0].uuid(), gpus[1].uuid());
}

TEST_F(NvmlBackendTest, SamplesTelemetry) {
  Set("FAKE_NVML_GPUS", "2");
  Set("FAKE_NVML_POWER_MW", "123000");
  Set("FAKE_NVML_ENERGY_MJ", "5000000");
  Set("FAKE_NVML_ENERGY_STEP_MJ", "1000");
  Set("FAKE_NVML_UTIL_PCT", "87");
  Set("FAKE_NVML_TEMP_C", "61");
  Set("FAKE_NVML_MEM_USED", "1073741824");
  Set("FAKE_NVML_MIN_MW", "100000");
  Set("FAKE_NVML_MAX_MW", "700000");
  std::unique_ptr<GpuBackend> backend = OpenFake();
  ASSERT_NE(backend, nullptr);

  absl::StatusOr<std::vector<v1::GpuStatus>> sample = backend->Sample();
  ASSERT_TRUE(sample.ok()) << sample.status();
  ASSERT_EQ(sample->size(), 2u);
  for (uint32_t i = 0; i < 2; ++i) {
    const v1::GpuStatus& gpu = (*sample)[i];
    EXPECT_EQ(gpu.index(), i);
    EXPECT_EQ(gpu.uuid(), backend->Discover()[i].uuid());
    EXPECT_EQ(gpu.model(), "H100");
    EXPECT_EQ(gpu.utilization_pct(), 87u);
    EXPECT_EQ(gpu.memory_used_bytes(), 1073741824u);
    EXPECT_EQ(gpu.memory_total_bytes(), 85899345920u);
    EXPECT_EQ(gpu.temperature_c(), 61 + static_cast<int>(i));
    EXPECT_EQ(gpu.power_mw(), 123000 + 1000 * static_cast<int64_t>(i));
    EXPECT_EQ(gpu.energy_mj(), 5000000u);
    EXPECT_EQ(gpu.power_limit_mw(), 700000);  // the default: max
    EXPECT_EQ(gpu.min_power_limit_mw(), 100000);
    EXPECT_EQ(gpu.max_power_limit_mw(), 700000);
    EXPECT_TRUE(gpu.healthy());
    EXPECT_EQ(gpu.health_detail(), "");
  }

  sample = backend->Sample();
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_EQ((*sample)[0].energy_mj(), 5001000u);
}

TEST_F(NvmlBackendTest, SetsPowerLimitAndReadsItBack) {
  std::unique_ptr<GpuBackend> backend = OpenFake();
  ASSERT_NE(backend, nullptr);
  absl::StatusOr<int64_t> enforced = backend->SetPowerLimit(1, 300000);
  ASSERT_TRUE(enforced.ok()) << enforced.status();
  EXPECT_EQ(*enforced, 300000);

  absl::StatusOr<std::vector<v1::GpuStatus>> sample = backend->Sample();
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_EQ((*sample)[0].power_limit_mw(), 700000);
  EXPECT_EQ((*sample)[1].power_limit_mw(), 300000);
}

TEST_F(NvmlBackendTest, ClampsPowerLimitToConstraints) {
  Set("FAKE_NVML_MIN_MW", "150000");
  Set("FAKE_NVML_MAX_MW", "400000");
  std::unique_ptr<GpuBackend> backend = OpenFake();
  ASSERT_NE(backend, nullptr);
  // The fake, like NVML, refuses out-of-range values: success proves the
  // backend clamped before calling it.
  absl::StatusOr<int64_t> enforced = backend->SetPowerLimit(0, 900000);
  ASSERT_TRUE(enforced.ok()) << enforced.status();
  EXPECT_EQ(*enforced, 400000);
  enforced = backend->SetPowerLimit(0, 1000);
  ASSERT_TRUE(enforced.ok()) << enforced.status();
  EXPECT_EQ(*enforced, 150000);
  enforced = backend->SetPowerLimit(0, -5);
  ASSERT_TRUE(enforced.ok()) << enforced.status();
  EXPECT_EQ(*enforced, 150000);
  enforced = backend->SetPowerLimit(0, int64_t{1} << 40);
  ASSERT_TRUE(enforced.ok()) << enforced.status();
  EXPECT_EQ(*enforced, 400000);
}

TEST_F(NvmlBackendTest, PermissionErrorCarriesNvmlWords) {
  Set("FAKE_NVML_SET_LIMIT_ERROR", "4");  // NVML_ERROR_NO_PERMISSION
  std::unique_ptr<GpuBackend> backend = OpenFake();
  ASSERT_NE(backend, nullptr);
  absl::StatusOr<int64_t> enforced = backend->SetPowerLimit(0, 300000);
  ASSERT_FALSE(enforced.ok());
  EXPECT_EQ(enforced.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(enforced.status().message()),
              HasSubstr("Insufficient Permissions"));
  EXPECT_THAT(std::string(enforced.status().message()),
              HasSubstr("CAP_SYS_ADMIN"));
  // Nothing changed, and the backend still works.
  absl::StatusOr<std::vector<v1::GpuStatus>> sample = backend->Sample();
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_EQ((*sample)[0].power_limit_mw(), 700000);
}

TEST_F(NvmlBackendTest, NotSupportedIsFailedPrecondition) {
  Set("FAKE_NVML_SET_LIMIT_ERROR", "3");  // NVML_ERROR_NOT_SUPPORTED
  std::unique_ptr<GpuBackend> backend = OpenFake();
  ASSERT_NE(backend, nullptr);
  absl::StatusOr<int64_t> enforced = backend->SetPowerLimit(0, 300000);
  ASSERT_FALSE(enforced.ok());
  EXPECT_EQ(enforced.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(enforced.status().message()),
              HasSubstr("Not Supported"));
}

TEST_F(NvmlBackendTest, RejectsUnknownGpuIndex) {
  std::unique_ptr<GpuBackend> backend = OpenFake();
  ASSERT_NE(backend, nullptr);
  absl::StatusOr<int64_t> enforced = backend->SetPowerLimit(7, 300000);
  ASSERT_FALSE(enforced.ok());
  EXPECT_EQ(enforced.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(NvmlBackendTest, LostGpuIsUnhealthyOthersKeepReporting) {
  Set("FAKE_NVML_GPUS", "3");
  Set("FAKE_NVML_LOST_GPU", "1");
  std::unique_ptr<GpuBackend> backend = OpenFake();
  ASSERT_NE(backend, nullptr);
  absl::StatusOr<std::vector<v1::GpuStatus>> sample = backend->Sample();
  ASSERT_TRUE(sample.ok()) << sample.status();
  ASSERT_EQ(sample->size(), 3u);
  EXPECT_TRUE((*sample)[0].healthy());
  EXPECT_FALSE((*sample)[1].healthy());
  EXPECT_EQ((*sample)[1].health_detail(), "NVML: GPU is lost");
  EXPECT_EQ((*sample)[1].index(), 1u);
  EXPECT_TRUE((*sample)[2].healthy());
  EXPECT_EQ((*sample)[2].power_mw(), 125000);

  absl::StatusOr<int64_t> enforced = backend->SetPowerLimit(1, 300000);
  ASSERT_FALSE(enforced.ok());
  EXPECT_EQ(enforced.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(enforced.status().message()),
              HasSubstr("GPU is lost"));
  EXPECT_TRUE(backend->SetPowerLimit(2, 300000).ok());
}

TEST_F(NvmlBackendTest, GpuLostMidRunKeepsItsIdentityAndEnergy) {
  Set("FAKE_NVML_LOST_GPU", "0");
  Set("FAKE_NVML_LOST_AFTER", "2");
  Set("FAKE_NVML_ENERGY_MJ", "1000");
  Set("FAKE_NVML_ENERGY_STEP_MJ", "10");
  std::unique_ptr<GpuBackend> backend = OpenFake();
  ASSERT_NE(backend, nullptr);
  uint64_t last_energy = 0;
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::vector<v1::GpuStatus>> sample = backend->Sample();
    ASSERT_TRUE(sample.ok()) << sample.status();
    EXPECT_TRUE((*sample)[0].healthy());
    last_energy = (*sample)[0].energy_mj();
  }
  EXPECT_EQ(last_energy, 1010u);
  absl::StatusOr<std::vector<v1::GpuStatus>> sample = backend->Sample();
  ASSERT_TRUE(sample.ok()) << sample.status();
  const v1::GpuStatus& lost = (*sample)[0];
  EXPECT_FALSE(lost.healthy());
  EXPECT_EQ(lost.health_detail(), "NVML: GPU is lost");
  EXPECT_EQ(lost.uuid(), backend->Discover()[0].uuid());
  EXPECT_EQ(lost.energy_mj(), last_energy);  // never goes back to 0
  EXPECT_TRUE((*sample)[1].healthy());
}

TEST_F(NvmlBackendTest, EnergyStaysMonotonicAcrossCounterReset) {
  Set("FAKE_NVML_ENERGY_MJ", "1000000");
  Set("FAKE_NVML_ENERGY_STEP_MJ", "1000");
  Set("FAKE_NVML_ENERGY_RESET_AFTER", "3");
  std::unique_ptr<GpuBackend> backend = OpenFake();
  ASSERT_NE(backend, nullptr);
  // Raw counter: 1000000, 1001000, 1002000, then 0, 1000, 2000.
  std::vector<uint64_t> energies;
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<std::vector<v1::GpuStatus>> sample = backend->Sample();
    ASSERT_TRUE(sample.ok()) << sample.status();
    energies.push_back((*sample)[0].energy_mj());
  }
  EXPECT_EQ(energies, (std::vector<uint64_t>{1000000, 1001000, 1002000, 1002000,
                                             1003000, 1004000}));
}

TEST_F(NvmlBackendTest, IntegratesPowerWithoutEnergyCounter) {
  Set("FAKE_NVML_ENERGY_UNSUPPORTED", "1");
  Set("FAKE_NVML_POWER_MW", "100000");
  std::unique_ptr<GpuBackend> backend = OpenFake();
  ASSERT_NE(backend, nullptr);
  absl::StatusOr<std::vector<v1::GpuStatus>> first = backend->Sample();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE((*first)[0].healthy());
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  absl::StatusOr<std::vector<v1::GpuStatus>> second = backend->Sample();
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  ASSERT_TRUE(second.ok()) << second.status();
  // 100 W for >= 50 ms is >= 5 J.
  EXPECT_GE((*second)[0].energy_mj(), 5000u);
  EXPECT_LE((*second)[0].energy_mj(),
            static_cast<uint64_t>(100000 * elapsed_s) + 1);
  EXPECT_GE((*second)[0].energy_mj(), (*first)[0].energy_mj());
}

TEST_F(NvmlBackendTest, MissingLibraryIsNamed) {
  absl::Status status = OpenFakeError("/nonexistent/libnvidia-ml.so.1");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(status.message()),
              StartsWith("NVML: cannot load /nonexistent/libnvidia-ml.so.1: "));
}

TEST_F(NvmlBackendTest, MissingSymbolIsNamed) {
  absl::Status status = OpenFakeError(FAKE_NVML_NO_ENERGY_LIB);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(std::string("NVML: symbol "
                                    "nvmlDeviceGetTotalEnergyConsumption "
                                    "missing in ") +
                        FAKE_NVML_NO_ENERGY_LIB));
}

TEST_F(NvmlBackendTest, InitFailureCarriesNvmlWords) {
  Set("FAKE_NVML_INIT_ERROR", "9");  // NVML_ERROR_DRIVER_NOT_LOADED
  absl::Status status = OpenFakeError();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(status.message()), HasSubstr("nvmlInit_v2"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("Driver Not Loaded"));
}

TEST_F(NvmlBackendTest, ZeroGpusIsAnError) {
  Set("FAKE_NVML_GPUS", "0");
  absl::Status status = OpenFakeError();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(status.message()), HasSubstr("no GPUs"));
}

TEST_F(NvmlBackendTest, NoPermissionToOpenGpuIsAnError) {
  Set("FAKE_NVML_HANDLE_ERROR", "4");  // NVML_ERROR_NO_PERMISSION
  absl::Status status = OpenFakeError();
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("Insufficient Permissions"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("GPU 0"));
}

TEST_F(NvmlBackendTest, ReopensAfterDestruction) {
  for (int round = 0; round < 3; ++round) {
    std::unique_ptr<GpuBackend> backend = OpenFake();
    ASSERT_NE(backend, nullptr);
    EXPECT_TRUE(backend->Sample().ok());
  }
}

TEST_F(NvmlBackendTest, SampleAndSetLimitConcurrently) {
  Set("FAKE_NVML_GPUS", "4");
  std::unique_ptr<GpuBackend> backend = OpenFake();
  ASSERT_NE(backend, nullptr);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        if (t % 2 == 0) {
          absl::StatusOr<std::vector<v1::GpuStatus>> sample = backend->Sample();
          if (!sample.ok() || sample->size() != 4) ++failures;
        } else {
          absl::StatusOr<int64_t> enforced =
              backend->SetPowerLimit(i % 4, 200000 + 1000 * i);
          if (!enforced.ok() || *enforced != 200000 + 1000 * i) ++failures;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace joule::agent
