#include "agent/nvml_backend.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/gpu_catalog.h"

namespace joule::agent {
namespace {

// The slice of NVML's public C API (nvml.h, API version 12) this backend
// uses, declared here so that building never needs NVML's header or library.
// nvmlReturn_t and nvmlTemperatureSensors_t are C enums: int-sized on every
// supported ABI.
using NvmlReturn = int;                    // nvmlReturn_t
using NvmlDevice = struct nvmlDevice_st*;  // nvmlDevice_t (opaque)
using NvmlTemperatureSensor = int;         // nvmlTemperatureSensors_t

constexpr NvmlReturn kNvmlSuccess = 0;
constexpr NvmlReturn kNvmlErrorUninitialized = 1;
constexpr NvmlReturn kNvmlErrorInvalidArgument = 2;
constexpr NvmlReturn kNvmlErrorNotSupported = 3;
constexpr NvmlReturn kNvmlErrorNoPermission = 4;
constexpr NvmlReturn kNvmlErrorDriverNotLoaded = 9;
constexpr NvmlReturn kNvmlErrorGpuIsLost = 15;
constexpr NvmlReturn kNvmlErrorLibRmVersionMismatch = 18;
constexpr NvmlReturn kNvmlErrorNoData = 21;
constexpr NvmlReturn kNvmlErrorUnknown = 999;
constexpr NvmlTemperatureSensor kNvmlTemperatureGpu = 0;
// NVML_DEVICE_UUID_V2_BUFFER_SIZE and NVML_DEVICE_NAME_V2_BUFFER_SIZE.
constexpr unsigned int kNvmlUuidBufferSize = 96;
constexpr unsigned int kNvmlNameBufferSize = 96;

// nvmlUtilization_t: percentages over the driver's last sample period.
struct NvmlUtilization {
  unsigned int gpu;
  unsigned int memory;
};

// nvmlMemory_t (v1): bytes.
struct NvmlMemory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

// Entry points resolved with dlsym. All are required.
struct NvmlApi {
  NvmlReturn (*init_v2)();
  NvmlReturn (*shutdown)();
  NvmlReturn (*device_get_count_v2)(unsigned int* count);
  NvmlReturn (*device_get_handle_by_index_v2)(unsigned int index,
                                              NvmlDevice* device);
  NvmlReturn (*device_get_uuid)(NvmlDevice device, char* uuid,
                                unsigned int length);
  NvmlReturn (*device_get_name)(NvmlDevice device, char* name,
                                unsigned int length);
  NvmlReturn (*device_get_power_usage)(NvmlDevice device, unsigned int* mw);
  NvmlReturn (*device_get_total_energy_consumption)(NvmlDevice device,
                                                    unsigned long long* mj);
  NvmlReturn (*device_get_utilization_rates)(NvmlDevice device,
                                             NvmlUtilization* utilization);
  NvmlReturn (*device_get_memory_info)(NvmlDevice device, NvmlMemory* memory);
  NvmlReturn (*device_get_temperature)(NvmlDevice device,
                                       NvmlTemperatureSensor sensor,
                                       unsigned int* celsius);
  NvmlReturn (*device_get_enforced_power_limit)(NvmlDevice device,
                                                unsigned int* mw);
  NvmlReturn (*device_get_power_management_limit_constraints)(
      NvmlDevice device, unsigned int* min_mw, unsigned int* max_mw);
  NvmlReturn (*device_get_power_management_default_limit)(NvmlDevice device,
                                                          unsigned int* mw);
  NvmlReturn (*device_set_power_management_limit)(NvmlDevice device,
                                                  unsigned int mw);
  const char* (*error_string)(NvmlReturn result);
};

// Resolves every entry point of `api`; names each missing symbol.
absl::Status ResolveApi(void* library, const std::string& library_name,
                        NvmlApi* api) {
  std::vector<std::string> missing;
  auto resolve = [&](const char* symbol, auto* fn) {
    using Fn = std::remove_pointer_t<decltype(fn)>;
    void* address = dlsym(library, symbol);
    if (address == nullptr) {
      missing.push_back(symbol);
      *fn = nullptr;
      return;
    }
    *fn = reinterpret_cast<Fn>(address);
  };
  resolve("nvmlInit_v2", &api->init_v2);
  resolve("nvmlShutdown", &api->shutdown);
  resolve("nvmlDeviceGetCount_v2", &api->device_get_count_v2);
  resolve("nvmlDeviceGetHandleByIndex_v2", &api->device_get_handle_by_index_v2);
  resolve("nvmlDeviceGetUUID", &api->device_get_uuid);
  resolve("nvmlDeviceGetName", &api->device_get_name);
  resolve("nvmlDeviceGetPowerUsage", &api->device_get_power_usage);
  resolve("nvmlDeviceGetTotalEnergyConsumption",
          &api->device_get_total_energy_consumption);
  resolve("nvmlDeviceGetUtilizationRates", &api->device_get_utilization_rates);
  resolve("nvmlDeviceGetMemoryInfo", &api->device_get_memory_info);
  resolve("nvmlDeviceGetTemperature", &api->device_get_temperature);
  resolve("nvmlDeviceGetEnforcedPowerLimit",
          &api->device_get_enforced_power_limit);
  resolve("nvmlDeviceGetPowerManagementLimitConstraints",
          &api->device_get_power_management_limit_constraints);
  resolve("nvmlDeviceGetPowerManagementDefaultLimit",
          &api->device_get_power_management_default_limit);
  resolve("nvmlDeviceSetPowerManagementLimit",
          &api->device_set_power_management_limit);
  resolve("nvmlErrorString", &api->error_string);
  if (missing.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("NVML: ", missing.size() == 1 ? "symbol " : "symbols ",
                   absl::StrJoin(missing, ", "), " missing in ", library_name,
                   " (driver too old for this agent?)"));
}

// NVML's own words for `rc`, safe to call with any code.
std::string ErrorWords(const NvmlApi& api, NvmlReturn rc) {
  const char* words =
      api.error_string != nullptr ? api.error_string(rc) : nullptr;
  if (words == nullptr || *words == '\0') {
    return absl::StrCat("NVML error ", rc);
  }
  return words;
}

// The absl code that fits an NVML failure.
absl::StatusCode CodeFor(NvmlReturn rc) {
  switch (rc) {
    case kNvmlErrorNoPermission:
      return absl::StatusCode::kPermissionDenied;
    case kNvmlErrorNotSupported:
      return absl::StatusCode::kFailedPrecondition;
    case kNvmlErrorInvalidArgument:
      return absl::StatusCode::kInvalidArgument;
    case kNvmlErrorUninitialized:
    case kNvmlErrorDriverNotLoaded:
    case kNvmlErrorGpuIsLost:
    case kNvmlErrorLibRmVersionMismatch:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kInternal;
  }
}

// Errors that mean NVML as a whole no longer works, not one GPU.
bool IsBackendWide(NvmlReturn rc) {
  return rc == kNvmlErrorUninitialized || rc == kNvmlErrorDriverNotLoaded ||
         rc == kNvmlErrorLibRmVersionMismatch;
}

// Telemetry a GPU simply does not offer: the field stays 0, the GPU healthy.
bool IsUnavailable(NvmlReturn rc) {
  return rc == kNvmlErrorNotSupported || rc == kNvmlErrorNoData ||
         rc == kNvmlErrorNoPermission;
}

// Reads a NUL-terminated string through an NVML getter.
template <typename Getter>
NvmlReturn ReadString(Getter getter, NvmlDevice device, unsigned int size,
                      std::string* out) {
  std::string buffer(size, '\0');
  NvmlReturn rc = getter(device, buffer.data(), size);
  if (rc != kNvmlSuccess) return rc;
  const size_t end = buffer.find('\0');
  if (end != std::string::npos) buffer.resize(end);
  *out = std::move(buffer);
  return rc;
}

// One GPU as the backend tracks it between samples.
struct GpuState {
  NvmlDevice handle = nullptr;  // null while the GPU could not be opened
  NvmlReturn open_error = kNvmlSuccess;
  std::string uuid;
  std::string model;
  int64_t min_limit_mw = 0;
  int64_t max_limit_mw = 0;
  int64_t last_limit_mw = 0;
  // Energy: the driver counter restarts from 0 when the driver reloads (or
  // the counter wraps); offset_mj carries what was counted before.
  bool have_raw = false;
  uint64_t last_raw_mj = 0;
  uint64_t offset_mj = 0;
  uint64_t reported_mj = 0;  // never decreases
  // Fallback on GPUs without an energy counter: power integrated over time.
  std::optional<std::chrono::steady_clock::time_point> last_integration;
  uint64_t integrated_uj = 0;
};

// The NVML GpuBackend. Owns the dlopen handle and one nvmlInit_v2 reference,
// both released on destruction. Invariants: gpus_ holds one entry per GPU
// NVML counted at creation, in index order; every GPU's reported energy
// never decreases. Thread-safe: all NVML calls and per-GPU state are guarded
// by mu_; infos_ is immutable after creation.
class NvmlBackend final : public GpuBackend {
 public:
  NvmlBackend(void* library, const NvmlApi& api, std::vector<GpuState> gpus,
              std::vector<v1::GpuInfo> infos)
      : library_(library),
        api_(api),
        infos_(std::move(infos)),
        gpus_(std::move(gpus)) {}

