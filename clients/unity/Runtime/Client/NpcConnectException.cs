// SPDX-License-Identifier: MIT
using System;
using System.Globalization;
using System.IO;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using NpcRuntime.Protocol;

namespace NpcRuntime.Client
{
    /// <summary>
    /// <c>npc serve</c> refused the WebSocket handshake with an HTTP status instead of <c>101</c>: 401 (no valid player
    /// token or API key: <see cref="IsUnauthorized"/>), 403 (a browser origin not allowed), 429 (too many connections
    /// from one address: <see cref="Retryable"/>, after <see cref="RetryAfterSeconds"/>). <see cref="Code"/> and
    /// <see cref="ServerMessage"/> are the server's own (its refusal's body is an <c>error</c> event).
    /// </summary>
    public sealed class NpcConnectException : Exception
    {
        /// <summary>The HTTP status of the refused handshake (401, 403, 429...).</summary>
        public int StatusCode { get; private set; }
        /// <summary>The server's error code (<c>unauthorized</c>, <c>origin_not_allowed</c>, <c>too_many_connections</c>),
        /// or null when the response carried none.</summary>
        public string Code { get; private set; }
        /// <summary>The server's explanation, or null.</summary>
        public string ServerMessage { get; private set; }
        /// <summary>Trying again later may work (429); a 401 needs a new token first.</summary>
        public bool Retryable { get; private set; }
        /// <summary>The refusal's <c>Retry-After</c> header, in seconds, or null.</summary>
        public int? RetryAfterSeconds { get; private set; }
        /// <summary>401: the handshake carried no valid credential (missing, malformed, expired or badly signed token).</summary>
        public bool IsUnauthorized { get { return StatusCode == 401; } }

        public NpcConnectException(int statusCode, string code, string serverMessage, bool retryable, int? retryAfterSeconds,
                                   Exception inner = null)
            : base(Describe(statusCode, code, serverMessage), inner)
        {
            StatusCode = statusCode;
            Code = code;
            ServerMessage = serverMessage;
            Retryable = retryable;
            RetryAfterSeconds = retryAfterSeconds;
        }

        private static string Describe(int status, string code, string message)
        {
            var sb = new StringBuilder("npc serve refused the connection: HTTP ").Append(status);
            if (!string.IsNullOrEmpty(code)) sb.Append(' ').Append(code);
            else if (status == 401) sb.Append(" unauthorized");
            else if (status == 403) sb.Append(" forbidden");
            if (!string.IsNullOrEmpty(message)) sb.Append(": ").Append(message);
            if (status == 401) sb.Append(" (connect with a valid player token: NpcConnection.ConnectAsync(url, accessToken))");
            return sb.ToString();
        }

        /// <summary>The refusal in a handshake's raw HTTP response (status line, headers, body), or null when it is not
        /// one (<c>101 Switching Protocols</c>, or not HTTP at all).</summary>
        public static NpcConnectException FromHttpResponse(string response, Exception inner = null)
        {
            if (response == null) return null;
            int headEnd = response.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            string head = headEnd >= 0 ? response.Substring(0, headEnd) : response;
            string body = headEnd >= 0 ? response.Substring(headEnd + 4) : "";
            string[] lines = head.Split(new[] { "\r\n" }, StringSplitOptions.None);
            string[] status = lines[0].Split(new[] { ' ' }, 3);
            int code;
            if (status.Length < 2 || !status[0].StartsWith("HTTP/", StringComparison.Ordinal) ||
                !int.TryParse(status[1], NumberStyles.None, CultureInfo.InvariantCulture, out code) || code < 100 || code > 599)
                return null;
            if (code == 101) return null;
            int? retryAfter = null;
            for (int i = 1; i < lines.Length; i++)
            {
                int colon = lines[i].IndexOf(':');
                int seconds;
                if (colon > 0 && string.Equals(lines[i].Substring(0, colon).Trim(), "Retry-After", StringComparison.OrdinalIgnoreCase) &&
                    int.TryParse(lines[i].Substring(colon + 1).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out seconds))
                    retryAfter = seconds;
            }
            string errorCode = null, message = null;
            bool retryable = code == 429 || code == 503;
            try
            {
                // the server's refusal body is an error event; read its fields leniently (a proxy may answer instead)
                JsonObject ev = JsonReader.ParseObject(body.Trim());
                object type, value;
                if (ev.TryGetValue("type", out type) && (type as string) == "error")
                {
                    if (ev.TryGetValue("code", out value)) errorCode = value as string;
                    if (ev.TryGetValue("message", out value)) message = value as string;
                    if (ev.TryGetValue("retryable", out value) && value is bool) retryable = (bool)value;
                }
            }
            catch (JsonException) { }  // not JSON: the status says enough
            if (message == null && status.Length == 3) message = status[2].Trim();
            return new NpcConnectException(code, errorCode, message, retryable, retryAfter, inner);
        }

