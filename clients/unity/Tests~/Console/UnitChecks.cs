// SPDX-License-Identifier: MIT
// Pure checks of the engine-independent assemblies: no network.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using NpcRuntime.Client;
using NpcRuntime.Protocol;

namespace NpcRuntime.ConsoleTest
{
    public static class UnitChecks
    {
        public static void Run(Checks c, string visemesDir)
        {
            JsonReading(c);
            JsonWriting(c);
            Decoding(c);
            ClientMessages(c);
            VerbsAsData(c);
            Pcm(c);
            Resampling(c);
            VisemeTables(c, visemesDir);
            Smoothing(c);
            Timeline(c);
            Player(c);
            HandshakeRefusals(c);
        }

        private static void JsonReading(Checks c)
        {
            c.Equal("a\"b\\c/d\b\f\n\r\t", (string)JsonReader.Parse("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\""), "json escapes");
            c.Equal("caf\u00e9 \u65e5\u672c", (string)JsonReader.Parse("\"caf\\u00e9 \\u65E5\\u672c\""), "json \\u escapes");
            c.Equal("\U0001F600", (string)JsonReader.Parse("\"\\ud83d\\ude00\""), "json surrogate pair escape");
            c.Equal("raw \u00e9\U0001F600", (string)JsonReader.Parse("\"raw \u00e9\U0001F600\""), "json raw unicode");
            c.Equal(0.0, (double)JsonReader.Parse("0"), "json 0");
            c.Equal(-0.5, (double)JsonReader.Parse("-0.5"), "json -0.5");
            c.Equal(1000.0, (double)JsonReader.Parse("1e3"), "json 1e3");
            c.Equal(0.015, (double)JsonReader.Parse("1.5E-2"), "json 1.5E-2");
            c.Equal(12345678901.0, (double)JsonReader.Parse("12345678901"), "json big integer");
            c.Equal(998.458, (double)JsonReader.Parse(" 998.458 "), "json decimal with whitespace");
            var nested = JsonReader.ParseObject("{\"a\": {\"b\": [1, {\"c\": null}, [true, false]], \"e\": {}}, \"f\": []}");
            var a = (JsonObject)nested["a"];
            var b = (List<object>)a["b"];
            c.Equal(3, b.Count, "json nested array length");
            c.That(((JsonObject)b[1]).ContainsKey("c") && ((JsonObject)b[1])["c"] == null, "json null member kept");
            c.Equal(false, (bool)((List<object>)b[2])[1], "json nested bool");
            c.Equal(0, ((JsonObject)a["e"]).Count, "json empty object");
            string[] bad =
            {
                "", "{", "[1,]", "{\"a\":1,}", "01", "-", "1.", "1e", "\"abc", "\"\\x\"", "\"\\u12g4\"", "\"a\u0001b\"",
                "tru", "nul", "{} x", "{'a':1}", "{\"a\" 1}", "[1 2]", "NaN", "+1", "1e999",
            };
            foreach (var text in bad) c.Throws<JsonException>(() => JsonReader.Parse(text), null, "json rejects " + Show(text));
            c.Throws<JsonException>(() => JsonReader.Parse(new string('[', 65) + new string(']', 65)), "nesting", "json depth limit");
            c.That(JsonReader.Parse(new string('[', 64) + new string(']', 64)) is List<object>, "json depth 64 accepted");
            c.Throws<JsonException>(() => JsonReader.ParseObject("[1]"), "object", "json ParseObject wants an object");
        }

        private static string Show(string s) { return "'" + s.Replace("\u0001", "\\u0001") + "'"; }

        private static void JsonWriting(Checks c)
        {
            var o = new JsonObject { { "s", "q\"\\\n\u0001\u00e9\U0001F600" }, { "n", 3 }, { "d", 0.1 }, { "neg", -2.5 }, { "big", 1e20 },
                                     { "t", true }, { "z", null }, { "l", new List<object> { 1, "x", new JsonObject() } } };
            string json = JsonWriter.Serialize(o);
            c.Equal("{\"s\":\"q\\\"\\\\\\n\\u0001\u00e9\U0001F600\",\"n\":3,\"d\":0.1,\"neg\":-2.5,\"big\":1E+20,\"t\":true,\"z\":null,\"l\":[1,\"x\",{}]}",
                    json, "json writer output");
            var back = JsonReader.ParseObject(json);
            c.Equal((string)o["s"], (string)back["s"], "json round trip string");
            c.Equal(1e20, (double)back["big"], "json round trip big number");
            c.Equal(json, JsonWriter.Serialize(back), "json round trip stable");
            c.Throws<ArgumentException>(() => JsonWriter.Serialize(double.NaN), "NaN", "json writer refuses NaN");
        }

        private const string Ready = "{\"response_id\":null,\"type\":\"session.ready\",\"session_id\":\"s1\",\"protocol\":\"1\"," +
            "\"character\":{\"id\":\"jin\",\"name\":\"Jin\"},\"actions\":[\"move\",\"grab\",\"give\"]," +
            "\"audio\":{\"encoding\":\"pcm_s16le\",\"sample_rate\":22050,\"channels\":1},\"audio_in\":null,\"listen\":null,\"mood\":\"neutral\",\"cast\":[]}";

        private static string Chunk(int seq, double startMs, int samples, string visemes, string extra = "")
        {
            return "{\"response_id\":\"r1\",\"speaker\":\"jin\",\"type\":\"response.audio\",\"seq\":" + seq + ",\"start_ms\":" + startMs +
                   ",\"samples\":" + samples + ",\"visemes\":[" + visemes + "]" + extra + "}";
        }

