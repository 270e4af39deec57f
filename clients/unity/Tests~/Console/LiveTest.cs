// SPDX-License-Identifier: MIT
// A live conversation against `npc serve` through NpcConnection: session, a text turn (text, audio, visemes, actions),
// playback through ReplyPlayer on a simulated audio device (marks sent back), malformed input, a spoken turn from a
// WAV file, a cancelled turn, a clean close, and a turn performing the scene's own verbs (--steps picks among text,
// verbs, errors, voice, cancel). Every parsed value that matters goes into the report. The reply's words and actions are the model's: every action must be valid for the scene,
// and audio must come whenever the reply has words; the exact actions are checked only when --expect-actions names them.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using NpcRuntime.Client;
using NpcRuntime.Protocol;

namespace NpcRuntime.ConsoleTest
{
    public sealed class LiveTest
    {
        private static readonly TimeSpan TurnTimeout = TimeSpan.FromSeconds(120);
        private const int DeviceRate = 48000;
        private const int EndSilenceMs = 2500;

        private readonly Checks _c;
        private readonly JsonObject _report;
        private readonly Dictionary<string, string> _opts;
        private NpcConnection _conn;
        private Scene _scene;
        private SessionReady _ready;

        public LiveTest(Checks checks, JsonObject report, Dictionary<string, string> opts)
        {
            _c = checks;
            _report = report;
            _opts = opts;
        }

        private static void Log(string message) { Console.Error.WriteLine("[live] " + message); }

        public async Task Run()
        {
            _scene = Scene.FromJson(File.ReadAllText(_opts["scene"]));
            _scene.Validate();
            var steps = new HashSet<string>(_opts["steps"].Split(','));
            string token = _opts.ContainsKey("token") ? _opts["token"] : null;  // a player token, for a server with auth on
            if (steps.Contains("refused"))
            {
                await Refused(token);
                return;
            }
            _conn = await NpcConnection.ConnectAsync(new Uri(_opts["url"]), token);
            try
            {
                await StartSession();
                if (steps.Contains("text")) await Playback(await TextTurn(), "playback");
                if (steps.Contains("verbs")) await VerbsTurn();
                if (steps.Contains("errors")) await MalformedInput();
                if (steps.Contains("voice")) await VoiceTurn();
                if (steps.Contains("cancel")) await CancelledTurn();
            }
            finally
            {
                await Close();
            }
        }

        /// <summary>The handshake must be refused (a server with auth on, no token or a bad one): NpcConnectException
        /// with the HTTP status and the server's reason, quickly (no hang).</summary>
        private async Task Refused(string token)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            NpcConnection conn = null;
            Exception error = null;
            try
            {
                conn = await NpcConnection.ConnectAsync(new Uri(_opts["url"]), token);
            }
            catch (Exception e)
            {
                error = e;
            }
            long ms = clock.ElapsedMilliseconds;
            if (conn != null)
            {
                await conn.CloseAsync();
                conn.Dispose();
            }
            var refused = error as NpcConnectException;
            _c.That(refused != null, "handshake refused with NpcConnectException (got " +
                                     (error == null ? "a connection" : error.GetType().Name + ": " + error.Message) + ")");
            Log("refused in " + ms + " ms: " + (error != null ? error.Message : "(connected)"));
            _report["refused"] = new JsonObject
            {
                { "exception", error != null ? error.GetType().Name : null }, { "message", error != null ? error.Message : null },
                { "status", refused != null ? (object)refused.StatusCode : null }, { "code", refused != null ? refused.Code : null },
                { "server_message", refused != null ? refused.ServerMessage : null },
                { "unauthorized", refused != null && refused.IsUnauthorized }, { "retryable", refused != null && refused.Retryable },
                { "inner", error != null && error.InnerException != null ? error.InnerException.GetType().Name + ": " + error.InnerException.Message : null },
                { "ms", ms },
            };
        }

