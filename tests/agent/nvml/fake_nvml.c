/*
 * A stand-in for the NVIDIA driver's libnvidia-ml.so.1, for tests. It exports
 * the NVML entry points joule-agent's NVML backend uses, with the same C
 * signatures and return codes as NVML's public nvml.h (API version 12), and
 * serves scripted values read from the environment when nvmlInit_v2 runs:
 *
 *   FAKE_NVML_INIT_ERROR=N        nvmlInit_v2 returns N (default 0 = success)
 *   FAKE_NVML_GPUS=N              number of GPUs (default 2, at most 16)
 *   FAKE_NVML_HANDLE_ERROR=N      nvmlDeviceGetHandleByIndex_v2 returns N
 *   FAKE_NVML_NAME=S              model name (default "NVIDIA H100 80GB HBM3")
 *   FAKE_NVML_POWER_MW=N          power draw of GPU 0; GPU i draws N + 1000*i
 *   FAKE_NVML_ENERGY_MJ=N         energy counter at the first read
 *   FAKE_NVML_ENERGY_STEP_MJ=N    counter growth per read (default 1000)
 *   FAKE_NVML_ENERGY_RESET_AFTER=N  the counter restarts from 0 at read N
 *   FAKE_NVML_ENERGY_UNSUPPORTED=1  the energy counter is NOT_SUPPORTED
 *   FAKE_NVML_UTIL_PCT=N          GPU utilization (default 42)
 *   FAKE_NVML_TEMP_C=N            temperature of GPU 0; GPU i is N + i
 *   FAKE_NVML_MEM_TOTAL=N / FAKE_NVML_MEM_USED=N   memory, bytes
 *   FAKE_NVML_MIN_MW=N / FAKE_NVML_MAX_MW=N   power limit constraints
 *   FAKE_NVML_DEFAULT_MW=N        default (and initial enforced) limit
 *   FAKE_NVML_SET_LIMIT_ERROR=N   nvmlDeviceSetPowerManagementLimit returns N
 *   FAKE_NVML_LOST_GPU=I          GPU I falls off the bus (default -1: none)
 *   FAKE_NVML_LOST_AFTER=N        ... at the energy read after N good ones
 *
 * nvmlDeviceSetPowerManagementLimit records the new limit (rejecting values
 * outside the constraints with INVALID_ARGUMENT, as NVML does) and
 * nvmlDeviceGetEnforcedPowerLimit reports it afterwards. Built with
 * -DFAKE_NVML_OMIT_ENERGY, nvmlDeviceGetTotalEnergyConsumption is not
 * exported at all. Not thread-safe: callers serialize, as joule's backend
 * does.
 */
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st* nvmlDevice_t;
typedef struct nvmlUtilization_st {
  unsigned int gpu;
  unsigned int memory;
} nvmlUtilization_t;
typedef struct nvmlMemory_st {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
} nvmlMemory_t;

enum {
  NVML_SUCCESS = 0,
  NVML_ERROR_UNINITIALIZED = 1,
  NVML_ERROR_INVALID_ARGUMENT = 2,
  NVML_ERROR_NOT_SUPPORTED = 3,
  NVML_ERROR_NO_PERMISSION = 4,
  NVML_ERROR_NOT_FOUND = 6,
  NVML_ERROR_INSUFFICIENT_SIZE = 7,
  NVML_ERROR_DRIVER_NOT_LOADED = 9,
  NVML_ERROR_GPU_IS_LOST = 15,
  NVML_ERROR_UNKNOWN = 999
};
enum { NVML_TEMPERATURE_GPU = 0 };

#define FAKE_MAX_GPUS 16

struct nvmlDevice_st {
  unsigned int index;
  unsigned int enforced_mw;
  unsigned long long energy_reads;
  int lost; /* sticky once the GPU fell off the bus */
};

static struct nvmlDevice_st g_devices[FAKE_MAX_GPUS];
static int g_initialized;
static unsigned int g_count;
static int g_handle_error;
static char g_name[96];
static unsigned long long g_power_mw;
static unsigned long long g_energy_mj;
static unsigned long long g_energy_step_mj;
static unsigned long long g_energy_reset_after;
static int g_energy_unsupported;
static unsigned int g_util_pct;
static unsigned int g_temp_c;
static unsigned long long g_mem_total;
static unsigned long long g_mem_used;
static unsigned int g_min_mw;
static unsigned int g_max_mw;
static unsigned int g_default_mw;
static int g_set_limit_error;
static long g_lost_gpu;
static unsigned long long g_lost_after;

