// SPDX-License-Identifier: MIT
using System;
using System.Collections.Generic;
using System.Text.RegularExpressions;

namespace NpcRuntime.Protocol
{
    /// <summary>Something actions may name: an object, a location or a character.</summary>
    public sealed class SceneEntity : IJsonWritable
    {
        private static readonly Regex IdPattern = new Regex("^[a-z][a-z0-9_]{0,47}$");

        /// <summary>Lowercase words joined by <c>_</c> (<c>^[a-z][a-z0-9_]{0,47}$</c>), unique in the scene.</summary>
        public string Id;
        public string Name;
        /// <summary>Goes into the prompt: it helps the model pick the right id.</summary>
        public string Description;

        public SceneEntity() { }

        public SceneEntity(string id, string name = null, string description = null)
        {
            Id = id;
            Name = name;
            Description = description;
        }

        public static bool IsValidId(string id) { return id != null && IdPattern.IsMatch(id); }

        public object ToJsonValue()
        {
            return new JsonObject { { "id", Id } }.AddIfNotNull("name", Name).AddIfNotNull("description", Description);
        }
    }

    /// <summary>The scene declared in <c>session.start</c> / <c>scene.update</c>: what actions may name, and the
    /// game's own verbs.</summary>
    public sealed class Scene : IJsonWritable
    {
        public const int MaxPerList = 64;
        public const int MaxVerbs = 32;

        public string Name;
        public List<SceneEntity> Objects = new List<SceneEntity>();
        public List<SceneEntity> Locations = new List<SceneEntity>();
        public List<SceneEntity> Characters = new List<SceneEntity>();
        /// <summary>The game's own verbs in this scene (at most 32), besides the built-in move, grab and give: the
        /// character may perform them; they arrive as <see cref="ActionEvent"/>s with their args by name. Sent only
        /// when not empty.</summary>
        public List<VerbDef> Verbs = new List<VerbDef>();

        /// <summary>Every id in the scene (objects, locations, characters).</summary>
        public IEnumerable<string> AllIds()
        {
            foreach (var e in Objects) yield return e.Id;
            foreach (var e in Locations) yield return e.Id;
            foreach (var e in Characters) yield return e.Id;
        }

        /// <summary>Throws <see cref="ArgumentException"/> for what the server would refuse: malformed or duplicate
        /// ids, more than 64 entities in a list; verbs that are malformed (name, description, arguments), declared
        /// twice, built in (move, grab, give, emotion), or more than 32.</summary>
        public void Validate()
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            CheckList("objects", Objects, seen);
            CheckList("locations", Locations, seen);
            CheckList("characters", Characters, seen);
            CheckVerbs(Verbs);
        }