  ~NvmlBackend() override {
    api_.shutdown();
    dlclose(library_);
  }

  NvmlBackend(const NvmlBackend&) = delete;
  NvmlBackend& operator=(const NvmlBackend&) = delete;

  std::string Name() const override { return "nvml"; }

  std::vector<v1::GpuInfo> Discover() const override { return infos_; }

  absl::StatusOr<std::vector<v1::GpuStatus>> Sample() override {
    absl::MutexLock lock(&mu_);
    std::vector<v1::GpuStatus> out;
    out.reserve(gpus_.size());
    for (uint32_t i = 0; i < gpus_.size(); ++i) {
      v1::GpuStatus status;
      absl::Status wide = SampleOne(i, &status);
      if (!wide.ok()) return wide;
      out.push_back(std::move(status));
    }
    return out;
  }

  absl::StatusOr<int64_t> SetPowerLimit(uint32_t index,
                                        int64_t limit_mw) override {
    absl::MutexLock lock(&mu_);
    if (index >= gpus_.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "NVML: no GPU ", index, " (this node has ", gpus_.size(), ")"));
    }
    GpuState& gpu = gpus_[index];
    if (gpu.handle == nullptr && !Open(index, gpu)) {
      return Error(gpu.open_error, absl::StrCat("cannot open GPU ", index));
    }
    unsigned int min_mw = 0;
    unsigned int max_mw = 0;
    NvmlReturn rc = api_.device_get_power_management_limit_constraints(
        gpu.handle, &min_mw, &max_mw);
    if (rc != kNvmlSuccess) {
      return Error(
          rc, absl::StrCat("cannot read the power limit range of GPU ", index));
    }
    if (min_mw > max_mw) {
      return absl::FailedPreconditionError(
          absl::StrCat("NVML: GPU ", index,
                       " reports an empty power limit "
                       "range [",
                       min_mw, ", ", max_mw, "] mW"));
    }
    gpu.min_limit_mw = min_mw;
    gpu.max_limit_mw = max_mw;
    const int64_t target = std::clamp<int64_t>(limit_mw, min_mw, max_mw);
    rc = api_.device_set_power_management_limit(
        gpu.handle, static_cast<unsigned int>(target));
    if (rc != kNvmlSuccess) {
      std::string context = absl::StrCat("cannot set the power limit of GPU ",
                                         index, " to ", target, " mW");
      absl::Status error = Error(rc, context);
      if (rc == kNvmlErrorNoPermission) {
        error = absl::PermissionDeniedError(
            absl::StrCat(error.message(),
                         " (setting power limits needs root or "
                         "CAP_SYS_ADMIN)"));
      }
      return error;
    }
    unsigned int enforced_mw = 0;
    rc = api_.device_get_enforced_power_limit(gpu.handle, &enforced_mw);
    if (rc != kNvmlSuccess) {
      return Error(rc, absl::StrCat("set the power limit of GPU ", index,
                                    " but cannot read it back"));
    }
    gpu.last_limit_mw = enforced_mw;
    return static_cast<int64_t>(enforced_mw);
  }