        private static void Decoding(Checks c)
        {
            var d = new ServerEventDecoder();
            var ready = d.DecodeText(Ready) as SessionReady;
            c.That(ready != null && ready.Character.Name == "Jin" && ready.Audio.SampleRate == 22050 && ready.AudioIn == null
                   && ready.Listen == null && ready.Actions.Count == 3 && ready.ResponseId == null, "decode session.ready");
            c.Equal(22050, d.SessionSampleRate, "decoder takes the session rate");

            c.That(d.DecodeText(Chunk(0, 0, 4, "{\"viseme\":\"sil\",\"start_ms\":0,\"end_ms\":0.1814}")) == null && d.AwaitingAudioFrame,
                   "response.audio waits for its frame");
            var chunk = d.DecodeBinary(new byte[] { 1, 0, 2, 0, 3, 0, 255, 255 }, 0, 8);
            c.That(chunk.Samples == 4 && chunk.Pcm.Length == 8 && chunk.SampleRate == 22050 && chunk.Speaker == "jin"
                   && chunk.Visemes.Count == 1 && chunk.Visemes[0].Index == 0, "audio chunk paired with its frame");
            c.Near(4000.0 / 22050, chunk.DurationMs, 1e-9, "chunk duration");

            d.DecodeText(Chunk(1, 0.18, 4, "", ",\"sample_rate\":24000"));
            c.Equal(24000, d.DecodeBinary(new byte[8], 0, 8).SampleRate, "chunk's own sample_rate wins");
            d.DecodeText(Chunk(2, 0, 4, ""));
            c.Throws<ProtocolException>(() => d.DecodeBinary(new byte[6], 0, 6), "announced 4 samples", "frame of the wrong size");
            c.Throws<ProtocolException>(() => d.DecodeBinary(new byte[8], 0, 8), "without a response.audio", "frame without announcement");
            d.DecodeText(Chunk(3, 0, 4, ""));
            c.Throws<ProtocolException>(() => d.DecodeText("{\"type\":\"pong\",\"response_id\":null}"), "not followed by its binary frame",
                                        "text frame where audio was due");
            c.That(d.DecodeText("{\"type\":\"pong\",\"response_id\":null,\"ref\":\"p\"}") is Pong, "decoder usable after an error");

            var unknown = d.DecodeText("{\"type\":\"npc.dance\",\"response_id\":null,\"style\":\"waltz\"}");
            c.That(unknown is UnknownEvent && unknown.Type == "npc.dance" && (string)unknown.Raw["style"] == "waltz", "unknown type surfaced");
            var extra = d.DecodeText("{\"type\":\"pong\",\"response_id\":null,\"ref\":\"x\",\"new_field\":1}") as Pong;
            c.That(extra != null && extra.Ref == "x", "extra fields ignored");

            c.Throws<ProtocolException>(() => d.DecodeText("not json"), "not a JSON object", "bad JSON from the server");
            c.Throws<ProtocolException>(() => d.DecodeText("{\"response_id\":null}"), "event.type: missing", "missing type");
            c.Throws<ProtocolException>(() => d.DecodeText("{\"type\":\"pong\"}"), "pong.response_id: missing", "missing response_id");
            c.Throws<ProtocolException>(() => d.DecodeText("{\"type\":\"response.text.delta\",\"response_id\":null,\"text\":\"x\"}"),
                                        "response.text.delta.response_id", "response event with null response_id");
            c.Throws<ProtocolException>(() => d.DecodeText(Chunk(0, 0, 2, "{\"viseme\":\"xx\",\"start_ms\":0,\"end_ms\":1}")),
                                        "unknown viseme 'xx'", "unknown viseme");
            c.Throws<ProtocolException>(() => d.DecodeText("{\"type\":\"response.audio\",\"response_id\":\"r1\",\"seq\":0,\"start_ms\":0,\"visemes\":[]}"),
                                        "response.audio.samples: missing", "missing samples");
            c.Throws<ProtocolException>(() => d.DecodeText("{\"type\":\"response.audio\",\"response_id\":\"r1\",\"seq\":0.5,\"start_ms\":0,\"samples\":1,\"visemes\":[]}"),
                                        "response.audio.seq: expected an integer", "fractional seq");
            c.Throws<ProtocolException>(() => d.DecodeText("{\"type\":\"response.action\",\"response_id\":\"r1\",\"index\":0,\"verb\":\"Fly!\",\"text_offset\":0}"),
                                        "'Fly!' is not a verb name", "malformed verb name");
            c.Throws<ProtocolException>(() => d.DecodeText("{\"type\":\"error\",\"response_id\":null,\"code\":5,\"message\":\"m\"}"),
                                        "error.code: expected a string, got a number", "mistyped error code");
            c.Throws<ProtocolException>(() => d.DecodeText(Ready.Replace("\"protocol\":\"1\"", "\"protocol\":\"2\"")), "protocol 1", "protocol version");

            var action = d.DecodeText("{\"response_id\":\"r1\",\"type\":\"response.action\",\"index\":0,\"verb\":\"give\",\"object\":\"chopsticks\"," +
                                      "\"target\":\"player\",\"text_offset\":0,\"at_ms\":null}") as ActionEvent;
            c.That(action != null && action.Verb == "give" && action.Object == "chopsticks" && action.Target == "player" && action.AtMs == null,
                   "decode response.action (at_ms null)");
            var end = d.DecodeText("{\"response_id\":\"r1\",\"type\":\"response.end\",\"status\":\"completed\",\"text\":\"Hi.\",\"actions\":[{\"verb\":\"grab\",\"object\":\"menu\",\"target\":null}]," +
                                   "\"timings\":{\"end\":5118.4,\"chunks\":15.0},\"truncated\":false,\"audio_ms\":1079.7,\"error\":null,\"heard_ms\":null,\"heard_text\":null," +
                                   "\"sources\":[{\"file\":\"a.md\",\"heading\":\"\",\"score\":0.5}]}") as ResponseEnd;
            c.That(end != null && end.Status == "completed" && end.Actions[0].Object == "menu" && end.Timings["end"] == 5118.4
                   && end.AudioMs == 1079.7 && end.HeardMs == null && end.Sources[0].File == "a.md", "decode response.end");
            var err = d.DecodeText("{\"response_id\":null,\"type\":\"error\",\"code\":\"busy\",\"message\":\"m\",\"ref\":\"c9\",\"retryable\":true,\"fatal\":true}") as ErrorEvent;
            c.That(err != null && err.Code == "busy" && err.Ref == "c9" && err.Retryable && err.Fatal, "decode error");
            var fin = d.DecodeText("{\"response_id\":null,\"type\":\"transcript.final\",\"utterance_id\":\"u1\",\"text\":\"hello\",\"backchannel\":false,\"timings\":{\"final_ms\":512.0}}") as TranscriptFinal;
            c.That(fin != null && fin.UtteranceId == "u1" && fin.Timings["final_ms"] == 512.0, "decode transcript.final");
        }

