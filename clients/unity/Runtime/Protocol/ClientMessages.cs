// SPDX-License-Identifier: MIT
// Client -> server messages of protocol v1 (docs/protocol.md). Each writes exactly the fields the server
// accepts (it refuses unknown ones). Microphone audio is not a message: send PCM16 as a binary frame.
using System;
using System.Collections.Generic;

namespace NpcRuntime.Protocol
{
    /// <summary>A client message: its <c>type</c> and an optional <c>id</c> (≤ 64 chars) that errors echo as <c>ref</c>.</summary>
    public abstract class ClientMessage : IJsonWritable
    {
        public string Id;

        public abstract string Type { get; }

        /// <summary>The message's own fields (type and id are added by <see cref="ToJsonValue"/>).</summary>
        protected abstract void WriteFields(JsonObject o);

        public object ToJsonValue()
        {
            var o = new JsonObject { { "type", Type } };
            if (Id != null)
            {
                if (Id.Length > 64) throw new ArgumentException("message id longer than 64 characters");
                o["id"] = Id;
            }
            WriteFields(o);
            return o;
        }

        public string ToJson() { return JsonWriter.Serialize(this); }

        protected static string Require(string value, string name)
        {
            if (string.IsNullOrEmpty(value)) throw new ArgumentException(name + " is required");
            return value;
        }
    }

    /// <summary>Session options (<c>session.start.options</c>); null fields take the persona's defaults.</summary>
    public sealed class SessionOptions : IJsonWritable
    {
        /// <summary>No audio and no visemes: text and actions only.</summary>
        public bool TextOnly;
        public int? MaxTokens;
        /// <summary>Sampling seed, for repeatable replies.</summary>
        public int? Seed;
        /// <summary>The rate of the microphone PCM16 this client sends (8000–48000).</summary>
        public int AudioInSampleRate = 16000;
        public int? EndSilenceMs;
        public int? BargeInMs;
        public bool Partials = true;
        /// <summary>Extra instructions for the character in this session only.</summary>
        public string Brief;

        public object ToJsonValue()
        {
            var o = new JsonObject { { "text_only", TextOnly } };
            o.AddIfNotNull("max_tokens", MaxTokens).AddIfNotNull("seed", Seed);
            o["audio_in"] = new JsonObject { { "encoding", "pcm_s16le" }, { "sample_rate", AudioInSampleRate }, { "channels", 1 } };
            o["listen"] = new JsonObject().AddIfNotNull("end_silence_ms", EndSilenceMs).AddIfNotNull("barge_in_ms", BargeInMs)
                                          .AddIfNotNull("partials", Partials);
            o.AddIfNotNull("brief", Brief);
            return o;
        }
    }

    /// <summary>Starts the conversation (once per connection); answered by <c>session.ready</c>.</summary>
    public sealed class SessionStart : ClientMessage
    {
        public string Character;
        /// <summary>Up to 3 more persona ids present who can talk.</summary>
        public List<string> Cast = new List<string>();
        public string PlayerId = "player";
        public string PlayerName;
        public Scene Scene = new Scene();
        public SessionOptions Options = new SessionOptions();

        public override string Type { get { return "session.start"; } }

        protected override void WriteFields(JsonObject o)
        {
            o["character"] = Require(Character, "session.start character");
            if (Cast.Count > 0) o["cast"] = Cast;
            o["player"] = new JsonObject { { "id", Require(PlayerId, "session.start player id") } }.AddIfNotNull("name", PlayerName);
            o["scene"] = Scene;
            o["options"] = Options;
        }
    }

    /// <summary>The player says something (1–2000 chars); interrupts a response in progress.</summary>
    public sealed class TextInput : ClientMessage
    {
        public string Text;
        /// <summary>A cast member's id, or null for the session's character.</summary>
        public string To;

        public TextInput() { }
        public TextInput(string text, string to = null) { Text = text; To = to; }

        public override string Type { get { return "input.text"; } }

        protected override void WriteFields(JsonObject o)
        {
            o["text"] = Require(Text, "input.text text");
            o.AddIfNotNull("to", To);
        }
    }

    /// <summary>Ends the player's spoken turn now (push-to-talk released).</summary>
    public sealed class AudioCommit : ClientMessage
    {
        public override string Type { get { return "input.audio.commit"; } }
        protected override void WriteFields(JsonObject o) { }
    }

    /// <summary>Drops the utterance in progress: no transcript.</summary>
    public sealed class AudioClear : ClientMessage
    {
        public override string Type { get { return "input.audio.clear"; } }
        protected override void WriteFields(JsonObject o) { }
    }

    /// <summary>How much of a response's audio the player has heard. Send a few times a second while
    /// playing, and once when playback stops.</summary>
    public sealed class PlaybackMark : ClientMessage
    {
        public string ResponseId;
        public double PlayedMs;

        public PlaybackMark() { }
        public PlaybackMark(string responseId, double playedMs) { ResponseId = responseId; PlayedMs = playedMs; }

        public override string Type { get { return "playback.mark"; } }

        protected override void WriteFields(JsonObject o)
        {
            o["response_id"] = Require(ResponseId, "playback.mark response_id");
            o["played_ms"] = Math.Round(Math.Max(0, PlayedMs), 1);
        }
    }

    /// <summary>Something happened in the world; with <see cref="React"/> the character answers at once.</summary>
    public sealed class GameEvent : ClientMessage
    {
        public string Description;
        public bool React;

        public GameEvent() { }
        public GameEvent(string description, bool react = false) { Description = description; React = react; }

        public override string Type { get { return "game.event"; } }

        protected override void WriteFields(JsonObject o)
        {
            o["description"] = Require(Description, "game.event description");
            o["react"] = React;
        }
    }

    /// <summary>Replaces the scene from the next response on; answered by <c>scene.updated</c>.</summary>
    public sealed class SceneUpdate : ClientMessage
    {
        public Scene Scene;

        public override string Type { get { return "scene.update"; } }

        protected override void WriteFields(JsonObject o)
        {
            if (Scene == null) throw new ArgumentException("scene.update scene is required");
            o["scene"] = Scene;
        }
    }

    /// <summary>The characters talk among themselves (needs a cast); ends with <c>scene.converse.end</c>.</summary>
    public sealed class SceneConverse : ClientMessage
    {
        public string Topic;
        public int Turns = 4;
        /// <summary>Turn order; empty: the character then its cast.</summary>
        public List<string> Characters = new List<string>();

        public override string Type { get { return "scene.converse"; } }

        protected override void WriteFields(JsonObject o)
        {
            o["topic"] = Require(Topic, "scene.converse topic");
            o["turns"] = Turns;
            if (Characters.Count > 0) o["characters"] = Characters;
        }
    }

    /// <summary>Stops the current response (or the named one, if it is current).</summary>
    public sealed class ResponseCancel : ClientMessage
    {
        public string ResponseId;

        public override string Type { get { return "response.cancel"; } }
        protected override void WriteFields(JsonObject o) { o.AddIfNotNull("response_id", ResponseId); }
    }

    /// <summary>Answered by <c>pong</c> with <c>ref</c> = this id.</summary>
    public sealed class Ping : ClientMessage
    {
        public override string Type { get { return "ping"; } }
        protected override void WriteFields(JsonObject o) { }
    }
}