 private:
  // "NVML: <context>: <NVML's words>" with the code that fits.
  absl::Status Error(NvmlReturn rc, absl::string_view context) const {
    return absl::Status(CodeFor(rc), absl::StrCat("NVML: ", context, ": ",
                                                  ErrorWords(api_, rc)));
  }

  // Tries to (re)open GPU `index`; false (with gpu.open_error) on failure.
  bool Open(uint32_t index, GpuState& gpu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    NvmlDevice handle = nullptr;
    NvmlReturn rc = api_.device_get_handle_by_index_v2(index, &handle);
    if (rc == kNvmlSuccess && handle == nullptr) rc = kNvmlErrorUnknown;
    gpu.open_error = rc;
    if (rc != kNvmlSuccess) return false;
    gpu.handle = handle;
    return true;
  }

  // Fills `status` for GPU `index`. A GPU-level failure marks it unhealthy;
  // only a failure of NVML as a whole comes back as an error.
  absl::Status SampleOne(uint32_t index, v1::GpuStatus* status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    GpuState& gpu = gpus_[index];
    status->set_index(index);
    status->set_healthy(true);
    status->set_min_power_limit_mw(gpu.min_limit_mw);
    status->set_max_power_limit_mw(gpu.max_limit_mw);
    status->set_power_limit_mw(gpu.last_limit_mw);

    // Returns true when the value was read. NOT_SUPPORTED-like codes leave
    // the field at 0; any other code ends this GPU's sample.
    NvmlReturn failed = kNvmlSuccess;
    const char* failed_call = "";
    auto read = [&](NvmlReturn rc, const char* call) {
      if (rc == kNvmlSuccess) return true;
      if (!IsUnavailable(rc)) {
        failed = rc;
        failed_call = call;
      }
      return false;
    };

    do {
      if (gpu.handle == nullptr && !Open(index, gpu)) {
        failed = gpu.open_error;  // never kNvmlSuccess after a failed Open
        failed_call = "nvmlDeviceGetHandleByIndex_v2";
        break;
      }
      if (gpu.uuid.empty()) {
        if (!read(ReadString(api_.device_get_uuid, gpu.handle,
                             kNvmlUuidBufferSize, &gpu.uuid),
                  "nvmlDeviceGetUUID") &&
            failed != kNvmlSuccess) {
          break;
        }
      }
      if (gpu.model.empty()) {
        if (!read(ReadString(api_.device_get_name, gpu.handle,
                             kNvmlNameBufferSize, &gpu.model),
                  "nvmlDeviceGetName") &&
            failed != kNvmlSuccess) {
          break;
        }
      }

      unsigned int power_mw = 0;
      bool have_power = read(api_.device_get_power_usage(gpu.handle, &power_mw),
                             "nvmlDeviceGetPowerUsage");
      if (failed != kNvmlSuccess) break;
      if (have_power) status->set_power_mw(power_mw);

      unsigned long long energy_mj = 0;
      NvmlReturn energy_rc =
          api_.device_get_total_energy_consumption(gpu.handle, &energy_mj);
      if (read(energy_rc, "nvmlDeviceGetTotalEnergyConsumption")) {
        AccountCounter(gpu, energy_mj);
      } else if (failed != kNvmlSuccess) {
        break;
      } else if (have_power) {
        Integrate(gpu, power_mw);
      }

      NvmlUtilization utilization{};
      if (read(api_.device_get_utilization_rates(gpu.handle, &utilization),
               "nvmlDeviceGetUtilizationRates")) {
        status->set_utilization_pct(std::min(utilization.gpu, 100u));
      }
      if (failed != kNvmlSuccess) break;

      NvmlMemory memory{};
      if (read(api_.device_get_memory_info(gpu.handle, &memory),
               "nvmlDeviceGetMemoryInfo")) {
        status->set_memory_used_bytes(memory.used);
        status->set_memory_total_bytes(memory.total);
      }
      if (failed != kNvmlSuccess) break;

      unsigned int celsius = 0;
      if (read(api_.device_get_temperature(gpu.handle, kNvmlTemperatureGpu,
                                           &celsius),
               "nvmlDeviceGetTemperature")) {
        status->set_temperature_c(static_cast<int32_t>(celsius));
      }
      if (failed != kNvmlSuccess) break;

      unsigned int limit_mw = 0;
      if (read(api_.device_get_enforced_power_limit(gpu.handle, &limit_mw),
               "nvmlDeviceGetEnforcedPowerLimit")) {
        gpu.last_limit_mw = limit_mw;
        status->set_power_limit_mw(limit_mw);
      }
      if (failed != kNvmlSuccess) break;

      unsigned int min_mw = 0;
      unsigned int max_mw = 0;
      if (read(api_.device_get_power_management_limit_constraints(
                   gpu.handle, &min_mw, &max_mw),
               "nvmlDeviceGetPowerManagementLimitConstraints")) {
        gpu.min_limit_mw = min_mw;
        gpu.max_limit_mw = max_mw;
        status->set_min_power_limit_mw(min_mw);
        status->set_max_power_limit_mw(max_mw);
      }
    } while (false);

    status->set_uuid(gpu.uuid);
    status->set_model(CanonicalGpuModel(gpu.model));
    status->set_energy_mj(gpu.reported_mj);
    if (failed == kNvmlSuccess) return absl::OkStatus();
    if (IsBackendWide(failed)) {
      return absl::UnavailableError(
          absl::StrCat("NVML: ", failed_call, " on GPU ", index, ": ",
                       ErrorWords(api_, failed),
                       " (NVML is unusable; restart the agent once the "
                       "driver is back)"));
    }
    status->set_healthy(false);
    if (failed == kNvmlErrorGpuIsLost) {
      status->set_health_detail(
          absl::StrCat("NVML: ", ErrorWords(api_, failed)));
    } else {
      status->set_health_detail(
          absl::StrCat("NVML: ", failed_call, ": ", ErrorWords(api_, failed)));
    }
    return absl::OkStatus();
  }