        /// <summary>Events up to the first that <paramref name="last"/> accepts (included). Protocol violations and
        /// a closed connection are failures.</summary>
        private async Task<List<ServerEvent>> Until(Func<ServerEvent, bool> last, string what)
        {
            var events = new List<ServerEvent>();
            while (true)
            {
                ServerEvent ev;
                try
                {
                    ev = await _conn.NextEventAsync(TurnTimeout);
                }
                catch (TimeoutException)
                {
                    throw new TimeoutException(what + ": no event for " + TurnTimeout.TotalSeconds + " s after " +
                                               string.Join(", ", events.Select(e => e.Type).ToArray()));
                }
                var violation = ev as ProtocolViolation;
                _c.That(violation == null, what + ": server frame broke the protocol: " + (violation != null ? violation.Exception.Message : ""));
                var closed = ev as ConnectionClosed;
                if (closed != null) throw new InvalidOperationException(what + ": connection closed (" + closed.CloseStatus + " " + closed.Error + ")");
                events.Add(ev);
                if (last(ev)) return events;
            }
        }

        private async Task StartSession()
        {
            var start = new SessionStart
            {
                Character = "jin", PlayerId = _opts["player"], PlayerName = "Kai", Scene = _scene,
                // end_silence_ms: the recording has pauses of about a second inside the sentence; the turn ends by
                // push-to-talk (input.audio.commit) instead
                Options = new SessionOptions
                {
                    Seed = _opts.ContainsKey("seed") ? (int?)int.Parse(_opts["seed"]) : null,
                    AudioInSampleRate = Pcm16.ServerInputRate, EndSilenceMs = EndSilenceMs,
                },
            };
            await _conn.SendAsync(start);
            var events = await Until(e => e is SessionReady || e is ErrorEvent, "session.start");
            _ready = events.Last() as SessionReady;
            if (_ready == null) throw new InvalidOperationException("session.start refused: " + ((ErrorEvent)events.Last()).Code);
            _c.Equal("1", _ready.Protocol, "session.ready protocol");
            _c.Equal("jin", _ready.Character.Id, "session.ready character id");
            // the verbs the character may use: built-ins, and every verb the scene declared (the server adds none of its own)
            var declared = _scene.Verbs.Select(v => v.Name).ToList();
            _c.That(_ready.Actions.Count > 0 && _ready.Actions.All(v => BuiltInVerbs.IsBuiltIn(v) || declared.Contains(v)), "session.ready actions: built-ins and the scene's verbs");
            _c.That(declared.All(v => _ready.Actions.Contains(v)), "session.ready actions list every verb the scene declared");
            _c.That(_ready.Audio != null && _ready.Audio.SampleRate >= 8000, "session.ready announces reply audio");
            _c.That(_ready.AudioIn != null && _ready.AudioIn.SampleRate == 16000, "session.ready audio_in is our 16 kHz");
            _c.That(_ready.Listen != null && _ready.Listen.EndSilenceMs == EndSilenceMs, "session.ready listen: our end_silence_ms");
            _report["ready"] = new JsonObject
            {
                { "session_id", _ready.SessionId }, { "protocol", _ready.Protocol }, { "character", _ready.Character.Id },
                { "character_name", _ready.Character.Name }, { "actions", _ready.Actions }, { "mood", _ready.Mood },
                { "scene_verbs", _scene.Verbs.Select(v => (object)v.Name).ToList() },
                { "audio_sample_rate", _ready.Audio != null ? (object)_ready.Audio.SampleRate : null },
                { "audio_in_sample_rate", _ready.AudioIn != null ? (object)_ready.AudioIn.SampleRate : null },
                { "end_silence_ms", _ready.Listen != null ? (object)_ready.Listen.EndSilenceMs : null },
            };
            Log("session " + _ready.SessionId + " ready");
        }

        /// <summary>Events of one response: from its response.start to its response.end.</summary>
        private static Func<ServerEvent, bool> EndOf(Func<ResponseStart, bool> isOurs, Action<string> onStart)
        {
            string rid = null;
            return e =>
            {
                var s = e as ResponseStart;
                if (s != null && rid == null && isOurs(s)) { rid = s.ResponseId; onStart(rid); }
                return e is ResponseEnd && e.ResponseId == rid;
            };
        }

