// SPDX-License-Identifier: MIT
// Server -> client events of protocol v1 (docs/protocol.md, clients/protocol.schema.json), as typed classes.
// Parse them with ServerEventDecoder (which also pairs each response.audio with its binary frame).
using System.Collections.Generic;

namespace NpcRuntime.Protocol
{
    /// <summary>Every server event: its <c>type</c>, the response it belongs to (null: session-level) and the
    /// JSON it came from (fields a newer server adds are there).</summary>
    public abstract class ServerEvent
    {
        public string Type { get; protected internal set; }
        public string ResponseId { get; internal set; }
        public JsonObject Raw { get; internal set; }

        public override string ToString() { return Type + (ResponseId != null ? " [" + ResponseId + "]" : ""); }
    }

    /// <summary>An event of one response (<c>response.*</c>): <see cref="ServerEvent.ResponseId"/> is never null.</summary>
    public abstract class ResponseEvent : ServerEvent
    {
        /// <summary>The character this response belongs to (null from servers that do not send it).</summary>
        public string Speaker { get; internal set; }
    }

    /// <summary>An event type this client does not know (a newer server): surfaced, never a crash.</summary>
    public sealed class UnknownEvent : ServerEvent { }

    public sealed class CharacterInfo
    {
        public string Id { get; internal set; }
        public string Name { get; internal set; }
    }

    /// <summary>A PCM16 mono stream format.</summary>
    public sealed class AudioFormat
    {
        public string Encoding { get; internal set; }
        public int SampleRate { get; internal set; }
        public int Channels { get; internal set; }
    }

    public sealed class ListenSettings
    {
        public int EndSilenceMs { get; internal set; }
        public int BargeInMs { get; internal set; }
        public bool Partials { get; internal set; }
    }

    public sealed class SessionReady : ServerEvent
    {
        public string SessionId { get; internal set; }
        public string Protocol { get; internal set; }
        public CharacterInfo Character { get; internal set; }
        /// <summary>Verbs this character may use: built-ins (move, grab, give) and the ones the scene declared.</summary>
        public List<string> Actions { get; internal set; }
        /// <summary>Reply audio format; null in a text-only session.</summary>
        public AudioFormat Audio { get; internal set; }
        /// <summary>Microphone format expected; null when the server runs no speech recognition.</summary>
        public AudioFormat AudioIn { get; internal set; }
        public ListenSettings Listen { get; internal set; }
        public string Mood { get; internal set; }
        public List<CharacterInfo> Cast { get; internal set; }
    }

    public sealed class SceneUpdated : ServerEvent
    {
        public int Objects { get; internal set; }
        public int Locations { get; internal set; }
        public int Characters { get; internal set; }
    }

    public sealed class GameEventAccepted : ServerEvent
    {
        public string Ref { get; internal set; }
        public bool Reacting { get; internal set; }
    }

    public sealed class ResponseStart : ResponseEvent
    {
        /// <summary><c>text</c>, <c>voice</c>, <c>game_event</c> or <c>converse</c>.</summary>
        public string Trigger { get; internal set; }
        /// <summary>The client message id that started it; for voice, the utterance id.</summary>
        public string Ref { get; internal set; }
    }

    public sealed class TextDelta : ResponseEvent
    {
        public string Text { get; internal set; }
    }

    /// <summary>One lip-sync cue: an OVR viseme over [StartMs, EndMs) of the response's audio timeline.</summary>
    public sealed class VisemeCue
    {
        public string Viseme { get; internal set; }
        /// <summary>Index of <see cref="Viseme"/> in <see cref="Visemes.Names"/>.</summary>
        public int Index { get; internal set; }
        public double StartMs { get; internal set; }
        public double EndMs { get; internal set; }

        public VisemeCue(string viseme, double startMs, double endMs)
        {
            Viseme = viseme;
            Index = Visemes.IndexOf(viseme);
            StartMs = startMs;
            EndMs = endMs;
        }
    }

    /// <summary><c>response.audio</c> together with the binary frame that followed it.</summary>
    public sealed class AudioChunk : ResponseEvent
    {
        public int Seq { get; internal set; }
        /// <summary>Where this chunk starts on the response's audio timeline (ms).</summary>
        public double StartMs { get; internal set; }
        public int Samples { get; internal set; }
        /// <summary>This chunk's rate: its own <c>sample_rate</c>, else the session's (<c>session.ready.audio</c>).</summary>
        public int SampleRate { get; internal set; }
        public List<VisemeCue> Visemes { get; internal set; }
        /// <summary>PCM16 little-endian mono, exactly <see cref="Samples"/> × 2 bytes.</summary>
        public byte[] Pcm { get; internal set; }

        public double DurationMs { get { return SampleRate > 0 ? Samples * 1000.0 / SampleRate : 0; } }
    }