        private static void CheckVerbs(List<VerbDef> verbs)
        {
            if (verbs == null) return;
            if (verbs.Count > MaxVerbs) throw new ArgumentException("scene.verbs: more than " + MaxVerbs + " verbs");
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var v in verbs)
            {
                if (v == null) throw new ArgumentException("scene.verbs: a null verb");
                string where = "scene.verbs '" + v.Name + "'";
                if (!BuiltInVerbs.IsValidName(v.Name)) throw new ArgumentException(where + ": the name must match ^[a-z][a-z0-9_]{0,31}$");
                if (BuiltInVerbs.IsBuiltIn(v.Name) || v.Name == "emotion") throw new ArgumentException(where + ": built in; declare only new verbs");
                if (!names.Add(v.Name)) throw new ArgumentException(where + ": declared twice");
                if (string.IsNullOrEmpty(v.Description) || v.Description.Length > VerbDef.MaxDescription)
                    throw new ArgumentException(where + ": a description of 1 to " + VerbDef.MaxDescription + " characters is required");
                var args = v.Args ?? new List<VerbArgDef>();
                if (args.Count > VerbDef.MaxArgs) throw new ArgumentException(where + ": more than " + VerbDef.MaxArgs + " arguments");
                var argNames = new HashSet<string>(StringComparer.Ordinal);
                foreach (var a in args)
                {
                    if (a == null) throw new ArgumentException(where + ": a null argument");
                    if (!BuiltInVerbs.IsValidName(a.Name)) throw new ArgumentException(where + ": argument '" + a.Name + "' must match ^[a-z][a-z0-9_]{0,31}$");
                    if (!argNames.Add(a.Name)) throw new ArgumentException(where + ": argument '" + a.Name + "' twice");
                    if ((a.Type == null) == (a.Values == null))
                        throw new ArgumentException(where + ": argument '" + a.Name + "' needs either a type (object, location, character, any) or values");
                    if (a.Type != null && Array.IndexOf(VerbArgDef.Types, a.Type) < 0)
                        throw new ArgumentException(where + ": argument '" + a.Name + "' type '" + a.Type + "' is not object, location, character or any");
                    if (a.Values != null)
                    {
                        if (a.Values.Count < 1 || a.Values.Count > 32) throw new ArgumentException(where + ": argument '" + a.Name + "' needs 1 to 32 values");
                        var words = new HashSet<string>(StringComparer.Ordinal);
                        foreach (var w in a.Values)
                        {
                            if (!BuiltInVerbs.IsValidName(w)) throw new ArgumentException(where + ": value '" + w + "' must match ^[a-z][a-z0-9_]{0,31}$");
                            if (!words.Add(w)) throw new ArgumentException(where + ": value '" + w + "' twice");
                        }
                    }
                }
            }
        }

        private static void CheckList(string name, List<SceneEntity> list, HashSet<string> seen)
        {
            if (list.Count > MaxPerList) throw new ArgumentException("scene." + name + ": more than " + MaxPerList + " entities");
            foreach (var e in list)
            {
                if (!SceneEntity.IsValidId(e.Id)) throw new ArgumentException("scene." + name + ": id '" + e.Id + "' must match ^[a-z][a-z0-9_]{0,47}$");
                if (!seen.Add(e.Id)) throw new ArgumentException("scene." + name + ": duplicate id '" + e.Id + "'");
            }
        }

        public object ToJsonValue()
        {
            var o = new JsonObject();
            o.AddIfNotNull("name", Name);
            o["objects"] = Objects;
            o["locations"] = Locations;
            o["characters"] = Characters;
            if (Verbs != null && Verbs.Count > 0) o["verbs"] = Verbs;
            return o;
        }

        /// <summary>Read a scene from JSON text such as <c>{"name": ..., "objects": [{"id": ...}], ...,
        /// "verbs": [{"name": "sit", "description": ..., "args": [{"name": "seat", "type": "object"}]}]}</c>.</summary>
        public static Scene FromJson(string json)
        {
            JsonObject obj;
            try { obj = JsonReader.ParseObject(json); }
            catch (JsonException e) { throw new ProtocolException("scene: " + e.Message, "scene", null, e); }
            var f = new Fields(obj, "scene");
            var scene = new Scene { Name = f.OptString("name") };
            Fill(scene.Objects, f.ObjArray("objects", true));
            Fill(scene.Locations, f.ObjArray("locations", true));
            Fill(scene.Characters, f.ObjArray("characters", true));
            foreach (var v in f.ObjArray("verbs", true))
            {
                var verb = new VerbDef { Name = v.String("name"), Description = v.OptString("description") };
                foreach (var a in v.ObjArray("args", true))
                    verb.Args.Add(new VerbArgDef { Name = a.String("name"), Type = a.OptString("type"), Values = a.Object.ContainsKey("values") && a.Object["values"] != null ? a.StringArray("values") : null });
                scene.Verbs.Add(verb);
            }
            return scene;
        }

        private static void Fill(List<SceneEntity> into, List<Fields> items)
        {
            foreach (var e in items) into.Add(new SceneEntity(e.String("id"), e.OptString("name"), e.OptString("description")));
        }
    }
}
