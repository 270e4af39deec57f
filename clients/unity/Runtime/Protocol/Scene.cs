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

    /// <summary>The scene declared in <c>session.start</c> / <c>scene.update</c>: what actions may name.</summary>
    public sealed class Scene : IJsonWritable
    {
        public const int MaxPerList = 64;

        public string Name;
        public List<SceneEntity> Objects = new List<SceneEntity>();
        public List<SceneEntity> Locations = new List<SceneEntity>();
        public List<SceneEntity> Characters = new List<SceneEntity>();

        /// <summary>Every id in the scene (objects, locations, characters).</summary>
        public IEnumerable<string> AllIds()
        {
            foreach (var e in Objects) yield return e.Id;
            foreach (var e in Locations) yield return e.Id;
            foreach (var e in Characters) yield return e.Id;
        }

        /// <summary>Throws <see cref="ArgumentException"/> for what the server would refuse with
        /// <c>invalid_scene</c>: malformed or duplicate ids, more than 64 entities in a list.</summary>
        public void Validate()
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            CheckList("objects", Objects, seen);
            CheckList("locations", Locations, seen);
            CheckList("characters", Characters, seen);
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
            return o;
        }

        /// <summary>Read a scene from JSON text such as <c>{"name": ..., "objects": [{"id": ...}], ...}</c>.</summary>
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
            return scene;
        }

        private static void Fill(List<SceneEntity> into, List<Fields> items)
        {
            foreach (var e in items) into.Add(new SceneEntity(e.String("id"), e.OptString("name"), e.OptString("description")));
        }
    }
}
