#pragma once

// String helpers of the billing module. Debian's Abseil is built with its own
// absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), so absl::StrCat does
// not take std::string_view; Cat() converts such arguments first.

#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace joule::billing {

template <typename T>
decltype(auto) ToAlphaNumArg(const T& v) {
  if constexpr (std::is_convertible_v<const T&, std::string_view> &&
                !std::is_convertible_v<const T&, absl::string_view>) {
    std::string_view s = v;
    return absl::string_view(s.data(), s.size());
  } else {
    return (v);
  }
}

// absl::StrCat that also takes std::string_view.
template <typename... Args>
std::string Cat(const Args&... args) {
  return absl::StrCat(ToAlphaNumArg(args)...);
}

}  // namespace joule::billing