        private static void ClientMessages(Checks c)
        {
            var scene = Scene.FromJson("{\"name\":\"shop\",\"objects\":[{\"id\":\"menu\",\"description\":\"a menu\"}],\"locations\":[{\"id\":\"door\"}]," +
                                       "\"characters\":[{\"id\":\"player\",\"name\":\"Kai\"}]}");
            var start = new SessionStart { Id = "m1", Character = "jin", PlayerName = "Kai", Scene = scene, Options = new SessionOptions { Seed = 7 } };
            var json = JsonReader.ParseObject(start.ToJson());
            var opts = (JsonObject)json["options"];
            c.That((string)json["type"] == "session.start" && (string)json["id"] == "m1" && (string)json["character"] == "jin"
                   && !json.ContainsKey("cast"), "session.start fields");
            c.That((double)opts["seed"] == 7 && !opts.ContainsKey("max_tokens") && !opts.ContainsKey("brief")
                   && (double)((JsonObject)opts["audio_in"])["sample_rate"] == 16000 && (bool)((JsonObject)opts["listen"])["partials"],
                   "session.start options: set fields only");
            var objects = (List<object>)((JsonObject)json["scene"])["objects"];
            c.That((string)((JsonObject)objects[0])["description"] == "a menu" && !((JsonObject)((List<object>)((JsonObject)json["scene"])["locations"])[0]).ContainsKey("name"),
                   "scene entities: no null fields");
            c.Equal("{\"type\":\"playback.mark\",\"response_id\":\"r1\",\"played_ms\":1234.6}", new PlaybackMark("r1", 1234.56).ToJson(), "playback.mark json");
            c.Equal("{\"type\":\"input.text\",\"text\":\"hi \\\"you\\\"\"}", new TextInput("hi \"you\"").ToJson(), "input.text json");
            c.Equal("{\"type\":\"response.cancel\"}", new ResponseCancel().ToJson(), "response.cancel json");
            c.Equal("{\"type\":\"input.audio.commit\",\"id\":\"c3\"}", new AudioCommit { Id = "c3" }.ToJson(), "input.audio.commit json");
            c.Throws<ArgumentException>(() => new TextInput("").ToJson(), "input.text text is required", "empty input.text refused");
            scene.Objects.Add(new SceneEntity("Door"));
            c.Throws<ArgumentException>(() => scene.Validate(), "'Door'", "scene id pattern");
            scene.Objects[1].Id = "door";
            c.Throws<ArgumentException>(() => scene.Validate(), "duplicate id 'door'", "scene duplicate ids");
        }

        private static string ActionJson(string verb, string args, string extra = "")
        {
            return "{\"response_id\":\"r1\",\"speaker\":\"jin\",\"type\":\"response.action\",\"index\":1,\"verb\":\"" + verb + "\"" +
                   (args != null ? ",\"args\":" + args : "") + extra + ",\"text_offset\":4,\"at_ms\":250.5}";
        }

        private static string ArgsOf(IReadOnlyDictionary<string, string> args)
        {
            return string.Join(",", args.Select(kv => kv.Key + "=" + kv.Value).ToArray());
        }

