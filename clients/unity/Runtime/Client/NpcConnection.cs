// SPDX-License-Identifier: MIT
using System;
using System.Collections.Concurrent;
using System.IO;
using System.Net.WebSockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using NpcRuntime.Protocol;

namespace NpcRuntime.Client
{
    /// <summary>A server frame that broke protocol v1, surfaced as an event (the connection stays open).</summary>
    public sealed class ProtocolViolation : ServerEvent
    {
        public ProtocolException Exception { get; private set; }

        public ProtocolViolation(ProtocolException exception)
        {
            Exception = exception;
            Type = "client.protocol_violation";
        }
    }

    /// <summary>The connection ended: <see cref="Error"/> is null after a clean close.</summary>
    public sealed class ConnectionClosed : ServerEvent
    {
        public WebSocketCloseStatus? CloseStatus { get; private set; }
        public string Description { get; private set; }
        public Exception Error { get; private set; }

        public ConnectionClosed(WebSocketCloseStatus? status, string description, Exception error)
        {
            CloseStatus = status;
            Description = description;
            Error = error;
            Type = "client.closed";
        }
    }

    /// <summary>
    /// One WebSocket connection to <c>npc serve</c> (one conversation).
    /// <para>A receive loop runs on its own task and puts parsed events in a thread-safe queue: a game drains it on
    /// its main thread with <see cref="TryDequeue"/> (never blocks); other code may await <see cref="NextEventAsync"/>.
    /// Use one of the two styles per connection. Sends go through one writer task, in order: <see cref="Send"/>
    /// queues and returns at once (safe from the main thread); <see cref="SendAsync"/> completes once written.</para>
    /// <para>Besides the server's events the queue carries <see cref="ProtocolViolation"/> (a malformed server
    /// frame) and, last, one <see cref="ConnectionClosed"/>.</para>
    /// </summary>
    public sealed class NpcConnection : IDisposable
    {
        private const int ReceiveBufferBytes = 64 * 1024;
        /// <summary>Largest text or binary frame accepted from the server (the server's own limit is 1 MiB).</summary>
        public const int MaxFrameBytes = 4 * 1024 * 1024;

        private readonly ClientWebSocket _ws;
        private readonly CancellationTokenSource _cts = new CancellationTokenSource();
        private readonly ConcurrentQueue<ServerEvent> _events = new ConcurrentQueue<ServerEvent>();
        private readonly SemaphoreSlim _eventCount = new SemaphoreSlim(0);
        private readonly ConcurrentQueue<Outgoing> _outbox = new ConcurrentQueue<Outgoing>();
        private readonly SemaphoreSlim _outboxCount = new SemaphoreSlim(0);
        private readonly ServerEventDecoder _decoder = new ServerEventDecoder();
        private Task _receiveTask;
        private Task _sendTask;
        private int _nextId;
        private int _closed;
        private Exception _sendError;

        private sealed class Outgoing
        {
            public byte[] Bytes;
            public WebSocketMessageType Kind;
            public TaskCompletionSource<bool> Done;
        }

        private NpcConnection(ClientWebSocket ws) { _ws = ws; }

        /// <summary>The session, once <c>session.ready</c> has been received (set by the receive loop).</summary>
        public SessionReady Session { get; private set; }

        /// <summary>True until the socket is closed or has failed.</summary>
        public bool IsOpen { get { return _ws.State == WebSocketState.Open && Volatile.Read(ref _closed) == 0; } }

        /// <summary>Events waiting in the queue.</summary>
        public int PendingEvents { get { return _events.Count; } }

        /// <summary>How long <see cref="ConnectAsync(Uri, string, CancellationToken)"/> spends asking a refused
        /// handshake's status again (see <see cref="NpcConnectException"/>).</summary>
        public static readonly TimeSpan RefusalProbeTimeout = TimeSpan.FromSeconds(5);

        /// <summary>Open a connection (e.g. <c>ws://127.0.0.1:8765</c>) to a server without auth, and start its
        /// receive and send loops.</summary>
        public static Task<NpcConnection> ConnectAsync(Uri url, CancellationToken cancel = default(CancellationToken))
        {
            return ConnectAsync(url, null, cancel);
        }

