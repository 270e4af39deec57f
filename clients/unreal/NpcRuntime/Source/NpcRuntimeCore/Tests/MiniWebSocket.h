// SPDX-License-Identifier: MIT
// A minimal RFC 6455 WebSocket client over POSIX sockets, for the core's live test only (loopback
// ws://, no TLS, no extensions). The Unreal module uses UE's WebSockets module instead.
#pragma once

#include "NpcHandshake.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace npc::test {

using npc::HandshakeRefusal;

class MiniWebSocket {
 public:
  struct Message {
    enum class Kind { Text, Binary, Closed, Error } kind = Kind::Error;
    std::string data;  // text, binary bytes, or the error / close reason
  };

  MiniWebSocket() = default;
  ~MiniWebSocket();
  MiniWebSocket(const MiniWebSocket&) = delete;
  MiniWebSocket& operator=(const MiniWebSocket&) = delete;

  /// Connects to ws://host:port/path and does the opening handshake (checks Sec-WebSocket-Accept).
  /// `access_token`: sent as "Authorization: Bearer <token>" (a server with auth on); "" sends none.
  /// A refused handshake (401, 403, 429...) fails with npc::HandshakeRefusal::Describe() in `error`
  /// and the parsed refusal in Refusal().
  bool Connect(const std::string& url, std::string& error, const std::string& access_token = "");
  const std::optional<HandshakeRefusal>& Refusal() const { return refusal_; }
  bool SendText(const std::string& text);
  bool SendBinary(const void* data, std::size_t size);
  /// The next whole message (fragments joined; pings answered); waits up to timeout_ms.
  Message Receive(int timeout_ms);
  void Close();

 private:
  bool SendFrame(std::uint8_t opcode, const void* data, std::size_t size);
  bool ReadExact(void* out, std::size_t size, int timeout_ms);
  int fd_ = -1;
  std::string buffered_;  // bytes read past the handshake
  std::optional<HandshakeRefusal> refusal_;
};

/// SHA-1 (for the handshake) and Base64, exposed for the unit tests.
std::vector<std::uint8_t> Sha1(const std::string& data);
std::string Base64(const std::uint8_t* data, std::size_t size);

}  // namespace npc::test
