// SPDX-License-Identifier: MIT
#include "NpcJson.h"

#include <clocale>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace npc::json {

// ---------------------------------------------------------------------------------------------
// Value

Value::Value(const Value& other)
    : type_(other.type_), bool_(other.bool_), number_(other.number_), string_(other.string_) {
  if (other.array_) array_ = std::make_shared<Array>(*other.array_);
  if (other.object_) object_ = std::make_shared<Object>(*other.object_);
}

Value& Value::operator=(const Value& other) {
  if (this != &other) {
    Value copy(other);
    *this = std::move(copy);
  }
  return *this;
}

const std::string& Value::as_string() const {
  static const std::string kEmpty;
  return is_string() ? string_ : kEmpty;
}

const Array& Value::as_array() const {
  static const Array kEmpty;
  return is_array() && array_ ? *array_ : kEmpty;
}

const Object& Value::as_object() const {
  static const Object kEmpty;
  return is_object() && object_ ? *object_ : kEmpty;
}

const Value* Value::find(std::string_view key) const {
  if (!is_object() || !object_) return nullptr;
  for (auto it = object_->rbegin(); it != object_->rend(); ++it) {  // last duplicate wins
    if (it->first == key) return &it->second;
  }
  return nullptr;
}

Value& Value::set(std::string key, Value value) {
  if (!is_object()) *this = Value(Object{});
  for (auto& member : *object_) {
    if (member.first == key) {
      member.second = std::move(value);
      return *this;
    }
  }
  object_->emplace_back(std::move(key), std::move(value));
  return *this;
}

Value& Value::push(Value value) {
  if (!is_array()) *this = Value(Array{});
  array_->push_back(std::move(value));
  return *this;
}