        /// <summary>
        /// Open a connection and start its receive and send loops. <paramref name="accessToken"/>: a player token from
        /// the game's backend (or an API key) for a server with auth on, sent as <c>Authorization: Bearer</c> in the
        /// WebSocket handshake; null for a server without auth. The server then takes the player id from the token.
        /// <para>Throws <see cref="NpcConnectException"/> when the server refuses the handshake (HTTP 401: no valid
        /// token; 403; 429), with its status and reason; other failures (server down, TLS) throw what
        /// <c>ClientWebSocket</c> threw.</para>
        /// </summary>
        public static async Task<NpcConnection> ConnectAsync(Uri url, string accessToken, CancellationToken cancel = default(CancellationToken))
        {
            if (url == null) throw new ArgumentNullException("url");
            if (accessToken != null) CheckAccessToken(accessToken);
            var ws = new ClientWebSocket();
            ws.Options.KeepAliveInterval = TimeSpan.FromSeconds(20);
            if (accessToken != null) ws.Options.SetRequestHeader("Authorization", "Bearer " + accessToken);
            try
            {
                await ws.ConnectAsync(url, cancel).ConfigureAwait(false);
            }
            catch (WebSocketException e)
            {
                ws.Dispose();
                if (cancel.IsCancellationRequested) throw;
                // Mono's ClientWebSocket (Unity's) says only "Unable to connect to the remote server": ask the status
                var refused = await NpcConnectException.ProbeAsync(url, accessToken, RefusalProbeTimeout, e).ConfigureAwait(false);
                if (refused != null) throw refused;
                throw;
            }
            catch
            {
                ws.Dispose();
                throw;
            }
            var conn = new NpcConnection(ws);
            conn._receiveTask = Task.Run(conn.ReceiveLoop);
            conn._sendTask = Task.Run(conn.SendLoop);
            return conn;
        }

        /// <summary>A token goes in an HTTP header: printable ASCII without spaces (a JWT or an API key always is).</summary>
        private static void CheckAccessToken(string token)
        {
            if (token.Length == 0) throw new ArgumentException("empty access token (pass null for a server without auth)", "accessToken");
            foreach (char c in token)
                if (c <= ' ' || c > '~') throw new ArgumentException("an access token is printable ASCII without spaces", "accessToken");
        }

        /// <summary>A fresh message id (<c>c1</c>, <c>c2</c>...).</summary>
        public string NextId() { return "c" + Interlocked.Increment(ref _nextId); }

        /// <summary>Queue a message; returns its id (assigned if it had none). Never blocks.</summary>
        public string Send(ClientMessage message)
        {
            Enqueue(message, null);
            return message.Id;
        }

        /// <summary>Send a message; completes when it is written to the socket. Returns its id.</summary>
        public async Task<string> SendAsync(ClientMessage message)
        {
            var done = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            Enqueue(message, done);
            await done.Task.ConfigureAwait(false);
            return message.Id;
        }

        private void Enqueue(ClientMessage message, TaskCompletionSource<bool> done)
        {
            if (message == null) throw new ArgumentNullException("message");
            if (message.Id == null) message.Id = NextId();
            Post(Encoding.UTF8.GetBytes(message.ToJson()), WebSocketMessageType.Text, done);
        }

        /// <summary>Queue microphone audio: PCM16 mono little-endian at the rate declared in session.start, one
        /// binary frame (≤ 64 KiB; 20–100 ms frames are typical). The bytes are copied. Never blocks.</summary>
        public void SendAudio(byte[] pcm, int offset, int count)
        {
            if (count <= 0 || count % 2 != 0) throw new ArgumentException("PCM16 frames hold a positive, even number of bytes");
            if (count > 64 * 1024) throw new ArgumentException("microphone frames are at most 64 KiB");
            var copy = new byte[count];
            Buffer.BlockCopy(pcm, offset, copy, 0, count);
            Post(copy, WebSocketMessageType.Binary, null);
        }

        /// <summary>Queue a raw text frame (no checks: for tests and tools).</summary>
        public void SendRawText(string text) { Post(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, null); }

        private void Post(byte[] bytes, WebSocketMessageType kind, TaskCompletionSource<bool> done)
        {
            if (Volatile.Read(ref _closed) != 0)
            {
                if (done != null) done.TrySetException(new InvalidOperationException("the connection is closed"));
                return;
            }
            _outbox.Enqueue(new Outgoing { Bytes = bytes, Kind = kind, Done = done });
            _outboxCount.Release();
            if (Volatile.Read(ref _closed) != 0 && _sendTask != null && _sendTask.IsCompleted) DrainOutbox(); // lost a race with the end
        }

        private void DrainOutbox()
        {
            Outgoing left;
            while (_outbox.TryDequeue(out left))
                if (left.Done != null) left.Done.TrySetException(new InvalidOperationException("the connection is closed"));
        }

        /// <summary>Take the next event without waiting (for a game's Update loop).</summary>
        public bool TryDequeue(out ServerEvent ev)
        {
            if (!_events.TryDequeue(out ev)) return false;
            _eventCount.Wait(0); // keep the count in step; never blocks
            return true;
        }

        /// <summary>Wait for the next event. Throws <see cref="TimeoutException"/> after <paramref name="timeout"/>.
        /// Cancel-safe: a cancelled or timed-out wait takes no event.</summary>
        public async Task<ServerEvent> NextEventAsync(TimeSpan timeout, CancellationToken cancel = default(CancellationToken))
        {
            if (!await _eventCount.WaitAsync(timeout, cancel).ConfigureAwait(false))
                throw new TimeoutException("no server event within " + timeout.TotalSeconds + " s");
            ServerEvent ev;
            if (!_events.TryDequeue(out ev)) throw new InvalidOperationException("event queue out of step (mixing TryDequeue and NextEventAsync?)");
            return ev;
        }