        /// <summary>Verbs as data: any verb decodes into a verb name and its args by name; the built-ins keep their typed
        /// object/target (also from a server that sends no args); scenes declare verbs.</summary>
        private static void VerbsAsData(Checks c)
        {
            var d = new ServerEventDecoder();
            var ready = d.DecodeText(Ready.Replace("[\"move\",\"grab\",\"give\"]", "[\"move\",\"grab\",\"give\",\"sit\",\"emote\"]")) as SessionReady;
            c.That(ready != null && ready.Actions.Contains("sit") && ready.Actions.Contains("emote") && ready.Actions.Count == 5,
                   "session.ready lists declared verbs");

            var emote = d.DecodeText(ActionJson("emote", "{\"gesture\":\"bow\"}", ",\"object\":null,\"target\":null")) as ActionEvent;
            c.That(emote != null && emote.Verb == "emote" && emote.Action.Verb == "emote" && emote.Args.Count == 1 && emote.Arg("gesture") == "bow"
                   && emote.Object == null && emote.Target == null && !emote.Action.IsBuiltIn && emote.Index == 1 && emote.AtMs == 250.5
                   && emote.Speaker == "jin", "custom verb emote: verb and args");
            c.Equal("emote gesture=bow", emote != null ? emote.Action.ToString() : null, "NpcAction.ToString");
            var sit = d.DecodeText(ActionJson("sit", "{\"seat\":\"stool\"}")) as ActionEvent;
            c.That(sit != null && sit.Verb == "sit" && sit.Arg("seat") == "stool" && sit.Object == null && sit.Action.Arg("nothing") == null,
                   "custom verb sit: args by name, no object/target fields");
            var place = d.DecodeText(ActionJson("place", "{\"object\":\"cup\",\"target\":\"counter\",\"side\":\"left\"}")) as ActionEvent;
            c.That(place != null && place.Object == "cup" && place.Target == "counter" && place.Action.Object == "cup"
                   && ArgsOf(place.Args) == "object=cup,target=counter,side=left", "custom verb: args named object/target fill Object/Target");
            var noArgs = d.DecodeText(ActionJson("wave", "{}")) as ActionEvent;
            c.That(noArgs != null && noArgs.Verb == "wave" && noArgs.Args.Count == 0, "custom verb without arguments");

            // the built-ins: typed as before, and their args by name (from the args, or from object/target of an older server)
            var give = d.DecodeText(ActionJson("give", "{\"object\":\"cup\",\"target\":\"player\"}", ",\"object\":\"cup\",\"target\":\"player\"")) as ActionEvent;
            c.That(give != null && give.Verb == "give" && give.Object == "cup" && give.Target == "player" && give.Action.IsBuiltIn
                   && ArgsOf(give.Args) == "object=cup,target=player", "built-in give: typed and args");
            var oldGive = d.DecodeText(ActionJson("give", null, ",\"object\":\"cup\",\"target\":\"player\"")) as ActionEvent;
            c.That(oldGive != null && oldGive.Object == "cup" && oldGive.Target == "player" && ArgsOf(oldGive.Args) == "object=cup,target=player",
                   "built-in give without args (older server): args from object/target");
            var oldMove = d.DecodeText(ActionJson("move", null, ",\"object\":null,\"target\":\"door\"")) as ActionEvent;
            c.That(oldMove != null && oldMove.Target == "door" && oldMove.Object == null && ArgsOf(oldMove.Args) == "target=door",
                   "built-in move without args: target");
            var argsOnly = d.DecodeText(ActionJson("grab", "{\"object\":\"menu\"}")) as ActionEvent;
            c.That(argsOnly != null && argsOnly.Object == "menu" && argsOnly.Target == null, "built-in grab with args only: Object from args");

            c.Throws<ProtocolException>(() => d.DecodeText(ActionJson("give", "{\"object\":\"cup\"}")), "give without its target", "give missing its target");
            c.Throws<ProtocolException>(() => d.DecodeText(ActionJson("sit", "{\"seat\":3}")), "response.action.args.seat: expected a string", "non-string argument");
            c.Throws<ProtocolException>(() => d.DecodeText(ActionJson("sit", "[\"stool\"]")), "response.action.args: expected an object", "args not an object");
            c.Throws<ProtocolException>(() => d.DecodeText(ActionJson("", "{}")), "is not a verb name", "empty verb");

            var end = d.DecodeText("{\"response_id\":\"r1\",\"type\":\"response.end\",\"status\":\"completed\",\"text\":\"Sure.\",\"actions\":[" +
                                   "{\"verb\":\"sit\",\"args\":{\"seat\":\"stool\"}},{\"verb\":\"emote\",\"args\":{\"gesture\":\"bow\"},\"object\":null}," +
                                   "{\"verb\":\"give\",\"args\":{\"object\":\"cup\",\"target\":\"player\"},\"object\":\"cup\",\"target\":\"player\"}," +
                                   "{\"verb\":\"move\",\"target\":\"door\"}],\"timings\":{}}") as ResponseEnd;
            c.That(end != null && end.Actions.Count == 4, "response.end with custom verbs");
            if (end != null && end.Actions.Count == 4)
            {
                c.That(end.Actions[0].Verb == "sit" && end.Actions[0].Action.Arg("seat") == "stool" && end.Actions[0].Object == null, "response.end action sit");
                c.That(end.Actions[1].Verb == "emote" && ArgsOf(end.Actions[1].Args) == "gesture=bow", "response.end action emote");
                c.That(end.Actions[2].Object == "cup" && end.Actions[2].Target == "player" && ArgsOf(end.Actions[2].Args) == "object=cup,target=player",
                       "response.end action give: typed and args");
                c.That(end.Actions[3].Target == "door" && ArgsOf(end.Actions[3].Args) == "target=door", "response.end action move without args");
            }

            // a custom action on the audio clock, like any other
            var t = new PlaybackTimeline("r1");
            t.Add(sit);
            t.Add(give);
            c.Equal("action:sit@250.5 action:give@250.5", Names(t.Advance(300)), "timeline releases custom and built-in actions");

            // declaring verbs in the scene
            var scene = new Scene();
            scene.Objects.Add(new SceneEntity("stool", "stool", "a wooden stool"));
            c.That(!JsonReader.ParseObject(JsonWriter.Serialize(scene)).ContainsKey("verbs"), "a scene without verbs sends no verbs field");
            scene.Verbs.Add(new VerbDef("sit", "sits down on a seat", VerbArgDef.Entity("seat", "object")));
            scene.Verbs.Add(new VerbDef("emote", "makes a gesture", VerbArgDef.OneOf("gesture", "wave", "bow", "shrug")));
            scene.Validate();
            c.Equal("{\"objects\":[{\"id\":\"stool\",\"name\":\"stool\",\"description\":\"a wooden stool\"}],\"locations\":[],\"characters\":[]," +
                    "\"verbs\":[{\"name\":\"sit\",\"description\":\"sits down on a seat\",\"args\":[{\"name\":\"seat\",\"type\":\"object\"}]}," +
                    "{\"name\":\"emote\",\"description\":\"makes a gesture\",\"args\":[{\"name\":\"gesture\",\"values\":[\"wave\",\"bow\",\"shrug\"]}]}]}",
                    JsonWriter.Serialize(scene), "scene verbs json");
            var start = JsonReader.ParseObject(new SessionStart { Character = "jin", Scene = scene }.ToJson());
            c.Equal(2, ((List<object>)((JsonObject)start["scene"])["verbs"]).Count, "session.start carries the scene's verbs");
            var update = JsonReader.ParseObject(new SceneUpdate { Scene = scene }.ToJson());
            c.Equal(2, ((List<object>)((JsonObject)update["scene"])["verbs"]).Count, "scene.update carries the scene's verbs");
            var back = Scene.FromJson(JsonWriter.Serialize(scene));
            c.Equal(JsonWriter.Serialize(scene), JsonWriter.Serialize(back), "scene verbs round trip through FromJson");

            Action<string, Action<Scene>, string> refused = (fragment, change, what) =>
            {
                var bad = Scene.FromJson(JsonWriter.Serialize(scene));
                change(bad);
                c.Throws<ArgumentException>(() => bad.Validate(), fragment, "scene verbs: " + what);
            };
            refused("built in", s => s.Verbs.Add(new VerbDef("give", "gives")), "a built-in redeclared");
            refused("built in", s => s.Verbs.Add(new VerbDef("emotion", "feels")), "emotion is reserved");
            refused("declared twice", s => s.Verbs.Add(new VerbDef("sit", "sits again")), "declared twice");
            refused("must match", s => s.Verbs[0].Name = "Sit", "verb name pattern");
            refused("description", s => s.Verbs[0].Description = "", "empty description");
            refused("description", s => s.Verbs[0].Description = new string('x', 121), "description too long");
            refused("more than 4 arguments", s => { for (int i = 0; i < 4; i++) s.Verbs[0].Args.Add(VerbArgDef.Entity("a" + i, "any")); }, "five arguments");
            refused("type 'thing'", s => s.Verbs[0].Args[0].Type = "thing", "unknown argument type");
            refused("either a type", s => s.Verbs[1].Args[0].Type = "object", "type and values");
            refused("either a type", s => s.Verbs[0].Args[0].Type = null, "neither type nor values");
            refused("value 'Bow'", s => s.Verbs[1].Args[0].Values[1] = "Bow", "value pattern");
            refused("value 'wave' twice", s => s.Verbs[1].Args[0].Values[1] = "wave", "duplicate value");
            refused("argument 'seat' twice", s => s.Verbs[0].Args.Add(VerbArgDef.Entity("seat", "location")), "duplicate argument");
            refused("more than 32 verbs", s => { for (int i = 0; i < 31; i++) s.Verbs.Add(new VerbDef("v" + i, "does " + i)); }, "33 verbs");
        }