  // Folds a raw reading of the driver's energy counter into the reported,
  // never-decreasing value. A reading below the previous one means the
  // counter restarted from 0 (driver reload, reset or wrap).
  static void AccountCounter(GpuState& gpu, uint64_t raw_mj) {
    if (gpu.have_raw && raw_mj < gpu.last_raw_mj) {
      gpu.offset_mj += gpu.last_raw_mj;
    }
    gpu.have_raw = true;
    gpu.last_raw_mj = raw_mj;
    gpu.reported_mj = std::max(gpu.reported_mj, gpu.offset_mj + raw_mj);
  }

  // Without an energy counter (pre-Volta GPUs), integrates power over the
  // time between samples. The first sample only starts the clock.
  static void Integrate(GpuState& gpu, unsigned int power_mw) {
    const auto now = std::chrono::steady_clock::now();
    if (gpu.last_integration.has_value()) {
      const int64_t elapsed_us =
          std::chrono::duration_cast<std::chrono::microseconds>(
              now - *gpu.last_integration)
              .count();
      // mW * us = nJ; / 1000 = uJ.
      gpu.integrated_uj +=
          static_cast<uint64_t>(power_mw) *
          static_cast<uint64_t>(std::max<int64_t>(elapsed_us, 0)) / 1000;
    }
    gpu.last_integration = now;
    gpu.reported_mj = std::max(gpu.reported_mj, gpu.integrated_uj / 1000);
  }