static unsigned long long EnvU64(const char* name, unsigned long long dflt) {
  const char* value = getenv(name);
  if (value == NULL || *value == '\0') return dflt;
  return strtoull(value, NULL, 10);
}

static long EnvLong(const char* name, long dflt) {
  const char* value = getenv(name);
  if (value == NULL || *value == '\0') return dflt;
  return strtol(value, NULL, 10);
}

/* A lost GPU fails every call from the energy read that follows its
 * FAKE_NVML_LOST_AFTER successful ones (from the start when that is 0). */
static int IsLost(nvmlDevice_t device) {
  if ((long)device->index == g_lost_gpu && g_lost_after == 0) device->lost = 1;
  return device->lost;
}

/* Common checks for per-device calls. */
#define FAKE_CHECK_DEVICE(device)                        \
  do {                                                   \
    if (!g_initialized) return NVML_ERROR_UNINITIALIZED; \
    if ((device) == NULL || (device) < g_devices ||      \
        (device) >= g_devices + g_count)                 \
      return NVML_ERROR_INVALID_ARGUMENT;                \
    if (IsLost(device)) return NVML_ERROR_GPU_IS_LOST;   \
  } while (0)

nvmlReturn_t nvmlInit_v2(void) {
  int init_error = (int)EnvLong("FAKE_NVML_INIT_ERROR", 0);
  if (init_error != NVML_SUCCESS) return init_error;
  unsigned long long count = EnvU64("FAKE_NVML_GPUS", 2);
  g_count = count > FAKE_MAX_GPUS ? FAKE_MAX_GPUS : (unsigned int)count;
  g_handle_error = (int)EnvLong("FAKE_NVML_HANDLE_ERROR", 0);
  const char* name = getenv("FAKE_NVML_NAME");
  strncpy(g_name, name != NULL ? name : "NVIDIA H100 80GB HBM3",
          sizeof(g_name) - 1);
  g_name[sizeof(g_name) - 1] = '\0';
  g_power_mw = EnvU64("FAKE_NVML_POWER_MW", 123000);
  g_energy_mj = EnvU64("FAKE_NVML_ENERGY_MJ", 5000000);
  g_energy_step_mj = EnvU64("FAKE_NVML_ENERGY_STEP_MJ", 1000);
  g_energy_reset_after = EnvU64("FAKE_NVML_ENERGY_RESET_AFTER", 0);
  g_energy_unsupported = (int)EnvLong("FAKE_NVML_ENERGY_UNSUPPORTED", 0);
  g_util_pct = (unsigned int)EnvU64("FAKE_NVML_UTIL_PCT", 42);
  g_temp_c = (unsigned int)EnvU64("FAKE_NVML_TEMP_C", 55);
  g_mem_total = EnvU64("FAKE_NVML_MEM_TOTAL", 85899345920ULL);
  g_mem_used = EnvU64("FAKE_NVML_MEM_USED", 10737418240ULL);
  g_min_mw = (unsigned int)EnvU64("FAKE_NVML_MIN_MW", 100000);
  g_max_mw = (unsigned int)EnvU64("FAKE_NVML_MAX_MW", 700000);
  g_default_mw = (unsigned int)EnvU64("FAKE_NVML_DEFAULT_MW", g_max_mw);
  g_set_limit_error = (int)EnvLong("FAKE_NVML_SET_LIMIT_ERROR", 0);
  g_lost_gpu = EnvLong("FAKE_NVML_LOST_GPU", -1);
  g_lost_after = EnvU64("FAKE_NVML_LOST_AFTER", 0);
  for (unsigned int i = 0; i < FAKE_MAX_GPUS; ++i) {
    g_devices[i].index = i;
    g_devices[i].enforced_mw = g_default_mw;
    g_devices[i].energy_reads = 0;
    g_devices[i].lost = 0;
  }
  g_initialized = 1;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
  if (!g_initialized) return NVML_ERROR_UNINITIALIZED;
  g_initialized = 0;
  return NVML_SUCCESS;
}