        private async Task<List<ServerEvent>> TextTurn()
        {
            string prompt = _opts["prompt"];
            string id = await _conn.SendAsync(new TextInput(prompt));
            string rid = null;
            var events = await Until(EndOf(s => s.Ref == id, r => rid = r), "text turn");
            var mine = events.Where(e => e.ResponseId == rid).ToList();
            var start = (ResponseStart)mine.First();
            var end = (ResponseEnd)mine.Last();
            var deltas = mine.OfType<TextDelta>().ToList();
            var chunks = mine.OfType<AudioChunk>().ToList();
            var actions = mine.OfType<ActionEvent>().ToList();
            string deltaText = string.Concat(deltas.Select(d => d.Text).ToArray());
            Log("text turn " + rid + ": '" + end.Text + "', " + chunks.Count + " audio chunks, " + actions.Count + " actions");

            // a reply may be actions only (the grammar allows it): words, and so audio, are required only when it speaks
            bool speaks = end.Text.Any(char.IsLetterOrDigit);
            _c.Equal("text", start.Trigger, "response.start trigger");
            _c.Equal("jin", start.Speaker, "response.start speaker");
            _c.That(end.Text.Trim().Length > 0 || actions.Count > 0, "the reply says or does something");
            _c.That(deltas.Count > 0 || end.Text.Length == 0, "streamed text deltas");
            _c.Equal(end.Text.Trim(), deltaText.Trim(), "text deltas add up to response.end text");
            _c.Equal("completed", end.Status, "response.end status");
            _c.That(end.Timings.ContainsKey("end") && end.Timings.ContainsKey("first_token") && (end.Timings.ContainsKey("first_audio") || !speaks),
                    "response.end timings (end, first_token, first_audio)");

            // audio: frames of samples × 2 bytes (the decoder refuses anything else), contiguous on the timeline
            _c.That(chunks.Count > 0 || !speaks, "audio received for the reply's words");
            int rate = _ready.Audio.SampleRate;
            long bytes = 0, samples = 0;
            bool contiguous = true, seqOk = true;
            double expectStart = 0;
            for (int i = 0; i < chunks.Count; i++)
            {
                var ch = chunks[i];
                bytes += ch.Pcm.Length;
                samples += ch.Samples;
                seqOk &= ch.Seq == i && ch.Pcm.Length == ch.Samples * 2 && ch.SampleRate == rate;
                contiguous &= Math.Abs(ch.StartMs - expectStart) < 0.5;
                expectStart = ch.StartMs + ch.DurationMs;
            }
            double audioMs = samples * 1000.0 / rate;
            _c.That(seqOk, "audio chunks: seq 0.., samples × 2 bytes, session rate");
            _c.That(contiguous, "audio chunks contiguous on the response timeline");
            _c.That(end.AudioMs != null && Math.Abs(end.AudioMs.Value - audioMs) < 1.0,
                    "response.end audio_ms (" + end.AudioMs + ") matches the samples received (" + audioMs + ")");

            // visemes: known OVR ids, contiguous and monotonic, covering each chunk's audio exactly
            var cues = chunks.SelectMany(ch => ch.Visemes).ToList();
            bool known = cues.All(v => v.Index >= 0 && Visemes.Names[v.Index] == v.Viseme);
            bool monotonic = true, covers = true;
            for (int i = 1; i < cues.Count; i++) monotonic &= cues[i].StartMs >= cues[i - 1].StartMs && Math.Abs(cues[i].StartMs - cues[i - 1].EndMs) < 0.01;
            foreach (var ch in chunks)
                covers &= ch.Visemes.Count > 0 && Math.Abs(ch.Visemes[0].StartMs - ch.StartMs) < 0.5
                          && Math.Abs(ch.Visemes.Last().EndMs - (ch.StartMs + ch.DurationMs)) < 0.5;
            _c.That((cues.Count > 0 || chunks.Count == 0) && known, "visemes parsed, all OVR");
            _c.That(monotonic, "viseme at_ms monotonic and contiguous");
            _c.That(covers, "visemes cover each chunk's audio");

            // actions: valid for the scene and the session; exactly the expected ones when the replies are scripted
            if (_opts.ContainsKey("expect-actions"))
            {
                string got = string.Join(",", actions.Select(a => string.Join(" ", new[] { a.Verb, a.Object, a.Target }.Where(x => x != null).ToArray())).ToArray());
                _c.Equal(_opts["expect-actions"], got, "the text turn's actions (prompt '" + prompt + "')");
            }
            CheckActions(actions, end, chunks.Count > 0, audioMs);

            _report["text_turn"] = new JsonObject
            {
                { "prompt", prompt }, { "response_id", rid }, { "ref_ok", start.Ref == id }, { "trigger", start.Trigger },
                { "speaker", start.Speaker }, { "deltas", deltas.Count }, { "delta_text", deltaText },
                { "audio", new JsonObject {
                    { "chunks", chunks.Count }, { "bytes", bytes }, { "samples", samples }, { "sample_rate", rate },
                    { "duration_ms", Math.Round(audioMs, 1) }, { "contiguous", contiguous },
                    { "bytes_match_samples", chunks.All(ch => ch.Pcm.Length == ch.Samples * 2) } } },
                { "visemes", new JsonObject {
                    { "count", cues.Count }, { "names", cues.Select(v => v.Viseme).Distinct().ToList() }, { "monotonic", monotonic },
                    { "cover_audio", covers }, { "first_start_ms", cues.Count > 0 ? (object)cues[0].StartMs : null },
                    { "last_end_ms", cues.Count > 0 ? (object)cues.Last().EndMs : null } } },
                { "actions", actions.Select(a => (object)ActionReport(a)).ToList() },
                { "end", new JsonObject {
                    { "status", end.Status }, { "text", end.Text }, { "audio_ms", end.AudioMs }, { "truncated", end.Truncated },
                    { "timings", end.Timings.ToDictionary(kv => kv.Key, kv => (object)kv.Value) },
                    { "actions", end.Actions.Select(a => (object)new JsonObject { { "verb", a.Verb }, { "object", a.Object }, { "target", a.Target } }).ToList() },
                    { "action_args", end.Actions.Select(a => (object)ArgsJson(a.Args)).ToList() } } },
            };
            return mine;
        }