  void* const library_;  // from dlopen
  const NvmlApi api_;
  const std::vector<v1::GpuInfo> infos_;

  absl::Mutex mu_;
  std::vector<GpuState> gpus_ ABSL_GUARDED_BY(mu_);
};

// Releases a dlopen handle, and NVML's initialization, unless disarmed.
class LoadGuard {
 public:
  explicit LoadGuard(void* library) : library_(library) {}
  ~LoadGuard() {
    if (shutdown_ != nullptr) shutdown_();
    if (library_ != nullptr) dlclose(library_);
  }
  LoadGuard(const LoadGuard&) = delete;
  LoadGuard& operator=(const LoadGuard&) = delete;

  void Initialized(NvmlReturn (*shutdown)()) { shutdown_ = shutdown; }
  void Release() {
    library_ = nullptr;
    shutdown_ = nullptr;
  }

 private:
  void* library_;
  NvmlReturn (*shutdown_)() = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GpuBackend>> NewNvmlBackend(
    const NvmlOptions& options) {
  const std::string& name = options.library;
  if (name.empty()) {
    return absl::InvalidArgumentError("NVML: no library name given");
  }
  dlerror();  // Clears any stale error.
  void* library = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* why = dlerror();
    return absl::NotFoundError(
        absl::StrCat("NVML: cannot load ", name, ": ",
                     why != nullptr ? why : "unknown dlopen error",
                     " (is the NVIDIA driver installed?)"));
  }
  LoadGuard guard(library);