        private void Publish(ServerEvent ev)
        {
            _events.Enqueue(ev);
            _eventCount.Release();
        }

        private async Task ReceiveLoop()
        {
            var buffer = new byte[ReceiveBufferBytes];
            var message = new MemoryStream();
            Exception error = null;
            try
            {
                while (!_cts.IsCancellationRequested)
                {
                    WebSocketReceiveResult r = await _ws.ReceiveAsync(new ArraySegment<byte>(buffer), _cts.Token).ConfigureAwait(false);
                    if (r.MessageType == WebSocketMessageType.Close)
                    {
                        if (_ws.State == WebSocketState.CloseReceived) // the server closed first: answer it
                            await _ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None).ConfigureAwait(false);
                        break;
                    }
                    message.Write(buffer, 0, r.Count);
                    if (message.Length > MaxFrameBytes) throw new ProtocolException("server frame over " + MaxFrameBytes + " bytes");
                    if (!r.EndOfMessage) continue;
                    HandleFrame(r.MessageType, message.GetBuffer(), (int)message.Length);
                    message.SetLength(0);
                }
            }
            catch (OperationCanceledException) { }
            catch (Exception e)
            {
                if (Volatile.Read(ref _closed) == 0) error = e; // an error after Close() is the close itself
            }
            Shutdown();
            error = error ?? _sendError;
            if (error != null) _ws.Abort();
            Publish(new ConnectionClosed(_ws.CloseStatus, _ws.CloseStatusDescription, error));
        }

        private void HandleFrame(WebSocketMessageType kind, byte[] data, int count)
        {
            try
            {
                ServerEvent ev = kind == WebSocketMessageType.Binary
                    ? _decoder.DecodeBinary(data, 0, count)
                    : _decoder.DecodeText(Encoding.UTF8.GetString(data, 0, count));
                if (ev == null) return; // response.audio: waits for its binary frame
                var ready = ev as SessionReady;
                if (ready != null) Session = ready;
                Publish(ev);
            }
            catch (ProtocolException e)
            {
                Publish(new ProtocolViolation(e));
            }
        }

        private async Task SendLoop()
        {
            try
            {
                while (true)
                {
                    await _outboxCount.WaitAsync(_cts.Token).ConfigureAwait(false);
                    Outgoing item;
                    if (!_outbox.TryDequeue(out item)) continue;
                    try
                    {
                        if (item.Kind == WebSocketMessageType.Close)
                        {
                            // close our side; the receive loop ends when the server's close frame arrives
                            await _ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", _cts.Token).ConfigureAwait(false);
                            if (item.Done != null) item.Done.TrySetResult(true);
                            break;
                        }
                        await _ws.SendAsync(new ArraySegment<byte>(item.Bytes), item.Kind, true, _cts.Token).ConfigureAwait(false);
                        if (item.Done != null) item.Done.TrySetResult(true);
                    }
                    catch (Exception e)
                    {
                        if (item.Done != null) item.Done.TrySetException(e);
                        throw;
                    }
                }
            }
            catch (Exception e)
            {
                // cancelled, or the socket failed: stop the receive loop too; it reports how the connection ended
                if (!(e is OperationCanceledException) && Volatile.Read(ref _closed) == 0) _sendError = e;
                Shutdown();
            }
            DrainOutbox();
        }

        private void Shutdown()
        {
            Interlocked.Exchange(ref _closed, 1);
            _cts.Cancel();
        }

        /// <summary>Close cleanly: queued messages go out, then the close handshake; both loops end. Safe to call
        /// more than once.</summary>
        public async Task CloseAsync(TimeSpan? timeout = null)
        {
            var limit = timeout ?? TimeSpan.FromSeconds(5);
            bool wasOpen = Interlocked.Exchange(ref _closed, 1) == 0; // no more sends from here on
            if (wasOpen && _ws.State == WebSocketState.Open)
            {
                var flushed = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
                _outbox.Enqueue(new Outgoing { Bytes = null, Kind = WebSocketMessageType.Close, Done = flushed });
                _outboxCount.Release();
                await Task.WhenAny(flushed.Task, Task.Delay(limit)).ConfigureAwait(false);
                if (_receiveTask != null) await Task.WhenAny(_receiveTask, Task.Delay(limit)).ConfigureAwait(false);
            }
            Shutdown();
            var loops = Task.WhenAll(_receiveTask ?? Task.CompletedTask, _sendTask ?? Task.CompletedTask);
            await Task.WhenAny(loops, Task.Delay(limit)).ConfigureAwait(false);
        }

        public void Dispose()
        {
            Shutdown();
            _ws.Dispose();
        }
    }
}
