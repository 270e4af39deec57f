// SPDX-License-Identifier: MIT
#include "NpcHandshake.h"

#include "NpcJson.h"

#include <cctype>
#include <string>

namespace npc {

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

/// A non-negative decimal number made of the whole of `s`, or -1.
int ParseDecimal(std::string_view s, int max_digits) {
  if (s.empty() || static_cast<int>(s.size()) > max_digits) return -1;
  int n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

bool IsValidAccessToken(std::string_view token) {
  if (token.empty() || token.size() > 8192) return false;
  for (char c : token) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

std::string BearerAuthorization(std::string_view token) { return "Bearer " + std::string(token); }

std::string HandshakeRefusal::ErrorCode() const {
  if (!code.empty()) return code;
  if (status == 401) return "unauthorized";
  if (status == 403) return "forbidden";
  if (status == 429) return "too_many_connections";
  return "connect_refused";
}

std::string HandshakeRefusal::Describe() const {
  std::string out = "npc serve refused the connection: ";
  out += status > 0 ? "HTTP " + std::to_string(status) : std::string("HTTP status unknown");
  out += " " + ErrorCode();
  if (!message.empty()) out += ": " + message;
  if (status == 401) out += " (connect with a valid player token)";
  return out;
}

std::optional<HandshakeRefusal> ParseHandshakeResponse(std::string_view response) {
  const std::size_t head_end = response.find("\r\n\r\n");
  const std::string_view head = head_end == std::string_view::npos ? response : response.substr(0, head_end);
  const std::string_view body = head_end == std::string_view::npos ? std::string_view() : response.substr(head_end + 4);
  const std::size_t line_end = head.find("\r\n");
  const std::string_view status_line = head.substr(0, line_end);
  // "HTTP/1.1 401 Unauthorized"
  if (status_line.substr(0, 5) != "HTTP/") return std::nullopt;
  const std::size_t sp = status_line.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  const std::string_view rest = status_line.substr(sp + 1);
  const std::size_t sp2 = rest.find(' ');
  const int status = ParseDecimal(rest.substr(0, sp2), 3);
  if (status < 100 || status > 599) return std::nullopt;
  if (status == 101) return std::nullopt;
  HandshakeRefusal refusal;
  refusal.status = status;
  refusal.retryable = status == 429 || status == 503;
  // headers: Retry-After
  std::size_t at = line_end == std::string_view::npos ? head.size() : line_end + 2;
  while (at < head.size()) {
    std::size_t end = head.find("\r\n", at);
    if (end == std::string_view::npos) end = head.size();
    const std::string_view line = head.substr(at, end - at);
    const std::size_t colon = line.find(':');
    if (colon != std::string_view::npos && Lower(Trim(line.substr(0, colon))) == "retry-after") {
      refusal.retry_after_s = ParseDecimal(Trim(line.substr(colon + 1)), 9);
    }
    at = end + 2;
  }
  // body: the server's error event (read leniently: a proxy may have answered instead)
  const json::ParseResult parsed = json::Parse(Trim(body));
  if (parsed.ok() && parsed.value.is_object()) {
    const json::Value* type = parsed.value.find("type");
    if (type && type->as_string() == "error") {
      if (const json::Value* v = parsed.value.find("code")) refusal.code = v->as_string();
      if (const json::Value* v = parsed.value.find("message")) refusal.message = v->as_string();
      if (const json::Value* v = parsed.value.find("retryable"); v && v->is_bool()) refusal.retryable = v->as_bool();
    }
  }
  if (refusal.message.empty() && sp2 != std::string_view::npos) refusal.message = std::string(Trim(rest.substr(sp2 + 1)));
  return refusal;
}

std::optional<HandshakeRefusal> RefusalFromConnectionError(std::string_view error) {
  const std::string text = Lower(error);
  HandshakeRefusal refusal;
  refusal.message = std::string(Trim(error));
  if (text.find("upgrade unauthorized") != std::string::npos) {  // libwebsockets: 401
    refusal.status = 401;
    return refusal;
  }
  // a three-digit HTTP error status standing alone in the text ("HTTP 403", "status code '429'", "(401)")
  for (std::size_t i = 0; i + 3 <= text.size(); ++i) {
    if (!IsDigit(text[i]) || !IsDigit(text[i + 1]) || !IsDigit(text[i + 2])) continue;
    const char before = i > 0 ? text[i - 1] : ' ';
    const char after = i + 3 < text.size() ? text[i + 3] : ' ';
    if (IsDigit(before) || before == ':' || before == '.' || IsDigit(after) || after == '.') continue;  // not a port or an address
    const int status = ParseDecimal(std::string_view(text).substr(i, 3), 3);
    if (status == 401 || status == 403 || status == 429) {
      refusal.status = status;
      refusal.retryable = status == 429;
      return refusal;
    }
  }
  if (text.find("unauthorized") != std::string::npos) refusal.status = 401;
  else if (text.find("forbidden") != std::string::npos) refusal.status = 403;
  else if (text.find("response not 101") != std::string::npos || text.find("upgrade response") != std::string::npos) refusal.status = 0;
  else return std::nullopt;
  return refusal;
}

}  // namespace npc
