#pragma once

// One page of a list reply, so that no reply can exceed a client's message
// limit. Pure.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace joule::daemon {

inline constexpr size_t kMaxPageBytes = 2 << 20;  // 2 MiB per reply
inline constexpr uint32_t kMaxPageSize = 10000;

// Keeps in `items` (sorted by `key`) those after `page_token` (the key of
// the previous page's last item; empty = from the start), at most
// `page_size` of them (0 = no count limit) and at most kMaxPageBytes
// serialized (always at least one). Returns the token of the next page, or
// "" if this page is the last.
template <typename T, typename KeyFn>
absl::StatusOr<std::string> Paginate(std::vector<T>* items, uint32_t page_size,
                                     const std::string& page_token, KeyFn key) {
  if (page_token.size() > 128) {
    return absl::InvalidArgumentError(
        "page_token: not a token this server handed out");
  }
  if (page_size > kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size: ", page_size, " is outside 0..", kMaxPageSize));
  }
  size_t begin = 0;
  if (!page_token.empty()) {
    while (begin < items->size() && key((*items)[begin]) <= page_token) {
      ++begin;
    }
  }
  size_t end = begin, bytes = 0;
  while (end < items->size() && (page_size == 0 || end - begin < page_size)) {
    const size_t b = (*items)[end].ByteSizeLong() + 8;
    if (end > begin && bytes + b > kMaxPageBytes) break;
    bytes += b;
    ++end;
  }
  std::string next = end < items->size() && end > begin
                         ? std::string(key((*items)[end - 1]))
                         : "";
  items->erase(items->begin() + end, items->end());
  items->erase(items->begin(), items->begin() + begin);
  return next;
}

}  // namespace joule::daemon
