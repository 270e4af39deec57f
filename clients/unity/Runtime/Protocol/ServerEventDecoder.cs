// SPDX-License-Identifier: MIT
using System;
using System.Collections.Generic;

namespace NpcRuntime.Protocol
{
    /// <summary>
    /// Sans-I/O decoder of the server's frames: text frames in, typed <see cref="ServerEvent"/>s out. A
    /// <c>response.audio</c> event is held until its binary frame arrives, then returned as one
    /// <see cref="AudioChunk"/> with its PCM. Not thread-safe: feed it from one receive loop.
    /// </summary>
    /// <remarks>Malformed input raises <see cref="ProtocolException"/> and leaves the decoder usable for
    /// the next frame. Unknown event types become <see cref="UnknownEvent"/>.</remarks>
    public sealed class ServerEventDecoder
    {
        private static readonly string[] Triggers = { "text", "voice", "game_event", "converse" };
        private static readonly string[] Statuses = { "completed", "interrupted", "failed" };
        private static readonly string[] Emotions = { "neutral", "joy", "anger", "sadness", "fear", "surprise", "disgust" };

        private AudioChunk _pending;

        /// <summary>The reply sample rate of the session (from <c>session.ready</c>), used for chunks that do not
        /// carry their own. 0 until known.</summary>
        public int SessionSampleRate { get; set; }

        /// <summary>True while a <c>response.audio</c> waits for its binary frame.</summary>
        public bool AwaitingAudioFrame { get { return _pending != null; } }

        /// <summary>Decode a text frame. Returns null for a <c>response.audio</c> (completed by
        /// <see cref="DecodeBinary"/>).</summary>
        public ServerEvent DecodeText(string text)
        {
            if (_pending != null)
            {
                var seq = _pending.Seq;
                _pending = null;
                throw new ProtocolException("response.audio seq " + seq + " was not followed by its binary frame", "response.audio");
            }
            JsonObject obj;
            try
            {
                obj = JsonReader.ParseObject(text);
            }
            catch (JsonException e)
            {
                throw new ProtocolException("server frame is not a JSON object: " + e.Message, null, null, e);
            }
            ServerEvent ev = Parse(obj);
            var chunk = ev as AudioChunk;
            if (chunk != null)
            {
                if (chunk.SampleRate <= 0)
                    throw new ProtocolException("response.audio: no sample_rate and no session audio format", "response.audio", "sample_rate");
                _pending = chunk;
                return null;
            }
            var ready = ev as SessionReady;
            if (ready != null && ready.Audio != null) SessionSampleRate = ready.Audio.SampleRate;
            return ev;
        }

        /// <summary>Decode a binary frame: the PCM announced by the last <c>response.audio</c>.</summary>
        public AudioChunk DecodeBinary(byte[] data, int offset, int count)
        {
            var chunk = _pending;
            _pending = null;
            if (chunk == null) throw new ProtocolException("binary frame of " + count + " bytes without a response.audio before it", "binary");
            if (count != chunk.Samples * 2)
                throw new ProtocolException("response.audio seq " + chunk.Seq + " announced " + chunk.Samples + " samples (" +
                                            chunk.Samples * 2 + " bytes) but its frame has " + count + " bytes", "response.audio", "samples");
            var pcm = new byte[count];
            Buffer.BlockCopy(data, offset, pcm, 0, count);
            chunk.Pcm = pcm;
            return chunk;
        }

        /// <summary>Parse one server event object (a <c>response.audio</c> comes back without its PCM).</summary>
        public ServerEvent Parse(JsonObject obj)
        {
            var root = new Fields(obj, "event");
            string type = root.String("type");
            var f = new Fields(obj, type);
            if (!f.Has("response_id")) throw new ProtocolException(type + ".response_id: missing", type, "response_id");
            ServerEvent ev = Build(type, f);
            ev.Type = type;
            ev.Raw = obj;
            var re = ev as ResponseEvent;
            if (re != null)
            {
                ev.ResponseId = f.String("response_id");
                re.Speaker = f.OptString("speaker");
            }
            else ev.ResponseId = f.OptString("response_id");
            return ev;
        }

