// SPDX-License-Identifier: MIT
// A small JSON value, parser and writer (RFC 8259), for the npc_runtime protocol core.
//
// Plain C++17, no exceptions, no RTTI, no third-party code: it compiles into an Unreal module as
// well as with g++. Malformed input never crashes: Parse() returns an error value with the byte
// offset and a message. Objects keep their keys in document order (duplicates: the last one wins
// on lookup, as most parsers do).
#pragma once

#include "NpcCoreApi.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace npc::json {

enum class Type : std::uint8_t { Null, Bool, Number, String, Array, Object };

class Value;
using Array = std::vector<Value>;
using Member = std::pair<std::string, Value>;
using Object = std::vector<Member>;

/// A JSON value. Cheap to move; copying copies the whole tree.
class NPC_CORE_API Value {
 public:
  Value() = default;  // null
  Value(std::nullptr_t) {}
  Value(bool b) : type_(Type::Bool), bool_(b) {}
  Value(double n) : type_(Type::Number), number_(n) {}
  Value(int n) : type_(Type::Number), number_(n) {}
  Value(std::int64_t n) : type_(Type::Number), number_(static_cast<double>(n)) {}
  Value(const char* s) : type_(Type::String), string_(s) {}
  Value(std::string s) : type_(Type::String), string_(std::move(s)) {}
  Value(std::string_view s) : type_(Type::String), string_(s) {}
  Value(Array a) : type_(Type::Array), array_(std::make_shared<Array>(std::move(a))) {}
  Value(Object o) : type_(Type::Object), object_(std::make_shared<Object>(std::move(o))) {}
  Value(const Value& other);
  Value& operator=(const Value& other);
  Value(Value&&) noexcept = default;
  Value& operator=(Value&&) noexcept = default;

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  /// The value, or the fallback when it has another type.
  bool as_bool(bool fallback = false) const { return is_bool() ? bool_ : fallback; }
  double as_number(double fallback = 0.0) const { return is_number() ? number_ : fallback; }
  const std::string& as_string() const;  // "" unless a string
  const Array& as_array() const;          // empty unless an array
  const Object& as_object() const;        // empty unless an object

  /// Member lookup on an object: nullptr when absent (or not an object).
  const Value* find(std::string_view key) const;

  /// Builders for objects and arrays.
  Value& set(std::string key, Value value);  // turns a null into an object; replaces an existing key
  Value& push(Value value);                  // turns a null into an array

  friend bool operator==(const Value& a, const Value& b);
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }

 private:
  Type type_ = Type::Null;
  bool bool_ = false;
  double number_ = 0.0;
  std::string string_;
  std::shared_ptr<Array> array_;    // owned: deep-copied on copy
  std::shared_ptr<Object> object_;  // owned: deep-copied on copy
};

/// What Parse() returns: a value, or an error with the byte offset where it was found.
struct NPC_CORE_API ParseResult {
  Value value;
  std::string error;  // empty on success
  std::size_t offset = 0;
  bool ok() const { return error.empty(); }
};

/// Largest nesting depth Parse() accepts (deeper input is an error, never a stack overflow).
constexpr int kMaxDepth = 64;

/// Parses one JSON document (UTF-8; surrounding whitespace allowed, nothing else after it).
NPC_CORE_API ParseResult Parse(std::string_view text);

/// Compact JSON text of a value (UTF-8 out; control characters escaped; numbers round-trip;
/// non-finite numbers are written as null, as JSON has no NaN/Infinity).
NPC_CORE_API std::string Dump(const Value& value);

/// Appends a JSON string literal (with quotes) for `s` to `out`.
NPC_CORE_API void AppendQuoted(std::string& out, std::string_view s);

}  // namespace npc::json