        /// <summary>Play the turn through ReplyPlayer on a simulated 48 kHz stereo device (1024-frame buffers, 20 ms
        /// latency), send its playback marks, and check the cues come out in time order on the audio clock.</summary>
        private static JsonObject ArgsJson(IReadOnlyDictionary<string, string> args)
        {
            var o = new JsonObject();
            foreach (var kv in args) o[kv.Key] = kv.Value;
            return o;
        }

        private static JsonObject ActionReport(ActionEvent a)
        {
            return new JsonObject
            {
                { "index", a.Index }, { "verb", a.Verb }, { "object", a.Object }, { "target", a.Target }, { "args", ArgsJson(a.Args) },
                { "text_offset", a.TextOffset }, { "at_ms", a.AtMs },
            };
        }

        /// <summary>Every action valid for the scene and the session: a verb session.ready allows, its arguments those its
        /// definition names (a built-in's or the scene's), each an id of the right kind or one of its values; on the audio
        /// timeline; the same in response.end.</summary>
        private void CheckActions(List<ActionEvent> actions, ResponseEnd end, bool audio, double audioMs)
        {
            var objects = new HashSet<string>(_scene.Objects.Select(o => o.Id));
            var locations = new HashSet<string>(_scene.Locations.Select(o => o.Id));
            var characters = new HashSet<string>(_scene.Characters.Select(o => o.Id));
            var all = new HashSet<string>(_scene.AllIds());
            var builtIn = new Dictionary<string, VerbDef>
            {
                { "move", new VerbDef("move", "-", VerbArgDef.Entity("target", "any")) },
                { "grab", new VerbDef("grab", "-", VerbArgDef.Entity("object", "object")) },
                { "give", new VerbDef("give", "-", VerbArgDef.Entity("object", "object"), VerbArgDef.Entity("target", "character")) },
            };
            foreach (var a in actions)
            {
                VerbDef def = builtIn.ContainsKey(a.Verb) ? builtIn[a.Verb] : _scene.Verbs.FirstOrDefault(v => v.Name == a.Verb);
                bool valid = _ready.Actions.Contains(a.Verb) && def != null && a.Args.Count == def.Args.Count && def.Args.All(arg =>
                {
                    string value = a.Arg(arg.Name);
                    if (value == null) return false;
                    if (arg.Values != null) return arg.Values.Contains(value);
                    var ids = arg.Type == "object" ? objects : arg.Type == "location" ? locations : arg.Type == "character" ? characters : all;
                    return ids.Contains(value);
                });
                valid &= a.Object == a.Arg("object") && a.Target == a.Arg("target");
                _c.That(valid, "action " + a.Action + " is valid for the scene");
                _c.That(a.AtMs == null ? !audio : a.AtMs.Value >= 0 && a.AtMs.Value <= audioMs + 1,
                        "action at_ms on the audio timeline (null only without audio)");
            }
            _c.That(end.Actions.Count == actions.Count && end.Actions.Zip(actions, (r, a) => r.Verb == a.Verb && r.Object == a.Object && r.Target == a.Target
                                                                              && r.Action.ToString() == a.Action.ToString()).All(x => x),
                    "response.end actions match the response.action events");
        }