        /// <summary>
        /// Why a handshake failed, asked again: <c>ClientWebSocket</c> on Mono (Unity's) reports any refused handshake as
        /// "Unable to connect to the remote server", without its status. This sends the same upgrade request (same path,
        /// query and credential) on a plain socket, reads the status and body, and closes. Null when the server cannot be
        /// reached, accepts this time, or does not answer within <paramref name="timeout"/>.
        /// </summary>
        internal static async Task<NpcConnectException> ProbeAsync(Uri url, string accessToken, TimeSpan timeout, Exception inner)
        {
            using (var cts = new CancellationTokenSource(timeout))
            using (var tcp = new TcpClient())
            {
                SslStream ssl = null;
                try
                {
                    Task connect = tcp.ConnectAsync(url.Host, url.Port);
                    if (await Task.WhenAny(connect, Task.Delay(timeout, cts.Token)).ConfigureAwait(false) != connect) return null;
                    await connect.ConfigureAwait(false);
                    Stream stream = tcp.GetStream();
                    if (url.Scheme == "wss")
                    {
                        ssl = new SslStream(stream, false);
                        Task auth = ssl.AuthenticateAsClientAsync(url.Host);
                        if (await Task.WhenAny(auth, Task.Delay(timeout, cts.Token)).ConfigureAwait(false) != auth) return null;
                        await auth.ConfigureAwait(false);
                        stream = ssl;
                    }
                    var key = new byte[16];
                    new Random().NextBytes(key);
                    var request = new StringBuilder()
                        .Append("GET ").Append(url.PathAndQuery).Append(" HTTP/1.1\r\n")
                        .Append("Host: ").Append(url.IsDefaultPort ? url.Host : url.Host + ":" + url.Port).Append("\r\n")
                        .Append("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n")
                        .Append("Sec-WebSocket-Key: ").Append(Convert.ToBase64String(key)).Append("\r\n");
                    if (accessToken != null) request.Append("Authorization: Bearer ").Append(accessToken).Append("\r\n");
                    byte[] bytes = Encoding.ASCII.GetBytes(request.Append("\r\n").ToString());
                    await stream.WriteAsync(bytes, 0, bytes.Length, cts.Token).ConfigureAwait(false);

                    // the head, then the body (Content-Length, at most 64 KiB): the refusal's error event
                    var received = new MemoryStream();
                    var buffer = new byte[4096];
                    int headEnd = -1, want = -1;
                    while (want < 0 || received.Length < want)
                    {
                        Task<int> read = stream.ReadAsync(buffer, 0, buffer.Length, cts.Token);
                        if (await Task.WhenAny(read, Task.Delay(timeout, cts.Token)).ConfigureAwait(false) != read) break;
                        int n = await read.ConfigureAwait(false);
                        if (n <= 0) break;
                        received.Write(buffer, 0, n);
                        if (received.Length > 80 * 1024) break;
                        if (headEnd < 0)
                        {
                            string sofar = Encoding.UTF8.GetString(received.GetBuffer(), 0, (int)received.Length);
                            headEnd = sofar.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                            if (headEnd < 0) continue;
                            if (sofar.StartsWith("HTTP/1.1 101", StringComparison.Ordinal)) return null;  // accepted this time
                            want = headEnd + 4 + Math.Min(ContentLength(sofar.Substring(0, headEnd)), 64 * 1024);
                        }
                    }
                    if (headEnd < 0) return null;
                    string response = Encoding.UTF8.GetString(received.GetBuffer(), 0, (int)Math.Min(received.Length, want));
                    return FromHttpResponse(response, inner);
                }
                catch (Exception)
                {
                    return null;  // unreachable, reset, timed out, TLS failure: the original error stands
                }
                finally
                {
                    if (ssl != null) ssl.Dispose();
                }
            }
        }

        private static int ContentLength(string head)
        {
            foreach (string line in head.Split(new[] { "\r\n" }, StringSplitOptions.None))
            {
                int colon = line.IndexOf(':');
                int n;
                if (colon > 0 && string.Equals(line.Substring(0, colon).Trim(), "Content-Length", StringComparison.OrdinalIgnoreCase) &&
                    int.TryParse(line.Substring(colon + 1).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out n))
                    return n;
            }
            return 0;
        }
    }
}