        private static void Pcm(Checks c)
        {
            var bytes = Pcm16.FromFloats(new[] { 0f, 1f, -1f, 2f, -0.5f });
            c.Equal(10, bytes.Length, "pcm16 byte count");
            c.That(bytes[2] == 0xff && bytes[3] == 0x7f && bytes[4] == 0x01 && bytes[5] == 0x80 && bytes[6] == 0xff && bytes[7] == 0x7f,
                   "pcm16 little-endian with clamping");
            var back = Pcm16.ToFloats(bytes);
            c.Near(-0.5, back[4], 1.0 / 32768, "pcm16 round trip");
            c.Near(0.75, Pcm16.ToMono(new[] { 1f, 0.5f, 0.5f, 0.5f }, 2)[0], 1e-6, "stereo to mono");
            c.Throws<ArgumentException>(() => Pcm16.ToFloats(new byte[3], 0, 3), "even", "odd PCM16 length");
        }

        private static float[] Tone(int rate, double freq, double seconds)
        {
            var s = new float[(int)(rate * seconds)];
            for (int i = 0; i < s.Length; i++) s[i] = (float)(0.5 * Math.Sin(2 * Math.PI * freq * i / rate));
            return s;
        }

        private static double Rms(float[] s, int skip)
        {
            double sum = 0;
            for (int i = skip; i < s.Length - skip; i++) sum += s[i] * s[i];
            return Math.Sqrt(sum / (s.Length - 2 * skip));
        }

        private static int ZeroCrossings(float[] s, int skip)
        {
            int n = 0;
            for (int i = skip + 1; i < s.Length - skip; i++) if ((s[i - 1] < 0) != (s[i] < 0)) n++;
            return n;
        }