        /// <summary>The scene's own verbs end to end: a turn whose reply performs declared verbs (the scripted server's
        /// "[sit stool] [emote bow]"); each decodes into an NpcAction (verb and args by name), is released on the audio
        /// clock by ReplyPlayer, and matches --expect-verbs ("sit seat=stool,emote gesture=bow") when given.</summary>
        private async Task VerbsTurn()
        {
            string prompt = _opts.ContainsKey("verbs-prompt") ? _opts["verbs-prompt"] : "Take a seat.";
            string id = await _conn.SendAsync(new TextInput(prompt));
            string rid = null;
            var events = await Until(EndOf(s => s.Ref == id, r => rid = r), "verbs turn");
            var mine = events.Where(e => e.ResponseId == rid).ToList();
            var end = (ResponseEnd)mine.Last();
            var actions = mine.OfType<ActionEvent>().ToList();
            var chunks = mine.OfType<AudioChunk>().ToList();
            double audioMs = chunks.Sum(ch => ch.DurationMs);
            string got = string.Join(",", actions.Select(a => a.Action.ToString()).ToArray());
            Log("verbs turn " + rid + ": '" + end.Text + "', actions " + got);
            _c.Equal("completed", end.Status, "verbs turn: response.end status");
            CheckActions(actions, end, chunks.Count > 0, audioMs);
            if (_opts.ContainsKey("expect-verbs")) _c.Equal(_opts["expect-verbs"], got, "the verbs turn's actions (prompt '" + prompt + "')");
            _report["verbs_turn"] = new JsonObject
            {
                { "prompt", prompt }, { "response_id", rid }, { "text", end.Text }, { "status", end.Status },
                { "audio_ms", end.AudioMs }, { "audio_chunks", chunks.Count },
                { "actions", actions.Select(a => (object)ActionReport(a)).ToList() },
                { "spelled", actions.Select(a => (object)a.Action.ToString()).ToList() },
                { "end_actions", end.Actions.Select(a => (object)new JsonObject {
                    { "verb", a.Verb }, { "args", ArgsJson(a.Args) }, { "object", a.Object }, { "target", a.Target } }).ToList() },
            };
            await Playback(mine, "verbs_playback");
        }

        private async Task Playback(List<ServerEvent> turn, string reportKey)
        {
            var player = new ReplyPlayer(DeviceRate) { OutputLatencyMs = 20 };
            foreach (var ev in turn) player.Feed(ev);
            var marks = new List<PlaybackMark>();
            var clocks = new List<double>();
            var released = UnitChecks.Drive(player, 1024, 100000, marks, clocks);
            foreach (var m in marks) _conn.Send(m);
            var visemes = released.Where(x => x.Kind == CueKind.Viseme).ToList();
            int expected = turn.OfType<AudioChunk>().Sum(ch => ch.Visemes.Count);
            bool ordered = true, onClock = true;
            for (int i = 1; i < released.Count; i++) ordered &= released[i].AtMs >= released[i - 1].AtMs;
            var audioMs = ((ResponseEnd)turn.Last()).AudioMs ?? 0;
            for (int i = 0; i < released.Count; i++)
                onClock &= released[i].AtMs <= Math.Min(clocks[i], audioMs + 0.5) + 1e-6 || double.IsNegativeInfinity(released[i].AtMs);
            _c.Equal(expected, visemes.Count, "playback released every viseme");
            _c.That(ordered, "playback released cues in time order");
            _c.That(onClock, "no cue released before the audio clock reached it");
            _c.Equal(turn.OfType<ActionEvent>().Count(), released.Count(x => x.Kind == CueKind.Action), "playback released every action");
            bool audio = turn.OfType<AudioChunk>().Any();
            _c.That(!audio || marks.Count >= 2 && Math.Abs(marks.Last().PlayedMs - audioMs) < 1.0, "periodic marks and a final mark at the audio's end");
            await _conn.SendAsync(new Ping()); // the marks went out before this
            _report[reportKey] = new JsonObject
            {
                { "released", released.Select(x => (object)x.ToString()).ToList() }, { "ordered", ordered }, { "on_clock", onClock },
                { "marks", marks.Select(m => (object)m.PlayedMs).ToList() },
            };
            await Until(e => e is Pong, "marks accepted");
        }