        private ServerEvent Build(string type, Fields f)
        {
            switch (type)
            {
                case "session.ready": return SessionReadyFrom(f);
                case "scene.updated":
                    return new SceneUpdated { Objects = f.Int("objects"), Locations = f.Int("locations"), Characters = f.Int("characters") };
                case "game.event.accepted": return new GameEventAccepted { Ref = f.OptString("ref"), Reacting = f.Bool("reacting") };
                case "response.start":
                    return new ResponseStart { Trigger = f.Enum("trigger", Triggers), Ref = f.OptString("ref") };
                case "response.text.delta": return new TextDelta { Text = f.String("text") };
                case "response.audio": return AudioFrom(f);
                case "response.action":
                {
                    string obj, target;
                    var action = ActionFrom(f, out obj, out target);
                    return new ActionEvent
                    {
                        Index = f.Int("index"), Verb = action.Verb, Action = action, Object = obj, Target = target,
                        TextOffset = f.Int("text_offset"), AtMs = f.OptNumber("at_ms"),
                    };
                }
                case "response.emotion":
                    return new EmotionEvent { Emotion = f.Enum("emotion", Emotions), TextOffset = f.Int("text_offset"), AtMs = f.OptNumber("at_ms") };
                case "response.end": return EndFrom(f);
                case "response.interrupted": return new ResponseInterrupted { Reason = f.String("reason") };
                case "speech.started": return new SpeechStarted { UtteranceId = f.String("utterance_id"), AtMs = f.Number("at_ms") };
                case "speech.stopped":
                    return new SpeechStopped
                    {
                        UtteranceId = f.String("utterance_id"), AtMs = f.Number("at_ms"), DurationMs = f.Number("duration_ms"),
                        Discarded = f.OptBool("discarded", false),
                    };
                case "transcript.partial":
                    return new TranscriptPartial { UtteranceId = f.String("utterance_id"), Text = f.String("text"), Stable = f.String("stable") };
                case "transcript.final":
                    return new TranscriptFinal
                    {
                        UtteranceId = f.String("utterance_id"), Text = f.String("text"), Backchannel = f.OptBool("backchannel", false),
                        Timings = f.NumberMap("timings", true),
                    };
                case "scene.converse.end":
                    return new ConverseEnd { Ref = f.OptString("ref"), Turns = f.Int("turns"), Status = f.Enum("status", Statuses) };
                case "error":
                    return new ErrorEvent
                    {
                        Code = f.String("code"), Message = f.String("message"), Ref = f.OptString("ref"),
                        Retryable = f.OptBool("retryable", false), Fatal = f.OptBool("fatal", false),
                    };
                case "pong": return new Pong { Ref = f.OptString("ref") };
                default: return new UnknownEvent();
            }
        }

        private static SessionReady SessionReadyFrom(Fields f)
        {
            var c = f.Obj("character");
            var ready = new SessionReady
            {
                SessionId = f.String("session_id"),
                Protocol = f.String("protocol"),
                Character = new CharacterInfo { Id = c.String("id"), Name = c.String("name") },
                Actions = f.StringArray("actions"),
                Audio = FormatFrom(f.OptObj("audio")),
                AudioIn = FormatFrom(f.OptObj("audio_in")),
                Mood = f.OptString("mood") ?? "neutral",
                Cast = new List<CharacterInfo>(),
            };
            if (ready.Protocol != "1") throw new ProtocolException("session.ready.protocol: this client speaks protocol 1, the server " + ready.Protocol, "session.ready", "protocol");
            var listen = f.OptObj("listen");
            if (listen != null)
            {
                var l = listen.Value;
                ready.Listen = new ListenSettings { EndSilenceMs = l.Int("end_silence_ms"), BargeInMs = l.Int("barge_in_ms"), Partials = l.Bool("partials") };
            }
            foreach (var m in f.ObjArray("cast", true)) ready.Cast.Add(new CharacterInfo { Id = m.String("id"), Name = m.String("name") });
            return ready;
        }

        private static AudioFormat FormatFrom(Fields? maybe)
        {
            if (maybe == null) return null;
            var a = maybe.Value;
            var format = new AudioFormat { Encoding = a.Enum("encoding", "pcm_s16le"), SampleRate = a.Int("sample_rate"), Channels = a.Int("channels") };
            if (format.Channels != 1) throw new ProtocolException(a.Path + ".channels: only mono is defined, got " + format.Channels, a.Path, "channels");
            if (format.SampleRate <= 0) throw new ProtocolException(a.Path + ".sample_rate: must be positive", a.Path, "sample_rate");
            return format;
        }

