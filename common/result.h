// Errors as values: a small expected-like type (C++20 has no std::expected).
#pragma once

#include <cassert>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace cdcp11 {

template <class E>
struct Unexpected {
  E error;
};

template <class E>
Unexpected<std::decay_t<E>> fail(E&& e) {
  return {std::forward<E>(e)};
}

template <class T, class E>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  template <class U>
  Result(Unexpected<U> u) : v_(std::in_place_index<1>, E(std::move(u.error))) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const E& error() const& { assert(!ok()); return std::get<1>(v_); }
  E&& error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, E> v_;
};

template <class E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  template <class U>
  Result(Unexpected<U> u) : err_(E(std::move(u.error))), failed_(true) {}

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const E& error() const& { assert(failed_); return err_; }
  E&& error() && { assert(failed_); return std::move(err_); }

 private:
  E err_{};
  bool failed_ = false;
};

}  // namespace cdcp11

// Propagate an error from an expression returning Result<..., E> compatible with the caller's E.
#define CDC_TRY(expr)                                                   \
  do {                                                                  \
    auto&& cdc_try_r_ = (expr);                                         \
    if (!cdc_try_r_) return ::cdcp11::fail(std::move(cdc_try_r_).error()); \
  } while (0)

#define CDC_CONCAT_INNER(a, b) a##b
#define CDC_CONCAT(a, b) CDC_CONCAT_INNER(a, b)
#define CDC_ASSIGN_IMPL(tmp, lhs, expr)                     \
  auto tmp = (expr);                                        \
  if (!tmp) return ::cdcp11::fail(std::move(tmp).error()); \
  lhs = std::move(tmp).value()
// CDC_ASSIGN(auto x, f()); -> declares x from f()'s value or returns its error.
#define CDC_ASSIGN(lhs, expr) CDC_ASSIGN_IMPL(CDC_CONCAT(cdc_assign_r_, __LINE__), lhs, expr)