        private async Task MalformedInput()
        {
            var sent = new[]
            {
                new[] { "{not json", null },
                new[] { "{\"type\":\"input.text\",\"id\":\"bad-1\"}", "bad-1" },
                new[] { "{\"type\":\"teleport\",\"id\":\"bad-2\"}", "bad-2" },
                new[] { "{\"type\":\"response.cancel\",\"id\":\"bad-3\"}", "bad-3" },
            };
            var errors = new List<object>();
            foreach (var pair in sent)
            {
                _conn.SendRawText(pair[0]);
                var err = (await Until(e => e is ErrorEvent, "malformed input")).Last() as ErrorEvent;
                _c.Equal(pair[1], err.Ref, "error ref for " + pair[0]);
                _c.That(!err.Fatal, "error for " + pair[0] + " is not fatal");
                errors.Add(new JsonObject { { "sent", pair[0] }, { "code", err.Code }, { "ref", err.Ref }, { "retryable", err.Retryable }, { "fatal", err.Fatal } });
            }
            // the way a game reads events: TryDequeue once a frame (~16 ms), never waiting
            string pingId = _conn.Send(new Ping());
            Pong pong = null;
            var polling = System.Diagnostics.Stopwatch.StartNew();
            while (pong == null && polling.Elapsed < TurnTimeout)
            {
                ServerEvent ev;
                while (pong == null && _conn.TryDequeue(out ev)) pong = ev as Pong;
                if (pong == null) await Task.Delay(16);
            }
            _c.That(pong != null, "pong read with TryDequeue");
            if (pong == null) throw new TimeoutException("no pong");
            _c.Equal(pingId, pong.Ref, "connection usable after bad input (pong ref)");
            _c.That(_conn.IsOpen, "connection still open after bad input");
            _report["errors"] = errors;
            _report["usable_after_errors"] = pong.Ref == pingId && _conn.IsOpen;
        }

