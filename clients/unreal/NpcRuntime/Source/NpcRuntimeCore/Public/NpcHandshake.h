// SPDX-License-Identifier: MIT
// The WebSocket handshake's side of authentication (docs/security.md): the Authorization header a
// game sends to a server with auth on, and what a refused handshake (HTTP 401, 403, 429 instead of
// 101) means. Sans-I/O like the rest of the core: the caller owns the socket (UE's WebSockets module
// in the plugin, a POSIX socket in the test program).
#pragma once

#include "NpcCoreApi.h"

#include <optional>
#include <string>
#include <string_view>

namespace npc {

/// Whether `token` can travel in an HTTP header: 1 to 8192 printable ASCII characters, no spaces
/// (a JWT or an API key always is; anything else would break or inject into the handshake).
NPC_CORE_API bool IsValidAccessToken(std::string_view token);

/// The Authorization header's value for a player token or an API key: "Bearer <token>".
NPC_CORE_API std::string BearerAuthorization(std::string_view token);

/// Why the server refused the WebSocket handshake.
struct NPC_CORE_API HandshakeRefusal {
  int status = 0;           // HTTP status: 401 (no valid token), 403 (origin not allowed), 429 (too many connections); 0 unknown
  std::string code;         // the server's error code (unauthorized, origin_not_allowed, too_many_connections), or ""
  std::string message;      // the server's explanation, or the status line's reason, or the socket library's words
  bool retryable = false;   // trying again later may work (429); a 401 needs a new token first
  int retry_after_s = -1;   // the Retry-After header, or -1

  bool Unauthorized() const { return status == 401; }
  /// "npc serve refused the connection: HTTP 401 unauthorized: <message>".
  std::string Describe() const;
  /// The error code to report: `code`, else one from the status ("unauthorized", "forbidden", "connect_refused").
  std::string ErrorCode() const;
};

/// The refusal in a handshake's raw HTTP response (status line, headers, optional body: the server
/// sends an `error` event as JSON); nullopt for "101 Switching Protocols" or text that is not HTTP.
NPC_CORE_API std::optional<HandshakeRefusal> ParseHandshakeResponse(std::string_view response);

/// A refused handshake recognised in a WebSocket library's connection-error text, for libraries that
/// do not expose the HTTP response: libwebsockets (UE's WebSockets module on most platforms) says
/// "HS: ws upgrade unauthorized" for 401 and "HS: ws upgrade response not 101" for any other status
/// (status 0 then); texts that name a status ("401", "403 Forbidden", "status code 429") give it.
/// nullopt when the text does not look like a refused handshake (server down, DNS, TLS...).
NPC_CORE_API std::optional<HandshakeRefusal> RefusalFromConnectionError(std::string_view error);

}  // namespace npc