        private static void Resampling(Checks c)
        {
            foreach (int rate in new[] { 8000, 22050, 44100, 48000 })
            {
                var tone = Tone(rate, 440, 1.0);
                var out16 = Pcm16.Resample(tone, rate, 16000);
                c.Near(16000, out16.Length, 2, "resample " + rate + " -> 16000: length");
                c.Near(0.5 / Math.Sqrt(2), Rms(out16, 400), 0.02, "resample " + rate + " -> 16000: 440 Hz level kept");
                c.Near(2 * 440 * (16000 - 800) / 16000.0, ZeroCrossings(out16, 400), 4, "resample " + rate + " -> 16000: 440 Hz pitch kept");
            }
            // a 10 kHz tone cannot exist at 16 kHz: the low-pass removes it instead of aliasing it to 6 kHz
            c.That(Rms(Pcm16.Resample(Tone(48000, 10000, 1.0), 48000, 16000), 400) < 0.02, "resample 48k -> 16k: 10 kHz filtered out");
            // streaming in uneven blocks gives the one-shot result
            var mic = Tone(44100, 300, 0.5);
            var whole = Pcm16.Resample(mic, 44100, 16000);
            var r = new Resampler(44100, 16000);
            var parts = new List<float>();
            int at = 0, block = 1;
            while (at < mic.Length)
            {
                int n = Math.Min(block, mic.Length - at);
                parts.AddRange(r.Process(mic, at, n));
                at += n;
                block = block * 3 % 1031 + 1;
            }
            c.Equal(whole.Length, parts.Count, "streaming resampler: same length");
            double maxDiff = 0;
            for (int i = 0; i < Math.Min(whole.Length, parts.Count); i++) maxDiff = Math.Max(maxDiff, Math.Abs(whole[i] - parts[i]));
            c.That(maxDiff < 1e-5, "streaming resampler: same samples (max diff " + maxDiff + ")");
            c.Equal(32000, Pcm16.MicToServer(Tone(48000, 440, 1.0), 48000).Length, "mic 1 s at 48 kHz -> 16 kHz PCM16 bytes");
        }

        private static void VisemeTables(Checks c, string visemesDir)
        {
            var fromFile = VisemeMapping.FromJson(File.ReadAllText(Path.Combine(visemesDir, "ovr_to_arkit.json")));
            var builtIn = VisemeMapping.ArKit;
            c.That(fromFile.Shapes.OrderBy(s => s, StringComparer.Ordinal).SequenceEqual(builtIn.Shapes.OrderBy(s => s, StringComparer.Ordinal)),
                   "built-in ARKit table has the file's blendshapes");
            bool same = true;
            foreach (var v in Visemes.Names)
                foreach (var shape in fromFile.Shapes)
                    if (Math.Abs(fromFile.Weight(v, shape) - builtIn.Weight(v, shape)) > 1e-6) same = false;
            c.That(same, "built-in ARKit table equals clients/visemes/ovr_to_arkit.json");
            var generic = VisemeMapping.Generic();
            c.That(generic.Shapes.Count == 15 && generic.Weight("aa", "viseme_aa") == 1f && generic.Weight("aa", "viseme_PP") == 0f, "generic mapping");
            c.Throws<ArgumentException>(() => VisemeMapping.FromJson("{\"visemes\":{\"zz\":{}}}"), "zz", "mapping with an unknown viseme");
        }

        private static void Smoothing(Checks c)
        {
            var blender = new VisemeBlender(VisemeMapping.ArKit);
            int jaw = blender.Mapping.Shapes.IndexOf("jawOpen");
            blender.Update("aa", 16f);
            float first = blender.Weights[jaw];
            c.That(first > 0f && first < 0.6f, "attack: jawOpen moves part of the way in one frame (" + first + ")");
            c.Near(0.6 * (1 - Math.Exp(-16.0 / blender.AttackMs)), first, 1e-4, "attack follows exp(-dt/attack)");
            for (int i = 0; i < 30; i++) blender.Update("aa", 16f);
            c.Near(0.6, blender.Weights[jaw], 0.005, "jawOpen settles on the aa target");
            blender.Update("sil", 16f);
            float fall = 0.6f - blender.Weights[jaw];
            c.That(fall > 0f && fall < 0.6f - first, "release is slower than attack");
            for (int i = 0; i < 40; i++) blender.Update("sil", 16f);
            c.That(blender.Weights.All(w => w < 0.01f), "all weights return to rest on sil");
            blender.Intensity = 0.5f;
            for (int i = 0; i < 40; i++) blender.Update("aa", 16f);
            c.Near(0.3, blender.Weights[jaw], 0.005, "intensity scales targets");
            blender.Reset();
            c.That(blender.Weights.All(w => w == 0f), "reset");

            var cues = new List<VisemeCue>
            {
                new VisemeCue("sil", 0, 50), new VisemeCue("aa", 50, 120), new VisemeCue("sil", 120, 150),
                new VisemeCue("PP", 150, 300), new VisemeCue("sil", 300, 500), new VisemeCue("oh", 500, 600),
            };
            blender.LookaheadMs = 30f;
            c.Equal("sil", blender.Select(cues, 0), "select: leading sil");
            c.Equal("aa", blender.Select(cues, 25), "select: lookahead reaches aa");
            c.Equal("PP", blender.Select(cues, 100), "select: short sil bridged to the next viseme");
            c.Equal("sil", blender.Select(cues, 300), "select: long sil kept");
            c.Equal("sil", blender.Select(cues, 700), "select: after the cues");
        }

        private static ServerEvent Ev(string json) { return new ServerEventDecoder { SessionSampleRate = 1000 }.DecodeText(json); }

        private static AudioChunk FakeChunk(string rid, int seq, double startMs, double endMs, string visemes)
        {
            var d = new ServerEventDecoder { SessionSampleRate = 1000 }; // 1 sample = 1 ms: easy arithmetic
            int samples = (int)(endMs - startMs);
            d.DecodeText("{\"response_id\":\"" + rid + "\",\"type\":\"response.audio\",\"seq\":" + seq + ",\"start_ms\":" + startMs +
                         ",\"samples\":" + samples + ",\"visemes\":[" + visemes + "]}");
            var pcm = Pcm16.FromFloats(Enumerable.Repeat(0.25f, samples).ToArray());
            return d.DecodeBinary(pcm, 0, pcm.Length);
        }