        /// <summary>Speak the WAV as a microphone would: 20 ms frames at the file's rate, resampled to 16 kHz PCM16,
        /// paced in real time, then 300 ms of silence and push-to-talk released (input.audio.commit).</summary>
        private async Task VoiceTurn()
        {
            int rate;
            float[] speech = Wav.Read(_opts["wav"], out rate);
            var resampler = new Resampler(rate, Pcm16.ServerInputRate);
            int frame = rate / 50;
            int silenceFrames = 15; // 300 ms
            var total = new float[speech.Length + silenceFrames * frame];
            Array.Copy(speech, total, speech.Length);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            long sentBytes = 0;
            int frames = 0;
            for (int at = 0; at < total.Length; at += frame, frames++)
            {
                var pcm = Pcm16.FromFloats(resampler.Process(total, at, Math.Min(frame, total.Length - at)));
                if (pcm.Length > 0) _conn.SendAudio(pcm, 0, pcm.Length);
                sentBytes += pcm.Length;
                int wait = (int)((frames + 1) * 20 - clock.ElapsedMilliseconds);
                if (wait > 0) await Task.Delay(wait);
            }
            await _conn.SendAsync(new AudioCommit());
            Log("spoke " + frames + " frames (" + sentBytes + " bytes at 16 kHz) from a " + rate + " Hz file");
            _c.Near(total.Length * (double)Pcm16.ServerInputRate / rate * 2, sentBytes, 8, "microphone bytes: 16 kHz PCM16 of the whole file");

            string utterance = null, rid = null;
            var events = await Until(EndOf(s => s.Trigger == "voice" && s.Ref == utterance, r => rid = r), "voice turn", e =>
            {
                var f = e as TranscriptFinal;
                if (f != null && f.Text.Length > 0 && !f.Backchannel) utterance = f.UtteranceId;
            });
            var started = events.OfType<SpeechStarted>().FirstOrDefault();
            var stopped = events.OfType<SpeechStopped>().FirstOrDefault(s => started != null && s.UtteranceId == started.UtteranceId);
            var final = events.OfType<TranscriptFinal>().First(f => f.UtteranceId == utterance);
            var partials = events.OfType<TranscriptPartial>().Where(p => p.UtteranceId == utterance).ToList();
            var start = events.OfType<ResponseStart>().First(s => s.ResponseId == rid);
            var end = events.OfType<ResponseEnd>().Last();
            Log("heard '" + final.Text + "'; reply '" + end.Text + "'");
            _c.That(started != null && started.UtteranceId == utterance, "speech.started for the utterance");
            _c.That(stopped != null && stopped.DurationMs > 500 && !stopped.Discarded, "speech.stopped with its duration");
            _c.That(partials.All(p => p.Text.StartsWith(p.Stable)), "transcript.partial: stable is a prefix of text");
            _c.Equal(utterance, start.Ref, "voice response.start ref = utterance_id");
            int replyChunks = events.OfType<AudioChunk>().Count(ch => ch.ResponseId == rid);
            _c.That(end.Status == "completed" && (end.Text.Length > 0 || end.Actions.Count > 0), "voice reply completed, says or does something");
            _report["voice_turn"] = new JsonObject
            {
                { "wav_rate", rate }, { "frames", frames }, { "bytes_sent", sentBytes }, { "utterance_id", utterance },
                { "speech_started_ms", started != null ? (object)started.AtMs : null },
                { "speech_duration_ms", stopped != null ? (object)stopped.DurationMs : null },
                { "partials", partials.Count }, { "transcript", final.Text }, { "final_timings", final.Timings.ToDictionary(kv => kv.Key, kv => (object)kv.Value) },
                { "trigger", start.Trigger }, { "ref", start.Ref }, { "status", end.Status }, { "reply", end.Text },
                { "audio_chunks", replyChunks }, { "audio_ms", end.AudioMs }, { "reply_actions", end.Actions.Count }, { "error", end.Error },
                { "filler", end.Timings.ContainsKey("filler") ? (object)end.Timings["filler"] : null },
            };
        }

        private Task<List<ServerEvent>> Until(Func<ServerEvent, bool> last, string what, Action<ServerEvent> observe)
        {
            return Until(e => { observe(e); return last(e); }, what);
        }

        /// <summary>Start a long answer and cancel it at its response.start: it must end <c>interrupted</c>, and
        /// ReplyPlayer must drop it.</summary>
        private async Task CancelledTurn()
        {
            string id = await _conn.SendAsync(new TextInput("Tell me the whole history of this shop, from the very beginning."));
            string rid = null;
            var player = new ReplyPlayer(DeviceRate);
            var events = await Until(EndOf(s => s.Ref == id, r => { rid = r; _conn.Send(new ResponseCancel { ResponseId = r }); }), "cancelled turn",
                                     e => player.Feed(e));
            var end = (ResponseEnd)events.Last();
            var frame = player.Update();
            _c.Equal("interrupted", end.Status, "a cancelled response ends interrupted");
            _c.That(frame.Stopped.Contains(rid) && !player.IsPlaying, "ReplyPlayer stops an interrupted response");
            _report["cancelled_turn"] = new JsonObject { { "response_id", rid }, { "status", end.Status }, { "text", end.Text } };
        }

        private async Task Close()
        {
            if (_conn == null) return;
            await _conn.CloseAsync();
            ServerEvent last = null;
            try
            {
                while (!(last is ConnectionClosed)) last = await _conn.NextEventAsync(TimeSpan.FromSeconds(10));
            }
            catch (TimeoutException) { }
            var closed = last as ConnectionClosed;
            _c.That(closed != null && closed.Error == null, "clean close (" + (closed != null ? closed.CloseStatus + " " + closed.Error : "no close event") + ")");
            _report["closed"] = new JsonObject { { "clean", closed != null && closed.Error == null }, { "status", closed != null ? closed.CloseStatus.ToString() : null } };
            _conn.Dispose();
        }
    }
}