bool operator==(const Value& a, const Value& b) {
  if (a.type_ != b.type_) return false;
  switch (a.type_) {
    case Type::Null: return true;
    case Type::Bool: return a.bool_ == b.bool_;
    case Type::Number: return a.number_ == b.number_;
    case Type::String: return a.string_ == b.string_;
    case Type::Array: return a.as_array() == b.as_array();
    case Type::Object: return a.as_object() == b.as_object();
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Numbers, independent of the C locale's decimal point (as cJSON does).

namespace {

char LocaleDecimalPoint() {
  const std::lconv* lc = std::localeconv();
  return (lc && lc->decimal_point && lc->decimal_point[0]) ? lc->decimal_point[0] : '.';
}

bool StrToDouble(std::string_view text, double& out) {
  char buf[64];
  if (text.empty() || text.size() >= sizeof(buf)) {
    std::string big(text);  // long numbers are rare: take the slow path
    const char point = LocaleDecimalPoint();
    for (char& c : big) if (c == '.') c = point;
    char* end = nullptr;
    out = std::strtod(big.c_str(), &end);
    return end == big.c_str() + big.size();
  }
  const char point = LocaleDecimalPoint();
  for (std::size_t i = 0; i < text.size(); ++i) buf[i] = text[i] == '.' ? point : text[i];
  buf[text.size()] = '\0';
  char* end = nullptr;
  out = std::strtod(buf, &end);
  return end == buf + text.size();
}

void AppendNumber(std::string& out, double n) {
  if (!std::isfinite(n)) {
    out += "null";
    return;
  }
  if (n == std::floor(n) && std::fabs(n) < 9007199254740992.0) {  // integral and exact: no ".0"
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(n));
    out += buf;
    return;
  }
  char buf[40];
  for (int precision : {15, 17}) {  // the shorter form when it reads back as the same double
    std::snprintf(buf, sizeof(buf), "%.*g", precision, n);
    const char point = LocaleDecimalPoint();
    for (char* c = buf; *c; ++c) if (*c == point) *c = '.';
    double back = 0.0;
    if (precision == 17 || (StrToDouble(buf, back) && back == n)) break;
  }
  out += buf;
}

// ---------------------------------------------------------------------------------------------
// Parser

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  ParseResult Run() {
    ParseResult result;
    SkipSpace();
    if (!ParseValue(result.value, 0)) return Fail(result);
    SkipSpace();
    if (pos_ != s_.size()) {
      error_ = "unexpected characters after the JSON value";
      return Fail(result);
    }
    return result;
  }

 private:
  ParseResult Fail(ParseResult& result) {
    result.value = Value();
    result.error = error_.empty() ? "invalid JSON" : error_;
    result.offset = pos_;
    return std::move(result);
  }

  bool Error(const char* message) {
    if (error_.empty()) error_ = message;
    return false;
  }

  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }

  bool Literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return Error("invalid literal");
    pos_ += word.size();
    return true;
  }

  bool ParseValue(Value& out, int depth) {
    if (pos_ >= s_.size()) return Error("unexpected end of input");
    switch (s_[pos_]) {
      case 'n': out = Value(); return Literal("null");
      case 't': out = Value(true); return Literal("true");
      case 'f': out = Value(false); return Literal("false");
      case '"': {
        std::string str;
        if (!ParseString(str)) return false;
        out = Value(std::move(str));
        return true;
      }
      case '[': return ParseArray(out, depth + 1);
      case '{': return ParseObject(out, depth + 1);
      default:
        if (s_[pos_] == '-' || (s_[pos_] >= '0' && s_[pos_] <= '9')) return ParseNumber(out);
        return Error("unexpected character");
    }
  }

  bool Digits() {
    const std::size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    return pos_ > start;
  }

  bool ParseNumber(Value& out) {
    const std::size_t start = pos_;
    if (s_[pos_] == '-') ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '0') {
      ++pos_;
      if (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') return Error("leading zero in a number");
    } else if (!Digits()) {
      return Error("invalid number");
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (!Digits()) return Error("invalid number: digits expected after '.'");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!Digits()) return Error("invalid number: digits expected in the exponent");
    }
    double n = 0.0;
    if (!StrToDouble(s_.substr(start, pos_ - start), n)) return Error("invalid number");
    if (!std::isfinite(n)) return Error("number out of range");
    out = Value(n);
    return true;
  }

  bool Hex4(std::uint32_t& code) {
    if (pos_ + 4 > s_.size()) return Error("truncated \\u escape");
    code = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      code <<= 4;
      if (c >= '0' && c <= '9') code |= static_cast<std::uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') code |= static_cast<std::uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') code |= static_cast<std::uint32_t>(c - 'A' + 10);
      else return Error("invalid hex digit in \\u escape");
    }
    return true;
  }

  static void AppendUtf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // One raw UTF-8 sequence starting at pos_ (validated: no overlongs, no surrogates, <= U+10FFFF).
  bool CopyUtf8(std::string& out) {
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s_[i]); };
    const unsigned char b0 = byte(pos_);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) { len = 2; cp = b0 & 0x1F; }
    else if (b0 >= 0xE0 && b0 <= 0xEF) { len = 3; cp = b0 & 0x0F; }
    else if (b0 >= 0xF0 && b0 <= 0xF4) { len = 4; cp = b0 & 0x07; }
    else return Error("invalid UTF-8 in a string");
    if (pos_ + len > s_.size()) return Error("truncated UTF-8 sequence");
    for (std::size_t i = 1; i < len; ++i) {
      const unsigned char b = byte(pos_ + i);
      if ((b & 0xC0) != 0x80) return Error("invalid UTF-8 in a string");
      cp = (cp << 6) | (b & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return Error("invalid UTF-8 in a string");
    }
    out.append(s_.data() + pos_, len);
    pos_ += len;
    return true;
  }

  bool ParseString(std::string& out) {
    ++pos_;  // opening quote
    while (true) {
      if (pos_ >= s_.size()) return Error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return Error("control character in a string");
      if (c >= 0x80) {
        if (!CopyUtf8(out)) return false;
        continue;
      }
      if (c != '\\') {
        out += static_cast<char>(c);
        ++pos_;
        continue;
      }
      if (++pos_ >= s_.size()) return Error("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = 0;
          if (!Hex4(cp)) return false;
          if (cp >= 0xDC00 && cp <= 0xDFFF) return Error("lone low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a high surrogate must be followed by a low one
            std::uint32_t low = 0;
            if (s_.substr(pos_, 2) != "\\u") return Error("lone high surrogate in \\u escape");
            pos_ += 2;
            if (!Hex4(low)) return false;
            if (low < 0xDC00 || low > 0xDFFF) return Error("high surrogate not followed by a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          AppendUtf8(out, cp);
          break;
        }
        default: return Error("invalid escape in a string");
      }
    }
  }

  bool ParseArray(Value& out, int depth) {
    if (depth > kMaxDepth) return Error("nesting too deep");
    ++pos_;
    Array items;
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      out = Value(std::move(items));
      return true;
    }
    while (true) {
      SkipSpace();
      Value item;
      if (!ParseValue(item, depth)) return false;
      items.push_back(std::move(item));
      SkipSpace();
      if (pos_ >= s_.size()) return Error("unterminated array");
      if (s_[pos_] == ',') { ++pos_; continue; }
      if (s_[pos_] == ']') { ++pos_; break; }
      return Error("expected ',' or ']' in an array");
    }
    out = Value(std::move(items));
    return true;
  }

  bool ParseObject(Value& out, int depth) {
    if (depth > kMaxDepth) return Error("nesting too deep");
    ++pos_;
    Object members;
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      out = Value(std::move(members));
      return true;
    }
    while (true) {
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] != '"') return Error("expected a string key in an object");
      std::string key;
      if (!ParseString(key)) return false;
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] != ':') return Error("expected ':' after an object key");
      ++pos_;
      SkipSpace();
      Value item;
      if (!ParseValue(item, depth)) return false;
      members.emplace_back(std::move(key), std::move(item));
      SkipSpace();
      if (pos_ >= s_.size()) return Error("unterminated object");
      if (s_[pos_] == ',') { ++pos_; continue; }
      if (s_[pos_] == '}') { ++pos_; break; }
      return Error("expected ',' or '}' in an object");
    }
    out = Value(std::move(members));
    return true;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  std::string error_;
};

void DumpTo(std::string& out, const Value& v) {
  switch (v.type()) {
    case Type::Null: out += "null"; break;
    case Type::Bool: out += v.as_bool() ? "true" : "false"; break;
    case Type::Number: AppendNumber(out, v.as_number()); break;
    case Type::String: AppendQuoted(out, v.as_string()); break;
    case Type::Array: {
      out += '[';
      bool first = true;
      for (const Value& item : v.as_array()) {
        if (!first) out += ',';
        first = false;
        DumpTo(out, item);
      }
      out += ']';
      break;
    }
    case Type::Object: {
      out += '{';
      bool first = true;
      for (const Member& member : v.as_object()) {
        if (!first) out += ',';
        first = false;
        AppendQuoted(out, member.first);
        out += ':';
        DumpTo(out, member.second);
      }
      out += '}';
      break;
    }
  }
}

}  // namespace

ParseResult Parse(std::string_view text) { return Parser(text).Run(); }

void AppendQuoted(std::string& out, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  out += '"';
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += ch;  // UTF-8 passes through
        }
    }
  }
  out += '"';
}

std::string Dump(const Value& value) {
  std::string out;
  DumpTo(out, value);
  return out;
}

}  // namespace npc::json