    /// <summary><c>response.action</c>: the character performs a verb. <see cref="Verb"/> is any verb (a built-in or one
    /// the scene declared) and <see cref="Args"/> holds every argument by name; <see cref="Object"/> and
    /// <see cref="Target"/> are the arguments of those names (the built-ins': grab/give object, move/give target).</summary>
    public sealed class ActionEvent : ResponseEvent
    {
        public int Index { get; internal set; }
        /// <summary>The verb's name: <c>move</c>, <c>grab</c>, <c>give</c> or one the scene declared (<c>sit</c>...).</summary>
        public string Verb { get; internal set; }
        /// <summary>grab/give: the object id (and any verb's argument named <c>object</c>).</summary>
        public string Object { get; internal set; }
        /// <summary>move: where to; give: the character receiving (and any verb's argument named <c>target</c>).</summary>
        public string Target { get; internal set; }
        /// <summary>The action as data: the verb and every argument by name.</summary>
        public NpcAction Action { get; internal set; }
        /// <summary>Every argument by name (<c>give</c>: object, target; a declared <c>sit</c>: seat).</summary>
        public IReadOnlyDictionary<string, string> Args { get { return Action.Args; } }
        public int TextOffset { get; internal set; }
        /// <summary>Audio time at which to perform it; null without audio (perform at once).</summary>
        public double? AtMs { get; internal set; }

        /// <summary>The argument <paramref name="name"/>, or null.</summary>
        public string Arg(string name) { return Action.Arg(name); }
    }

    public sealed class EmotionEvent : ResponseEvent
    {
        public string Emotion { get; internal set; }
        public int TextOffset { get; internal set; }
        public double? AtMs { get; internal set; }
    }

    /// <summary>One action of <c>response.end.actions</c>: the verb, its arguments by name, and the built-ins'
    /// object/target.</summary>
    public sealed class ActionRecord
    {
        public string Verb { get; internal set; }
        public string Object { get; internal set; }
        public string Target { get; internal set; }
        public NpcAction Action { get; internal set; }
        public IReadOnlyDictionary<string, string> Args { get { return Action.Args; } }
    }

    public sealed class SourceRef
    {
        public string File { get; internal set; }
        public string Heading { get; internal set; }
        public double Score { get; internal set; }
    }

    public sealed class ResponseEnd : ResponseEvent
    {
        /// <summary><c>completed</c>, <c>interrupted</c> or <c>failed</c>.</summary>
        public string Status { get; internal set; }
        public string Text { get; internal set; }
        public List<ActionRecord> Actions { get; internal set; }
        /// <summary>Per-stage ms from the turn's start (prompt_ready, first_token, first_audio, end...).</summary>
        public Dictionary<string, double> Timings { get; internal set; }
        public bool Truncated { get; internal set; }
        public double? AudioMs { get; internal set; }
        public string Error { get; internal set; }
        public double? HeardMs { get; internal set; }
        public string HeardText { get; internal set; }
        public List<SourceRef> Sources { get; internal set; }
    }

    public sealed class SpeechStarted : ServerEvent
    {
        public string UtteranceId { get; internal set; }
        public double AtMs { get; internal set; }
    }

    public sealed class SpeechStopped : ServerEvent
    {
        public string UtteranceId { get; internal set; }
        public double AtMs { get; internal set; }
        public double DurationMs { get; internal set; }
        public bool Discarded { get; internal set; }
    }

    public sealed class TranscriptPartial : ServerEvent
    {
        public string UtteranceId { get; internal set; }
        public string Text { get; internal set; }
        /// <summary>The start of <see cref="Text"/> that will not change.</summary>
        public string Stable { get; internal set; }
    }

    public sealed class TranscriptFinal : ServerEvent
    {
        public string UtteranceId { get; internal set; }
        /// <summary>Empty: nothing intelligible (no response follows).</summary>
        public string Text { get; internal set; }
        public bool Backchannel { get; internal set; }
        public Dictionary<string, double> Timings { get; internal set; }
    }

    /// <summary>Barge-in: stop this response's audio now, skip what was not reached, send a last playback.mark.</summary>
    public sealed class ResponseInterrupted : ResponseEvent
    {
        public string Reason { get; internal set; }
    }

    public sealed class ConverseEnd : ServerEvent
    {
        public string Ref { get; internal set; }
        public int Turns { get; internal set; }
        public string Status { get; internal set; }
    }

    public sealed class ErrorEvent : ServerEvent
    {
        /// <summary>Stable machine-readable code (docs/protocol.md, "Error codes").</summary>
        public string Code { get; internal set; }
        public string Message { get; internal set; }
        /// <summary>The id of the client message that caused it, when known.</summary>
        public string Ref { get; internal set; }
        public bool Retryable { get; internal set; }
        /// <summary>The server closes the connection after this event.</summary>
        public bool Fatal { get; internal set; }
    }

    public sealed class Pong : ServerEvent
    {
        public string Ref { get; internal set; }
    }

    /// <summary>The 15 Oculus/OVR visemes the server sends.</summary>
    public static class Visemes
    {
        public static readonly string[] Names =
            { "sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou" };

        /// <summary>Index in <see cref="Names"/>, or -1.</summary>
        public static int IndexOf(string viseme) { return System.Array.IndexOf(Names, viseme); }
    }
}