        private AudioChunk AudioFrom(Fields f)
        {
            var chunk = new AudioChunk
            {
                Seq = f.Int("seq"), StartMs = f.Number("start_ms"), Samples = f.Int("samples"),
                SampleRate = f.OptInt("sample_rate") ?? SessionSampleRate, Visemes = new List<VisemeCue>(),
            };
            if (chunk.Samples < 0) throw new ProtocolException("response.audio.samples: negative", "response.audio", "samples");
            foreach (var v in f.ObjArray("visemes"))
            {
                string name = v.String("viseme");
                if (Visemes.IndexOf(name) < 0) throw new ProtocolException(v.Path + ".viseme: unknown viseme '" + name + "'", v.Path, "viseme");
                var cue = new VisemeCue(name, v.Number("start_ms"), v.Number("end_ms"));
                if (cue.EndMs < cue.StartMs) throw new ProtocolException(v.Path + ": end_ms before start_ms", v.Path, "end_ms");
                chunk.Visemes.Add(cue);
            }
            return chunk;
        }

        /// <summary>An action's <c>verb</c> (any verb name) and <c>args</c> (strings by name). A server from before
        /// verbs were data sends no <c>args</c>: a built-in's come from its <c>object</c>/<c>target</c>. The
        /// <c>object</c>/<c>target</c> returned are the fields, else the arguments of those names.</summary>
        private static NpcAction ActionFrom(Fields f, out string obj, out string target)
        {
            string verb = f.String("verb");
            if (!BuiltInVerbs.IsValidName(verb))
                throw new ProtocolException(f.Path + ".verb: '" + verb + "' is not a verb name (^[a-z][a-z0-9_]{0,31}$)", f.Path, "verb");
            obj = f.OptString("object");
            target = f.OptString("target");
            var args = new Dictionary<string, string>(StringComparer.Ordinal);
            var given = f.OptObj("args");
            if (given != null)
            {
                foreach (var kv in given.Value.Object)
                {
                    var value = kv.Value as string;
                    if (value == null)
                        throw new ProtocolException(given.Value.Path + "." + kv.Key + ": expected a string argument", given.Value.Path, kv.Key);
                    args[kv.Key] = value;
                }
            }
            else
            {
                string[] names = BuiltInVerbs.ArgNames(verb);
                if (names != null)
                    foreach (var name in names)
                    {
                        string value = name == "object" ? obj : target;
                        if (value != null) args[name] = value;
                    }
            }
            string fromArgs;
            if (obj == null && args.TryGetValue("object", out fromArgs)) obj = fromArgs;
            if (target == null && args.TryGetValue("target", out fromArgs)) target = fromArgs;
            string[] required = BuiltInVerbs.ArgNames(verb);
            if (required != null)
                foreach (var name in required)
                    if (!args.ContainsKey(name))
                        throw new ProtocolException(f.Path + ": " + verb + " without its " + name, f.Path, name);
            return new NpcAction(verb, args);
        }

        private static ResponseEnd EndFrom(Fields f)
        {
            var end = new ResponseEnd
            {
                Status = f.Enum("status", Statuses), Text = f.String("text"), Actions = new List<ActionRecord>(),
                Timings = f.NumberMap("timings"), Truncated = f.OptBool("truncated", false), AudioMs = f.OptNumber("audio_ms"),
                Error = f.OptString("error"), HeardMs = f.OptNumber("heard_ms"), HeardText = f.OptString("heard_text"),
                Sources = new List<SourceRef>(),
            };
            foreach (var a in f.ObjArray("actions"))
            {
                string obj, target;
                var action = ActionFrom(a, out obj, out target);
                end.Actions.Add(new ActionRecord { Verb = action.Verb, Action = action, Object = obj, Target = target });
            }
            foreach (var s in f.ObjArray("sources", true))
                end.Sources.Add(new SourceRef { File = s.String("file"), Heading = s.String("heading"), Score = s.Number("score") });
            return end;
        }
    }
}