        private static string V(string name, double start, double end)
        {
            return "{\"viseme\":\"" + name + "\",\"start_ms\":" + start + ",\"end_ms\":" + end + "}";
        }

        private static ServerEvent Action(string rid, int index, string verb, string atMs)
        {
            return Ev("{\"response_id\":\"" + rid + "\",\"type\":\"response.action\",\"index\":" + index + ",\"verb\":\"" + verb +
                      "\",\"object\":\"menu\",\"target\":\"player\",\"text_offset\":0,\"at_ms\":" + atMs + "}");
        }

        private static ServerEvent Emotion(string rid, string emotion, double atMs)
        {
            return Ev("{\"response_id\":\"" + rid + "\",\"type\":\"response.emotion\",\"emotion\":\"" + emotion + "\",\"text_offset\":0,\"at_ms\":" + atMs + "}");
        }

        private static string Names(IEnumerable<TimelineCue> cues) { return string.Join(" ", cues.Select(x => x.ToString()).ToArray()); }

        private static void Timeline(Checks c)
        {
            var t = new PlaybackTimeline("r1");
            t.Add(Action("r1", 0, "give", "null"));
            t.Add(FakeChunk("r1", 0, 0, 150, V("sil", 0, 50) + "," + V("aa", 50, 120) + "," + V("sil", 120, 150)));
            t.Add(Emotion("r1", "joy", 50));
            t.Add(Action("r1", 1, "move", "120"));
            t.Add(FakeChunk("r1", 1, 150, 300, V("PP", 150, 300)));
            t.Add(Action("r2", 0, "grab", "0")); // another response: ignored
            c.Equal("action:give@-Infinity", Names(t.Advance(double.NegativeInfinity)), "timeline: an action without at_ms at once");
            c.Equal("viseme:sil@0 viseme:aa@50 emotion:joy@50", Names(t.Advance(60)), "timeline: cues up to 60 ms, ties in arrival order");
            c.Equal("", Names(t.Advance(40)), "timeline: a clock going back releases nothing");
            c.Equal("viseme:sil@120 action:move@120", Names(t.Advance(130)), "timeline: action at its at_ms");
            c.Equal("aa", t.VisemeAt(119.9).Viseme, "timeline: viseme lookup");
            c.Equal(300.0, t.AudioEndMs, "timeline: audio end");
            c.Equal("viseme:PP@150", Names(t.Interrupt()), "timeline: interrupt skips what was not reached");
            c.Equal("", Names(t.Advance(1000)), "timeline: nothing after an interrupt");
        }

        /// <summary>Plays through a simulated audio device: Read() blocks of <paramref name="block"/> samples, Update() after each.</summary>
        /// <summary>A refused handshake's HTTP response → NpcConnectException (status, the server's error event).</summary>
        private static void HandshakeRefusals(Checks c)
        {
            var e = NpcConnectException.FromHttpResponse(
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 80\r\n\r\n" +
                "{\"type\":\"error\",\"code\":\"unauthorized\",\"message\":\"the player token has expired\",\"fatal\":true}\n");
            c.That(e != null && e.StatusCode == 401 && e.IsUnauthorized && !e.Retryable, "401 refusal parsed");
            c.Equal("unauthorized", e != null ? e.Code : null, "401 refusal: the server's code");
            c.Equal("the player token has expired", e != null ? e.ServerMessage : null, "401 refusal: the server's message");
            c.That(e != null && e.Message.Contains("HTTP 401 unauthorized") && e.Message.Contains("expired"), "401 refusal message: " + (e != null ? e.Message : ""));
            e = NpcConnectException.FromHttpResponse("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\n\r\n" +
                "{\"type\":\"error\",\"code\":\"too_many_connections\",\"message\":\"at most 8\",\"retryable\":true,\"fatal\":true}");
            c.That(e != null && e.StatusCode == 429 && e.Retryable && e.RetryAfterSeconds == 5 && e.Code == "too_many_connections", "429 refusal parsed");
            e = NpcConnectException.FromHttpResponse("HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nnot json!");
            c.That(e != null && e.StatusCode == 403 && e.Code == null && e.ServerMessage == "Forbidden" && e.Message.Contains("HTTP 403 forbidden"),
                   "403 refusal without an error event: the status line's reason");
            c.That(NpcConnectException.FromHttpResponse("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n") == null, "101 is no refusal");
            c.That(NpcConnectException.FromHttpResponse("SSH-2.0-OpenSSH_9.2\r\n\r\n") == null, "not HTTP: no refusal");
            c.That(NpcConnectException.FromHttpResponse("HTTP/1.1 abc\r\n\r\n") == null, "no status code: no refusal");
            var url = new Uri("ws://127.0.0.1:9/");
            c.Throws<ArgumentException>(() => NpcConnection.ConnectAsync(url, "").GetAwaiter().GetResult(), "empty", "empty token refused");
            c.Throws<ArgumentException>(() => NpcConnection.ConnectAsync(url, "abc\r\nX-Evil: 1").GetAwaiter().GetResult(), "printable", "token with CR LF refused");
            c.Throws<ArgumentException>(() => NpcConnection.ConnectAsync(url, "two words").GetAwaiter().GetResult(), "printable", "token with a space refused");
        }

