// SPDX-License-Identifier: MIT
// UnrealBuildTool compiles every .cpp under a module folder: this test-only file (POSIX sockets, main())
// compiles to nothing inside Unreal, where NPCRUNTIMECORE_API is defined.
#if !defined(NPCRUNTIMECORE_API)
#include "MiniWebSocket.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <random>

namespace npc::test {

namespace {

std::uint32_t Rol(std::uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

}  // namespace

std::vector<std::uint8_t> Sha1(const std::string& data) {
  std::uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::string msg = data;
  const std::uint64_t bits = static_cast<std::uint64_t>(data.size()) * 8;
  msg += static_cast<char>(0x80);
  while (msg.size() % 64 != 56) msg += static_cast<char>(0);
  for (int i = 7; i >= 0; --i) msg += static_cast<char>((bits >> (8 * i)) & 0xFF);
  for (std::size_t chunk = 0; chunk < msg.size(); chunk += 64) {
    std::uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      const auto* p = reinterpret_cast<const unsigned char*>(msg.data() + chunk + 4 * static_cast<std::size_t>(i));
      w[i] = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
    }
    for (int i = 16; i < 80; ++i) w[i] = Rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      std::uint32_t f, k;
      if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
      else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
      else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
      else { f = b ^ c ^ d; k = 0xCA62C1D6; }
      const std::uint32_t t = Rol(a, 5) + f + e + k + w[i];
      e = d; d = c; c = Rol(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
  }
  std::vector<std::uint8_t> out;
  for (std::uint32_t v : h) {
    for (int i = 3; i >= 0; --i) out.push_back(static_cast<std::uint8_t>((v >> (8 * i)) & 0xFF));
  }
  return out;
}

std::string Base64(const std::uint8_t* data, std::size_t size) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < size; i += 3) {
    const std::uint32_t n = (std::uint32_t{data[i]} << 16) | (i + 1 < size ? std::uint32_t{data[i + 1]} << 8 : 0u) |
                            (i + 2 < size ? std::uint32_t{data[i + 2]} : 0u);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < size ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < size ? kAlphabet[n & 63] : '=';
  }
  return out;
}

MiniWebSocket::~MiniWebSocket() { Close(); }

void MiniWebSocket::Close() {
  if (fd_ >= 0) {
    SendFrame(0x8, "\x03\xe8", 2);  // close, 1000
    ::close(fd_);
    fd_ = -1;
  }
}