  NvmlApi api{};
  if (absl::Status resolved = ResolveApi(library, name, &api); !resolved.ok()) {
    return resolved;
  }

  NvmlReturn rc = api.init_v2();
  if (rc != kNvmlSuccess) {
    return absl::Status(
        rc == kNvmlErrorNoPermission ? absl::StatusCode::kPermissionDenied
                                     : absl::StatusCode::kUnavailable,
        absl::StrCat("NVML: nvmlInit_v2 failed: ", ErrorWords(api, rc),
                     " (is the NVIDIA kernel driver loaded and /dev/nvidia* "
                     "accessible?)"));
  }
  guard.Initialized(api.shutdown);

  unsigned int count = 0;
  rc = api.device_get_count_v2(&count);
  if (rc != kNvmlSuccess) {
    return absl::Status(CodeFor(rc),
                        absl::StrCat("NVML: nvmlDeviceGetCount_v2 failed: ",
                                     ErrorWords(api, rc)));
  }
  if (count == 0) {
    return absl::NotFoundError(
        "NVML: no GPUs found (nvmlDeviceGetCount_v2 returned 0)");
  }

  std::vector<GpuState> gpus(count);
  std::vector<v1::GpuInfo> infos(count);
  for (unsigned int i = 0; i < count; ++i) {
    GpuState& gpu = gpus[i];
    v1::GpuInfo& info = infos[i];
    info.set_index(i);
    NvmlDevice handle = nullptr;
    rc = api.device_get_handle_by_index_v2(i, &handle);
    if (rc == kNvmlErrorNoPermission) {
      return absl::PermissionDeniedError(
          absl::StrCat("NVML: no permission to open GPU ", i,
                       " (nvmlDeviceGetHandleByIndex_v2: ", ErrorWords(api, rc),
                       "); the agent needs read-write access to /dev/nvidia*"));
    }
    if (rc != kNvmlSuccess || handle == nullptr) {
      // Lost or broken already: kept, and reported unhealthy by Sample().
      gpu.open_error = rc;
      continue;
    }
    gpu.handle = handle;
    ReadString(api.device_get_uuid, handle, kNvmlUuidBufferSize, &gpu.uuid);
    ReadString(api.device_get_name, handle, kNvmlNameBufferSize, &gpu.model);
    info.set_uuid(gpu.uuid);
    info.set_model(CanonicalGpuModel(gpu.model));
    NvmlMemory memory{};
    if (api.device_get_memory_info(handle, &memory) == kNvmlSuccess) {
      info.set_memory_total_bytes(memory.total);
    }
    unsigned int min_mw = 0;
    unsigned int max_mw = 0;
    if (api.device_get_power_management_limit_constraints(
            handle, &min_mw, &max_mw) == kNvmlSuccess) {
      gpu.min_limit_mw = min_mw;
      gpu.max_limit_mw = max_mw;
      info.set_min_power_limit_mw(min_mw);
      info.set_max_power_limit_mw(max_mw);
    }
    unsigned int default_mw = 0;
    if (api.device_get_power_management_default_limit(handle, &default_mw) ==
        kNvmlSuccess) {
      info.set_default_power_limit_mw(default_mw);
    }
    unsigned int enforced_mw = 0;
    if (api.device_get_enforced_power_limit(handle, &enforced_mw) ==
        kNvmlSuccess) {
      gpu.last_limit_mw = enforced_mw;
    }
  }

  guard.Release();
  return std::unique_ptr<GpuBackend>(
      new NvmlBackend(library, api, std::move(gpus), std::move(infos)));
}

}  // namespace joule::agent