        public static List<TimelineCue> Drive(ReplyPlayer player, int block, int maxBlocks, List<PlaybackMark> marks, List<double> clocks)
        {
            var released = new List<TimelineCue>();
            var buffer = new float[block * 2];
            for (int i = 0; i < maxBlocks; i++)
            {
                player.Read(buffer, 0, buffer.Length, 2);
                var frame = player.Update();
                foreach (var cue in frame.Cues)
                {
                    released.Add(cue);
                    // the clock each cue came out at; a reply that ended in this frame let its last cues out at the end
                    // of its audio (frame.ClockMs is that of the reply playing now): +infinity stands for "its end"
                    if (clocks != null) clocks.Add(frame.Finished.Contains(cue.ResponseId) ? double.PositiveInfinity : frame.ClockMs);
                }
                if (marks != null) marks.AddRange(frame.Marks);
                if (!player.IsPlaying && frame.ResponseId == null) break;
            }
            return released;
        }

        private static void Player(Checks c)
        {
            // two converse lines queue; a barge-in stops the second part-way
            var p = new ReplyPlayer(1000) { MarkIntervalMs = 100 };
            p.Feed(Ev("{\"response_id\":\"a\",\"speaker\":\"jin\",\"type\":\"response.start\",\"trigger\":\"converse\",\"ref\":null}"));
            p.Feed(Ev("{\"response_id\":\"b\",\"speaker\":\"nova\",\"type\":\"response.start\",\"trigger\":\"converse\",\"ref\":null}"));
            p.Feed(FakeChunk("b", 0, 0, 200, V("oh", 0, 200)));
            p.Feed(FakeChunk("a", 0, 0, 100, V("aa", 0, 100)));
            p.Feed(Action("a", 0, "grab", "90"));
            p.Feed(Ev("{\"response_id\":\"a\",\"type\":\"response.end\",\"status\":\"completed\",\"text\":\"x\",\"actions\":[],\"timings\":{}}"));
            p.Feed(Action("b", 0, "give", "150"));
            var marks = new List<PlaybackMark>();
            var released = Drive(p, 10, 15, marks, null);
            c.Equal("viseme:aa@0 action:grab@90 viseme:oh@0", Names(released), "player: replies in order, cues on each one's clock");
            c.That(marks.Any(m => m.ResponseId == "a" && m.PlayedMs == 100), "player: final mark of a finished reply");
            p.Feed(Ev("{\"response_id\":\"b\",\"type\":\"response.interrupted\",\"reason\":\"barge_in\"}"));
            var frame = p.Update();
            c.That(frame.Stopped.Contains("b") && frame.Marks.Count == 1 && frame.Marks[0].ResponseId == "b" && frame.Marks[0].PlayedMs == 50,
                   "player: barge-in stops the reply and marks what was heard (" + string.Join(",", frame.Marks.Select(m => m.ResponseId + "=" + m.PlayedMs).ToArray()) + ")");
            c.Equal("", Names(Drive(p, 10, 30, null, null)), "player: the give at 150 ms is skipped");
            p.Feed(FakeChunk("b", 1, 200, 300, V("sil", 200, 300)));
            c.That(!p.IsPlaying, "player: late audio of a stopped reply is dropped");

            // a new typed turn stops the reply still playing; a text-only reply releases its cues at once
            var q = new ReplyPlayer(1000) { OutputLatencyMs = 20 };
            q.Feed(Ev("{\"response_id\":\"c\",\"type\":\"response.start\",\"trigger\":\"text\",\"ref\":\"m1\"}"));
            q.Feed(FakeChunk("c", 0, 0, 300, V("E", 0, 300)));
            Drive(q, 10, 10, null, null);
            q.Feed(Ev("{\"response_id\":\"d\",\"type\":\"response.start\",\"trigger\":\"text\",\"ref\":\"m2\"}"));
            q.Feed(Action("d", 0, "move", "null"));
            q.Feed(Ev("{\"response_id\":\"d\",\"type\":\"response.end\",\"status\":\"completed\",\"text\":\"x\",\"actions\":[],\"timings\":{}}"));
            var f2 = q.Update();
            c.That(f2.Stopped.Contains("c") && f2.Marks.Any(m => m.ResponseId == "c" && m.PlayedMs == 80), "player: a newer turn stops the old reply (mark minus latency)");
            c.Equal("action:move@-Infinity", Names(f2.Cues), "player: text-only reply's action at once");
            c.That(f2.Finished.Contains("d") && !q.IsPlaying, "player: text-only reply finishes");

            // with output latency, a reply finishes once the silence after its last sample has drained the latency
            var l = new ReplyPlayer(1000) { OutputLatencyMs = 20, MarkIntervalMs = 1000 };
            l.Feed(Ev("{\"response_id\":\"e\",\"type\":\"response.start\",\"trigger\":\"text\",\"ref\":\"m3\"}"));
            l.Feed(FakeChunk("e", 0, 0, 100, V("aa", 0, 95) + "," + V("sil", 95, 100)));
            l.Feed(Ev("{\"response_id\":\"e\",\"type\":\"response.end\",\"status\":\"completed\",\"text\":\"x\",\"actions\":[],\"timings\":{}}"));
            var buf = new float[10];
            int blocks = 0;
            var lmarks = new List<PlaybackMark>();
            PlaybackFrame lf;
            do { l.Read(buf, 0, 10, 1); lf = l.Update(); lmarks.AddRange(lf.Marks); blocks++; } while (lf.Finished.Count == 0 && blocks < 50);
            c.Equal(12, blocks, "player: finishes 20 ms (the latency) after its last sample");
            c.That(lmarks.Count == 2 && lmarks[0].PlayedMs == 0 && lmarks[1].PlayedMs == 100, "player: marks minus latency, final at the end ("
                   + string.Join(",", lmarks.Select(m => m.PlayedMs.ToString()).ToArray()) + ")");
        }
    }
}