bool MiniWebSocket::Connect(const std::string& url, std::string& error, const std::string& access_token) {
  refusal_.reset();
  if (!access_token.empty() && !IsValidAccessToken(access_token)) {
    error = "the access token is not printable ASCII without spaces";
    return false;
  }
  const std::string scheme = "ws://";
  if (url.compare(0, scheme.size(), scheme) != 0) {
    error = "only ws:// URLs are supported";
    return false;
  }
  std::string rest = url.substr(scheme.size());
  const std::size_t slash = rest.find('/');
  const std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  const std::string hostport = rest.substr(0, slash);
  const std::size_t colon = hostport.rfind(':');
  const std::string host = colon == std::string::npos ? hostport : hostport.substr(0, colon);
  const std::string port = colon == std::string::npos ? "80" : hostport.substr(colon + 1);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || !found) {
    error = "cannot resolve " + host;
    return false;
  }
  for (addrinfo* ai = found; ai; ai = ai->ai_next) {
    fd_ = ::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd_ < 0) continue;
    if (::connect(fd_, ai->ai_addr, ai->ai_addrlen) == 0) break;
    ::close(fd_);
    fd_ = -1;
  }
  freeaddrinfo(found);
  if (fd_ < 0) {
    error = "cannot connect to " + hostport;
    return false;
  }

  std::random_device rd;
  std::uint8_t nonce[16];
  for (auto& b : nonce) b = static_cast<std::uint8_t>(rd() & 0xFF);
  const std::string key = Base64(nonce, sizeof(nonce));
  const std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + hostport +
                              "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                              "\r\nSec-WebSocket-Version: 13\r\n" +
                              (access_token.empty() ? std::string() : "Authorization: " + BearerAuthorization(access_token) + "\r\n") +
                              "\r\n";
  if (::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    error = "cannot send the handshake";
    return false;
  }
  std::string response;
  while (response.find("\r\n\r\n") == std::string::npos) {
    pollfd pfd{fd_, POLLIN, 0};
    if (::poll(&pfd, 1, 10000) <= 0) {
      error = "handshake timed out";
      return false;
    }
    char buf[1024];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0 || response.size() > 16384) {
      error = "connection closed during the handshake";
      return false;
    }
    response.append(buf, static_cast<std::size_t>(n));
  }
  const std::size_t end = response.find("\r\n\r\n") + 4;
  buffered_ = response.substr(end);
  response.resize(end);
  if (response.compare(0, 12, "HTTP/1.1 101") != 0) {
    // a refusal: its body (Content-Length bytes, at most 64 KiB) is the server's error event
    std::string lower_head = response;
    for (char& c : lower_head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::size_t want = 0;
    const std::size_t cl = lower_head.find("\r\ncontent-length:");
    if (cl != std::string::npos) want = std::min<std::size_t>(std::strtoul(response.c_str() + cl + 17, nullptr, 10), 64 * 1024);
    std::string body(want, '\0');
    if (want && !ReadExact(body.data(), want, 5000)) body.clear();  // the status alone says enough
    refusal_ = ParseHandshakeResponse(response + body);
    error = refusal_ ? refusal_->Describe() : "server refused the upgrade: " + response.substr(0, response.find("\r\n"));
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  const std::vector<std::uint8_t> digest = Sha1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
  const std::string accept = Base64(digest.data(), digest.size());
  std::string lower = response;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const std::size_t at = lower.find("sec-websocket-accept:");
  if (at == std::string::npos) {
    error = "no Sec-WebSocket-Accept in the handshake";
    return false;
  }
  std::size_t v = at + 21;
  while (v < response.size() && response[v] == ' ') ++v;
  if (response.compare(v, accept.size(), accept) != 0) {
    error = "wrong Sec-WebSocket-Accept";
    return false;
  }
  return true;
}

bool MiniWebSocket::SendFrame(std::uint8_t opcode, const void* data, std::size_t size) {
  if (fd_ < 0) return false;
  std::string frame;
  frame += static_cast<char>(0x80 | opcode);  // FIN, no fragmentation
  if (size < 126) {
    frame += static_cast<char>(0x80 | size);
  } else if (size <= 0xFFFF) {
    frame += static_cast<char>(0x80 | 126);
    frame += static_cast<char>((size >> 8) & 0xFF);
    frame += static_cast<char>(size & 0xFF);
  } else {
    frame += static_cast<char>(0x80 | 127);
    for (int i = 7; i >= 0; --i) frame += static_cast<char>((static_cast<std::uint64_t>(size) >> (8 * i)) & 0xFF);
  }
  std::random_device rd;
  std::uint8_t mask[4];
  for (auto& b : mask) b = static_cast<std::uint8_t>(rd() & 0xFF);
  frame.append(reinterpret_cast<const char*>(mask), 4);
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  for (std::size_t i = 0; i < size; ++i) frame += static_cast<char>(bytes[i] ^ mask[i % 4]);
  std::size_t sent = 0;
  while (sent < frame.size()) {
    const ssize_t n = ::send(fd_, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

bool MiniWebSocket::SendText(const std::string& text) { return SendFrame(0x1, text.data(), text.size()); }

bool MiniWebSocket::SendBinary(const void* data, std::size_t size) { return SendFrame(0x2, data, size); }

bool MiniWebSocket::ReadExact(void* out, std::size_t size, int timeout_ms) {
  auto* dst = static_cast<char*>(out);
  std::size_t got = 0;
  const std::size_t from_buffer = std::min(size, buffered_.size());
  std::memcpy(dst, buffered_.data(), from_buffer);
  buffered_.erase(0, from_buffer);
  got = from_buffer;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (got < size) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) return false;
    pollfd pfd{fd_, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left)) <= 0) continue;
    const ssize_t n = ::recv(fd_, dst + got, size - got, 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    got += static_cast<std::size_t>(n);
  }
  return true;
}

MiniWebSocket::Message MiniWebSocket::Receive(int timeout_ms) {
  Message msg;
  std::string payload_all;
  int message_opcode = -1;
  while (true) {
    std::uint8_t head[2];
    if (!ReadExact(head, 2, timeout_ms)) {
      msg.data = "timed out or connection lost";
      return msg;
    }
    const bool fin = (head[0] & 0x80) != 0;
    const int opcode = head[0] & 0x0F;
    if (head[1] & 0x80) {
      msg.data = "the server masked a frame";
      return msg;
    }
    std::uint64_t len = head[1] & 0x7F;
    if (len == 126 || len == 127) {
      std::uint8_t ext[8];
      const std::size_t n = len == 126 ? 2 : 8;
      if (!ReadExact(ext, n, timeout_ms)) {
        msg.data = "truncated frame header";
        return msg;
      }
      len = 0;
      for (std::size_t i = 0; i < n; ++i) len = (len << 8) | ext[i];
    }
    if (len > (64u << 20)) {
      msg.data = "frame too large";
      return msg;
    }
    std::string payload(static_cast<std::size_t>(len), '\0');
    if (len && !ReadExact(payload.data(), payload.size(), timeout_ms)) {
      msg.data = "truncated frame";
      return msg;
    }
    if (opcode == 0x9) {  // ping: answer, keep waiting
      SendFrame(0xA, payload.data(), payload.size());
      continue;
    }
    if (opcode == 0xA) continue;  // pong
    if (opcode == 0x8) {
      msg.kind = Message::Kind::Closed;
      msg.data = payload.size() >= 2 ? std::to_string((static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1])) : "";
      return msg;
    }
    if (opcode == 0x1 || opcode == 0x2) message_opcode = opcode;
    else if (opcode != 0x0 || message_opcode < 0) {
      msg.data = "unexpected opcode " + std::to_string(opcode);
      return msg;
    }
    payload_all += payload;
    if (fin) {
      msg.kind = message_opcode == 0x1 ? Message::Kind::Text : Message::Kind::Binary;
      msg.data = std::move(payload_all);
      return msg;
    }
  }
}

}  // namespace npc::test

#endif  // !defined(NPCRUNTIMECORE_API)