const char* nvmlErrorString(nvmlReturn_t result) {
  switch (result) {
    case NVML_SUCCESS:
      return "Success";
    case NVML_ERROR_UNINITIALIZED:
      return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT:
      return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED:
      return "Not Supported";
    case NVML_ERROR_NO_PERMISSION:
      return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND:
      return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE:
      return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED:
      return "Driver Not Loaded";
    case NVML_ERROR_GPU_IS_LOST:
      return "GPU is lost";
    default:
      return "Unknown Error";
  }
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* count) {
  if (!g_initialized) return NVML_ERROR_UNINITIALIZED;
  if (count == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  *count = g_count;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index,
                                           nvmlDevice_t* device) {
  if (!g_initialized) return NVML_ERROR_UNINITIALIZED;
  if (device == NULL || index >= g_count) return NVML_ERROR_INVALID_ARGUMENT;
  if (g_handle_error != NVML_SUCCESS) return g_handle_error;
  *device = &g_devices[index];
  return NVML_SUCCESS;
}

static nvmlReturn_t CopyString(const char* text, char* out,
                               unsigned int length) {
  if (out == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  if (strlen(text) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
  memcpy(out, text, strlen(text) + 1);
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char* uuid,
                               unsigned int length) {
  FAKE_CHECK_DEVICE(device);
  char text[96];
  /* Shaped like a real GPU UUID. */
  static const char kHex[] = "0123456789abcdef";
  strcpy(text, "GPU-fa4e0000-0000-0000-0000-00000000000");
  text[strlen(text) - 1] = kHex[device->index % 16];
  return CopyString(text, uuid, length);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char* name,
                               unsigned int length) {
  FAKE_CHECK_DEVICE(device);
  return CopyString(g_name, name, length);
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int* power) {
  FAKE_CHECK_DEVICE(device);
  if (power == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  *power = (unsigned int)(g_power_mw + 1000ULL * device->index);
  return NVML_SUCCESS;
}

#ifndef FAKE_NVML_OMIT_ENERGY
nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device,
                                                 unsigned long long* energy) {
  if (g_initialized && device >= g_devices && device < g_devices + g_count &&
      (long)device->index == g_lost_gpu &&
      device->energy_reads >= g_lost_after) {
    device->lost = 1;
  }
  FAKE_CHECK_DEVICE(device);
  if (energy == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  if (g_energy_unsupported) return NVML_ERROR_NOT_SUPPORTED;
  unsigned long long read = device->energy_reads++;
  if (g_energy_reset_after > 0 && read >= g_energy_reset_after) {
    *energy = (read - g_energy_reset_after) * g_energy_step_mj;
  } else {
    *energy = g_energy_mj + read * g_energy_step_mj;
  }
  return NVML_SUCCESS;
}
#endif

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device,
                                           nvmlUtilization_t* utilization) {
  FAKE_CHECK_DEVICE(device);
  if (utilization == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  utilization->gpu = g_util_pct;
  utilization->memory = g_util_pct / 2;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device,
                                     nvmlMemory_t* memory) {
  FAKE_CHECK_DEVICE(device);
  if (memory == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  memory->total = g_mem_total;
  memory->used = g_mem_used;
  memory->free = g_mem_total - g_mem_used;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor_type,
                                      unsigned int* temp) {
  FAKE_CHECK_DEVICE(device);
  if (temp == NULL || sensor_type != NVML_TEMPERATURE_GPU)
    return NVML_ERROR_INVALID_ARGUMENT;
  *temp = g_temp_c + device->index;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device,
                                             unsigned int* limit) {
  FAKE_CHECK_DEVICE(device);
  if (limit == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  *limit = device->enforced_mw;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(
    nvmlDevice_t device, unsigned int* min_limit, unsigned int* max_limit) {
  FAKE_CHECK_DEVICE(device);
  if (min_limit == NULL || max_limit == NULL)
    return NVML_ERROR_INVALID_ARGUMENT;
  *min_limit = g_min_mw;
  *max_limit = g_max_mw;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(
    nvmlDevice_t device, unsigned int* default_limit) {
  FAKE_CHECK_DEVICE(device);
  if (default_limit == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  *default_limit = g_default_mw;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceSetPowerManagementLimit(nvmlDevice_t device,
                                               unsigned int limit) {
  FAKE_CHECK_DEVICE(device);
  if (g_set_limit_error != NVML_SUCCESS) return g_set_limit_error;
  if (limit < g_min_mw || limit > g_max_mw) return NVML_ERROR_INVALID_ARGUMENT;
  device->enforced_mw = limit;
  return NVML_SUCCESS;
}
