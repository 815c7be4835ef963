// Result<T>: a value, or the reason there is none.
//
// Factories in this code base (identity loading, CRL loading, context building, policy
// parsing) return a fully built object or an error that says what was wrong and, where
// OpenSSL was involved, its error stack. Nothing half-built ever escapes.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace zt {

struct Error {
  std::string message;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const std::string& error() const { return std::get<1>(v_).message; }

 private:
  std::variant<T, Error> v_;
};

// For operations that produce nothing but can fail.
struct Unit {};
using Status = Result<Unit>;
inline Status ok_status() { return Unit{}; }

inline Error fail(std::string message) { return Error{std::move(message)}; }

}  // namespace zt
